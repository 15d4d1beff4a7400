//! A task call's arguments, recorded as its run's parameters when the task asks for it
//! (`#[task(record_arguments = true)]`) or its flow does (`#[flow(record_arguments = true)]`).
//!
//! Off by default: serializing every call's arguments would cost a fair part of a task's
//! microsecond. The arguments of one call are recorded up to [`ARGUMENTS_CAP`] bytes of JSON in
//! all; an argument that does not fit is recorded as a marker string saying so and how large
//! it was, and the run goes on.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::TaskOptions;
use crate::context::{Scope, with_current};

/// How many bytes of JSON the arguments of one task call may take when recorded: 16 KiB. An
/// argument that would go over is recorded as `"<truncated: N bytes of JSON, over the 16 KiB
/// cap>"`.
///
/// ```
/// assert_eq!(flowkit::ARGUMENTS_CAP, 16 * 1024);
/// ```
pub const ARGUMENTS_CAP: usize = 16 * 1024;

/// Set once a flow run that records its tasks' arguments has started: until then, a task
/// without an option of its own does not look up its flow run at all.
static FLOW_DEFAULT_SEEN: AtomicBool = AtomicBool::new(false);

/// Notes that a flow run recording its tasks' arguments has started.
pub(crate) fn flow_records_arguments() {
    FLOW_DEFAULT_SEEN.store(true, Ordering::Relaxed);
}

/// True if a call of a task with these options records its arguments: its own option, else
/// its flow run's (what `#[task]` asks before serializing them).
#[doc(hidden)]
#[inline]
pub fn wants_arguments(options: &TaskOptions) -> bool {
    match options.record_arguments {
        Some(own) => own,
        None => FLOW_DEFAULT_SEEN.load(Ordering::Relaxed) && flow_default(),
    }
}

#[cold]
fn flow_default() -> bool {
    with_current(|scope| {
        scope
            .and_then(Scope::flow)
            .is_some_and(|flow| flow.options.record_arguments)
    })
}

/// The arguments of one call, as JSON, within [`ARGUMENTS_CAP`]. The macros feed it; by hand:
///
/// ```
/// use flowkit::Arguments;
/// let mut arguments = Arguments::new();
/// arguments.add("day", &"2026-11-28");
/// arguments.add("rows", &vec![7u8; 20_000]);
/// let recorded = arguments.finish();
/// assert_eq!(recorded["day"], "2026-11-28");
/// assert_eq!(recorded["rows"], "<truncated: 40001 bytes of JSON, over the 16 KiB cap>");
/// ```
#[derive(Debug, Default)]
pub struct Arguments {
    map: serde_json::Map<String, serde_json::Value>,
    used: usize,
}

impl Arguments {
    /// No arguments yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records argument `name` by its serde JSON, or a marker if it does not fit in what is
    /// left of the cap or does not serialize.
    pub fn add<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) {
        // Measured first, without keeping the text: a large argument costs no memory.
        let mut counter = Counter(0);
        let recorded = match serde_json::to_writer(&mut counter, value) {
            Err(error) => serde_json::Value::String(format!("<not serializable: {error}>")),
            Ok(()) if self.used + counter.0 > ARGUMENTS_CAP => serde_json::Value::String(format!(
                "<truncated: {} bytes of JSON, over the 16 KiB cap>",
                counter.0
            )),
            Ok(()) => match serde_json::to_value(value) {
                Ok(json) => {
                    self.used += counter.0;
                    json
                }
                Err(error) => serde_json::Value::String(format!("<not serializable: {error}>")),
            },
        };
        self.map.insert(name.to_string(), recorded);
    }

    /// Records argument `name`, whose type does not implement `Serialize`, by its type's name.
    pub fn add_opaque(&mut self, name: &str, type_name: &str) {
        self.map.insert(
            name.to_string(),
            serde_json::Value::String(format!("<not serializable: {type_name}>")),
        );
    }

    /// The arguments as a JSON object, by name.
    pub fn finish(self) -> serde_json::Value {
        serde_json::Value::Object(self.map)
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records an argument by its JSON if it is `Serialize`, else by its type name: the macros call
/// `(&&Argument(&arg)).record_argument("arg", &mut arguments)` with both traits in scope, and
/// the method of [`RecordSerialize`] wins where it applies (autoref specialization), for the
/// tasks of a flow that records its tasks' arguments.
#[doc(hidden)]
pub struct Argument<'a, T: ?Sized>(pub &'a T);

#[doc(hidden)]
pub trait RecordSerialize {
    fn record_argument(&self, name: &str, arguments: &mut Arguments);
}

impl<T: Serialize + ?Sized> RecordSerialize for &Argument<'_, T> {
    fn record_argument(&self, name: &str, arguments: &mut Arguments) {
        arguments.add(name, self.0);
    }
}

#[doc(hidden)]
pub trait RecordOpaque {
    fn record_argument(&self, name: &str, arguments: &mut Arguments);
}

impl<T: ?Sized> RecordOpaque for Argument<'_, T> {
    fn record_argument(&self, name: &str, arguments: &mut Arguments) {
        arguments.add_opaque(name, std::any::type_name::<T>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_fit_the_cap_in_all() {
        let mut arguments = Arguments::new();
        let half = "x".repeat(ARGUMENTS_CAP / 2);
        arguments.add("a", &half);
        arguments.add("b", &half);
        arguments.add("c", &1);
        let recorded = arguments.finish();
        assert_eq!(recorded["a"], half.as_str());
        // 8,194 bytes with its quotes: the second half no longer fits.
        assert_eq!(
            recorded["b"],
            "<truncated: 8194 bytes of JSON, over the 16 KiB cap>"
        );
        assert_eq!(recorded["c"], 1);
    }

    #[test]
    fn a_value_that_fails_to_serialize_is_named() {
        let mut arguments = Arguments::new();
        let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        arguments.add("map", &map);
        arguments.add_opaque("client", "my::Client");
        let recorded = arguments.finish();
        assert!(
            recorded["map"]
                .as_str()
                .is_some_and(|m| m.starts_with("<not serializable: ")),
            "{recorded}"
        );
        assert_eq!(recorded["client"], "<not serializable: my::Client>");
    }
}
