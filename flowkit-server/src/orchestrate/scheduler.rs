//! The scheduler: creates each deployment's scheduled runs ahead of time, so they show as
//! upcoming and a worker is handed each one the moment it is due.
//!
//! Each tick, for each deployment not paused: the times missed since its latest scheduled run
//! (all of them, oldest first, with `catchup`; else only the latest), then every time up to
//! [`AHEAD`] from now (at least the next one, at most [`MAX_AHEAD`]). A deployment's first tick
//! starts from now: registering a deployment never runs its past. Each time is created at most
//! once per deployment (a unique index), so any number of servers can tick at once.

use chrono::{DateTime, Utc};
use flowkit_api::work::Origin;
use flowkit_api::{DeploymentSpec, next_due};

use crate::AppState;
use crate::store::StoreError;
use crate::store::work::NewWork;

/// How far ahead scheduled runs are created.
pub const AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// At most this many runs ahead per deployment.
pub const MAX_AHEAD: usize = 100;

pub(super) async fn run(state: AppState) {
    let mut interval = tokio::time::interval(state.orchestra.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match tick(&state, Utc::now()).await {
            Ok(0) => {}
            Ok(created) => tracing::debug!(created, "scheduler: created scheduled runs"),
            Err(error) => tracing::warn!(%error, "scheduler: tick failed; will try again"),
        }
    }
}

/// One tick at `now`: creates the runs due by the deployments' schedules (or only `only`'s);
/// how many.
pub async fn tick(state: &AppState, now: DateTime<Utc>) -> Result<usize, StoreError> {
    tick_some(state, now, None).await
}

/// A tick for one deployment (just registered, changed or resumed).
pub async fn tick_one(
    state: &AppState,
    now: DateTime<Utc>,
    name: &str,
) -> Result<usize, StoreError> {
    tick_some(state, now, Some(name)).await
}

async fn tick_some(
    state: &AppState,
    now: DateTime<Utc>,
    only: Option<&str>,
) -> Result<usize, StoreError> {
    let deployments = match only {
        Some(name) => state
            .store
            .deployment_row(name)
            .await?
            .into_iter()
            .collect(),
        None => state.store.deployment_rows().await?,
    };
    let last = state.store.last_scheduled(only).await?;
    let mut items = Vec::new();
    for (text, paused, _) in deployments {
        let Ok(spec) = serde_json::from_str::<DeploymentSpec>(&text) else {
            continue;
        };
        if only.is_some_and(|only| only != spec.name) {
            continue;
        }
        if paused.unwrap_or(spec.paused) {
            continue;
        }
        items.extend(due(
            &spec,
            last.get(&spec.name)
                .map(|t| DateTime::from_timestamp_nanos(*t)),
            now,
        ));
    }
    let nanos = crate::store::nanos(now).unwrap_or(0);
    let created = state.store.create_work(items, nanos).await?.len();
    if created > 0 {
        super::wake_all(state).await;
    }
    Ok(created)
}

/// The runs `spec`'s schedules call for at `now`, given its latest scheduled run `last`.
pub fn due(spec: &DeploymentSpec, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Vec<NewWork> {
    let Ok(schedules) = spec.schedules() else {
        return Vec::new();
    };
    if schedules.is_empty() {
        return Vec::new();
    }
    let mut times = Vec::new();
    let mut at = now;
    if let Some(last) = last {
        times.extend(flowkit_api::missed(&schedules, last, now, spec.catchup));
        at = last.max(now);
    }
    let horizon = now + AHEAD;
    let mut ahead = 0;
    // At least one run ahead: the next time, however far.
    let has_next = last.is_some_and(|last| last > now);
    while let Some(next) = next_due(&schedules, at) {
        if (next.0 > horizon && (ahead > 0 || has_next)) || ahead >= MAX_AHEAD {
            break;
        }
        times.push(next);
        at = next.0;
        ahead += 1;
    }
    times
        .into_iter()
        .filter_map(|(at, previous)| {
            let scheduled_ts = crate::store::nanos(at)?;
            let interval = previous
                .and_then(crate::store::nanos)
                .map(|start| (start, scheduled_ts));
            Some(NewWork {
                id: uuid::Uuid::now_v7(),
                deployment: spec.name.clone(),
                flow: spec.flow.clone(),
                queue: spec.queue.clone(),
                priority: i64::from(spec.priority),
                origin: Origin::Schedule,
                scheduled_ts,
                interval,
                parameters: spec.parameters.as_ref().map(|p| p.to_string()),
                idempotency_key: None,
                attempt: 1,
                backfill_id: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> DeploymentSpec {
        serde_json::from_str(json).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn first_tick_starts_from_now_and_creates_ahead() {
        let s = spec(r#"{"name": "d", "flow": "f", "schedules": [{"every": "1m"}]}"#);
        let runs = due(&s, None, at("2026-01-01T00:00:30Z"));
        // 00:01 … 00:10: ten minutes ahead, nothing of the past.
        assert_eq!(runs.len(), 10);
        assert_eq!(
            runs[0].scheduled_ts,
            crate::store::nanos(at("2026-01-01T00:01:00Z")).unwrap()
        );
        assert_eq!(
            runs[0].interval,
            Some((
                crate::store::nanos(at("2026-01-01T00:00:00Z")).unwrap(),
                crate::store::nanos(at("2026-01-01T00:01:00Z")).unwrap()
            ))
        );
    }

    #[test]
    fn a_far_schedule_still_has_its_next_run() {
        let s = spec(r#"{"name": "d", "flow": "f", "schedules": [{"cron": "0 2 * * *"}]}"#);
        let runs = due(&s, None, at("2026-01-01T12:00:00Z"));
        assert_eq!(runs.len(), 1);
        assert_eq!(
            runs[0].scheduled_ts,
            crate::store::nanos(at("2026-01-02T02:00:00Z")).unwrap()
        );
    }

    #[test]
    fn catchup_runs_every_missed_time_and_without_it_only_the_latest() {
        let json = |catchup: bool| {
            format!(
                r#"{{"name": "d", "flow": "f", "schedules": [{{"cron": "0 * * * *"}}], "catchup": {catchup}}}"#
            )
        };
        let last = Some(at("2026-01-01T00:00:00Z"));
        let now = at("2026-01-01T03:30:00Z");
        let past = |runs: &[NewWork]| {
            runs.iter()
                .filter(|r| r.scheduled_ts <= crate::store::nanos(now).unwrap())
                .map(|r| DateTime::from_timestamp_nanos(r.scheduled_ts).to_rfc3339())
                .collect::<Vec<_>>()
        };
        let with = due(&spec(&json(true)), last, now);
        assert_eq!(
            past(&with),
            [
                "2026-01-01T01:00:00+00:00",
                "2026-01-01T02:00:00+00:00",
                "2026-01-01T03:00:00+00:00"
            ]
        );
        let without = due(&spec(&json(false)), last, now);
        assert_eq!(past(&without), ["2026-01-01T03:00:00+00:00"]);
        // And the next one ahead, in both.
        assert_eq!(with.len(), 4);
        assert_eq!(without.len(), 2);
    }

    #[test]
    fn several_schedules_merge_their_times_each_with_its_own_interval() {
        let shown = |runs: &[NewWork]| {
            let hm = |ts: i64| {
                DateTime::from_timestamp_nanos(ts)
                    .format("%H:%M")
                    .to_string()
            };
            runs.iter()
                .map(|r| {
                    let (start, end) = r.interval.expect("an interval");
                    format!("{} [{}, {})", hm(r.scheduled_ts), hm(start), hm(end))
                })
                .collect::<Vec<_>>()
        };
        // Hourly on the hour and at half past, caught up after being down from 00:00 to 02:45.
        let s = spec(
            r#"{"name": "d", "flow": "f", "catchup": true,
                "schedules": [{"every": "1h"}, {"cron": "30 * * * *"}]}"#,
        );
        let runs = due(
            &s,
            Some(at("2026-01-01T00:00:00Z")),
            at("2026-01-01T02:45:00Z"),
        );
        assert_eq!(
            shown(&runs),
            [
                "00:30 [23:30, 00:30)",
                "01:00 [00:00, 01:00)",
                "01:30 [00:30, 01:30)",
                "02:00 [01:00, 02:00)",
                "02:30 [01:30, 02:30)",
                "03:00 [02:00, 03:00)", // the next one, ahead
            ]
        );
        // Two schedules meeting on the hour: one run per time (the store's unique slot would
        // refuse a second), its interval from the first schedule given that fires then.
        let s = spec(
            r#"{"name": "d", "flow": "f", "schedules": [{"every": "30m"}, {"cron": "0 * * * *"}]}"#,
        );
        let runs = due(&s, None, at("2026-01-01T00:05:00Z"));
        assert_eq!(shown(&runs), ["00:30 [00:00, 00:30)"]);
        let runs = due(
            &s,
            Some(at("2026-01-01T00:30:00Z")),
            at("2026-01-01T01:45:00Z"),
        );
        assert_eq!(
            shown(&runs),
            ["01:30 [01:00, 01:30)", "02:00 [01:30, 02:00)"],
            "without catchup the latest missed, then the next"
        );
    }

    #[test]
    fn runs_already_created_ahead_are_not_made_again() {
        let s = spec(r#"{"name": "d", "flow": "f", "schedules": [{"every": "1m"}]}"#);
        // The latest created is 00:10; at 00:00:30 nothing new is within ten minutes.
        let runs = due(
            &s,
            Some(at("2026-01-01T00:10:00Z")),
            at("2026-01-01T00:00:30Z"),
        );
        assert!(runs.is_empty(), "{runs:?}");
        let runs = due(
            &s,
            Some(at("2026-01-01T00:10:00Z")),
            at("2026-01-01T00:02:30Z"),
        );
        assert_eq!(runs.len(), 2); // 00:11 and 00:12
    }
}
