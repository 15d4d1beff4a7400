//! Concurrency limits by tag and rate limits.
//!
//! **Concurrency.** At most N task runs tagged `api` run their body at once. Set in code with
//! [`set`], a limit holds within this process (a FIFO semaphore per tag); set on the server
//! (`flowkit limits set api 5`), it holds across every program using that server, each task
//! run taking a slot from the server before its body runs and giving it back when its attempt
//! ends — completed, failed, panicked, timed out or cancelled — first come first served. Both
//! may be set: a task then takes the process's slot, then the server's. A slot is held for one
//! attempt, not across the retry delay (as Prefect does: it frees a task run's slots when the
//! run leaves `Running`, and `AwaitingRetry` is not running), so a task sleeping before its
//! next try does not keep others waiting. Tags without a limit cost nothing.
//!
//! **Rates.** [`rate_limit`]`("orders-api").await` inside a task waits for its turn: N calls
//! per period, with bursts of B after a quiet spell (the generic cell rate algorithm). Set
//! with [`set_rate`] it holds in this process, on tokio's clock; set on the server (`flowkit
//! limits set orders-api --rate 10/s --burst 5`) it holds across programs: the server keeps
//! the bucket and tells each caller how long to wait.
//!
//! ```
//! use flowkit::{limits, task};
//!
//! #[task(tags = ["api"])]
//! async fn call_api(n: u32) -> u32 {
//!     limits::rate_limit("orders-api").await;
//!     n
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! # flowkit::Config::new().console(false).init().ok();
//! limits::set("api", 2);
//! limits::set_rate("orders-api", "100/s".parse().unwrap(), 5);
//! let all = flowkit::map(0..4u32, call_api).await;
//! assert_eq!(all.len(), 4);
//! # }
//! ```

mod local;
mod rate;
pub(crate) mod remote;

use std::borrow::Cow;

use uuid::Uuid;

pub use flowkit_api::limits::Rate;

/// Sets the concurrency limit of `tag` in this process: at most `slots` task runs tagged
/// `tag` run at once here (`0` lets none run until it is raised). Raised, waiters go on at
/// once; lowered, the task runs holding slots finish and the limit holds again as they end.
///
/// ```
/// flowkit::limits::set("db", 4);
/// assert_eq!(flowkit::limits::get("db"), Some(4));
/// flowkit::limits::remove("db");
/// ```
pub fn set(tag: &str, slots: u32) {
    local::set(tag, slots);
}

/// The concurrency limit of `tag` in this process, if any (not the server's).
pub fn get(tag: &str) -> Option<u32> {
    local::get(tag)
}

/// Removes the concurrency limit of `tag` in this process; whether it had one.
pub fn remove(tag: &str) -> bool {
    local::remove(tag)
}

/// Sets the rate limit `name` in this process: `rate` calls of [`rate_limit`]`(name)` per
/// period, with up to `burst` at once after a quiet spell.
///
/// ```
/// flowkit::limits::set_rate("partner", "30/m".parse().unwrap(), 1);
/// assert!(flowkit::limits::remove_rate("partner"));
/// ```
pub fn set_rate(name: &str, rate: Rate, burst: u32) {
    rate::set(name, rate, burst);
}

/// Removes the rate limit `name` in this process; whether it had one.
pub fn remove_rate(name: &str) -> bool {
    rate::remove(name)
}

/// Waits for a turn of rate limit `name`: the server's (when this program uses a server that
/// limits `name`), then this process's (set with [`set_rate`]). Returns at once for a name
/// nobody limits.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// flowkit::limits::rate_limit("nobody-limits-this").await;
/// # }
/// ```
pub async fn rate_limit(name: &str) {
    if let Some(remote) = remote::get()
        && remote.table().await.rate.iter().any(|n| n == name)
        && let Some(wait) = remote.take_token(name).await
        && !wait.is_zero()
    {
        tokio::time::sleep(wait).await;
    }
    if let Some(bucket) = rate::get(name) {
        let now = tokio::time::Instant::now();
        let at = bucket.reserve(now);
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// The slots a task run holds for one attempt: given back by [`Slots::release`], or when
/// dropped (a cancelled run).
pub(crate) struct Slots {
    local: Vec<local::Permit>,
    remote: Option<remote::HeldSlots>,
}

impl Slots {
    /// Gives every slot back (the server's first, awaited, so the next in line gets it now).
    pub(crate) async fn release(mut self) {
        if let (Some(held), Some(remote)) = (self.remote.take(), remote::get()) {
            remote.release(held).await;
        }
        self.local.clear();
    }
}

/// Whether a task run with `tags` may need a slot: false (and free) for no tags.
#[inline]
pub(crate) fn may_limit(tags: &[Cow<'static, str>]) -> bool {
    !tags.is_empty() && (local::any() || remote::get().is_some())
}

/// Takes the slots of `tags` for a task run's attempt (this process's, then the server's);
/// `waiting` is told of each wait.
pub(crate) async fn acquire(
    tags: &[Cow<'static, str>],
    task_run_id: Uuid,
    flow_run_id: Option<Uuid>,
    waiting: &mut (dyn FnMut(String) + Send),
) -> Slots {
    let mut names: Vec<&str> = tags.iter().map(|t| t.as_ref()).collect();
    names.sort_unstable();
    names.dedup();
    let mut slots = Slots {
        local: Vec::new(),
        remote: None,
    };
    if local::any() {
        for tag in &names {
            let mut told = || {
                waiting(format!(
                    "waiting for a slot of tag {tag:?} (limit {} in this process)",
                    local::get(tag).unwrap_or(0)
                ))
            };
            if let Some(permit) = local::acquire(tag, &mut told).await {
                slots.local.push(permit);
            }
        }
    }
    if let Some(remote) = remote::get() {
        let table = remote.table().await;
        let limited = remote::limited(&table, &names);
        if !limited.is_empty() {
            let mut told = |tag: &str, ahead: u32| {
                let limit = table.concurrency.get(tag).copied().unwrap_or(0);
                waiting(format!(
                    "waiting for a slot of tag {tag:?} (limit {limit} across programs; {ahead} before this run)"
                ))
            };
            slots.remote = Some(
                remote
                    .acquire(&limited, task_run_id, flow_run_id, &mut told)
                    .await,
            );
        }
    }
    slots
}
