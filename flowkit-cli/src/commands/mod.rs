//! One module per resource; each command fetches, then prints a table or the server's JSON.

pub mod automations;
pub mod backfill;
pub mod deployments;
pub mod gaps;
pub mod keys;
pub mod limits;
pub mod runs;
pub mod trigger;
pub mod workers;

/// How often a `--wait` asks the server again: soon at first, then every two seconds.
pub fn poll_delay(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis((200 * u64::from(attempt + 1)).min(2000))
}
