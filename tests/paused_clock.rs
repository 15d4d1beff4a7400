//! A flow call takes the virtual time its body takes under tokio's paused clock, even though its
//! end waits, in real time, for its events to reach the sinks: other timers pending meanwhile do
//! not fire early.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::recorder;
use flowkit::events::Event;
use flowkit::{EventBus, EventSink, flow, task};
use futures::future::BoxFuture;
use tokio::time::Instant;

#[task]
async fn nap(seconds: u64) -> u64 {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    seconds
}

#[flow]
async fn takes_one_second() -> u64 {
    nap(1).await.unwrap_or(0)
}

/// A sink whose flush takes real time, as a sink that writes to a file or a server does.
struct SlowFlush {
    flushes: Arc<AtomicUsize>,
}

impl EventSink for SlowFlush {
    fn handle(&mut self, _: &[Event]) {}

    fn flush(&mut self) -> BoxFuture<'_, ()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            std::thread::sleep(Duration::from_millis(100));
        })
    }
}

fn slow_bus() -> (EventBus, Arc<AtomicUsize>) {
    let flushes = Arc::new(AtomicUsize::new(0));
    let bus = EventBus::builder()
        .sink(SlowFlush {
            flushes: flushes.clone(),
        })
        .build();
    (bus, flushes)
}

#[tokio::test(start_paused = true)]
async fn a_flow_inside_a_longer_timeout_returns_at_its_own_duration() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(60), takes_one_second().on(&bus)).await;
    assert_eq!(outcome.expect("not timed out").unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(!memory.is_empty(), "the flow's end flushed its events");
}

#[tokio::test(start_paused = true)]
async fn a_flow_beside_a_longer_sleep_returns_at_its_own_duration() {
    let (bus, flushes) = slow_bus();
    let start = Instant::now();
    let beside = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        start.elapsed()
    });
    // The flow's end waits 100 ms of real time for the sink's flush; the 30 s timer stays put.
    assert_eq!(takes_one_second().on(&bus).await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(flushes.load(Ordering::SeqCst), 1, "the flow's end flushed");
    // And the timer beside it still fires at its own time.
    assert_eq!(beside.await.unwrap(), Duration::from_secs(30));
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn flows_one_after_another_beside_a_timer_take_their_own_time() {
    let (bus, _flushes) = slow_bus();
    let start = Instant::now();
    let beside = tokio::spawn(tokio::time::sleep(Duration::from_secs(3600)));
    for n in 1..=3 {
        takes_one_second().on(&bus).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(n));
    }
    beside.abort();
}

#[tokio::test(start_paused = true)]
async fn flushing_a_bus_takes_no_virtual_time() {
    let (bus, flushes) = slow_bus();
    let start = Instant::now();
    let _beside = tokio::spawn(tokio::time::sleep(Duration::from_secs(30)));
    bus.flush().await;
    assert!(bus.flush_timeout(Duration::from_secs(5)).await);
    flowkit::flush().await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(flushes.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_flush_that_runs_out_of_real_time_says_so_without_moving_virtual_time() {
    let (bus, _flushes) = slow_bus();
    let start = Instant::now();
    let _beside = tokio::spawn(tokio::time::sleep(Duration::from_secs(30)));
    // The sink needs 100 ms; 10 ms of real time is not enough.
    assert!(!bus.flush_timeout(Duration::from_millis(10)).await);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_multi_thread_runtime_a_flow_flushes_at_its_end() {
    let (bus, flushes) = slow_bus();
    let started = std::time::Instant::now();
    assert_eq!(takes_one_second().on(&bus).await.unwrap(), 1);
    assert!(started.elapsed() >= Duration::from_millis(1100));
    assert_eq!(flushes.load(Ordering::SeqCst), 1);
}

#[test]
fn a_flush_outside_any_runtime_still_waits_for_the_sinks() {
    let (bus, flushes) = slow_bus();
    let started = std::time::Instant::now();
    block_on(bus.flush());
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(flushes.load(Ordering::SeqCst), 1);
}

/// Polls a future to its end on this thread, with no runtime (as a non-tokio executor would).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
