//! The HTTP sink: streams events to a flowkit server, and never loses them.
//!
//! Events are batched (by count, by bytes and by time) and posted by a thread of the sink's
//! own, so a slow or absent server never blocks a task. Every batch is written to a spool on
//! disk before it is posted and removed once the server acknowledges it: a program that ends
//! while the server hangs or is down leaves its events there, and the next program that uses
//! the same server URL delivers them. Batches are delivered oldest first, so each run's events
//! arrive in order; the server ignores events it already has, so delivering twice is harmless.
//!
//! What the server cannot take is isolated, never allowed to block the rest: a batch answered
//! `413` is split in halves; a batch that keeps failing with a server error while the server
//! says it is healthy is split until the one bad event is found, which is moved to
//! `refused/` with the reason. A single event too large to send has its long strings truncated
//! with a marker.
//!
//! **Heartbeats.** While flow runs that the sink has seen start have not ended (more exactly:
//! while the server has not acknowledged the batch holding their terminal state), the sink
//! sends `POST /api/heartbeats` with their ids every `heartbeat_ms` (10 s until the server says
//! otherwise), so the server can tell a program that was killed (its runs are recorded
//! `Crashed` once the heartbeats stop) from one that is still working. Heartbeats are requests
//! of their own, beside the event posts: they never hold up delivery. Their answer's `cancel`
//! ids cancel those runs here (a cancel from the API or the dashboard). The server holds each
//! heartbeat's answer up to a period until a cancel is asked for one of its runs (a long
//! poll), so a cancel arrives within milliseconds, and the next heartbeat follows the answer.
//! Runs a worker of this program holds are left out: the worker's polls are their heartbeats.
//!
//! **Several servers.** The URL may list several servers sharing one database, separated by
//! commas: a post that cannot connect or gets a server error moves the sink to the next one.

mod beats;
mod body;
mod encode;
mod spool;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use flowkit_api::work::{Heartbeat, HeartbeatResponse};

use self::beats::Beats;
use self::spool::Spool;
use super::EventSink;
use crate::events::Event;

/// How long an event waits for its batch to fill.
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// Timeout of one request (connecting included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of connecting to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Server errors in a row on one batch before the sink asks whether the server is healthy and,
/// if it is, splits the batch to isolate the event it fails on.
const FAILURES_BEFORE_SPLIT: u32 = 3;
/// How often heartbeats go, until the server says otherwise.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// The least time between two heartbeats. A flow run that starts is heartbeated at once (the
/// server learns it is alive, so a program killed right after is found out), but runs starting
/// one after another share heartbeats, at most four a second.
const MIN_BEAT_GAP: Duration = Duration::from_millis(250);

enum Command {
    Events(Vec<Event>),
    Flush(oneshot::Sender<usize>),
    /// Write what came before to the spool, and answer.
    Spool(oneshot::Sender<()>),
}

/// Sends events to a flowkit server (`FLOWKIT_API_URL`, `FLOWKIT_API_KEY`; over HTTPS a private
/// CA is trusted with `FLOWKIT_CA_CERT` or [`HttpSinkBuilder::ca_cert`]), and heartbeats for
/// the flow runs it has seen start and not end (see the module's notes on the server side).
///
/// ```no_run
/// use flowkit::{Config, HttpSink};
///
/// # #[tokio::main] async fn main() {
/// let sink = HttpSink::builder("http://127.0.0.1:4200").api_key("secret").build();
/// Config::from_env().sink(sink).init().expect("first init");
/// # }
/// ```
pub struct HttpSink {
    tx: mpsc::UnboundedSender<Command>,
}

/// Builds an [`HttpSink`].
pub struct HttpSinkBuilder {
    url: String,
    api_key: Option<String>,
    spool_dir: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
}

impl HttpSinkBuilder {
    /// Trusts the CA certificates in this PEM file (default: `FLOWKIT_CA_CERT`), for a server
    /// on a self-signed or private certificate.
    pub fn ca_cert(mut self, pem_file: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(pem_file.into());
        self
    }

    /// Sends `Authorization: Bearer <key>`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Where undelivered events wait on disk (default: `FLOWKIT_SPOOL_DIR`, else
    /// `$XDG_STATE_HOME/flowkit/spool/<server>` or `~/.local/state/flowkit/spool/<server>`).
    pub fn spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
    }

    /// Starts the sink's sending thread.
    pub fn build(self) -> HttpSink {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut bases = crate::serve::server_urls(&self.url);
        if bases.is_empty() {
            bases.push(self.url.trim_end_matches('/').to_string());
        }
        let server = Server {
            bases,
            current: AtomicUsize::new(0),
            api_key: self.api_key,
            ca: crate::sink::ca::ca_path(self.ca_cert),
        };
        let spool_dir = self
            .spool_dir
            .unwrap_or_else(|| default_spool_dir(&self.url));
        let spawned = std::thread::Builder::new()
            .name("flowkit-http-sink".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "flowkit: the HTTP sink could not start");
                        return;
                    }
                };
                runtime.block_on(send_loop(rx, server, Spool::open(spool_dir)));
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "flowkit: the HTTP sink could not start its thread");
        }
        HttpSink { tx }
    }
}

fn default_spool_dir(url: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOWKIT_SPOOL_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    let server: String = url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    base.join("flowkit").join("spool").join(server)
}

impl HttpSink {
    /// A builder for a sink sending to the server at `url` (like `http://127.0.0.1:4200`; or
    /// several servers sharing one database, comma-separated).
    pub fn builder(url: impl Into<String>) -> HttpSinkBuilder {
        HttpSinkBuilder {
            url: url.into(),
            api_key: None,
            spool_dir: None,
            ca_cert: None,
        }
    }
}

impl EventSink for HttpSink {
    fn handle(&mut self, events: &[Event]) {
        let _ = self.tx.send(Command::Events(events.to_vec()));
    }

    fn handle_owned(&mut self, events: &mut Vec<Event>) {
        let _ = self.tx.send(Command::Events(std::mem::take(events)));
    }

    /// Answers once what came before is in the spool (on disk), where the sending thread goes
    /// on delivering it (and the next program, if this one ends first).
    fn hand_off(&mut self) -> BoxFuture<'_, ()> {
        let (done, wait) = oneshot::channel();
        let sent = self.tx.send(Command::Spool(done)).is_ok();
        Box::pin(async move {
            if sent {
                let _ = wait.await;
            }
        })
    }

    fn flush(&mut self) -> BoxFuture<'_, ()> {
        let (done, wait) = oneshot::channel();
        let sent = self.tx.send(Command::Flush(done)).is_ok();
        Box::pin(async move {
            if sent
                && let Ok(spooled) = wait.await
                && spooled > 0
            {
                tracing::warn!(
                    spooled,
                    "flowkit: the server has not taken every event yet (unreachable or \
                             failing); they wait in the spool and will be delivered when it does \
                             (by this program or the next)"
                );
            }
        })
    }
}

/// Where and how to post.
struct Server {
    /// The servers' base URLs.
    bases: Vec<String>,
    /// The one in use, as an index into `bases`.
    current: AtomicUsize,
    api_key: Option<String>,
    /// CA certificates to trust (a PEM file).
    ca: Option<PathBuf>,
}

/// How a post went.
#[derive(Debug)]
enum Posted {
    Delivered,
    /// Unreachable, timed out, busy or not authorized: the same batch later.
    Unreachable(String),
    /// The server failed on the batch (5xx); `healthy` is its own word on whether it can store
    /// events right now, asked only when the batch is a suspect.
    Failed {
        why: String,
        healthy: bool,
    },
    /// The batch is too large: split it.
    TooLarge(String),
    /// The server refused the batch itself: trying again would not help.
    Refused(String),
}

impl Server {
    /// The server in use: its index and base URL.
    fn base(&self) -> (usize, &str) {
        let index = self.current.load(Ordering::Relaxed) % self.bases.len().max(1);
        (index, self.bases.get(index).map_or("", String::as_str))
    }

    /// The server at `index` failed: move to the next (unless another request moved on).
    fn failed(&self, index: usize) {
        if self.bases.len() > 1 {
            let next = (index + 1) % self.bases.len();
            let _ =
                self.current
                    .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Sends a heartbeat for `runs`, which the server may hold up to `wait` until one of them
    /// is to be cancelled; the answer, if there was one.
    async fn heartbeat(
        &self,
        client: &reqwest::Client,
        runs: Vec<uuid::Uuid>,
        wait: Duration,
    ) -> Option<HeartbeatResponse> {
        let (index, base) = self.base();
        let url = format!("{base}/api/heartbeats");
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let sent = self
            .request(client, reqwest::Method::POST, &url)
            .timeout(REQUEST_TIMEOUT + wait)
            .json(&Heartbeat { runs, wait_ms })
            .send()
            .await;
        let response = match sent {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                if response.status().is_server_error() {
                    self.failed(index);
                }
                tracing::debug!(status = %response.status(), "flowkit: heartbeat not taken");
                return None;
            }
            Err(error) => {
                self.failed(index);
                tracing::debug!(%error, "flowkit: heartbeat not sent");
                return None;
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, response.json::<HeartbeatResponse>()).await {
            Ok(Ok(answer)) => Some(answer),
            _ => None,
        }
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        let request = client.request(method, url).timeout(REQUEST_TIMEOUT);
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Posts one body; when it fails with a server error and `ask_health`, asks `/healthz`.
    async fn post(&self, client: &reqwest::Client, body: Vec<u8>, ask_health: bool) -> Posted {
        let (index, base) = self.base();
        let events = format!("{base}/api/events");
        let request = self
            .request(client, reqwest::Method::POST, &events)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                self.failed(index);
                return Posted::Unreachable(error.to_string());
            }
        };
        let status = response.status();
        if status.is_success() {
            return Posted::Delivered;
        }
        let text = tokio::time::timeout(REQUEST_TIMEOUT, response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let why = format!("server answered {status}: {}", text.trim());
        use reqwest::StatusCode;
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Posted::TooLarge(why),
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::REQUEST_TIMEOUT
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN => Posted::Unreachable(why),
            s if s.is_server_error() => {
                let healthy = ask_health && self.healthy(client, base).await;
                if !healthy {
                    self.failed(index);
                }
                Posted::Failed { why, healthy }
            }
            _ => Posted::Refused(why),
        }
    }

    /// Whether the server says it can store events right now.
    async fn healthy(&self, client: &reqwest::Client, base: &str) -> bool {
        self.request(client, reqwest::Method::GET, &format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// Retry delays while the server is unreachable: 0.5 s doubling to 30 s, with jitter.
fn backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn send_loop(mut rx: mpsc::UnboundedReceiver<Command>, server: Server, mut spool: Spool) {
    let builder = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
    let client = match crate::sink::ca::trust(builder, server.ca.as_deref(), &server.bases).build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "flowkit: the HTTP sink could not build its client");
            return;
        }
    };
    let mut delays = backoff();
    // Posts that failed in a row (the server unreachable or failing).
    let mut failed_in_row: usize = 0;
    // Events are encoded as they come, into the body being filled.
    let mut batch = body::Batch::new();
    // When the first event of the batch came.
    let mut oldest: Option<Instant> = None;
    // No post before this (the server was unreachable).
    let mut retry_at: Option<Instant> = None;
    let mut in_flight: Option<BoxFuture<'_, Posted>> = None;
    let mut flushes: Vec<oneshot::Sender<usize>> = Vec::new();
    let mut beats = Beats::new(spool.events());
    let mut beat_every = DEFAULT_HEARTBEAT;
    let mut next_beat: Option<Instant> = None;
    let mut last_beat: Option<Instant> = None;
    let mut beat_in_flight: Option<BoxFuture<'_, Option<HeartbeatResponse>>> = None;
    // Batches go to the spool (disk) before they are posted.
    let ship = |batch: &mut body::Batch, spool: &mut Spool, beats: &mut Beats| {
        batch.finish(&mut |bytes, events| {
            spool.push(bytes, events);
            beats.shipped(events);
        });
    };
    loop {
        beats.acknowledged(spool.gone());
        if !beats.any() {
            next_beat = None;
        } else if next_beat.is_none() {
            next_beat = Some(Instant::now() + beat_every);
        }
        // Post the oldest batch when nothing is in flight and no retry is pending.
        if in_flight.is_none() && retry_at.is_none_or(|at| Instant::now() >= at) {
            retry_at = None;
            if let Some(bytes) = spool.read_front() {
                let suspect = spool
                    .front_mut()
                    .is_some_and(|e| e.suspect || e.failures + 1 >= FAILURES_BEFORE_SPLIT);
                in_flight = Some(Box::pin(server.post(&client, bytes, suspect)));
            }
        }
        // A flush is answered once what came before it is delivered, or when delivery has to
        // wait for a retry (then with the number of events left in the spool).
        if !flushes.is_empty()
            && batch.events() == 0
            && (spool.is_empty() || (in_flight.is_none() && retry_at.is_some()))
        {
            let waiting = spool.events();
            for done in flushes.drain(..) {
                let _ = done.send(waiting);
            }
        }
        let batch_due = oldest.map(|t| t + BATCH_WAIT);
        tokio::select! {
            command = rx.recv() => match command {
                None => {
                    // The bus is gone: keep what is left for the next program.
                    ship(&mut batch, &mut spool, &mut beats);
                    return;
                }
                Some(Command::Events(events)) => {
                    let mut started = false;
                    for event in &events {
                        batch.push(event, &mut |bytes, events| {
                            spool.push(bytes, events);
                            beats.shipped(events);
                            oldest = None;
                        });
                        // After it is in the batch: a run's end counts as shipped with the
                        // body that holds it.
                        started |= beats.seen(std::slice::from_ref(event));
                    }
                    drop(events);
                    if batch.events() >= body::MAX_EVENTS {
                        ship(&mut batch, &mut spool, &mut beats);
                        oldest = None;
                    } else if batch.events() > 0 && oldest.is_none() {
                        oldest = Some(Instant::now());
                    }
                    if started {
                        // A run started: heartbeat soon, not a whole period later (a held
                        // heartbeat, without it, is dropped for one that has it).
                        beat_in_flight = None;
                        let now = Instant::now();
                        let soon = last_beat.map_or(now, |last| (last + MIN_BEAT_GAP).max(now));
                        next_beat = Some(next_beat.map_or(soon, |next| next.min(soon)));
                    }
                }
                Some(Command::Spool(done)) => {
                    ship(&mut batch, &mut spool, &mut beats);
                    oldest = None;
                    let _ = done.send(());
                }
                Some(Command::Flush(done)) => {
                    ship(&mut batch, &mut spool, &mut beats);
                    oldest = None;
                    flushes.push(done);
                    // One try now, even if a retry was pending.
                    retry_at = None;
                }
            },
            posted = async { in_flight.as_mut().expect("guarded by the condition").await },
                if in_flight.is_some() =>
            {
                in_flight = None;
                match posted {
                    Posted::Delivered => {
                        spool.delivered();
                        delays = backoff();
                        failed_in_row = 0;
                    }
                    Posted::Unreachable(why) => {
                        tracing::debug!(%why, "flowkit: server unreachable; events wait in the spool");
                        failed_in_row += 1;
                        // With several servers, each is tried once at once before waiting.
                        retry_at = Some(match failed_in_row % server.bases.len().max(1) {
                            0 => Instant::now() + delays.next().unwrap_or(Duration::from_secs(30)),
                            _ => Instant::now(),
                        });
                    }
                    Posted::Failed { why, healthy } => {
                        let Some(entry) = spool.front_mut() else { continue };
                        entry.failures += 1;
                        if healthy {
                            // The server is fine but fails on this batch: isolate the event.
                            isolate(&mut spool, &why);
                        } else {
                            tracing::debug!(%why, "flowkit: the server failed on a batch; retrying");
                            failed_in_row += 1;
                            retry_at = Some(match failed_in_row % server.bases.len().max(1) {
                                0 => Instant::now() + delays.next().unwrap_or(Duration::from_secs(30)),
                                _ => Instant::now(),
                            });
                        }
                    }
                    Posted::TooLarge(why) => isolate(&mut spool, &why),
                    Posted::Refused(why) => spool.set_aside(&why),
                }
            }
            () = sleep_until(batch_due), if batch_due.is_some() => {
                ship(&mut batch, &mut spool, &mut beats);
                oldest = None;
            }
            () = sleep_until(next_beat), if next_beat.is_some() && beat_in_flight.is_none() => {
                next_beat = Some(Instant::now() + beat_every);
                let runs = beats.runs();
                tracing::debug!(runs = runs.len(), "flowkit: heartbeat");
                if !runs.is_empty() {
                    last_beat = Some(Instant::now());
                    // Held by the server until a cancel for one of them, or a period: the
                    // cancel reaches this program at once, not at its next heartbeat.
                    beat_in_flight = Some(Box::pin(server.heartbeat(&client, runs, beat_every)));
                }
            }
            answer = async { beat_in_flight.as_mut().expect("guarded by the condition").await },
                if beat_in_flight.is_some() =>
            {
                beat_in_flight = None;
                if let Some(answer) = answer {
                    tracing::debug!(cancel = ?answer.cancel, every_ms = answer.heartbeat_ms, "flowkit: heartbeat answered");
                    if answer.heartbeat_ms > 0 {
                        beat_every = Duration::from_millis(answer.heartbeat_ms)
                            .clamp(Duration::from_millis(100), Duration::from_secs(300));
                        // A shorter period applies from the heartbeat just sent.
                        let due = last_beat.unwrap_or_else(Instant::now) + beat_every;
                        next_beat = Some(next_beat.map_or(due, |next| next.min(due)));
                    }
                    for run in answer.cancel {
                        if crate::cancel::cancel_run(run) {
                            tracing::info!(%run, "flowkit: flow run cancelled from the server");
                        }
                    }
                }
            }
            () = sleep_until(retry_at), if retry_at.is_some() && in_flight.is_none() => {}
        }
    }
}

/// Splits the oldest batch in halves, or sets it aside if it is a single event.
fn isolate(spool: &mut Spool, why: &str) {
    let halves = spool.read_front().and_then(|bytes| body::halves(&bytes));
    match halves {
        Some(halves) => {
            tracing::debug!(%why, "flowkit: splitting a batch the server cannot take");
            spool.split_front(halves);
        }
        None => spool.set_aside(why),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
