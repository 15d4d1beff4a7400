//! Flows: parameters, child flows, the full event sequence, flow retries, the run context,
//! errors with `?`, and tasks outside any flow.

mod common;

use common::{created, events, only_run, recorder, states};
use flowkit::events::{EventKind, RunType};
use flowkit::{RunError, State, flow, task};

#[task(retries = 1, retry_delay = 0, tags = ["api", "orders"])]
async fn flaky_once() -> Result<u32, String> {
    let ctx = flowkit::context().expect("in a task");
    if ctx.attempt() == 1 {
        Err("first attempt fails".into())
    } else {
        Ok(7)
    }
}

/// Adds up the day.
#[flow(name = "parent-flow", tags = ["daily"])]
async fn parent(day: String, limit: u32) -> anyhow::Result<u32> {
    tracing::info!(%day, "adding up");
    let x = flaky_once().await?;
    let y = child(limit).await?;
    Ok(x + y)
}

#[flow]
async fn child(limit: u32) -> u32 {
    limit * 2
}

#[tokio::test(start_paused = true)]
async fn a_flow_records_parameters_and_the_full_event_sequence() {
    let (bus, memory) = recorder();
    let out = parent("2026-11-26".into(), 5).on(&bus).await.unwrap();
    assert_eq!(out, 17);
    let events = events(&bus, &memory).await;

    let parent_runs = created(&events, "parent-flow");
    let (parent_event, parent_created) = parent_runs[0];
    let parent_id = parent_event.flow_run_id.expect("a flow run id");
    assert_eq!(parent_created.run_type, RunType::Flow);
    assert_eq!(
        parent_created.parameters,
        Some(serde_json::json!({"day": "2026-11-26", "limit": 5}))
    );
    assert_eq!(
        parent_created.description.as_deref(),
        Some("Adds up the day.")
    );
    assert_eq!(parent_created.tags.as_ref(), ["daily"]);

    // The task run belongs to the flow run, and carries its options.
    let task_runs = created(&events, "flaky_once");
    let (task_event, task_created) = task_runs[0];
    assert_eq!(task_event.flow_run_id, Some(parent_id));
    assert_eq!(task_created.tags.as_ref(), ["api", "orders"]);
    assert_eq!(task_created.retries, 1);

    // The child flow run is linked to its parent.
    let child_runs = created(&events, "child");
    let (child_event, child_created) = child_runs[0];
    assert_eq!(child_created.parent_flow_run_id, Some(parent_id));
    assert_ne!(child_event.flow_run_id, Some(parent_id));

    // Every event in order: ids are unique and timestamps never go back.
    let task_id = task_event.task_run_id.unwrap();
    let child_id = child_event.flow_run_id.unwrap();
    let sequence: Vec<(String, Option<State>)> = events
        .iter()
        .map(|e| {
            let who = if e.task_run_id == Some(task_id) {
                "task"
            } else if e.flow_run_id == Some(child_id) {
                "child"
            } else {
                "parent"
            };
            let what = match &e.kind {
                EventKind::RunCreated(_) => None,
                EventKind::StateChanged(s) => Some(s.state),
                EventKind::Log(_) => Some(State::Scheduled),
            };
            (who.to_string(), what)
        })
        .collect();
    let expected: Vec<(String, Option<State>)> = [
        ("parent", None),
        ("parent", Some(State::Running)),
        ("task", None),
        ("task", Some(State::Running)),
        ("task", Some(State::Retrying)),
        // flowkit's log line saying so (logs are marked `Scheduled` here).
        ("task", Some(State::Scheduled)),
        ("task", Some(State::Running)),
        ("task", Some(State::Completed)),
        ("child", None),
        ("child", Some(State::Running)),
        ("child", Some(State::Completed)),
        ("parent", Some(State::Completed)),
    ]
    .into_iter()
    .map(|(w, s)| (w.to_string(), s))
    .collect();
    assert_eq!(sequence, expected);
    let mut ids: Vec<_> = events.iter().map(|e| e.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), events.len());
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert!(events.iter().all(|e| e.id.get_version_num() == 7));
    // The retry message is the task's own error.
    let retrying = events.iter().find_map(|e| match &e.kind {
        EventKind::StateChanged(s) if s.state == State::Retrying => s.message.clone(),
        _ => None,
    });
    assert_eq!(retrying.as_deref(), Some("first attempt fails"));
}

/// Flow name, task name, attempt, and whether the innermost run is the task run.
type WhoAmI = (Option<String>, Option<String>, u32, bool);

#[task]
async fn whoami() -> WhoAmI {
    let ctx = flowkit::context().expect("in a task");
    (
        ctx.flow_name().map(String::from),
        ctx.task_name().map(String::from),
        ctx.attempt(),
        ctx.task_run_id() == Some(ctx.run_id()),
    )
}

#[flow(retries = 2, retry_delay = "1m")]
async fn retried_flow(fail_times: u32) -> Result<(u32, WhoAmI), String> {
    let ctx = flowkit::context().expect("in a flow");
    assert_eq!(ctx.parameters().unwrap()["fail_times"], fail_times);
    let me = whoami().await.map_err(|e| e.to_string())?;
    if ctx.attempt() <= fail_times {
        return Err(format!("attempt {} fails", ctx.attempt()));
    }
    Ok((ctx.attempt(), me))
}

#[tokio::test(start_paused = true)]
async fn a_flow_retries_its_whole_body_and_context_tells_who_runs() {
    let (bus, memory) = recorder();
    let start = tokio::time::Instant::now();
    let (attempt, me) = retried_flow(2).on(&bus).await.unwrap();
    assert_eq!(attempt, 3);
    assert_eq!(start.elapsed(), std::time::Duration::from_secs(120));
    assert_eq!(
        me,
        (Some("retried_flow".into()), Some("whoami".into()), 1, true)
    );
    let events = events(&bus, &memory).await;
    let run = only_run(&events, "retried_flow");
    assert_eq!(states(&events, run).last(), Some(&(State::Completed, 3)));
    // Each attempt ran the task again.
    assert_eq!(created(&events, "whoami").len(), 3);
}

#[derive(Debug, thiserror::Error)]
enum PipelineError {
    #[error("extract failed: {0}")]
    Extract(#[from] RunError<std::io::Error>),
}

#[task]
async fn read_source() -> std::io::Result<u32> {
    Err(std::io::Error::other("disk gone"))
}

async fn with_own_error() -> Result<u32, PipelineError> {
    Ok(read_source().await?)
}

async fn with_anyhow() -> anyhow::Result<u32> {
    Ok(read_source().await?)
}

#[tokio::test]
async fn run_errors_convert_with_question_mark() {
    let own = with_own_error().await.expect_err("fails");
    let PipelineError::Extract(run_error) = own;
    assert_eq!(
        run_error.error().map(|e| e.to_string()).as_deref(),
        Some("disk gone")
    );

    let any = with_anyhow().await.expect_err("fails");
    let run_error = any
        .downcast_ref::<RunError<std::io::Error>>()
        .expect("the RunError is inside");
    assert_eq!(run_error.name(), "read_source");
    assert_eq!(
        any.to_string(),
        "task `read_source` failed after 1 attempt: disk gone"
    );
}

#[task]
async fn standalone(x: u32) -> u32 {
    assert!(flowkit::context().unwrap().flow_run_id().is_none());
    x + 1
}

#[tokio::test]
async fn a_task_outside_any_flow_is_its_own_tracked_run() {
    let (bus, memory) = recorder();
    assert_eq!(standalone(1).on(&bus).await.unwrap(), 2);
    let events = events(&bus, &memory).await;
    let run = only_run(&events, "standalone");
    assert!(events.iter().all(|e| e.flow_run_id.is_none()));
    assert_eq!(
        states(&events, run),
        [(State::Running, 1), (State::Completed, 1)]
    );
}

#[tokio::test]
async fn a_flow_called_from_a_task_is_a_child_of_that_task_run() {
    #[task]
    async fn launches() -> u32 {
        child(4).await.unwrap_or(0)
    }
    #[flow]
    async fn outer() -> u32 {
        launches().await.unwrap_or(0)
    }
    let (bus, memory) = recorder();
    assert_eq!(outer().on(&bus).await.unwrap(), 8);
    let events = events(&bus, &memory).await;
    let task_run = only_run(&events, "launches");
    let outer_run = only_run(&events, "outer");
    let (_, child_created) = created(&events, "child")[0];
    assert_eq!(child_created.parent_task_run_id, Some(task_run));
    assert_eq!(child_created.parent_flow_run_id, Some(outer_run));
}

#[tokio::test]
async fn events_round_trip_through_json() {
    let (bus, memory) = recorder();
    parent("2026-11-27".into(), 1).on(&bus).await.unwrap();
    for event in events(&bus, &memory).await {
        let json = serde_json::to_string(&event).unwrap();
        let back: flowkit::events::Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }
}

/// Arguments with their own lifetimes (`fn(&str)`, `impl Fn(&T)`) and attributes.
#[task]
async fn parse_all(
    lines: Vec<String>,
    parse: fn(&str) -> usize,
    keep: impl Fn(&usize) -> bool + Send,
    #[allow(unused_variables)] label: &str,
) -> usize {
    tracing::debug!(label);
    lines
        .iter()
        .map(|l| parse(l.as_str()))
        .filter(|n| keep(n))
        .sum()
}

#[tokio::test]
async fn tasks_take_function_arguments() {
    let (bus, _memory) = recorder();
    let lines = vec!["a".to_string(), "bbb".to_string(), "cc".to_string()];
    let total = parse_all(lines, str::len, |n| *n > 1, "lengths")
        .on(&bus)
        .await
        .unwrap();
    assert_eq!(total, 5);
}

#[task]
async fn opaque() -> impl std::fmt::Display {
    42
}

#[tokio::test]
async fn a_task_may_return_impl_trait() {
    let (bus, _memory) = recorder();
    assert_eq!(opaque().on(&bus).await.unwrap().to_string(), "42");
}
