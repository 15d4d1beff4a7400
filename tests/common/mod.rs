//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod tree;

use flowkit::events::{Event, EventKind, RunCreated};
use flowkit::{EventBus, MemorySink, State};
use uuid::Uuid;

/// A command that runs the ignored test `name` of this test binary in a child process (so a
/// test can watch a real process: its signals, its stderr), with `RUST_LOG=info`, no server, and
/// stdin closed.
pub fn child_test(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--color",
            "never",
        ])
        .env("RUST_LOG", "info")
        .env_remove("FLOWKIT_API_URL")
        .stdin(std::process::Stdio::null());
    command
}

/// A fresh directory for one test (`flowkit-<tag>-<pid>-<uuid>` in the system's temp dir),
/// removed when dropped: at the test's end, and when an assertion fails too.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "flowkit-{tag}-{}-{}",
            std::process::id(),
            Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

/// Checks the invariant "a run ends after everything under it" on a captured event list:
/// every run created ends exactly once (one terminal state, nothing after it), and its terminal
/// event comes after the terminal events of every run under it — its task runs, the task runs
/// its task runs called, its child flow runs, and theirs. ("Under" is read from `RunCreated`:
/// a task run is under its flow run and under the task run that called it; a flow run is under
/// its parent flow run and the task run that called it. The order is transitive.)
///
/// Returns the terminal state of every run, by run id, for further checks.
pub fn assert_ends_in_order(events: &[Event]) -> std::collections::HashMap<Uuid, State> {
    use std::collections::HashMap;
    use std::fmt::Write;

    let mut names: HashMap<Uuid, String> = HashMap::new();
    let mut parents: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    let mut order = Vec::new();
    for event in events {
        let EventKind::RunCreated(created) = &event.kind else {
            continue;
        };
        let run = event.run_id().expect("a created run has an id");
        let mut above = Vec::new();
        match created.run_type {
            flowkit::events::RunType::Flow => above.extend(created.parent_flow_run_id),
            flowkit::events::RunType::Task => above.extend(event.flow_run_id),
        }
        above.extend(created.parent_task_run_id);
        names.insert(run, created.name.to_string());
        parents.insert(run, above);
        order.push(run);
    }
    // The whole story, to print when the invariant does not hold.
    let mut story = String::new();
    for event in events {
        if let (Some(state), Some(run)) = (event.state(), event.run_id()) {
            let name = names.get(&run).map_or("?", String::as_str);
            let _ = writeln!(story, "  {name} ({run}): {state}");
        }
    }
    let mut ends: HashMap<Uuid, (usize, State)> = HashMap::new();
    for (index, event) in events.iter().enumerate() {
        let (Some(state), Some(run)) = (event.state(), event.run_id()) else {
            continue;
        };
        let name = names.get(&run).map_or("?", String::as_str);
        if let Some((_, end)) = ends.get(&run) {
            panic!("{name} changed to {state} after it ended {end}:\n{story}");
        }
        if state.is_terminal() {
            ends.insert(run, (index, state));
        }
    }
    for run in &order {
        let name = &names[run];
        let Some(&(end, _)) = ends.get(run) else {
            panic!("{name} ({run}) never ended:\n{story}");
        };
        for parent in &parents[run] {
            let Some(&(parent_end, _)) = ends.get(parent) else {
                continue; // reported above, as that run's own failure
            };
            let parent_name = names.get(parent).map_or("?", String::as_str);
            assert!(
                end < parent_end,
                "{parent_name} ended before {name}, a run under it:\n{story}"
            );
        }
    }
    ends.into_iter()
        .map(|(run, (_, state))| (run, state))
        .collect()
}
