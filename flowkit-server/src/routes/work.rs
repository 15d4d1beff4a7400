//! The runs the server owns: triggering a deployment's run, cancelling a run, and the workers'
//! side: long-polling for runs (`poll`), stopping, and heartbeats from any program.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use flowkit::State as RunState;
use flowkit_api::DeploymentSpec;
use flowkit_api::access::AuditAction;
use flowkit_api::work::{
    CancelResponse, Heartbeat, HeartbeatResponse, Origin, PollRequest, PollResponse, RetryResponse,
    StopRequest, TriggerRequest, WorkRun, WorkerView,
};
use serde::Deserialize;
use uuid::Uuid;

use super::audit::{Touched, record};
use super::deployments::{parameter_field, spec_of};
use crate::AppState;
use crate::auth::Actor;
use crate::error::ApiError;
use crate::orchestrate::{record_state, record_unstarted, wake_all};
use crate::store::nanos;
use crate::store::work::{ClaimRequest, NewWork, WorkerRow};

fn body<T>(body: Result<Json<T>, JsonRejection>, what: &str) -> Result<T, ApiError> {
    body.map(|Json(value)| value)
        .map_err(|rejection| ApiError::Body {
            status: rejection.status(),
            message: format!("expected {what}: {}", rejection.body_text()),
        })
}

/// The parameters of a run: `given` over the deployment's defaults, checked against its schema.
pub fn merged_parameters(
    spec: &DeploymentSpec,
    given: Option<serde_json::Value>,
) -> Result<Option<serde_json::Value>, ApiError> {
    let given = match given {
        None => None,
        Some(serde_json::Value::Object(map)) => Some(map),
        Some(_) => return Err(ApiError::bad("parameters", "must be a JSON object")),
    };
    let mut merged = match &spec.parameters {
        Some(serde_json::Value::Object(defaults)) => Some(defaults.clone()),
        _ => None,
    };
    if let Some(given) = given {
        if spec.parameter_schema.is_none() && !given.is_empty() {
            let name = given.keys().next().cloned().unwrap_or_default();
            return Err(ApiError::bad(
                format!("parameters.{name}"),
                format!("deployment {:?} takes no parameters", spec.name),
            ));
        }
        let target = merged.get_or_insert_with(Default::default);
        for (key, value) in given {
            target.insert(key, value);
        }
    }
    let merged = merged.map(serde_json::Value::Object);
    if let Some(schema) = &spec.parameter_schema {
        let validator = jsonschema::validator_for(schema)
            .map_err(|error| ApiError::bad("parameter_schema", error.to_string()))?;
        let value = merged.clone().unwrap_or_else(|| serde_json::json!({}));
        if let Some(error) = validator.iter_errors(&value).next() {
            return Err(ApiError::bad(parameter_field(&error), error.to_string()));
        }
    }
    Ok(merged)
}

/// Starts a run of a deployment now (or at `scheduled_at`), with parameters checked against
/// its schema. The same `idempotency_key` twice gives the same run (200, `created: false`).
#[utoipa::path(post, path = "/api/deployments/{name}/runs", tag = "orchestration",
    params(("name" = String, Path, description = "The deployment's name")),
    request_body(content = Object, description = "A flowkit_api::work::TriggerRequest"),
    responses((status = 201, body = Object), (status = 200, body = Object),
        (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn trigger(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(name): Path<String>,
    request: Result<Json<TriggerRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<WorkRun>), ApiError> {
    let request = body(request, "a trigger: {\"parameters\": {...}}")?;
    let Some((spec, _)) = spec_of(&state, &name).await? else {
        return Err(ApiError::NotFound(format!("deployment {name:?}")));
    };
    if let Some(key) = &request.idempotency_key {
        if key.is_empty() || key.len() > 200 {
            return Err(ApiError::bad(
                "idempotency_key",
                "must be 1 to 200 characters",
            ));
        }
        if let Some(existing) = state.store.work_by_key(&name, key).await? {
            return Ok((StatusCode::OK, Json(existing.view(false))));
        }
    }
    let interval = match (request.interval_start, request.interval_end) {
        (None, None) => None,
        (Some(start), Some(end)) if start < end => nanos(start).zip(nanos(end)),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "interval_end",
                "must come after interval_start",
            ));
        }
        (Some(_), None) => return Err(ApiError::bad("interval_end", "is missing")),
        (None, Some(_)) => return Err(ApiError::bad("interval_start", "is missing")),
    };
    if let Some(queue) = &request.queue
        && (queue.trim().is_empty() || queue.len() > 200)
    {
        return Err(ApiError::bad("queue", "must be 1 to 200 characters"));
    }
    let parameters = merged_parameters(&spec, request.parameters)?;
    let now = Utc::now();
    let at = request.scheduled_at.unwrap_or(now);
    let scheduled_ts = nanos(at).ok_or_else(|| ApiError::bad("scheduled_at", "out of range"))?;
    let id = Uuid::now_v7();
    let work = NewWork {
        id,
        deployment: name.clone(),
        flow: spec.flow.clone(),
        queue: request.queue.unwrap_or_else(|| spec.queue.clone()),
        priority: i64::from(spec.priority),
        origin: Origin::Trigger,
        scheduled_ts,
        interval,
        parameters: parameters.map(|p| p.to_string()),
        idempotency_key: request.idempotency_key.clone(),
        attempt: 1,
        backfill_id: None,
    };
    let created = state
        .store
        .create_work(vec![work], nanos(now).unwrap_or(0))
        .await?;
    if created.is_empty() {
        // Another request with the same key won the race.
        if let Some(key) = &request.idempotency_key
            && let Some(existing) = state.store.work_by_key(&name, key).await?
        {
            return Ok((StatusCode::OK, Json(existing.view(false))));
        }
        return Err(ApiError::bad("idempotency_key", "could not create the run"));
    }
    wake_all(&state).await;
    let row = state
        .store
        .work(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id}")))?;
    record(
        &state,
        &caller,
        AuditAction::Trigger,
        Touched {
            deployment: Some(name),
            flow_run_id: Some(id),
            ..Touched::default()
        },
    )
    .await;
    Ok((StatusCode::CREATED, Json(row.view(true))))
}

/// Query of the runs a deployment's server owns.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WorkQuery {
    /// At most this many, latest scheduled first (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// The runs the server made for a deployment (scheduled, triggered, backfilled), latest
/// scheduled first: upcoming ones are `scheduled`.
#[utoipa::path(get, path = "/api/deployments/{name}/runs", tag = "orchestration",
    params(("name" = String, Path, description = "The deployment's name"), WorkQuery),
    responses((status = 200, body = Vec<Object>)))]
pub async fn deployment_runs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<WorkQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<WorkRun>>, ApiError> {
    let query = crate::routes::runs::query(query)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.store.work_list(Some(&name), None, limit).await?;
    Ok(Json(rows.iter().map(|r| r.view(false)).collect()))
}

/// Cancels a flow run: one no worker took yet is `Cancelled` at once and never starts; a
/// running one is cancelled by the program running it, told at its next poll or heartbeat
/// (within a second of a worker's long poll); `Cancelling` until it reports.
#[utoipa::path(post, path = "/api/flow_runs/{id}/cancel", tag = "orchestration",
    params(("id" = Uuid, Path, description = "The flow run's id")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(id): Path<String>,
) -> Result<Json<CancelResponse>, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad("id", "not a run id (a UUID)"))?;
    let rank = state.store.run_rank(id).await?;
    let Some((rank, _, current)) = rank else {
        return Err(ApiError::NotFound(format!("flow run {id}")));
    };
    if rank == 2 {
        return Ok(Json(CancelResponse { id, state: current }));
    }
    let deployment = state.store.work(id).await?.map(|row| row.deployment);
    let (unclaimed, live) = state.store.request_cancel(id).await?;
    let answer = if unclaimed.is_some() {
        record_unstarted(
            &state.store,
            id,
            RunState::Cancelled,
            "cancelled before it started",
        )
        .await?;
        "Cancelled"
    } else if live {
        wake_all(&state).await;
        "Cancelling"
    } else {
        // No program keeps it alive: nobody to tell. Recorded Cancelled, with what is under it.
        let unfinished = state.store.unfinished_under(id).await?;
        record_state(
            &state.store,
            &unfinished,
            RunState::Cancelled,
            "cancelled from the API (no program was sending heartbeats for it)",
        )
        .await?;
        state.store.finished(vec![id]).await?;
        // Its place under `max_active_runs` is free.
        wake_all(&state).await;
        "Cancelled"
    };
    record(
        &state,
        &caller,
        AuditAction::Cancel,
        Touched {
            deployment,
            flow_run_id: Some(id),
            detail: Some(format!("was {current}")),
            ..Touched::default()
        },
    )
    .await;
    Ok(Json(CancelResponse {
        id,
        state: answer.into(),
    }))
}

/// Resumes a flow run that failed, crashed, timed out or was cancelled ("Retry from failure"):
/// one of its deployment's workers runs it again as a new attempt of the same flow run, in
/// which each task call that completed before returns its stored result (recorded `Cached`)
/// and only the rest runs. 409 for a run still in progress (resuming it would run it twice),
/// one that completed, a child flow run (retry its parent), and a run this server did not hand
/// out (a program's own run: resume it there, with `my_flow(args).resume(id)`).
#[utoipa::path(post, path = "/api/flow_runs/{id}/retry", tag = "orchestration",
    params(("id" = Uuid, Path, description = "The flow run's id")),
    responses((status = 202, body = Object), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RetryResponse>), ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::bad("id", "not a run id (a UUID)"))?;
    let run = state.store.run(id).await?;
    let Some(run) = run.filter(|run| run.run_type == "flow") else {
        return Err(ApiError::NotFound(format!("flow run {id}")));
    };
    let conflict = |message: String| ApiError::Conflict {
        field: "state".into(),
        message,
    };
    match run.state.as_str() {
        "Failed" | "Crashed" | "Cancelled" | "TimedOut" => {}
        "Completed" | "Cached" => {
            return Err(conflict(format!(
                "flow run {id} is {}: there is nothing to resume",
                run.state
            )));
        }
        "Skipped" => {
            return Err(conflict(format!(
                "flow run {id} was Skipped (a run it waited for failed) and never ran: trigger its deployment instead"
            )));
        }
        other => {
            return Err(conflict(format!(
                "flow run {id} is {other}: it has not ended, and resuming it would run it twice; cancel it first, or wait for it to end"
            )));
        }
    }
    if let Some(parent) = run.parent_flow_run_id {
        return Err(conflict(format!(
            "flow run {id} is a child of flow run {parent}: retry the parent, which resumes its children"
        )));
    }
    let Some(work) = state.store.work(id).await? else {
        return Err(conflict(format!(
            "flow run {id} was not handed out by this server (not triggered, scheduled or backfilled here), so no worker can run it again: resume it in its program with `my_flow(args).resume(run_id)` (see the README's \"Results, caching and resume\")"
        )));
    };
    let attempt = run.attempts.max(work.attempt) + 1;
    let now = nanos(Utc::now()).unwrap_or(0);
    let Some(row) = state.store.resume_work(id, attempt, now).await? else {
        return Err(conflict(format!(
            "flow run {id} is already scheduled again or held by a worker"
        )));
    };
    // Recorded as attempt `attempt`, so the run shows `Scheduled` again at once.
    let unfinished = crate::store::work::Unfinished {
        id,
        run_type: "flow".into(),
        flow_run_id: None,
        attempts: attempt,
    };
    record_state(
        &state.store,
        &[unfinished],
        RunState::Scheduled,
        &format!(
            "retry from failure (asked by {}): attempt {attempt} reuses the results of the task runs that completed",
            caller.name
        ),
    )
    .await?;
    wake_all(&state).await;
    record(
        &state,
        &caller,
        AuditAction::Retry,
        Touched {
            deployment: Some(row.deployment.clone()),
            flow_run_id: Some(id),
            detail: Some(format!("was {}; attempt {attempt}", run.state)),
            ..Touched::default()
        },
    )
    .await;
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryResponse {
            id,
            deployment: row.deployment,
            attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            state: "Scheduled".into(),
        }),
    ))
}

fn check_worker_name(worker: &str) -> Result<(), ApiError> {
    if worker.trim().is_empty() || worker.len() > 200 {
        return Err(ApiError::bad("worker", "must be 1 to 200 characters"));
    }
    Ok(())
}

/// A worker asks for runs and says which it holds (its heartbeat). Answers at once when it has
/// runs for it or cancels to deliver, else as soon as some appear (on any server sharing the
/// database), else after a third of the heartbeat timeout with nothing.
#[utoipa::path(post, path = "/api/workers/{worker}/poll", tag = "orchestration",
    params(("worker" = String, Path, description = "The worker's name")),
    request_body(content = Object, description = "A flowkit_api::work::PollRequest"),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
pub async fn poll(
    State(state): State<AppState>,
    Path(worker): Path<String>,
    request: Result<Json<PollRequest>, JsonRejection>,
) -> Result<Json<PollResponse>, ApiError> {
    let request = body(request, "a poll")?;
    check_worker_name(&worker)?;
    if request.deployments.len() > 10_000 || request.running.len() > 100_000 {
        return Err(ApiError::bad("deployments", "too many"));
    }
    let mut rx = state.orchestra.wake.subscribe();
    let now = Utc::now();
    if state.orchestra.note_poll(&worker, request.stopping) {
        let seen = WorkerRow {
            name: worker.clone(),
            host: request.host.clone(),
            queues: serde_json::to_string(&request.queues).unwrap_or_default(),
            deployments: serde_json::to_string(&request.deployments).unwrap_or_default(),
            last_seen_ts: nanos(now).unwrap_or(0),
            state: if request.stopping {
                "stopping"
            } else {
                "online"
            }
            .into(),
        };
        state.store.worker_seen(seen).await?;
    }
    // The served deployments' `max_active_runs` (one query each for a few, one scan for many).
    let rows = if request.deployments.len() <= 100 {
        let mut rows = Vec::new();
        for name in &request.deployments {
            rows.extend(state.store.deployment_row(name).await?);
        }
        rows
    } else {
        state.store.deployment_rows().await?
    };
    let limits: HashMap<String, i64> = rows
        .into_iter()
        .filter_map(|(text, _, _)| serde_json::from_str::<DeploymentSpec>(&text).ok())
        .filter(|spec| request.deployments.contains(&spec.name))
        .map(|spec| (spec.name, spec.max_active_runs as i64))
        .collect();
    let wait = state.orchestra.poll_wait();
    let deadline = tokio::time::Instant::now() + wait;
    let heartbeat_ms = u64::try_from(wait.as_millis()).unwrap_or(10_000);
    loop {
        rx.mark_unchanged();
        let now = nanos(Utc::now()).unwrap_or(0);
        let (cancel, lost) = state
            .store
            .heartbeat(Some(worker.clone()), request.running.clone(), now)
            .await?;
        let capacity = if request.stopping {
            0
        } else {
            request.capacity as usize
        };
        if capacity > 0 {
            metrics::counter!("flowkit_claim_rounds_total").increment(1);
        }
        let runs = state
            .store
            .claim(&ClaimRequest {
                worker: &worker,
                deployments: &limits,
                queues: &request.queues,
                capacity,
                now,
            })
            .await?;
        if !runs.is_empty() || !cancel.is_empty() || !lost.is_empty() {
            return Ok(Json(PollResponse {
                runs: runs.iter().map(|r| r.claimed()).collect(),
                cancel,
                lost,
                heartbeat_ms,
            }));
        }
        // Nothing yet: wait for a wake-up, the next run's time, or the deadline. Runs already
        // due that the claim left are held back by a limit (`max_active_runs`, a backfill's
        // `max_active`): a run ending wakes this, so they are not waited on by the clock
        // (which would look again at once, in a loop, until the deadline).
        let mut until = deadline;
        if capacity > 0 {
            let names: Vec<String> = limits.keys().cloned().collect();
            if let Some(next) = state.store.next_due(&names, &request.queues, now).await? {
                let left = Duration::from_nanos(u64::try_from(next - now).unwrap_or(0));
                until = until.min(tokio::time::Instant::now() + left);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Json(PollResponse {
                heartbeat_ms,
                ..PollResponse::default()
            }));
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep_until(until) => {}
            _ = state.shutdown.triggered() => {
                return Ok(Json(PollResponse { heartbeat_ms, ..PollResponse::default() }));
            }
        }
    }
}

/// A worker stops: the runs it hands back (which it cancelled) are made again for another
/// worker, and it shows as stopped.
#[utoipa::path(post, path = "/api/workers/{worker}/stop", tag = "orchestration",
    params(("worker" = String, Path, description = "The worker's name")),
    request_body(content = Object, description = "A flowkit_api::work::StopRequest"),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody)))]
pub async fn stop(
    State(state): State<AppState>,
    Path(worker): Path<String>,
    request: Result<Json<StopRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let request = body(request, "a stop: {\"handed_back\": [...]}")?;
    check_worker_name(&worker)?;
    let now = nanos(Utc::now()).unwrap_or(0);
    // A run handed back frees its place under `max_active_runs` even when not made again.
    let mut freed = false;
    for id in request.handed_back {
        if let Some(row) = state
            .store
            .settle(id, "cancelled", Some(worker.clone()))
            .await?
        {
            freed = true;
            let flow = crate::orchestrate::flow_of(&state, &row.deployment).await;
            let again = row.again(row.attempt, &flow, now);
            state.store.create_work(vec![again], now).await?;
        }
    }
    let seen = state
        .store
        .workers()
        .await?
        .into_iter()
        .find(|(w, _)| w.name == worker);
    if let Some((mut row, _)) = seen {
        row.state = "stopped".into();
        row.last_seen_ts = now;
        state.store.worker_seen(row).await?;
    }
    if freed {
        wake_all(&state).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Any program streaming events says its flow runs are alive; the answer lists those to
/// cancel. Runs whose heartbeats stop for the timeout are recorded `Crashed`. With `wait_ms`,
/// the answer is held (at most `heartbeat_ms`) until a cancel is asked for one of the runs,
/// on any server sharing the database: a cancel reaches a plain program within milliseconds.
#[utoipa::path(post, path = "/api/heartbeats", tag = "orchestration",
    request_body(content = Object, description = "A flowkit_api::work::Heartbeat"),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
pub async fn heartbeats(
    State(state): State<AppState>,
    request: Result<Json<Heartbeat>, JsonRejection>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let request = body(request, "a heartbeat: {\"runs\": [...]}")?;
    if request.runs.len() > 100_000 {
        return Err(ApiError::bad("runs", "too many"));
    }
    let most = state.orchestra.poll_wait();
    let heartbeat_ms = u64::try_from(most.as_millis()).unwrap_or(10_000);
    // Subscribed before the heartbeat is written: a cancel asked after it wakes this.
    let mut rx = state.orchestra.wake.subscribe();
    let now = nanos(Utc::now()).unwrap_or(0);
    let (mut cancel, _) = state
        .store
        .heartbeat(None, request.runs.clone(), now)
        .await?;
    let wait = Duration::from_millis(request.wait_ms).min(most);
    let deadline = tokio::time::Instant::now() + wait;
    while cancel.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep_until(deadline) => break,
            _ = state.shutdown.triggered() => break,
        }
        rx.mark_unchanged();
        cancel = state.store.cancels_asked(&request.runs).await?;
    }
    Ok(Json(HeartbeatResponse {
        cancel,
        heartbeat_ms,
    }))
}

/// The workers that polled this server's database, with the runs each holds.
#[utoipa::path(get, path = "/api/workers", tag = "orchestration",
    responses((status = 200, body = Vec<Object>)))]
pub async fn workers(State(state): State<AppState>) -> Result<Json<Vec<WorkerView>>, ApiError> {
    let timeout = chrono::TimeDelta::from_std(state.orchestra.heartbeat_timeout)
        .unwrap_or(chrono::TimeDelta::seconds(30));
    let now = Utc::now();
    let views = state
        .store
        .workers()
        .await?
        .into_iter()
        .map(|(w, runs)| {
            let last_seen = DateTime::from_timestamp_nanos(w.last_seen_ts);
            let state = if w.state != "stopped" && now - last_seen > timeout {
                "lost".to_string()
            } else {
                w.state
            };
            WorkerView {
                name: w.name,
                host: w.host,
                queues: serde_json::from_str(&w.queues).unwrap_or_default(),
                deployments: serde_json::from_str(&w.deployments).unwrap_or_default(),
                runs,
                last_seen,
                state,
            }
        })
        .collect();
    Ok(Json(views))
}
