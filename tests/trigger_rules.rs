//! Trigger rules: on a small graph whose upstreams complete, fail and are skipped, which
//! downstream runs, and the state of the ones that do not (`Skipped`, seen in turn by their own
//! dependents). Also the two patterns of the README: primary/fallback, and cleanup always runs.

mod common;

use std::time::Duration;

use common::{events, recorder};
use flowkit::events::EventKind;
use flowkit::{RunError, State, TriggerRule, flow, task};
use tokio::time::Instant;

#[task]
async fn succeeds() -> u32 {
    1
}

#[task]
async fn fails() -> Result<u32, String> {
    Err("boom".into())
}

/// Waits for `fails`, so the default rule skips it.
#[task]
async fn gets_skipped() -> u32 {
    unreachable!("skipped before it runs")
}

#[task]
async fn downstream(case: usize) -> usize {
    case
}

/// Which upstreams a case waits for.
#[derive(Clone, Copy, Debug)]
enum Up {
    Ok,
    Failed,
    Skipped,
}

type Outcomes = Vec<(TriggerRule, Vec<Up>, Result<usize, State>)>;

#[flow]
async fn graph() -> Result<Outcomes, std::convert::Infallible> {
    let cases = table().into_iter().map(|(rule, ups, _)| (rule, ups));
    let ok = succeeds().submit();
    let failed = fails().submit();
    let skipped = gets_skipped().wait_for([&failed]).submit();
    let mut outcomes = Vec::new();
    for (index, (rule, ups)) in cases.enumerate() {
        let upstream: Vec<flowkit::Upstream> = ups
            .iter()
            .map(|up| match up {
                Up::Ok => (&ok).into(),
                Up::Failed => (&failed).into(),
                Up::Skipped => (&skipped).into(),
            })
            .collect();
        let outcome = downstream(index)
            .wait_for(upstream)
            .trigger(rule)
            .await
            .map_err(|error| error.state());
        outcomes.push((rule, ups, outcome));
    }
    let _ = (ok.await, failed.await, skipped.await);
    Ok(outcomes)
}

/// (rule, upstreams, runs?)
fn table() -> Vec<(TriggerRule, Vec<Up>, bool)> {
    use TriggerRule::*;
    use Up::{Failed as F, Ok as S, Skipped as K};
    vec![
        (AllSucceeded, vec![S, S], true),
        (AllSucceeded, vec![S, F], false),
        (AllSucceeded, vec![S, K], false),
        (AllDone, vec![S, F, K], true),
        (AllFailed, vec![F, F], true),
        (AllFailed, vec![F, S], false),
        (AllFailed, vec![F, K], false),
        (OneFailed, vec![S, F], true),
        (OneFailed, vec![S, K], false),
        (OneSucceeded, vec![F, S], true),
        (OneSucceeded, vec![F, K], false),
        (NoneFailed, vec![S, K], true),
        (NoneFailed, vec![S, F], false),
        (NoneSkipped, vec![S, F], true),
        (NoneSkipped, vec![S, K], false),
    ]
}

#[tokio::test]
async fn each_rule_runs_or_skips_its_downstream() {
    let table = table();
    let (bus, memory) = recorder();
    let outcomes = graph().on(&bus).await.unwrap();
    for ((rule, ups, runs), (_, _, outcome)) in table.iter().zip(&outcomes) {
        match outcome {
            Ok(_) => assert!(runs, "{rule} over {ups:?} ran; it should be skipped"),
            Err(state) => {
                assert!(!runs, "{rule} over {ups:?} was {state}; it should run");
                assert_eq!(*state, State::Skipped, "{rule} over {ups:?}");
            }
        }
    }
    // Each downstream that did not run is recorded Skipped, never Running; the message names
    // a rule other than the default.
    let events = events(&bus, &memory).await;
    let runs = common::created(&events, "downstream");
    assert_eq!(runs.len(), table.len());
    for ((rule, ups, runs), (created, _)) in table.iter().zip(&runs) {
        let run = created.run_id().unwrap();
        let states = common::states(&events, run);
        if *runs {
            assert_eq!(states, [(State::Running, 1), (State::Completed, 1)]);
        } else {
            assert_eq!(states, [(State::Skipped, 0)], "{rule} over {ups:?}");
            let message = events
                .iter()
                .filter(|e| e.run_id() == Some(run))
                .find_map(|e| match &e.kind {
                    EventKind::StateChanged(s) => s.message.clone(),
                    _ => None,
                })
                .unwrap();
            if *rule != TriggerRule::AllSucceeded {
                assert!(
                    message.ends_with(&format!("(trigger rule {rule})")),
                    "{message}"
                );
            }
        }
    }
}

#[task]
async fn after(name: &'static str) -> &'static str {
    name
}

#[flow]
async fn skipped_propagates() -> Result<Vec<Result<&'static str, State>>, std::convert::Infallible>
{
    let failed = fails().submit();
    // Skipped: its upstream failed.
    let first = after("first").wait_for([&failed]).submit();
    // Skipped in turn: it sees `first` Skipped (Airflow's upstream_failed).
    let second = after("second").wait_for([&first]).submit();
    // Runs: nothing it waits for failed; `second` was skipped.
    let third = after("third")
        .wait_for([&second])
        .trigger(TriggerRule::NoneFailed)
        .submit();
    let mut out = Vec::new();
    for handle in [first, second, third] {
        out.push(handle.await.map_err(|e| e.state()));
    }
    let _ = failed.await;
    Ok(out)
}

#[tokio::test]
async fn skipped_propagates_to_dependents_until_a_rule_accepts_it() {
    let (bus, memory) = recorder();
    let outcomes = skipped_propagates().on(&bus).await.unwrap();
    assert_eq!(
        outcomes,
        [Err(State::Skipped), Err(State::Skipped), Ok("third")]
    );
    let events = events(&bus, &memory).await;
    common::assert_ends_in_order(&events);
}

#[task]
async fn primary_source() -> Result<Vec<u32>, String> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    Err("primary API answered 503".into())
}

#[task]
async fn slow_report() {
    tokio::time::sleep(Duration::from_secs(10)).await;
}

#[task]
async fn fallback_source() -> Vec<u32> {
    vec![1, 2, 3]
}

#[flow]
async fn primary_or_fallback() -> Result<(Vec<u32>, Duration), RunError<String>> {
    let start = Instant::now();
    let primary = primary_source().submit();
    let report = slow_report().submit();
    // Starts as soon as one upstream fails, without waiting for the slow one.
    let fallback = fallback_source()
        .wait_for([(&primary).into(), flowkit::Upstream::from(&report)])
        .trigger(TriggerRule::OneFailed)
        .submit();
    let rows = match primary.await {
        Ok(rows) => rows,
        Err(_) => fallback
            .await
            .map_err(|e| e.map_err(|never| match never {}))?,
    };
    let at = start.elapsed();
    let _ = report.await;
    Ok((rows, at))
}

#[tokio::test(start_paused = true)]
async fn the_fallback_runs_as_soon_as_the_primary_fails() {
    let (bus, _memory) = recorder();
    let (rows, at) = primary_or_fallback().on(&bus).await.unwrap();
    assert_eq!(rows, [1, 2, 3]);
    assert_eq!(at, Duration::from_secs(1), "not after the 10 s report");
}

#[task]
async fn load(fail: bool) -> Result<(), String> {
    if fail {
        Err("disk full".into())
    } else {
        Ok(())
    }
}

#[task]
async fn remove_temp_files() -> &'static str {
    "cleaned"
}

#[flow]
async fn with_cleanup(fail: bool) -> Result<&'static str, RunError<String>> {
    let loaded = load(fail).submit();
    let cleanup = remove_temp_files()
        .wait_for([&loaded])
        .trigger(TriggerRule::AllDone)
        .submit();
    let cleaned = cleanup
        .await
        .map_err(|e| e.map_err(|never| match never {}))?;
    loaded.await?;
    Ok(cleaned)
}

#[tokio::test]
async fn cleanup_always_runs() {
    let (bus, memory) = recorder();
    assert_eq!(with_cleanup(false).on(&bus).await.unwrap(), "cleaned");
    let failed = with_cleanup(true).on(&bus).await.unwrap_err();
    assert_eq!(failed.state(), State::Failed);
    let events = events(&bus, &memory).await;
    let cleanups = common::created(&events, "remove_temp_files");
    assert_eq!(cleanups.len(), 2);
    for (created, _) in cleanups {
        let states = common::states(&events, created.run_id().unwrap());
        assert_eq!(states.last(), Some(&(State::Completed, 1)));
    }
}
