//! `POST /api/events`: ingest a batch of events.
//!
//! The body is a JSON array of events (the `flowkit::events::Event` schema). Each event is
//! checked on its own: the valid ones are stored (once: an event sent again is counted as a
//! duplicate) and each invalid one is reported with its index and the problem. The answer is
//! 200 when at least one event was valid, else 400.
//!
//! **NUL characters.** PostgreSQL cannot store `\u0000` in text, SQLite can; so that both store
//! the same thing, every NUL in a string (or a key) of an event is replaced by U+FFFD (`�`),
//! the replacement character, before it is stored. A value the database still refuses makes
//! that one event rejected, never the batch.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use chrono::{Duration, Utc};
use flowkit::events::{Event, EventKind, RunType};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::AppState;
use crate::error::ApiError;

/// The most events one request may carry.
pub const MAX_BATCH: usize = 10_000;

/// An event of a batch that was not stored, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rejected {
    pub index: usize,
    pub error: String,
}

/// How a batch went.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestAnswer {
    pub stored: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// Why an event cannot be stored, if it cannot.
fn check(event: &Event) -> Result<(), String> {
    let Some(nanos) = crate::store::nanos(event.timestamp) else {
        return Err("timestamp: out of range".into());
    };
    // Ids sort by time: retention and the state history find events by id range.
    if event.id.get_version_num() != 7 {
        return Err("id: must be a UUID v7 (time-ordered), as flowkit makes them".into());
    }
    if !crate::store::id_matches_time(event.id, nanos) {
        return Err(format!(
            "id: its time (UUID v7) must be within {} ms of `timestamp`, as flowkit makes them",
            crate::store::ID_TIME_SLACK_NANOS / 1_000_000
        ));
    }
    if event.timestamp > Utc::now() + Duration::days(1) {
        return Err("timestamp: more than a day in the future".into());
    }
    match &event.kind {
        EventKind::RunCreated(created) => match created.run_type {
            RunType::Task if event.task_run_id.is_none() => {
                Err("task_run_id: a task run's creation needs it".into())
            }
            RunType::Flow if event.flow_run_id.is_none() => {
                Err("flow_run_id: a flow run's creation needs it".into())
            }
            _ if created.name.trim().is_empty() => Err("kind.name: cannot be empty".into()),
            _ => Ok(()),
        },
        _ if event.flow_run_id.is_none() && event.task_run_id.is_none() => {
            Err("flow_run_id: an event needs a flow_run_id or a task_run_id".into())
        }
        _ => Ok(()),
    }
}

/// Stores a batch of events (a JSON array of `flowkit::events::Event`), each once.
#[utoipa::path(post, path = "/api/events", tag = "events",
    request_body(content = Vec<Object>, description = "Events in flowkit's event schema"),
    responses((status = 200, body = IngestAnswer), (status = 400, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody)))]
pub async fn ingest(
    State(state): State<AppState>,
    body: Result<Json<Vec<Box<RawValue>>>, JsonRejection>,
) -> Result<Json<IngestAnswer>, ApiError> {
    let Json(values) = body.map_err(|rejection| ApiError::Body {
        status: rejection.status(),
        message: format!("expected a JSON array of events: {}", rejection.body_text()),
    })?;
    if values.len() > MAX_BATCH {
        return Err(ApiError::bad(
            "events",
            format!(
                "at most {MAX_BATCH} events per request, got {}",
                values.len()
            ),
        ));
    }
    let mut events = Vec::with_capacity(values.len());
    let mut rejected = Vec::new();
    // The batch position of each valid event.
    let mut positions = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        match parse(value.get()) {
            Ok(event) => match check(&event) {
                Ok(()) => {
                    events.push(event);
                    positions.push(index);
                }
                Err(error) => rejected.push(Rejected { index, error }),
            },
            Err(error) => rejected.push(Rejected { index, error }),
        }
    }
    drop(values);
    if events.is_empty() && !rejected.is_empty() {
        let first = &rejected[0];
        return Err(ApiError::bad(
            format!("[{}]", first.index),
            format!(
                "no valid event in the batch; event {}: {}",
                first.index, first.error
            ),
        ));
    }
    let started = std::time::Instant::now();
    let outcome = state.store.ingest(&events).await?;
    if outcome.settled > 0 {
        // Runs handed out by the server ended: their places under `max_active_runs` are
        // free, so the polls waiting for one (here and on the other servers) look again.
        crate::orchestrate::wake_all(&state).await;
    }
    metrics::histogram!("flowkit_ingest_batch_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("flowkit_events_ingested_total").increment(outcome.stored as u64);
    for seconds in &outcome.task_durations {
        metrics::histogram!("flowkit_task_run_duration_seconds").record(*seconds);
    }
    crate::routes::live::publish(
        &state.live,
        outcome.fresh.iter().map(|&i| events[i].clone()),
    );
    // Flow runs that ended in this batch: the automations watching them queue their
    // notifications (sent later, by the deliverer; never here).
    crate::automations::runs_ended(&state, &ended_flow_runs(&events, &outcome.fresh)).await;
    // The database refused these (by position among the valid events).
    if !outcome.refused.is_empty() {
        for (position, error) in outcome.refused {
            rejected.push(Rejected {
                index: positions.get(position).copied().unwrap_or(position),
                error,
            });
        }
        rejected.sort_by_key(|r| r.index);
    }
    Ok(Json(IngestAnswer {
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        rejected,
    }))
}

/// The flow runs that the fresh events of a batch (by position) put in a final state.
fn ended_flow_runs(events: &[Event], fresh: &[usize]) -> Vec<uuid::Uuid> {
    let mut ids: Vec<uuid::Uuid> = fresh
        .iter()
        .filter_map(|&i| {
            let event = events.get(i)?;
            match &event.kind {
                EventKind::StateChanged(change)
                    if event.task_run_id.is_none() && change.state.is_terminal() =>
                {
                    event.flow_run_id
                }
                _ => None,
            }
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One event of a batch, from its JSON text, straight into an [`Event`]. A NUL can only come
/// escaped (`\u0000`: JSON has no raw control characters in strings), so only an event whose
/// text holds that escape goes through a [`serde_json::Value`] to have its NULs replaced.
fn parse(text: &str) -> Result<Event, String> {
    let parsed = if text.contains("\\u0000") {
        serde_json::from_str::<serde_json::Value>(text).and_then(|mut value| {
            replace_nul(&mut value);
            serde_json::from_value::<Event>(value)
        })
    } else {
        serde_json::from_str::<Event>(text)
    };
    parsed.map_err(|error| {
        // The problem, not where it is in this event's text (the index says which event).
        let message = error.to_string();
        let at = format!(" at line {} column {}", error.line(), error.column());
        match message.strip_suffix(&at) {
            Some(message) if error.line() > 0 => message.to_string(),
            _ => message,
        }
    })
}

/// Replaces each NUL character in the strings and keys of `value` by U+FFFD.
fn replace_nul(value: &mut serde_json::Value) {
    use serde_json::Value;
    const NUL: char = '\0';
    match value {
        Value::String(text) if text.contains(NUL) => *text = text.replace(NUL, "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(fields) => {
            if fields.keys().any(|k| k.contains(NUL)) {
                let old = std::mem::take(fields);
                *fields = old
                    .into_iter()
                    .map(|(k, v)| (k.replace(NUL, "\u{FFFD}"), v))
                    .collect();
            }
            fields.values_mut().for_each(replace_nul);
        }
        _ => {}
    }
}
