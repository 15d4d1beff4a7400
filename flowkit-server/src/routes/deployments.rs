//! `/api/deployments`: deployments that serving programs registered, with their next and last runs.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use flowkit_api::DeploymentSpec;
use flowkit_api::access::AuditAction;
pub use flowkit_api::work::{DeploymentPatch, DeploymentRun, DeploymentView};

use crate::AppState;
use crate::auth::Actor;
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
    Actor(caller): Actor,
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
    if spec.queue.trim().is_empty() || spec.queue.len() > 200 {
        return Err(ApiError::bad("queue", "must be 1 to 200 characters"));
    }
    if let Some(parameters) = &spec.parameters
        && !parameters.is_object()
    {
        return Err(ApiError::bad("parameters", "must be a JSON object"));
    }
    if let Some(schema) = &spec.parameter_schema {
        let validator = jsonschema::validator_for(schema)
            .map_err(|error| ApiError::bad("parameter_schema", error.to_string()))?;
        // Defaults may leave out what each run must give.
        let required = |e: &jsonschema::ValidationError<'_>| {
            matches!(
                e.kind(),
                jsonschema::error::ValidationErrorKind::Required { .. }
            )
        };
        if let Some(error) = spec
            .parameters
            .as_ref()
            .and_then(|p| validator.iter_errors(p).find(|e| !required(e)))
        {
            return Err(ApiError::bad(
                parameter_field(&error),
                format!("the default parameters do not fit the schema: {error}"),
            ));
        }
    }
    let text = serde_json::to_string(&spec).map_err(|e| ApiError::bad("body", e.to_string()))?;
    let now = Utc::now();
    let ts = now.timestamp_nanos_opt().unwrap_or_default();
    let before = spec_of(&state, &name).await?;
    state
        .store
        .put_deployment(&spec.name, &spec.flow, &text, ts)
        .await?;
    // A changed schedule replaces the runs made ahead from the old one.
    let changed = before.as_ref().is_some_and(|(old, _)| {
        old.schedules != spec.schedules
            || old.time_zone != spec.time_zone
            || old.queue != spec.queue
            || old.parameters != spec.parameters
    });
    if changed {
        state.store.drop_future_scheduled(&name, ts).await?;
    }
    if before.is_none() || changed {
        crate::orchestrate::tick_one(&state, now, &name).await?;
    }
    // A program's key may register deployments; who made or changed one is on the record.
    let detail = match &before {
        None => Some("new".to_string()),
        Some((old, _)) => {
            let fields = changed_fields(old, &spec);
            (!fields.is_empty()).then(|| format!("changed: {}", fields.join(", ")))
        }
    };
    if let Some(detail) = detail {
        let touched = super::audit::Touched {
            deployment: Some(name.clone()),
            detail: Some(detail),
            ..Default::default()
        };
        super::audit::record(&state, &caller, AuditAction::DeploymentRegister, touched).await;
    }
    let paused = before.and_then(|(_, paused)| paused);
    Ok(Json(view(&state, spec, paused, Some(now)).await?))
}

/// The fields of a deployment's spec that differ between `old` and `new`.
fn changed_fields(old: &DeploymentSpec, new: &DeploymentSpec) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut differs = |name, changed| {
        if changed {
            fields.push(name);
        }
    };
    differs("flow", old.flow != new.flow);
    differs("schedules", old.schedules != new.schedules);
    differs("time_zone", old.time_zone != new.time_zone);
    differs("catchup", old.catchup != new.catchup);
    differs(
        "max_active_runs",
        old.max_active_runs != new.max_active_runs,
    );
    differs("paused", old.paused != new.paused);
    differs("queue", old.queue != new.queue);
    differs("priority", old.priority != new.priority);
    differs("parameters", old.parameters != new.parameters);
    differs(
        "parameter_schema",
        old.parameter_schema != new.parameter_schema,
    );
    fields
}

/// The field a schema error is about: `parameters`, or `parameters.day` for a property.
pub fn parameter_field(error: &jsonschema::ValidationError<'_>) -> String {
    let path = error.instance_path().to_string();
    let mut field = String::from("parameters");
    for part in path.split('/').filter(|p| !p.is_empty()) {
        field.push('.');
        field.push_str(part);
    }
    // A missing or unknown property is named by the error, not the path.
    if let jsonschema::error::ValidationErrorKind::Required { property } = error.kind()
        && let Some(name) = property.as_str()
    {
        field.push('.');
        field.push_str(name);
    }
    if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } =
        error.kind()
        && let Some(name) = unexpected.first()
    {
        field.push('.');
        field.push_str(name);
    }
    field
}

/// A deployment's spec and its paused flag set from the API, if it is registered.
pub async fn spec_of(
    state: &AppState,
    name: &str,
) -> Result<Option<(DeploymentSpec, Option<bool>)>, ApiError> {
    Ok(state
        .store
        .deployment_row(name)
        .await?
        .and_then(|(text, paused, _)| {
            serde_json::from_str::<DeploymentSpec>(&text)
                .ok()
                .map(|spec| (spec, paused))
        }))
}

/// One deployment, with its next runs and its latest runs.
#[utoipa::path(get, path = "/api/deployments/{name}", tag = "deployments",
    params(("name" = String, Path, description = "The deployment's name")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_deployment(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeploymentView>, ApiError> {
    if let Some((text, paused, updated)) = state.store.deployment_row(&name).await?
        && let Ok(spec) = serde_json::from_str::<DeploymentSpec>(&text)
    {
        return Ok(Json(
            view(&state, spec, paused, crate::store::time(Some(updated))).await?,
        ));
    }
    Err(ApiError::NotFound(format!("deployment {name:?}")))
}

/// Pauses or resumes a deployment's schedules (`{"paused": true}`). Pausing deletes the runs
/// its schedules made that no worker took; resuming makes the next ones (and, with `catchup`,
/// those missed while paused).
#[utoipa::path(patch, path = "/api/deployments/{name}", tag = "deployments",
    params(("name" = String, Path, description = "The deployment's name")),
    request_body(content = Object, description = "A flowkit_api::work::DeploymentPatch"),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn patch_deployment(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(name): Path<String>,
    body: Result<Json<DeploymentPatch>, JsonRejection>,
) -> Result<Json<DeploymentView>, ApiError> {
    let Json(patch) = body.map_err(|rejection| ApiError::Body {
        status: rejection.status(),
        message: format!(
            "expected {{\"paused\": true|false}}: {}",
            rejection.body_text()
        ),
    })?;
    if let Some(paused) = patch.paused {
        if !state.store.set_paused(&name, paused).await? {
            return Err(ApiError::NotFound(format!("deployment {name:?}")));
        }
        if paused {
            state.store.drop_future_scheduled(&name, i64::MIN).await?;
        } else {
            crate::orchestrate::tick_one(&state, Utc::now(), &name).await?;
        }
        let action = if paused {
            AuditAction::Pause
        } else {
            AuditAction::Resume
        };
        let touched = super::audit::Touched {
            deployment: Some(name.clone()),
            ..Default::default()
        };
        super::audit::record(&state, &caller, action, touched).await;
    }
    get_deployment(State(state), Path(name)).await
}

/// Every deployment, by name, with its next runs and its latest runs.
#[utoipa::path(get, path = "/api/deployments", tag = "deployments",
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_deployments(
    State(state): State<AppState>,
) -> Result<Json<Vec<DeploymentView>>, ApiError> {
    let mut views = Vec::new();
    for (text, paused, updated) in state.store.deployment_rows().await? {
        // A spec this server wrote; one it cannot read (a newer schema) is skipped, not fatal.
        let Ok(spec) = serde_json::from_str::<DeploymentSpec>(&text) else {
            tracing::warn!(spec = %text, "a stored deployment could not be read");
            continue;
        };
        views.push(view(&state, spec, paused, crate::store::time(Some(updated))).await?);
    }
    Ok(Json(views))
}

async fn view(
    state: &AppState,
    spec: DeploymentSpec,
    paused: Option<bool>,
    registered: Option<DateTime<Utc>>,
) -> Result<DeploymentView, ApiError> {
    let paused = paused.unwrap_or(spec.paused);
    let next_runs = if paused {
        Vec::new()
    } else {
        spec.next_runs(Utc::now(), NEXT).unwrap_or_default()
    };
    let filter = RunFilter {
        deployment: Some(spec.name.clone()),
        started_only: true,
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
    let paused_by = if paused {
        state.store.paused_by(&spec.name).await?
    } else {
        None
    };
    Ok(DeploymentView {
        paused_by,
        schedules: spec.describe().unwrap_or_default(),
        name: spec.name,
        flow: spec.flow,
        time_zone: spec.time_zone,
        catchup: spec.catchup,
        max_active_runs: spec.max_active_runs,
        paused,
        queue: spec.queue,
        priority: spec.priority,
        parameters: spec.parameters,
        parameter_schema: spec.parameter_schema,
        next_runs,
        last_runs,
        registered,
    })
}
