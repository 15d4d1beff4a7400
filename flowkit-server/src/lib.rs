//! flowkit-server: stores the events that flowkit programs send and answers queries about their
//! runs. `main.rs` parses the command line; everything else is here, so tests can start the
//! server in-process as well as as a process.

pub mod auth;
pub mod error;
pub mod routes;
pub mod store;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use store::Store;

/// The largest request body accepted (a full batch of large events fits).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub api_key: Option<Arc<str>>,
}

/// The API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/events", post(routes::events::ingest))
        .route("/api/flow_runs", get(routes::runs::list_flow_runs))
        .route("/api/flow_runs/{id}", get(routes::runs::get_flow_run))
        .route("/api/flow_runs/{id}/logs", get(routes::runs::get_logs))
        .route("/api/stats", get(stats))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::http::StatusCode {
    if state.store.healthy().await {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn stats(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<store::Counts>, error::ApiError> {
    Ok(axum::Json(state.store.counts().await?))
}
