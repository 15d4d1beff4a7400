//! Durable runs: persisted results, cache keys, resuming a flow run (in another process after a
//! SIGKILL, too), idempotency keys, and a result store that fails.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use flowkit::events::{Event, EventKind, LogLevel};
use flowkit::testing::capture;
use flowkit::{
    EventSink, LocalStore, MemorySink, ResultStore, ResultStoreError, RunError, State, StoreFuture,
    flow, task,
};
use uuid::Uuid;

/// A fresh directory for one test, removed at its end (pass or fail).
fn temp_dir(name: &str) -> common::TempDir {
    common::TempDir::new(&format!("durable-{name}"))
}

fn store(dir: &Path) -> Arc<dyn ResultStore> {
    Arc::new(LocalStore::new(dir.join("results")))
}

/// The terminal state of every run named `name`, in creation order.
fn ends(events: &MemorySink, name: &str) -> Vec<State> {
    events
        .runs_named(name)
        .into_iter()
        .map(|run| {
            *events
                .states(run)
                .last()
                .unwrap_or_else(|| panic!("{name} never changed state"))
        })
        .collect()
}

fn count(states: &[State], state: State) -> usize {
    states.iter().filter(|s| **s == state).count()
}

// ---------------------------------------------------------------------------------------------
// A real process, SIGKILLed in the middle of a 20-task flow, then resumed by another process.

const CHILD_FIRST: &str = "child_runs_twenty_tasks_until_killed";
const CHILD_RESUME: &str = "child_resumes_twenty_tasks";

/// Appends each event as a JSON line, unbuffered (what the kernel has survives a SIGKILL).
struct FileSink(std::fs::File);

impl EventSink for FileSink {
    fn handle(&mut self, events: &[Event]) {
        let mut lines = Vec::new();
        for event in events {
            if serde_json::to_writer(&mut lines, event).is_ok() {
                lines.push(b'\n');
            }
        }
        let _ = self.0.write_all(&lines);
    }
}

fn child_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("DURABLE_DIR").expect("DURABLE_DIR"))
}

fn init_child(events_file: &str) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(child_dir().join(events_file))
        .expect("the events file");
    flowkit::Config::from_env()
        .console(false)
        .sink(FileSink(file))
        .init()
        .expect("first init");
}

/// One side effect per call: its index appended to `counts`. With `DURABLE_BLOCK_AT` set, the
/// call with that index says so in a file, then waits forever (to be killed).
#[task]
async fn side_effect(index: u32, dir: String) -> u32 {
    let block_at = std::env::var("DURABLE_BLOCK_AT").ok();
    if block_at.as_deref() == Some(&*index.to_string()) {
        // What ran so far is in the events file before the parent is told to kill: the
        // dispatcher writes on its own tick, which a loaded machine may not give it in time.
        flowkit::flush().await;
        std::fs::write(Path::new(&dir).join("blocked"), b"").expect("the marker");
        std::future::pending::<()>().await;
    }
    let mut counts = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(&dir).join("counts"))
        .expect("the counts file");
    counts
        .write_all(format!("{index}\n").as_bytes())
        .expect("a count");
    index
}

/// Twenty tasks in sequence; the flow's `persist_result` makes each persist its result.
#[flow(persist_result = true)]
async fn twenty(dir: String) -> u32 {
    let run_id = flowkit::context().and_then(|c| c.flow_run_id());
    std::fs::write(
        Path::new(&dir).join("run_id"),
        run_id.map(|id| id.to_string()).unwrap_or_default(),
    )
    .expect("the run id");
    let mut sum = 0;
    for index in 0..20 {
        sum += side_effect(index, dir.clone()).await.unwrap_or(0);
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by sigkill_mid_flow_then_resume_in_another_process"]
async fn child_runs_twenty_tasks_until_killed() {
    init_child("events-first.jsonl");
    let dir = child_dir().display().to_string();
    let _ = twenty(dir).await;
    panic!("the flow was to block at task 11 until killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by sigkill_mid_flow_then_resume_in_another_process"]
async fn child_resumes_twenty_tasks() {
    init_child("events-resume.jsonl");
    let dir = child_dir();
    let run_id: Uuid = std::fs::read_to_string(dir.join("run_id"))
        .expect("the run id")
        .parse()
        .expect("a uuid");
    let sum = twenty(dir.display().to_string())
        .resume(run_id)
        .await
        .expect("the resumed run completes");
    assert_eq!(sum, (0..20).sum::<u32>());
    flowkit::flush().await;
    eprintln!("child done");
}

fn read_events(path: &Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// (state, attempt) of every state change of `run`, in order.
fn state_changes(events: &[Event], run: Uuid) -> Vec<(State, u32)> {
    common::states(events, run)
}

fn counts(dir: &Path) -> Vec<u32> {
    let mut counts: Vec<u32> = std::fs::read_to_string(dir.join("counts"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().expect("an index"))
        .collect();
    counts.sort_unstable();
    counts
}

#[test]
fn sigkill_mid_flow_then_resume_in_another_process() {
    let dir = temp_dir("sigkill");
    let results = dir.join("results");
    let mut first = common::child_test(CHILD_FIRST)
        .env("DURABLE_DIR", &dir)
        .env("DURABLE_BLOCK_AT", "11")
        .env("FLOWKIT_RESULTS_DIR", &results)
        .env("FLOWKIT_CONSOLE", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the first child starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !dir.join("blocked").exists() {
        assert!(
            first.try_wait().expect("the child's status").is_none(),
            "the first child exited before task 11"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "task 11 never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    first.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    let status = first.wait().expect("the killed child");
    assert!(!status.success());
    assert_eq!(
        counts(&dir),
        (0..11).collect::<Vec<_>>(),
        "tasks 0..=10 ran"
    );

    let resumed = common::child_test(CHILD_RESUME)
        .env("DURABLE_DIR", &dir)
        .env("FLOWKIT_RESULTS_DIR", &results)
        .env("FLOWKIT_CONSOLE", "off")
        .output()
        .expect("the second child runs");
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        resumed.status.success() && stderr.contains("child done"),
        "the resuming child failed ({}):\n{}\n{stderr}",
        resumed.status,
        String::from_utf8_lossy(&resumed.stdout)
    );

    // Every side effect exactly once: 0..=10 by the killed process, 11..20 by the resumed one.
    assert_eq!(counts(&dir), (0..20).collect::<Vec<_>>());

    let run_id: Uuid = std::fs::read_to_string(dir.join("run_id"))
        .expect("the run id")
        .parse()
        .expect("a uuid");
    let first_events = read_events(&dir.join("events-first.jsonl"));
    let resume_events = read_events(&dir.join("events-resume.jsonl"));
    let first_states = state_changes(&first_events, run_id);
    assert_eq!(first_states, [(State::Running, 1)], "killed while running");
    assert_eq!(
        state_changes(&resume_events, run_id),
        [
            (State::Crashed, 1), // recorded by the resume: the process of attempt 1 was lost
            (State::Running, 2),
            (State::Completed, 2)
        ]
    );
    // In the resumed attempt: 11 task runs reused their results, 9 ran.
    let resumed_ends: Vec<State> = common::created(&resume_events, "side_effect")
        .iter()
        .map(|(event, _)| {
            let run = event.run_id().expect("a run id");
            state_changes(&resume_events, run).last().expect("an end").0
        })
        .collect();
    assert_eq!(resumed_ends.len(), 20);
    assert!(resumed_ends[..11].iter().all(|s| *s == State::Cached));
    assert!(resumed_ends[11..].iter().all(|s| *s == State::Completed));
}

// ---------------------------------------------------------------------------------------------
// Resume after a failure fixed by changing an input.

static REPORT_CALLS: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

fn called(name: &'static str) {
    REPORT_CALLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(name);
}

fn take_calls() -> Vec<&'static str> {
    std::mem::take(&mut *REPORT_CALLS.lock().unwrap_or_else(|e| e.into_inner()))
}

#[task]
async fn fetch_rows(day: u32) -> Result<u32, String> {
    called("fetch_rows");
    Ok(day * 100)
}

#[task]
async fn audit(day: u32) -> Result<u32, String> {
    called("audit");
    Ok(day)
}

#[task]
async fn divide(rows: u32, by: u32) -> Result<u32, String> {
    called("divide");
    rows.checked_div(by)
        .ok_or_else(|| "division by zero".into())
}

#[task]
async fn publish(share: u32) -> Result<u32, String> {
    called("publish");
    Ok(share + 1)
}

#[flow(persist_result = true)]
async fn report(day: u32, by: u32) -> Result<u32, RunError<String>> {
    let rows = fetch_rows(day).await?;
    let audited = audit(day).await?;
    let share = divide(rows, by).await?;
    let published = publish(share).await?;
    Ok(published + audited)
}

#[tokio::test]
async fn resume_after_a_failure_fixed_by_an_input_reruns_only_that_task_and_its_dependents() {
    let dir = temp_dir("report");
    let store = store(&dir);
    let (failed, _) = capture(|| report(7, 0).result_store(store.clone())).await;
    let failed = failed.expect_err("division by zero");
    assert_eq!(take_calls(), ["fetch_rows", "audit", "divide"]);

    let run_id = failed.run_id();
    let (result, events) =
        capture(|| report(7, 2).result_store(store.clone()).resume(run_id)).await;
    assert_eq!(result.unwrap(), 700 / 2 + 1 + 7);
    assert_eq!(
        take_calls(),
        ["divide", "publish"],
        "only the failed task and its dependent"
    );
    assert_eq!(ends(&events, "fetch_rows"), [State::Cached]);
    assert_eq!(ends(&events, "audit"), [State::Cached]);
    assert_eq!(ends(&events, "divide"), [State::Completed]);
    assert_eq!(ends(&events, "publish"), [State::Completed]);
    assert_eq!(events.runs_named("report"), [run_id], "the same flow run");
    assert_eq!(
        events.states(run_id),
        [State::Running, State::Completed],
        "a new attempt"
    );
    assert_eq!(events.attempts(run_id), 2);
    let fetch_run = events.runs_named("fetch_rows")[0];
    let reused = events
        .events()
        .into_iter()
        .filter(|e| e.run_id() == Some(fetch_run))
        .find_map(|e| match e.kind {
            EventKind::StateChanged(s) => s.message,
            _ => None,
        })
        .unwrap_or_default();
    assert!(
        reused.starts_with("resumed: the result of task run"),
        "{reused}"
    );

    // A run the store has no record of cannot be resumed: a clear error, no panic.
    let unknown = Uuid::now_v7();
    let (result, _) = capture(|| report(7, 2).result_store(store.clone()).resume(unknown)).await;
    let error = result.expect_err("unknown run");
    assert!(
        matches!(
            error.result_store_error(),
            Some(ResultStoreError::RunNotFound { .. })
        ),
        "{error}"
    );
    assert!(take_calls().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Child flows: a resumed parent resumes the child runs its earlier attempt made.

static REGION_LOADS: AtomicUsize = AtomicUsize::new(0);
static EU_BROKEN: AtomicBool = AtomicBool::new(true);

#[task]
async fn load_region_day(region: String, day: u32) -> Result<u32, String> {
    REGION_LOADS.fetch_add(1, Ordering::SeqCst);
    if region == "eu" && day == 3 && EU_BROKEN.load(Ordering::SeqCst) {
        return Err("eu day 3: the warehouse refused the batch".into());
    }
    Ok(day)
}

/// A child flow: it persists because its parent does.
#[flow]
async fn load_region(region: String) -> Result<u32, RunError<String>> {
    let mut sum = 0;
    for day in 1..=4 {
        sum += load_region_day(region.clone(), day).await?;
    }
    Ok(sum)
}

#[flow(persist_result = true)]
async fn load_regions() -> Result<u32, RunError<RunError<String>>> {
    let us = load_region("us".into()).await?;
    let eu = load_region("eu".into()).await?;
    Ok(us + eu)
}

#[tokio::test]
async fn a_resumed_parent_resumes_its_child_flow_runs_by_identity() {
    let dir = temp_dir("children");
    let store = store(&dir);
    let (failed, first) = capture(|| load_regions().result_store(store.clone())).await;
    let failed = failed.expect_err("eu day 3 failed");
    // us: 4 days; eu: days 1 to 3.
    assert_eq!(REGION_LOADS.load(Ordering::SeqCst), 7);
    let children_before = first.runs_named("load_region");
    assert_eq!(children_before.len(), 2);

    EU_BROKEN.store(false, Ordering::SeqCst);
    let (result, events) = capture(|| {
        load_regions()
            .result_store(store.clone())
            .resume(failed.run_id())
    })
    .await;
    assert_eq!(result.unwrap(), 2 * (1 + 2 + 3 + 4));
    // Only eu's days 3 and 4 ran again.
    assert_eq!(REGION_LOADS.load(Ordering::SeqCst), 9);
    assert_eq!(
        events.runs_named("load_region"),
        children_before,
        "the same child flow runs, resumed"
    );
    let loads = ends(&events, "load_region_day");
    assert_eq!(
        (
            count(&loads, State::Cached),
            count(&loads, State::Completed)
        ),
        (6, 2)
    );
    for child in children_before {
        assert_eq!(events.attempts(child), 2, "a new attempt of child {child}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cache keys.

static PRICE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[task(cache_key = inputs, cache_expiration = "1d")]
async fn price(item: u32) -> u32 {
    PRICE_CALLS.fetch_add(1, Ordering::SeqCst);
    item * 10
}

async fn price_in(store: &Arc<dyn ResultStore>, item: u32, refresh: bool) -> (u32, State) {
    let (result, events) = capture(|| {
        let call = price(item).result_store(store.clone());
        if refresh { call.refresh_cache() } else { call }
    })
    .await;
    let state = ends(&events, "price")[0];
    (result.expect("a price"), state)
}

#[tokio::test(start_paused = true)]
async fn cache_hits_within_expiration_runs_after_it_and_on_new_inputs() {
    let dir = temp_dir("cache");
    let store = store(&dir);
    let calls = || PRICE_CALLS.load(Ordering::SeqCst);
    assert_eq!(price_in(&store, 1, false).await, (10, State::Completed));
    assert_eq!(calls(), 1);
    // Same inputs, within the expiration: the stored value, no side effect.
    assert_eq!(price_in(&store, 1, false).await, (10, State::Cached));
    assert_eq!(calls(), 1);
    // Just before it expires, still cached; after it, run again.
    tokio::time::advance(Duration::from_secs(86_400 - 60)).await;
    assert_eq!(price_in(&store, 1, false).await, (10, State::Cached));
    tokio::time::advance(Duration::from_secs(120)).await;
    assert_eq!(price_in(&store, 1, false).await, (10, State::Completed));
    assert_eq!(calls(), 2);
    // Changed inputs: run.
    assert_eq!(price_in(&store, 2, false).await, (20, State::Completed));
    assert_eq!(calls(), 3);
    // Refreshed on demand, then cached again.
    assert_eq!(price_in(&store, 2, true).await, (20, State::Completed));
    assert_eq!(price_in(&store, 2, false).await, (20, State::Cached));
    assert_eq!(calls(), 4);
}

#[task(name = "shape", cache_key = inputs)]
async fn shape_v1(x: u32) -> u32 {
    x
}

/// The same task, after its return type changed.
#[task(name = "shape", cache_key = inputs)]
async fn shape_v2(x: u32) -> Vec<String> {
    vec![x.to_string()]
}

#[tokio::test]
async fn a_changed_or_corrupt_result_is_recomputed_with_a_warning() {
    let dir = temp_dir("shape");
    let store = store(&dir);
    let (old, _) = capture(|| shape_v1(5).result_store(store.clone())).await;
    assert_eq!(old.unwrap(), 5);

    let (new, events) = capture(|| shape_v2(5).result_store(store.clone())).await;
    assert_eq!(new.unwrap(), ["5"]);
    let run = events.runs_named("shape")[0];
    assert_eq!(events.states(run), [State::Running, State::Completed]);
    let warnings: Vec<_> = events
        .logs(run)
        .into_iter()
        .filter(|l| l.level == LogLevel::Warn)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .message
            .contains("no longer deserializes as the task's return type"),
        "{}",
        warnings[0].message
    );
    let (again, events) = capture(|| shape_v2(5).result_store(store.clone())).await;
    assert_eq!(again.unwrap(), ["5"]);
    assert_eq!(ends(&events, "shape"), [State::Cached]);

    // Corrupt (a torn write from another tool): recomputed, with a warning.
    let cache_dir = dir.join("results/cache");
    let entries: Vec<_> = std::fs::read_dir(&cache_dir)
        .expect("the cache dir")
        .map(|e| e.expect("an entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    std::fs::write(&entries[0], b"{\"name\":\"sha").expect("overwrite");
    let (fixed, events) = capture(|| shape_v2(5).result_store(store.clone())).await;
    assert_eq!(fixed.unwrap(), ["5"]);
    let run = events.runs_named("shape")[0];
    assert_eq!(events.states(run), [State::Running, State::Completed]);
    assert!(
        events
            .logs(run)
            .iter()
            .any(|l| l.level == LogLevel::Warn && l.message.contains("it is corrupt")),
        "{:?}",
        events.logs(run)
    );
}

// ---------------------------------------------------------------------------------------------
// A result store that fails.

/// A local store whose next `failures` writes fail.
#[derive(Debug)]
struct FailingWrites {
    inner: LocalStore,
    failures: AtomicUsize,
}

impl ResultStore for FailingWrites {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Box::pin(std::future::ready(Err(ResultStoreError::Unavailable {
                location: self.location(),
                action: "write",
                key: key.to_string(),
                message: "disk full (simulated)".into(),
            })));
        }
        self.inner.put(key, value)
    }
}

static STORED_CALLS: AtomicUsize = AtomicUsize::new(0);

#[task(persist_result = true, retries = 2)]
async fn stored(x: u32) -> u32 {
    STORED_CALLS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

#[tokio::test]
async fn a_store_that_cannot_be_written_fails_the_attempt_and_is_retried_never_a_panic() {
    let dir = temp_dir("failing");
    // One failed write: retried like any failure, then completed.
    let store: Arc<dyn ResultStore> = Arc::new(FailingWrites {
        inner: LocalStore::new(dir.join("results")),
        failures: AtomicUsize::new(1),
    });
    let (result, events) = capture(|| stored(1).result_store(store.clone())).await;
    assert_eq!(result.unwrap(), 2);
    let run = events.runs_named("stored")[0];
    assert_eq!(
        events.states(run),
        [
            State::Running,
            State::Retrying,
            State::Running,
            State::Completed
        ]
    );

    // Every write failing: the run fails with the store's error after its retries.
    let store: Arc<dyn ResultStore> = Arc::new(FailingWrites {
        inner: LocalStore::new(dir.join("results")),
        failures: AtomicUsize::new(usize::MAX),
    });
    let (result, events) = capture(|| stored(2).result_store(store.clone())).await;
    let error = result.expect_err("the store is full");
    assert_eq!(error.state(), State::Failed);
    assert!(
        error.to_string().contains("could not write") && error.to_string().contains("disk full"),
        "{error}"
    );
    assert!(
        matches!(error, RunError::ResultStore { attempts: 3, .. }),
        "{error:?}"
    );
    assert_eq!(ends(&events, "stored"), [State::Failed]);

    // A directory that cannot exist (under a file): each attempt fails to write, naming it.
    let before = STORED_CALLS.load(Ordering::SeqCst);
    let unwritable: Arc<dyn ResultStore> = Arc::new(LocalStore::new("/dev/null/results"));
    let (result, _) = capture(|| stored(3).result_store(unwritable.clone())).await;
    let error = result.expect_err("the store cannot be written");
    assert!(error.to_string().contains("/dev/null/results"), "{error}");
    assert_eq!(STORED_CALLS.load(Ordering::SeqCst), before + 3);
}

#[tokio::test]
async fn a_cache_that_cannot_be_read_fails_the_task_before_its_body() {
    let before = PRICE_CALLS.load(Ordering::SeqCst);
    let unreadable: Arc<dyn ResultStore> = Arc::new(LocalStore::new("/dev/null/results"));
    let (result, events) = capture(|| price(99).result_store(unreadable.clone())).await;
    let error = result.expect_err("unreadable");
    assert!(
        matches!(error, RunError::ResultStore { attempts: 0, .. }),
        "{error:?}"
    );
    assert!(
        matches!(
            error.result_store_error(),
            Some(ResultStoreError::Unavailable { action: "read", .. })
        ),
        "{error:?}"
    );
    assert_eq!(ends(&events, "price"), [State::Failed]);
    assert_eq!(PRICE_CALLS.load(Ordering::SeqCst), before);
}

// ---------------------------------------------------------------------------------------------
// A map of 1,000 with 10 failures, resumed: exactly 10 rerun.

static ITEM_RUNS: AtomicUsize = AtomicUsize::new(0);
static ITEMS_BROKEN: AtomicBool = AtomicBool::new(true);

#[task]
async fn load_item(index: u32) -> Result<u64, String> {
    ITEM_RUNS.fetch_add(1, Ordering::SeqCst);
    if ITEMS_BROKEN.load(Ordering::SeqCst) && index % 100 == 42 {
        return Err(format!("item {index}: source unavailable"));
    }
    Ok(u64::from(index))
}

#[flow(persist_result = true)]
async fn load_all(n: u32) -> Result<u64, RunError<String>> {
    let loaded = flowkit::map(0..n, load_item).await;
    loaded.into_iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_of_1000_with_10_failures_resumed_reruns_exactly_10() {
    let dir = temp_dir("map");
    let store = store(&dir);
    let (result, events) = capture(|| load_all(1000).result_store(store.clone())).await;
    let error = result.expect_err("10 items failed");
    assert_eq!(ITEM_RUNS.load(Ordering::SeqCst), 1000);
    let first = ends(&events, "load_item");
    assert_eq!(
        (
            count(&first, State::Completed),
            count(&first, State::Failed)
        ),
        (990, 10)
    );

    ITEMS_BROKEN.store(false, Ordering::SeqCst);
    let run_id = error.run_id();
    let (result, events) =
        capture(|| load_all(1000).result_store(store.clone()).resume(run_id)).await;
    assert_eq!(result.unwrap(), (0..1000u64).sum::<u64>());
    assert_eq!(ITEM_RUNS.load(Ordering::SeqCst), 1010, "exactly 10 reran");
    let second = ends(&events, "load_item");
    assert_eq!(
        (
            count(&second, State::Cached),
            count(&second, State::Completed)
        ),
        (990, 10)
    );
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys.

static NIGHTLY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[flow]
async fn nightly(day: String) -> usize {
    NIGHTLY_RUNS.fetch_add(1, Ordering::SeqCst);
    day.len()
}

#[tokio::test]
async fn an_idempotency_key_already_completed_returns_its_result_without_running() {
    let dir = temp_dir("nightly");
    let store = store(&dir);
    let run = |day: &str, key: &str| {
        let call = nightly(day.to_string())
            .idempotency_key(key)
            .result_store(store.clone());
        capture(move || call)
    };
    let (first, _) = run("2026-11-27", "nightly-2026-11-27").await;
    assert_eq!(first.unwrap(), 10);
    let (again, events) = run("2026-11-27", "nightly-2026-11-27").await;
    assert_eq!(again.unwrap(), 10);
    assert_eq!(NIGHTLY_RUNS.load(Ordering::SeqCst), 1, "not run again");
    assert_eq!(ends(&events, "nightly"), [State::Cached]);
    let (other, _) = run("2026-11-28!", "nightly-2026-11-28").await;
    assert_eq!(other.unwrap(), 11);
    assert_eq!(NIGHTLY_RUNS.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// A run's warning that its result is not persisted: logged on the run (it used to panic: the
// warning entered the run's scope while the caller's was borrowed), after its creation.

/// A result no store can keep: it is not `Serialize`.
struct Opaque(u32);

#[task]
async fn opaque(n: u32) -> Opaque {
    Opaque(n)
}

/// The same task mapped, awaited inline and submitted, in a flow that persists results.
#[flow(persist_result = true)]
async fn map_opaque() -> u32 {
    let results = flowkit::map(0..3u32, opaque).await;
    let mapped: u32 = results.into_iter().flatten().map(|Opaque(n)| n).sum();
    let inline = opaque(10).await.map_or(0, |Opaque(n)| n);
    let submitted = opaque(20).submit().await.map_or(0, |Opaque(n)| n);
    mapped + inline + submitted
}

#[tokio::test]
async fn a_mapped_runs_warning_that_its_result_is_not_persisted_follows_its_creation() {
    let dir = temp_dir("opaque-map");
    let (result, events) = capture(|| map_opaque().result_store(store(&dir))).await;
    assert_eq!(result.unwrap(), 33);
    let runs = events.runs_named("opaque");
    assert_eq!(runs.len(), 5);
    let all = events.events();
    let position = |run: Uuid, created: bool| {
        all.iter().position(|e| {
            e.run_id() == Some(run)
                && match &e.kind {
                    EventKind::RunCreated(_) => created,
                    EventKind::Log(record) => {
                        !created && record.message.contains("is not persisted")
                    }
                    _ => false,
                }
        })
    };
    for run in runs {
        let (created, warned) = (position(run, true), position(run, false));
        assert!(warned.is_some(), "run {run} warned");
        assert!(
            created < warned,
            "run {run}: created at {created:?}, warned at {warned:?}"
        );
    }
}
