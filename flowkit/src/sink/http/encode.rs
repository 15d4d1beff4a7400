//! Events written as JSON straight into a request body: the same bytes `serde_json` makes of an
//! [`Event`], at a fraction of the cost.
//!
//! The sink encodes every event a program makes (three per task run), on its own thread beside
//! the workers: with `serde_json` most of that thread's time went to escaping the field names,
//! and to formatting ids and times through `fmt` one character at a time. Here the field names
//! are literals, ids and times are written into stack buffers, and a string is copied as is
//! unless it holds a character JSON escapes. What is rare (a flow's parameters, a log line's
//! fields, a persisted result, a deployment's schedule, a year outside 0-9999) goes through
//! `serde_json`. The tests hold the output to `serde_json`'s, byte for byte, for every kind of
//! event, so the server reads it exactly as before.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::events::{Event, EventKind, LogLevel, LogRecord, RunCreated, RunType, StateChanged};

/// Bytes reserved per event: more than a task run's `RunCreated` takes (about 300).
const RESERVE: usize = 512;

/// Appends `event` to `out` as JSON, exactly as `serde_json::to_writer` writes it.
pub(super) fn encode(event: &Event, out: &mut Vec<u8>) -> serde_json::Result<()> {
    // Room for a usual event at once: the writes below then never grow the buffer.
    out.reserve(RESERVE);
    out.extend_from_slice(b"{\"id\":");
    uuid(event.id, out);
    out.extend_from_slice(b",\"timestamp\":");
    time(&event.timestamp, out)?;
    out.extend_from_slice(b",\"flow_run_id\":");
    opt_uuid(event.flow_run_id, out);
    out.extend_from_slice(b",\"task_run_id\":");
    opt_uuid(event.task_run_id, out);
    out.extend_from_slice(b",\"kind\":");
    match &event.kind {
        EventKind::StateChanged(change) => state_changed(change, out)?,
        EventKind::RunCreated(created) => run_created(created, out)?,
        EventKind::Log(line) => log(line, out)?,
    }
    out.push(b'}');
    Ok(())
}

fn state_changed(change: &StateChanged, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"type\":\"state_changed\",\"state\":\"");
    out.extend_from_slice(change.state.as_str().as_bytes());
    out.extend_from_slice(b"\",\"attempt\":");
    number(u64::from(change.attempt), out);
    if let Some(message) = &change.message {
        out.extend_from_slice(b",\"message\":");
        string(message, out)?;
    }
    if let Some(at) = &change.next_attempt_at {
        out.extend_from_slice(b",\"next_attempt_at\":");
        time(at, out)?;
    }
    if let Some(result) = &change.result {
        out.extend_from_slice(b",\"result\":");
        serde(result, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn run_created(created: &RunCreated, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"type\":\"run_created\",\"run_type\":");
    out.extend_from_slice(match created.run_type {
        RunType::Flow => b"\"flow\"",
        RunType::Task => b"\"task\"",
    });
    out.extend_from_slice(b",\"name\":");
    string(&created.name, out)?;
    if let Some(run_name) = &created.run_name {
        out.extend_from_slice(b",\"run_name\":");
        string(run_name, out)?;
    }
    if let Some(description) = &created.description {
        out.extend_from_slice(b",\"description\":");
        string(description, out)?;
    }
    if let Some(parameters) = &created.parameters {
        out.extend_from_slice(b",\"parameters\":");
        serde(parameters, out)?;
    }
    out.extend_from_slice(b",\"tags\":[");
    for (i, tag) in created.tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(tag, out)?;
    }
    out.extend_from_slice(b"],\"parent_flow_run_id\":");
    opt_uuid(created.parent_flow_run_id, out);
    out.extend_from_slice(b",\"parent_task_run_id\":");
    opt_uuid(created.parent_task_run_id, out);
    out.extend_from_slice(b",\"upstream\":[");
    for (i, id) in created.upstream.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        uuid(*id, out);
    }
    out.extend_from_slice(b"],\"map_index\":");
    match created.map_index {
        Some(index) => number(index, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"retries\":");
    number(u64::from(created.retries), out);
    if let Some(scheduled) = &created.scheduled {
        out.extend_from_slice(b",\"scheduled\":");
        serde(scheduled, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn log(line: &LogRecord, out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"type\":\"log\",\"level\":\"");
    out.extend_from_slice(match line.level {
        LogLevel::Trace => b"TRACE",
        LogLevel::Debug => b"DEBUG",
        LogLevel::Info => b"INFO",
        LogLevel::Warn => b"WARN",
        LogLevel::Error => b"ERROR",
    });
    out.extend_from_slice(b"\",\"target\":");
    string(&line.target, out)?;
    out.extend_from_slice(b",\"message\":");
    string(&line.message, out)?;
    if !line.fields.is_empty() {
        out.extend_from_slice(b",\"fields\":");
        serde(&line.fields, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn serde(value: &impl Serialize, out: &mut Vec<u8>) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, value)
}

/// A JSON string: copied as is when nothing in it needs escaping (the usual case), else
/// escaped by `serde_json`.
fn string(text: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde(&text, out)
    }
}

/// A UUID as a quoted, hyphenated, lowercase string (uuid's own encoder, into a stack buffer).
fn uuid(id: Uuid, out: &mut Vec<u8>) {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
    out.push(b'"');
}

fn opt_uuid(id: Option<Uuid>, out: &mut Vec<u8>) {
    match id {
        Some(id) => uuid(id, out),
        None => out.extend_from_slice(b"null"),
    }
}

/// An unsigned integer in decimal.
fn number(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A time as chrono writes it (RFC 3339 in UTC, `Z`, with 0, 3, 6 or 9 digits of fraction,
/// the fewest that keep it exact).
fn time(at: &DateTime<Utc>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let naive = at.naive_utc();
    let year = naive.year();
    if !(0..=9999).contains(&year) {
        return serde(at, out);
    }
    let mut second = naive.second();
    let mut nano = naive.nanosecond();
    if nano >= 1_000_000_000 {
        // A leap second: chrono writes it as second 60.
        second += 1;
        nano -= 1_000_000_000;
    }
    let mut text = [0u8; 32];
    let pairs = [
        (0, year as u32 / 100),
        (2, year as u32 % 100),
        (5, naive.month()),
        (8, naive.day()),
        (11, naive.hour()),
        (14, naive.minute()),
        (17, second),
    ];
    for (at, value) in pairs {
        text[at] = b'0' + (value / 10) as u8;
        text[at + 1] = b'0' + (value % 10) as u8;
    }
    text[4] = b'-';
    text[7] = b'-';
    text[10] = b'T';
    text[13] = b':';
    text[16] = b':';
    let (mut fraction, digits) = if nano == 0 {
        (0, 0)
    } else if nano.is_multiple_of(1_000_000) {
        (nano / 1_000_000, 3)
    } else if nano.is_multiple_of(1_000) {
        (nano / 1_000, 6)
    } else {
        (nano, 9)
    };
    let mut len = 19;
    if digits > 0 {
        text[19] = b'.';
        for i in (0..digits).rev() {
            text[20 + i] = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        len = 20 + digits;
    }
    out.push(b'"');
    out.extend_from_slice(&text[..len]);
    out.extend_from_slice(b"Z\"");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::State;
    use crate::events::{ResultLocation, Scheduled};
    use chrono::TimeZone;
    use std::borrow::Cow;
    use std::sync::Arc;

    fn at(nanos: i64) -> DateTime<Utc> {
        Utc.timestamp_nanos(nanos)
    }

    fn event(timestamp: DateTime<Utc>, kind: EventKind) -> Event {
        Event {
            id: Uuid::now_v7(),
            timestamp,
            flow_run_id: Some(Uuid::now_v7()),
            task_run_id: None,
            kind,
        }
    }

    /// One event of every kind, with every optional field both empty and filled, strings that
    /// need escaping, and times of every precision.
    fn every_kind() -> Vec<Event> {
        let now = Utc::now();
        let mut events = Vec::new();
        for (i, state) in State::ALL.into_iter().enumerate() {
            let full = i % 2 == 1;
            events.push(Event {
                task_run_id: full.then(Uuid::now_v7),
                ..event(
                    now,
                    EventKind::StateChanged(StateChanged {
                        state,
                        attempt: i as u32 * 1_000_003,
                        message: full.then(|| format!("boom \"{i}\"\n\t\\ é ✓ \u{1} \u{7f}")),
                        next_attempt_at: full.then_some(at(1_700_000_000_123_456_789)),
                        result: full.then(|| {
                            Box::new(ResultLocation {
                                store: "/data/results".into(),
                                key: format!("runs/{i}/tasks/x.json"),
                                packed_in: Some("runs/tasks.pack".into()),
                            })
                        }),
                    }),
                )
            });
        }
        for (full, run_type) in [(false, RunType::Task), (true, RunType::Flow)] {
            events.push(event(
                now,
                EventKind::RunCreated(Arc::new(RunCreated {
                    run_type,
                    name: Cow::Borrowed("noop"),
                    run_name: full.then(|| "brave-otter".into()),
                    description: full.then_some(Cow::Borrowed("Does \"nothing\".\nTwice.")),
                    parameters: full
                        .then(|| serde_json::json!({"n": 3, "s": "x\"y", "l": [1.5, null]})),
                    tags: if full {
                        Cow::Owned(vec![Cow::Borrowed("a"), Cow::Owned("b\\c".into())])
                    } else {
                        Cow::Borrowed(&[])
                    },
                    parent_flow_run_id: full.then(Uuid::now_v7),
                    parent_task_run_id: full.then(Uuid::now_v7),
                    upstream: if full {
                        vec![Uuid::now_v7(), Uuid::nil(), Uuid::max()]
                    } else {
                        vec![]
                    },
                    map_index: full.then_some(u64::MAX),
                    retries: if full { u32::MAX } else { 0 },
                    scheduled: full.then(|| {
                        Box::new(Scheduled {
                            deployment: "nightly".into(),
                            scheduled_at: at(0),
                            interval_start: Some(at(-86_400_000_000_000)),
                            interval_end: None,
                        })
                    }),
                })),
            ));
        }
        for (i, level) in [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
        ]
        .into_iter()
        .enumerate()
        {
            let mut fields = serde_json::Map::new();
            if i % 2 == 1 {
                fields.insert("count".into(), serde_json::json!(i));
                fields.insert("what\"".into(), serde_json::json!("x\ny"));
            }
            events.push(event(
                now,
                EventKind::Log(Arc::new(LogRecord {
                    level,
                    target: "my_crate::etl".into(),
                    message: format!("line {i} \u{0} \u{1f} \r\u{8}\u{c} ünï"),
                    fields,
                })),
            ));
        }
        // Times: whole seconds, milli-, micro- and nanoseconds, a leap second, the epoch, the
        // edges of the four-digit years and years outside them.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .expect("a leap second")
            .and_utc();
        let edges = [
            chrono::NaiveDate::from_ymd_opt(0, 1, 1),
            chrono::NaiveDate::from_ymd_opt(9999, 12, 31),
            chrono::NaiveDate::from_ymd_opt(-1, 6, 1),
            chrono::NaiveDate::from_ymd_opt(10_000, 1, 1),
            chrono::NaiveDate::from_ymd_opt(987, 3, 4),
        ]
        .map(|d| {
            d.and_then(|d| d.and_hms_nano_opt(7, 8, 9, 10))
                .expect("a date")
                .and_utc()
        });
        let times = [
            at(1_700_000_000_000_000_000),
            at(1_700_000_000_120_000_000),
            at(1_700_000_000_000_120_000),
            at(1_700_000_000_000_000_120),
            at(1_700_000_000_999_999_999),
            at(0),
            at(-1),
            leap,
        ]
        .into_iter()
        .chain(edges);
        for time in times {
            events.push(event(
                time,
                EventKind::StateChanged(StateChanged {
                    state: State::Running,
                    attempt: 1,
                    message: None,
                    next_attempt_at: Some(time),
                    result: None,
                }),
            ));
        }
        events
    }

    #[test]
    fn every_kind_of_event_encodes_as_serde_json_does_and_reads_back() {
        for event in every_kind() {
            let mut fast = Vec::new();
            encode(&event, &mut fast).expect("encodes");
            let slow = serde_json::to_vec(&event).expect("serde encodes");
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&slow),
                "the same bytes as serde_json"
            );
            let back: Event = serde_json::from_slice(&fast).expect("the server reads it");
            assert_eq!(back, event);
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 1, 9, 10, 99, 100, 4_294_967_295, u64::MAX] {
            let mut out = Vec::new();
            number(n, &mut out);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
