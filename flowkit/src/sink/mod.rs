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

    /// Takes a batch of events it may keep: a sink that stores events moves them out of
    /// `events` (leaving it empty) instead of copying them. The bus calls this on its last sink
    /// (the others get [`handle`](Self::handle)); by default it calls `handle`.
    ///
    /// ```
    /// use flowkit::{EventSink, events::Event};
    ///
    /// /// Keeps every batch as it came.
    /// struct Keeper(Vec<Vec<Event>>);
    ///
    /// impl EventSink for Keeper {
    ///     fn handle(&mut self, events: &[Event]) {
    ///         self.0.push(events.to_vec());
    ///     }
    ///     fn handle_owned(&mut self, events: &mut Vec<Event>) {
    ///         self.0.push(std::mem::take(events));
    ///     }
    /// }
    /// ```
    fn handle_owned(&mut self, events: &mut Vec<Event>) {
        self.handle(events);
    }

    /// Waits until everything handled so far is written or delivered.
    fn flush(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Waits until everything handled so far is safe from loss, without waiting for a remote
    /// destination to take it: the HTTP sink writes it to its spool on disk, and goes on
    /// delivering it. What a top-level flow run waits for when it ends. By default, the same as
    /// [`flush`](Self::flush).
    fn hand_off(&mut self) -> BoxFuture<'_, ()> {
        self.flush()
    }
}
