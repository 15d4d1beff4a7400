//! A run's state is right whatever order its events arrive in, and however often.

mod common;

use chrono::{Duration, Utc};
use common::{BACKENDS, TempDir};
use flowkit::State;
use flowkit::events::{Event, EventKind, RunType, StateChanged};
use flowkit_server::Store;
use uuid::Uuid;

fn change(flow: Uuid, task: Uuid, at: i64, state: State, attempt: u32) -> Event {
    Event {
        id: Uuid::now_v7(),
        timestamp: Utc::now() + Duration::milliseconds(at),
        flow_run_id: Some(flow),
        task_run_id: Some(task),
        kind: EventKind::StateChanged(StateChanged {
            state,
            attempt,
            message: None,
            next_attempt_at: None,
            result: None,
        }),
    }
}

#[tokio::test]
async fn late_and_repeated_events_leave_the_right_state() {
    for backend in BACKENDS {
        let dir = TempDir::new("ordering");
        let store = Store::open(&backend.database_url(dir.path()).await)
            .await
            .unwrap();
        let (flow, task) = (Uuid::now_v7(), Uuid::now_v7());
        let created = Event {
            id: Uuid::now_v7(),
            timestamp: Utc::now(),
            flow_run_id: Some(flow),
            task_run_id: Some(task),
            kind: common::run_created(RunType::Task, "extract", 2),
        };
        let running1 = change(flow, task, 1, State::Running, 1);
        let retrying1 = change(flow, task, 2, State::Retrying, 1);
        let running2 = change(flow, task, 3, State::Running, 2);
        let completed = change(flow, task, 4, State::Completed, 2);

        // The end arrives first, the creation last, one event twice.
        store
            .ingest(&[completed.clone(), running2.clone()])
            .await
            .unwrap();
        store
            .ingest(&[retrying1.clone(), running1.clone(), completed.clone()])
            .await
            .unwrap();
        let again = store
            .ingest(&[created.clone(), running2.clone()])
            .await
            .unwrap();
        assert_eq!((again.stored, again.duplicates), (1, 1), "{backend:?}");
        // The same new event twice in one batch: stored once.
        let twice = change(flow, Uuid::now_v7(), 5, State::Running, 1);
        let both = store.ingest(&[twice.clone(), twice.clone()]).await.unwrap();
        assert_eq!((both.stored, both.duplicates), (1, 1), "{backend:?}");

        let run = store.run(task).await.unwrap().expect("the run");
        assert_eq!(run.state, "Completed", "{backend:?}");
        assert_eq!(run.attempts, 2);
        assert_eq!(run.name.as_deref(), Some("extract"));
        assert_eq!(run.start, Some(running1.timestamp));
        assert_eq!(run.end, Some(completed.timestamp));

        // Before the end: a late Retrying of attempt 1 does not undo Running of attempt 2,
        // even with a later timestamp.
        let other = Uuid::now_v7();
        store
            .ingest(&[change(flow, other, 5, State::Running, 2)])
            .await
            .unwrap();
        store
            .ingest(&[change(flow, other, 9, State::Retrying, 1)])
            .await
            .unwrap();
        let run = store.run(other).await.unwrap().expect("the run");
        assert_eq!(run.state, "Running", "{backend:?}");
    }
}
