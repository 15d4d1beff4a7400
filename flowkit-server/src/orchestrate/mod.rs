//! Orchestration: the server creates deployments' runs ahead of time from their schedules
//! (`scheduler`), hands them to workers that long-poll for them (`routes/work.rs`), wakes those
//! polls when work appears on any server (`wake`), and records runs whose heartbeats stopped as
//! `Crashed`, making them again when their flow has retries left (`crashes`).
//!
//! Every server process runs the same loops against the same database; the database keeps
//! them from doing anything twice (a unique schedule slot per deployment and time, a claim
//! that updates only a run still `scheduled`, a heartbeat row deleted by one sweeper).

mod crashes;
mod scheduler;
mod wake;

use std::time::Duration;

use chrono::{DateTime, Utc};
use flowkit::State;
use flowkit::events::{Event, EventKind, StateChanged};
use uuid::Uuid;

pub use crashes::{flow_of, sweep_once};
pub use scheduler::{tick, tick_one};
pub use wake::{CHANNEL, Wake};

use crate::AppState;
use crate::store::{Store, StoreError};

/// The settings and shared parts of orchestration.
#[derive(Debug)]
pub struct Orchestra {
    /// Wakes long-polling workers when runs appear or cancels are asked for.
    pub wake: Wake,
    /// Wakes programs waiting for a concurrency slot when one is freed.
    pub limits: Wake,
    /// A run whose heartbeats stop for this long is recorded `Crashed`.
    pub heartbeat_timeout: Duration,
    /// How often the scheduler looks for schedules' runs to create.
    pub tick: Duration,
    /// When each worker's poll was last written down, and in what state: a worker polling
    /// many times a second is written at most once a second.
    seen: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, bool)>>,
}

impl Orchestra {
    /// Orchestration with these settings.
    pub fn new(heartbeat_timeout: Duration, tick: Duration) -> Orchestra {
        Orchestra {
            wake: Wake::new(),
            limits: Wake::new(),
            heartbeat_timeout,
            tick,
            seen: Default::default(),
        }
    }

    /// Whether a poll of `worker` (stopping or not) should be written down now.
    pub fn note_poll(&self, worker: &str, stopping: bool) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match seen.get(worker) {
            Some((at, was))
                if *was == stopping && now.duration_since(*at) < Duration::from_secs(1) =>
            {
                false
            }
            _ => {
                if seen.len() > 100_000 {
                    seen.clear();
                }
                seen.insert(worker.to_string(), (now, stopping));
                true
            }
        }
    }

    /// How long a worker's poll waits for work before answering empty: a third of the
    /// heartbeat timeout (polls are heartbeats), at most 10 s.
    pub fn poll_wait(&self) -> Duration {
        (self.heartbeat_timeout / 3).clamp(Duration::from_millis(50), Duration::from_secs(10))
    }
}

impl Default for Orchestra {
    fn default() -> Orchestra {
        Orchestra::new(Duration::from_secs(30), Duration::from_secs(5))
    }
}

/// Starts the loops of orchestration: the scheduler, the crash sweeper, and (on PostgreSQL)
/// the listener that brings other servers' wake-ups.
pub fn spawn(state: &AppState) {
    let orchestra = state.orchestra.clone();
    tokio::spawn(scheduler::run(state.clone()));
    tokio::spawn(crashes::run(state.clone()));
    if let Store::Postgres(store) = &state.store {
        tokio::spawn(wake::listen(store.pool().clone(), orchestra.clone()));
        tokio::spawn(crate::limits::listen(store.pool().clone(), orchestra));
        // Not orchestration, but the same kind of loop: other servers' revoked keys.
        tokio::spawn(crate::auth::listen(
            store.pool().clone(),
            state.access.clone(),
        ));
    }
}

/// Tells every waiting worker, on this server and (PostgreSQL) the others, that work changed.
pub async fn wake_all(state: &AppState) {
    state.orchestra.wake.wake();
    if let Err(error) = state.store.notify_work().await {
        tracing::warn!(%error, "could not tell the other servers about new work");
    }
}

/// Records `runs` (not yet ended) in `state`, with `message`: events like a program's, so the
/// state history shows them and a program's own later final state still wins over `Crashed`.
pub async fn record_state(
    store: &Store,
    runs: &[crate::store::work::Unfinished],
    state: State,
    message: &str,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let events: Vec<Event> = runs
        .iter()
        .map(|run| state_event(run, state, message, now))
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    store.ingest(&events).await.map(drop)
}

fn state_event(
    run: &crate::store::work::Unfinished,
    state: State,
    message: &str,
    now: DateTime<Utc>,
) -> Event {
    let task = run.run_type == "task";
    Event {
        id: Uuid::now_v7(),
        timestamp: now,
        flow_run_id: if task { run.flow_run_id } else { Some(run.id) },
        task_run_id: task.then_some(run.id),
        kind: EventKind::StateChanged(StateChanged {
            state,
            attempt: u32::try_from(run.attempts.max(1)).unwrap_or(1),
            message: Some(message.to_string()),
            next_attempt_at: None,
            result: None,
        }),
    }
}

/// Records a flow run that never started (cancelled before a worker took it) as `state`.
pub async fn record_unstarted(
    store: &Store,
    id: Uuid,
    state: State,
    message: &str,
) -> Result<(), StoreError> {
    let run = crate::store::work::Unfinished {
        id,
        run_type: "flow".into(),
        flow_run_id: None,
        attempts: 0,
    };
    record_state(store, &[run], state, message).await
}
