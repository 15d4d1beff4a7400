//! The runtime's own log lines (a failed attempt and its retry, a timeout, a panic, a cancel,
//! `retry_if` refusing) and run names, as `flowkit::testing::capture` records them.

use std::time::Duration;

use flowkit::events::{EventKind, LogLevel};
use flowkit::{MemorySink, RETRY_IF_TARGET, RUNTIME_TARGET, flow, task};
use uuid::Uuid;

#[task(retries = 2, retry_delay = "150ms")]
async fn extract_orders() -> Result<u32, String> {
    let attempt = flowkit::context().map_or(1, |c| c.attempt());
    if attempt < 3 {
        return Err(format!("source answered 503 (attempt {attempt})"));
    }
    Ok(7)
}

#[task(retries = 1, timeout = "50ms")]
async fn slow() {
    tokio::time::sleep(Duration::from_secs(10)).await;
}

#[task]
async fn explode() {
    panic!("boom at row 12");
}

// `retry_if` is given `&E`, and `E` is `String` here.
#[allow(clippy::ptr_arg)]
fn is_server_error(error: &String) -> bool {
    error.starts_with('5')
}

#[task(retries = 5, retry_if = is_server_error)]
async fn lookup() -> Result<(), String> {
    Err("404 no such customer".into())
}

/// (level, target, message) of every log line of `run`.
fn lines(events: &MemorySink, run: Uuid) -> Vec<(LogLevel, String, String)> {
    events
        .logs(run)
        .iter()
        .map(|l| (l.level, l.target.clone(), l.message.clone()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_retried_503_says_so_at_warn_with_its_delay() {
    let (result, events) = flowkit::testing::capture(extract_orders).await;
    assert_eq!(result.unwrap(), 7);
    let run = events.runs_named("extract_orders")[0];
    assert_eq!(
        lines(&events, run),
        [
            (
                LogLevel::Warn,
                RUNTIME_TARGET.to_string(),
                "Attempt 1 of 3 failed: source answered 503 (attempt 1); retrying in 150ms".into()
            ),
            (
                LogLevel::Warn,
                RUNTIME_TARGET.to_string(),
                "Attempt 2 of 3 failed: source answered 503 (attempt 2); retrying in 150ms".into()
            ),
        ],
        "a run that ended Completed has no end line"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_a_warning_then_an_error_when_retries_are_spent() {
    let (result, events) = flowkit::testing::capture(slow).await;
    assert!(result.is_err());
    let run = events.runs_named("slow")[0];
    assert_eq!(
        lines(&events, run),
        [
            (
                LogLevel::Warn,
                RUNTIME_TARGET.to_string(),
                "Attempt 1 of 2 timed out after 50ms; retrying now".into()
            ),
            (
                LogLevel::Error,
                RUNTIME_TARGET.to_string(),
                "Finished in state TimedOut after 2 attempts: timed out after 50ms".into()
            ),
        ]
    );
}

#[tokio::test]
async fn a_panic_is_an_error_line_with_its_message() {
    let (result, events) = flowkit::testing::capture(explode).await;
    assert!(result.is_err());
    let run = events.runs_named("explode")[0];
    let lines = lines(&events, run);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, LogLevel::Error);
    assert!(
        lines[0]
            .2
            .starts_with("Finished in state Crashed after 1 attempt:")
            && lines[0].2.contains("boom at row 12"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn retry_if_refusing_says_so_before_the_failure() {
    let (result, events) = flowkit::testing::capture(lookup).await;
    assert!(result.is_err());
    let run = events.runs_named("lookup")[0];
    assert_eq!(
        lines(&events, run),
        [
            (
                LogLevel::Warn,
                RETRY_IF_TARGET.to_string(),
                "retry_if refused to retry: attempt 1 of 6 failed with an error it does not retry (404 no such customer); 5 retries left unused".into()
            ),
            (
                LogLevel::Error,
                RUNTIME_TARGET.to_string(),
                "Finished in state Failed after 1 attempt: 404 no such customer".into()
            ),
        ]
    );
}

#[task]
async fn forever() {
    std::future::pending::<()>().await;
}

#[flow(name = "cancelled-flow")]
async fn cancelled_flow() {
    let _ = forever().await;
}

#[tokio::test]
async fn a_cancel_is_a_warning_of_the_run_and_of_the_runs_under_it() {
    let (_, events) = flowkit::testing::capture(|| async {
        let handle = cancelled_flow().submit();
        tokio::time::sleep(Duration::from_millis(50)).await;
        handle.cancel();
        let _ = handle.await;
    })
    .await;
    for name in ["cancelled-flow", "forever"] {
        let run = events.runs_named(name)[0];
        let lines = lines(&events, run);
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        assert_eq!(lines[0].0, LogLevel::Warn, "{name}");
        assert!(
            lines[0].2.starts_with("Finished in state Cancelled"),
            "{name}: {lines:?}"
        );
    }
}

#[flow(name = "named-etl", run_name = "etl-{day}-{shard}")]
async fn named(day: String, shard: u32) -> String {
    format!("{day}/{shard}")
}

#[flow(name = "unnamed-etl")]
async fn unnamed() {}

fn run_name_of(events: &MemorySink, run: Uuid) -> Option<String> {
    events.events().into_iter().find_map(|e| match &e.kind {
        EventKind::RunCreated(created) if e.flow_run_id == Some(run) && e.task_run_id.is_none() => {
            created.run_name.clone()
        }
        _ => None,
    })
}

#[tokio::test]
async fn a_flow_run_is_named_by_its_template_or_a_generated_name() {
    let (_, events) = flowkit::testing::capture(|| named("2026-11-28".into(), 3)).await;
    let run = events.runs_named("named-etl")[0];
    assert_eq!(
        run_name_of(&events, run).as_deref(),
        Some("etl-2026-11-28-3")
    );

    let (_, events) = flowkit::testing::capture(unnamed).await;
    let run = events.runs_named("unnamed-etl")[0];
    let name = run_name_of(&events, run).expect("a generated name");
    assert_eq!(name, flowkit::run_name::generated(run));
    let words: Vec<&str> = name.split('-').collect();
    assert!(
        words.len() == 2
            && words
                .iter()
                .all(|w| w.chars().all(|c| c.is_ascii_lowercase())),
        "{name}"
    );
}

#[test]
fn old_events_without_a_run_name_still_parse() {
    let json = r#"{"id":"01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e00","timestamp":"2026-11-27T02:00:00Z",
      "flow_run_id":"01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01","task_run_id":null,
      "kind":{"type":"run_created","run_type":"flow","name":"etl"}}"#;
    let event: flowkit::events::Event = serde_json::from_str(json).expect("parses");
    match event.kind {
        EventKind::RunCreated(created) => assert_eq!(created.run_name, None),
        other => panic!("{other:?}"),
    }
}
