//! Rate limits within one process: the generic cell rate algorithm on tokio's clock (so tests
//! run it on a paused clock), one reservation per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::Rate;

/// One name's bucket.
pub(super) struct Bucket {
    interval: Duration,
    tolerance: Duration,
    /// The theoretical arrival time of the next call (none yet: a full burst).
    tat: Mutex<Option<Instant>>,
}

impl Bucket {
    fn new(rate: Rate, burst: u32) -> Bucket {
        let interval = rate.interval();
        Bucket {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            tat: Mutex::new(None),
        }
    }

    /// Reserves the next turn: when the caller may go.
    pub(super) fn reserve(&self, now: Instant) -> Instant {
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        let current = tat.map_or(now, |t| t.max(now));
        let at = current
            .checked_sub(self.tolerance)
            .map_or(now, |t| t.max(now));
        *tat = Some(current + self.interval);
        at
    }
}

static BUCKETS: OnceLock<RwLock<HashMap<String, Arc<Bucket>>>> = OnceLock::new();

fn buckets() -> &'static RwLock<HashMap<String, Arc<Bucket>>> {
    BUCKETS.get_or_init(Default::default)
}

/// Sets (or replaces, with a full burst) the rate limit `name`.
pub(super) fn set(name: &str, rate: Rate, burst: u32) {
    buckets()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), Arc::new(Bucket::new(rate, burst)));
}

/// Removes the rate limit `name`.
pub(super) fn remove(name: &str) -> bool {
    buckets()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name)
        .is_some()
}

/// The bucket of `name`, if it has a rate limit in this process.
pub(super) fn get(name: &str) -> Option<Arc<Bucket>> {
    buckets()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let bucket = Bucket::new("10/s".parse().unwrap(), 3);
        let t0 = Instant::now();
        let turns: Vec<u128> = (0..6)
            .map(|_| (bucket.reserve(t0) - t0).as_millis())
            .collect();
        assert_eq!(turns, [0, 0, 0, 100, 200, 300]);
        // After a quiet second the burst is back, and no more than it.
        let later = t0 + Duration::from_secs(2);
        let turns: Vec<u128> = (0..4)
            .map(|_| (bucket.reserve(later) - later).as_millis())
            .collect();
        assert_eq!(turns, [0, 0, 0, 100]);
    }
}
