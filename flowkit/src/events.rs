//! The one event schema shared by the runtime, the sinks and the server.
//!
//! Every change of every run is an [`Event`]: a run was created, a run changed state, or a run
//! logged a line. A run's current state is derived from its events, so they may be stored, sent
//! and replayed in any order; the id (a UUID v7) makes ingestion idempotent and sorts by time.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::State;

/// One thing that happened to a run.
///
/// ```
/// use flowkit::events::{Event, EventKind};
/// let json = r#"{"id":"01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e00","timestamp":"2026-11-27T02:00:00Z",
///   "flow_run_id":"01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01","task_run_id":null,
///   "kind":{"type":"state_changed","state":"Running","attempt":1}}"#;
/// let event: Event = serde_json::from_str(json).unwrap();
/// assert!(matches!(event.kind, EventKind::StateChanged(ref s) if s.attempt == 1));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id (UUID v7): ids sort by the millisecond they were made in.
    pub id: Uuid,
    /// When it happened (UTC, nanosecond precision).
    pub timestamp: DateTime<Utc>,
    /// The flow run it belongs to: the run itself for flow events, the enclosing flow run for
    /// task events, `None` for a task run started outside any flow.
    pub flow_run_id: Option<Uuid>,
    /// The task run, for task events.
    pub task_run_id: Option<Uuid>,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// The id of the run this event is about: the task run if there is one, else the flow run.
    pub fn run_id(&self) -> Option<Uuid> {
        self.task_run_id.or(self.flow_run_id)
    }

    /// The state this event moves its run to, if it is a state change.
    pub fn state(&self) -> Option<State> {
        match &self.kind {
            EventKind::StateChanged(change) => Some(change.state),
            _ => None,
        }
    }
}

/// The three kinds of event. The large ones are shared (`Arc`), so a sink that keeps events
/// clones them cheaply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A run was created; it is `Pending` until its first `Running`.
    RunCreated(Arc<RunCreated>),
    /// A run changed state.
    StateChanged(StateChanged),
    /// A run logged a line through `tracing`.
    Log(Arc<LogRecord>),
}

/// Whether a run is a flow run or a task run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    /// A run of a `#[flow]`.
    Flow,
    /// A run of a `#[task]`.
    Task,
}

/// The facts fixed when a run is created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunCreated {
    /// Flow or task.
    pub run_type: RunType,
    /// The flow's or task's name.
    pub name: Cow<'static, str>,
    /// The flow run's human-readable name (`etl-2026-11-28`, `brave-otter`); flows only. Events
    /// written before run names existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_name: Option<String>,
    /// The doc comment of the flow (task events leave it out to stay small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Cow<'static, str>>,
    /// The flow's parameters, as JSON; for a task run, its call's arguments when its task or flow
    /// records them (`record_arguments = true`), by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// Tags from the options.
    #[serde(default)]
    pub tags: Cow<'static, [Cow<'static, str>]>,
    /// For a child flow run, the flow run that called it.
    #[serde(default)]
    pub parent_flow_run_id: Option<Uuid>,
    /// For a run started inside a task run, that task run.
    #[serde(default)]
    pub parent_task_run_id: Option<Uuid>,
    /// Runs this one waited for (`wait_for`).
    #[serde(default)]
    pub upstream: Vec<Uuid>,
    /// The position of the item, for a task run made by `map`.
    #[serde(default)]
    pub map_index: Option<u64>,
    /// How many retries the run may make after its first attempt.
    #[serde(default)]
    pub retries: u32,
    /// For a flow run a deployment started: which, when it was due, and its data interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<Box<Scheduled>>,
}

/// A deployment's run, as recorded with the flow run it started.
///
/// ```
/// use flowkit::events::Scheduled;
/// let json = r#"{"deployment":"nightly","scheduled_at":"2026-11-27T02:00:00Z",
///   "interval_start":"2026-11-26T02:00:00Z","interval_end":"2026-11-27T02:00:00Z"}"#;
/// let scheduled: Scheduled = serde_json::from_str(json).unwrap();
/// assert_eq!(scheduled.deployment, "nightly");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    /// The deployment's name.
    pub deployment: String,
    /// When the run was due.
    pub scheduled_at: DateTime<Utc>,
    /// The start of the data interval the run is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_start: Option<DateTime<Utc>>,
    /// The end of the data interval (usually the scheduled time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_end: Option<DateTime<Utc>>,
}

/// A run's move to a new state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateChanged {
    /// The new state.
    pub state: State,
    /// The attempt this state belongs to (1-based); for `Retrying`, the attempt that failed.
    pub attempt: u32,
    /// The error of a failed attempt or run, or why it was cancelled or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `Retrying`, when the next attempt starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// For the end of a task run whose result was persisted (`Completed`) or reused
    /// (`Cached`): where the result is. Boxed: the runs that persist nothing carry one pointer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<ResultLocation>>,
}

/// Where a persisted task result is: the store, its key there, and, where the store packs
/// small results into a larger object, that object.
///
/// ```
/// use flowkit::events::ResultLocation;
/// let json = r#"{"store":"/data/results","key":"runs/0193a3e1-59c7-7a4e-9d53-1c3b2f0e5a11/tasks/load-0-ab12.json",
///   "packed_in":"runs/0193a3e1-59c7-7a4e-9d53-1c3b2f0e5a11/tasks.pack"}"#;
/// let location: ResultLocation = serde_json::from_str(json).unwrap();
/// assert_eq!(location.object(), "runs/0193a3e1-59c7-7a4e-9d53-1c3b2f0e5a11/tasks.pack");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultLocation {
    /// The result store: a local directory, or a URL (`s3://bucket/prefix`, `file:///data`).
    pub store: String,
    /// The result's key in the store (`runs/<flow run>/tasks/<call>.json`, `cache/<key>.json`).
    pub key: String,
    /// The object that holds it, when the store packs it with others (the local store packs a
    /// flow run's small task results into `runs/<flow run>/tasks.pack`, a record named by the
    /// key's last part); none when the result is an object of its own, at `key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed_in: Option<String>,
}

impl ResultLocation {
    /// The key of the object that holds the result: `packed_in` if it is packed, else `key`.
    pub fn object(&self) -> &str {
        self.packed_in.as_deref().unwrap_or(&self.key)
    }
}

/// The level of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// `tracing::Level::TRACE`
    Trace,
    /// `tracing::Level::DEBUG`
    Debug,
    /// `tracing::Level::INFO`
    Info,
    /// `tracing::Level::WARN`
    Warn,
    /// `tracing::Level::ERROR`
    Error,
}

impl From<tracing::Level> for LogLevel {
    fn from(level: tracing::Level) -> Self {
        match level {
            tracing::Level::TRACE => LogLevel::Trace,
            tracing::Level::DEBUG => LogLevel::Debug,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::ERROR => LogLevel::Error,
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        })
    }
}

/// A `tracing` event emitted inside a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// Its target (usually the module path).
    pub target: String,
    /// The `message` field.
    pub message: String,
    /// The other fields, as JSON.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Display for RunType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunType::Flow => "flow",
            RunType::Task => "task",
        })
    }
}
