//! Retry policies: how many retries, and how long to wait before each.

use std::borrow::Cow;
use std::time::Duration;

/// How long to wait before each retry.
#[derive(Clone, Debug, PartialEq)]
pub enum RetryDelay {
    /// The same delay before every retry.
    Fixed(Duration),
    /// One delay per retry; retries past the end of the list reuse its last delay.
    List(Cow<'static, [Duration]>),
    /// `base`, then `2 * base`, `4 * base`, … capped at `max` when one is given.
    Exponential {
        /// The delay before the first retry.
        base: Duration,
        /// The longest delay, jitter included.
        max: Option<Duration>,
    },
}

/// A retry policy: `retries` more attempts after the first, each after a delay.
///
/// ```
/// use std::time::Duration;
/// use flowkit::{RetryDelay, RetryPolicy};
///
/// let policy = RetryPolicy {
///     retries: 4,
///     delay: RetryDelay::Exponential { base: Duration::from_secs(1), max: Some(Duration::from_secs(5)) },
///     jitter: 0.0,
/// };
/// let delays: Vec<u64> = (1..=4).map(|r| policy.delay_before_retry(r).as_secs()).collect();
/// assert_eq!(delays, [1, 2, 4, 5]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// How many retries after the first attempt (0: no retry).
    pub retries: u32,
    /// The delay before each retry.
    pub delay: RetryDelay,
    /// Random spread of each delay, as a fraction: with 0.2 a 10 s delay becomes 8 s to 12 s.
    pub jitter: f64,
}

impl RetryPolicy {
    /// No retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        delay: RetryDelay::Fixed(Duration::ZERO),
        jitter: 0.0,
    };

    /// The delay before retry number `retry` (1 for the first retry), jitter not applied.
    pub fn delay_before_retry(&self, retry: u32) -> Duration {
        let index = retry.max(1) - 1;
        match &self.delay {
            RetryDelay::Fixed(delay) => *delay,
            RetryDelay::List(delays) => match delays.get(index as usize).or(delays.last()) {
                Some(delay) => *delay,
                None => Duration::ZERO,
            },
            RetryDelay::Exponential { base, max } => {
                let factor = 2u32.saturating_pow(index.min(31));
                let delay = base.saturating_mul(factor);
                match max {
                    Some(max) => delay.min(*max),
                    None => delay,
                }
            }
        }
    }

    /// The delay before retry number `retry` with jitter applied, using `unit`, a number in
    /// `[0, 1)`, as the random draw. The result stays within the exponential `max`, if any.
    pub fn jittered_delay(&self, retry: u32, unit: f64) -> Duration {
        let delay = self.delay_before_retry(retry);
        if self.jitter <= 0.0 || delay.is_zero() {
            return delay;
        }
        let spread = self.jitter.min(1.0);
        let factor = 1.0 - spread + 2.0 * spread * unit.clamp(0.0, 1.0);
        let jittered = delay.mul_f64(factor);
        match &self.delay {
            RetryDelay::Exponential { max: Some(max), .. } => jittered.min(*max),
            _ => jittered,
        }
    }

    /// The delay before retry number `retry`, with a fresh random jitter.
    pub fn next_delay(&self, retry: u32) -> Duration {
        if self.jitter <= 0.0 {
            self.delay_before_retry(retry)
        } else {
            self.jittered_delay(retry, fastrand::f64())
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn fixed_delay_is_the_same_for_every_retry() {
        let policy = RetryPolicy {
            retries: 3,
            delay: RetryDelay::Fixed(secs(60)),
            jitter: 0.0,
        };
        assert_eq!(policy.delay_before_retry(1), secs(60));
        assert_eq!(policy.delay_before_retry(3), secs(60));
    }

    #[test]
    fn list_delay_reuses_its_last_entry() {
        let policy = RetryPolicy {
            retries: 5,
            delay: RetryDelay::List(Cow::Owned(vec![secs(1), secs(10)])),
            jitter: 0.0,
        };
        let got: Vec<_> = (1..=4).map(|r| policy.delay_before_retry(r)).collect();
        assert_eq!(got, [secs(1), secs(10), secs(10), secs(10)]);
    }

    #[test]
    fn exponential_doubles_and_saturates_without_max() {
        let policy = RetryPolicy {
            retries: 100,
            delay: RetryDelay::Exponential {
                base: secs(1),
                max: None,
            },
            jitter: 0.0,
        };
        assert_eq!(policy.delay_before_retry(4), secs(8));
        // Huge retry numbers saturate instead of overflowing.
        assert!(policy.delay_before_retry(90) >= secs(1 << 31));
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_max() {
        let policy = RetryPolicy {
            retries: 3,
            delay: RetryDelay::Exponential {
                base: secs(10),
                max: Some(secs(11)),
            },
            jitter: 0.2,
        };
        assert_eq!(policy.jittered_delay(1, 0.0), secs(8));
        assert_eq!(policy.jittered_delay(1, 0.5), secs(10));
        // 12 s would exceed the cap of 11 s.
        assert_eq!(policy.jittered_delay(1, 1.0), secs(11));
        for _ in 0..1000 {
            let d = policy.next_delay(1);
            assert!(d >= secs(8) && d <= secs(11), "{d:?}");
        }
    }
}
