//! Waking long-polling workers: a counter that every change of work bumps. On PostgreSQL,
//! `NOTIFY flowkit_work` carries the bump to every server process sharing the database.

use std::sync::Arc;
use tokio::sync::watch;

use super::Orchestra;
use crate::listen::Heard;

/// The PostgreSQL channel servers tell each other about work on.
pub const CHANNEL: &str = "flowkit_work";

/// Wakes the workers waiting on this server.
#[derive(Debug)]
pub struct Wake {
    tx: watch::Sender<u64>,
}

impl Default for Wake {
    fn default() -> Self {
        Self::new()
    }
}

impl Wake {
    /// Nobody waiting yet.
    pub fn new() -> Wake {
        Wake {
            tx: watch::channel(0).0,
        }
    }

    /// Wakes everyone waiting.
    pub fn wake(&self) {
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees the wake-ups from now on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

/// Listens on PostgreSQL for other servers' wake-ups, reconnecting when the connection drops.
/// Once `LISTEN` is established (at first, and after each reconnection) every waiting poll
/// looks again: a run triggered on another server while this one was not listening would
/// otherwise wait for the poll's deadline (up to 10 s).
pub(super) async fn listen(pool: sqlx::PgPool, orchestra: Arc<Orchestra>) {
    crate::listen::listen(pool, CHANNEL, "work", move |heard| match heard {
        Heard::Listening | Heard::Notified => orchestra.wake.wake(),
        Heard::Lost => {}
    })
    .await
}
