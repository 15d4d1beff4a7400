//! The server is killed with SIGKILL during ingestion and restarted: no acknowledged event is
//! lost, none is stored twice.

mod common;

use chrono::Utc;
use common::{Server, TempDir};
use flowkit::State;
use flowkit::events::{Event, EventKind, StateChanged};
use uuid::Uuid;

fn batch(flow_run: Uuid, size: usize) -> Vec<Event> {
    (0..size)
        .map(|i| (i, Utc::now()))
        .map(|(i, at)| Event {
            id: common::id_at(at),
            timestamp: at,
            flow_run_id: Some(flow_run),
            task_run_id: Some(Uuid::now_v7()),
            kind: EventKind::StateChanged(StateChanged {
                state: State::Running,
                attempt: (i % 3) as u32 + 1,
                message: None,
                next_attempt_at: None,
                result: None,
            }),
        })
        .collect()
}

#[tokio::test]
async fn sigkill_during_ingestion_loses_no_acknowledged_event() {
    for backend in common::BACKENDS {
        sigkill(backend).await;
    }
}

async fn sigkill(backend: common::Backend) {
    let dir = TempDir::new("sigkill");
    let database = backend.database_url(dir.path()).await;
    let server = Server::start_with(&database, 0, &[]).await;
    let port = server.port;
    let url = format!("{}/api/events", server.url);
    let flow_run = Uuid::now_v7();
    let batches: Vec<Vec<Event>> = (0..400).map(|_| batch(flow_run, 250)).collect();

    // Post batches from a client; kill the server while they flow.
    let client = reqwest::Client::new();
    let poster = {
        let (client, url, batches) = (client.clone(), url.clone(), batches.clone());
        tokio::spawn(async move {
            let mut acknowledged = 0usize;
            for batch in &batches {
                match client.post(&url).json(batch).send().await {
                    Ok(response) if response.status().is_success() => acknowledged += 1,
                    _ => break,
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.kill().await;
    let acknowledged = poster.await.unwrap();
    assert!(
        acknowledged > 0,
        "some batches were acknowledged before the kill"
    );
    assert!(
        acknowledged < batches.len(),
        "the kill happened mid-ingestion"
    );

    // Restart on the same database: every acknowledged event is there.
    let server = Server::start_with(&database, port, &[]).await;
    let stored = server.event_count().await;
    assert!(
        stored >= (acknowledged * 250) as i64,
        "{stored} < {}",
        acknowledged * 250
    );

    // The client resends everything (it cannot know what the last, unanswered batch did): each
    // event is stored exactly once.
    for batch in &batches {
        let response = client.post(&url).json(batch).send().await.unwrap();
        assert!(response.status().is_success());
    }
    assert_eq!(server.event_count().await, 400 * 250);
}

#[tokio::test]
async fn concurrent_writers_never_see_a_locked_database() {
    for backend in common::BACKENDS {
        let dir = TempDir::new("writers");
        let database = backend.database_url(dir.path()).await;
        let server = Server::start_with(&database, 0, &[]).await;
        let url = format!("{}/api/events", server.url);
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let flow_run = Uuid::now_v7();
                    let mut statuses = Vec::new();
                    for _ in 0..40 {
                        let response = client.post(&url).json(&batch(flow_run, 200)).send().await;
                        statuses.push(response.map(|r| r.status().as_u16()).unwrap_or(0));
                    }
                    statuses
                })
            })
            .collect();
        for writer in writers {
            let statuses = writer.await.unwrap();
            assert!(
                statuses.iter().all(|s| *s == 200),
                "{backend:?}: {statuses:?}"
            );
        }
        assert_eq!(server.event_count().await, 8 * 40 * 200, "{backend:?}");
    }
}
