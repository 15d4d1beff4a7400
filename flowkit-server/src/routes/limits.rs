//! `/api/limits`: concurrency limits by tag and rate limits, set by operators, taken and given
//! back by programs (see `crate::limits`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use flowkit_api::access::AuditAction;
use flowkit_api::limits::{
    AcquireRequest, AcquireResponse, Holder, LimitNames, LimitSpec, LimitView, Rate, RateResponse,
    ReleaseRequest,
};
use uuid::Uuid;

use super::audit::{Touched, record};
use crate::AppState;
use crate::auth::Actor;
use crate::error::ApiError;
use crate::limits::{freed, waiter_ttl};
use crate::store::limits::{Acquired, LimitRow, SlotRequest};
use crate::store::nanos;

fn body<T>(body: Result<Json<T>, JsonRejection>, what: &str) -> Result<T, ApiError> {
    body.map(|Json(value)| value)
        .map_err(|rejection| ApiError::Body {
            status: rejection.status(),
            message: format!("expected {what}: {}", rejection.body_text()),
        })
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::bad("name", "must be 1 to 200 characters"));
    }
    Ok(())
}

fn rate_of(row: &LimitRow) -> Option<Rate> {
    let count = u32::try_from(row.rate_count?).ok()?;
    let per_ms = u64::try_from(row.rate_per_ms?).ok()?;
    Some(Rate { count, per_ms })
}

/// Every limit with its slots in use, who holds them, and how many wait.
#[utoipa::path(get, path = "/api/limits", tag = "limits",
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_limits(State(state): State<AppState>) -> Result<Json<Vec<LimitView>>, ApiError> {
    let rows = state.store.limits().await?;
    let (slots, waiting) = state.store.slots().await?;
    let waiting: HashMap<String, i64> = waiting.into_iter().collect();
    let mut holders: HashMap<String, Vec<Holder>> = HashMap::new();
    for slot in slots {
        holders.entry(slot.tag).or_default().push(Holder {
            task_run_id: slot.task_run_id,
            flow_run_id: slot.flow_run_id,
            acquired_at: DateTime::from_timestamp_nanos(slot.acquired_ts),
        });
    }
    let views = rows
        .into_iter()
        .map(|row| LimitView {
            concurrency: row.concurrency.and_then(|c| u32::try_from(c).ok()),
            rate: rate_of(&row),
            burst: row.burst.and_then(|b| u32::try_from(b).ok()),
            holders: holders.remove(&row.name).unwrap_or_default(),
            waiting: waiting
                .get(&row.name)
                .and_then(|n| u32::try_from(*n).ok())
                .unwrap_or(0),
            updated_at: DateTime::from_timestamp_nanos(row.updated_ts),
            name: row.name,
        })
        .collect();
    Ok(Json(views))
}

/// The tags with a concurrency limit and the names with a rate limit: what programs read (and
/// keep for a few seconds) to know which of their tasks' tags cost a trip to the server.
#[utoipa::path(get, path = "/api/limits/names", tag = "limits",
    responses((status = 200, body = Object)))]
pub async fn limit_names(State(state): State<AppState>) -> Result<Json<LimitNames>, ApiError> {
    let mut names = LimitNames::default();
    for row in state.store.limits().await? {
        if let Some(c) = row.concurrency.and_then(|c| u32::try_from(c).ok()) {
            names.concurrency.insert(row.name.clone(), c);
        }
        if row.rate_count.is_some() {
            names.rate.push(row.name);
        }
    }
    Ok(Json(names))
}

/// Sets a limit: `{"concurrency": 5}` (slots for task runs tagged `name`), `{"rate":
/// {"count": 10, "per_ms": 1000}, "burst": 5}` (for `flowkit::rate_limit(name)`), or both.
/// Replaces what was set; slots held stay held (a lower limit takes effect as they are freed).
#[utoipa::path(put, path = "/api/limits/{name}", tag = "limits",
    params(("name" = String, Path, description = "The tag or name")),
    request_body(content = Object, description = "A flowkit_api::limits::LimitSpec"),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
pub async fn put_limit(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(name): Path<String>,
    spec: Result<Json<LimitSpec>, JsonRejection>,
) -> Result<Json<LimitSpec>, ApiError> {
    let spec = body(spec, "a limit: {\"concurrency\": 5} or {\"rate\": {...}}")?;
    check_name(&name)?;
    if spec.concurrency.is_none() && spec.rate.is_none() {
        return Err(ApiError::bad(
            "concurrency",
            "set a concurrency, a rate, or both",
        ));
    }
    if spec.concurrency == Some(0) {
        return Err(ApiError::bad("concurrency", "must be at least 1"));
    }
    if let Some(rate) = &spec.rate
        && (rate.count == 0 || rate.per_ms == 0)
    {
        return Err(ApiError::bad("rate", "count and per_ms must be at least 1"));
    }
    if spec.burst == Some(0) {
        return Err(ApiError::bad("burst", "must be at least 1"));
    }
    if spec.burst.is_some() && spec.rate.is_none() {
        return Err(ApiError::bad("burst", "a burst needs a rate"));
    }
    let now = nanos(Utc::now()).unwrap_or(0);
    state
        .store
        .put_limit(LimitRow {
            name: name.clone(),
            concurrency: spec.concurrency.map(i64::from),
            rate_count: spec.rate.map(|r| i64::from(r.count)),
            rate_per_ms: spec
                .rate
                .map(|r| i64::try_from(r.per_ms).unwrap_or(i64::MAX)),
            burst: spec.burst.map(i64::from),
            updated_ts: now,
        })
        .await?;
    // A higher limit may let waiters in.
    freed(&state).await;
    let mut detail = Vec::new();
    if let Some(c) = spec.concurrency {
        detail.push(format!("concurrency {c}"));
    }
    if let Some(rate) = spec.rate {
        detail.push(format!("rate {rate} burst {}", spec.burst.unwrap_or(1)));
    }
    record(
        &state,
        &caller,
        AuditAction::LimitSet,
        Touched {
            detail: Some(format!("{name}: {}", detail.join(", "))),
            ..Touched::default()
        },
    )
    .await;
    Ok(Json(spec))
}

/// Removes a limit: its waiters go on at once, without a slot.
#[utoipa::path(delete, path = "/api/limits/{name}", tag = "limits",
    params(("name" = String, Path, description = "The tag or name")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove_limit(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.store.remove_limit(&name).await? {
        return Err(ApiError::NotFound(format!("limit {name:?}")));
    }
    freed(&state).await;
    record(
        &state,
        &caller,
        AuditAction::LimitRemove,
        Touched {
            detail: Some(name.clone()),
            ..Touched::default()
        },
    )
    .await;
    Ok(Json(serde_json::json!({ "name": name, "removed": true })))
}

/// Removes a ticket's place in line if its request is dropped before it is answered (the
/// program went away).
struct LeaveLine {
    state: Option<(AppState, Uuid)>,
}

impl Drop for LeaveLine {
    fn drop(&mut self) {
        if let Some((state, ticket)) = self.state.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                if let Err(error) = state.store.release_slot(ticket).await {
                    tracing::debug!(%error, "could not drop a waiter that left");
                }
                freed(&state).await;
            });
        }
    }
}

/// Takes a slot of tag `name` for a task run: answers `granted` at once when a slot is free
/// and nobody is before it in line, else as soon as a slot is freed for it (on any server
/// sharing the database), else `granted: false` after a third of the heartbeat timeout (ask
/// again with the same ticket: the place in line is kept).
#[utoipa::path(post, path = "/api/limits/{name}/acquire", tag = "limits",
    params(("name" = String, Path, description = "The tag")),
    request_body(content = Object, description = "A flowkit_api::limits::AcquireRequest"),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
pub async fn acquire(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Result<Json<AcquireRequest>, JsonRejection>,
) -> Result<Json<AcquireResponse>, ApiError> {
    let request = body(
        request,
        "an acquire: {\"ticket\": ..., \"task_run_id\": ...}",
    )?;
    check_name(&name)?;
    let mut rx = state.orchestra.limits.subscribe();
    let wait = state.orchestra.poll_wait();
    let deadline = tokio::time::Instant::now() + wait;
    let heartbeat_ms = u64::try_from(wait.as_millis()).unwrap_or(10_000);
    let ttl = i64::try_from(waiter_ttl(&state.orchestra).as_nanos()).unwrap_or(i64::MAX);
    let mut leave = LeaveLine { state: None };
    loop {
        rx.mark_unchanged();
        let now = nanos(Utc::now()).unwrap_or(0);
        let got = state
            .store
            .acquire_slot(SlotRequest {
                tag: name.clone(),
                ticket: request.ticket,
                task_run_id: request.task_run_id,
                flow_run_id: request.flow_run_id,
                now,
                stale_before: now - ttl,
            })
            .await?;
        let answer = |granted, limited, ahead| {
            Json(AcquireResponse {
                granted,
                limited,
                ahead,
                heartbeat_ms,
            })
        };
        let ahead = match got {
            Acquired::Granted => {
                leave.state = None;
                return Ok(answer(true, true, 0));
            }
            Acquired::NotLimited => {
                leave.state = None;
                return Ok(answer(false, false, 0));
            }
            Acquired::Waiting(ahead) => ahead,
        };
        if tokio::time::Instant::now() >= deadline {
            leave.state = None;
            return Ok(answer(false, true, ahead));
        }
        leave.state = Some((state.clone(), request.ticket));
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = state.shutdown.triggered() => {
                leave.state = None;
                return Ok(answer(false, true, ahead));
            }
        }
    }
}

/// Gives back a ticket's slot (or its place in line); the next in line gets it at once.
#[utoipa::path(post, path = "/api/limits/{name}/release", tag = "limits",
    params(("name" = String, Path, description = "The tag")),
    request_body(content = Object, description = "A flowkit_api::limits::ReleaseRequest"),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Result<Json<ReleaseRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let request = body(request, "a release: {\"ticket\": ...}")?;
    check_name(&name)?;
    state.store.release_slot(request.ticket).await?;
    freed(&state).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Takes a token of rate limit `name`: the answer says how long to wait before going on (the
/// server keeps the bucket; callers line up one interval apart, none is refused).
#[utoipa::path(post, path = "/api/limits/{name}/rate", tag = "limits",
    params(("name" = String, Path, description = "The rate limit's name")),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
pub async fn take_token(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RateResponse>, ApiError> {
    check_name(&name)?;
    let now = nanos(Utc::now()).unwrap_or(0);
    let answer = match state.store.take_token(&name, now).await? {
        Some(wait) => RateResponse {
            limited: true,
            wait_us: u64::try_from(wait / 1000).unwrap_or(0),
        },
        None => RateResponse {
            limited: false,
            wait_us: 0,
        },
    };
    Ok(Json(answer))
}
