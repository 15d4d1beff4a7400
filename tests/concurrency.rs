//! `submit`, `map`, the flow's concurrency limit, `wait_for`, `allow_failure` and cancellation,
//! on tokio's paused clock.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{created, events, only_run, recorder, states};
use flowkit::{RunError, State, allow_failure, flow, task};
use tokio::time::Instant;

#[task]
async fn nap(seconds: u64) -> u64 {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    seconds
}

#[flow]
async fn submit_many(n: u64) -> Vec<u64> {
    let handles: Vec<_> = (0..n).map(|_| nap(1).submit()).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap_or(0));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn submitted_tasks_run_concurrently() {
    let (bus, _memory) = recorder();
    let start = Instant::now();
    let out = submit_many(100).on(&bus).await.unwrap();
    assert_eq!(out, vec![1; 100]);
    // 100 tasks sleeping 1 s each finish in 1 s, not 100 s.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[task]
async fn slow_echo(x: u64) -> u64 {
    // Later items finish first: results must still come back in input order.
    tokio::time::sleep(Duration::from_secs(10 - x)).await;
    x
}

#[flow]
async fn map_in_order() -> Vec<u64> {
    flowkit::map(0..10, slow_echo)
        .await
        .into_iter()
        .map(|r| r.unwrap_or(u64::MAX))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn map_runs_concurrently_and_keeps_input_order() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    assert_eq!(
        map_in_order().on(&bus).await.unwrap(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    let events = events(&bus, &memory).await;
    let mut indexes: Vec<u64> = created(&events, "slow_echo")
        .iter()
        .filter_map(|(_, c)| c.map_index)
        .collect();
    indexes.sort();
    assert_eq!(indexes, (0..10).collect::<Vec<_>>());
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn counted_nap() {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
}

#[flow(concurrency_limit = 2)]
async fn limited() -> usize {
    flowkit::map(0..6, |_| counted_nap()).await.len()
}

#[tokio::test(start_paused = true)]
async fn the_flow_concurrency_limit_is_honoured() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    assert_eq!(limited().on(&bus).await.unwrap(), 6);
    assert_eq!(MOST.load(Ordering::SeqCst), 2);
    // Six 1-second tasks, two at a time.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    // Waiting for a slot is Pending: Running is recorded only when the slot is taken.
    let events = events(&bus, &memory).await;
    let runs = created(&events, "counted_nap");
    assert_eq!(runs.len(), 6);
}

#[task]
async fn fails_after(seconds: u64) -> Result<(), String> {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Err("upstream broke".into())
}

#[task]
async fn record_start(origin: Instant) -> Duration {
    origin.elapsed()
}

type Started = Result<Duration, RunError<std::convert::Infallible>>;

#[flow]
async fn waits(origin: WrappedInstant) -> (Started, Started, Duration) {
    let origin = origin.0;
    let slow = nap(5).submit();
    let broken = fails_after(2).submit();
    // Waits for `slow` (which succeeds) and for `broken` (allowed to fail).
    let tolerant = record_start(origin)
        .wait_for([(&slow).into(), allow_failure(&broken)])
        .await;
    // Waits for `broken`, which fails: skipped.
    let strict = record_start(origin).wait_for([&broken]).await;
    let _ = slow.await;
    let _ = broken.await;
    (tolerant, strict, origin.elapsed())
}

/// A tokio `Instant` passed as a flow parameter (parameters must serialize).
#[derive(Clone, Copy)]
struct WrappedInstant(Instant);

impl serde::Serialize for WrappedInstant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("instant")
    }
}

#[tokio::test(start_paused = true)]
async fn wait_for_orders_runs_and_allow_failure_tolerates_a_failed_upstream() {
    let (bus, memory) = recorder();
    let (tolerant, strict, total) = waits(WrappedInstant(Instant::now()))
        .on(&bus)
        .await
        .unwrap();
    assert_eq!(
        tolerant.unwrap(),
        Duration::from_secs(5),
        "started after both upstreams"
    );
    let strict = strict.expect_err("skipped");
    assert_eq!(strict.state(), State::Skipped);
    assert!(matches!(
        strict,
        RunError::UpstreamFailed {
            upstream_state: State::Failed,
            ..
        }
    ));
    assert_eq!(total, Duration::from_secs(5));

    let events = events(&bus, &memory).await;
    let starts = created(&events, "record_start");
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0].1.upstream.len(), 2, "upstream ids are recorded");
    let skipped = starts[1].0.run_id().unwrap();
    assert_eq!(states(&events, skipped), [(State::Skipped, 0)]);
}

#[flow]
async fn long_flow() -> u64 {
    let background = nap(3600).submit();
    let mapped = flowkit::map([3600, 3600], nap);
    let inline = nap(3600).await.unwrap_or(0);
    let _ = mapped.await;
    background.await.unwrap_or(0) + inline
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_flow_run_cancels_its_running_task_runs() {
    let (bus, memory) = recorder();
    let handle = long_flow().on(&bus).submit();
    tokio::time::sleep(Duration::from_secs(10)).await;
    handle.cancel();
    let error = handle.await.expect_err("cancelled");
    assert!(error.is_cancelled(), "{error}");

    let events = events(&bus, &memory).await;
    let flow_run = only_run(&events, "long_flow");
    assert_eq!(
        states(&events, flow_run).last(),
        Some(&(State::Cancelled, 1))
    );
    let naps = created(&events, "nap");
    assert_eq!(naps.len(), 4);
    for (event, _) in naps {
        let run = event.run_id().unwrap();
        assert_eq!(
            states(&events, run).last().map(|s| s.0),
            Some(State::Cancelled),
            "every running task run is recorded Cancelled"
        );
    }
    // The flow's own Cancelled comes after those of its task runs.
    let last = events
        .iter()
        .rev()
        .find_map(|e| e.state().map(|s| (e.run_id(), s)));
    assert_eq!(last, Some((Some(flow_run), State::Cancelled)));
}

#[flow]
async fn drops_a_handle() -> usize {
    let handle = nap(60).submit();
    drop(handle);
    nap(1).detach_check().await
}

trait DetachCheck {
    async fn detach_check(self) -> usize;
}

impl<'a, B> DetachCheck for flowkit::TaskCall<'a, B>
where
    B: flowkit::runtime::TaskBody + 'static,
    B::Output: 'static,
    <B::Output as flowkit::runtime::Outcome>::Ok: Send + 'static,
    <B::Output as flowkit::runtime::Outcome>::Err: std::fmt::Display + Send + 'static,
{
    async fn detach_check(self) -> usize {
        let handle = self.submit();
        let id = handle.id();
        handle.detach();
        id.get_version_num()
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_handle_cancels_and_a_detached_one_runs_to_the_end() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    assert_eq!(drops_a_handle().on(&bus).await.unwrap(), 7);
    // The flow waited for the detached 1-second run, not for the dropped 60-second one.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    let events = events(&bus, &memory).await;
    let finals: Vec<State> = created(&events, "nap")
        .iter()
        .filter_map(|(e, _)| states(&events, e.run_id().unwrap()).last().map(|s| s.0))
        .collect();
    assert_eq!(finals, [State::Cancelled, State::Completed]);
}

#[flow(timeout = "5s")]
async fn detaches_a_long_run() {
    let handle = nap(3600).submit();
    handle.detach();
}

#[tokio::test(start_paused = true)]
async fn a_flow_timeout_stops_its_detached_runs() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    let error = detaches_a_long_run().on(&bus).await.expect_err("times out");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    let events = events(&bus, &memory).await;
    let nap_run = only_run(&events, "nap");
    assert_eq!(
        states(&events, nap_run).last().map(|s| s.0),
        Some(State::Cancelled)
    );
}

#[flow]
async fn child_with_long_task() -> u64 {
    nap(3600).await.unwrap_or(0)
}

#[flow]
async fn parent_of_long_child() -> u64 {
    child_with_long_task().await.unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_parent_records_its_grandchildren_before_itself() {
    let (bus, memory) = recorder();
    let handle = parent_of_long_child().on(&bus).submit();
    tokio::time::sleep(Duration::from_secs(10)).await;
    handle.cancel();
    assert!(handle.await.expect_err("cancelled").is_cancelled());
    let events = events(&bus, &memory).await;
    let parent = only_run(&events, "parent_of_long_child");
    let child = only_run(&events, "child_with_long_task");
    let grandchild = only_run(&events, "nap");
    let position = |run| {
        events
            .iter()
            .position(|e| e.run_id() == Some(run) && e.state() == Some(State::Cancelled))
            .unwrap_or_else(|| panic!("{run} was never recorded Cancelled"))
    };
    assert!(position(grandchild) < position(parent));
    assert!(position(child) < position(parent));
}

#[flow(retries = 1, retry_delay = "1h")]
async fn fails_then_waits() -> Result<(), String> {
    Err("first attempt fails".into())
}

#[tokio::test(start_paused = true)]
async fn cancel_interrupts_a_flow_retry_delay() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    let handle = fails_then_waits().on(&bus).submit();
    tokio::time::sleep(Duration::from_secs(10)).await;
    handle.cancel();
    assert!(handle.await.expect_err("cancelled").is_cancelled());
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "did not wait out the hour"
    );
    let events = events(&bus, &memory).await;
    let run = only_run(&events, "fails_then_waits");
    assert_eq!(
        states(&events, run),
        [
            (State::Running, 1),
            (State::Retrying, 1),
            (State::Cancelled, 1)
        ]
    );
}

fn exploding_predicate(_: &String) -> bool {
    panic!("retry_if exploded")
}

#[task(retries = 1, retry_if = exploding_predicate)]
async fn with_bad_predicate() -> Result<(), String> {
    Err("boom".into())
}

#[flow]
async fn runs_bad_predicate() -> bool {
    with_bad_predicate()
        .submit()
        .await
        .is_err_and(|e| e.is_panic())
}

#[tokio::test(start_paused = true)]
async fn a_panic_outside_the_body_is_recorded_as_a_crash() {
    let (bus, memory) = recorder();
    assert!(runs_bad_predicate().on(&bus).await.unwrap());
    let events = events(&bus, &memory).await;
    let run = only_run(&events, "with_bad_predicate");
    assert_eq!(
        states(&events, run).last().map(|s| s.0),
        Some(State::Crashed)
    );
}

static LATE_WORK_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SPAWNED_STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[flow]
async fn leaves_work_behind() {
    // The handle is dropped: the future goes on, and the flow run waits for it.
    drop(flowkit::spawn(async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        LATE_WORK_DONE.store(true, Ordering::SeqCst);
    }));
}

struct StopsOnDrop;

impl Drop for StopsOnDrop {
    fn drop(&mut self) {
        SPAWNED_STOPPED.store(true, Ordering::SeqCst);
    }
}

#[flow(timeout = "1s")]
async fn times_out_with_spawned_work() {
    drop(flowkit::spawn(async {
        let _stops = StopsOnDrop;
        std::future::pending::<()>().await;
    }));
}

#[tokio::test(start_paused = true)]
async fn a_flow_run_ends_after_the_futures_it_spawned_and_stops_them_when_it_must() {
    let (bus, _memory) = recorder();
    let start = Instant::now();
    leaves_work_behind().on(&bus).await.unwrap();
    assert!(
        LATE_WORK_DONE.load(Ordering::SeqCst),
        "the flow run waited for it"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    let start = Instant::now();
    let outcome = times_out_with_spawned_work().on(&bus).await;
    assert!(
        matches!(outcome, Err(RunError::TimedOut { .. })),
        "{outcome:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        SPAWNED_STOPPED.load(Ordering::SeqCst),
        "the timeout stopped it"
    );
}
