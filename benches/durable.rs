//! Durable runs: what a cache hit costs against a plain tracked call, and persisting the
//! results of 100,000 small tasks to the local store (throughput, bytes per result), each beside
//! a baseline measured in the same run.
//!
//! ```text
//! cargo bench --bench durable
//! ```
//!
//! Cases (every task run is tracked, its events counted by a sink that keeps none):
//! - `hit`: N inline calls of a `cache_key = inputs` task with the same input (every call after
//!   the first is a hit), against N inline calls of the same task without a cache;
//! - `miss`: N inline calls with distinct inputs (each runs and stores its result);
//! - `persist`: a `map` of 100,000 tasks in a flow with `persist_result = true`, against the same
//!   map without it, and against writing the same number of small files (temp + rename) with
//!   `std::fs` and nothing else (the floor of a one-file-per-result store).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flowkit::events::Event;
use flowkit::{EventBus, EventSink, LocalStore, ResultStore, flow, task};

/// Counts events without keeping them.
#[derive(Clone, Default)]
struct CountingSink(Arc<AtomicUsize>);

impl EventSink for CountingSink {
    fn handle(&mut self, events: &[Event]) {
        self.0.fetch_add(events.len(), Ordering::Relaxed);
    }
}

#[task]
async fn plain(x: u64) -> u64 {
    x + 1
}

#[task(cache_key = inputs)]
async fn cached(x: u64) -> u64 {
    x + 1
}

#[flow]
async fn plain_calls(n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let _ = plain(7).await;
    }
    start.elapsed()
}

#[flow]
async fn hits(n: u64) -> Duration {
    let _ = cached(7).await; // the one miss, before the clock starts
    let start = Instant::now();
    for _ in 0..n {
        let _ = cached(7).await;
    }
    start.elapsed()
}

#[flow]
async fn misses(n: u64, offset: u64) -> Duration {
    let start = Instant::now();
    for x in offset..offset + n {
        let _ = cached(x).await;
    }
    start.elapsed()
}

#[task]
async fn small(x: u64) -> u64 {
    x * 2
}

#[flow]
async fn mapped(n: u64) -> Duration {
    let start = Instant::now();
    let results = flowkit::map(0..n, small).await;
    assert!(results.iter().all(Result::is_ok));
    start.elapsed()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowkit-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Files, logical bytes and bytes on disk (allocated blocks) under `dir`.
fn usage(dir: &Path) -> (u64, u64, u64) {
    let mut totals = (0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                totals.0 += 1;
                totals.1 += meta.len();
                totals.2 += meta.blocks() * 512;
            }
        }
    }
    totals
}

fn per(d: Duration, n: u64) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The floor: `n` small files written to a temp name and renamed, on a worker.
async fn raw_files(dir: &Path, n: u64) -> Duration {
    let dir = dir.to_path_buf();
    tokio::spawn(async move {
        std::fs::create_dir_all(&dir).expect("bench dir");
        let start = Instant::now();
        for i in 0..n {
            let path = dir.join(format!("{i}.json"));
            let temp = dir.join(format!("{i}.json.tmp"));
            std::fs::write(&temp, format!("{{\"value\":{i}}}")).expect("write");
            std::fs::rename(&temp, &path).expect("rename");
        }
        start.elapsed()
    })
    .await
    .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let n_calls = 20_000;
    let n_persist: u64 = 100_000;
    let bus = EventBus::builder().sink(CountingSink::default()).build();

    // A cache hit against a plain tracked call.
    let dir = fresh_dir("cache");
    let store: Arc<dyn ResultStore> = Arc::new(LocalStore::new(&dir));
    let (mut plain_us, mut hit_us, mut miss_us) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let took = plain_calls(n_calls).on(&bus).await.unwrap_or_default();
        plain_us.push(per(took, n_calls));
        let took = hits(n_calls)
            .on(&bus)
            .result_store(store.clone())
            .await
            .unwrap_or_default();
        hit_us.push(per(took, n_calls));
        let took = misses(n_calls / 4, round * n_calls)
            .on(&bus)
            .result_store(store.clone())
            .await
            .unwrap_or_default();
        miss_us.push(per(took, n_calls / 4));
    }
    bus.flush().await;
    let (plain_us, hit_us, miss_us) = (median(plain_us), median(hit_us), median(miss_us));
    println!("cache ({n_calls} inline calls in a flow, median of 3)");
    println!("  plain tracked call          {plain_us:>9.2} us/call   (baseline)");
    println!(
        "  cache hit                   {hit_us:>9.2} us/call   {:>6.1}x the plain call",
        hit_us / plain_us
    );
    println!(
        "  cache miss (run + store)    {miss_us:>9.2} us/call   {:>6.1}x the plain call",
        miss_us / plain_us
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Persisting 100,000 small results.
    let took = mapped(n_persist).on(&bus).await.unwrap_or_default();
    let unpersisted_us = per(took, n_persist);
    let dir = fresh_dir("persist");
    let store: Arc<dyn ResultStore> = Arc::new(LocalStore::new(&dir));
    let took = mapped(n_persist)
        .on(&bus)
        .result_store(store)
        .persist_result(true)
        .await
        .unwrap_or_default();
    let persisted_us = per(took, n_persist);
    let (files, bytes, disk) = usage(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let raw_dir = fresh_dir("raw");
    let raw_us = per(raw_files(&raw_dir, n_persist).await, n_persist);
    let (raw_count, raw_bytes, raw_disk) = usage(&raw_dir);
    let _ = std::fs::remove_dir_all(&raw_dir);
    bus.flush().await;
    println!("persist ({n_persist} small task results in a map, one run each)");
    println!(
        "  map, not persisted          {unpersisted_us:>9.2} us/task   (baseline)  {:>9.0} tasks/s",
        1e6 / unpersisted_us
    );
    println!(
        "  map, persisted              {persisted_us:>9.2} us/task   {:>6.1}x     {:>9.0} results/s",
        persisted_us / unpersisted_us,
        1e6 / persisted_us
    );
    println!(
        "  raw temp+rename files       {raw_us:>9.2} us/file   (the floor of one file per result)"
    );
    // Per result, not per file: the local store packs a flow run's small results in one file.
    println!(
        "  stored: {files} files, {:.0} bytes per result (record + JSON envelope + value), {:.0} bytes on disk per result (raw files: {:.0} and {:.0}, {raw_count} files)",
        bytes as f64 / n_persist as f64,
        disk as f64 / n_persist as f64,
        raw_bytes as f64 / raw_count.max(1) as f64,
        raw_disk as f64 / raw_count.max(1) as f64,
    );
}
