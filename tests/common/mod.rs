//! Helpers shared by the integration tests.
#![allow(dead_code)]

use flowkit::events::{Event, EventKind, RunCreated};
use flowkit::{EventBus, MemorySink, State};
use uuid::Uuid;

/// A bus that records into memory.
pub fn recorder() -> (EventBus, MemorySink) {
    let memory = MemorySink::new();
    let bus = EventBus::builder().sink(memory.clone()).build();
    (bus, memory)
}

/// Every event, once the bus has delivered everything emitted so far.
pub async fn events(bus: &EventBus, memory: &MemorySink) -> Vec<Event> {
    bus.flush().await;
    memory.events()
}

/// The `RunCreated` event of every run with this name.
pub fn created<'e>(events: &'e [Event], name: &str) -> Vec<(&'e Event, &'e RunCreated)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RunCreated(c) if c.name == name => Some((e, &**c)),
            _ => None,
        })
        .collect()
}

/// The one run with this name.
pub fn only_run(events: &[Event], name: &str) -> Uuid {
    let runs = created(events, name);
    assert_eq!(runs.len(), 1, "expected one run of {name}");
    runs[0].0.run_id().expect("a run id")
}

/// The (state, attempt) pairs of a run, in order.
pub fn states(events: &[Event], run: Uuid) -> Vec<(State, u32)> {
    events
        .iter()
        .filter(|e| e.run_id() == Some(run))
        .filter_map(|e| match &e.kind {
            EventKind::StateChanged(s) => Some((s.state, s.attempt)),
            _ => None,
        })
        .collect()
}
