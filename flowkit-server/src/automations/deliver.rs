//! The deliverer: sends the outbox. Each server runs one; it takes due notifications (leased, so
//! no other server sends them meanwhile; on PostgreSQL with `FOR UPDATE SKIP LOCKED`), posts
//! them all at once, records each try, and schedules a retry with a doubling wait until
//! `max_attempts`, then gives up. It wakes when notifications are queued on this server, and
//! looks for due ones (retries, other servers' leftovers) every second.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;

use crate::AppState;
use crate::store::automations::{AttemptRow, DeliveryRow, Outcome};
use crate::store::{StoreError, nanos};

/// At most this many notifications are sent at once.
const BATCH: i64 = 32;
/// Retries wait at most this long.
const MAX_WAIT: Duration = Duration::from_secs(600);

pub(super) async fn run(state: AppState) {
    loop {
        match deliver_once(&state).await {
            // A full batch: there may be more.
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "automations: could not send notifications; will try again"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), state.automations.wake.notified()).await;
    }
}

/// Sends the notifications due now; how many were tried.
pub async fn deliver_once(state: &AppState) -> Result<usize, StoreError> {
    let settings = &state.automations.settings;
    let now = nanos(Utc::now()).unwrap_or(0);
    // A try takes at most `timeout`: the lease outlasts it.
    let lease = i64::try_from((settings.timeout * 3).as_nanos()).unwrap_or(i64::MAX);
    let due = state
        .store
        .claim_deliveries(now, now.saturating_add(lease), BATCH)
        .await?;
    let tried = due.len();
    let sends = due.into_iter().map(|delivery| send(state, delivery));
    for result in join_all(sends).await {
        result?;
    }
    Ok(tried)
}

/// One try of one delivery, recorded.
async fn send(state: &AppState, delivery: DeliveryRow) -> Result<(), StoreError> {
    let settings = &state.automations.settings;
    let started = Instant::now();
    let answer = state
        .automations
        .client
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(delivery.payload.clone())
        .send()
        .await;
    let millis = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status_code, error) = match answer {
        Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(200).collect();
            (Some(status.as_u16()), Some(format!("answered {status}: {text}").trim().to_string()))
        }
        Err(error) => (None, Some(describe(&error))),
    };
    let now = nanos(Utc::now()).unwrap_or(0);
    let attempt = delivery.attempts;
    let outcome = if error.is_none() {
        Outcome::Delivered
    } else if attempt >= i64::from(settings.max_attempts) {
        Outcome::GaveUp
    } else {
        let wait = backoff(settings.retry_base, attempt);
        Outcome::Retry(now.saturating_add(i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX)))
    };
    let label = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry(_) => "retry",
        Outcome::GaveUp => "failed",
    };
    metrics::counter!("flowkit_notifications_total", "outcome" => label).increment(1);
    if let Some(error) = &error {
        tracing::warn!(id = %delivery.id, attempt, %error, outcome = label, "a notification was not taken");
    }
    state
        .store
        .record_attempt(
            AttemptRow {
                delivery_id: delivery.id,
                attempt,
                ts: now,
                status_code: status_code.map(i64::from),
                error,
                millis,
            },
            outcome,
        )
        .await
}

/// The wait before try `attempt + 1`: `base`, then twice as long each time, at most ten
/// minutes, give or take a tenth (so many retries do not come at once).
fn backoff(base: Duration, attempt: i64) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(20);
    let wait = base.saturating_mul(1 << doublings).min(MAX_WAIT);
    let jitter = wait.as_secs_f64() * (fastrand::f64() - 0.5) * 0.2;
    Duration::from_secs_f64((wait.as_secs_f64() + jitter).max(0.0))
}

/// A send error in words (reqwest's own is terse: its source says why).
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut text = format!("{what}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_base_within_a_tenth_and_stop_at_ten_minutes() {
        let base = Duration::from_secs(2);
        for (attempt, expected) in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0)] {
            let wait = backoff(base, attempt).as_secs_f64();
            assert!((wait - expected).abs() <= expected * 0.1 + 1e-9, "{attempt}: {wait}");
        }
        assert!(backoff(base, 40) <= MAX_WAIT + MAX_WAIT / 10);
    }
}
