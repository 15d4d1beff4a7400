//! Retention deletes old runs and their events, and keeps the rest.

mod common;

use chrono::{Duration, Utc};
use common::{BACKENDS, TempDir};
use flowkit::State;
use flowkit::events::{Event, EventKind, RunType, StateChanged};
use flowkit_server::Store;
use uuid::Uuid;

/// The events of a flow run made `days_ago` days ago.
fn flow_run(days_ago: i64) -> (Uuid, Vec<Event>) {
    let at = Utc::now() - Duration::days(days_ago);
    let flow = common::id_at(at);
    let id = |offset: i64| common::id_at(at + Duration::milliseconds(offset));
    let created = Event {
        id: id(0),
        timestamp: at,
        flow_run_id: Some(flow),
        task_run_id: None,
        kind: common::run_created(RunType::Flow, "nightly", 0),
    };
    let done = Event {
        id: id(5),
        timestamp: at + Duration::milliseconds(5),
        flow_run_id: Some(flow),
        task_run_id: None,
        kind: EventKind::StateChanged(StateChanged {
            state: State::Completed,
            attempt: 1,
            message: None,
            next_attempt_at: None,
            result: None,
        }),
    };
    (flow, vec![created, done])
}

#[tokio::test]
async fn retention_deletes_old_runs_and_their_events() {
    for backend in BACKENDS {
        let dir = TempDir::new("retention");
        let store = Store::open(&backend.database_url(dir.path()).await)
            .await
            .unwrap();
        let (old, old_events) = flow_run(40);
        let (new, new_events) = flow_run(1);
        store.ingest(&old_events).await.unwrap();
        store.ingest(&new_events).await.unwrap();
        let cutoff = (Utc::now() - Duration::days(30))
            .timestamp_nanos_opt()
            .unwrap();
        let deleted = store.delete_before(cutoff).await.unwrap();
        assert_eq!(deleted, 1, "{backend:?}");
        assert!(store.run(old).await.unwrap().is_none());
        assert!(store.run(new).await.unwrap().is_some());
        let counts = store.counts().await.unwrap();
        assert_eq!((counts.events, counts.runs), (2, 1), "{backend:?}");
    }
}
