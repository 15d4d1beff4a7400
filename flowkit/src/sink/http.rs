//! The HTTP sink: streams events to a flowkit server, and never loses them.
//!
//! Events are batched (by count and by time) and posted by a thread of the sink's own, so a slow
//! or absent server never blocks a task. When a post fails, the batch goes to a spool on disk
//! and later batches queue behind it; the spool is retried with exponential backoff and
//! delivered oldest first, so each run's events arrive in order. A spool left by a program that
//! exited before the server came back is delivered by the next program that uses the same
//! server URL. The server ignores events it already has, so delivering twice is harmless.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::EventSink;
use crate::events::Event;

/// Events per request, at most.
const BATCH_SIZE: usize = 1_000;
/// How long an event waits for its batch to fill.
const BATCH_WAIT: Duration = Duration::from_millis(200);
/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

enum Command {
    Events(Vec<Event>),
    Flush(oneshot::Sender<usize>),
}

/// Sends events to a flowkit server (`FLOWKIT_API_URL`, `FLOWKIT_API_KEY`).
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
}

impl HttpSinkBuilder {
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
        let endpoint = format!("{}/api/events", self.url.trim_end_matches('/'));
        let spool_dir = self
            .spool_dir
            .unwrap_or_else(|| default_spool_dir(&self.url));
        let api_key = self.api_key;
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
                runtime.block_on(send_loop(rx, endpoint, api_key, Spool::new(spool_dir)));
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
    /// A builder for a sink sending to the server at `url` (like `http://127.0.0.1:4200`).
    pub fn builder(url: impl Into<String>) -> HttpSinkBuilder {
        HttpSinkBuilder {
            url: url.into(),
            api_key: None,
            spool_dir: None,
        }
    }
}

impl EventSink for HttpSink {
    fn handle(&mut self, events: &[Event]) {
        let _ = self.tx.send(Command::Events(events.to_vec()));
    }

    fn flush(&mut self) -> BoxFuture<'_, ()> {
        let (done, wait) = oneshot::channel();
        let sent = self.tx.send(Command::Flush(done)).is_ok();
        Box::pin(async move {
            if sent {
                if let Ok(spooled) = wait.await {
                    if spooled > 0 {
                        tracing::warn!(
                            spooled,
                            "flowkit: the server is unreachable; events wait in the spool and \
                             will be delivered when it is back (by this program or the next)"
                        );
                    }
                }
            }
        })
    }
}

/// How a post went.
enum Posted {
    Delivered,
    /// The server is unreachable or busy: try again later.
    Retry(String),
    /// The server refused the batch itself: trying again would not help.
    Refused(String),
}

async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    api_key: Option<&str>,
    body: Vec<u8>,
) -> Posted {
    let mut request = client
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(REQUEST_TIMEOUT)
        .body(body);
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Posted::Delivered
            } else if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
            {
                Posted::Retry(format!("server answered {status}"))
            } else {
                let text = response.text().await.unwrap_or_default();
                Posted::Refused(format!("server answered {status}: {text}"))
            }
        }
        Err(error) => Posted::Retry(error.to_string()),
    }
}

fn encode(events: &[Event]) -> Vec<u8> {
    serde_json::to_vec(events).unwrap_or_else(|_| b"[]".to_vec())
}

/// Batches of events waiting on disk, one file per batch, delivered oldest first.
struct Spool {
    dir: PathBuf,
    /// Files waiting, oldest first, with their event counts.
    files: VecDeque<(PathBuf, usize)>,
    sequence: u64,
}

impl Spool {
    /// Opens the spool, picking up files left by an earlier program.
    fn new(dir: PathBuf) -> Spool {
        let mut files: Vec<(PathBuf, usize)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .filter_map(|path| {
                let count = path
                    .file_stem()?
                    .to_str()?
                    .rsplit('-')
                    .next()?
                    .parse()
                    .ok()?;
                Some((path, count))
            })
            .collect();
        files.sort();
        Spool {
            dir,
            files: files.into(),
            sequence: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn events(&self) -> usize {
        self.files.iter().map(|(_, n)| n).sum()
    }

    /// Writes a batch as the newest file (atomically: written aside, then renamed).
    fn push(&mut self, events: &[Event]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        self.sequence += 1;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = format!(
            "{stamp:024}-{}-{:06}-{}",
            std::process::id(),
            self.sequence,
            events.len()
        );
        let path = self.dir.join(format!("{name}.json"));
        let partial = self.dir.join(format!(".{name}.partial"));
        std::fs::write(&partial, encode(events))?;
        std::fs::rename(&partial, &path)?;
        self.files.push_back((path, events.len()));
        Ok(())
    }

    /// Moves a refused batch aside, where a person can look at it.
    fn refuse(&mut self, path: &Path, why: &str) {
        let refused = self.dir.join("refused");
        let moved = std::fs::create_dir_all(&refused).and_then(|()| {
            let name = path.file_name().unwrap_or_default();
            std::fs::rename(path, refused.join(name))
        });
        tracing::warn!(file = %path.display(), %why, ?moved, "flowkit: the server refused a batch of events; kept aside");
    }
}

async fn send_loop(
    mut rx: mpsc::UnboundedReceiver<Command>,
    endpoint: String,
    api_key: Option<String>,
    mut spool: Spool,
) {
    let client = match reqwest::Client::builder().build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "flowkit: the HTTP sink could not build its client");
            return;
        }
    };
    let key = api_key.as_deref();
    let backoff = || {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    // A spool left by an earlier program is delivered right away.
    let mut retry_at = (!spool.is_empty()).then(Instant::now);
    let mut buffer: Vec<Event> = Vec::new();
    let mut oldest: Option<Instant> = None;
    loop {
        let batch_due = oldest.map(|t| t + BATCH_WAIT);
        let wake = match (batch_due, retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let command = match wake {
            Some(at) => tokio::time::timeout_at(at.into(), rx.recv()).await.ok(),
            None => Some(rx.recv().await),
        };
        let mut flush = None;
        match command {
            Some(None) => {
                // The bus is gone: keep what is left for the next program.
                if !buffer.is_empty() {
                    let _ = spool.push(&buffer);
                }
                return;
            }
            Some(Some(Command::Events(events))) => {
                if buffer.is_empty() {
                    oldest = Some(Instant::now());
                }
                buffer.extend(events);
            }
            Some(Some(Command::Flush(done))) => flush = Some(done),
            None => {}
        }
        let now = Instant::now();
        let ship = !buffer.is_empty()
            && (flush.is_some()
                || buffer.len() >= BATCH_SIZE
                || oldest.is_some_and(|t| now >= t + BATCH_WAIT));
        if ship {
            for chunk in std::mem::take(&mut buffer).chunks(BATCH_SIZE) {
                if spool.is_empty() {
                    match post(&client, &endpoint, key, encode(chunk)).await {
                        Posted::Delivered => continue,
                        Posted::Retry(why) => {
                            tracing::debug!(%why, "flowkit: server unreachable; spooling events");
                            retry_at = Some(
                                Instant::now() + delays.next().unwrap_or(Duration::from_secs(30)),
                            );
                        }
                        Posted::Refused(why) => {
                            tracing::warn!(%why, events = chunk.len(), "flowkit: the server refused a batch");
                        }
                    }
                }
                if let Err(error) = spool.push(chunk) {
                    tracing::error!(%error, dir = %spool.dir.display(), "flowkit: could not write the event spool");
                }
            }
            oldest = None;
        }
        // Deliver the spool, oldest first, when its retry is due (or on flush: one try now).
        let due = retry_at.is_some_and(|at| Instant::now() >= at) || flush.is_some();
        if due && !spool.is_empty() {
            while let Some((path, _)) = spool.files.front().cloned() {
                let body = match std::fs::read(&path) {
                    Ok(body) => body,
                    Err(_) => {
                        // Gone (another program delivered it) or unreadable: move on.
                        spool.files.pop_front();
                        continue;
                    }
                };
                match post(&client, &endpoint, key, body).await {
                    Posted::Delivered => {
                        let _ = std::fs::remove_file(&path);
                        spool.files.pop_front();
                        delays = backoff();
                    }
                    Posted::Refused(why) => {
                        spool.refuse(&path, &why);
                        spool.files.pop_front();
                    }
                    Posted::Retry(_) => {
                        retry_at =
                            Some(Instant::now() + delays.next().unwrap_or(Duration::from_secs(30)));
                        break;
                    }
                }
            }
            if spool.is_empty() {
                retry_at = None;
            }
        } else if spool.is_empty() {
            retry_at = None;
        }
        if let Some(done) = flush {
            let _ = done.send(spool.events());
        }
    }
}
