//! `/api/deployments`: deployments that serving programs registered, with their next and last runs.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use flowkit_api::DeploymentSpec;
pub use flowkit_api::work::{DeploymentRun, DeploymentView};

use crate::AppState;
use crate::error::ApiError;
use crate::store::RunFilter;

/// How many upcoming times and past runs a deployment shows.
const NEXT: usize = 5;
const LAST: i64 = 10;

/// Registers (or updates) a deployment: what `flowkit::serve` does at start when
/// `FLOWKIT_API_URL` is set. The body is a `flowkit::serve::DeploymentSpec`.
#[utoipa::path(put, path = "/api/deployments/{name}", tag = "deployments",
    params(("name" = String, Path, description = "The deployment's name")),
    request_body(content = Object, description = "A flowkit::serve::DeploymentSpec"),
    responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
pub async fn put_deployment(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<DeploymentSpec>, JsonRejection>,
) -> Result<Json<DeploymentView>, ApiError> {
    let Json(spec) = body.map_err(|rejection| ApiError::Body {
        status: rejection.status(),
        message: format!("expected a deployment: {}", rejection.body_text()),
    })?;
    if spec.name != name {
        return Err(ApiError::bad(
            "name",
            format!("the body names {:?}, the path {name:?}", spec.name),
        ));
    }
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::bad("name", "must be 1 to 200 characters"));
    }
    if spec.max_active_runs == 0 {
        return Err(ApiError::bad("max_active_runs", "must be at least 1"));
    }
    if let Err((index, error)) = spec.schedules() {
        let field = match error {
            flowkit_api::ScheduleError::TimeZone(_) => "time_zone".to_string(),
            _ => format!("schedules[{index}]"),
        };
        return Err(ApiError::bad(field, error.to_string()));
    }
    let text = serde_json::to_string(&spec).map_err(|e| ApiError::bad("body", e.to_string()))?;
    let now = Utc::now();
    let ts = now.timestamp_nanos_opt().unwrap_or_default();
    state
        .store
        .put_deployment(&spec.name, &spec.flow, &text, ts)
        .await?;
    Ok(Json(view(&state, spec, Some(now)).await?))
}

/// Every deployment, by name, with its next runs and its latest runs.
#[utoipa::path(get, path = "/api/deployments", tag = "deployments",
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_deployments(
    State(state): State<AppState>,
) -> Result<Json<Vec<DeploymentView>>, ApiError> {
    let mut views = Vec::new();
    for (text, updated) in state.store.deployments().await? {
        // A spec this server wrote; one it cannot read (a newer schema) is skipped, not fatal.
        let Ok(spec) = serde_json::from_str::<DeploymentSpec>(&text) else {
            tracing::warn!(spec = %text, "a stored deployment could not be read");
            continue;
        };
        views.push(view(&state, spec, crate::store::time(Some(updated))).await?);
    }
    Ok(Json(views))
}

async fn view(
    state: &AppState,
    spec: DeploymentSpec,
    registered: Option<DateTime<Utc>>,
) -> Result<DeploymentView, ApiError> {
    let next_runs = if spec.paused {
        Vec::new()
    } else {
        spec.next_runs(Utc::now(), NEXT).unwrap_or_default()
    };
    let filter = RunFilter {
        deployment: Some(spec.name.clone()),
        limit: LAST,
        ..RunFilter::default()
    };
    let last_runs = state
        .store
        .flow_runs(&filter)
        .await?
        .into_iter()
        .map(|run| DeploymentRun {
            id: run.id,
            state: run.state,
            scheduled: run.scheduled,
            interval_start: run.interval_start,
        })
        .collect();
    Ok(DeploymentView {
        schedules: spec.describe().unwrap_or_default(),
        name: spec.name,
        flow: spec.flow,
        time_zone: spec.time_zone,
        catchup: spec.catchup,
        max_active_runs: spec.max_active_runs,
        paused: spec.paused,
        queue: spec.queue,
        priority: spec.priority,
        parameters: spec.parameters,
        parameter_schema: spec.parameter_schema,
        next_runs,
        last_runs,
        registered,
    })
}
