//! Sensors under tokio's paused clock: the exact poke timeline, the exact timeout, the states
//! recorded between pokes, and no concurrency slot held while a sensor sleeps.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{events, recorder};
use flowkit::events::EventKind;
use flowkit::{RunError, State, flow, task};
use tokio::time::Instant;

/// One poke of [`poker`].
type PokeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Option<usize>> + Send>>;

/// When each poke ran.
type Times = Arc<Mutex<Vec<Duration>>>;

/// A poke that records when it ran and is ready on poke `ready_on` (never if 0).
fn poker(start: Instant, ready_on: usize) -> (Times, impl FnMut() -> PokeFuture + Send + 'static) {
    let times = Arc::new(Mutex::new(Vec::new()));
    let seen = times.clone();
    let poke = move || {
        let seen = seen.clone();
        let poke: PokeFuture = Box::pin(async move {
            let mut times = seen.lock().unwrap();
            times.push(start.elapsed());
            (times.len() == ready_on).then_some(times.len())
        });
        poke
    };
    (times, poke)
}

fn secs(list: &[u64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs(*s)).collect()
}

/// The (state, message) of each state change of a run.
fn changes(events: &[flowkit::events::Event], run: uuid::Uuid) -> Vec<(State, Option<String>)> {
    events
        .iter()
        .filter(|e| e.run_id() == Some(run))
        .filter_map(|e| match &e.kind {
            EventKind::StateChanged(s) => Some((s.state, s.message.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_sensor_pokes_on_its_interval_until_ready() {
    let start = Instant::now();
    let (times, poke) = poker(start, 3);
    let (bus, memory) = recorder();
    let value = flowkit::sensor("file-landed", poke)
        .every(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .on(&bus)
        .await
        .unwrap();
    assert_eq!(value, 3);
    assert_eq!(*times.lock().unwrap(), secs(&[0, 10, 20]));
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    let events = events(&bus, &memory).await;
    let run = common::only_run(&events, "file-landed");
    let created = common::created(&events, "file-landed");
    assert_eq!(created[0].1.tags.as_ref(), ["sensor"]);
    let waiting = Some("poke 1: not ready; next poke in 10s".to_string());
    assert_eq!(
        changes(&events, run),
        [
            (State::Running, None),
            (State::Pending, waiting),
            (State::Running, Some("poke 2".into())),
            (
                State::Pending,
                Some("poke 2: not ready; next poke in 10s".into())
            ),
            (State::Running, Some("poke 3".into())),
            (State::Completed, Some("ready on poke 3".into())),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_sensor_times_out_exactly_at_its_timeout() {
    let start = Instant::now();
    let (times, poke) = poker(start, 0);
    let (bus, memory) = recorder();
    let error = flowkit::sensor("never-ready", poke)
        .every(Duration::from_secs(10))
        .timeout(Duration::from_secs(35))
        .on(&bus)
        .await
        .unwrap_err();
    assert!(matches!(error, RunError::TimedOut { .. }), "{error}");
    assert_eq!(start.elapsed(), Duration::from_secs(35));
    // Pokes at 0, 10, 20 and 30 s; the next would be after the timeout.
    assert_eq!(*times.lock().unwrap(), secs(&[0, 10, 20, 30]));
    let events = events(&bus, &memory).await;
    let run = common::only_run(&events, "never-ready");
    let changes = changes(&events, run);
    assert_eq!(
        changes[changes.len() - 2],
        (
            State::Pending,
            Some("poke 4: not ready; times out in 5s".into())
        )
    );
    assert_eq!(
        changes.last().unwrap(),
        &(
            State::TimedOut,
            Some("condition not met after 4 pokes in 35s (one every 10s)".into())
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_poke_still_running_at_the_timeout_is_stopped_then() {
    let start = Instant::now();
    let error = flowkit::sensor("hanging-poke", || async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        true
    })
    .timeout(Duration::from_secs(90))
    .await
    .unwrap_err();
    assert_eq!(error.state(), State::TimedOut);
    assert_eq!(start.elapsed(), Duration::from_secs(90));
}

#[tokio::test(start_paused = true)]
async fn a_poke_error_fails_the_sensor_at_once() {
    let start = Instant::now();
    let error = flowkit::sensor("bad-credentials", || async {
        Err::<bool, _>("403 Forbidden".to_string())
    })
    .every(Duration::from_secs(10))
    .await
    .unwrap_err();
    assert_eq!(error.state(), State::Failed);
    assert_eq!(error.error().map(String::as_str), Some("403 Forbidden"));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[task]
async fn quick_work() -> Duration {
    tokio::time::sleep(Duration::from_secs(5)).await;
    Duration::ZERO
}

/// One slot: the sensor takes it for each poke only, so the task beside it runs while the
/// sensor sleeps.
#[flow(concurrency_limit = 1)]
async fn one_slot() -> Result<(Duration, Duration), RunError<std::convert::Infallible>> {
    let start = Instant::now();
    let sensor = flowkit::sensor("upstream-ready", move || async move {
        start.elapsed() >= Duration::from_secs(30)
    })
    .every(Duration::from_secs(10))
    .submit();
    tokio::time::sleep(Duration::from_millis(1)).await;
    quick_work().await?;
    let work_done = start.elapsed();
    sensor.await?;
    Ok((work_done, start.elapsed()))
}

#[tokio::test(start_paused = true)]
async fn a_sleeping_sensor_holds_no_concurrency_slot() {
    let (bus, _memory) = recorder();
    let (work_done, sensor_done) = one_slot().on(&bus).await.unwrap();
    assert_eq!(
        work_done,
        Duration::from_millis(5001),
        "ran while the sensor slept"
    );
    assert_eq!(sensor_done, Duration::from_secs(30));
}

#[tokio::test]
async fn waiting_for_another_deployment_needs_a_server() {
    if std::env::var_os("FLOWKIT_API_URL").is_some() {
        return; // this test is about running without one
    }
    let (bus, memory) = recorder();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
    let error = flowkit::wait_for_run("customers", day)
        .on(&bus)
        .await
        .unwrap_err();
    assert_eq!(error.state(), State::Failed);
    assert_eq!(
        error.error().unwrap().to_string(),
        "waiting for a run of deployment `customers` needs a flowkit server: set FLOWKIT_API_URL"
    );
    let events = events(&bus, &memory).await;
    assert_eq!(common::created(&events, "wait for customers").len(), 1);
}
