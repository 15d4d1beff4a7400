//! Orchestration messages: runs the server creates (scheduled, triggered, backfilled), workers
//! claiming them, heartbeats, cancels.
//!
//! The flow of a run the server owns:
//! 1. The server creates it: from a deployment's schedule (ahead of time, at most one per
//!    deployment and scheduled time), from a trigger (`POST /api/deployments/{name}/runs`, a
//!    [`TriggerRequest`]), or from a backfill. It shows as `Scheduled` at once.
//! 2. A worker (a program calling `flowkit::serve` with `FLOWKIT_API_URL` set) long-polls
//!    `POST /api/workers/{worker}/poll` with a [`PollRequest`]; the server hands each due run to
//!    exactly one worker ([`ClaimedRun`]), at most `max_active_runs` of a deployment at once,
//!    higher priority first, then oldest first.
//! 3. The worker runs the flow with the run's id, so the events it streams update that run. Each
//!    poll lists the runs it holds (its heartbeat); the answer lists those to cancel.
//! 4. A run whose heartbeats stop for the server's timeout (default 30 s) is recorded `Crashed`,
//!    and, if its flow has retries left, created again for another worker.
//!
//! Any other program streaming events sends `POST /api/heartbeats` ([`Heartbeat`]) for its
//! running flow runs, so a killed `cargo run` does not leave runs `Running` forever.
//!
//! ```
//! use flowkit_api::work::{PollRequest, PollResponse};
//! let poll = PollRequest {
//!     host: "etl-1".into(),
//!     deployments: vec!["nightly".into()],
//!     queues: vec![],
//!     capacity: 4,
//!     running: vec![],
//!     stopping: false,
//! };
//! let text = serde_json::to_string(&poll).unwrap();
//! assert!(text.contains(r#""capacity":4"#));
//! let answer: PollResponse = serde_json::from_str(r#"{"runs": [], "cancel": []}"#).unwrap();
//! assert!(answer.runs.is_empty());
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /api/deployments/{name}/runs`: start a run of a deployment now or at a time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// The run's parameters (a JSON object), over the deployment's defaults; checked against
    /// the deployment's parameter schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// When it may start (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The same key twice gives the same run (per deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The data interval the run is for (both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_start: Option<DateTime<Utc>>,
    /// The end of that interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_end: Option<DateTime<Utc>>,
    /// The work queue it waits in (default: the deployment's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// What the server answers a trigger, a cancel or a listing of the runs it owns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkRun {
    /// The flow run's id.
    pub id: Uuid,
    /// Its deployment.
    pub deployment: String,
    /// How it was made.
    pub origin: Origin,
    /// Where it is in its life.
    pub status: WorkStatus,
    /// When it may start.
    pub scheduled_at: DateTime<Utc>,
    /// Its data interval, if any.
    pub interval_start: Option<DateTime<Utc>>,
    /// The end of its data interval.
    pub interval_end: Option<DateTime<Utc>>,
    /// Its parameters (merged over the deployment's defaults).
    pub parameters: Option<serde_json::Value>,
    /// The worker that claimed it.
    pub worker: Option<String>,
    /// For a trigger: `false` when its idempotency key matched an earlier run (this one).
    #[serde(default)]
    pub created: bool,
}

/// How a run the server owns was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// By the deployment's schedule.
    Schedule,
    /// By a trigger (API, CLI, dashboard).
    Trigger,
    /// By a backfill.
    Backfill,
    /// Again, after the run before it crashed.
    Retry,
}

impl Origin {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Schedule => "schedule",
            Origin::Trigger => "trigger",
            Origin::Backfill => "backfill",
            Origin::Retry => "retry",
        }
    }
}

/// Where a run the server owns is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkStatus {
    /// Waiting for its time and a worker.
    Scheduled,
    /// Handed to a worker, which runs it.
    Claimed,
    /// Its flow run ended (whatever its state).
    Done,
    /// Cancelled before it ended.
    Cancelled,
    /// Its worker's heartbeats stopped.
    Crashed,
}

impl WorkStatus {
    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkStatus::Scheduled => "scheduled",
            WorkStatus::Claimed => "claimed",
            WorkStatus::Done => "done",
            WorkStatus::Cancelled => "cancelled",
            WorkStatus::Crashed => "crashed",
        }
    }

    /// The status named `name`.
    pub fn parse(name: &str) -> Option<WorkStatus> {
        Some(match name {
            "scheduled" => WorkStatus::Scheduled,
            "claimed" => WorkStatus::Claimed,
            "done" => WorkStatus::Done,
            "cancelled" => WorkStatus::Cancelled,
            "crashed" => WorkStatus::Crashed,
            _ => return None,
        })
    }
}

/// `POST /api/workers/{worker}/poll`: a worker asks for runs, and says which it holds.
///
/// The server answers at once if it has runs to hand out or cancels to deliver, else when one
/// appears, else after its poll timeout (a third of the heartbeat timeout) with nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollRequest {
    /// The machine the worker runs on (shown on the workers page).
    #[serde(default)]
    pub host: String,
    /// The deployments whose runs it can run (the ones its program serves).
    pub deployments: Vec<String>,
    /// The queues it serves (empty: every queue).
    #[serde(default)]
    pub queues: Vec<String>,
    /// How many more runs it takes now (0: only heartbeat and cancels).
    pub capacity: u32,
    /// The runs it holds now: its heartbeat for them.
    #[serde(default)]
    pub running: Vec<Uuid>,
    /// The worker is stopping: hand it nothing.
    #[serde(default)]
    pub stopping: bool,
}

/// The answer to a [`PollRequest`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PollResponse {
    /// Runs handed to this worker: run each with its id.
    #[serde(default)]
    pub runs: Vec<ClaimedRun>,
    /// Runs of `running` to cancel now.
    #[serde(default)]
    pub cancel: Vec<Uuid>,
    /// Runs of `running` the server no longer counts as this worker's (recorded Crashed after a
    /// lost heartbeat, say): stop them, their outcome will not be used.
    #[serde(default)]
    pub lost: Vec<Uuid>,
    /// How often to send heartbeats, in milliseconds (polls count as heartbeats).
    #[serde(default)]
    pub heartbeat_ms: u64,
}

/// A run handed to a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimedRun {
    /// The flow run's id: the worker runs the flow with it.
    pub id: Uuid,
    /// Its deployment.
    pub deployment: String,
    /// When it was due.
    pub scheduled_at: DateTime<Utc>,
    /// Its data interval, if any.
    pub interval_start: Option<DateTime<Utc>>,
    /// The end of its data interval.
    pub interval_end: Option<DateTime<Utc>>,
    /// Its parameters (the deployment's defaults merged under the trigger's), if any.
    pub parameters: Option<serde_json::Value>,
    /// 1 for a first run; 2 and up when it replaces runs that crashed, or resumes this one.
    pub attempt: u32,
    /// Run it as a resume of this flow run (`POST /api/flow_runs/{id}/retry`): a new attempt
    /// of the same run, whose task calls that completed before return their stored results.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
}

/// `POST /api/workers/{worker}/stop`: a worker that stops hands back the runs it did not finish
/// (they are scheduled again for another worker).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StopRequest {
    /// Runs it started and cancelled: recorded Cancelled, and created again.
    #[serde(default)]
    pub handed_back: Vec<Uuid>,
}

/// `POST /api/heartbeats`: a program (any, not only a worker) says its flow runs are alive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The flow runs it is running.
    pub runs: Vec<Uuid>,
    /// How long the server may hold the answer while none of `runs` is to be cancelled, in
    /// milliseconds (0, the default: answer at once). The server answers as soon as a cancel
    /// is asked for one of them, so it reaches the program within milliseconds rather than at
    /// its next heartbeat; it holds the answer at most its `heartbeat_ms`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The answer to a [`Heartbeat`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Runs to cancel now.
    #[serde(default)]
    pub cancel: Vec<Uuid>,
    /// How often to send heartbeats, in milliseconds.
    #[serde(default)]
    pub heartbeat_ms: u64,
}

/// A worker as the server shows it (`GET /api/workers`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    /// Its name (unique per server).
    pub name: String,
    /// Its machine.
    pub host: String,
    /// The queues it serves (empty: every queue).
    pub queues: Vec<String>,
    /// The deployments it can run.
    pub deployments: Vec<String>,
    /// The runs it holds.
    pub runs: Vec<Uuid>,
    /// Its last poll.
    pub last_seen: DateTime<Utc>,
    /// `online`, `stopping`, `stopped`, or `lost` (no poll within the heartbeat timeout).
    pub state: String,
}

/// `POST /api/deployments/{name}/backfills`: run a deployment over a past range, one run per
/// interval of its schedule (or per `chunk`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// The range's start (included).
    pub start: DateTime<Utc>,
    /// Its end (excluded).
    pub end: DateTime<Utc>,
    /// One run per chunk of this length (`"7d"`) instead of one per scheduled interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    /// At most this many of its runs at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active: Option<u32>,
    /// Only the intervals without a successful run.
    #[serde(default)]
    pub rerun_failed: bool,
    /// Parameters for every run, over the deployment's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// The work queue its runs wait in (default `"backfill"`, so a worker can serve urgent
    /// queues first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

/// A backfill: its range and, for each interval, its latest run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackfillView {
    /// Its id.
    pub id: Uuid,
    /// Its deployment.
    pub deployment: String,
    /// The range's start.
    pub start: DateTime<Utc>,
    /// The range's end.
    pub end: DateTime<Utc>,
    /// The chunk length, if chunked.
    pub chunk: Option<String>,
    /// At most this many runs at once.
    pub max_active: u32,
    /// `running`, `done` or `cancelled`.
    pub status: String,
    /// Its work queue.
    #[serde(default)]
    pub queue: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Its intervals, oldest first.
    pub intervals: Vec<IntervalView>,
}

/// One interval of a range, with its latest run (a backfill's, or a gap report's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalView {
    /// The interval's start.
    pub start: DateTime<Utc>,
    /// Its end.
    pub end: DateTime<Utc>,
    /// Its latest run, if any.
    pub run: Option<Uuid>,
    /// That run's state (`Completed`, `Failed`, `Scheduled`, …), if any.
    pub state: Option<String>,
    /// How many runs it has had.
    #[serde(default)]
    pub runs: u32,
}

impl IntervalView {
    /// Whether a run of it completed.
    pub fn succeeded(&self) -> bool {
        matches!(self.state.as_deref(), Some("Completed" | "Cached"))
    }
}

/// The answer to `POST /api/flow_runs/{id}/cancel`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CancelResponse {
    /// The flow run.
    pub id: Uuid,
    /// `Cancelled` if it had not started (it never will), `Cancelling` if the program running
    /// it was asked to stop it, or its state if it had already ended (nothing done).
    pub state: String,
}

/// The answer to `POST /api/flow_runs/{id}/retry` ("Retry from failure").
///
/// ```
/// use flowkit_api::work::RetryResponse;
/// let answer: RetryResponse = serde_json::from_str(
///     r#"{"id": "0193a3e1-59c7-7a4e-9d53-1c3b2f0e5a11", "deployment": "nightly", "attempt": 2, "state": "Scheduled"}"#,
/// ).unwrap();
/// assert_eq!(answer.attempt, 2);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryResponse {
    /// The flow run, resumed under its own id.
    pub id: Uuid,
    /// The deployment whose workers run it.
    pub deployment: String,
    /// The attempt it will run as.
    pub attempt: u32,
    /// `Scheduled`: waiting for one of the deployment's workers.
    pub state: String,
}

/// `PATCH /api/deployments/{name}`: pause or resume a deployment's schedules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentPatch {
    /// Whether its schedules create no runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// A deployment as the server shows it (`GET /api/deployments`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentView {
    /// Its name.
    pub name: String,
    /// The flow it runs.
    pub flow: String,
    /// Each schedule in words: `"0 2 * * * (Europe/Madrid)"`, `"every 15m"`.
    pub schedules: Vec<String>,
    /// The time zone of its cron schedules.
    pub time_zone: String,
    /// Whether missed times run after downtime.
    pub catchup: bool,
    /// At most this many runs at once.
    pub max_active_runs: usize,
    /// Whether its schedules are paused.
    pub paused: bool,
    /// The automation that paused it (the circuit breaker), while it stays paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<String>,
    /// Its work queue.
    #[serde(default)]
    pub queue: String,
    /// Its priority in that queue.
    #[serde(default)]
    pub priority: i32,
    /// Its default parameters.
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
    /// The JSON Schema of its parameters (`None`: it takes none).
    #[serde(default)]
    pub parameter_schema: Option<serde_json::Value>,
    /// The next times a run is due (none while paused).
    pub next_runs: Vec<DateTime<Utc>>,
    /// Its latest runs, newest first.
    pub last_runs: Vec<DeploymentRun>,
    /// When a serving program last registered it.
    pub registered: Option<DateTime<Utc>>,
}

/// One run of a deployment, in its [`DeploymentView`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRun {
    /// The flow run.
    pub id: Uuid,
    /// Its state.
    pub state: String,
    /// When it was due.
    pub scheduled: Option<DateTime<Utc>>,
    /// Its data interval's start (its logical date).
    pub interval_start: Option<DateTime<Utc>>,
}
