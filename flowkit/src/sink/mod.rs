//! Sinks: where the events of the bus end up.

pub(crate) mod ca;
mod console;
mod http;
mod memory;

pub use console::ConsoleSink;
pub use http::{HttpSink, HttpSinkBuilder};
pub use memory::MemorySink;

use futures::future::BoxFuture;

use crate::events::Event;

/// A destination for events.
///
/// `handle` is called on the bus's dispatcher thread with each batch, in emission order. It must
/// not block: a sink that does slow I/O hands the batch to a buffer of its own. `flush` waits
/// until what was handled so far is written or delivered.
///
/// ```
/// use flowkit::{EventSink, events::Event};
///
/// /// Counts events.
/// struct Counter(std::sync::Arc<std::sync::atomic::AtomicUsize>);
///
/// impl EventSink for Counter {
///     fn handle(&mut self, events: &[Event]) {
///         self.0.fetch_add(events.len(), std::sync::atomic::Ordering::Relaxed);
///     }
/// }
/// ```
pub trait EventSink: Send + 'static {
    /// Takes a batch of events.
    fn handle(&mut self, events: &[Event]);

    /// Waits until everything handled so far is written or delivered.
    fn flush(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
