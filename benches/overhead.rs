//! Per-task overhead of flowkit against raw tokio, measured side by side in one process.
//!
//! ```text
//! cargo bench --bench overhead                # the whole suite, as a table
//! cargo bench --bench overhead -- seq 100000  # one case, one line (scripts/compare-prefect.sh)
//! ```
//!
//! Cases (every task run is tracked, with its events on a memory sink that keeps them all):
//! - `seq`: N inline `task().await` in sequence in a flow, against N sequential
//!   `tokio::spawn(no-op).await` on a worker;
//! - `map`: `flowkit::map` over N no-op tasks, against spawning N no-op tasks then joining all;
//! - `retry`: N inline tasks that fail twice and succeed on the third attempt (no delay), against
//!   three sequential spawn + join per task.
//!
//! For `map`, a floor is measured in the same round too: the baseline plus what no runtime can
//! avoid with a sink that keeps every event (each run's 3 events made and sent to a thread that
//! keeps them; see `floor`).
//!
//! Memory: a counting allocator gives the peak heap growth during a case, per task run
//! (`peak_bytes_per_task`), with the memory sink holding every event, and again with a sink that
//! only counts them (what a forwarding sink such as the HTTP sink keeps).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flowkit::events::{Event, EventKind, RunCreated, RunType, StateChanged};
use flowkit::{EventBus, EventSink, MemorySink, State, flow, task};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Resets the peak to the current heap size, returning that size.
fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Counts events without keeping them.
#[derive(Clone, Default)]
struct CountingSink(Arc<AtomicUsize>);

impl EventSink for CountingSink {
    fn handle(&mut self, events: &[Event]) {
        self.0.fetch_add(events.len(), Ordering::Relaxed);
    }
}

#[task]
async fn noop() {}

#[task(retries = 3, retry_delay = 0)]
async fn flaky() -> Result<u32, &'static str> {
    let attempt = flowkit::context().map_or(1, |c| c.attempt());
    if attempt <= 2 {
        Err("planned failure")
    } else {
        Ok(attempt)
    }
}

#[flow]
async fn seq_flow(n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let _ = noop().await;
    }
    start.elapsed()
}

#[flow]
async fn map_flow(n: u64) -> Duration {
    let start = Instant::now();
    let results = flowkit::map(0..n, |_| noop()).await;
    assert_eq!(results.len() as u64, n);
    start.elapsed()
}

#[flow]
async fn retry_flow(n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        assert_eq!(flaky().await, Ok(3));
    }
    start.elapsed()
}

async fn baseline(case: &str, n: u64) -> Duration {
    let case = case.to_string();
    // On a worker, like a flow body.
    tokio::spawn(async move {
        let start = Instant::now();
        match case.as_str() {
            "map" => {
                let handles: Vec<_> = (0..n).map(|_| tokio::spawn(async {})).collect();
                for handle in handles {
                    let _ = handle.await;
                }
            }
            "retry" => {
                for _ in 0..n * 3 {
                    let _ = tokio::spawn(async {}).await;
                }
            }
            _ => {
                for _ in 0..n {
                    let _ = tokio::spawn(async {}).await;
                }
            }
        }
        start.elapsed()
    })
    .await
    .unwrap_or_default()
}

/// The part of a tracked `map` that no runtime can avoid with a sink keeping every event:
/// spawning and joining N no-op tasks (the baseline), plus each run's 3 events made (ids,
/// timestamps, its `RunCreated`) and kept in memory, on the thread that made them (not even
/// sent to another thread). Nothing else: no run record, no state, no scope, no span.
async fn floor(n: u64) -> Duration {
    let flow_run = Some(fake_id());
    let took = tokio::spawn(async move {
        let start = Instant::now();
        let event = move |task_run, kind| {
            let timestamp = chrono::Utc::now();
            Event {
                id: fake_id(),
                timestamp,
                flow_run_id: flow_run,
                task_run_id: Some(task_run),
                kind,
            }
        };
        let state = |state| {
            EventKind::StateChanged(StateChanged {
                state,
                attempt: 1,
                message: None,
                next_attempt_at: None,
                result: None,
            })
        };
        let handles: Vec<_> = (0..n)
            .map(|index| {
                let id = fake_id();
                let created = RunCreated {
                    run_type: RunType::Task,
                    name: "noop".into(),
                    run_name: None,
                    description: None,
                    parameters: None,
                    tags: Default::default(),
                    parent_flow_run_id: None,
                    parent_task_run_id: None,
                    upstream: Vec::new(),
                    map_index: Some(index),
                    retries: 0,
                    scheduled: None,
                };
                keep(event(id, EventKind::RunCreated(Arc::new(created))));
                tokio::spawn(async move {
                    keep(event(id, state(State::Running)));
                    keep(event(id, state(State::Completed)));
                })
            })
            .collect();
        for handle in handles {
            let _ = handle.await;
        }
        start.elapsed()
    })
    .await
    .unwrap_or_default();
    KEPT.lock().map(|mut kept| kept.clear()).ok();
    took
}

/// The floor's kept events: full chunks, from every thread.
static KEPT: std::sync::Mutex<Vec<Vec<Event>>> = std::sync::Mutex::new(Vec::new());

thread_local! {
    static CHUNK: std::cell::RefCell<Vec<Event>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps an event in this thread's chunk (the floor's sink).
fn keep(event: Event) {
    CHUNK.with_borrow_mut(|chunk| {
        if chunk.capacity() == 0 {
            chunk.reserve_exact(4096);
        }
        chunk.push(event);
        if chunk.len() == 4096
            && let Ok(mut kept) = KEPT.lock()
        {
            kept.push(std::mem::take(chunk));
        }
    });
}

/// A UUID v7 of now, cheaply (the floor's ids): the millisecond, then a per-thread counter.
fn fake_id() -> uuid::Uuid {
    thread_local! {
        static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let next = NEXT.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let millis = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&next.to_le_bytes());
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid()
}

async fn tracked(case: &str, n: u64, bus: &EventBus) -> Duration {
    let took = match case {
        "map" => map_flow(n).on(bus).await,
        "retry" => retry_flow(n).on(bus).await,
        _ => seq_flow(n).on(bus).await,
    };
    bus.flush().await;
    took.unwrap_or_default()
}

struct Measured {
    per_task_us: f64,
    no_sink_us: f64,
    counting_us: f64,
    baseline_us: f64,
    /// Only for `map`: see [`floor`].
    floor_us: Option<f64>,
    /// The memory sink's time over the baseline's, round by round: min and median.
    ratio_min: f64,
    ratio_median: f64,
    /// The memory sink's time over the floor's, round by round (`map`): min and median.
    floor_ratio: Option<(f64, f64)>,
    peak_bytes_per_task: f64,
    counting_peak_bytes_per_task: f64,
}

async fn measure(case: &str, n: u64, rounds: usize) -> Measured {
    let mut flowkit_us = Vec::new();
    let mut baseline_us = Vec::new();
    let mut no_sink_us = Vec::new();
    let mut counting_us = Vec::new();
    let mut floor_us = Vec::new();
    let per_task = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    for _ in 0..rounds {
        baseline_us.push(per_task(baseline(case, n).await));
        if case == "map" {
            floor_us.push(per_task(floor(n).await));
        }
        let memory = MemorySink::new();
        let bus = EventBus::builder().sink(memory.clone()).build();
        flowkit_us.push(per_task(tracked(case, n, &bus).await));
        drop(memory.take());
        no_sink_us.push(per_task(tracked(case, n, &EventBus::disabled()).await));
        let bus = EventBus::builder().sink(CountingSink::default()).build();
        counting_us.push(per_task(tracked(case, n, &bus).await));
    }
    let mut ratios: Vec<f64> = flowkit_us
        .iter()
        .zip(&baseline_us)
        .map(|(f, b)| f / b)
        .collect();
    let mut floor_ratios: Vec<f64> = flowkit_us
        .iter()
        .zip(&floor_us)
        .map(|(f, b)| f / b)
        .collect();
    // Memory, once each: with every event kept, then with events only counted.
    let memory = MemorySink::new();
    let bus = EventBus::builder().sink(memory.clone()).build();
    let before = reset_peak();
    tracked(case, n, &bus).await;
    let kept = (PEAK.load(Ordering::Relaxed) - before) as f64 / n as f64;
    drop(memory.take());
    let counter = CountingSink::default();
    let bus = EventBus::builder().sink(counter.clone()).build();
    let before = reset_peak();
    tracked(case, n, &bus).await;
    let counted = (PEAK.load(Ordering::Relaxed) - before) as f64 / n as f64;
    Measured {
        per_task_us: median(&mut flowkit_us),
        no_sink_us: median(&mut no_sink_us),
        counting_us: median(&mut counting_us),
        baseline_us: median(&mut baseline_us),
        floor_us: (!floor_us.is_empty()).then(|| median(&mut floor_us)),
        ratio_min: min(&ratios),
        ratio_median: median(&mut ratios),
        floor_ratio: (!floor_ratios.is_empty())
            .then(|| (min(&floor_ratios), median(&mut floor_ratios))),
        peak_bytes_per_task: kept,
        counting_peak_bytes_per_task: counted,
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; keep only our own arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let [case, n] = args.as_slice() {
        let n: u64 = n.parse().unwrap_or(1000);
        if let Some(case) = case.strip_suffix("-profile") {
            // One tracked run with a counting sink (or, for `map-kept-profile`, a memory sink
            // keeping every event) and nothing else, for a profiler.
            let memory = MemorySink::new();
            let (case, bus) = match case.strip_suffix("-kept") {
                Some(case) => (case, EventBus::builder().sink(memory.clone()).build()),
                None => (
                    case,
                    EventBus::builder().sink(CountingSink::default()).build(),
                ),
            };
            let took = tracked(case, n, &bus).await;
            println!("{case} {:.3} us/task", took.as_secs_f64() * 1e6 / n as f64);
            return;
        }
        let rounds = std::env::var("ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(3);
        let m = measure(case, n, rounds).await;
        let (floor_min, floor_median) = m.floor_ratio.unwrap_or((f64::NAN, f64::NAN));
        println!(
            "flowkit {case} n={n} per_task_us={:.3} baseline_us={:.3} ratio_to_baseline={:.2} peak_bytes_per_task={:.0} ratio_min={:.2} ratio_median={:.2} floor_us={:.3} ratio_to_floor_min={floor_min:.2} ratio_to_floor_median={floor_median:.2} no_sink_us={:.3} count_sink_us={:.3}",
            m.per_task_us,
            m.baseline_us,
            m.per_task_us / m.baseline_us,
            m.peak_bytes_per_task,
            m.ratio_min,
            m.ratio_median,
            m.floor_us.unwrap_or(f64::NAN),
            m.no_sink_us,
            m.counting_us,
        );
        return;
    }
    println!(
        "{:<6} {:>9} {:>14} {:>9} {:>12} {:>7} {:>11} {:>10} {:>13} {:>14}",
        "case",
        "tasks",
        "spawn+join us",
        "floor us",
        "memory sink",
        "ratio",
        "count sink",
        "no sink",
        "peak B/task",
        "peak B/task"
    );
    println!(
        "{:<6} {:>9} {:>14} {:>9} {:>12} {:>7} {:>11} {:>10} {:>13} {:>14}",
        "", "", "(baseline)", "", "us/task", "", "us/task", "us/task", "(kept)", "(counted)"
    );
    for (case, n) in [
        ("seq", 100_000),
        ("map", 100_000),
        ("retry", 30_000),
        ("seq", 1_000_000),
        ("map", 1_000_000),
    ] {
        let rounds = if n >= 1_000_000 { 1 } else { 3 };
        let m = measure(case, n, rounds).await;
        println!(
            "{case:<6} {n:>9} {:>14.3} {:>9} {:>12.3} {:>6.2}x {:>11.3} {:>10.3} {:>13.0} {:>14.0}",
            m.baseline_us,
            m.floor_us.map_or("-".to_string(), |f| format!("{f:.3}")),
            m.per_task_us,
            m.per_task_us / m.baseline_us,
            m.counting_us,
            m.no_sink_us,
            m.peak_bytes_per_task,
            m.counting_peak_bytes_per_task
        );
    }
    println!("peak RSS of the whole run: {:.0} MiB", peak_rss_mib());
}
