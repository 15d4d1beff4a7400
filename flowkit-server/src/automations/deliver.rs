//! The deliverer: sends the outbox. Each server runs one; it takes due notifications (leased, so
//! no other server sends them meanwhile; on PostgreSQL with `FOR UPDATE SKIP LOCKED`), sends
//! each in a task of its own (at most [`IN_FLIGHT`] at once), records each try, and schedules a
//! retry with a doubling wait until `max_attempts`, then gives up. It wakes when notifications
//! are queued on this server or a send ends, and looks for due ones (retries, other servers'
//! leftovers) every second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use tokio::sync::Semaphore;

use crate::AppState;
use crate::store::automations::{AttemptRow, DeliveryRow, Outcome};
use crate::store::{StoreError, nanos};

/// At most this many notifications are in flight at once (per server).
const IN_FLIGHT: usize = 32;
/// Retries wait at most this long.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Claims due notifications while there is room in flight, and sends each in a task of its
/// own: a target that hangs until its timeout holds one slot, never the others' notifications.
pub(super) async fn run(state: AppState) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let room = slots.available_permits();
        let claimed = if room == 0 {
            Ok(Vec::new())
        } else {
            claim(&state, room).await
        };
        let full = match claimed {
            Ok(due) => {
                let n = due.len();
                for delivery in due {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let state = state.clone();
                    tokio::spawn(async move {
                        if let Err(error) = send(&state, delivery).await {
                            tracing::warn!(%error, "automations: could not record a try");
                        }
                        drop(slot);
                        // Room again: look for more at once.
                        state.automations.wake.notify_one();
                    });
                }
                n > 0 && n == room
            }
            Err(error) => {
                tracing::warn!(%error, "automations: could not take notifications to send; will try again");
                false
            }
        };
        // Nothing more due, or no room: wait for a queued notification or a send that ends
        // (both wake us), or a second.
        if !full || slots.available_permits() == 0 {
            let _ = tokio::time::timeout(Duration::from_secs(1), state.automations.wake.notified())
                .await;
        }
    }
}

/// Takes up to `limit` notifications due now, leased for three timeouts (a try takes at most
/// one).
async fn claim(state: &AppState, limit: usize) -> Result<Vec<DeliveryRow>, StoreError> {
    let settings = &state.automations.settings;
    let now = nanos(Utc::now()).unwrap_or(0);
    let lease = i64::try_from((settings.timeout * 3).as_nanos()).unwrap_or(i64::MAX);
    state
        .store
        .claim_deliveries(now, now.saturating_add(lease), limit as i64)
        .await
}

/// Sends the notifications due now and waits for every try to be recorded; how many were
/// tried. (The server's own deliverer does not wait for a batch: see `run`.)
pub async fn deliver_once(state: &AppState) -> Result<usize, StoreError> {
    let due = claim(state, IN_FLIGHT).await?;
    let tried = due.len();
    for result in join_all(due.into_iter().map(|delivery| send(state, delivery))).await {
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
            (
                Some(status.as_u16()),
                Some(format!("answered {status}: {text}").trim().to_string()),
            )
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
        // Wake the deliverer when it is due (else its once-a-second look finds it).
        let automations = state.automations.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            automations.wake.notify_one();
        });
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
    let doublings = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
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
            assert!(
                (wait - expected).abs() <= expected * 0.1 + 1e-9,
                "{attempt}: {wait}"
            );
        }
        assert!(backoff(base, 40) <= MAX_WAIT + MAX_WAIT / 10);
    }
}
