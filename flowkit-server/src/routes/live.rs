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

/// Batches the live channel keeps for clients that are behind. A broadcast channel keeps its last
/// values whether or not anyone still has to read them, so this, with [`CHUNK`] and
/// [`MAX_STRING`], bounds the memory it holds: at most 256 × 64 events of at most a few
/// strings of 8 KiB each (a few MB with ordinary events).
pub const CAPACITY: usize = 256;
/// Events per batch on the live channel, at most.
pub const CHUNK: usize = 64;
/// The longest string an event keeps on the live channel (the API has the whole text).
const MAX_STRING: usize = 8 * 1024;

/// A channel for the live stream.
pub fn channel() -> Live {
    broadcast::channel(CAPACITY).0
}

/// Publishes newly stored events to the live stream's clients, in chunks, with long strings cut.
pub fn publish(live: &Live, events: impl Iterator<Item = Event>) {
    if live.receiver_count() == 0 {
        return;
    }
    let mut chunk = Vec::with_capacity(CHUNK);
    for event in events {
        chunk.push(bounded(event));
        if chunk.len() == CHUNK {
            let _ = live.send(Arc::new(std::mem::replace(
                &mut chunk,
                Vec::with_capacity(CHUNK),
            )));
        }
    }
    if !chunk.is_empty() {
        let _ = live.send(Arc::new(chunk));
    }
}

/// `event` with each string longer than [`MAX_STRING`] cut, and marked.
fn bounded(mut event: Event) -> Event {
    use flowkit::events::EventKind;
    fn cut(text: &mut String) {
        if text.len() > MAX_STRING {
            let mut end = MAX_STRING;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let total = text.len();
            text.truncate(end);
            text.push_str(&format!(
                "… [{total} bytes: the run's logs have the whole text]"
            ));
        }
    }
    fn too_long(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(text) => text.len() > MAX_STRING,
            serde_json::Value::Array(items) => items.iter().any(too_long),
            serde_json::Value::Object(fields) => fields.values().any(too_long),
            _ => false,
        }
    }
    fn cut_value(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => cut(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(cut_value),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(cut_value),
            _ => {}
        }
    }
    match &mut event.kind {
        // Copied (the event is shared with the ingest) only when something is too long.
        EventKind::Log(log)
            if log.message.len() > MAX_STRING || log.fields.values().any(too_long) =>
        {
            let log = Arc::make_mut(log);
            cut(&mut log.message);
            log.fields.values_mut().for_each(cut_value);
        }
        EventKind::StateChanged(change) => {
            if let Some(message) = &mut change.message {
                cut(message);
            }
        }
        EventKind::RunCreated(created) if created.parameters.as_ref().is_some_and(too_long) => {
            if let Some(parameters) = &mut Arc::make_mut(created).parameters {
                cut_value(parameters);
            }
        }
        _ => {}
    }
    event
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use flowkit::events::{EventKind, LogLevel, LogRecord};

    fn log(message: String, field: &str) -> Event {
        let mut fields = serde_json::Map::new();
        fields.insert("rows".into(), serde_json::Value::String(field.into()));
        Event {
            id: Uuid::now_v7(),
            timestamp: chrono::Utc::now(),
            flow_run_id: Some(Uuid::now_v7()),
            task_run_id: None,
            kind: EventKind::Log(Arc::new(LogRecord {
                level: LogLevel::Info,
                target: "live".into(),
                message,
                fields,
            })),
        }
    }

    #[test]
    fn long_strings_are_cut_and_short_events_are_not_copied() {
        let short = log("fetched".into(), "226");
        let EventKind::Log(before) = &short.kind else {
            unreachable!()
        };
        let before = before.clone();
        let kept = bounded(short);
        let EventKind::Log(after) = &kept.kind else {
            unreachable!()
        };
        assert!(
            Arc::ptr_eq(&before, after),
            "nothing to cut: shared, not copied"
        );

        let long = bounded(log("x".repeat(20_000), &"y".repeat(9_000)));
        let EventKind::Log(cut) = &long.kind else {
            unreachable!()
        };
        assert!(cut.message.starts_with(&"x".repeat(MAX_STRING)));
        assert!(
            cut.message
                .ends_with("… [20000 bytes: the run's logs have the whole text]")
        );
        assert!(
            cut.fields["rows"]
                .as_str()
                .unwrap()
                .ends_with("… [9000 bytes: the run's logs have the whole text]")
        );
    }
}
