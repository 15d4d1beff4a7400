//! Run and event ids: UUID v7, made without a lock.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use uuid::Uuid;

/// A UUID v7 for something that happened at `at`: the millisecond timestamp, then 74 random
/// bits from a thread-local generator (no global lock on the hot path).
pub(crate) fn new_id(at: DateTime<Utc>) -> Uuid {
    id_at_millis(u64::try_from(at.timestamp_millis()).unwrap_or(0))
}

/// The present: a timestamp and its Unix milliseconds, read once from the system clock.
///
/// The same instant as `Utc::now()`, made cheaper for the hot path (three events per task
/// run): the calendar date is computed once per day and thread, and the id's milliseconds
/// come from the clock's reading, not back from the date.
#[derive(Clone, Copy)]
pub(crate) struct Now {
    pub(crate) at: DateTime<Utc>,
    pub(crate) millis: u64,
}

impl Now {
    pub(crate) fn read() -> Now {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs();
        let day = secs / SECS_PER_DAY;
        thread_local! {
            static TODAY: Cell<(u64, Option<NaiveDate>)> = const { Cell::new((u64::MAX, None)) };
        }
        let date = TODAY.with(|today| match today.get() {
            (cached, Some(date)) if cached == day => Some(date),
            _ => {
                let date = i64::try_from(day * SECS_PER_DAY)
                    .ok()
                    .and_then(|start| DateTime::from_timestamp(start, 0))
                    .map(|start| start.date_naive());
                today.set((day, date));
                date
            }
        });
        let time = u32::try_from(secs % SECS_PER_DAY).ok().and_then(|secs| {
            NaiveTime::from_num_seconds_from_midnight_opt(secs, since.subsec_nanos())
        });
        let at = match (date, time) {
            (Some(date), Some(time)) => date.and_time(time).and_utc(),
            _ => Utc::now(),
        };
        let millis = u64::try_from(since.as_millis()).unwrap_or(0);
        Now { at, millis }
    }

    /// A new id for something that happens now.
    pub(crate) fn id(&self) -> Uuid {
        id_at_millis(self.millis)
    }
}

const SECS_PER_DAY: u64 = 86_400;

fn id_at_millis(millis: u64) -> Uuid {
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

    #[test]
    fn now_is_the_system_clock_read_once() {
        let before = Utc::now();
        let now = Now::read();
        let after = Utc::now();
        assert!(before <= now.at && now.at <= after);
        assert_eq!(now.millis as i64, now.at.timestamp_millis());
        // The cached date is this day's: a second reading agrees with chrono's own.
        let again = Now::read();
        assert_eq!(again.at.date_naive(), Utc::now().date_naive());
        assert_eq!(now.id().get_version_num(), 7);
        assert_eq!(
            now.id().get_timestamp().map(|t| t.to_unix()),
            Some((now.millis / 1000, (now.millis % 1000) as u32 * 1_000_000))
        );
    }
}
