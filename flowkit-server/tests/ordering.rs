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

/// An event of run `task` (of flow run `flow`) at `at` ms from a fixed time.
fn at(flow: Uuid, task: Uuid, at: i64, kind: EventKind) -> Event {
    Event {
        id: Uuid::now_v7(),
        timestamp: chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + at).unwrap(),
        flow_run_id: Some(flow),
        task_run_id: Some(task),
        kind,
    }
}

fn state(state: State, attempt: u32) -> EventKind {
    EventKind::StateChanged(StateChanged {
        state,
        attempt,
        message: Some(format!("{state:?} {attempt}")),
        next_attempt_at: None,
        result: None,
    })
}

#[tokio::test]
async fn a_run_created_and_changed_in_one_batch_is_stored_as_event_by_event() {
    let (flow, fresh, early, twice, ancient) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let created = |name| common::run_created(RunType::Task, name, 1);
    // Sent before the batch: a state of `early`, before its creation.
    let before = vec![at(flow, early, 5, state(State::Running, 1))];
    let batch = vec![
        // Created, then changed: one row.
        at(flow, fresh, 0, created("fresh")),
        at(flow, fresh, 1, state(State::Running, 1)),
        at(flow, fresh, 2, state(State::Completed, 1)),
        // Its row exists already (the state sent before).
        at(flow, early, 3, created("early")),
        at(flow, early, 9, state(State::Failed, 1)),
        // Created twice (a resume), its attempts in between and after.
        at(flow, twice, 0, created("twice")),
        at(flow, twice, 1, state(State::Running, 1)),
        at(flow, twice, 2, state(State::Crashed, 1)),
        at(flow, twice, 10, created("twice")),
        at(flow, twice, 11, state(State::Running, 2)),
        // A state of attempt 0 from before 1970: the columns' defaults win over it.
        at(flow, ancient, 0, created("ancient")),
        Event {
            timestamp: chrono::DateTime::from_timestamp_millis(-5_000).unwrap(),
            ..at(flow, ancient, 0, state(State::Scheduled, 0))
        },
    ];
    for backend in BACKENDS {
        let dir = TempDir::new("one-batch");
        let (one, each) = (dir.path().join("one"), dir.path().join("each"));
        std::fs::create_dir_all(&one).unwrap();
        std::fs::create_dir_all(&each).unwrap();
        let one = Store::open(&backend.database_url(&one).await)
            .await
            .unwrap();
        let each = Store::open(&backend.database_url(&each).await)
            .await
            .unwrap();
        for store in [&one, &each] {
            store.ingest(&before).await.unwrap();
        }
        let stored = one.ingest(&batch).await.unwrap();
        assert_eq!(stored.stored, batch.len(), "{backend:?}");
        for event in &batch {
            each.ingest(std::slice::from_ref(event)).await.unwrap();
        }
        // (A run created twice in one batch takes its second creation's time, as before runs
        // were written once per batch: the first attempt's states are not applied yet when the
        // second creation is. Its state is compared below.)
        for run in [fresh, early, ancient] {
            let one = one.run(run).await.unwrap().expect("the run");
            let each = each.run(run).await.unwrap().expect("the run");
            assert_eq!(
                serde_json::to_value(&one).unwrap(),
                serde_json::to_value(&each).unwrap(),
                "{backend:?}"
            );
        }
        let (a, b) = (
            one.run(twice).await.unwrap().unwrap(),
            each.run(twice).await.unwrap().unwrap(),
        );
        assert_eq!(
            (a.state.as_str(), a.attempts, a.start),
            ("Running", 2, b.start)
        );
        assert_eq!((a.message, a.name), (b.message, b.name));
        let early = one.run(early).await.unwrap().unwrap();
        assert_eq!(
            (early.state.as_str(), early.name.as_deref()),
            ("Failed", Some("early"))
        );
    }
}
