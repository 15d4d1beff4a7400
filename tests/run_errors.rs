//! A flow whose error is a task's `RunError` (after `?`): reading it one level down.

use std::time::Duration;

use flowkit::events::RunType;
use flowkit::{RunError, State, flow, task};

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("HTTP {0}")]
struct ApiError(u16);

#[task]
async fn extract() -> Result<u32, ApiError> {
    Err(ApiError(503))
}

#[task]
async fn load(rows: u32) -> Result<u32, ApiError> {
    Ok(rows)
}

#[flow]
async fn etl_upstream() -> Result<u32, RunError<ApiError>> {
    let rows = extract().submit();
    load(0).wait_for([&rows]).await
}

#[flow]
async fn etl_failed() -> Result<u32, RunError<ApiError>> {
    extract().await
}

#[flow(timeout = "1s")]
async fn etl_slow() -> Result<u32, RunError<ApiError>> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    load(1).await
}

#[flow]
async fn outer() -> Result<u32, RunError<RunError<ApiError>>> {
    etl_failed().await
}

#[tokio::test(start_paused = true)]
async fn flatten_gives_the_skipped_task() {
    let (result, events) = flowkit::testing::capture(etl_upstream).await;
    let nested = result.unwrap_err();
    // The flow itself failed, with the task's error as its own.
    assert_eq!(nested.state(), State::Failed);
    assert!(!nested.is_upstream_failed());
    let flow_run = nested.run_id();
    assert_eq!(events.runs_named("etl_upstream"), [flow_run]);

    let error = nested.flatten();
    assert!(error.is_upstream_failed());
    assert_eq!(error.name(), "load");
    assert_eq!(error.state(), State::Skipped);
    let extract_run = events.runs_named("extract")[0];
    assert_eq!(error.upstream(), Some((extract_run, State::Failed)));
    assert_eq!(events.states(error.run_id()), [State::Skipped]);
}

#[tokio::test(start_paused = true)]
async fn flatten_gives_the_task_error_value() {
    let (result, _) = flowkit::testing::capture(etl_failed).await;
    match result.map_err(RunError::flatten) {
        Err(RunError::Failed {
            run_type,
            name,
            error,
            attempts,
            ..
        }) => {
            assert_eq!((run_type, &*name, attempts), (RunType::Task, "extract", 1));
            assert_eq!(error, ApiError(503));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_flow_failing_for_its_own_reason_stays_itself() {
    let (result, _) = flowkit::testing::capture(etl_slow).await;
    let error = result.unwrap_err().flatten();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(error.name(), "etl_slow");
    assert_eq!(error.upstream(), None);
}

#[tokio::test(start_paused = true)]
async fn deeper_nesting_flattens_one_level_per_call() {
    let (result, _) = flowkit::testing::capture(outer).await;
    let error: RunError<RunError<RunError<ApiError>>> = result.unwrap_err();
    assert_eq!(error.name(), "outer");
    let error = error.flatten();
    assert_eq!(error.name(), "etl_failed");
    let error = error.flatten();
    assert_eq!(error.name(), "extract");
    assert_eq!(error.error(), Some(&ApiError(503)));
}
