//! Scoped API keys: made (`POST /api/keys`, the key shown this once), listed (never the key),
//! revoked (`DELETE /api/keys/{name}`), and `GET /api/keys/me`, which tells a client (the
//! dashboard) what its key may do. See `auth.rs` for how keys are checked.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use flowkit_api::access::{AuditAction, CreatedKey, KeyView, Me, NewKey, Scopes};
use uuid::Uuid;

use super::audit::{Touched, record};
use crate::AppState;
use crate::auth::{ANONYMOUS, API_KEY_NAME, Actor, hash_key, new_key};
use crate::error::ApiError;
use crate::store::access::KeyRow;
use crate::store::{Store, nanos};

/// Names no key may take: the server's own key, the caller of a keyless server, and the path
/// of `GET /api/keys/me`.
const RESERVED: [&str; 3] = [API_KEY_NAME, ANONYMOUS, "me"];

fn view(row: &KeyRow) -> KeyView {
    KeyView {
        name: row.name.clone(),
        scopes: Scopes::parse_list(&row.scopes).unwrap_or_default().list(),
        prefix: row.prefix.clone(),
        created_at: DateTime::from_timestamp_nanos(row.created_ts),
        created_by: row.created_by.clone(),
    }
}

/// Makes a key with a name and scopes; answers it this once (only its hash is kept).
#[utoipa::path(post, path = "/api/keys", tag = "access",
    request_body(content = Object, description = "A flowkit_api::access::NewKey: {\"name\": \"dashboard-team\", \"scopes\": [\"read\"]}"),
    responses((status = 201, body = Object), (status = 400, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    Actor(caller): Actor,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let Json(request) = body.map_err(|rejection| ApiError::Body {
        status: rejection.status(),
        message: format!(
            "expected a key: {{\"name\": \"...\", \"scopes\": [\"read\"]}}: {}",
            rejection.body_text()
        ),
    })?;
    if state.api_key.is_none() {
        return Err(ApiError::BadRequest {
            field: None,
            message: "this server checks no API key, so a key made now would protect nothing: \
                      start it with --api-key (FLOWKIT_API_KEY), then make keys with that key"
                .into(),
        });
    }
    let name = request.name.trim();
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::bad(
            "name",
            "must be 1 to 100 letters, digits, '-', '_' or '.'",
        ));
    }
    if RESERVED.contains(&name) {
        return Err(ApiError::bad("name", format!("{name:?} is reserved")));
    }
    let scopes = Scopes::of(&request.scopes);
    if scopes.is_empty() {
        return Err(ApiError::bad(
            "scopes",
            "give at least one of read, write, operate, admin",
        ));
    }
    let key = new_key().map_err(|error| {
        tracing::error!(%error, "no random numbers from the operating system");
        ApiError::Unavailable("the server cannot make a key now (no randomness)".into())
    })?;
    let row = KeyRow {
        id: Uuid::now_v7(),
        name: name.to_string(),
        hash: hash_key(&key),
        prefix: key.chars().take(10).collect(),
        scopes: scopes.to_string(),
        created_ts: nanos(Utc::now()).unwrap_or(0),
        created_by: caller.name.to_string(),
    };
    if !state.store.insert_key(row.clone()).await? {
        return Err(ApiError::Conflict {
            field: "name".into(),
            message: format!("a key named {name:?} exists: revoke it first, or pick another name"),
        });
    }
    record(
        &state,
        &caller,
        AuditAction::KeyCreate,
        Touched {
            detail: Some(format!("{name} ({scopes})")),
            ..Touched::default()
        },
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            view: view(&row),
            key,
        }),
    ))
}

/// Every key, by name: name, scopes, first characters, who made it and when; never the key.
#[utoipa::path(get, path = "/api/keys", tag = "access",
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_keys(State(state): State<AppState>) -> Result<Json<Vec<KeyView>>, ApiError> {
    Ok(Json(state.store.keys().await?.iter().map(view).collect()))
}

/// Revokes a key: it stops working at once, on every server sharing the database.
#[utoipa::path(delete, path = "/api/keys/{name}", tag = "access",
    params(("name" = String, Path, description = "The key's name")),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Actor(caller): Actor,
    Path(name): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    // Subscribed before the revocation, so its own notification is not missed.
    let mut heard = state.access.heard();
    heard.borrow_and_update();
    let Some(row) = state.store.delete_key(&name).await? else {
        return Err(ApiError::NotFound(format!("key {name:?}")));
    };
    state.access.forget();
    if matches!(state.store, Store::Postgres(_)) {
        // Answer once this server has heard its own notification: PostgreSQL has then sent
        // it to every server listening.
        if tokio::time::timeout(Duration::from_secs(2), heard.changed())
            .await
            .is_err()
        {
            tracing::warn!(key = %name, "did not hear the revocation's notification within 2 s");
        }
    }
    record(
        &state,
        &caller,
        AuditAction::KeyRevoke,
        Touched {
            detail: Some(format!("{} ({})", row.name, row.scopes)),
            ..Touched::default()
        },
    )
    .await;
    Ok(Json(view(&row)))
}

/// The key this request was made with: its name and scopes (what the dashboard may show).
#[utoipa::path(get, path = "/api/keys/me", tag = "access",
    responses((status = 200, body = Object)))]
pub async fn me(Actor(caller): Actor) -> Json<Me> {
    Json(Me {
        name: caller.name.to_string(),
        scopes: caller.scopes.list(),
    })
}
