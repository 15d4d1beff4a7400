//! `/api/automations`: rules that notify when flow runs fail, are late or miss their SLA, and
//! may pause a deployment (the circuit breaker); `/api/deliveries`: what they sent, and how
//! each try went. Making and deleting rules needs `operate` and goes in the audit trail.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use flowkit_api::access::AuditAction;
use flowkit_api::automation::{
    AttemptView, AutomationSpec, AutomationView, DeliveryView, Target, redact,
};
use serde::Deserialize;
use uuid::Uuid;

use super::audit::{Touched, record};
use crate::AppState;
use crate::auth::Actor;
use crate::error::ApiError;
use crate::store::automations::AutomationRow;
use crate::store::nanos;

/// A stored rule as listed: targets' paths hidden (a Slack webhook's path is its secret).
fn view(row: &AutomationRow) -> Option<AutomationView> {
    let mut spec: AutomationSpec = serde_json::from_str(&row.spec).ok()?;
    for target in &mut spec.notify {
        *target = match target {
            Target::Webhook(url) => Target::Webhook(redact(url)),
            Target::Slack(url) => Target::Slack(redact(url)),
        };
    }
    Some(AutomationView {
        id: row.id,
        spec,
        created_at: DateTime::from_timestamp_nanos(row.created_ts),
        created_by: row.created_by.clone(),
    })
}

/// Makes a rule (a `flowkit_api::automation::AutomationSpec`); it applies at once.
#[utoipa::path(post, path = "/api/automations", tag = "automations",
    request_body(content = Object, description = "A flowkit_api::automation::AutomationSpec: {\"name\": \"etl-failures\", \"on\": {\"state\": [\"Failed\"]}, \"notify\": [{\"slack\": \"https://hooks.slack.com/...\"}], \"pause_after\": 3}"),
    responses((status = 201, body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_automation(
    State(state): State<AppState>,
    Actor(caller): Actor,
    body: Result<Json<AutomationSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<AutomationView>), ApiError> {
    let Json(spec) = body.map_err(|rejection| ApiError::Body {
        status: rejection.status(),
        message: format!(
            "expected an automation: {{\"name\": ..., \"on\": {{\"state\": [\"Failed\"]}} | {{\"late\": \"5m\"}} | {{\"sla\": {{\"max_duration\": \"1h\"}}}}, \"notify\": [{{\"webhook\": URL}} | {{\"slack\": URL}}]}}: {}",
            rejection.body_text()
        ),
    })?;
    spec.check()
        .map_err(|(field, message)| ApiError::bad(field, message))?;
    for (i, target) in spec.notify.iter().enumerate() {
        if reqwest::Url::parse(target.url()).is_err() {
            return Err(ApiError::bad(format!("notify[{i}]"), "not a URL"));
        }
    }
    let row = AutomationRow {
        id: Uuid::now_v7(),
        name: spec.name.trim().to_string(),
        spec: serde_json::to_string(&spec).map_err(|e| ApiError::bad("body", e.to_string()))?,
        created_ts: nanos(Utc::now()).unwrap_or(0),
        created_by: caller.name.to_string(),
    };
    if !state.store.insert_automation(row.clone()).await? {
        return Err(ApiError::Conflict {
            field: "name".into(),
            message: format!(
                "an automation named {:?} exists: delete it first, or pick another name",
                row.name
            ),
        });
    }
    state.automations.forget_rules();
    record(
        &state,
        &caller,
        AuditAction::AutomationCreate,
        Touched {
            deployment: spec.deployment.clone(),
            detail: Some(format!("{}: {}", row.name, spec.on.describe())),
            ..Touched::default()
        },
    )
    .await;
    let view = view(&row).ok_or_else(|| ApiError::bad("body", "unreadable"))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Every rule, by name (targets' paths hidden).
#[utoipa::path(get, path = "/api/automations", tag = "automations",
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_automations(
    State(state): State<AppState>,
) -> Result<Json<Vec<AutomationView>>, ApiError> {
    Ok(Json(
        state
            .store
            .automations()
            .await?
            .iter()
            .filter_map(view)
            .collect(),
    ))
}

/// Deletes a rule and its notifications (those not yet sent are not sent).
#[utoipa::path(delete, path = "/api/automations/{name}", tag = "automations",
    params(("name" = String, Path, description = "The rule's name")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_automation(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !state.store.delete_automation(&name).await? {
        return Err(ApiError::NotFound(format!("automation {name:?}")));
    }
    state.automations.forget_rules();
    record(
        &state,
        &caller,
        AuditAction::AutomationDelete,
        Touched {
            detail: Some(name.clone()),
            ..Touched::default()
        },
    )
    .await;
    Ok(Json(serde_json::json!({ "deleted": name })))
}

/// Query of the deliveries.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeliveriesQuery {
    /// Only those of this rule (by name).
    pub automation: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<i64>,
}

/// The latest notifications, newest first, with each try (status, error, time).
#[utoipa::path(get, path = "/api/deliveries", tag = "automations", params(DeliveriesQuery),
    responses((status = 200, body = Vec<Object>), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad(
            "query",
            format!("expected ?automation=, limit=: {}", rejection.body_text()),
        )
    })?;
    let rules = state.store.automations().await?;
    let names: std::collections::HashMap<Uuid, String> =
        rules.iter().map(|r| (r.id, r.name.clone())).collect();
    let only = match &query.automation {
        Some(name) => Some(
            rules
                .iter()
                .find(|r| &r.name == name)
                .map(|r| r.id)
                .ok_or_else(|| ApiError::NotFound(format!("automation {name:?}")))?,
        ),
        None => None,
    };
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    let rows = state.store.deliveries(only, limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|(d, attempts)| DeliveryView {
                id: d.id,
                automation: names.get(&d.automation_id).cloned().unwrap_or_default(),
                format: d.format,
                target: redact(&d.url),
                summary: d.summary,
                flow_run_id: d.flow_run_id,
                deployment: d.deployment,
                status: d.status,
                created_at: DateTime::from_timestamp_nanos(d.created_ts),
                done_at: d.done_ts.map(DateTime::from_timestamp_nanos),
                attempts: attempts
                    .into_iter()
                    .map(|a| AttemptView {
                        attempt: u32::try_from(a.attempt).unwrap_or(0),
                        at: DateTime::from_timestamp_nanos(a.ts),
                        status_code: a.status_code.and_then(|c| u16::try_from(c).ok()),
                        error: a.error,
                        millis: u64::try_from(a.millis).unwrap_or(0),
                    })
                    .collect(),
            })
            .collect(),
    ))
}
