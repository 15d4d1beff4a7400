//! Testing flows and tasks: run them with their events captured, and nothing printed.

use std::future::IntoFuture;

use crate::{EventBus, MemorySink};

/// Runs what `start` returns (a flow call, a task call, a [`map`](crate::map), an `async`
/// block) with every event of its runs kept in a [`MemorySink`], and returns its output with
/// that sink once the events have arrived.
///
/// Nothing is printed: no console progress, and the `tracing` lines emitted inside its runs
/// become their log events ([`MemorySink::logs`]) instead of lines on stderr. If the process has
/// no `tracing` subscriber yet, this installs one that records run logs and prints lines from
/// outside any run through libtest's capture (`RUST_LOG` sets the level, default `info`).
/// Runs started inside use the same bus as with [`EventBus::scope`], so `start` is called
/// inside the capture: pass `|| my_flow(1)`.
///
/// ```
/// use flowkit::{State, flow, task};
///
/// #[task(retries = 2)]
/// async fn flaky() -> Result<u32, String> {
///     let attempt = flowkit::context().map_or(1, |c| c.attempt());
///     tracing::info!(attempt, "trying");
///     if attempt < 3 { Err("busy".into()) } else { Ok(attempt) }
/// }
///
/// #[flow]
/// async fn report() -> Result<u32, flowkit::RunError<String>> {
///     flaky().await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (result, events) = flowkit::testing::capture(|| report()).await;
/// assert_eq!(result.unwrap(), 3);
/// let flow_run = events.runs_named("report")[0];
/// assert_eq!(events.states(flow_run), [State::Running, State::Completed]);
/// let task_run = events.task_runs_of(flow_run)[0];
/// assert_eq!(events.attempts(task_run), 3);
/// let logs = events.logs(task_run);
/// assert_eq!(logs.iter().filter(|l| l.message == "trying").count(), 3); // once per attempt
/// // The runtime's own line for each retry, after the attempt's:
/// assert_eq!(logs[1].message, "Attempt 1 of 3 failed: busy; retrying now");
/// # }
/// ```
pub async fn capture<F: IntoFuture>(start: impl FnOnce() -> F) -> (F::Output, MemorySink) {
    crate::logging::install_for_tests();
    let memory = MemorySink::new();
    let bus = EventBus::builder()
        .sink(memory.clone())
        .build()
        .capturing_logs();
    let output = bus.scope(start).await;
    bus.flush().await;
    (output, memory)
}
