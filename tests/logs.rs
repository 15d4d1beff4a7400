//! `tracing` events inside runs become log events of the right run.

mod common;

use common::{events, only_run, recorder};
use flowkit::events::{EventKind, LogLevel};
use flowkit::{RunLogLayer, flow, task};
use tracing_subscriber::prelude::*;

#[task]
async fn extract(table: &'static str) -> usize {
    tracing::info!(rows = 42, "extracted {table}");
    42
}

#[task]
async fn load() {
    tracing::warn!("warehouse is slow");
}

#[flow]
async fn logged() {
    tracing::info!("starting");
    let a = extract("orders").submit();
    let _ = extract("customers").await;
    let _ = a.await;
    let _ = load().await;
}

#[tokio::test]
async fn logs_are_attached_to_the_run_that_emitted_them() {
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(RunLogLayer));
    let (bus, memory) = recorder();
    tracing::info!("outside any run: not recorded");
    logged().on(&bus).await.unwrap();
    let events = events(&bus, &memory).await;

    let flow_run = only_run(&events, "logged");
    let load_run = only_run(&events, "load");
    let logs: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Log(log) => Some((e, log)),
            _ => None,
        })
        .collect();
    assert_eq!(logs.len(), 4, "three task logs and one flow log");

    let flow_log = logs
        .iter()
        .find(|(_, l)| l.message == "starting")
        .expect("flow log");
    assert_eq!(flow_log.0.flow_run_id, Some(flow_run));
    assert_eq!(flow_log.0.task_run_id, None);

    let warn = logs
        .iter()
        .find(|(_, l)| l.level == LogLevel::Warn)
        .expect("warn log");
    assert_eq!(warn.0.task_run_id, Some(load_run));
    assert_eq!(warn.1.message, "warehouse is slow");

    // Each extract log names its own task run, and keeps its fields.
    for table in ["orders", "customers"] {
        let (event, log) = logs
            .iter()
            .find(|(_, l)| l.message == format!("extracted {table}"))
            .expect("an extract log");
        assert_eq!(log.fields["rows"], 42);
        let run = event.task_run_id.expect("attached to a task run");
        let created_name = events.iter().find_map(|e| match &e.kind {
            EventKind::RunCreated(c) if e.task_run_id == Some(run) => Some(c.name.to_string()),
            _ => None,
        });
        assert_eq!(created_name.as_deref(), Some("extract"));
        assert_eq!(event.flow_run_id, Some(flow_run));
    }
}

#[task]
async fn fan_out() -> Option<uuid::Uuid> {
    let inner = flowkit::spawn(async {
        tracing::info!("from a spawned future");
        flowkit::context().and_then(|c| c.task_run_id())
    });
    inner.await.expect("the spawned future")
}

#[flow]
async fn spawning() -> Option<uuid::Uuid> {
    fan_out().await.ok().flatten()
}

#[tokio::test]
async fn a_future_spawned_with_flowkit_spawn_logs_on_its_run() {
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(RunLogLayer));
    let (bus, memory) = recorder();
    let seen = spawning().on(&bus).await.unwrap();
    let events = events(&bus, &memory).await;
    let task_run = only_run(&events, "fan_out");
    assert_eq!(
        seen,
        Some(task_run),
        "context() answers inside the spawned future"
    );
    let log = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Log(l) if l.message == "from a spawned future"))
        .expect("the spawned future's log line was recorded");
    assert_eq!(log.task_run_id, Some(task_run));
}
