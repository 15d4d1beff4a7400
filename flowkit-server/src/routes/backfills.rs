//! Backfills and gap reports: a deployment run over a past range, one run per interval of its
//! schedules (or per chunk), and for any range, each interval's latest run.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use flowkit::State as RunState;
use flowkit_api::access::AuditAction;
use flowkit_api::work::{BackfillRequest, BackfillView, IntervalView, Origin};
use serde::Deserialize;
use uuid::Uuid;

use super::audit::{Touched, record};
use super::deployments::spec_of;
use super::work::merged_parameters;
use crate::AppState;
use crate::auth::Actor;
use crate::error::ApiError;
use crate::orchestrate::{record_unstarted, wake_all};
use crate::store::nanos;
use crate::store::work::{BackfillRow, NewWork, latest_by_interval};

/// The queue a backfill's runs wait in unless it names one.
pub const BACKFILL_QUEUE: &str = "backfill";
/// At most this many intervals in one backfill or gap report.
pub const MAX_INTERVALS: usize = 100_000;

/// The intervals of `[start, end)` for a deployment: by its schedules, or by `chunk`.
fn plan(
    spec: &flowkit_api::DeploymentSpec,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    chunk: Option<&str>,
) -> Result<Vec<(i64, i64)>, ApiError> {
    if end <= start {
        return Err(ApiError::bad("end", "must come after start"));
    }
    let schedules = spec
        .schedules()
        .map_err(|(_, e)| ApiError::bad("deployment", e.to_string()))?;
    if chunk.is_none() && schedules.is_empty() {
        return Err(ApiError::bad(
            "chunk",
            "the deployment has no schedule: give a chunk (\"1d\") to cut the range",
        ));
    }
    let intervals = flowkit_api::intervals(&schedules, start, end, chunk)
        .map_err(|e| ApiError::bad("chunk", e.to_string()))?;
    if intervals.len() > MAX_INTERVALS {
        return Err(ApiError::bad(
            "end",
            format!("the range has more than {MAX_INTERVALS} intervals"),
        ));
    }
    Ok(intervals
        .into_iter()
        .filter_map(|(a, b)| nanos(a).zip(nanos(b)))
        .collect())
}

/// Each interval with its latest run.
async fn interval_views(
    state: &AppState,
    deployment: &str,
    intervals: &[(i64, i64)],
) -> Result<Vec<IntervalView>, ApiError> {
    let (Some(first), Some(last)) = (intervals.first(), intervals.last()) else {
        return Ok(Vec::new());
    };
    let runs = state
        .store
        .interval_runs(deployment, first.0, last.0 + 1)
        .await?;
    Ok(intervals
        .iter()
        .zip(latest_by_interval(intervals, &runs))
        .map(|((start, end), (run, count))| IntervalView {
            start: DateTime::from_timestamp_nanos(*start),
            end: DateTime::from_timestamp_nanos(*end),
            run: run.map(|r| r.id),
            state: run.map(|r| r.state.clone()),
            runs: count,
        })
        .collect())
}

async fn backfill_view(state: &AppState, row: BackfillRow) -> Result<BackfillView, ApiError> {
    let work = state
        .store
        .work_list(None, Some(row.id), MAX_INTERVALS as i64)
        .await?;
    let mut intervals: Vec<(i64, i64)> = work
        .iter()
        .filter_map(|w| w.interval_start_ts.zip(w.interval_end_ts))
        .collect();
    intervals.sort_unstable();
    intervals.dedup();
    let views = interval_views(state, &row.deployment, &intervals).await?;
    let open = work
        .iter()
        .any(|w| w.status == "scheduled" || w.status == "claimed");
    let status = if row.status == "running" && !open {
        "done".to_string()
    } else {
        row.status
    };
    Ok(BackfillView {
        id: row.id,
        deployment: row.deployment,
        start: DateTime::from_timestamp_nanos(row.start_ts),
        end: DateTime::from_timestamp_nanos(row.end_ts),
        chunk: row.chunk,
        max_active: u32::try_from(row.max_active).unwrap_or(1),
        status,
        queue: row.queue,
        created_at: DateTime::from_timestamp_nanos(row.created_ts),
        intervals: views,
    })
}

/// Starts a backfill of a deployment over `[start, end)`: one run per interval of its
/// schedules (or per `chunk`), oldest first, at most `max_active` at once, in the `backfill`
/// queue unless it names another. With `rerun_failed`, only the intervals without a
/// successful run.
#[utoipa::path(post, path = "/api/deployments/{name}/backfills", tag = "orchestration",
    params(("name" = String, Path, description = "The deployment's name")),
    request_body(content = Object, description = "A flowkit_api::work::BackfillRequest"),
    responses((status = 201, body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn create_backfill(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(name): Path<String>,
    request: Result<Json<BackfillRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<BackfillView>), ApiError> {
    let Json(request) = request.map_err(|rejection| ApiError::Body {
        status: rejection.status(),
        message: format!(
            "expected a backfill: {{\"start\": ..., \"end\": ...}}: {}",
            rejection.body_text()
        ),
    })?;
    let Some((spec, _)) = spec_of(&state, &name).await? else {
        return Err(ApiError::NotFound(format!("deployment {name:?}")));
    };
    let max_active = request.max_active.unwrap_or(1);
    if max_active == 0 {
        return Err(ApiError::bad("max_active", "must be at least 1"));
    }
    let queue = request
        .queue
        .clone()
        .unwrap_or_else(|| BACKFILL_QUEUE.to_string());
    if queue.trim().is_empty() || queue.len() > 200 {
        return Err(ApiError::bad("queue", "must be 1 to 200 characters"));
    }
    let mut intervals = plan(&spec, request.start, request.end, request.chunk.as_deref())?;
    if request.rerun_failed {
        let views = interval_views(&state, &name, &intervals).await?;
        intervals = intervals
            .into_iter()
            .zip(views)
            .filter(|(_, view)| !view.succeeded())
            .map(|(interval, _)| interval)
            .collect();
    }
    let parameters = merged_parameters(&spec, request.parameters)?;
    let now = nanos(Utc::now()).unwrap_or(0);
    let id = Uuid::now_v7();
    let row = BackfillRow {
        id,
        deployment: name.clone(),
        start_ts: nanos(request.start).unwrap_or(0),
        end_ts: nanos(request.end).unwrap_or(0),
        chunk: request.chunk.clone(),
        max_active: i64::from(max_active),
        status: "running".into(),
        queue: queue.clone(),
        created_ts: now,
    };
    state.store.put_backfill(row.clone()).await?;
    let items = intervals
        .iter()
        .enumerate()
        .map(|(i, (start, end))| NewWork {
            id: Uuid::now_v7(),
            deployment: name.clone(),
            flow: spec.flow.clone(),
            queue: queue.clone(),
            priority: i64::from(spec.priority),
            origin: Origin::Backfill,
            // Oldest first: their order is their due time (all already due).
            scheduled_ts: now - (intervals.len() - i) as i64,
            interval: Some((*start, *end)),
            parameters: parameters.as_ref().map(|p| p.to_string()),
            idempotency_key: None,
            attempt: 1,
            backfill_id: Some(id),
        })
        .collect();
    state.store.create_work(items, now).await?;
    wake_all(&state).await;
    let detail = format!(
        "{} to {}, {} interval(s)",
        request.start.to_rfc3339(),
        request.end.to_rfc3339(),
        intervals.len()
    );
    let touched = Touched {
        deployment: Some(name.clone()),
        backfill_id: Some(id),
        detail: Some(detail),
        ..Touched::default()
    };
    record(&state, &caller, AuditAction::Backfill, touched).await;
    Ok((StatusCode::CREATED, Json(backfill_view(&state, row).await?)))
}

/// Backfills, newest first.
#[utoipa::path(get, path = "/api/backfills", tag = "orchestration",
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_backfills(
    State(state): State<AppState>,
) -> Result<Json<Vec<BackfillView>>, ApiError> {
    let mut views = Vec::new();
    for row in state.store.backfills(None).await? {
        views.push(backfill_view(&state, row).await?);
    }
    Ok(Json(views))
}

async fn one_backfill(state: &AppState, id: &str) -> Result<BackfillRow, ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::bad("id", "not a backfill id (a UUID)"))?;
    state
        .store
        .backfills(Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("backfill {id}")))
}

/// One backfill, with each interval's latest run and its state.
#[utoipa::path(get, path = "/api/backfills/{id}", tag = "orchestration",
    params(("id" = Uuid, Path, description = "The backfill's id")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_backfill(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BackfillView>, ApiError> {
    let row = one_backfill(&state, &id).await?;
    Ok(Json(backfill_view(&state, row).await?))
}

/// Cancels a backfill: its runs no worker took yet are cancelled (those running finish).
#[utoipa::path(post, path = "/api/backfills/{id}/cancel", tag = "orchestration",
    params(("id" = Uuid, Path, description = "The backfill's id")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn cancel_backfill(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(id): Path<String>,
) -> Result<Json<BackfillView>, ApiError> {
    let row = one_backfill(&state, &id).await?;
    for run in state.store.cancel_backfill(row.id).await? {
        record_unstarted(
            &state.store,
            run,
            RunState::Cancelled,
            "its backfill was cancelled",
        )
        .await?;
    }
    let row = one_backfill(&state, &id).await?;
    let touched = Touched {
        deployment: Some(row.deployment.clone()),
        backfill_id: Some(row.id),
        ..Touched::default()
    };
    record(&state, &caller, AuditAction::BackfillCancel, touched).await;
    Ok(Json(backfill_view(&state, row).await?))
}

/// The range of a gap report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GapQuery {
    /// The range's start (RFC 3339).
    pub start: DateTime<Utc>,
    /// Its end (excluded).
    pub end: DateTime<Utc>,
    /// Cut the range in chunks of this length instead of by the schedules.
    pub chunk: Option<String>,
}

/// The gap report: each interval of the range (by the deployment's schedules, or `chunk`)
/// with its latest run and that run's state, so "which days are missing or failed" is one
/// request.
#[utoipa::path(get, path = "/api/deployments/{name}/gaps", tag = "orchestration",
    params(("name" = String, Path, description = "The deployment's name"), GapQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = crate::error::ErrorBody)))]
pub async fn gaps(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<GapQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<IntervalView>>, ApiError> {
    let query = crate::routes::runs::query(query)?;
    let Some((spec, _)) = spec_of(&state, &name).await? else {
        return Err(ApiError::NotFound(format!("deployment {name:?}")));
    };
    let intervals = plan(&spec, query.start, query.end, query.chunk.as_deref())?;
    Ok(Json(interval_views(&state, &name, &intervals).await?))
}
