//! Run and event ids: UUID v7, made without a lock.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A UUID v7 for something that happened at `at`: the millisecond timestamp, then 74 random
/// bits from a thread-local generator (no global lock on the hot path).
pub(crate) fn new_id(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let random = fastrand::u128(..).to_le_bytes();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&random[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_unique_and_sort_by_millisecond() {
        let early = Utc::now();
        let late = early + chrono::Duration::milliseconds(5);
        let a = new_id(early);
        let b = new_id(early);
        let c = new_id(late);
        assert_eq!(a.get_version_num(), 7);
        assert_ne!(a, b);
        assert!(a < c && b < c);
    }
}
