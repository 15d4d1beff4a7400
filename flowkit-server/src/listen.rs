//! Hearing the other servers that share a PostgreSQL database: `LISTEN` on a channel, and
//! what a listener must do when its connection drops.
//!
//! A notification sent while the listening connection is down (or not yet listening) is lost
//! for good. So a listener is told when it is listening again ([`Heard::Listening`], after
//! the first `LISTEN` too): whoever waits on the channel must then look at the database for
//! themselves, which finds whatever the lost notifications were about.

use std::time::Duration;

use sqlx::postgres::PgListener;

/// What a listener hears.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// `LISTEN` is established (first, or again after a lost connection): anything sent
    /// before may have been missed.
    Listening,
    /// A notification on the channel.
    Notified,
    /// The connection dropped: notifications are missed until `Listening` comes again.
    Lost,
}

/// The pause before connecting again after a connection that worked.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two attempts to connect.
const LAST_PAUSE: Duration = Duration::from_secs(1);

/// Listens on `channel` for ever, calling `heard` with each notification and each change of
/// the connection; a lost connection is made again after 50 ms, then after pauses doubling up
/// to a second while that fails. `what` names the channel's news in the log.
///
/// ```no_run
/// # async fn example(pool: sqlx::PgPool) {
/// tokio::spawn(flowkit_server::listen::listen(pool, "flowkit_work", "work", |heard| {
///     println!("{heard:?}");
/// }));
/// # }
/// ```
pub async fn listen(
    pool: sqlx::PgPool,
    channel: &'static str,
    what: &'static str,
    mut heard: impl FnMut(Heard) + Send,
) {
    let mut pause = FIRST_PAUSE;
    loop {
        let mut listening = false;
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                // A lost connection ends this listener; the loop makes a new one.
                listener.eager_reconnect(false);
                match listener.listen(channel).await {
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for other servers' {what}")
                    }
                    Ok(()) => {
                        listening = true;
                        heard(Heard::Listening);
                        // `try_recv`, not `recv`: `recv` reconnects by itself, hiding the time
                        // the connection was down (and what was sent meanwhile).
                        loop {
                            match listener.try_recv().await {
                                Ok(Some(_)) => heard(Heard::Notified),
                                Ok(None) => {
                                    tracing::warn!(
                                        "lost the connection that hears other servers' {what}"
                                    );
                                    break;
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "lost the connection that hears other servers' {what}");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot listen for other servers' {what}"),
        }
        heard(Heard::Lost);
        // Soon after a connection that worked, then less and less often (at most every
        // second) while connecting fails.
        pause = if listening {
            FIRST_PAUSE
        } else {
            (pause * 2).min(LAST_PAUSE)
        };
        tokio::time::sleep(pause).await;
    }
}
