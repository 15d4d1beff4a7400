//! "A run ends after everything under it", on every path that ends a run: cancel, dropping a
//! handle, a flow's or a task's timeout, a panic, a normal end with detached work still running;
//! at depth flow → child flow → task, with detached and submitted runs, on tokio's paused clock.
//! (Ctrl-C, which cancels every top-level flow run of the process, is in `tests/ctrl_c.rs`.)

mod common;

use std::time::Duration;

use common::tree::{UNDER_TREE, branch, calls_a_flow, leaf, nap, root, tree, waits_on_a_subtask};
use common::{assert_ends_in_order, created, events, only_run, recorder};
use flowkit::{State, flow, task};
use tokio::time::Instant;

/// Checks the order, and that the top-level run `name` ended `root_state` with every run under
/// it `Cancelled`; returns how many runs there were.
fn check_tree(events: &[flowkit::events::Event], name: &str, root_state: State) -> usize {
    let ends = assert_ends_in_order(events);
    let root = only_run(events, name);
    assert_eq!(ends[&root], root_state);
    for (run, state) in &ends {
        if *run != root {
            assert_eq!(*state, State::Cancelled, "every run under {name}");
        }
    }
    ends.len()
}

#[tokio::test(start_paused = true)]
async fn the_whole_tree_runs_and_completes_in_order() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    assert_eq!(root(3).on(&bus).await.unwrap(), 9);
    // The flow waited for its detached runs (3 s each, all at once).
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let events = events(&bus, &memory).await;
    let ends = assert_ends_in_order(&events);
    assert_eq!(ends.len(), UNDER_TREE + 1);
    assert!(ends.values().all(|s| *s == State::Completed), "{ends:?}");
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_flow_run_ends_every_run_before_the_run_above_it() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    let handle = root(3600).on(&bus).submit();
    tokio::time::sleep(Duration::from_secs(10)).await;
    handle.cancel();
    assert!(handle.await.expect_err("cancelled").is_cancelled());
    // Nothing waited out its hour.
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    let events = events(&bus, &memory).await;
    assert_eq!(
        check_tree(&events, "root", State::Cancelled),
        UNDER_TREE + 1
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_flow_handle_ends_every_run_before_the_run_above_it() {
    let (bus, memory) = recorder();
    let handle = root(3600).on(&bus).submit();
    let id = handle.id();
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(handle);
    // The runtime drops the aborted runs as soon as it runs again.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let events = events(&bus, &memory).await;
    assert_eq!(
        check_tree(&events, "root", State::Cancelled),
        UNDER_TREE + 1
    );
    assert_eq!(only_run(&events, "root"), id);
}

#[flow(timeout = "10s")]
async fn root_with_timeout(seconds: u64) -> u64 {
    tree(seconds).await
}

#[tokio::test(start_paused = true)]
async fn a_flow_timeout_ends_every_run_before_the_run_above_it() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    let error = root_with_timeout(3600)
        .on(&bus)
        .await
        .expect_err("times out");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    let events = events(&bus, &memory).await;
    assert_eq!(
        check_tree(&events, "root_with_timeout", State::TimedOut),
        UNDER_TREE + 1
    );
}

#[flow]
async fn panics_beside_its_runs() -> u64 {
    let _child = branch(3600).submit();
    let _via_task = calls_a_flow(3600).submit();
    tokio::time::sleep(Duration::from_secs(10)).await;
    panic!("the flow body exploded");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_flow_body_ends_every_run_under_it_first() {
    let (bus, memory) = recorder();
    let error = panics_beside_its_runs().on(&bus).await.expect_err("panics");
    assert!(error.is_panic(), "{error}");
    let events = events(&bus, &memory).await;
    // branch (5 runs with itself) and calls_a_flow (3 runs with itself).
    assert_eq!(
        check_tree(&events, "panics_beside_its_runs", State::Crashed),
        9
    );
}

/// Panics while a sub-task it submitted still runs: the handle is dropped while unwinding.
#[task]
async fn panics_over_a_subtask() -> u64 {
    let _sub = nap(3600).submit();
    tokio::time::sleep(Duration::from_secs(10)).await;
    panic!("the task exploded");
}

#[flow]
async fn branch_with_a_panicking_task() -> bool {
    panics_over_a_subtask().await.is_err_and(|e| e.is_panic())
}

#[flow]
async fn root_with_a_panicking_task() -> bool {
    branch_with_a_panicking_task().await.unwrap_or(false)
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_ends_after_the_runs_under_it() {
    let (bus, memory) = recorder();
    assert!(root_with_a_panicking_task().on(&bus).await.unwrap());
    let events = events(&bus, &memory).await;
    let ends = assert_ends_in_order(&events);
    let task_run = only_run(&events, "panics_over_a_subtask");
    let sub = only_run(&events, "nap");
    assert_eq!(ends[&task_run], State::Crashed);
    assert_eq!(ends[&sub], State::Cancelled);
    assert_eq!(
        ends[&only_run(&events, "root_with_a_panicking_task")],
        State::Completed
    );
}

/// Times out while a sub-task it submitted still runs.
#[task(timeout = "10s")]
async fn times_out_over_a_subtask() -> u64 {
    waits_on_a_subtask(3600).submit().await.unwrap_or(0)
}

#[flow]
async fn branch_with_a_task_timeout() -> bool {
    times_out_over_a_subtask()
        .await
        .is_err_and(|e| e.is_timeout())
}

#[flow]
async fn root_with_a_task_timeout() -> bool {
    branch_with_a_task_timeout().await.unwrap_or(false)
}

#[tokio::test(start_paused = true)]
async fn a_task_timeout_ends_the_task_after_the_runs_under_it() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    assert!(root_with_a_task_timeout().on(&bus).await.unwrap());
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    let events = events(&bus, &memory).await;
    let ends = assert_ends_in_order(&events);
    assert_eq!(
        ends[&only_run(&events, "times_out_over_a_subtask")],
        State::TimedOut
    );
    assert_eq!(ends[&only_run(&events, "nap")], State::Cancelled);
    assert_eq!(ends.len(), 5);
}

#[flow]
async fn cancels_and_drops_handles() -> u64 {
    let cancelled = waits_on_a_subtask(3600).submit();
    let dropped_task = waits_on_a_subtask(3600).submit();
    let dropped_flow = branch(3600).submit();
    tokio::time::sleep(Duration::from_secs(10)).await;
    cancelled.cancel();
    drop(dropped_task);
    drop(dropped_flow);
    cancelled.await.unwrap_or(0) + nap(1).await.unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn cancelled_and_dropped_handles_inside_a_flow_end_their_runs_in_order() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    assert_eq!(cancels_and_drops_handles().on(&bus).await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(11));
    let events = events(&bus, &memory).await;
    let ends = assert_ends_in_order(&events);
    // 2 × 2 task runs, branch with its 4, the last nap, and the flow run itself.
    assert_eq!(ends.len(), 11);
    let completed: Vec<_> = ends.values().filter(|s| **s == State::Completed).collect();
    assert_eq!(
        completed.len(),
        2,
        "the last nap and the flow run: {ends:?}"
    );
}

/// Returns at once, leaving a detached sub-task behind.
#[task]
async fn leaves_a_subtask_behind() -> u64 {
    nap(5).submit().detach();
    1
}

#[flow]
async fn returns_before_its_subtask() -> (u64, Option<State>, Duration) {
    let start = Instant::now();
    let handle = leaves_a_subtask_behind().submit();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Its value is there, but its run has not ended: a run under it still runs.
    let state = handle.state();
    let value = handle.await.unwrap_or(0);
    (value, state, start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_task_that_returns_before_its_detached_subtask_ends_after_it() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    let (value, state, returned_at) = returns_before_its_subtask().on(&bus).await.unwrap();
    assert_eq!(value, 1);
    assert_eq!(state, None, "not ended while its sub-task runs");
    assert_eq!(
        returned_at,
        Duration::from_secs(1),
        "the caller did not wait"
    );
    // The flow run waited for the detached sub-task.
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    let events = events(&bus, &memory).await;
    let ends = assert_ends_in_order(&events);
    assert!(ends.values().all(|s| *s == State::Completed), "{ends:?}");
    assert_eq!(created(&events, "nap").len(), 1);
}

/// The same on two worker threads, where the runs under a flow run end on either of them while
/// it is being cancelled or dropped: many trees at once, to give the races a chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_stay_in_order_across_worker_threads() {
    let (bus, memory) = recorder();
    let cancelled: Vec<_> = (0..20).map(|_| root(3600).on(&bus).submit()).collect();
    let dropped: Vec<_> = (0..20).map(|_| root(3600).on(&bus).submit()).collect();
    let dropped_ids: Vec<_> = dropped.iter().map(|h| h.id()).collect();
    // Real time here: let the trees start.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(dropped);
    for handle in &cancelled {
        handle.cancel();
    }
    for handle in cancelled {
        assert!(handle.await.expect_err("cancelled").is_cancelled());
    }
    // The dropped ones end as their aborted futures are dropped, on either thread.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        bus.flush().await;
        let events = memory.events();
        let ended = dropped_ids
            .iter()
            .filter(|id| {
                common::states(&events, **id).last().map(|s| s.0) == Some(State::Cancelled)
            })
            .count();
        if ended == dropped_ids.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ended} of 20 dropped trees ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events = events(&bus, &memory).await;
    let ends = assert_ends_in_order(&events);
    assert_eq!(ends.len(), 40 * (UNDER_TREE + 1));
    assert!(ends.values().all(|s| *s == State::Cancelled));
}

/// Detaches a sub-task and a child flow, then works for as long as they do.
#[task]
async fn detaches_and_works(seconds: u64) -> u64 {
    nap(seconds).submit().detach();
    leaf(seconds).submit().detach();
    nap(seconds).await.unwrap_or(0)
}

#[task(timeout = "10s")]
async fn detaches_and_times_out(seconds: u64) -> u64 {
    detaches_and_works(seconds).await.unwrap_or(0)
}

#[flow]
async fn stops_tasks_with_detached_runs() -> (bool, bool) {
    let cancelled = detaches_and_works(3600).submit();
    let dropped = detaches_and_works(3600).submit();
    tokio::time::sleep(Duration::from_secs(10)).await;
    cancelled.cancel();
    drop(dropped);
    let timed_out = detaches_and_times_out(3600).await;
    (
        cancelled.await.is_err_and(|e| e.is_cancelled()),
        timed_out.is_err_and(|e| e.is_timeout()),
    )
}

#[tokio::test(start_paused = true)]
async fn a_stopped_task_run_stops_the_runs_it_detached_and_ends_after_them() {
    let (bus, memory) = recorder();
    let start = Instant::now();
    assert_eq!(
        stops_tasks_with_detached_runs().on(&bus).await.unwrap(),
        (true, true)
    );
    // Nothing waited out its hour: 10 s before the cancel, then the 10 s timeout.
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    let events = events(&bus, &memory).await;
    let ends = assert_ends_in_order(&events);
    // 3 × (the task, 2 naps, leaf and its nap), the timed-out task and the flow run.
    assert_eq!(ends.len(), 17);
    let timed_out = only_run(&events, "detaches_and_times_out");
    let flow_run = only_run(&events, "stops_tasks_with_detached_runs");
    for (run, state) in &ends {
        let expected = match *run {
            run if run == timed_out => State::TimedOut,
            run if run == flow_run => State::Completed,
            _ => State::Cancelled,
        };
        assert_eq!(*state, expected);
    }
}
