use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use super::EventSink;
use crate::State;
use crate::events::{Event, EventKind};

/// Keeps every event in memory, for tests and for programs that inspect their own runs.
///
/// Clones share the same events.
///
/// ```
/// use flowkit::{EventBus, MemorySink, State, task};
///
/// #[task]
/// async fn hello() -> &'static str { "hi" }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let memory = MemorySink::new();
/// let bus = EventBus::builder().sink(memory.clone()).build();
/// hello().on(&bus).await.unwrap();
/// bus.flush().await;
/// let run = memory.events()[0].run_id().unwrap();
/// assert_eq!(memory.states_of(run), [State::Running, State::Completed]);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemorySink {
    /// One chunk per batch: keeping batches apart avoids copying every event each time one
    /// large vector would grow.
    chunks: Arc<Mutex<Vec<Vec<Event>>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Event>>> {
        self.chunks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of every event so far, in emission order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().iter().flatten().cloned().collect()
    }

    /// Takes every event so far, leaving the sink empty.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
            .into_iter()
            .flatten()
            .collect()
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.lock().iter().map(Vec::len).sum()
    }

    /// True if it holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The states run `run_id` went through, in order.
    pub fn states_of(&self, run_id: Uuid) -> Vec<State> {
        self.lock()
            .iter()
            .flatten()
            .filter(|e| e.run_id() == Some(run_id))
            .filter_map(Event::state)
            .collect()
    }

    /// The ids of the runs created with this name, in creation order.
    pub fn runs_named(&self, name: &str) -> Vec<Uuid> {
        self.lock()
            .iter()
            .flatten()
            .filter_map(|e| match &e.kind {
                EventKind::RunCreated(created) if created.name == name => e.run_id(),
                _ => None,
            })
            .collect()
    }
}

impl EventSink for MemorySink {
    fn handle(&mut self, events: &[Event]) {
        self.lock().push(events.to_vec());
    }
}
