//! Limits within one process (no server), on tokio's paused clock: a tag's concurrency limit
//! is a FIFO semaphore, freed at every end of an attempt (failure, panic, timeout, cancel) and
//! not held across a retry's delay; a rate limit of 10/s with burst 5 gives the exact timeline.
//! Each test uses tags of its own: limits are process-wide.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flowkit::{flow, limits, task};
use tokio::time::Instant;

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static STARTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[task(tags = ["local-fifo"])]
async fn hold(i: u32) -> u32 {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    PEAK.fetch_max(now, Ordering::SeqCst);
    STARTED.lock().unwrap().push(i);
    tokio::time::sleep(Duration::from_secs(1)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    i
}

#[flow]
async fn six_holders() -> Vec<u32> {
    let handles: Vec<_> = (0..6).map(|i| hold(i).submit()).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_tag_limit_lets_that_many_run_at_once_in_arrival_order() {
    flowkit::Config::new().console(false).init().ok();
    limits::set("local-fifo", 2);
    let start = Instant::now();
    assert_eq!(six_holders().await.unwrap(), [0, 1, 2, 3, 4, 5]);
    // Six one-second tasks two at a time: three seconds, never more than two at once.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(PEAK.load(Ordering::SeqCst), 2);
    assert_eq!(
        *STARTED.lock().unwrap(),
        [0, 1, 2, 3, 4, 5],
        "first come first served"
    );
}

#[task(tags = ["local-ends"], timeout = "1s")]
async fn ends(how: &'static str) -> Result<(), String> {
    match how {
        "fail" => Err("failed".into()),
        "panic" => panic!("boom"),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

#[tokio::test(start_paused = true)]
async fn the_slot_is_freed_by_failure_panic_timeout_and_cancel() {
    flowkit::Config::new().console(false).init().ok();
    limits::set("local-ends", 1);
    let start = Instant::now();
    assert!(ends("fail").await.is_err());
    assert!(ends("panic").await.is_err());
    assert!(ends("hang").await.is_err(), "timed out");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    // Cancelled while holding the slot: the next gets it at once.
    let held = ends("hang").submit();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let waiting = ends("ok").submit();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(waiting.state().is_none(), "waits for the slot");
    held.cancel();
    let at = Instant::now();
    waiting.await.unwrap();
    assert_eq!(at.elapsed(), Duration::ZERO);
}

static TRIES: AtomicUsize = AtomicUsize::new(0);

#[task(tags = ["local-retry"], retries = 1, retry_delay = "10s")]
async fn flaky() -> Result<(), String> {
    if TRIES.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err("first try fails".into());
    }
    Ok(())
}

#[task(tags = ["local-retry"])]
async fn quick() {}

#[tokio::test(start_paused = true)]
async fn a_task_waiting_to_retry_holds_no_slot() {
    flowkit::Config::new().console(false).init().ok();
    limits::set("local-retry", 1);
    let start = Instant::now();
    let first = flaky().submit();
    tokio::time::sleep(Duration::from_millis(1)).await;
    // The flaky task sleeps 10 s before its retry: another runs meanwhile.
    quick().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1));
    first.await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[task(tags = ["local-raise"])]
async fn nap() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn raising_a_limit_lets_waiters_in_and_removing_it_lets_all_go() {
    flowkit::Config::new().console(false).init().ok();
    limits::set("local-raise", 1);
    let start = Instant::now();
    let handles: Vec<_> = (0..4).map(|_| nap().submit()).collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    limits::set("local-raise", 2);
    // Lowered again to 1 while two hold slots: the next waits for both to end.
    limits::set("local-raise", 1);
    limits::set("local-raise", 3);
    assert_eq!(limits::get("local-raise"), Some(3));
    for handle in handles {
        handle.await.unwrap();
    }
    // 1 slot, then 3 (the lowering to 1 in between is owed, not lost): three run from 1 ms on,
    // the fourth when the first ends, at 1 s.
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    let start = Instant::now();
    limits::set("local-raise", 1);
    let handles: Vec<_> = (0..3).map(|_| nap().submit()).collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(limits::remove("local-raise"));
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::from_millis(1001));
}

#[tokio::test(start_paused = true)]
async fn a_rate_of_10_per_second_with_burst_5_gives_the_exact_timeline() {
    limits::set_rate("local-orders", "10/s".parse().unwrap(), 5);
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..12 {
        limits::rate_limit("local-orders").await;
        at.push(start.elapsed().as_millis());
    }
    assert_eq!(at, [0, 0, 0, 0, 0, 100, 200, 300, 400, 500, 600, 700]);
    // Quiet for a second: the burst is back (and no more than it).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let start = Instant::now();
    let mut at = Vec::new();
    for _ in 0..7 {
        limits::rate_limit("local-orders").await;
        at.push(start.elapsed().as_millis());
    }
    assert_eq!(at, [0, 0, 0, 0, 0, 100, 200]);
    // Callers at once line up one interval apart, in the order they came.
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let order = Mutex::new(Vec::new());
    let calls = (0..8).map(|i| {
        let order = &order;
        async move {
            limits::rate_limit("local-orders").await;
            order.lock().unwrap().push((i, start.elapsed().as_millis()));
        }
    });
    futures::future::join_all(calls).await;
    let order = order.into_inner().unwrap();
    assert_eq!(
        order,
        [
            (0, 1000),
            (1, 1000),
            (2, 1000),
            (3, 1000),
            (4, 1000),
            (5, 1100),
            (6, 1200),
            (7, 1300)
        ]
    );
    // A name nobody limits costs no wait.
    let start = Instant::now();
    limits::rate_limit("local-nobody").await;
    assert_eq!(start.elapsed(), Duration::ZERO);
}
