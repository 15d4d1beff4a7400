//! Retry counts and the exact delay schedule, on tokio's paused clock.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{events, only_run, recorder, states};
use flowkit::events::EventKind;
use flowkit::{RunError, State, task};
use tokio::time::Instant;

type Log = Arc<Mutex<Vec<Instant>>>;

fn attempt_gaps(log: &Log) -> Vec<Duration> {
    let times = log.lock().unwrap();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[derive(Debug, thiserror::Error)]
#[error("HTTP {0}")]
struct HttpError(u16);

fn is_transient(error: &HttpError) -> bool {
    error.0 >= 500
}

#[task(retries = 3, retry_delay = 60)]
async fn always_fails_fixed(log: Log) -> Result<(), HttpError> {
    log.lock().unwrap().push(Instant::now());
    Err(HttpError(503))
}

#[tokio::test(start_paused = true)]
async fn fixed_delay_retries_the_configured_number_of_times() {
    let (bus, memory) = recorder();
    let log = Log::default();
    let result = always_fails_fixed(log.clone()).on(&bus).await;
    match result {
        Err(RunError::Failed {
            attempts, error, ..
        }) => {
            assert_eq!(attempts, 4);
            assert_eq!(error.0, 503);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(attempt_gaps(&log), [Duration::from_secs(60); 3]);

    let events = events(&bus, &memory).await;
    let run = only_run(&events, "always_fails_fixed");
    assert_eq!(
        states(&events, run),
        [
            (State::Running, 1),
            (State::Retrying, 1),
            (State::Running, 2),
            (State::Retrying, 2),
            (State::Running, 3),
            (State::Retrying, 3),
            (State::Running, 4),
            (State::Failed, 4),
        ]
    );
}

#[task(retries = 4, retry_delay = [1, "10s", "1m"])]
async fn list_of_delays(log: Log) -> Result<(), HttpError> {
    log.lock().unwrap().push(Instant::now());
    Err(HttpError(500))
}

#[tokio::test(start_paused = true)]
async fn a_list_gives_each_retry_its_delay_and_repeats_the_last() {
    let (bus, _memory) = recorder();
    let log = Log::default();
    assert!(list_of_delays(log.clone()).on(&bus).await.is_err());
    let secs = Duration::from_secs;
    assert_eq!(attempt_gaps(&log), [secs(1), secs(10), secs(60), secs(60)]);
}

#[task(
    retries = 5,
    retry_delay = "1s",
    backoff = "exponential",
    max_retry_delay = "5s"
)]
async fn exponential(log: Log) -> Result<(), HttpError> {
    log.lock().unwrap().push(Instant::now());
    Err(HttpError(502))
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_doubles_up_to_the_max() {
    let (bus, _memory) = recorder();
    let log = Log::default();
    assert!(exponential(log.clone()).on(&bus).await.is_err());
    let secs = Duration::from_secs;
    assert_eq!(
        attempt_gaps(&log),
        [secs(1), secs(2), secs(4), secs(5), secs(5)]
    );
}

#[task(retries = 50, retry_delay = "10s", retry_jitter = 0.2)]
async fn jittered(log: Log) -> Result<(), HttpError> {
    log.lock().unwrap().push(Instant::now());
    Err(HttpError(500))
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_delays_within_its_fraction() {
    let (bus, memory) = recorder();
    let log = Log::default();
    assert!(jittered(log.clone()).on(&bus).await.is_err());
    let gaps = attempt_gaps(&log);
    assert_eq!(gaps.len(), 50);
    for gap in &gaps {
        assert!(
            *gap >= Duration::from_secs(8) && *gap <= Duration::from_secs(12),
            "{gap:?} is outside 10 s ± 20%"
        );
    }
    // Not all the same: the jitter is random.
    assert!(gaps.iter().any(|g| *g != gaps[0]));

    // Each Retrying event says when the next attempt starts.
    let events = events(&bus, &memory).await;
    for event in &events {
        if let EventKind::StateChanged(change) = &event.kind
            && change.state == State::Retrying
        {
            let next = change.next_attempt_at.expect("a next attempt time");
            let wait = (next - event.timestamp).num_milliseconds();
            assert!((7_900..=12_100).contains(&wait), "{wait} ms");
        }
    }
}

#[task(retries = 5, retry_delay = 1, retry_if = is_transient)]
async fn fails_with(log: Log, codes: Vec<u16>) -> Result<(), HttpError> {
    let attempt = {
        let mut log = log.lock().unwrap();
        log.push(Instant::now());
        log.len()
    };
    Err(HttpError(codes[attempt - 1]))
}

#[tokio::test(start_paused = true)]
async fn retry_if_stops_retrying_a_permanent_error() {
    let (bus, _memory) = recorder();
    let log = Log::default();
    // 503, 500 are transient; 404 is not: three attempts, then stop.
    let result = fails_with(log.clone(), vec![503, 500, 404, 500, 500, 500])
        .on(&bus)
        .await;
    let error = result.expect_err("a 404 is final");
    assert_eq!(error.error().map(|e| e.0), Some(404));
    assert_eq!(log.lock().unwrap().len(), 3);
}

#[task(retries = 2, retry_delay = 1, retry_if = |e| e.0 != 400)]
async fn closure_predicate(log: Log) -> Result<(), HttpError> {
    log.lock().unwrap().push(Instant::now());
    Err(HttpError(400))
}

#[tokio::test(start_paused = true)]
async fn retry_if_takes_a_closure() {
    let (bus, _memory) = recorder();
    let log = Log::default();
    assert!(closure_predicate(log.clone()).on(&bus).await.is_err());
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[task(retries = 2, retry_delay = "1s")]
async fn succeeds_on_third(log: Log) -> Result<u32, HttpError> {
    let attempt = flowkit::context().expect("in a task").attempt();
    log.lock().unwrap().push(Instant::now());
    if attempt < 3 {
        Err(HttpError(503))
    } else {
        Ok(attempt)
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_returns_the_value() {
    let (bus, memory) = recorder();
    let log = Log::default();
    assert_eq!(succeeds_on_third(log.clone()).on(&bus).await.unwrap(), 3);
    let events = events(&bus, &memory).await;
    let run = only_run(&events, "succeeds_on_third");
    assert_eq!(states(&events, run).last(), Some(&(State::Completed, 3)));
}
