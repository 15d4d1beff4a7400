//! Hooks: each fires exactly once on its transition, with the run's context and the error of
//! the attempt that ended; a hook that fails or panics is logged on the run and never changes
//! its state.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{assert_ends_in_order, events, recorder};
use flowkit::events::{EventKind, LogLevel};
use flowkit::{HookContext, Hooks, RunError, State, TaskOptions, flow, task};

/// One call of a hook: (hook, run name, state, attempt, error).
type Call = (&'static str, String, State, u32, Option<String>);

static CALLS: Mutex<Vec<Call>> = Mutex::new(Vec::new());

fn note(hook: &'static str, run: &HookContext) {
    CALLS.lock().unwrap().push((
        hook,
        run.name().to_string(),
        run.state(),
        run.attempt(),
        run.error().map(str::to_string),
    ));
}

/// The calls of hooks for the runs named `name` (tests run in parallel: each uses its own
/// names).
fn calls_for(name: &str) -> Vec<(&'static str, State, u32, Option<String>)> {
    CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|call| call.1 == name)
        .map(|(hook, _, state, attempt, error)| (*hook, *state, *attempt, error.clone()))
        .collect()
}

async fn completed(run: &HookContext) {
    note("completed", run);
}

async fn failed(run: &HookContext) -> Result<(), String> {
    note("failed", run);
    Ok(())
}

async fn retrying(run: &HookContext) -> Result<(), std::io::Error> {
    note("retrying", run);
    Ok(())
}

async fn cancelled(run: &HookContext) {
    note("cancelled", run);
}

async fn also_failed(run: &HookContext) {
    note("also_failed", run);
}

async fn broken(run: &HookContext) -> Result<(), String> {
    note("broken", run);
    Err("slack answered 500".into())
}

async fn panicking(run: &HookContext) {
    note("panicking", run);
    panic!("hook bug");
}

#[task(retries = 2, on_completion = completed, on_failure = failed, on_retry = retrying)]
async fn always_fails() -> Result<(), String> {
    let attempt = flowkit::context().map_or(0, |c| c.attempt());
    Err(format!("error of attempt {attempt}"))
}

#[tokio::test(start_paused = true)]
async fn on_retry_fires_once_per_retry_and_on_failure_once_with_the_last_error() {
    let (bus, memory) = recorder();
    let error = always_fails().on(&bus).await.unwrap_err();
    assert_eq!(error.state(), State::Failed);
    assert_eq!(
        calls_for("always_fails"),
        [
            (
                "retrying",
                State::Retrying,
                1,
                Some("error of attempt 1".into())
            ),
            (
                "retrying",
                State::Retrying,
                2,
                Some("error of attempt 2".into())
            ),
            (
                "failed",
                State::Failed,
                3,
                Some("error of attempt 3".into())
            ),
        ]
    );
    let events = events(&bus, &memory).await;
    let run = common::only_run(&events, "always_fails");
    assert_eq!(
        common::states(&events, run).last(),
        Some(&(State::Failed, 3))
    );
}

#[task(retries = 1, on_completion = completed, on_failure = failed, on_retry = retrying)]
async fn fails_once() -> Result<u32, String> {
    match flowkit::context().map_or(0, |c| c.attempt()) {
        1 => Err("503".into()),
        n => Ok(n),
    }
}

#[tokio::test(start_paused = true)]
async fn on_completion_fires_once_after_a_retry() {
    let (bus, _memory) = recorder();
    assert_eq!(fails_once().on(&bus).await.unwrap(), 2);
    assert_eq!(
        calls_for("fails_once"),
        [
            ("retrying", State::Retrying, 1, Some("503".into())),
            ("completed", State::Completed, 2, None),
        ]
    );
}

#[task(timeout = "1s", on_failure = [failed, also_failed])]
async fn too_slow() {
    tokio::time::sleep(Duration::from_secs(5)).await;
}

#[task(on_failure = failed)]
async fn crashes() {
    panic!("index out of bounds");
}

#[tokio::test(start_paused = true)]
async fn on_failure_hooks_fire_in_order_for_a_timeout_and_for_a_crash() {
    let (bus, _memory) = recorder();
    assert_eq!(
        too_slow().on(&bus).await.unwrap_err().state(),
        State::TimedOut
    );
    assert_eq!(
        calls_for("too_slow"),
        [
            (
                "failed",
                State::TimedOut,
                1,
                Some("timed out after 1s".into())
            ),
            (
                "also_failed",
                State::TimedOut,
                1,
                Some("timed out after 1s".into())
            ),
        ]
    );
    assert_eq!(
        crashes().on(&bus).await.unwrap_err().state(),
        State::Crashed
    );
    let calls = calls_for("crashes");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1, State::Crashed);
    assert!(
        calls[0]
            .3
            .as_deref()
            .unwrap()
            .contains("index out of bounds")
    );
}

#[task(on_completion = [broken, panicking, completed])]
async fn hooks_break() -> u32 {
    7
}

#[tokio::test]
async fn a_failing_and_a_panicking_hook_leave_the_state_and_are_logged_on_the_run() {
    let (bus, memory) = recorder();
    // The run's value and state are untouched, and the hook after the broken ones still runs.
    assert_eq!(hooks_break().on(&bus).await.unwrap(), 7);
    assert_eq!(
        calls_for("hooks_break"),
        [
            ("broken", State::Completed, 1, None),
            ("panicking", State::Completed, 1, None),
            ("completed", State::Completed, 1, None),
        ]
    );
    let events = events(&bus, &memory).await;
    let run = common::only_run(&events, "hooks_break");
    assert_eq!(
        common::states(&events, run),
        [(State::Running, 1), (State::Completed, 1)]
    );
    let lines: Vec<_> = events
        .iter()
        .filter(|e| e.run_id() == Some(run))
        .filter_map(|e| match &e.kind {
            EventKind::Log(log) => Some(log.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.level == LogLevel::Error));
    assert!(lines.iter().all(|l| l.target == flowkit::HOOKS_TARGET));
    assert_eq!(
        lines[0].message,
        "on_completion hook `broken` failed: slack answered 500 (the run stays Completed)"
    );
    assert_eq!(
        lines[1].message,
        "on_completion hook `panicking` panicked: hook bug (the run stays Completed)"
    );
}

#[task(on_cancel = cancelled, on_failure = failed, on_completion = completed)]
async fn waits_long() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[flow(on_cancel = cancelled, on_completion = completed)]
async fn cancelled_flow() -> Result<(), RunError<std::convert::Infallible>> {
    waits_long().await
}

#[tokio::test(start_paused = true)]
async fn on_cancel_fires_once_for_the_flow_and_its_task_before_the_flow_ends() {
    let (bus, memory) = recorder();
    let handle = cancelled_flow().on(&bus).submit();
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.cancel();
    assert_eq!(handle.await.unwrap_err().state(), State::Cancelled);
    assert_eq!(calls_for("waits_long").len(), 1);
    assert_eq!(calls_for("waits_long")[0].0, "cancelled");
    assert_eq!(calls_for("waits_long")[0].1, State::Cancelled);
    assert_eq!(calls_for("cancelled_flow").len(), 1);
    assert_eq!(calls_for("cancelled_flow")[0].0, "cancelled");
    let events = events(&bus, &memory).await;
    let ends = assert_ends_in_order(&events);
    assert!(ends.values().all(|state| *state == State::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn on_cancel_fires_once_when_a_submitted_task_is_cancelled() {
    #[task(on_cancel = cancelled)]
    async fn dropped_task() {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let (bus, memory) = recorder();
    let handle = dropped_task().on(&bus).submit();
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.cancel();
    assert_eq!(handle.await.unwrap_err().state(), State::Cancelled);
    // The hook runs on its own task: the run is recorded once it is done.
    let events = loop {
        let events = events(&bus, &memory).await;
        if events.iter().any(|e| e.state() == Some(State::Cancelled)) {
            break events;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(
        calls_for("dropped_task"),
        [(
            "cancelled",
            State::Cancelled,
            1,
            Some("cancelled before it finished".into())
        )]
    );
    let run = common::only_run(&events, "dropped_task");
    assert_eq!(
        common::states(&events, run).last(),
        Some(&(State::Cancelled, 1))
    );
}

/// A flow's hooks see its parameters.
async fn flow_failed(run: &HookContext) {
    note("flow_failed", run);
    let day = run
        .parameters()
        .and_then(|p| p["day"].as_str())
        .map(str::to_string);
    CALLS
        .lock()
        .unwrap()
        .push(("parameters", run.name().to_string(), run.state(), 0, day));
}

#[flow(on_failure = flow_failed)]
async fn nightly(day: String) -> Result<(), String> {
    Err(format!("no data for {day}"))
}

#[tokio::test]
async fn a_flow_hook_sees_the_flow_runs_parameters_and_error() {
    let (bus, _memory) = recorder();
    nightly("2026-11-27".into()).on(&bus).await.unwrap_err();
    assert_eq!(
        calls_for("nightly"),
        [
            (
                "flow_failed",
                State::Failed,
                1,
                Some("no data for 2026-11-27".into())
            ),
            ("parameters", State::Failed, 0, Some("2026-11-27".into())),
        ]
    );
}

/// Hooks set from code, on options built by hand.
static BY_HAND: TaskOptions = TaskOptions::new("by_hand").with_hooks(Hooks {
    on_failure: &[flowkit::hook!(failed)],
    ..Hooks::NONE
});

#[tokio::test]
async fn hooks_set_from_code_fire_as_the_macros_do() {
    use flowkit::runtime::{Body, task};
    let (bus, _memory) = recorder();
    let call = task(
        &BY_HAND,
        Body::new(|| async { Err::<(), _>("bad input") }, |_: &_| true),
    );
    call.on(&bus).await.unwrap_err();
    assert_eq!(
        calls_for("by_hand"),
        [("failed", State::Failed, 1, Some("bad input".into()))]
    );
}

#[task(on_failure = failed, on_completion = completed)]
async fn never_starts() {}

#[tokio::test]
async fn a_skipped_run_calls_no_hook() {
    let (bus, _memory) = recorder();
    #[flow]
    async fn skipping() -> Result<(), RunError<String>> {
        let upstream = hooks_fail_upstream().submit();
        let _ = never_starts().wait_for([&upstream]).await;
        Ok(())
    }
    #[task]
    async fn hooks_fail_upstream() -> Result<(), String> {
        Err("down".into())
    }
    skipping().on(&bus).await.unwrap();
    assert!(calls_for("never_starts").is_empty());
}
