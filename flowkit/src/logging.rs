//! Logs: `tracing` events emitted inside runs become log events of those runs.

use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event as TracingEvent, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, filter};

use crate::context::{Scope, current};
use crate::events::{EventKind, LogLevel, LogRecord};

/// A `tracing` layer that sends every event emitted inside a task run or flow run to that run's
/// event bus as a [`LogRecord`], tagged with the run's ids.
///
/// [`init`](crate::init) installs it; add it yourself to a subscriber of your own:
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let subscriber = tracing_subscriber::registry().with(flowkit::RunLogLayer);
/// # drop(subscriber);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RunLogLayer;

impl<S: Subscriber> Layer<S> for RunLogLayer {
    fn on_event(&self, event: &TracingEvent<'_>, _ctx: Context<'_, S>) {
        let Some(scope) = current() else {
            return;
        };
        let (bus, flow_run_id, task_run_id) = match &scope {
            Scope::Flow(flow) => (&flow.bus, Some(flow.id), None),
            Scope::Task(task) => (task.bus(), task.flow.as_ref().map(|f| f.id), Some(task.id)),
        };
        if !bus.is_enabled() {
            return;
        }
        let mut visitor = FieldVisitor::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        bus.emit_with(flow_run_id, task_run_id, || {
            EventKind::Log(std::sync::Arc::new(LogRecord {
                level: LogLevel::from(*metadata.level()),
                target: metadata.target().to_string(),
                message: visitor.message,
                fields: visitor.fields,
            }))
        });
    }
}

#[derive(Default)]
struct FieldVisitor {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.insert(field.name().into(), value.into());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .insert(field.name().into(), format!("{value:?}").into());
        }
    }
}

/// True if flowkit writes to stderr in color: only on a terminal, and not when `NO_COLOR` is set
/// to a non-empty value (<https://no-color.org>). Lines written to a file or a pipe are plain.
pub(crate) fn stderr_in_color() -> bool {
    color_on(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

fn color_on(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Installs the process's subscriber: `RUST_LOG` (default `info`), the run-log layer, and a
/// terminal formatter. With the console sink on, the console shows the logs of runs (in order
/// with their progress), so the formatter prints only logs emitted outside any run. Logs of runs
/// on a bus of [`crate::testing::capture`] are never printed: they are that run's events.
pub(crate) fn install(console: bool) {
    let printed = filter::dynamic_filter_fn(move |_, _| match current() {
        None => true,
        Some(scope) => !console && !scope.bus().captures_logs(),
    });
    let terminal = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(stderr_in_color())
        .with_filter(printed);
    try_install(terminal);
}

/// The subscriber of [`crate::testing::capture`], when the process has none: the run-log layer,
/// and lines outside captured runs printed through libtest's capture (shown for failing tests).
pub(crate) fn install_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if tracing::dispatcher::has_been_set() {
            return;
        }
        let printed = filter::dynamic_filter_fn(|_, _| {
            current().is_none_or(|scope| !scope.bus().captures_logs())
        });
        let terminal = tracing_subscriber::fmt::layer()
            .with_test_writer()
            .with_ansi(false)
            .with_filter(printed);
        try_install(terminal);
    });
}

fn try_install<L>(terminal: L)
where
    L: Layer<
            tracing_subscriber::layer::Layered<
                RunLogLayer,
                tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>,
            >,
        > + Send
        + Sync
        + 'static,
{
    let env_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = tracing_subscriber::registry()
        .with(env_filter)
        .with(RunLogLayer)
        .with(terminal)
        .try_init();
    if installed.is_err() {
        tracing::debug!("flowkit: a tracing subscriber was already installed; keeping it");
    }
}

#[cfg(test)]
mod tests {
    use super::color_on;
    use std::ffi::OsStr;

    #[test]
    fn color_only_on_a_terminal_and_never_with_no_color() {
        assert!(color_on(true, None));
        assert!(!color_on(false, None), "a file or a pipe gets plain text");
        assert!(!color_on(true, Some(OsStr::new("1"))));
        assert!(!color_on(false, Some(OsStr::new("1"))));
        // The convention: only a non-empty value turns color off.
        assert!(color_on(true, Some(OsStr::new(""))));
    }
}
