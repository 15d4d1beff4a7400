use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local, Utc};
use uuid::Uuid;

use super::EventSink;
use crate::State;
use crate::error::humanize;
use crate::events::{Event, EventKind, LogRecord, RunType};

/// The human progress view of local runs: flow runs starting and ending with a summary, task
/// runs running, retrying (with the delay) and finishing (with durations), their logs, and live
/// counts by state for a `map` instead of a line per task.
///
/// On by default (through [`init`](crate::init)); `FLOWKIT_CONSOLE=off` or
/// `Config::console(false)` silences it. It writes to stderr, in color on a terminal unless
/// `NO_COLOR` is set to a non-empty value; into a file or a pipe, plain.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use flowkit::{ConsoleSink, EventBus, flow};
///
/// #[flow]
/// async fn hello() {}
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let out = Arc::new(Mutex::new(Vec::new()));
/// let bus = EventBus::builder().sink(ConsoleSink::to_writer(out.clone())).build();
/// hello().on(&bus).await.unwrap();
/// bus.flush().await;
/// let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
/// assert!(text.contains("flow hello") && text.contains("Completed"));
/// # }
/// ```
pub struct ConsoleSink {
    out: Box<dyn Write + Send>,
    color: bool,
    live: bool,
    flows: HashMap<Uuid, FlowView>,
    tasks: HashMap<Uuid, TaskView>,
    maps: HashMap<(Uuid, String), MapView>,
    status_shown: bool,
    /// The live status line, drawn again under each line printed, so it stays in view while
    /// retries and logs scroll past (terminals only).
    status: Option<String>,
    /// The server's address: a top-level flow run's first line is followed by its page there.
    dashboard: Option<String>,
}

struct FlowView {
    name: String,
    depth: usize,
    started: Option<DateTime<Utc>>,
    finished: [u64; State::ALL.len()],
    tasks: u64,
    children: u64,
    retries: u64,
    /// Runs created so far per task name, to tell apart runs of the same task.
    per_name: HashMap<String, u32>,
}

struct TaskView {
    name: String,
    /// `name`, or `name#2`, `name#3`… for later runs of the same task in a flow run.
    label: String,
    flow: Option<Uuid>,
    depth: usize,
    map_index: Option<u64>,
    started: Option<DateTime<Utc>>,
    retries: u32,
}

struct MapView {
    name: String,
    depth: usize,
    created: u64,
    by_state: [u64; State::ALL.len()],
    first_start: Option<DateTime<Utc>>,
    last_print: Option<Instant>,
}

/// A `Write` that appends to a shared buffer (see [`ConsoleSink::to_writer`]).
impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

/// A state as a word in a sentence ("3 timed out").
fn label(state: State) -> &'static str {
    match state {
        State::TimedOut => "timed out",
        State::Scheduled => "scheduled",
        State::Pending => "pending",
        State::Running => "running",
        State::Retrying => "retrying",
        State::Completed => "completed",
        State::Cached => "cached",
        State::Failed => "failed",
        State::Crashed => "crashed",
        State::Cancelled => "cancelled",
        State::Skipped => "skipped",
    }
}

fn state_index(state: State) -> usize {
    State::ALL.iter().position(|s| *s == state).unwrap_or(0)
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

fn state_color(state: State) -> &'static str {
    match state {
        State::Completed | State::Cached => GREEN,
        State::Failed | State::Crashed | State::TimedOut => RED,
        State::Retrying | State::Cancelled | State::Skipped => YELLOW,
        _ => CYAN,
    }
}

/// Whether a live status line (a line with no newline after it) is on stderr right now.
static STATUS_ON_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Clears the live status line, if one is on stderr, so that what comes next starts at the left
/// edge of an empty line. True if it cleared one.
fn clear_status_line(out: &mut impl Write) -> bool {
    if STATUS_ON_STDERR.swap(false, std::sync::atomic::Ordering::AcqRel) {
        let _ = write!(out, "\r\x1b[2K");
        let _ = out.flush();
        true
    } else {
        false
    }
}

/// A panic hook that first clears the live status line, so a caught panic's message (and its
/// backtrace with `RUST_BACKTRACE=1`) never lands in the middle of a progress line; then the
/// hook that was there before prints it.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            clear_status_line(&mut std::io::stderr());
            previous(info);
        }));
    });
}

impl ConsoleSink {
    /// Writes to stderr; in color and with a live status line when stderr is a terminal.
    pub fn stderr() -> Self {
        let terminal = std::io::stderr().is_terminal();
        if terminal {
            install_panic_hook();
        }
        let color = crate::logging::stderr_in_color();
        Self::new(Box::new(std::io::stderr()), color, terminal)
    }

    /// Writes plain text (no color, no live line) into a shared buffer, for tests.
    pub fn to_writer(buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) -> Self {
        Self::new(Box::new(SharedBuffer(buffer)), false, false)
    }

    fn new(out: Box<dyn Write + Send>, color: bool, live: bool) -> Self {
        ConsoleSink {
            out,
            color,
            live,
            flows: HashMap::new(),
            tasks: HashMap::new(),
            maps: HashMap::new(),
            status_shown: false,
            status: None,
            dashboard: None,
        }
    }

    /// Prints, under the first line of each top-level flow run, where to watch it on the
    /// dashboard of the server at `url` (what `FLOWKIT_API_URL` sets), as Prefect prints
    /// "View at …".
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use flowkit::{ConsoleSink, EventBus};
    ///
    /// #[flowkit::flow]
    /// async fn hello() {}
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let out = Arc::new(Mutex::new(Vec::new()));
    /// let console = ConsoleSink::to_writer(out.clone()).dashboard("http://127.0.0.1:4200/");
    /// let bus = EventBus::builder().sink(console).build();
    /// hello().on(&bus).await.unwrap();
    /// bus.flush().await;
    /// let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    /// assert!(text.contains("View at http://127.0.0.1:4200/#/runs/"));
    /// # }
    /// ```
    pub fn dashboard(mut self, url: impl Into<String>) -> Self {
        self.dashboard = Some(url.into().trim_end_matches('/').to_string());
        self
    }

    fn paint(&self, color: &'static str, text: &str) -> String {
        if self.color {
            format!("{color}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    fn line(&mut self, at: DateTime<Utc>, depth: usize, text: &str) {
        let time = at.with_timezone(&Local).format("%H:%M:%S%.3f").to_string();
        let time = self.paint(DIM, &time);
        let indent = "  ".repeat(depth);
        if self.status_shown {
            let _ = write!(self.out, "\r\x1b[2K");
            self.status_shown = false;
            if self.live {
                STATUS_ON_STDERR.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        let status = self.status.clone().filter(|_| self.live);
        if text.contains('\n') {
            // A multi-line error or log line: its other lines start under its text, not at the
            // left edge among the times.
            let under = format!("\n{} {indent}  ", " ".repeat("00:00:00.000".len()));
            let text = text.trim_end().replace('\n', &under);
            let _ = writeln!(self.out, "{time} {indent}{text}");
        } else {
            let _ = writeln!(self.out, "{time} {indent}{text}");
        }
        if let Some(status) = status {
            let _ = write!(self.out, "{status}");
            let _ = self.out.flush();
            self.status_shown = true;
            STATUS_ON_STDERR.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    fn on_created(&mut self, event: &Event, created: &crate::events::RunCreated) {
        match created.run_type {
            RunType::Flow => {
                let depth = created
                    .parent_flow_run_id
                    .and_then(|p| self.flows.get(&p))
                    .map_or(0, |p| p.depth + 1);
                let Some(id) = event.flow_run_id else { return };
                self.flows.insert(
                    id,
                    FlowView {
                        name: created.name.to_string(),
                        depth,
                        started: None,
                        finished: [0; State::ALL.len()],
                        tasks: 0,
                        children: 0,
                        retries: 0,
                        per_name: HashMap::new(),
                    },
                );
                let params = match &created.parameters {
                    Some(serde_json::Value::Object(map)) if !map.is_empty() => {
                        let shown: Vec<String> =
                            map.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        format!(" {}", shown.join(" "))
                    }
                    _ => String::new(),
                };
                // The last hex digits are random (the first ones are the timestamp).
                let simple = id.simple().to_string();
                let short = &simple[simple.len() - 8..];
                if let Some(parent) = created
                    .parent_flow_run_id
                    .and_then(|p| self.flows.get_mut(&p))
                {
                    parent.children += 1;
                }
                let title = self.paint(BOLD, &format!("flow {}", created.name));
                // A deployment's run says which, and when it was due.
                let scheduled = created.scheduled.as_deref().map_or(String::new(), |s| {
                    format!(
                        " · {} due {}",
                        s.deployment,
                        s.scheduled_at.format("%Y-%m-%d %H:%M:%S UTC")
                    )
                });
                // The run's name first (what the dashboard lists and searches), then its id.
                let text = match created.run_name.as_deref() {
                    Some(name) => format!("{title} run {name} ({short}){scheduled}{params}"),
                    None => format!("{title} run {short}{scheduled}{params}"),
                };
                self.line(event.timestamp, depth, &text);
                if let Some(url) = self.dashboard.as_ref().filter(|_| depth == 0) {
                    let link = format!("View at {url}/#/runs/{id}");
                    let link = self.paint(DIM, &link);
                    self.line(event.timestamp, depth, &link);
                }
            }
            RunType::Task => {
                let Some(id) = event.task_run_id else { return };
                let flow = event.flow_run_id;
                let mut label = created.name.to_string();
                let depth = flow.and_then(|f| self.flows.get_mut(&f)).map_or(0, |f| {
                    f.tasks += 1;
                    if created.map_index.is_none() {
                        let seen = f.per_name.entry(created.name.to_string()).or_insert(0);
                        *seen += 1;
                        if *seen > 1 {
                            label = format!("{}#{seen}", created.name);
                        }
                    }
                    f.depth + 1
                });
                if created.map_index.is_some() {
                    let key = (flow.unwrap_or_default(), created.name.to_string());
                    let view = self.maps.entry(key).or_insert_with(|| MapView {
                        name: created.name.to_string(),
                        depth,
                        created: 0,
                        by_state: [0; State::ALL.len()],
                        first_start: None,
                        last_print: (!self.live).then(Instant::now),
                    });
                    view.created += 1;
                    view.by_state[state_index(State::Pending)] += 1;
                }
                self.tasks.insert(
                    id,
                    TaskView {
                        name: created.name.to_string(),
                        label,
                        flow,
                        depth,
                        map_index: created.map_index,
                        started: None,
                        retries: 0,
                    },
                );
            }
        }
    }

    fn on_flow_state(&mut self, event: &Event, id: Uuid, state: State, message: Option<&str>) {
        let Some(view) = self.flows.get_mut(&id) else {
            return;
        };
        match state {
            State::Running => {
                if view.started.is_none() {
                    view.started = Some(event.timestamp);
                }
                return;
            }
            State::Retrying => {
                let (name, depth) = (view.name.clone(), view.depth);
                let text = format!(
                    "{} attempt failed: {}",
                    self.paint(BOLD, &format!("flow {name}")),
                    message.unwrap_or("")
                );
                self.line(
                    event.timestamp,
                    depth,
                    &self.paint(YELLOW, &text).to_string(),
                );
                return;
            }
            _ if !state.is_terminal() => return,
            _ => {}
        }
        let Some(view) = self.flows.remove(&id) else {
            return;
        };
        let took = view
            .started
            .map(|s| humanize((event.timestamp - s).to_std().unwrap_or_default()))
            .unwrap_or_else(|| "0ms".into());
        let mut summary = format!(
            "{} task run{}",
            view.tasks,
            if view.tasks == 1 { "" } else { "s" }
        );
        let counts: Vec<String> = State::ALL
            .iter()
            .zip(view.finished.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| format!("{n} {}", label(*s)))
            .collect();
        if !counts.is_empty() {
            summary.push_str(": ");
            summary.push_str(&counts.join(", "));
        }
        if view.children > 0 {
            summary.push_str(&format!(
                " · {} child flow run{}",
                view.children,
                if view.children == 1 { "" } else { "s" }
            ));
        }
        if view.retries > 0 {
            summary.push_str(&format!(
                " · {} retr{}",
                view.retries,
                if view.retries == 1 { "y" } else { "ies" }
            ));
        }
        let title = self.paint(BOLD, &format!("flow {}", view.name));
        let verdict = self.paint(state_color(state), &format!("{state} in {took}"));
        let mut text = format!("{title} {verdict} · {summary}");
        if let Some(message) = message.filter(|_| matches!(state, State::Failed | State::Crashed)) {
            text.push_str(&format!("\n    {}", self.paint(RED, message)));
        }
        self.line(event.timestamp, view.depth, &text);
    }

    fn on_task_state(&mut self, event: &Event, id: Uuid, change: &crate::events::StateChanged) {
        let state = change.state;
        let Some(view) = self.tasks.get_mut(&id) else {
            return;
        };
        let mapped = view.map_index.is_some();
        let label = match view.map_index {
            Some(i) => format!("task {} [{i}]", view.name),
            None => format!("task {}", view.label),
        };
        let (depth, flow) = (view.depth, view.flow);
        match state {
            State::Running => {
                // A sensor is `Running` again for each poke: one line for its first.
                let first = view.started.is_none();
                if first {
                    view.started = Some(event.timestamp);
                }
                if mapped {
                    let key = (flow.unwrap_or_default(), view.name.clone());
                    if change.attempt == 1 {
                        self.move_mapped(&key, State::Pending, State::Running, event.timestamp);
                    } else {
                        self.move_mapped(&key, State::Retrying, State::Running, event.timestamp);
                    }
                } else if change.attempt == 1 && first {
                    let text = format!(
                        "{} {}",
                        self.paint(BOLD, &label),
                        self.paint(CYAN, "running")
                    );
                    self.line(event.timestamp, depth, &text);
                }
            }
            // A sensor between pokes says why it waits.
            State::Pending if !mapped && view.started.is_some() => {
                if let Some(message) = change.message.as_deref() {
                    let text = format!("{} waiting: {message}", self.paint(BOLD, &label));
                    self.line(event.timestamp, depth, &text);
                }
            }
            State::Retrying => {
                view.retries += 1;
                if let Some(f) = flow.and_then(|f| self.flows.get_mut(&f)) {
                    f.retries += 1;
                }
                let delay = change
                    .next_attempt_at
                    .map(|at| (at - event.timestamp).to_std().unwrap_or_default())
                    .filter(|d| d.as_millis() > 0)
                    .map_or_else(|| "now".to_string(), |d| format!("in {}", humanize(d)));
                let text = format!(
                    "{} attempt {} failed: {} · retrying {delay}",
                    self.paint(BOLD, &label),
                    change.attempt,
                    change.message.as_deref().unwrap_or("")
                );
                let text = self.paint(YELLOW, &text);
                self.line(event.timestamp, depth, &text);
                if mapped {
                    let key = (flow.unwrap_or_default(), view_name(&self.tasks, id));
                    self.move_mapped(&key, State::Running, State::Retrying, event.timestamp);
                }
            }
            _ if state.is_terminal() => {
                let Some(view) = self.tasks.remove(&id) else {
                    return;
                };
                if let Some(f) = flow.and_then(|f| self.flows.get_mut(&f)) {
                    f.finished[state_index(state)] += 1;
                }
                let took = view
                    .started
                    .map(|s| humanize((event.timestamp - s).to_std().unwrap_or_default()))
                    .unwrap_or_else(|| "0ms".into());
                if mapped {
                    let key = (flow.unwrap_or_default(), view.name.clone());
                    let from = if view.started.is_some() {
                        State::Running
                    } else {
                        State::Pending
                    };
                    self.move_mapped(&key, from, state, event.timestamp);
                }
                if !mapped || !state.is_success() {
                    let attempts = if change.attempt > 1 {
                        format!(" ({} attempts)", change.attempt)
                    } else {
                        String::new()
                    };
                    let mut text = format!(
                        "{} {}{attempts}",
                        self.paint(BOLD, &label),
                        self.paint(state_color(state), &format!("{state} in {took}"))
                    );
                    if let Some(message) = change.message.as_deref().filter(|_| !state.is_success())
                    {
                        text.push_str(": ");
                        text.push_str(message);
                    }
                    self.line(event.timestamp, depth, &text);
                }
            }
            _ => {}
        }
    }

    fn move_mapped(&mut self, key: &(Uuid, String), from: State, to: State, at: DateTime<Utc>) {
        let Some(view) = self.maps.get_mut(key) else {
            return;
        };
        let from = &mut view.by_state[state_index(from)];
        *from = from.saturating_sub(1);
        view.by_state[state_index(to)] += 1;
        if view.first_start.is_none() && to == State::Running {
            view.first_start = Some(at);
        }
        let ended: u64 = State::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| view.by_state[state_index(*s)])
            .sum();
        if ended == view.created {
            if let Some(view) = self.maps.remove(key) {
                self.status = None;
                let took = view
                    .first_start
                    .map(|s| humanize((at - s).to_std().unwrap_or_default()))
                    .unwrap_or_else(|| "0ms".into());
                let text = format!("{} in {took}", self.map_counts(&view));
                self.line(at, view.depth, &text);
            }
            return;
        }
        let every = if self.live {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        let due = view.last_print.is_none_or(|last| last.elapsed() >= every);
        if due {
            view.last_print = Some(Instant::now());
            let text = self.map_counts(&self.maps[key]);
            if self.live {
                let _ = write!(self.out, "\r\x1b[2K{text}");
                let _ = self.out.flush();
                self.status_shown = true;
                STATUS_ON_STDERR.store(true, std::sync::atomic::Ordering::Release);
                self.status = Some(text);
            } else {
                let depth = self.maps[key].depth;
                self.line(at, depth, &text);
            }
        }
    }

    fn map_counts(&self, view: &MapView) -> String {
        let counts: Vec<String> = State::ALL
            .iter()
            .zip(view.by_state.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| self.paint(state_color(*s), &format!("{n} {}", label(*s))))
            .collect();
        format!(
            "{} {} runs: {}",
            self.paint(BOLD, &format!("map {}", view.name)),
            view.created,
            counts.join(" · ")
        )
    }

    fn on_log(&mut self, event: &Event, log: &LogRecord) {
        // The runtime's own lines say what the progress lines already show.
        if log.target == crate::run::RUNTIME_TARGET {
            return;
        }
        let (name, depth) = match (event.task_run_id, event.flow_run_id) {
            (Some(task), _) => match self.tasks.get(&task) {
                Some(view) => match view.map_index {
                    Some(i) => (format!("{} [{i}]", view.name), view.depth),
                    None => (view.label.clone(), view.depth),
                },
                None => return,
            },
            (None, Some(flow)) => match self.flows.get(&flow) {
                Some(view) => (view.name.clone(), view.depth),
                None => return,
            },
            (None, None) => return,
        };
        let level = match log.level {
            crate::events::LogLevel::Error => self.paint(RED, "ERROR"),
            crate::events::LogLevel::Warn => self.paint(YELLOW, "WARN "),
            level => self.paint(DIM, &format!("{level:<5}")),
        };
        let mut text = format!(
            "{level} {} {}",
            self.paint(DIM, &format!("{name}:")),
            log.message
        );
        for (key, value) in &log.fields {
            text.push_str(&format!(" {key}={value}"));
        }
        self.line(event.timestamp, depth, &text);
    }
}

fn view_name(tasks: &HashMap<Uuid, TaskView>, id: Uuid) -> String {
    tasks.get(&id).map(|v| v.name.clone()).unwrap_or_default()
}

impl EventSink for ConsoleSink {
    fn handle(&mut self, events: &[Event]) {
        for event in events {
            match &event.kind {
                EventKind::RunCreated(created) => self.on_created(event, created),
                EventKind::StateChanged(change) => match (event.task_run_id, event.flow_run_id) {
                    (Some(task), _) => self.on_task_state(event, task, change),
                    (None, Some(flow)) => {
                        self.on_flow_state(event, flow, change.state, change.message.as_deref())
                    }
                    (None, None) => {}
                },
                EventKind::Log(log) => self.on_log(event, log),
            }
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_is_drawn_again_under_each_line() {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut console = ConsoleSink::new(Box::new(SharedBuffer(buffer.clone())), false, true);
        console.status = Some("map fetch 1000 runs: 10 running".into());
        console.line(Utc::now(), 0, "task fetch [3] attempt 1 failed: 503");
        console.line(Utc::now(), 0, "task fetch [4] attempt 1 failed: 503");
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        // Each line clears the status line, prints itself, and draws the status again below.
        assert_eq!(
            text.matches("map fetch 1000 runs: 10 running").count(),
            2,
            "{text:?}"
        );
        assert!(
            text.ends_with("map fetch 1000 runs: 10 running"),
            "{text:?}"
        );
        assert_eq!(text.matches("\r\x1b[2K").count(), 1, "{text:?}");

        // With the status line on screen, a panic's message starts on a cleared line.
        let mut out = Vec::new();
        assert!(clear_status_line(&mut out), "the status line was on screen");
        assert_eq!(out, b"\r\x1b[2K");
        assert!(!clear_status_line(&mut out), "cleared once");
    }
}
