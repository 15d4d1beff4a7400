use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use super::EventSink;
use crate::State;
use crate::events::{Event, EventKind, LogRecord};

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
/// assert_eq!(memory.states(run), [State::Running, State::Completed]);
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
    ///
    /// A run's id: [`runs_named`](Self::runs_named) for a flow or task by name,
    /// [`task_runs_of`](Self::task_runs_of) for the task runs of a flow run, or
    /// `TaskHandle::id`, `FlowHandle::id` and `RunError::run_id`.
    pub fn states(&self, run_id: Uuid) -> Vec<State> {
        self.lock()
            .iter()
            .flatten()
            .filter(|e| e.run_id() == Some(run_id))
            .filter_map(Event::state)
            .collect()
    }

    /// The same as [`states`](Self::states).
    #[doc(hidden)]
    pub fn states_of(&self, run_id: Uuid) -> Vec<State> {
        self.states(run_id)
    }

    /// The ids of the runs (flow runs and task runs) created with this name, in creation order.
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

    /// How many attempts run `run_id` made (the attempt of its last `Running`); `0` if it never
    /// ran (skipped, or cancelled before it started).
    pub fn attempts(&self, run_id: Uuid) -> u32 {
        self.lock()
            .iter()
            .flatten()
            .filter(|e| e.run_id() == Some(run_id))
            .filter_map(|e| match &e.kind {
                EventKind::StateChanged(change) if change.state == State::Running => {
                    Some(change.attempt)
                }
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// The log lines run `run_id` emitted through `tracing`, in order (a flow run's own, not
    /// those of its task runs).
    ///
    /// ```
    /// use flowkit::task;
    ///
    /// #[task]
    /// async fn load(rows: u32) {
    ///     tracing::info!(rows, "loaded");
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (_, events) = flowkit::testing::capture(|| load(3)).await;
    /// let logs = events.logs(events.runs_named("load")[0]);
    /// assert_eq!(logs[0].message, "loaded");
    /// assert_eq!(logs[0].fields["rows"], 3);
    /// # }
    /// ```
    pub fn logs(&self, run_id: Uuid) -> Vec<Arc<LogRecord>> {
        self.lock()
            .iter()
            .flatten()
            .filter(|e| e.run_id() == Some(run_id))
            .filter_map(|e| match &e.kind {
                EventKind::Log(record) => Some(record.clone()),
                _ => None,
            })
            .collect()
    }

    /// The parameters recorded with run `run_id`: a flow run's, or a task run's arguments when
    /// its task or flow records them (`record_arguments = true`); `None` if none were.
    ///
    /// ```
    /// use flowkit::task;
    ///
    /// #[task(record_arguments = true)]
    /// async fn load(table: String, rows: u32) {}
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (_, events) = flowkit::testing::capture(|| load("orders".into(), 3)).await;
    /// let arguments = events.parameters(events.runs_named("load")[0]).unwrap();
    /// assert_eq!(arguments, serde_json::json!({"table": "orders", "rows": 3}));
    /// # }
    /// ```
    pub fn parameters(&self, run_id: Uuid) -> Option<serde_json::Value> {
        self.lock()
            .iter()
            .flatten()
            .filter(|e| e.run_id() == Some(run_id))
            .find_map(|e| match &e.kind {
                EventKind::RunCreated(created) => created.parameters.clone(),
                _ => None,
            })
    }

    /// The ids of the task runs of flow run `flow_run_id`, in creation order (tasks called from
    /// its tasks included; its child flow runs' task runs not).
    pub fn task_runs_of(&self, flow_run_id: Uuid) -> Vec<Uuid> {
        self.lock()
            .iter()
            .flatten()
            .filter(|e| e.flow_run_id == Some(flow_run_id))
            .filter_map(|e| match &e.kind {
                EventKind::RunCreated(_) => e.task_run_id,
                _ => None,
            })
            .collect()
    }
}

impl EventSink for MemorySink {
    fn handle(&mut self, events: &[Event]) {
        self.lock().push(events.to_vec());
    }

    /// Keeps the batch itself: no event is copied, nor freed on the dispatcher's thread.
    fn handle_owned(&mut self, events: &mut Vec<Event>) {
        // A batch filling most of its buffer is kept as it is. A smaller one moves into a
        // buffer of its own size, and the large one stays with the dispatcher to be filled
        // again: shrinking it in place copied the batch all the same, and the dispatcher then
        // touched a fresh large buffer (new pages) for every batch.
        let batch = if events.len() >= events.capacity() / 2 {
            std::mem::take(events)
        } else {
            let mut batch = Vec::with_capacity(events.len());
            batch.append(events);
            batch
        };
        self.lock().push(batch);
    }
}
