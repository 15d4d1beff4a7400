//! Queries: flow runs, one flow run with its task runs and child flow runs, a run's logs.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, NaiveDate, Utc};
use flowkit_api::states;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;
use crate::store::{Activity, LogFilter, LogLine, Run, RunFilter, StateChange};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 1_000;

/// Filters of the flow-run list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FlowRunsQuery {
    /// Only runs of this flow.
    flow: Option<String>,
    /// Only runs in one of these states, separated by commas (`Failed,Crashed`; any case).
    state: Option<String>,
    /// Only runs with a task run that failed, timed out or crashed (`true`), even if the run
    /// itself completed.
    failed_tasks: Option<bool>,
    /// Only runs created at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Only runs created before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Only runs with this tag.
    tag: Option<String>,
    /// Only child runs of this flow run.
    parent: Option<Uuid>,
    /// Only runs started by this deployment.
    deployment: Option<String>,
    /// Only runs for this logical date (`2026-11-27`, UTC): the day their data interval
    /// starts, or, for a run without one, the day it was due.
    logical_date: Option<NaiveDate>,
    /// Text in the flow's or the run's name, the parameters, the tags or the deployment
    /// (case-insensitive), or a run id.
    q: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Runs per page, 1 to 1,000 (default 50).
    limit: Option<i64>,
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `items`; a full page gets the cursor of its last item, `key` being its time
    /// and id.
    fn of(items: Vec<T>, limit: i64, key: impl Fn(&T) -> (Option<DateTime<Utc>>, Uuid)) -> Self {
        let next_cursor = (items.len() as i64 == limit)
            .then(|| items.last())
            .flatten()
            .and_then(|last| {
                let (time, id) = key(last);
                Some(format!("{}_{id}", time?.timestamp_nanos_opt()?))
            });
        Page { items, next_cursor }
    }
}

/// A query string read into `T`, or a 400 naming the parameter to blame. Every route with a
/// query reads it so, and refuses unknown parameters (`deny_unknown_fields`).
pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(q)| q).map_err(|rejection| {
        let text = rejection.body_text();
        let field = rejected_field(&text).map(str::to_string);
        let message = match field.as_deref() {
            // A time that is not one: say which format is wanted.
            Some(name @ ("since" | "until" | "start" | "end")) => {
                format!("`{name}` must be a time in RFC 3339, like 2026-11-28T02:00:00Z ({text})")
            }
            _ => format!("bad query string: {text}"),
        };
        ApiError::BadRequest { field, message }
    })
}

/// The parameter a query-string rejection blames: axum words them "Failed to deserialize query
/// string: limit: invalid digit found in string" (the path of `serde_path_to_error`).
fn rejected_field(text: &str) -> Option<&str> {
    let (field, _) = text
        .strip_prefix("Failed to deserialize query string: ")?
        .split_once(": ")?;
    let is_name = !field.is_empty()
        && field
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    is_name.then_some(field)
}

/// A text filter as the store holds text: NUL as U+FFFD (see `routes::events`), so searching for
/// it finds what was stored, and PostgreSQL is never sent a NUL.
fn stored_text(text: Option<String>) -> Option<String> {
    text.map(|t| {
        if t.contains('\0') {
            t.replace('\0', "\u{FFFD}")
        } else {
            t
        }
    })
}

fn limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        n => Err(ApiError::bad(
            "limit",
            format!("must be 1 to {MAX_LIMIT}, got {n}"),
        )),
    }
}

fn cursor(field: &str, text: Option<&str>) -> Result<Option<(i64, Uuid)>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let parsed = text
        .split_once('_')
        .and_then(|(ts, id)| Some((ts.parse::<i64>().ok()?, Uuid::parse_str(id).ok()?)));
    parsed
        .map(Some)
        .ok_or_else(|| ApiError::bad(field, "not a cursor this server gave"))
}

/// The day `date` (UTC) as a half-open range of stored times.
fn day_nanos(date: NaiveDate) -> Result<(i64, i64), ApiError> {
    let start = date.and_time(chrono::NaiveTime::MIN).and_utc();
    let end = start + chrono::Days::new(1);
    Ok((
        stored_nanos("logical_date", start)?,
        stored_nanos("logical_date", end)?,
    ))
}

fn nanos(field: &str, time: Option<DateTime<Utc>>) -> Result<Option<i64>, ApiError> {
    time.map(|t| stored_nanos(field, t)).transpose()
}

/// `time` in nanoseconds since 1970, as the store keeps times, or a 400 naming `field`.
fn stored_nanos(field: &str, time: DateTime<Utc>) -> Result<i64, ApiError> {
    time.timestamp_nanos_opt().ok_or_else(|| {
        ApiError::bad(
            field,
            format!(
                "{} is out of range: times from {} to {} can be stored",
                time.to_rfc3339(),
                DateTime::from_timestamp_nanos(i64::MIN).to_rfc3339(),
                DateTime::from_timestamp_nanos(i64::MAX).to_rfc3339()
            ),
        )
    })
}

/// The state named `name` (in any case), or a 400 naming `field`.
pub(crate) fn state_name(field: &str, name: &str) -> Result<&'static str, ApiError> {
    states::find(name).ok_or_else(|| {
        ApiError::bad(
            field,
            format!(
                "unknown state {:?}; expected one of {}",
                name.trim(),
                states::STATES.join(", ")
            ),
        )
    })
}

/// `Failed,crashed` as states; empty parts are ignored.
fn state_list(field: &str, text: Option<&str>) -> Result<Vec<&'static str>, ApiError> {
    let mut states = Vec::new();
    for part in text.unwrap_or_default().split(',') {
        if part.trim().is_empty() {
            continue;
        }
        let state = state_name(field, part)?;
        if !states.contains(&state) {
            states.push(state);
        }
    }
    Ok(states)
}

/// A flow run in the list: the run, and how many of its task runs are in each state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlowRunItem {
    #[serde(flatten)]
    pub run: Run,
    /// Its task runs by state (states with none are left out).
    pub task_counts: std::collections::BTreeMap<String, i64>,
}

/// Flow runs, newest first, each with its task runs counted by state (one grouped query per
/// page).
#[utoipa::path(get, path = "/api/flow_runs", tag = "runs", params(FlowRunsQuery),
    responses((status = 200, body = Page<FlowRunItem>), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_flow_runs(
    State(state): State<AppState>,
    params: Result<Query<FlowRunsQuery>, QueryRejection>,
) -> Result<Json<Page<FlowRunItem>>, ApiError> {
    let q = query(params)?;
    let filter = RunFilter {
        flow: stored_text(q.flow),
        states: state_list("state", q.state.as_deref())?,
        failed_tasks: q.failed_tasks.unwrap_or(false),
        since: nanos("since", q.since)?,
        until: nanos("until", q.until)?,
        tag: stored_text(q.tag),
        deployment: stored_text(q.deployment),
        logical_day: q.logical_date.map(day_nanos).transpose()?,
        started_only: false,
        parent: q.parent,
        search: stored_text(q.q).filter(|text| !text.trim().is_empty()),
        before: cursor("cursor", q.cursor.as_deref())?,
        limit: limit(q.limit)?,
    };
    let runs = state.store.flow_runs(&filter).await?;
    let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
    let mut counts: std::collections::HashMap<Uuid, std::collections::BTreeMap<String, i64>> =
        Default::default();
    for (id, run_state, n) in state.store.task_counts(&ids).await? {
        counts.entry(id).or_default().insert(run_state, n);
    }
    let items = runs
        .into_iter()
        .map(|run| FlowRunItem {
            task_counts: counts.remove(&run.id).unwrap_or_default(),
            run,
        })
        .collect();
    Ok(Json(Page::of(items, filter.limit, |item| {
        (item.run.created, item.run.id)
    })))
}

/// A flow run with its task runs and child flow runs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlowRunDetail {
    #[serde(flatten)]
    pub run: Run,
    pub task_runs: Vec<Run>,
    pub child_flow_runs: Vec<Run>,
    /// For a run the server made (scheduled, triggered, backfilled, retried): how, and the
    /// worker that took it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

async fn flow_run(state: &AppState, id: &str) -> Result<Run, ApiError> {
    let id = run_id(id)?;
    state
        .store
        .run(id)
        .await?
        .filter(|r| r.run_type == "flow")
        .ok_or_else(|| ApiError::NotFound(format!("flow run {id}")))
}

fn run_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::bad("id", format!("{id:?} is not a run id (a UUID)")))
}

/// One flow run, with its task runs and child flow runs.
#[utoipa::path(get, path = "/api/flow_runs/{id}", tag = "runs",
    params(("id" = Uuid, Path, description = "The flow run's id")),
    responses((status = 200, body = FlowRunDetail), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_flow_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<FlowRunDetail>, ApiError> {
    let run = flow_run(&state, &id).await?;
    let mut task_runs = state.store.task_runs(run.id).await?;
    // A task run's recorded arguments (up to 16 KiB each) are on its own route: 10,000 mapped
    // task runs would otherwise make this answer many megabytes.
    for task in &mut task_runs {
        task.parameters = None;
    }
    let child_flow_runs = state.store.child_flow_runs(run.id).await?;
    let work = state.store.work(run.id).await?.map(|w| w.view(false));
    Ok(Json(FlowRunDetail {
        run,
        task_runs,
        child_flow_runs,
        origin: work.as_ref().map(|w| w.origin.as_str()),
        worker: work.and_then(|w| w.worker),
    }))
}

/// One task run of a flow run, with its recorded arguments as `parameters` (a task records
/// them with `#[task(record_arguments = true)]`, or in a flow with
/// `#[flow(record_arguments = true)]`; otherwise `null`).
#[utoipa::path(get, path = "/api/flow_runs/{id}/task_runs/{task_run_id}", tag = "runs",
    params(("id" = Uuid, Path, description = "The flow run's id"),
        ("task_run_id" = Uuid, Path, description = "The task run's id")),
    responses((status = 200, body = Run), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_task_run(
    State(state): State<AppState>,
    Path((id, task_run_id)): Path<(String, String)>,
) -> Result<Json<Run>, ApiError> {
    let flow_run_id = run_id(&id)?;
    let task_run_id = Uuid::parse_str(&task_run_id).map_err(|_| {
        ApiError::bad(
            "task_run_id",
            format!("{task_run_id:?} is not a run id (a UUID)"),
        )
    })?;
    state
        .store
        .run(task_run_id)
        .await?
        .filter(|r| r.run_type == "task" && r.flow_run_id == Some(flow_run_id))
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!("task run {task_run_id} in flow run {flow_run_id}"))
        })
}

/// Which state changes to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatesQuery {
    /// Only the flow run's own changes and those of task runs that ran more than once or wait
    /// to retry (the others' single attempt is their `start` and `end`). Default false.
    retried_only: Option<bool>,
    /// Only the changes of this task run (its page's state history).
    task_run_id: Option<Uuid>,
}

/// The state history of a flow run and its task runs: every change, oldest first. Each attempt
/// of a task run is the time from a `Running` to the state that follows it.
#[utoipa::path(get, path = "/api/flow_runs/{id}/states", tag = "runs",
    params(("id" = Uuid, Path, description = "The flow run's id"), StatesQuery),
    responses((status = 200, body = Vec<StateChange>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_states(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<StatesQuery>, QueryRejection>,
) -> Result<Json<Vec<StateChange>>, ApiError> {
    let q = query(params)?;
    let run = flow_run(&state, &id).await?;
    let changes = state
        .store
        .state_changes(&run, q.retried_only.unwrap_or(false), q.task_run_id)
        .await?;
    Ok(Json(changes))
}

/// Filters of a run's logs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only lines of this level (TRACE, DEBUG, INFO, WARN, ERROR).
    level: Option<String>,
    /// Only lines of this level or a more severe one.
    min_level: Option<String>,
    /// Only lines of this task run.
    task_run_id: Option<Uuid>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Lines per page, 1 to 1,000 (default 50).
    limit: Option<i64>,
}

/// From the least to the most severe.
const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

fn log_level(field: &str, level: &str) -> Result<&'static str, ApiError> {
    let upper = level.to_ascii_uppercase();
    LEVELS
        .iter()
        .find(|l| **l == upper)
        .copied()
        .ok_or_else(|| {
            ApiError::bad(
                field,
                format!(
                    "unknown level {level:?}; expected one of {}",
                    LEVELS.join(", ")
                ),
            )
        })
}

/// A flow run's log lines, oldest first.
#[utoipa::path(get, path = "/api/flow_runs/{id}/logs", tag = "runs",
    params(("id" = Uuid, Path, description = "The flow run's id"), LogsQuery),
    responses((status = 200, body = Page<LogLine>), (status = 400, body = crate::error::ErrorBody)))]
pub async fn get_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<Page<LogLine>>, ApiError> {
    let id = run_id(&id)?;
    let q = query(params)?;
    let level = q.level.map(|l| log_level("level", &l)).transpose()?;
    let at_least = match q.min_level {
        Some(min) => {
            let min = log_level("min_level", &min)?;
            let from = LEVELS.iter().position(|l| *l == min).unwrap_or(0);
            Some(&LEVELS[from..])
        }
        None => None,
    };
    let filter = LogFilter {
        level,
        at_least,
        task_run_id: q.task_run_id,
        after: cursor("cursor", q.cursor.as_deref())?,
        limit: limit(q.limit)?,
    };
    // The request is good: the logs of a run the server does not have are a 404, like its
    // states, not an empty page.
    let id = flow_run(&state, &id.to_string()).await?.id;
    let items = state.store.logs(id, &filter).await?;
    Ok(Json(Page::of(items, filter.limit, |line| {
        (line.timestamp, line.id)
    })))
}

/// Per flow: runs by state, success rate, last run, p50/p95 durations.
#[utoipa::path(get, path = "/api/flows", tag = "runs",
    responses((status = 200, body = Vec<crate::store::FlowSummary>)))]
pub async fn list_flows(
    State(state): State<AppState>,
) -> Result<Json<Vec<crate::store::FlowSummary>>, ApiError> {
    Ok(Json(state.store.flow_summaries().await?))
}

/// How many runs the grid shows.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GridQuery {
    /// The last this many runs that started, 1 to 200 (default 30).
    limit: Option<i64>,
}

/// A flow's recent runs against its tasks: each cell counts one task's runs in one flow run by
/// state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlowGrid {
    /// The flow runs, newest first.
    pub runs: Vec<Run>,
    /// The tasks' names, in the order they first ran.
    pub tasks: Vec<String>,
    pub cells: Vec<crate::store::GridCell>,
}

/// The grid of a flow (like Airflow's): its last runs against its tasks, each cell the states
/// of that task's runs in that flow run, so a month of backfills shows which day and which task
/// went wrong.
#[utoipa::path(get, path = "/api/flows/{name}/grid", tag = "runs",
    params(("name" = String, Path, description = "The flow's name"), GridQuery),
    responses((status = 200, body = FlowGrid), (status = 400, body = crate::error::ErrorBody)))]
pub async fn flow_grid(
    State(state): State<AppState>,
    Path(name): Path<String>,
    params: Result<Query<GridQuery>, QueryRejection>,
) -> Result<Json<FlowGrid>, ApiError> {
    let q = query(params)?;
    let limit = match q.limit.unwrap_or(30) {
        n if (1..=200).contains(&n) => n,
        n => return Err(ApiError::bad("limit", format!("must be 1 to 200, got {n}"))),
    };
    let filter = RunFilter {
        flow: stored_text(Some(name)),
        started_only: true,
        limit,
        ..RunFilter::default()
    };
    let runs = state.store.flow_runs(&filter).await?;
    let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
    let cells = state.store.task_grid(&ids).await?;
    let mut first: std::collections::HashMap<&str, i64> = Default::default();
    for cell in &cells {
        let at = cell.first_ts.unwrap_or(i64::MAX);
        first
            .entry(cell.task.as_str())
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }
    let mut tasks: Vec<(&str, i64)> = first.into_iter().collect();
    tasks.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
    let tasks = tasks
        .into_iter()
        .map(|(name, _)| name.to_string())
        .collect();
    Ok(Json(FlowGrid { runs, tasks, cells }))
}

/// The window of the activity chart.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// The start (RFC 3339); default 24 hours before `until`.
    since: Option<DateTime<Utc>>,
    /// The end (RFC 3339); default now.
    until: Option<DateTime<Utc>>,
    /// How many buckets, 1 to 500 (default 24).
    buckets: Option<u32>,
}

/// Flow runs by state over time: per flow, how many runs started in each bucket of the window
/// (a run not started yet counts when it was made), by their state now.
#[utoipa::path(get, path = "/api/flow_activity", tag = "runs", params(ActivityQuery),
    responses((status = 200, body = Activity), (status = 400, body = crate::error::ErrorBody)))]
pub async fn flow_activity(
    State(state): State<AppState>,
    params: Result<Query<ActivityQuery>, QueryRejection>,
) -> Result<Json<Activity>, ApiError> {
    let q = query(params)?;
    let until = q.until.unwrap_or_else(Utc::now);
    let until_ns = stored_nanos("until", until)?;
    // 24 hours before a time the store can hold is a time chrono can hold.
    let since = q.since.unwrap_or(until - chrono::Duration::hours(24));
    let since_ns = stored_nanos("since", since)?;
    if since >= until {
        return Err(ApiError::bad("since", "must be before until"));
    }
    // The window's width in nanoseconds must fit in an i64, like the times themselves.
    if until_ns.checked_sub(since_ns).is_none() {
        let years = (until - since).num_days() / 365;
        return Err(ApiError::bad(
            "since",
            format!("the window from since to until spans {years} years; at most 292 are allowed"),
        ));
    }
    let buckets = q.buckets.unwrap_or(24);
    if !(1..=500).contains(&buckets) {
        return Err(ApiError::bad(
            "buckets",
            format!("must be 1 to 500, got {buckets}"),
        ));
    }
    Ok(Json(
        state.store.flow_activity(since, until, buckets).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the wording of axum's query rejections that `rejected_field` reads.
    #[test]
    fn a_query_rejection_names_its_field() {
        for (uri, field) in [
            ("/api/flow_runs?limit=abc", Some("limit")),
            ("/api/flow_runs?since=yesterday", Some("since")),
            ("/api/flow_runs?parent=123", Some("parent")),
            ("/api/flow_runs?nope=1", Some("nope")),
        ] {
            let uri: axum::http::Uri = uri.parse().expect("a URI");
            let error = query(Query::<FlowRunsQuery>::try_from_uri(&uri)).expect_err("rejected");
            match error {
                ApiError::BadRequest { field: got, .. } => {
                    assert_eq!(got.as_deref(), field, "{uri}")
                }
                other => panic!("{uri}: {other:?}"),
            }
        }
    }
}
