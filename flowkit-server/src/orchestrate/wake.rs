//! Waking long-polling workers: a counter that every change of work bumps. On PostgreSQL,
//! `NOTIFY flowkit_work` carries the bump to every server process sharing the database.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Orchestra;

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
pub(super) async fn listen(pool: sqlx::PgPool, orchestra: Arc<Orchestra>) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(error) = listener.listen(CHANNEL).await {
                    tracing::warn!(%error, "cannot listen for other servers' work");
                } else {
                    loop {
                        match listener.recv().await {
                            Ok(_) => orchestra.wake.wake(),
                            Err(error) => {
                                tracing::warn!(%error, "lost the connection that hears other servers' work");
                                break;
                            }
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot listen for other servers' work"),
        }
        // Missed notifications: wake everyone, they look for themselves.
        orchestra.wake.wake();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
