//! Task arguments recorded as a task run's parameters: with `#[task(record_arguments = true)]`,
//! inherited from `#[flow(record_arguments = true)]` (a task's own option winning), absent by
//! default, and capped at 16 KiB of JSON without failing the run.

use flowkit::{flow, task};
use serde_json::json;

#[derive(Clone, serde::Serialize)]
struct Window {
    day: String,
    shard: u32,
}

#[task(record_arguments = true)]
async fn extract(window: Window, limit: u32) -> u32 {
    window.shard + limit
}

#[task]
async fn quiet(rows: u32) -> u32 {
    rows
}

#[task(record_arguments = false)]
async fn secret(token: String) -> usize {
    token.len()
}

/// Not `Serialize`: recorded by its type's name when the flow asks for every argument.
struct Client;

#[task]
async fn with_client(client: &Client, day: u32) -> u32 {
    let _ = client;
    day
}

#[task(record_arguments = true)]
async fn load(table: &str, rows: Vec<u32>) -> usize {
    let _ = table;
    rows.len()
}

#[task(record_arguments = true)]
async fn ping() {}

#[flow]
async fn plain_flow() -> u32 {
    quiet(5).await.unwrap()
        + extract(
            Window {
                day: "2026-11-28".into(),
                shard: 3,
            },
            10,
        )
        .await
        .unwrap()
}

#[flow(record_arguments = true)]
async fn recording_flow() -> usize {
    let client = Client;
    let mapped = flowkit::map([1, 2], quiet).await;
    with_client(&client, 28).await.unwrap() as usize
        + secret("hunter2".into()).await.unwrap()
        + mapped.len()
}

#[tokio::test]
async fn a_task_records_its_arguments_with_the_option_only() {
    let (result, events) = flowkit::testing::capture(plain_flow).await;
    assert_eq!(result.unwrap(), 18);
    let extract = events.runs_named("extract")[0];
    assert_eq!(
        events.parameters(extract),
        Some(json!({"window": {"day": "2026-11-28", "shard": 3}, "limit": 10}))
    );
    let quiet = events.runs_named("quiet")[0];
    assert_eq!(events.parameters(quiet), None, "not recorded by default");
}

#[tokio::test]
async fn a_flow_records_its_tasks_arguments_unless_a_task_says_no() {
    let (result, events) = flowkit::testing::capture(recording_flow).await;
    assert_eq!(result.unwrap(), 28 + 7 + 2);
    let mapped: Vec<_> = events
        .runs_named("quiet")
        .into_iter()
        .map(|run| events.parameters(run))
        .collect();
    assert_eq!(mapped, [Some(json!({"rows": 1})), Some(json!({"rows": 2}))]);
    assert_eq!(
        events.parameters(events.runs_named("with_client")[0]),
        Some(json!({"client": "<not serializable: &arguments::Client>", "day": 28}))
    );
    assert_eq!(
        events.parameters(events.runs_named("secret")[0]),
        None,
        "the task's own `false` wins"
    );
    // The flow's own parameters are as always: it takes none.
    assert_eq!(
        events.parameters(events.runs_named("recording_flow")[0]),
        Some(json!({}))
    );
}

#[tokio::test]
async fn arguments_over_the_cap_are_a_marker_and_the_run_completes() {
    let rows: Vec<u32> = (0..10_000).collect();
    let (result, events) = flowkit::testing::capture(|| load("orders", rows.clone())).await;
    assert_eq!(result.unwrap(), 10_000);
    let run = events.runs_named("load")[0];
    assert_eq!(
        events.states(run),
        [flowkit::State::Running, flowkit::State::Completed]
    );
    let size = serde_json::to_string(&rows).unwrap().len();
    assert!(size > flowkit::ARGUMENTS_CAP, "{size}");
    assert_eq!(
        events.parameters(run),
        Some(json!({
            "table": "orders",
            "rows": format!("<truncated: {size} bytes of JSON, over the 16 KiB cap>"),
        }))
    );
}

#[tokio::test]
async fn a_task_without_arguments_records_an_empty_object() {
    let (_, events) = flowkit::testing::capture(ping).await;
    assert_eq!(
        events.parameters(events.runs_named("ping")[0]),
        Some(json!({}))
    );
}
