//! API errors: a status and a JSON body that names the problem, never the internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong; `field` names what, when one field is to blame.
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    /// The body could not be read as JSON (too large, not JSON, wrong shape).
    #[error("{message}")]
    Body { status: StatusCode, message: String },
    /// The request clashes with what exists (a name taken).
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// No such run.
    #[error("{0} not found")]
    NotFound(String),
    /// No or wrong API key.
    #[error("missing or wrong API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// The key is known but lacks the scope the route needs.
    #[error("the key {key:?} lacks the `{scope}` scope, which {route} needs")]
    Forbidden {
        key: String,
        scope: flowkit_api::access::Scope,
        route: String,
    },
    /// The server cannot do it now (not the client's fault, nor the store's).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed; details go to the log, not to the client.
    #[error("the server could not complete the request")]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong.
    error: String,
    /// The field to blame, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// For a 403: the scope the route needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Body { status, .. } => *status,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(error) => {
                tracing::error!(%error, "request failed in the store");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let error = match &self {
            // The operator must act on these: say what is wrong.
            ApiError::Store(e @ (StoreError::FileGone(_) | StoreError::NotWritable(_))) => {
                format!("the server cannot store events: {e}")
            }
            _ => self.to_string(),
        };
        let scope = match &self {
            ApiError::Forbidden { scope, .. } => Some(scope.as_str()),
            _ => None,
        };
        let field = match self {
            ApiError::BadRequest { field, .. } => field,
            ApiError::Conflict { field, .. } => Some(field),
            _ => None,
        };
        (
            status,
            Json(ErrorBody {
                error,
                field,
                scope,
            }),
        )
            .into_response()
    }
}
