//! Concurrency limits by tag, global across programs, and rate limits.
//!
//! A program asks for a slot with a long poll (`routes/limits.rs`): the server answers at once
//! when a slot is free and nobody came before, else keeps the request open and tries again
//! whenever a slot is freed — on this server (a `watch` counter) or on any other sharing the
//! database (`NOTIFY flowkit_limits`) — so a freed slot goes to the next in line within
//! milliseconds, with no polling interval. A slot belongs to a task run and is kept by its
//! flow run's heartbeats: when they stop, the crash sweep frees it ([`sweep`]).

use std::time::Duration;

use std::sync::Arc;

use crate::AppState;
use crate::listen::Heard;
use crate::orchestrate::Orchestra;
use crate::store::StoreError;

/// The PostgreSQL channel servers tell each other about freed slots on.
pub const CHANNEL: &str = "flowkit_limits";

/// How long a waiter's place in line is kept after its last request: two long polls and a
/// margin (a program that stops asking has gone).
pub fn waiter_ttl(orchestra: &Orchestra) -> Duration {
    orchestra.poll_wait() * 2 + Duration::from_secs(2)
}

/// Wakes every waiter here and, on PostgreSQL, on the other servers.
pub async fn freed(state: &AppState) {
    state.orchestra.limits.wake();
    if let Err(error) = state.store.notify_limits().await {
        tracing::warn!(%error, "could not tell the other servers a slot was freed");
    }
}

/// Frees the slots of runs no longer alive (their heartbeats stopped before `cutoff`, or they
/// ended without giving them back) and the places of waiters that left.
pub async fn sweep(state: &AppState, cutoff: i64) -> Result<(), StoreError> {
    let now = crate::store::nanos(chrono::Utc::now()).unwrap_or(0);
    let ttl = i64::try_from(waiter_ttl(&state.orchestra).as_nanos()).unwrap_or(i64::MAX);
    let freed_any = state.store.sweep_slots(cutoff, now - ttl).await?;
    if freed_any > 0 {
        tracing::info!(
            freed = freed_any,
            "freed the slots (or places in line) of runs gone"
        );
        freed(state).await;
    }
    Ok(())
}

/// Listens on PostgreSQL for slots freed on other servers, reconnecting when the connection
/// drops; once listening (again), every waiter looks for itself: a slot freed elsewhere while
/// this server was not listening is found then.
pub(crate) async fn listen(pool: sqlx::PgPool, orchestra: Arc<Orchestra>) {
    crate::listen::listen(pool, CHANNEL, "freed slots", move |heard| match heard {
        Heard::Listening | Heard::Notified => orchestra.limits.wake(),
        Heard::Lost => {}
    })
    .await
}
