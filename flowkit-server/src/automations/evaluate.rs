//! Matching rules to what happened, and queueing what they say: when flow runs end
//! ([`runs_ended`], called where events are ingested), and on a timer for late runs and missed
//! SLAs ([`tick`], given the time, so tests choose it). Nothing here sends anything.

use chrono::{DateTime, Utc};
use flowkit_api::access::AuditAction;
use flowkit_api::automation::{FAILURE_STATES, Notification, NotificationKind, Trigger};
use uuid::Uuid;

use super::Rule;
use super::payload::{body, notification, run_label};
use super::rules::{matches, sla_missed_at};
use crate::AppState;
use crate::store::automations::NewDelivery;
use crate::store::{Run, StoreError, nanos};

/// How far back the timer looks for late runs and missed SLAs (besides the rule's own
/// duration): a run that became late or missed its SLA more than this long ago is not
/// reported (the server was down all that time).
const LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Checks late runs and SLAs every `settings.tick`.
pub(super) async fn run(state: AppState) {
    let mut interval = tokio::time::interval(state.automations.settings.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(error) = tick(&state, Utc::now()).await {
            tracing::warn!(%error, "automations: could not check late runs and SLAs; will try again");
        }
    }
}

/// The notifications of `rule` about one event (`key`, unique for the rule), one per target.
fn deliveries(rule: &Rule, key: &str, n: &Notification, now: i64) -> Vec<NewDelivery> {
    rule.spec
        .notify
        .iter()
        .enumerate()
        .map(|(i, target)| NewDelivery {
            id: Uuid::now_v7(),
            automation_id: rule.id,
            event_key: key.to_string(),
            target_index: i as i64,
            format: target.format().to_string(),
            url: target.url().to_string(),
            payload: body(target.format(), n).to_string(),
            summary: n.summary.clone(),
            flow_run_id: n.flow_run.as_ref().map(|r| r.id),
            deployment: n.deployment.clone(),
            created_ts: now,
        })
        .collect()
}

/// Queues `items` and wakes the deliverer if any is new; how many were new.
async fn queue(state: &AppState, items: Vec<NewDelivery>) -> Result<usize, StoreError> {
    let queued = state.store.enqueue(items).await?;
    if queued > 0 {
        metrics::counter!("flowkit_notifications_queued_total").increment(queued as u64);
        state.automations.wake.notify_one();
    }
    Ok(queued)
}

/// Flow runs `ids` ended (their final state was just stored): queues what the rules watching
/// them say, and trips circuit breakers. Errors are logged, never returned: ingestion goes on.
pub async fn runs_ended(state: &AppState, ids: &[Uuid]) {
    if ids.is_empty() {
        return;
    }
    if let Err(error) = try_runs_ended(state, ids).await {
        tracing::warn!(%error, "automations: could not match ended runs to rules");
    }
}

async fn try_runs_ended(state: &AppState, ids: &[Uuid]) -> Result<(), StoreError> {
    let rules = super::rules(state).await?;
    let watching: Vec<&Rule> = rules
        .iter()
        .filter(|r| matches!(r.spec.on, Trigger::State(_)))
        .collect();
    if watching.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let now_ts = nanos(now).unwrap_or(0);
    let mut items = Vec::new();
    for id in ids {
        let Some(run) = state.store.run(*id).await? else {
            continue;
        };
        for rule in &watching {
            let Trigger::State(states) = &rule.spec.on else {
                continue;
            };
            if !states.contains(&run.state) || !matches(&rule.spec, &run) {
                continue;
            }
            let mut summary = format!("{} is {}", title(&run), run.state);
            if let Some(message) = run.message.as_deref().and_then(|m| m.lines().next()) {
                summary.push_str(": ");
                summary.push_str(&message.chars().take(200).collect::<String>());
            }
            let n = notification(
                &rule.spec.name,
                NotificationKind::State,
                summary,
                Some(&run),
                None,
                state.automations.link(&format!("#/runs/{}", run.id)),
                now,
            );
            items.extend(deliveries(
                rule,
                &format!("state:{}:{}", run.id, run.state),
                &n,
                now_ts,
            ));
            if let Some(n) = rule.spec.pause_after {
                items.extend(breaker(state, rule, &run, n, now).await?);
            }
        }
    }
    queue(state, items).await.map(drop)
}

/// `etl run brave-otter (nightly)`.
fn title(run: &Run) -> String {
    match &run.deployment {
        Some(d) => format!("{} ({d})", run_label(run)),
        None => run_label(run),
    }
}

/// The circuit breaker of `rule`: when `run` failed and its deployment's last `n` ended runs
/// all failed, pauses the deployment (once: unless it is paused already), records it in the
/// audit trail as the automation's act, and returns the notifications saying so.
async fn breaker(
    state: &AppState,
    rule: &Rule,
    run: &Run,
    n: u32,
    now: DateTime<Utc>,
) -> Result<Vec<NewDelivery>, StoreError> {
    let Some(deployment) = &run.deployment else {
        return Ok(Vec::new());
    };
    if !FAILURE_STATES.contains(&run.state.as_str()) {
        return Ok(Vec::new());
    }
    let last = state.store.last_ended(deployment, i64::from(n)).await?;
    let failing =
        last.len() == n as usize && last.iter().all(|s| FAILURE_STATES.contains(&s.as_str()));
    if !failing {
        return Ok(Vec::new());
    }
    let actor = rule.actor();
    if !state.store.pause_by(deployment, &actor).await? {
        return Ok(Vec::new());
    }
    state
        .store
        .drop_future_scheduled(deployment, i64::MIN)
        .await?;
    let detail = format!(
        "circuit breaker: its last {n} runs failed (the last: {} {})",
        run.id, run.state
    );
    let caller = crate::auth::Caller {
        name: actor.into(),
        scopes: flowkit_api::access::Scopes::of(&[flowkit_api::access::Scope::Operate]),
    };
    let touched = crate::routes::audit::Touched {
        deployment: Some(deployment.clone()),
        flow_run_id: Some(run.id),
        detail: Some(detail),
        ..Default::default()
    };
    crate::routes::audit::record(state, &caller, AuditAction::Pause, touched).await;
    metrics::counter!("flowkit_circuit_breaker_trips_total").increment(1);
    tracing::warn!(%deployment, automation = %rule.spec.name, "circuit breaker: paused a deployment after {n} failed runs");
    let summary = format!(
        "Paused deployment {deployment}: its last {n} runs failed (circuit breaker of {}); resume it once fixed",
        rule.spec.name
    );
    let note = notification(
        &rule.spec.name,
        NotificationKind::Breaker,
        summary,
        Some(run),
        Some(deployment.clone()),
        state.automations.link("#/deployments"),
        now,
    );
    Ok(deliveries(
        rule,
        &format!("breaker:{}", run.id),
        &note,
        nanos(now).unwrap_or(0),
    ))
}

/// One check at `now` of late runs and SLAs; how many notifications were queued (each late
/// run and each missed SLA is queued once per rule, however many ticks see it).
pub async fn tick(state: &AppState, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let rules = super::rules(state).await?;
    let now_ts = nanos(now).unwrap_or(0);
    let mut items = Vec::new();
    for rule in rules.iter() {
        match &rule.spec.on {
            Trigger::State(_) => {}
            Trigger::Late(_) => {
                let Some(grace) = rule
                    .spec
                    .on
                    .grace()
                    .and_then(|g| chrono::Duration::from_std(g).ok())
                else {
                    continue;
                };
                let cutoff = now - grace;
                let from = cutoff - LOOKBACK;
                let waiting = state
                    .store
                    .waiting_since(nanos(from).unwrap_or(0), nanos(cutoff).unwrap_or(0))
                    .await?;
                for id in waiting {
                    let Some(run) = state.store.run(id).await? else {
                        continue;
                    };
                    if !matches(&rule.spec, &run) || run.state != "Scheduled" {
                        continue;
                    }
                    let due = run.scheduled.map(|s| s.to_rfc3339()).unwrap_or_default();
                    let summary = format!(
                        "{} is late: due at {due}, no worker has taken it {} after",
                        title(&run),
                        humantime::format_duration(grace.to_std().unwrap_or_default())
                    );
                    let n = notification(
                        &rule.spec.name,
                        NotificationKind::Late,
                        summary,
                        Some(&run),
                        None,
                        state.automations.link(&format!("#/runs/{}", run.id)),
                        now,
                    );
                    items.extend(deliveries(rule, &format!("late:{}", run.id), &n, now_ts));
                }
            }
            Trigger::Sla(_) => {
                let mut candidates = Vec::new();
                if let Some(max) = rule
                    .spec
                    .on
                    .max_duration()
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                {
                    let since = nanos(now - max - LOOKBACK).unwrap_or(0);
                    let max_ns = max.num_nanoseconds().unwrap_or(i64::MAX);
                    candidates.extend(state.store.too_long(since, max_ns, now_ts).await?);
                }
                if let Some(deadline) = rule
                    .spec
                    .on
                    .deadline()
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                {
                    let since = nanos(now - deadline - LOOKBACK - LOOKBACK).unwrap_or(0);
                    let from = nanos(rule.created.max(now - LOOKBACK)).unwrap_or(0);
                    let deadline_ns = deadline.num_nanoseconds().unwrap_or(i64::MAX);
                    candidates.extend(
                        state
                            .store
                            .past_deadline(since, deadline_ns, from, now_ts)
                            .await?,
                    );
                }
                let mut seen = std::collections::HashSet::new();
                for run in candidates {
                    if !seen.insert(run.id) || !matches(&rule.spec, &run) {
                        continue;
                    }
                    let Some(missed) = sla_missed_at(&rule.spec.on, &run, now) else {
                        continue;
                    };
                    // Only what it missed since the rule exists.
                    if missed < rule.created {
                        continue;
                    }
                    let summary = format!(
                        "{} missed its SLA ({}) at {}; it is {}",
                        title(&run),
                        rule.spec.on.describe(),
                        missed.to_rfc3339(),
                        run.state
                    );
                    let n = notification(
                        &rule.spec.name,
                        NotificationKind::Sla,
                        summary,
                        Some(&run),
                        None,
                        state.automations.link(&format!("#/runs/{}", run.id)),
                        now,
                    );
                    items.extend(deliveries(rule, &format!("sla:{}", run.id), &n, now_ts));
                }
            }
        }
    }
    queue(state, items).await
}
