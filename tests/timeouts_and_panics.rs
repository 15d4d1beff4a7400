//! Timeouts per attempt and panics, on tokio's paused clock.

mod common;

use std::time::Duration;

use common::{events, only_run, recorder, states};
use flowkit::{RunError, State, flow, task};
use tokio::time::Instant;

/// Sleeps 60 s on its first attempt and 1 s afterwards.
#[task(retries = 1, timeout = "10s")]
async fn slow_then_fast() -> u32 {
    let attempt = flowkit::context().expect("in a task").attempt();
    let nap = if attempt == 1 { 60 } else { 1 };
    tokio::time::sleep(Duration::from_secs(nap)).await;
    attempt
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_retried() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    assert_eq!(slow_then_fast().on(&bus).await.unwrap(), 2);
    // 10 s until the first attempt timed out, then 1 s.
    assert_eq!(start.elapsed(), Duration::from_secs(11));
    let events = events(&bus, &memory).await;
    let run = only_run(&events, "slow_then_fast");
    assert_eq!(
        states(&events, run),
        [
            (State::Running, 1),
            (State::Retrying, 1),
            (State::Running, 2),
            (State::Completed, 2)
        ]
    );
}

#[task(timeout = 5)]
async fn never_finishes() {
    std::future::pending::<()>().await;
}

#[tokio::test(start_paused = true)]
async fn the_last_timeout_ends_the_run_timed_out() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    let error = never_finishes().on(&bus).await.expect_err("times out");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(error.state(), State::TimedOut);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(
        error.to_string(),
        "task `never_finishes` timed out after 5s (attempt 1)"
    );
    let events = events(&bus, &memory).await;
    let run = only_run(&events, "never_finishes");
    assert_eq!(states(&events, run).last(), Some(&(State::TimedOut, 1)));
}

/// Gives itself a longer timeout on each attempt, from the run context.
#[task(retries = 3)]
async fn growing_timeout() -> Result<u32, String> {
    let attempt = flowkit::context().expect("in a task").attempt();
    let limit = Duration::from_secs(10 * u64::from(attempt));
    tokio::time::timeout(limit, tokio::time::sleep(Duration::from_secs(25)))
        .await
        .map(|_| attempt)
        .map_err(|_| format!("took longer than {limit:?}"))
}

#[tokio::test(start_paused = true)]
async fn a_task_can_lengthen_its_own_timeout_per_attempt() {
    let (bus, _memory) = recorder();
    let start = Instant::now();
    assert_eq!(growing_timeout().on(&bus).await.unwrap(), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(10 + 20 + 25));
}

#[task(retries = 3)]
async fn panics(message: &'static str) -> u32 {
    panic!("{message}");
}

#[tokio::test(start_paused = true)]
async fn a_panic_is_a_crashed_run_not_a_crashed_process() {
    let (bus, memory) = recorder();
    let error = panics("bad row").on(&bus).await.expect_err("panicked");
    assert!(error.is_panic());
    assert!(matches!(&error, RunError::Panicked { message, .. } if message == "bad row"));
    let events = events(&bus, &memory).await;
    let run = only_run(&events, "panics");
    // A panic is a bug, not a flaky dependency: it is not retried.
    assert_eq!(
        states(&events, run),
        [(State::Running, 1), (State::Crashed, 1)]
    );
}

#[flow]
async fn panicking_submits() -> Vec<bool> {
    let submitted = panics("in a submitted task").submit().await;
    let mapped = flowkit::map(["a", "b"], panics).await;
    let mut out = vec![submitted.is_err_and(|e| e.is_panic())];
    out.extend(mapped.iter().map(|r| matches!(r, Err(e) if e.is_panic())));
    out
}

#[tokio::test(start_paused = true)]
async fn panics_in_submitted_and_mapped_tasks_are_caught() {
    let (bus, _memory) = recorder();
    assert_eq!(
        panicking_submits().on(&bus).await.unwrap(),
        [true, true, true]
    );
}

#[flow]
async fn panicking_flow() -> u32 {
    panic!("flow body exploded")
}

#[tokio::test(start_paused = true)]
async fn a_panicking_flow_body_is_a_crashed_flow_run() {
    let (bus, memory) = recorder();
    let error = panicking_flow().on(&bus).await.expect_err("panicked");
    assert!(error.is_panic());
    let events = events(&bus, &memory).await;
    let run = only_run(&events, "panicking_flow");
    assert_eq!(states(&events, run).last(), Some(&(State::Crashed, 1)));
}

#[flow(timeout = "30s")]
async fn slow_flow() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(start_paused = true)]
async fn a_flow_times_out() {
    let (bus, _memory) = recorder();
    let start = Instant::now();
    let error = slow_flow().on(&bus).await.expect_err("timed out");
    assert!(error.is_timeout());
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}
