//! Crash detection: a run whose heartbeats stopped is recorded `Crashed` (with everything under
//! it not yet ended), and made again for another worker when its flow has retries left.

use std::time::Duration;

use chrono::Utc;
use flowkit::State;

use crate::AppState;
use crate::store::StoreError;

/// Sweeps every tenth of the heartbeat timeout (at least every 50 ms, at most every 5 s).
pub(super) async fn run(state: AppState) {
    let every = (state.orchestra.heartbeat_timeout / 10)
        .clamp(Duration::from_millis(50), Duration::from_secs(5));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(error) = sweep_once(&state).await {
            tracing::warn!(%error, "could not look for crashed runs; will try again");
        }
    }
}

/// Records the runs whose heartbeats stopped; how many.
pub async fn sweep_once(state: &AppState) -> Result<usize, StoreError> {
    let timeout = state.orchestra.heartbeat_timeout;
    let now = Utc::now();
    let cutoff = crate::store::nanos(now).unwrap_or(0)
        - i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX);
    let stale = state.store.sweep(cutoff).await?;
    crate::limits::sweep(state, cutoff).await?;
    let mut crashed = 0;
    // Whether a run handed out ended here: its place under `max_active_runs` is free.
    let mut freed = false;
    for (run, worker) in stale {
        let rank = state.store.run_rank(run).await?;
        if let Some((2, _, _)) = rank {
            // It ended; only its work row may be left to settle.
            state.store.finished(vec![run]).await?;
            freed = true;
            continue;
        }
        let never_started = matches!(&rank, Some((0, _, s)) if s == "Scheduled");
        let message = match &worker {
            Some(worker) => format!(
                "worker {worker} stopped sending heartbeats for this run for {}; it is presumed dead",
                humantime::format_duration(timeout)
            ),
            None => format!(
                "the program running it stopped sending heartbeats for {}; it is presumed dead",
                humantime::format_duration(timeout)
            ),
        };
        let row = state.store.settle(run, "crashed", None).await?;
        if never_started {
            // Claimed but never started: made again, without using a retry.
            super::record_unstarted(&state.store, run, State::Crashed, &message).await?;
        } else {
            let unfinished = state.store.unfinished_under(run).await?;
            super::record_state(&state.store, &unfinished, State::Crashed, &message).await?;
        }
        freed |= row.is_some();
        // Its own end may have arrived since `rank` was read (a program whose heartbeat came
        // just too late): that state won over `Crashed`, so the run did not crash: no
        // automation hears of a crash, and it is not made again.
        if let Some((2, _, _)) = state.store.run_rank(run).await? {
            tracing::info!(%run, "a run whose heartbeats stopped ended on its own meanwhile");
            continue;
        }
        crashed += 1;
        tracing::warn!(%run, ?worker, "a run's heartbeats stopped: recorded Crashed");
        crate::automations::runs_ended(state, &[run]).await;
        if let Some(row) = row {
            let retries = rank.as_ref().map_or(0, |r| r.1);
            let attempt = if never_started {
                row.attempt
            } else {
                row.attempt + 1
            };
            if never_started || row.attempt <= retries {
                let flow = flow_of(state, &row.deployment).await;
                let again = row.again(attempt, &flow, crate::store::nanos(now).unwrap_or(0));
                state
                    .store
                    .create_work(vec![again], crate::store::nanos(now).unwrap_or(0))
                    .await?;
            }
        }
    }
    if freed {
        // Runs made again, or places freed: the waiting polls look again.
        super::wake_all(state).await;
    }
    Ok(crashed)
}

/// The flow a deployment runs (for naming a run made again), or the deployment's name.
pub async fn flow_of(state: &AppState, deployment: &str) -> String {
    crate::routes::deployments::spec_of(state, deployment)
        .await
        .ok()
        .flatten()
        .map(|(spec, _)| spec.flow)
        .unwrap_or_else(|| deployment.to_string())
}
