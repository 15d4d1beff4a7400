//! Storage of events and the runs derived from them, in SQLite or PostgreSQL.
//!
//! One implementation (`backend.rs`) is stamped out for each database; what differs between
//! them (connecting, a few SQL spellings) lives in `sqlite.rs` and `postgres.rs`.

/// Calls the same method on whichever backend holds the data.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Sqlite(store) => store.$method($($arg),*).await,
            Store::Postgres(store) => store.$method($($arg),*).await,
        }
    };
}

#[macro_use]
mod backend;
#[macro_use]
pub mod work;
#[macro_use]
pub mod access;
#[macro_use]
pub mod limits;
#[macro_use]
pub mod automations;
mod health;
pub mod postgres;
pub mod sqlite;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use flowkit::events::{Event, EventKind, RunType};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("could not apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database URL is not one this server supports.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// The SQLite file was removed or replaced while the server ran: writes would be lost.
    #[error(
        "the database file {0} was removed or replaced while the server ran; restart the server"
    )]
    FileGone(String),
    /// The database cannot be written (read-only file or directory, full disk).
    #[error("the database cannot be written: {0}")]
    NotWritable(String),
}

impl StoreError {
    /// True if the database refused a value (an event's content), not the write itself:
    /// PostgreSQL's data exceptions and program limits (SQLSTATE classes 22 and 54), SQLite's
    /// "too big" and "mismatch".
    pub fn is_data_error(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(error)) => {
                error.code().is_some_and(|code| {
                    code.starts_with("22") || code.starts_with("54") || code == "18" || code == "20"
                })
            }
            _ => false,
        }
    }

    /// True if the transaction lost a race with another one and can simply run again
    /// (PostgreSQL's deadlock and serialization failures).
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(error)) => {
                matches!(error.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

/// The runs and events of a server, in SQLite (embedded, the default) or PostgreSQL (for
/// teams and many servers). Both keep the same tables and answer the same queries.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// How one batch went.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Ingested {
    /// Events stored for the first time.
    pub stored: usize,
    /// Events already stored (sent again): ignored.
    pub duplicates: usize,
    /// The positions (in the batch) of the events stored for the first time.
    #[serde(skip)]
    pub fresh: Vec<usize>,
    /// Events the database refused (by position in the batch), and why.
    #[serde(skip)]
    pub refused: Vec<(usize, String)>,
    /// How long each task run that ended in this batch took, in seconds.
    #[serde(skip)]
    pub task_durations: Vec<f64>,
    /// How many runs handed out by the server this batch ended (their work settled `done`):
    /// each frees a place under its deployment's `max_active_runs`, so waiting polls look again.
    #[serde(skip)]
    pub settled: u64,
}

/// The health of one flow.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct FlowSummary {
    pub name: String,
    pub runs: i64,
    pub by_state: std::collections::BTreeMap<String, i64>,
    /// Completed (or cached) runs among those that ended.
    pub success_rate: Option<f64>,
    pub last_run: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub(crate) last_run_ts: Option<i64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// How much is stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub events: i64,
    pub runs: i64,
}

/// A flow run or task run, as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Run {
    pub id: Uuid,
    pub run_type: &'static str,
    pub name: Option<String>,
    /// A flow run's human-readable name (`etl-2026-11-28`, `brave-otter`); left out for task
    /// runs, so 10,000 of them cost nothing more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_name: Option<String>,
    pub flow_run_id: Option<Uuid>,
    pub parent_flow_run_id: Option<Uuid>,
    pub parent_task_run_id: Option<Uuid>,
    pub state: String,
    pub message: Option<String>,
    pub attempts: i64,
    pub created: Option<DateTime<Utc>>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
    pub tags: Vec<String>,
    pub upstream: Vec<Uuid>,
    pub map_index: Option<i64>,
    pub retries: Option<i64>,
    /// For a flow run a deployment started: its name.
    pub deployment: Option<String>,
    /// When that run was due.
    pub scheduled: Option<DateTime<Utc>>,
    /// The data interval it is for: its start (the logical date) …
    pub interval_start: Option<DateTime<Utc>>,
    /// … and its end.
    pub interval_end: Option<DateTime<Utc>>,
    /// For a task run whose result was persisted (or reused, `Cached`): where it is. Left
    /// out for the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<StoredResult>,
}

/// Where a task run's persisted result is, as its end event told (`flowkit::events::ResultLocation`).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredResult {
    /// The result store: a local directory, or a URL (`s3://bucket/prefix`, `file:///data`).
    pub store: String,
    /// The result's key in the store.
    pub key: String,
    /// The object holding it, when the store packs small results together (the local store's
    /// `runs/<flow run>/tasks.pack`, a record named by the key's last part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed_in: Option<String>,
}

/// How many task runs of one task a flow run has in one state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GridCell {
    pub flow_run_id: Uuid,
    /// The task's name.
    pub task: String,
    pub state: String,
    pub count: i64,
    /// When the first of them was created (Unix nanoseconds), to order the tasks.
    #[serde(skip)]
    pub first_ts: Option<i64>,
}

/// A log line of a run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogLine {
    pub id: Uuid,
    pub timestamp: Option<DateTime<Utc>>,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
    pub level: Option<String>,
    pub message: String,
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
}

/// Which flow runs to list.
#[derive(Debug, Default)]
pub struct RunFilter {
    pub flow: Option<String>,
    /// Only runs in one of these states (none: any).
    pub states: Vec<&'static str>,
    /// Only runs with a task run that failed, timed out or crashed.
    pub failed_tasks: bool,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub tag: Option<String>,
    /// Only runs of this deployment.
    pub deployment: Option<String>,
    /// Only runs whose logical time (the start of the data interval, else the time it was
    /// due) falls in this half-open range (nanoseconds).
    pub logical_day: Option<(i64, i64)>,
    /// Leave out the runs still `Scheduled` (made ahead by the server, not started).
    pub started_only: bool,
    pub parent: Option<Uuid>,
    /// Text in the flow's or the run's name, the parameters, the tags or the deployment
    /// (case-insensitive), or a run id.
    pub search: Option<String>,
    /// Keyset cursor: runs created before this (created_ts, id).
    pub before: Option<(i64, Uuid)>,
    pub limit: i64,
}

/// One state change of a run, from its events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StateChange {
    /// The flow run or task run that changed state.
    pub run_id: Uuid,
    pub state: String,
    /// The attempt the state belongs to (for `Retrying`, the attempt that failed).
    pub attempt: i64,
    pub timestamp: Option<DateTime<Utc>>,
    pub message: Option<String>,
}

/// How far before a window a run counted in its activity may have been made: seven days.
pub(crate) const ACTIVITY_START_SLACK_NANOS: i64 = 7 * 24 * 3600 * 1_000_000_000;

/// How many flow runs started in each time bucket, by flow and state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Activity {
    /// The start of the first bucket.
    pub since: DateTime<Utc>,
    /// The end of the last bucket.
    pub until: DateTime<Utc>,
    pub bucket_seconds: f64,
    pub flows: Vec<FlowActivity>,
}

/// One flow's runs per bucket, by state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlowActivity {
    pub name: String,
    /// One map of state to count per bucket, oldest first.
    pub buckets: Vec<std::collections::BTreeMap<String, i64>>,
}

/// How far an event id's time (UUID v7, in milliseconds) may be from the event's timestamp.
/// flowkit makes each id from its event's timestamp (a difference of 0); the state history reads
/// a run's events by id range, widened by this much on each side.
pub const ID_TIME_SLACK_NANOS: i64 = 2_000_000;

/// True if `id` is a UUID v7 whose millisecond is within [`ID_TIME_SLACK_NANOS`] of the one of
/// `nanos` (the event's timestamp).
pub(crate) fn id_matches_time(id: Uuid, nanos: i64) -> bool {
    let Some((secs, subsec)) = id.get_timestamp().map(|t| t.to_unix()) else {
        return false;
    };
    let id_nanos = i128::from(secs) * 1_000_000_000 + i128::from(subsec);
    let ms_nanos = i128::from(nanos - nanos.rem_euclid(1_000_000));
    (id_nanos - ms_nanos).abs() <= i128::from(ID_TIME_SLACK_NANOS)
}

/// The smallest UUID v7 made at or after `nanos` (Unix time): event ids below it are older.
pub(crate) fn first_event_id_at(nanos: i64) -> Uuid {
    let millis = u64::try_from(nanos / 1_000_000).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
}

/// The hex digits of `text` if it looks like part of a run id (6 or more hex digits, dashes
/// allowed), lowercased, without dashes.
pub(crate) fn id_fragment(text: &str) -> Option<String> {
    let text = text.trim();
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    (hex.len() >= 6 && hex.len() <= 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A `LIKE` pattern matching `text` anywhere, its wildcards escaped with `\`.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.trim().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Which log lines to list.
#[derive(Debug, Default)]
pub struct LogFilter {
    pub level: Option<&'static str>,
    /// Only these levels (a minimum level and those above it).
    pub at_least: Option<&'static [&'static str]>,
    pub task_run_id: Option<Uuid>,
    /// Keyset cursor: lines after this (ts, id).
    pub after: Option<(i64, Uuid)>,
    pub limit: i64,
}

/// Rows per multi-row statement (SQLite allows 32,766 bound values; the widest row has 16).
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// An event ready to store.
pub(crate) struct EventRow<'e> {
    /// Position in the batch.
    pub(crate) index: usize,
    pub(crate) event: &'e Event,
    pub(crate) ts: i64,
    pub(crate) kind: &'static str,
    pub(crate) level: Option<String>,
    /// The event's kind as JSON, shared by each statement that binds it (no copy).
    pub(crate) body: std::sync::Arc<str>,
}

impl<'e> EventRow<'e> {
    pub(crate) fn new((index, event): (usize, &'e Event)) -> Option<Self> {
        let (kind, level) = match &event.kind {
            EventKind::RunCreated(_) => ("run_created", None),
            EventKind::StateChanged(_) => ("state_changed", None),
            EventKind::Log(log) => ("log", Some(log.level.to_string())),
        };
        Some(EventRow {
            index,
            event,
            ts: nanos(event.timestamp)?,
            kind,
            level,
            body: serde_json::to_string(&event.kind).ok()?.into(),
        })
    }
}

/// A run's creation, as a row of `runs`.
pub(crate) struct Created<'e> {
    pub(crate) id: Uuid,
    pub(crate) run_type: &'static str,
    pub(crate) flow_run_id: Option<Uuid>,
    pub(crate) ts: i64,
    pub(crate) created: &'e flowkit::events::RunCreated,
}

impl<'e> Created<'e> {
    pub(crate) fn new(row: &EventRow<'e>) -> Option<Self> {
        let EventKind::RunCreated(created) = &row.event.kind else {
            return None;
        };
        let (id, run_type, flow_run_id) = match created.run_type {
            RunType::Task => (row.event.task_run_id?, "task", row.event.flow_run_id),
            RunType::Flow => (row.event.flow_run_id?, "flow", None),
        };
        Some(Created {
            id,
            run_type,
            flow_run_id,
            ts: row.ts,
            created,
        })
    }
}

/// A state change, as a row of `runs`.
pub(crate) struct Change<'e> {
    pub(crate) id: Uuid,
    pub(crate) run_type: &'static str,
    pub(crate) flow_run_id: Option<Uuid>,
    pub(crate) ts: i64,
    pub(crate) change: &'e flowkit::events::StateChanged,
}

impl<'e> Change<'e> {
    pub(crate) fn new(row: &EventRow<'e>) -> Option<Self> {
        let EventKind::StateChanged(change) = &row.event.kind else {
            return None;
        };
        let (id, run_type, flow_run_id) = match row.event.task_run_id {
            Some(task) => (task, "task", row.event.flow_run_id),
            None => (row.event.flow_run_id?, "flow", None),
        };
        Some(Change {
            id,
            run_type,
            flow_run_id,
            ts: row.ts,
            change,
        })
    }
}

pub(crate) fn nanos(ts: DateTime<Utc>) -> Option<i64> {
    ts.timestamp_nanos_opt()
}

pub(crate) fn time(nanos: Option<i64>) -> Option<DateTime<Utc>> {
    nanos.map(DateTime::from_timestamp_nanos)
}

/// A run's state changes within one batch, merged by the same rule the database applies (the
/// later attempt beats any earlier one, so a resumed run is `Running` again; within an attempt
/// a terminal state beats any other, then the later time), so each run is one row of one
/// statement.
pub(crate) struct MergedChange {
    pub(crate) id: Uuid,
    pub(crate) run_type: &'static str,
    pub(crate) flow_run_id: Option<Uuid>,
    pub(crate) state: &'static str,
    pub(crate) state_final: i64,
    pub(crate) state_ts: i64,
    pub(crate) message: Option<String>,
    /// The attempt of the winning state, then the highest attempt seen.
    pub(crate) attempts: i64,
    pub(crate) start_ts: Option<i64>,
    pub(crate) end_ts: Option<i64>,
    /// Where its persisted result is (JSON), if an event of the batch told.
    pub(crate) result: Option<String>,
}

/// A state's rank in the merge: 0 while in progress; 1 for `Crashed` (inferred by the server
/// when heartbeats stop, or a panic); 2 for the other final states. Within one attempt, a higher
/// rank replaces a lower one whatever the order events arrive in, so a program's own late final
/// state replaces a `Crashed` the server inferred, and nothing replaces a final state but a
/// later one; a later attempt (a resume) replaces them all.
pub(crate) fn state_rank(state: flowkit::State) -> i64 {
    match state {
        flowkit::State::Crashed => 1,
        state if state.is_terminal() => 2,
        _ => 0,
    }
}

pub(crate) fn merge_changes(changes: &[Change<'_>]) -> Vec<MergedChange> {
    let mut merged: Vec<MergedChange> = Vec::with_capacity(changes.len());
    let mut at: std::collections::HashMap<Uuid, usize> =
        std::collections::HashMap::with_capacity(changes.len());
    for c in changes {
        let state_final = state_rank(c.change.state);
        let attempt = i64::from(c.change.attempt);
        let start = (c.change.state == flowkit::State::Running).then_some(c.ts);
        let end = (state_final >= 1).then_some(c.ts);
        match at.get(&c.id) {
            None => {
                at.insert(c.id, merged.len());
                merged.push(MergedChange {
                    id: c.id,
                    run_type: c.run_type,
                    flow_run_id: c.flow_run_id,
                    state: c.change.state.as_str(),
                    state_final,
                    state_ts: c.ts,
                    message: c.change.message.clone(),
                    attempts: attempt,
                    start_ts: start,
                    end_ts: end,
                    result: result_json(c.change),
                });
            }
            Some(&i) => {
                let m = &mut merged[i];
                let wins = attempt > m.attempts
                    || (attempt == m.attempts
                        && (state_final > m.state_final
                            || (state_final == m.state_final && c.ts >= m.state_ts)));
                if wins {
                    m.state = c.change.state.as_str();
                    m.state_final = state_final;
                    m.state_ts = c.ts;
                    m.message = c.change.message.clone();
                }
                if (wins || m.result.is_none())
                    && let Some(result) = result_json(c.change)
                {
                    m.result = Some(result);
                }
                // A later attempt started: the run has not ended until that attempt ends.
                m.end_ts = if attempt > m.attempts {
                    end
                } else {
                    m.end_ts.max(end)
                };
                m.attempts = m.attempts.max(attempt);
                m.start_ts = match (m.start_ts, start) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if m.flow_run_id.is_none() {
                    m.flow_run_id = c.flow_run_id;
                }
            }
        }
    }
    merged
}

/// Where a change says the run's result is, as stored in `runs.result`.
fn result_json(change: &flowkit::events::StateChanged) -> Option<String> {
    change
        .result
        .as_deref()
        .and_then(|location| serde_json::to_string(location).ok())
}

/// A list as stored in `runs` (a JSON array).
pub(crate) fn json_list<T: serde::Serialize>(list: &[T]) -> String {
    match list.is_empty() {
        true => "[]".to_string(),
        false => serde_json::to_string(list).unwrap_or_default(),
    }
}

/// A row of `runs` as a batch writes it: the run's creation, its merged state, or both.
pub(crate) struct RunWrite<'a, 'e> {
    pub(crate) id: Uuid,
    pub(crate) run_type: &'static str,
    pub(crate) flow_run_id: Option<Uuid>,
    pub(crate) created: Option<&'a Created<'e>>,
    pub(crate) change: Option<&'a MergedChange>,
}

/// What a batch writes to `runs`, as three groups of one shape each, in the order they are
/// written: creations alone, creations with their run's state, states alone. Both lists are in
/// id order (`merged` has one entry per run). A run's state joins its last creation in the
/// batch (an earlier one, of a run created twice, is written first, alone), unless the
/// columns' defaults would win over it (attempt 0 with a time before 1970): then the two are
/// written one after the other, as without joining.
pub(crate) fn run_writes<'a, 'e>(
    created: &'a [Created<'e>],
    merged: &'a [MergedChange],
) -> [Vec<RunWrite<'a, 'e>>; 3] {
    let alone = |m: &'a MergedChange| RunWrite {
        id: m.id,
        run_type: m.run_type,
        flow_run_id: m.flow_run_id,
        created: None,
        change: Some(m),
    };
    let (mut created_only, mut both, mut changes_only) = (Vec::new(), Vec::new(), Vec::new());
    let mut next = 0;
    for (i, c) in created.iter().enumerate() {
        while let Some(m) = merged.get(next).filter(|m| m.id < c.id) {
            changes_only.push(alone(m));
            next += 1;
        }
        let last = created.get(i + 1).is_none_or(|n| n.id != c.id);
        let change = merged.get(next).filter(|m| {
            last && m.id == c.id && (m.attempts > 0 || m.state_final > 0 || m.state_ts >= 0)
        });
        if change.is_some() {
            next += 1;
        }
        let write = RunWrite {
            id: c.id,
            run_type: c.run_type,
            flow_run_id: c.flow_run_id,
            created: Some(c),
            change,
        };
        match change {
            Some(_) => both.push(write),
            None => created_only.push(write),
        }
    }
    changes_only.extend(merged[next.min(merged.len())..].iter().map(alone));
    [created_only, both, changes_only]
}

/// Splits rows into statements of at most `ROWS_PER_STATEMENT` rows in which no run id repeats
/// (PostgreSQL's upsert may not touch a row twice in one statement), keeping their order.
pub(crate) fn waves<T>(rows: &[T], id: impl Fn(&T) -> Uuid) -> Vec<&[T]> {
    let mut waves = Vec::new();
    let mut start = 0;
    let mut seen = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        if i - start == ROWS_PER_STATEMENT || !seen.insert(id(row)) {
            waves.push(&rows[start..i]);
            start = i;
            seen.clear();
            seen.insert(id(row));
        }
    }
    if start < rows.len() {
        waves.push(&rows[start..]);
    }
    waves
}

impl Store {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH` or `postgres://...`)
    /// and applies the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::open(url).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Store::Postgres(postgres::PgStore::open(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    /// Stores a batch of valid events in one transaction, and updates the runs they are about.
    ///
    /// Statements carry many rows each, and only events stored for the first time update their
    /// runs, so a batch sent twice changes nothing the second time. A batch that loses a race
    /// with another writer (a PostgreSQL deadlock) runs again. If the database refuses a value
    /// inside the batch, the batch is split until the events it refuses are found: they are
    /// reported in `refused`, and the others stored.
    pub async fn ingest(&self, events: &[Event]) -> Result<Ingested, StoreError> {
        let mut outcome = Ingested::default();
        // Halves still to store, by their offset in the batch; the first half first.
        let mut parts = vec![(0usize, events)];
        while let Some((offset, part)) = parts.pop() {
            match self.ingest_retrying(part).await {
                Ok(done) => {
                    outcome.stored += done.stored;
                    outcome.duplicates += done.duplicates;
                    outcome.fresh.extend(done.fresh.iter().map(|i| offset + i));
                    outcome.task_durations.extend(done.task_durations);
                    outcome.settled += done.settled;
                }
                Err(error) if error.is_data_error() => {
                    if part.len() == 1 {
                        tracing::warn!(%error, id = %part[0].id, "the database refused an event");
                        outcome
                            .refused
                            .push((offset, format!("the database refused it: {error}")));
                    } else {
                        let middle = part.len() / 2;
                        parts.push((offset + middle, &part[middle..]));
                        parts.push((offset, &part[..middle]));
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(outcome)
    }

    /// Tells the other servers sharing the database that work changed (PostgreSQL).
    pub async fn notify_work(&self) -> Result<(), StoreError> {
        dispatch!(self.notify_work())
    }

    /// One transaction, run again (a few times, after a short random pause) when it loses a
    /// race with another writer.
    async fn ingest_retrying(&self, events: &[Event]) -> Result<Ingested, StoreError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = dispatch!(self.ingest(events));
            match result {
                Err(error) if error.is_conflict() && attempt < 8 => {
                    tracing::debug!(%error, attempt, "ingest lost a race; running it again");
                    let pause = fastrand::u64(1..=10 * u64::from(attempt));
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                result => return result,
            }
        }
    }

    /// Flow runs, newest first, filtered.
    pub async fn flow_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        dispatch!(self.flow_runs(filter))
    }

    /// How many task runs each of these flow runs has in each state: one grouped query (per
    /// 500 flow runs), as `(flow run, state, count)`.
    pub async fn task_counts(
        &self,
        flow_run_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, String, i64)>, StoreError> {
        if flow_run_ids.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.task_counts(flow_run_ids))
    }

    /// The task runs of these flow runs counted by task name and state (the grid view), in one
    /// grouped query per 500 flow runs.
    pub async fn task_grid(&self, flow_run_ids: &[Uuid]) -> Result<Vec<GridCell>, StoreError> {
        if flow_run_ids.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.task_grid(flow_run_ids))
    }

    /// One run by id.
    pub async fn run(&self, id: Uuid) -> Result<Option<Run>, StoreError> {
        dispatch!(self.run(id))
    }

    /// The task runs of a flow run, in creation order.
    pub async fn task_runs(&self, flow_run_id: Uuid) -> Result<Vec<Run>, StoreError> {
        dispatch!(self.task_runs(flow_run_id))
    }

    /// The child flow runs of a flow run, in creation order.
    pub async fn child_flow_runs(&self, flow_run_id: Uuid) -> Result<Vec<Run>, StoreError> {
        dispatch!(self.child_flow_runs(flow_run_id))
    }

    /// The log lines of a flow run (and its task runs), oldest first.
    pub async fn logs(
        &self,
        flow_run_id: Uuid,
        filter: &LogFilter,
    ) -> Result<Vec<LogLine>, StoreError> {
        dispatch!(self.logs(flow_run_id, filter))
    }

    /// The state changes of a flow run and of its task runs (only those that ran more than once
    /// if `retried_only`; only those of `task_run_id` if given), oldest first.
    pub async fn state_changes(
        &self,
        flow_run: &Run,
        retried_only: bool,
        task_run_id: Option<Uuid>,
    ) -> Result<Vec<StateChange>, StoreError> {
        // Its events were made during its life, and an event's id (UUID v7) carries the
        // millisecond of its timestamp (to within ID_TIME_SLACK_NANOS, checked at ingest), so
        // its state changes lie in a range of the primary key.
        let Some(created) = flow_run.created.and_then(nanos) else {
            return Ok(Vec::new());
        };
        let first = first_event_id_at(created.saturating_sub(ID_TIME_SLACK_NANOS));
        let after_last = flow_run
            .end
            .and_then(nanos)
            .map(|end| first_event_id_at(end.saturating_add(ID_TIME_SLACK_NANOS + 1_000_000)));
        dispatch!(self.state_changes(flow_run.id, (first, after_last), retried_only, task_run_id))
    }

    /// Flow runs started in `[since, until)` (or made then, when not started yet), counted by
    /// flow and state in `buckets` equal buckets. Runs that waited more than seven days between
    /// being made and starting are left out (the time index bounds the scan by creation).
    pub async fn flow_activity(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        buckets: u32,
    ) -> Result<Activity, StoreError> {
        let (start, end) = (nanos(since).unwrap_or(0), nanos(until).unwrap_or(i64::MAX));
        let width = ((end - start) / i64::from(buckets.max(1))).max(1);
        let rows = dispatch!(self.flow_activity(start, end, width))?;
        let mut flows: std::collections::BTreeMap<String, FlowActivity> = Default::default();
        for (name, bucket, state, n) in rows {
            let flow = flows.entry(name.clone()).or_insert_with(|| FlowActivity {
                name,
                buckets: vec![Default::default(); buckets as usize],
            });
            if let Some(counts) = usize::try_from(bucket)
                .ok()
                .and_then(|b| flow.buckets.get_mut(b))
            {
                *counts.entry(state).or_default() += n;
            }
        }
        Ok(Activity {
            since,
            until,
            bucket_seconds: width as f64 / 1e9,
            flows: flows.into_values().collect(),
        })
    }

    /// Stores (or replaces) a deployment's spec, as JSON.
    pub async fn put_deployment(
        &self,
        name: &str,
        flow: &str,
        spec: &str,
        updated_ts: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.put_deployment(name, flow, spec, updated_ts))
    }

    /// How many events and runs are stored.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        dispatch!(self.counts())
    }

    /// Per flow: runs by state, the last run, and p50/p95 durations of its last 1,000 runs.
    pub async fn flow_summaries(&self) -> Result<Vec<FlowSummary>, StoreError> {
        dispatch!(self.flow_summaries())
    }

    /// How many runs are in each state, by run type.
    pub async fn runs_by_state(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        dispatch!(self.runs_by_state())
    }

    /// Deletes the runs created before `cutoff` (Unix nanoseconds) and their events.
    pub async fn delete_before(&self, cutoff: i64) -> Result<u64, StoreError> {
        dispatch!(self.delete_before(cutoff))
    }

    /// Whether events can be stored right now, and if not, why: the last write failed, the
    /// database file is gone, or a small real write fails.
    pub async fn ready(&self) -> Result<(), String> {
        dispatch!(self.ready())
    }
}

/// Completes a flow summary from its counts.
pub(crate) fn finish_summaries(
    flows: std::collections::BTreeMap<String, FlowSummary>,
    mut durations: std::collections::HashMap<String, Vec<i64>>,
) -> Vec<FlowSummary> {
    let mut out: Vec<FlowSummary> = flows.into_values().collect();
    for flow in &mut out {
        if let Some(d) = durations.get_mut(&flow.name) {
            d.sort_unstable();
            let pick = |q: usize| d[(d.len() * q / 100).min(d.len() - 1)] as f64 / 1e6;
            if !d.is_empty() {
                flow.p50_ms = Some(pick(50));
                flow.p95_ms = Some(pick(95));
            }
        }
        let done: i64 = ["Completed", "Cached"]
            .iter()
            .filter_map(|s| flow.by_state.get(*s))
            .sum();
        let ended: i64 = flow
            .by_state
            .iter()
            .filter(|(s, _)| {
                !matches!(s.as_str(), "Scheduled" | "Pending" | "Running" | "Retrying")
            })
            .map(|(_, n)| n)
            .sum();
        flow.success_rate = (ended > 0).then(|| done as f64 / ended as f64);
        flow.last_run = time(flow.last_run_ts);
    }
    out
}
