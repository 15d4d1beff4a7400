//! Request bodies: events encoded as JSON arrays that stay under the server's size limit.
//!
//! A batch is cut by count and by bytes, so a run of large log lines never makes a body the
//! server refuses. A single event too large to send keeps its place with its long strings
//! truncated and marked, rather than being lost.

use serde_json::Value;

use super::encode;
use crate::events::Event;

/// Events per request, at most.
pub(super) const MAX_EVENTS: usize = 5_000;
/// Bytes per request, at most (the server accepts 16 MiB: a body this size leaves room).
pub(super) const MAX_BYTES: usize = 4 * 1024 * 1024;
/// An event larger than this, encoded, has its long strings truncated.
pub(super) const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// The most a body's buffer keeps between bodies ([`MAX_EVENTS`] events of a `map` take about
/// 1.3 MB).
const KEEP_CAPACITY: usize = 2 * 1024 * 1024;
/// How much of each long string an oversized event keeps, tried in turn until it fits.
const KEEP: [usize; 3] = [64 * 1024, 4 * 1024, 256];

/// A JSON array of encoded events, ready to post.
#[derive(Debug)]
pub(super) struct Body {
    pub(super) bytes: Vec<u8>,
    pub(super) events: usize,
}

/// The body being filled: events are encoded into it as they come, and it is handed out (to
/// the spool) when asked, or before an event that would take it over [`MAX_EVENTS`] events or
/// [`MAX_BYTES`]. Its buffer is reused from one body to the next.
pub(super) struct Batch {
    /// `[` and the events so far, comma-separated.
    bytes: Vec<u8>,
    events: usize,
}

impl Batch {
    pub(super) fn new() -> Batch {
        Batch {
            bytes: vec![b'['],
            events: 0,
        }
    }

    /// Events in the body so far.
    pub(super) fn events(&self) -> usize {
        self.events
    }

    /// Adds `event`. A body that is full before it (by count, or by bytes with it) is first
    /// given to `full` (its bytes, its events): whatever is given out during the call precedes
    /// `event`, which stays in the body being filled.
    pub(super) fn push(&mut self, event: &Event, full: &mut impl FnMut(&[u8], usize)) {
        if self.events >= MAX_EVENTS {
            self.finish(full);
        }
        let start = self.bytes.len();
        if self.events > 0 {
            self.bytes.push(b',');
        }
        let at = self.bytes.len();
        if let Err(error) = encode::encode(event, &mut self.bytes) {
            self.bytes.truncate(start);
            tracing::error!(%error, id = %event.id, "flowkit: an event could not be encoded; skipped");
            return;
        }
        if self.bytes.len() - at > MAX_EVENT_BYTES {
            self.bytes.truncate(at);
            match serde_json::to_value(event) {
                Ok(value) => self.bytes.extend_from_slice(&fit(value)),
                Err(error) => {
                    self.bytes.truncate(start);
                    tracing::error!(%error, id = %event.id, "flowkit: an event could not be encoded; skipped");
                    return;
                }
            }
        }
        if self.events > 0 && self.bytes.len() + 1 > MAX_BYTES {
            // It does not fit: the body goes without it, and it starts the next.
            let spilled = self.bytes.split_off(at);
            self.bytes.truncate(start);
            self.finish(full);
            self.bytes.extend_from_slice(&spilled);
        }
        self.events += 1;
    }

    /// Gives the body to `out` (its bytes, its events), if it holds any, and starts the next.
    pub(super) fn finish(&mut self, out: &mut impl FnMut(&[u8], usize)) {
        if self.events == 0 {
            return;
        }
        self.bytes.push(b']');
        out(&self.bytes, self.events);
        self.bytes.clear();
        self.bytes.push(b'[');
        self.events = 0;
        // The buffer of a body of large log lines is not kept: the usual one is far smaller.
        if self.bytes.capacity() > KEEP_CAPACITY {
            self.bytes.shrink_to(KEEP_CAPACITY);
        }
    }
}

/// Encodes `events` into bodies the server accepts, in order.
#[cfg(test)]
pub(super) fn bodies(events: &[Event]) -> Vec<Body> {
    let mut done = Vec::new();
    let mut keep = |bytes: &[u8], events: usize| {
        done.push(Body {
            bytes: bytes.to_vec(),
            events,
        })
    };
    let mut batch = Batch::new();
    for event in events {
        batch.push(event, &mut keep);
    }
    batch.finish(&mut keep);
    done
}

/// Splits a body in two halves (in order), to isolate what the server refuses. `None` when it
/// holds fewer than two events or cannot be read.
pub(super) fn halves(bytes: &[u8]) -> Option<(Body, Body)> {
    let events: Vec<Value> = serde_json::from_slice(bytes).ok()?;
    if events.len() < 2 {
        return None;
    }
    let middle = events.len() / 2;
    let encode = |part: &[Value]| {
        let mut bytes = serde_json::to_vec(part).ok()?;
        bytes.shrink_to_fit();
        Some(Body {
            bytes,
            events: part.len(),
        })
    };
    Some((encode(&events[..middle])?, encode(&events[middle..])?))
}

/// Encodes an oversized event with its long strings truncated until it fits (or, if it never
/// does, as small as it gets: the server then says why it refuses it).
fn fit(mut value: Value) -> Vec<u8> {
    let mut encoded = Vec::new();
    for keep in KEEP {
        truncate_strings(&mut value, keep);
        encoded = serde_json::to_vec(&value).unwrap_or_default();
        if encoded.len() <= MAX_EVENT_BYTES {
            break;
        }
    }
    encoded
}

/// Truncates every string in `value` longer than `keep` bytes, with a marker saying so.
fn truncate_strings(value: &mut Value, keep: usize) {
    match value {
        Value::String(text) => {
            if let Some(truncated) = truncated(text, keep) {
                *text = truncated;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| truncate_strings(v, keep)),
        Value::Object(fields) => fields.values_mut().for_each(|v| truncate_strings(v, keep)),
        _ => {}
    }
}

/// `text` cut to at most `keep` bytes (on a character boundary) plus a marker, if it is longer.
pub(super) fn truncated(text: &str, keep: usize) -> Option<String> {
    const MARK: &str = "… [truncated by flowkit: ";
    if text.len() <= keep + MARK.len() + 24 {
        return None;
    }
    let mut end = keep;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(format!("{}{MARK}{} bytes]", &text[..end], text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, LogLevel, LogRecord};
    use std::sync::Arc;

    fn log(message: String) -> Event {
        let at = chrono::Utc::now();
        Event {
            id: crate::ids::new_id(at),
            timestamp: at,
            flow_run_id: Some(uuid::Uuid::now_v7()),
            task_run_id: None,
            kind: EventKind::Log(Arc::new(LogRecord {
                level: LogLevel::Info,
                target: "test".into(),
                message,
                fields: Default::default(),
            })),
        }
    }

    fn decode(body: &Body) -> Vec<Event> {
        serde_json::from_slice(&body.bytes).expect("a body is a JSON array of events")
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        let count = 2 * MAX_EVENTS + MAX_EVENTS / 2;
        let small: Vec<Event> = (0..count).map(|i| log(format!("line {i}"))).collect();
        let cut = bodies(&small);
        assert_eq!(
            cut.iter().map(|b| b.events).collect::<Vec<_>>(),
            [MAX_EVENTS, MAX_EVENTS, MAX_EVENTS / 2]
        );
        let back: Vec<Event> = cut.iter().flat_map(decode).collect();
        assert_eq!(back, small, "every event, in order, unchanged");
        let large: Vec<Event> = (0..100).map(|_| log("x".repeat(100_000))).collect();
        let cut = bodies(&large);
        assert!(cut.len() >= 3, "100 events of 100 KB make several bodies");
        assert!(cut.iter().all(|b| b.bytes.len() <= MAX_BYTES));
        let back: Vec<Event> = cut.iter().flat_map(decode).collect();
        assert_eq!(back, large, "every event, in order, unchanged");
    }

    #[test]
    fn an_oversized_event_is_kept_with_its_long_strings_truncated() {
        let huge = log("é".repeat(3 * 1024 * 1024));
        let cut = bodies(std::slice::from_ref(&huge));
        assert_eq!(cut.len(), 1);
        assert!(cut[0].bytes.len() <= MAX_EVENT_BYTES + 2);
        let back = decode(&cut[0]);
        assert_eq!(back[0].id, huge.id);
        let EventKind::Log(line) = &back[0].kind else {
            panic!("a log line")
        };
        assert!(line.message.starts_with("éé"));
        assert!(
            line.message
                .ends_with("… [truncated by flowkit: 6291456 bytes]"),
            "{}",
            &line.message[line.message.len() - 60..]
        );
    }

    #[test]
    fn halves_keep_order_and_every_event() {
        let events: Vec<Event> = (0..7).map(|i| log(format!("line {i}"))).collect();
        let body = bodies(&events).pop().expect("one body");
        let (a, b) = halves(&body.bytes).expect("seven events split");
        assert_eq!((a.events, b.events), (3, 4));
        let mut back = decode(&a);
        back.extend(decode(&b));
        assert_eq!(back, events);
        let one = bodies(&events[..1]).pop().expect("one body");
        assert!(halves(&one.bytes).is_none(), "one event cannot be split");
    }
}
