//! Limits kept by a flowkit server, shared by every program using it.
//!
//! Which tags are limited is read from the server (`GET /api/limits/names`) when a tagged task
//! first needs it and kept for [`TABLE_TTL`]: a task whose tags have no limit costs no request
//! (beyond that one read every few seconds), and a limit set with `flowkit limits set` reaches
//! running programs within that time. A slot is asked for with a long poll that the server
//! answers as soon as the slot is the caller's; while held, the holder's run is kept alive with
//! heartbeats, so a program that dies loses its slots once they stop.
//!
//! When the server cannot be reached, tasks go on without the global slot (with a warning):
//! flows keep running when the server is down, as their events do.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use flowkit_api::limits::{
    AcquireRequest, AcquireResponse, LimitNames, RateResponse, ReleaseRequest,
};
use flowkit_api::work::{Heartbeat, HeartbeatResponse};
use reqwest::Method;
use uuid::Uuid;

use crate::serve::client::{ApiClient, ApiError};

/// How long the table of limited tags is trusted before it is read again.
pub const TABLE_TTL: Duration = Duration::from_secs(5);
/// How long one long poll for a slot may take (the server answers within 10 s).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of the other requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of a request the server could not answer, before going on without it.
const TRIES: u32 = 3;

/// The server's limits, as this process knows them.
pub(crate) struct Remote {
    client: ApiClient,
    table: Mutex<Option<(std::time::Instant, Arc<LimitNames>)>>,
    refresh: tokio::sync::Mutex<()>,
}

static REMOTE: OnceLock<Option<Remote>> = OnceLock::new();

/// Uses the server at `url` (None: no server) for this process's limits, unless set already.
pub(crate) fn configure(url: Option<&str>, api_key: Option<String>) {
    let _ = REMOTE.set(make(url, api_key));
}

fn make(url: Option<&str>, api_key: Option<String>) -> Option<Remote> {
    let urls = crate::serve::client::urls(url?);
    if urls.is_empty() {
        return None;
    }
    Some(Remote {
        client: ApiClient::new(urls, api_key),
        table: Mutex::new(None),
        refresh: tokio::sync::Mutex::new(()),
    })
}

/// The server's limits, if this process uses a server (`FLOWKIT_API_URL`, or [`Config`]'s).
///
/// [`Config`]: crate::Config
pub(crate) fn get() -> Option<&'static Remote> {
    REMOTE
        .get_or_init(|| {
            let url = std::env::var("FLOWKIT_API_URL").ok();
            let key = std::env::var("FLOWKIT_API_KEY")
                .ok()
                .filter(|k| !k.is_empty());
            make(url.as_deref().filter(|u| !u.trim().is_empty()), key)
        })
        .as_ref()
}

/// A name as one segment of a URL path.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A slot held on the server.
pub(super) struct Held {
    tag: String,
    ticket: Uuid,
}

/// The slots a task run holds on the server, and the heartbeats that keep them.
pub(super) struct HeldSlots {
    pub(super) slots: Vec<Held>,
    beats: Option<tokio::task::AbortHandle>,
}

impl Remote {
    /// The tags and names the server limits (read again when older than [`TABLE_TTL`]).
    pub(super) async fn table(&self) -> Arc<LimitNames> {
        let fresh = |table: &Option<(std::time::Instant, Arc<LimitNames>)>| {
            table
                .as_ref()
                .filter(|(at, _)| at.elapsed() < TABLE_TTL)
                .map(|(_, t)| t.clone())
        };
        if let Some(table) = fresh(&self.table.lock().unwrap_or_else(|e| e.into_inner())) {
            return table;
        }
        let _one = self.refresh.lock().await;
        if let Some(table) = fresh(&self.table.lock().unwrap_or_else(|e| e.into_inner())) {
            return table;
        }
        let read: Result<LimitNames, _> = self
            .client
            .send(Method::GET, "/api/limits/names", &(), REQUEST_TIMEOUT)
            .await;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let names = match read {
            Ok(names) => Arc::new(names),
            Err(error) => {
                tracing::warn!(%error, "flowkit: could not read the server's limits; keeping what was known");
                table.as_ref().map(|(_, t)| t.clone()).unwrap_or_default()
            }
        };
        *table = Some((std::time::Instant::now(), names.clone()));
        names
    }

    /// Forgets a tag the server says it no longer limits.
    fn unlimited(&self, tag: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, names)) = table.as_ref()
            && names.concurrency.contains_key(tag)
        {
            let mut names = (**names).clone();
            names.concurrency.remove(tag);
            *table = Some((*at, Arc::new(names)));
        }
    }

    /// Takes a slot of each of `tags` (in order) for a task run; `waiting` is called once with
    /// the tag if it must wait.
    pub(super) async fn acquire(
        &'static self,
        tags: &[&str],
        task_run_id: Uuid,
        flow_run_id: Option<Uuid>,
        waiting: &mut (dyn FnMut(&str, u32) + Send),
    ) -> HeldSlots {
        let mut held = HeldSlots {
            slots: Vec::new(),
            beats: None,
        };
        let mut heartbeat_ms = 10_000;
        for tag in tags {
            let ticket = Uuid::now_v7();
            let request = AcquireRequest {
                ticket,
                task_run_id,
                flow_run_id,
            };
            let path = format!("/api/limits/{}/acquire", segment(tag));
            let mut failures = 0;
            let mut told = false;
            // Given back if this future is dropped while it waits (its place in line).
            let mut line = LeaveLine(Some((self, tag.to_string(), ticket)));
            loop {
                let answer: Result<AcquireResponse, _> = self
                    .client
                    .send(Method::POST, &path, &request, ACQUIRE_TIMEOUT)
                    .await;
                match answer {
                    Ok(answer) if answer.granted => {
                        heartbeat_ms = answer.heartbeat_ms;
                        line.0 = None;
                        held.slots.push(Held {
                            tag: tag.to_string(),
                            ticket,
                        });
                        break;
                    }
                    Ok(answer) if !answer.limited => {
                        line.0 = None;
                        self.unlimited(tag);
                        break;
                    }
                    Ok(answer) => {
                        failures = 0;
                        if !told {
                            told = true;
                            waiting(tag, answer.ahead);
                        }
                    }
                    Err(ApiError::Refused { .. }) | Err(ApiError::Unavailable { .. })
                        if failures + 1 >= TRIES =>
                    {
                        tracing::warn!(
                            tag,
                            "flowkit: could not take a slot from the server; the task goes on without it"
                        );
                        break;
                    }
                    Err(error) => {
                        failures += 1;
                        tracing::debug!(%error, tag, "flowkit: asking for a slot again");
                        tokio::time::sleep(Duration::from_millis(100 * u64::from(failures))).await;
                    }
                }
            }
        }
        if !held.slots.is_empty() {
            let live = flow_run_id.unwrap_or(task_run_id);
            let every = Duration::from_millis(heartbeat_ms.clamp(50, 10_000));
            let client = self.client.clone();
            let beats = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let beat: Result<HeartbeatResponse, _> = client
                        .send(
                            Method::POST,
                            "/api/heartbeats",
                            &Heartbeat {
                                runs: vec![live],
                                ..Heartbeat::default()
                            },
                            REQUEST_TIMEOUT,
                        )
                        .await;
                    if let Err(error) = beat {
                        tracing::debug!(%error, "flowkit: a heartbeat for a held slot failed");
                    }
                }
            });
            held.beats = Some(beats.abort_handle());
        }
        held
    }

    /// Gives back the slots (tried a few times; the server frees them anyway when the run's
    /// heartbeats stop).
    pub(super) async fn release(&self, mut held: HeldSlots) {
        if let Some(beats) = held.beats.take() {
            beats.abort();
        }
        for slot in std::mem::take(&mut held.slots).into_iter().rev() {
            self.release_one(&slot.tag, slot.ticket).await;
        }
    }

    async fn release_one(&self, tag: &str, ticket: Uuid) {
        let path = format!("/api/limits/{}/release", segment(tag));
        for attempt in 1..=TRIES {
            let done: Result<(), _> = self
                .client
                .send(
                    Method::POST,
                    &path,
                    &ReleaseRequest { ticket },
                    REQUEST_TIMEOUT,
                )
                .await;
            match done {
                Ok(()) => return,
                Err(error) if attempt == TRIES => {
                    tracing::warn!(%error, tag, "flowkit: could not give a slot back; the server frees it when the run's heartbeats stop");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await,
            }
        }
    }

    /// Takes a token of rate limit `name`: how long to wait (None: the server does not limit it).
    pub(super) async fn take_token(&self, name: &str) -> Option<Duration> {
        let path = format!("/api/limits/{}/rate", segment(name));
        for attempt in 1..=TRIES {
            let answer: Result<RateResponse, _> = self
                .client
                .send(Method::POST, &path, &(), REQUEST_TIMEOUT)
                .await;
            match answer {
                Ok(answer) if answer.limited => return Some(Duration::from_micros(answer.wait_us)),
                Ok(_) => return None,
                Err(error) if attempt == TRIES => {
                    tracing::warn!(%error, name, "flowkit: could not take a rate token from the server; going on without it");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await,
            }
        }
        None
    }
}

/// Gives back a place in line (or a slot granted in a lost answer) if the wait is dropped.
struct LeaveLine(Option<(&'static Remote, String, Uuid)>);

impl Drop for LeaveLine {
    fn drop(&mut self) {
        if let Some((remote, tag, ticket)) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move { remote.release_one(&tag, ticket).await });
        }
    }
}

impl Drop for HeldSlots {
    fn drop(&mut self) {
        if let Some(beats) = self.beats.take() {
            beats.abort();
        }
        if self.slots.is_empty() {
            return;
        }
        // Dropped without a release (a cancelled run): given back in the background.
        let slots = std::mem::take(&mut self.slots);
        if let (Some(remote), Ok(handle)) = (get(), tokio::runtime::Handle::try_current()) {
            handle.spawn(async move {
                for slot in slots.into_iter().rev() {
                    remote.release_one(&slot.tag, slot.ticket).await;
                }
            });
        }
    }
}

/// The limited tags among `tags`, sorted (every program takes them in the same order, so two
/// tasks never wait for each other's second tag).
pub(super) fn limited<'a>(table: &LimitNames, tags: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = tags
        .iter()
        .copied()
        .filter(|t| table.concurrency.contains_key(*t))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_as_path_segments() {
        assert_eq!(segment("orders-api"), "orders-api");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
