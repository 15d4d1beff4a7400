//! Storage of events and the runs derived from them (SQLite).
//!
//! Writes go through one connection, so concurrent ingest requests queue in the pool instead of
//! meeting "database is locked"; reads use a pool of their own (WAL lets them run during
//! writes).

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use flowkit::State;
use flowkit::events::{Event, EventKind, RunType};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
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
    #[error("unsupported database URL {0:?}: expected sqlite://PATH")]
    UnsupportedUrl(String),
}

/// The runs and events of a server.
#[derive(Clone)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
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
    /// How long each task run that ended in this batch took, in seconds.
    #[serde(skip)]
    pub task_durations: Vec<f64>,
}

/// The health of one flow.
#[derive(Debug, Default, Serialize)]
pub struct FlowSummary {
    pub name: String,
    pub runs: i64,
    pub by_state: std::collections::BTreeMap<String, i64>,
    /// Completed (or cached) runs among those that ended.
    pub success_rate: Option<f64>,
    pub last_run: Option<DateTime<Utc>>,
    #[serde(skip)]
    last_run_ts: Option<i64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

/// How much is stored.
#[derive(Debug, Serialize)]
pub struct Counts {
    pub events: i64,
    pub runs: i64,
}

/// A flow run or task run, as the API shows it.
#[derive(Debug, Serialize)]
pub struct Run {
    pub id: Uuid,
    pub run_type: &'static str,
    pub name: Option<String>,
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
    pub parameters: Option<serde_json::Value>,
    pub tags: Vec<String>,
    pub upstream: Vec<Uuid>,
    pub map_index: Option<i64>,
    pub retries: Option<i64>,
}

/// A log line of a run.
#[derive(Debug, Serialize)]
pub struct LogLine {
    pub id: Uuid,
    pub timestamp: Option<DateTime<Utc>>,
    pub flow_run_id: Option<Uuid>,
    pub task_run_id: Option<Uuid>,
    pub level: Option<String>,
    pub message: String,
    pub target: Option<String>,
    pub fields: serde_json::Value,
}

/// Which flow runs to list.
#[derive(Debug, Default)]
pub struct RunFilter {
    pub flow: Option<String>,
    pub state: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub tag: Option<String>,
    pub parent: Option<Uuid>,
    /// Keyset cursor: runs created before this (created_ts, id).
    pub before: Option<(i64, Uuid)>,
    pub limit: i64,
}

/// Which log lines to list.
#[derive(Debug, Default)]
pub struct LogFilter {
    pub level: Option<String>,
    pub task_run_id: Option<Uuid>,
    /// Keyset cursor: lines after this (ts, id).
    pub after: Option<(i64, Uuid)>,
    pub limit: i64,
}

/// Rows per multi-row statement (SQLite allows 32,766 bound values; the widest row has 12).
const ROWS_PER_STATEMENT: usize = 500;

/// An event ready to store.
struct EventRow<'e> {
    /// Position in the batch.
    index: usize,
    event: &'e Event,
    ts: i64,
    kind: &'static str,
    level: Option<String>,
    body: String,
}

impl<'e> EventRow<'e> {
    fn new((index, event): (usize, &'e Event)) -> Option<Self> {
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
            body: serde_json::to_string(&event.kind).ok()?,
        })
    }
}

/// A run's creation, as a row of `runs`.
struct Created<'e> {
    id: Uuid,
    run_type: &'static str,
    flow_run_id: Option<Uuid>,
    ts: i64,
    created: &'e flowkit::events::RunCreated,
}

impl<'e> Created<'e> {
    fn new(row: &EventRow<'e>) -> Option<Self> {
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
struct Change<'e> {
    id: Uuid,
    run_type: &'static str,
    flow_run_id: Option<Uuid>,
    ts: i64,
    change: &'e flowkit::events::StateChanged,
}

impl<'e> Change<'e> {
    fn new(row: &EventRow<'e>) -> Option<Self> {
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

fn time(nanos: Option<i64>) -> Option<DateTime<Utc>> {
    nanos.map(DateTime::from_timestamp_nanos)
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies the migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(false);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Store { writer, reader })
    }

    /// Stores a batch of valid events in one transaction, and updates the runs they are about.
    ///
    /// Statements carry many rows each (an event is a few microseconds, not a round trip), and
    /// only events stored for the first time update their runs, so a batch sent twice changes
    /// nothing the second time.
    pub async fn ingest(&self, events: &[Event]) -> Result<Ingested, StoreError> {
        let rows: Vec<EventRow<'_>> = events
            .iter()
            .enumerate()
            .filter_map(EventRow::new)
            .collect();
        let mut tx = self.writer.begin().await?;
        let mut fresh: HashSet<Uuid> = HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (id, ts, flow_run_id, task_run_id, kind, level, body) ",
            );
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(event.event.id)
                    .push_bind(event.ts)
                    .push_bind(event.event.flow_run_id)
                    .push_bind(event.event.task_run_id)
                    .push_bind(event.kind)
                    .push_bind(event.level.clone())
                    .push_bind(event.body.clone());
            });
            insert.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
            let stored: Vec<Uuid> = insert.build_query_scalar().fetch_all(&mut *tx).await?;
            fresh.extend(stored);
        }
        let mut outcome = Ingested {
            stored: fresh.len(),
            duplicates: rows.len() - fresh.len(),
            ..Ingested::default()
        };
        // Only events stored just now update runs (each once, even if sent twice in the batch).
        let mut new_rows: Vec<&EventRow<'_>> = Vec::with_capacity(fresh.len());
        for row in &rows {
            if fresh.remove(&row.event.id) {
                outcome.fresh.push(row.index);
                new_rows.push(row);
            }
        }
        let created: Vec<Created<'_>> = new_rows.iter().filter_map(|r| Created::new(r)).collect();
        for chunk in created.chunks(ROWS_PER_STATEMENT) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO runs (id, run_type, name, flow_run_id, parent_flow_run_id,
                     parent_task_run_id, created_ts, parameters, tags, upstream, map_index, retries) ",
            );
            upsert.push_values(chunk, |mut row, c| {
                row.push_bind(c.id)
                    .push_bind(c.run_type)
                    .push_bind(c.created.name.as_ref())
                    .push_bind(c.flow_run_id)
                    .push_bind(c.created.parent_flow_run_id)
                    .push_bind(c.created.parent_task_run_id)
                    .push_bind(c.ts)
                    .push_bind(c.created.parameters.as_ref().map(|p| p.to_string()))
                    .push_bind(serde_json::to_string(&c.created.tags).unwrap_or_default())
                    .push_bind(serde_json::to_string(&c.created.upstream).unwrap_or_default())
                    .push_bind(c.created.map_index.map(|i| i as i64))
                    .push_bind(i64::from(c.created.retries));
            });
            upsert.push(
                " ON CONFLICT (id) DO UPDATE SET
                     run_type = excluded.run_type, name = excluded.name,
                     flow_run_id = excluded.flow_run_id,
                     parent_flow_run_id = excluded.parent_flow_run_id,
                     parent_task_run_id = excluded.parent_task_run_id,
                     created_ts = excluded.created_ts, parameters = excluded.parameters,
                     tags = excluded.tags, upstream = excluded.upstream,
                     map_index = excluded.map_index, retries = excluded.retries",
            );
            upsert.build().execute(&mut *tx).await?;
        }
        let changes: Vec<Change<'_>> = new_rows.iter().filter_map(|r| Change::new(r)).collect();
        for chunk in changes.chunks(ROWS_PER_STATEMENT) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO runs (id, run_type, flow_run_id, state, state_final, state_ts,
                     message, attempts, start_ts, end_ts) ",
            );
            upsert.push_values(chunk, |mut row, c| {
                let is_final = c.change.state.is_terminal();
                row.push_bind(c.id)
                    .push_bind(c.run_type)
                    .push_bind(c.flow_run_id)
                    .push_bind(c.change.state.as_str())
                    .push_bind(i64::from(is_final))
                    .push_bind(c.ts)
                    .push_bind(c.change.message.as_deref())
                    .push_bind(i64::from(c.change.attempt))
                    .push_bind((c.change.state == State::Running).then_some(c.ts))
                    .push_bind(is_final.then_some(c.ts));
            });
            // A later state replaces an earlier one, but nothing replaces a terminal state
            // except a later terminal one: events may arrive late or out of order.
            upsert.push(
                " ON CONFLICT (id) DO UPDATE SET
                     state = CASE WHEN excluded.state_final > runs.state_final
                         OR (excluded.state_final = runs.state_final AND excluded.state_ts >= runs.state_ts)
                         THEN excluded.state ELSE runs.state END,
                     message = CASE WHEN excluded.state_final > runs.state_final
                         OR (excluded.state_final = runs.state_final AND excluded.state_ts >= runs.state_ts)
                         THEN excluded.message ELSE runs.message END,
                     state_ts = CASE WHEN excluded.state_final > runs.state_final
                         OR (excluded.state_final = runs.state_final AND excluded.state_ts >= runs.state_ts)
                         THEN excluded.state_ts ELSE runs.state_ts END,
                     state_final = max(runs.state_final, excluded.state_final),
                     attempts = max(runs.attempts, excluded.attempts),
                     start_ts = CASE WHEN runs.start_ts IS NULL THEN excluded.start_ts
                         WHEN excluded.start_ts IS NULL THEN runs.start_ts
                         ELSE min(runs.start_ts, excluded.start_ts) END,
                     end_ts = CASE WHEN excluded.end_ts IS NOT NULL
                         AND (runs.end_ts IS NULL OR excluded.end_ts > runs.end_ts)
                         THEN excluded.end_ts ELSE runs.end_ts END",
            );
            upsert.build().execute(&mut *tx).await?;
        }
        // Durations of the task runs that ended now, for the metrics.
        let ended: Vec<Uuid> = changes
            .iter()
            .filter(|c| c.run_type == "task" && c.change.state.is_terminal())
            .map(|c| c.id)
            .collect();
        for chunk in ended.chunks(ROWS_PER_STATEMENT) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT end_ts - start_ts FROM runs WHERE start_ts IS NOT NULL AND end_ts IS NOT NULL AND id IN (",
            );
            let mut ids = query.separated(", ");
            for id in chunk {
                ids.push_bind(id);
            }
            query.push(")");
            let nanos: Vec<i64> = query.build_query_scalar().fetch_all(&mut *tx).await?;
            outcome
                .task_durations
                .extend(nanos.into_iter().map(|n| n as f64 / 1e9));
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Flow runs, newest first, filtered.
    pub async fn flow_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let mut sql = String::from("SELECT * FROM runs WHERE run_type = 'flow'");
        if filter.flow.is_some() {
            sql.push_str(" AND name = ?1");
        }
        if filter.state.is_some() {
            sql.push_str(" AND state = ?2");
        }
        if filter.since.is_some() {
            sql.push_str(" AND created_ts >= ?3");
        }
        if filter.until.is_some() {
            sql.push_str(" AND created_ts < ?4");
        }
        if filter.tag.is_some() {
            sql.push_str(" AND EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = ?5)");
        }
        if filter.parent.is_some() {
            sql.push_str(" AND parent_flow_run_id = ?6");
        }
        if filter.before.is_some() {
            sql.push_str(" AND (created_ts < ?7 OR (created_ts = ?7 AND id < ?8))");
        }
        sql.push_str(" ORDER BY created_ts DESC, id DESC LIMIT ?9");
        let (before_ts, before_id) = filter.before.unzip();
        let rows = sqlx::query(&sql)
            .bind(&filter.flow)
            .bind(&filter.state)
            .bind(filter.since)
            .bind(filter.until)
            .bind(&filter.tag)
            .bind(filter.parent)
            .bind(before_ts)
            .bind(before_id)
            .bind(filter.limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// One run by id.
    pub async fn run(&self, id: Uuid) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// The task runs of a flow run, in creation order.
    pub async fn task_runs(&self, flow_run_id: Uuid) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM runs INDEXED BY runs_by_flow_run
             WHERE flow_run_id = ?1 AND run_type = 'task'
             ORDER BY created_ts, map_index, id",
        )
        .bind(flow_run_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The child flow runs of a flow run, in creation order.
    pub async fn child_flow_runs(&self, flow_run_id: Uuid) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM runs INDEXED BY runs_by_parent
             WHERE parent_flow_run_id = ?1 AND run_type = 'flow'
             ORDER BY created_ts, id",
        )
        .bind(flow_run_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The log lines of a flow run (and its task runs), oldest first.
    pub async fn logs(
        &self,
        flow_run_id: Uuid,
        filter: &LogFilter,
    ) -> Result<Vec<LogLine>, StoreError> {
        let mut sql = String::from(
            "SELECT id, ts, flow_run_id, task_run_id, level, body FROM events
             WHERE flow_run_id = ?1 AND kind = 'log'",
        );
        if filter.level.is_some() {
            sql.push_str(" AND level = ?2");
        }
        if filter.task_run_id.is_some() {
            sql.push_str(" AND task_run_id = ?3");
        }
        if filter.after.is_some() {
            sql.push_str(" AND (ts > ?4 OR (ts = ?4 AND id > ?5))");
        }
        sql.push_str(" ORDER BY ts, id LIMIT ?6");
        let (after_ts, after_id) = filter.after.unzip();
        let rows = sqlx::query(&sql)
            .bind(flow_run_id)
            .bind(&filter.level)
            .bind(filter.task_run_id)
            .bind(after_ts)
            .bind(after_id)
            .bind(filter.limit)
            .fetch_all(&self.reader)
            .await?;
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            let body: String = row.try_get("body")?;
            let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            lines.push(LogLine {
                id: row.try_get("id")?,
                timestamp: time(row.try_get("ts")?),
                flow_run_id: row.try_get("flow_run_id")?,
                task_run_id: row.try_get("task_run_id")?,
                level: row.try_get("level")?,
                message: body["message"].as_str().unwrap_or_default().to_string(),
                target: body["target"].as_str().map(String::from),
                fields: body
                    .get("fields")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null),
            });
        }
        Ok(lines)
    }

    /// How many events and runs are stored.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM runs) AS runs",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(Counts {
            events: row.try_get("events")?,
            runs: row.try_get("runs")?,
        })
    }

    /// Per flow: runs by state, the last run, and p50/p95 durations of its last 1,000 runs.
    pub async fn flow_summaries(&self) -> Result<Vec<FlowSummary>, StoreError> {
        let counts = sqlx::query(
            "SELECT name, state, count(*) AS n, max(created_ts) AS last
             FROM runs WHERE run_type = 'flow' AND name IS NOT NULL GROUP BY name, state",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut flows: std::collections::BTreeMap<String, FlowSummary> = Default::default();
        for row in counts {
            let name: String = row.try_get("name")?;
            let state: String = row.try_get("state")?;
            let n: i64 = row.try_get("n")?;
            let last: Option<i64> = row.try_get("last")?;
            let flow = flows.entry(name.clone()).or_insert_with(|| FlowSummary {
                name,
                ..FlowSummary::default()
            });
            flow.runs += n;
            flow.by_state.insert(state, n);
            if last > flow.last_run_ts {
                flow.last_run_ts = last;
            }
        }
        let durations = sqlx::query(
            "SELECT name, dur FROM (
                 SELECT name, end_ts - start_ts AS dur,
                        row_number() OVER (PARTITION BY name ORDER BY created_ts DESC) AS recent
                 FROM runs WHERE run_type = 'flow' AND start_ts IS NOT NULL AND end_ts IS NOT NULL)
             WHERE recent <= 1000",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut by_flow: std::collections::HashMap<String, Vec<i64>> = Default::default();
        for row in durations {
            by_flow
                .entry(row.try_get("name")?)
                .or_default()
                .push(row.try_get("dur")?);
        }
        for (name, mut durations) in by_flow {
            durations.sort_unstable();
            if let Some(flow) = flows.get_mut(&name) {
                let pick = |q: usize| {
                    durations[(durations.len() * q / 100).min(durations.len() - 1)] as f64 / 1e6
                };
                flow.p50_ms = Some(pick(50));
                flow.p95_ms = Some(pick(95));
            }
        }
        let mut out: Vec<FlowSummary> = flows.into_values().collect();
        for flow in &mut out {
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
        Ok(out)
    }

    /// How many runs are in each state, by run type.
    pub async fn runs_by_state(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows =
            sqlx::query("SELECT run_type, state, count(*) AS n FROM runs GROUP BY run_type, state")
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("run_type")?, r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }

    /// Deletes the runs created before `cutoff` (Unix nanoseconds) and their events.
    pub async fn delete_before(&self, cutoff: i64) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "DELETE FROM events WHERE flow_run_id IN
                 (SELECT id FROM runs WHERE run_type = 'flow' AND created_ts < ?1)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let deleted =
            sqlx::query("DELETE FROM runs WHERE run_type IN ('flow', 'task') AND created_ts < ?1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    /// True if the database answers.
    pub async fn healthy(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.reader).await.is_ok()
    }
}

fn run_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Run, StoreError> {
    let json = |column: &str| -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = row.try_get(column)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    };
    let created: Option<i64> = row.try_get("created_ts")?;
    let start: Option<i64> = row.try_get("start_ts")?;
    let end: Option<i64> = row.try_get("end_ts")?;
    let run_type: String = row.try_get("run_type")?;
    Ok(Run {
        id: row.try_get("id")?,
        run_type: if run_type == "flow" { "flow" } else { "task" },
        name: row.try_get("name")?,
        flow_run_id: row.try_get("flow_run_id")?,
        parent_flow_run_id: row.try_get("parent_flow_run_id")?,
        parent_task_run_id: row.try_get("parent_task_run_id")?,
        state: row.try_get("state")?,
        message: row.try_get("message")?,
        attempts: row.try_get("attempts")?,
        created: time(created),
        start: time(start),
        end: time(end),
        duration_ms: start.zip(end).map(|(s, e)| (e - s) as f64 / 1e6),
        parameters: json("parameters")?,
        tags: json("tags")?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        upstream: json("upstream")?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        map_index: row.try_get("map_index")?,
        retries: row.try_get("retries")?,
    })
}
