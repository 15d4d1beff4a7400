//! flowkit-server: stores the events that flowkit programs send and answers queries about their
//! runs. `main.rs` parses the command line; everything else is here, so tests can start the
//! server in-process as well as as a process.

pub mod auth;
pub mod automations;
pub mod backup;
pub mod body_limits;
pub mod dashboard;
pub mod error;
pub mod limits;
pub mod listen;
pub mod orchestrate;
pub mod routes;
pub mod serve;
pub mod store;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

pub use serve::{Limits, Shutdown, TlsAcceptor, serve, serve_tls, tls_acceptor};
pub use store::Store;

/// The largest request body accepted (a full batch of large events fits).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// The server's `--api-key` (every scope); without one, no key is checked.
    pub api_key: Option<Arc<str>>,
    /// The keys made with the API that this server has found, and their revocations.
    pub access: Arc<auth::Access>,
    /// Newly stored events, for the live stream.
    pub live: routes::live::Live,
    /// Renders `/metrics` (absent when no recorder could be installed).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Triggered when the server stops: live streams end on it.
    pub shutdown: Shutdown,
    /// Orchestration's settings and wake-ups.
    pub orchestra: Arc<orchestrate::Orchestra>,
    /// Automations' settings, the deliverer's wake-ups and the cached rules.
    pub automations: Arc<automations::Automations>,
}

impl AppState {
    /// The state of a server over `store`, installing the process's metrics recorder if none is.
    pub fn new(store: Store, api_key: Option<String>) -> AppState {
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .ok();
        AppState {
            access: Arc::new(auth::Access::new(&store)),
            store,
            api_key: api_key.map(Into::into),
            live: routes::live::channel(),
            metrics,
            shutdown: Shutdown::new(),
            orchestra: Arc::new(orchestrate::Orchestra::default()),
            automations: Arc::new(automations::Automations::default()),
        }
    }

    /// The same state with automations' settings (ticks, retries, the public address for
    /// links).
    pub fn with_automations(mut self, settings: automations::Settings) -> AppState {
        self.automations = Arc::new(automations::Automations::new(settings));
        self
    }

    /// The same state with orchestration's settings: how long a run's heartbeats may stop
    /// before it is recorded Crashed, and how often the scheduler ticks.
    pub fn with_orchestra(mut self, orchestra: orchestrate::Orchestra) -> AppState {
        self.orchestra = Arc::new(orchestra);
        self
    }
}

/// Deletes runs older than `days` every hour, starting now.
pub fn spawn_retention(store: Store, days: u32) {
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
            let Some(cutoff) = cutoff.timestamp_nanos_opt() else {
                continue;
            };
            match store.delete_before(cutoff).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, days, "retention: deleted old runs"),
                Err(error) => tracing::warn!(%error, "retention failed; will try again in an hour"),
            }
        }
    });
}

/// The API's routes and its OpenAPI document, generated from the handlers.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    OpenApiRouter::with_openapi(openapi_info())
        .routes(routes!(routes::events::ingest))
        .routes(routes!(routes::runs::list_flow_runs))
        .routes(routes!(routes::runs::get_flow_run))
        .routes(routes!(routes::runs::get_task_run))
        .routes(routes!(routes::runs::get_logs))
        .routes(routes!(routes::runs::get_states))
        .routes(routes!(routes::runs::flow_activity))
        .routes(routes!(routes::runs::list_flows))
        .routes(routes!(routes::runs::flow_grid))
        .routes(routes!(routes::live::stream))
        .routes(routes!(routes::deployments::list_deployments))
        .routes(routes!(routes::deployments::put_deployment))
        .routes(routes!(routes::deployments::get_deployment))
        .routes(routes!(routes::deployments::patch_deployment))
        .routes(routes!(routes::work::trigger))
        .routes(routes!(routes::work::deployment_runs))
        .routes(routes!(routes::work::cancel))
        .routes(routes!(routes::work::retry))
        .routes(routes!(routes::work::poll))
        .routes(routes!(routes::work::stop))
        .routes(routes!(routes::work::heartbeats))
        .routes(routes!(routes::work::workers))
        .routes(routes!(routes::backfills::create_backfill))
        .routes(routes!(routes::backfills::list_backfills))
        .routes(routes!(routes::backfills::get_backfill))
        .routes(routes!(routes::backfills::cancel_backfill))
        .routes(routes!(routes::backfills::gaps))
        .routes(routes!(routes::keys::create_key, routes::keys::list_keys))
        .routes(routes!(routes::keys::me))
        .routes(routes!(routes::keys::revoke_key))
        .routes(routes!(routes::audit::list_audit))
        .routes(routes!(routes::limits::list_limits))
        .routes(routes!(routes::limits::limit_names))
        .routes(routes!(
            routes::limits::put_limit,
            routes::limits::remove_limit
        ))
        .routes(routes!(routes::limits::acquire))
        .routes(routes!(routes::limits::release))
        .routes(routes!(routes::limits::take_token))
        .routes(routes!(
            routes::automations::create_automation,
            routes::automations::list_automations
        ))
        .routes(routes!(routes::automations::delete_automation))
        .routes(routes!(routes::automations::list_deliveries))
        .routes(routes!(stats))
        .split_for_parts()
}

fn openapi_info() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("flowkit-server")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Stores the run events of flowkit programs and answers queries about their runs."))
                .build(),
        )
        .build()
}

/// The OpenAPI document of the API (served at `/api/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The API.
pub fn app(state: AppState) -> Router {
    let (api, document) = api();
    let document = Arc::new(document);
    api.route("/healthz", get(healthz))
        .route(
            "/api/openapi.json",
            get(move || {
                let document = document.clone();
                async move { axum::Json((*document).clone()) }
            }),
        )
        .route("/metrics", get(render_metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        // After the key check, so outside it: the page asks for the key.
        .merge(dashboard::routes())
        // Unknown routes and wrong methods answer JSON, like every other error of the API.
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(body_limits::refuse_oversized))
        // gzip when the client accepts it (the run detail of 10,000 task runs is 4.5 MB of
        // JSON, about a tenth of that compressed); never the live stream, which must not wait.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(
                    tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO),
                )
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        )
        .with_state(state)
}

async fn no_route(uri: axum::http::Uri) -> error::ApiError {
    error::ApiError::NotFound(format!("route {}", uri.path()))
}

async fn wrong_method(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({
            "error": format!("{} does not answer {method}", uri.path()),
        })),
    )
        .into_response()
}

/// Readiness: 200 `{"status":"ok"}` when the server can store events right now (the last write
/// succeeded, the database file is the one opened, a small write succeeds), else 503 with why.
async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.store.ready().await {
        Ok(()) => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(error) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "unavailable", "error": error })),
        )
            .into_response(),
    }
}

/// How many events and runs are stored.
#[utoipa::path(get, path = "/api/stats", tag = "operations", responses((status = 200, body = store::Counts)))]
async fn stats(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::Json<store::Counts>, error::ApiError> {
    Ok(axum::Json(state.store.counts().await?))
}

async fn render_metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<String, error::ApiError> {
    for (run_type, run_state, n) in state.store.runs_by_state().await? {
        metrics::gauge!("flowkit_runs", "run_type" => run_type, "state" => run_state).set(n as f64);
    }
    Ok(state
        .metrics
        .as_ref()
        .map(|m| m.render())
        .unwrap_or_default())
}

/// A `--base-path` as served: `/flowkit` (a leading slash, none at the end), or None for the
/// root. Refuses what cannot be a path prefix.
pub fn base_path(text: &str) -> Result<Option<String>, String> {
    let trimmed = text.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(None);
    }
    if !trimmed.starts_with('/') {
        return Err(format!("{text:?} must start with '/', like /flowkit"));
    }
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '~');
    if !trimmed.chars().all(fine) || trimmed.contains("//") {
        return Err(format!(
            "{text:?} is not a plain path: use letters, digits, '-', '_', '.', '~' and '/'"
        ));
    }
    Ok(Some(trimmed.to_string()))
}

/// `app` under `base` (from [`base_path`]): `/flowkit/api/…` reaches `/api/…`, `/flowkit/` the
/// dashboard, `/flowkit` redirects to `/flowkit/` (the dashboard's links are relative to it),
/// and anything else is a 404. For a server behind a reverse proxy that forwards a prefix as is.
pub fn at_base_path(app: Router, base: Option<String>) -> Router {
    use axum::response::IntoResponse;
    let Some(base) = base else {
        return app;
    };
    let base: Arc<str> = base.into();
    Router::new().fallback_service(tower::service_fn(
        move |mut request: axum::extract::Request| {
            let app = app.clone();
            let base = base.clone();
            async move {
                use tower::ServiceExt;
                let path = request.uri().path();
                let Some(rest) = path.strip_prefix(&*base) else {
                    return Ok(error::ApiError::NotFound(format!(
                        "{path} (this server answers under {base}/)"
                    ))
                    .into_response());
                };
                if rest.is_empty() {
                    let query = request
                        .uri()
                        .query()
                        .map(|q| format!("?{q}"))
                        .unwrap_or_default();
                    return Ok(
                        axum::response::Redirect::permanent(&format!("{base}/{query}"))
                            .into_response(),
                    );
                }
                if !rest.starts_with('/') {
                    return Ok(error::ApiError::NotFound(path.to_string()).into_response());
                }
                let rest = match request.uri().query() {
                    Some(query) => format!("{rest}?{query}"),
                    None => rest.to_string(),
                };
                let mut parts = request.uri().clone().into_parts();
                parts.path_and_query = rest.parse().ok();
                if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                    *request.uri_mut() = uri;
                }
                app.oneshot(request).await
            }
        },
    ))
}
