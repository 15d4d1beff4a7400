//! The audit trail: who (which key) did what, and when. Operators' actions record themselves
//! with [`record`]; `GET /api/audit` lists them, newest first.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use flowkit_api::access::{AuditAction, AuditEntry};
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::access::{AuditFilter, AuditRow};
use crate::store::nanos;

/// What an action touched, for its audit entry.
#[derive(Debug, Default)]
pub struct Touched {
    /// The deployment acted on (or whose run or backfill was).
    pub deployment: Option<String>,
    /// The flow run acted on.
    pub flow_run_id: Option<Uuid>,
    /// The backfill acted on.
    pub backfill_id: Option<Uuid>,
    /// More, in words.
    pub detail: Option<String>,
}

/// Records that `caller` did `action` now. The action is done whether or not this succeeds,
/// so a failure is logged, not answered.
pub async fn record(state: &AppState, caller: &Caller, action: AuditAction, touched: Touched) {
    let now = Utc::now();
    let entry = AuditRow {
        id: Uuid::now_v7(),
        ts: nanos(now).unwrap_or(0),
        actor: caller.name.to_string(),
        action: action.as_str().to_string(),
        deployment: touched.deployment,
        flow_run_id: touched.flow_run_id,
        backfill_id: touched.backfill_id,
        detail: touched.detail,
    };
    if let Err(error) = state.store.record_audit(entry).await {
        tracing::error!(%error, actor = %caller.name, action = action.as_str(), "could not record an audit entry");
    }
}

/// Query of the audit trail.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only what touched this deployment (its runs, pauses, backfills).
    pub deployment: Option<String>,
    /// Only what touched this flow run.
    pub run: Option<Uuid>,
    /// Only what touched this backfill.
    pub backfill: Option<Uuid>,
    /// Only what this key did (by name).
    pub actor: Option<String>,
    /// Entries older than this one (the `id` of the last entry of a page).
    pub before: Option<Uuid>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Operators' actions (trigger, cancel, pause, resume, backfill, key changes), newest first,
/// each with the name of the key that did it.
#[utoipa::path(get, path = "/api/audit", tag = "access", params(AuditQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = crate::error::ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad(
            "query",
            format!(
                "expected ?deployment=, run=, backfill=, actor=, before=, limit=: {}",
                rejection.body_text()
            ),
        )
    })?;
    let filter = AuditFilter {
        deployment: query.deployment,
        flow_run_id: query.run,
        backfill_id: query.backfill,
        actor: query.actor,
        before: query.before,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let rows = state.store.audit(filter).await?;
    Ok(Json(rows.into_iter().map(entry).collect()))
}

fn entry(row: AuditRow) -> AuditEntry {
    AuditEntry {
        id: row.id,
        at: DateTime::from_timestamp_nanos(row.ts),
        actor: row.actor,
        action: AuditAction::parse(&row.action).unwrap_or(AuditAction::Trigger),
        deployment: row.deployment,
        flow_run_id: row.flow_run_id,
        backfill_id: row.backfill_id,
        detail: row.detail,
    }
}
