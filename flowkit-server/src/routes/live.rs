//! `GET /api/events/stream`: new events as Server-Sent Events, optionally for one flow run.
//!
//! Fed by a broadcast channel: each client reads at its own pace, and a client that falls too
//! far behind is told how many events it missed (an `lagged` event) instead of slowing the
//! others or the ingest. Every stream ends when the server shuts down, so a connected client
//! never holds up a shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use flowkit::events::Event;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::AppState;
use crate::error::ApiError;

/// Batches of newly stored events, as ingested.
pub type Live = broadcast::Sender<Arc<Vec<Event>>>;

/// Which events to follow.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only events of this flow run.
    flow_run_id: Option<Uuid>,
    /// Whether task runs' events are sent (default true); false keeps to flow runs' own events.
    task_events: Option<bool>,
}

/// New events as Server-Sent Events (`event: event`, JSON data), as they are stored.
#[utoipa::path(get, path = "/api/events/stream", tag = "events", params(StreamQuery),
    responses((status = 200, content_type = "text/event-stream", description = "A stream of events")))]
pub async fn stream(
    State(state): State<AppState>,
    params: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(q) = params.map_err(|rejection| ApiError::BadRequest {
        field: None,
        message: format!("bad query string: {}", rejection.body_text()),
    })?;
    let receiver = state.live.subscribe();
    let stream = futures::stream::unfold(
        (
            receiver,
            (q.flow_run_id, q.task_events.unwrap_or(true)),
            Vec::<SseEvent>::new(),
        ),
        |(mut receiver, filter, mut ready)| async move {
            let (flow_run_id, task_events) = filter;
            loop {
                if let Some(next) = ready.pop() {
                    return Some((Ok(next), (receiver, filter, ready)));
                }
                match receiver.recv().await {
                    Ok(batch) => {
                        // Reversed, so `pop` yields them in order.
                        ready = batch
                            .iter()
                            .rev()
                            .filter(|e| flow_run_id.is_none() || e.flow_run_id == flow_run_id)
                            .filter(|e| task_events || e.task_run_id.is_none())
                            .filter_map(|e| {
                                SseEvent::default()
                                    .id(e.id.to_string())
                                    .event("event")
                                    .json_data(e)
                                    .ok()
                            })
                            .collect();
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let lagged = SseEvent::default()
                            .event("lagged")
                            .data(format!("{missed} batches were skipped; reload to catch up"));
                        return Some((Ok(lagged), (receiver, filter, ready)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    let stream = stream.take_until(state.shutdown.triggered());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
