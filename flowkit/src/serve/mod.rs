//! Serving deployments: flows run on schedules, in this program or for a flowkit server.
//!
//! Without a server (no `FLOWKIT_API_URL`), [`serve`] runs each [`Deployment`]'s schedules
//! in-process: when a time is due, the deployment's flow runs (at most `max_active_runs` at
//! once, oldest first), with the [`ScheduledRun`] in its context. The last scheduled time of each
//! deployment is kept in a small state file, so a program restarted after downtime runs what it
//! missed (`catchup`), or just the latest missed time.
//!
//! With a server (`FLOWKIT_API_URL`, or [`Server::register_with`]), the program is a **worker**:
//! it registers its deployments, and the server owns their schedules, triggered runs and
//! backfills. The worker long-polls the server for runs (at most [`Server::max_runs`] at once),
//! runs each with the server's run id, parameters and attempt, delivers cancels from the API
//! through the runtime's cancellation, and on SIGTERM or Ctrl-C stops gracefully (see
//! [`Server::grace_period`]). Several programs serving the same deployments share the work: each
//! run is handed to one of them.
//!
//! ```no_run
//! use flowkit::flow;
//! use flowkit::serve::{Deployment, serve};
//!
//! #[flow]
//! async fn daily_etl(day: chrono::NaiveDate) -> anyhow::Result<usize> { Ok(0) }
//!
//! # #[tokio::main] async fn main() -> anyhow::Result<()> {
//! flowkit::init();
//! serve([Deployment::new("nightly", |run| daily_etl(run.logical_date()))
//!     .cron("0 2 * * *")
//!     .time_zone("Europe/Madrid")
//!     .catchup(true)])
//! .await?;
//! # Ok(()) }
//! ```

mod backfill;
pub(crate) mod client;
mod deployment;
mod state;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

pub use backfill::{Backfill, BackfillReport};
pub use deployment::{Deployment, ScheduledRun};
pub use flowkit_api::{DeploymentSpec, Schedule, ScheduleError, ScheduleSpec};

use flowkit_api::next_due;

pub(crate) use client::urls as server_urls;
pub(crate) use worker::is_held;

use self::state::SchedulerState;

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A deployment's schedule is invalid.
    #[error("deployment {deployment:?}: {error}")]
    Schedule {
        /// The deployment.
        deployment: String,
        /// What is wrong with its schedule.
        error: ScheduleError,
    },
    /// Two deployments have the same name.
    #[error("two deployments are named {0:?}: names must be unique")]
    DuplicateName(String),
    /// Nothing to serve.
    #[error("no deployment to serve")]
    Empty,
    /// A deployment's default parameters cannot be encoded as JSON.
    #[error("deployment {deployment:?}: its default parameters cannot be encoded as JSON: {error}")]
    Parameters {
        /// The deployment.
        deployment: String,
        /// Why.
        error: String,
    },
    /// A backfill's range is empty.
    #[error("the range {start} → {end} is empty: its end must come after its start")]
    EmptyRange {
        /// The range's start.
        start: DateTime<Utc>,
        /// Its end.
        end: DateTime<Utc>,
    },
}

/// Serves `deployments` until the program ends (or the returned future is dropped).
///
/// Equivalent to `Server::new(deployments).run()`.
pub async fn serve(deployments: impl IntoIterator<Item = Deployment>) -> Result<(), ServeError> {
    Server::new(deployments).run().await
}

/// Serves deployments, with settings: where the state file is, and which clock to follow.
///
/// ```
/// use flowkit::flow;
/// use flowkit::serve::{Deployment, Server};
///
/// #[flow]
/// async fn tick() {}
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// # let dir = std::env::temp_dir().join(format!("flowkit-doc-{}", std::process::id()));
/// let server = Server::new([Deployment::new("ticks", |_| tick()).every("1m")])
///     .state_file(dir.join("serve.json"))
///     // Under tokio's paused clock, scheduled times follow tokio's time from here.
///     .virtual_time_from("2026-11-27T00:00:30Z".parse().unwrap());
/// // Three minutes of virtual time: runs at 00:01, 00:02 and 00:03.
/// let _ = tokio::time::timeout(std::time::Duration::from_secs(180), server.run()).await;
/// # std::fs::remove_dir_all(dir).ok();
/// # }
/// ```
pub struct Server {
    deployments: Vec<Deployment>,
    state_file: Option<PathBuf>,
    clock: Clock,
    api: Option<(String, Option<String>)>,
    worker_name: Option<String>,
    queues: Vec<String>,
    max_runs: usize,
    grace_period: Duration,
}

impl Server {
    /// Serves these deployments.
    pub fn new(deployments: impl IntoIterator<Item = Deployment>) -> Server {
        Server {
            deployments: deployments.into_iter().collect(),
            state_file: None,
            clock: Clock::Wall,
            api: std::env::var("FLOWKIT_API_URL")
                .ok()
                .filter(|url| !url.is_empty())
                .map(|url| {
                    (
                        url,
                        std::env::var("FLOWKIT_API_KEY")
                            .ok()
                            .filter(|k| !k.is_empty()),
                    )
                }),
            worker_name: None,
            queues: Vec::new(),
            max_runs: 8,
            grace_period: Duration::from_secs(30),
        }
    }

    /// Serves for the flowkit server at `url` (default: `FLOWKIT_API_URL`, with
    /// `FLOWKIT_API_KEY`): the program registers its deployments (so the server's API and
    /// dashboard list them; retried until the server answers) and then becomes a worker that
    /// runs what the server hands it, instead of scheduling in-process. `url` may
    /// list several servers sharing one database, comma-separated: the worker moves to the next
    /// when one is down or failing.
    ///
    /// ```no_run
    /// use flowkit::serve::{Deployment, Server};
    /// # #[flowkit::flow] async fn etl() {}
    /// # #[tokio::main] async fn main() {
    /// Server::new([Deployment::new("etl", |_| etl()).every("1h")])
    ///     .register_with("http://10.0.0.5:4200,http://10.0.0.6:4200", None)
    ///     .run()
    ///     .await
    ///     .unwrap();
    /// # }
    /// ```
    pub fn register_with(mut self, url: impl Into<String>, api_key: Option<String>) -> Self {
        self.api = Some((url.into(), api_key));
        self
    }

    /// The worker's name on the server (default `<hostname>-<pid>`): unique among the workers
    /// of a server, shown on its workers page.
    ///
    /// ```
    /// use flowkit::serve::{Deployment, Server};
    /// # #[flowkit::flow] async fn etl() {}
    /// let server = Server::new([Deployment::new("etl", |_| etl())])
    ///     .worker_name("etl-box-1")
    ///     .queues(["default", "urgent"])
    ///     .max_runs(4)
    ///     .grace_period(std::time::Duration::from_secs(60));
    /// ```
    pub fn worker_name(mut self, name: impl Into<String>) -> Self {
        self.worker_name = Some(name.into());
        self
    }

    /// The work queues the worker takes runs from (default: none named, meaning every queue).
    /// A deployment names its queue with [`Deployment::queue`].
    pub fn queues<S: Into<String>>(mut self, queues: impl IntoIterator<Item = S>) -> Self {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// At most this many runs at once in this worker, over all its deployments (default 8; at
    /// least 1).
    pub fn max_runs(mut self, runs: usize) -> Self {
        self.max_runs = runs.max(1);
        self
    }

    /// How long a stopping worker (SIGTERM, Ctrl-C) lets its runs finish before it cancels them
    /// and hands them back to the server (default 30 s). A second signal cancels them at once.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// Keeps the scheduler's state in `path` (default: `FLOWKIT_STATE_DIR`, else
    /// `~/.local/state/flowkit`, in `serve-<program>.json`).
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Reads "now" as `start` plus the tokio time elapsed since this call, instead of the
    /// system's clock: with tokio's paused clock, tests see days of schedules in milliseconds.
    pub fn virtual_time_from(mut self, start: DateTime<Utc>) -> Self {
        self.clock = Clock::Virtual {
            start,
            at: tokio::time::Instant::now(),
        };
        self
    }

    /// Serves until the program ends (or this future is dropped, which cancels the runs).
    ///
    /// A worker (with a server URL) returns once it stopped gracefully after SIGTERM or Ctrl-C:
    /// while it runs, Ctrl-C stops it instead of cancelling every flow run at once (what
    /// [`init`](crate::init) sets up otherwise). Once a worker has listened for SIGTERM, the
    /// signal no longer ends the process by itself (tokio keeps its handler): programs return
    /// from `main` after `run` returns.
    pub async fn run(self) -> Result<(), ServeError> {
        if self.deployments.is_empty() {
            return Err(ServeError::Empty);
        }
        let mut served = Vec::with_capacity(self.deployments.len());
        for deployment in self.deployments {
            if served
                .iter()
                .any(|(d, _): &(Deployment, _)| d.name == deployment.name)
            {
                return Err(ServeError::DuplicateName(deployment.name));
            }
            let schedules =
                deployment
                    .checked_schedules()
                    .map_err(|error| ServeError::Schedule {
                        deployment: deployment.name.clone(),
                        error,
                    })?;
            if let Err(error) = &deployment.parameters {
                return Err(ServeError::Parameters {
                    deployment: deployment.name.clone(),
                    error: error.clone(),
                });
            }
            served.push((deployment, schedules));
        }
        let urls = self.api.as_ref().map(|(url, _)| client::urls(url));
        if let (Some(urls), Some((_, key))) = (urls.filter(|u| !u.is_empty()), self.api) {
            let api = client::ApiClient::new(urls, key);
            let specs = served.iter().map(|(d, _)| d.spec()).collect();
            let settings = worker::Settings {
                name: self
                    .worker_name
                    .unwrap_or_else(|| format!("{}-{}", worker::hostname(), std::process::id())),
                host: worker::hostname(),
                queues: self.queues,
                max_runs: self.max_runs,
                grace: self.grace_period,
            };
            let starters: HashMap<String, deployment::Starter> =
                served.into_iter().map(|(d, _)| (d.name, d.start)).collect();
            let _signals_taken = crate::cancel::SignalsTaken::take();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let listener = worker::listen_for_signals(tx);
            // Registered before the first poll: a server answers a poll only for deployments
            // it knows. A signal meanwhile stops the worker before it took anything.
            tokio::select! {
                () = register(api.clone(), specs) => {
                    let work = worker::HttpWork::new(api, &settings.name);
                    worker::work(Arc::new(work), starters, settings, rx).await;
                }
                _ = rx.recv() => {
                    tracing::info!("flowkit: stopped before the deployments were registered");
                }
            }
            listener.abort();
            return Ok(());
        }
        let path = self.state_file.unwrap_or_else(state::default_path);
        let state = Arc::new(StateFile {
            state: Mutex::new(SchedulerState::load(&path)),
            path,
        });
        let mut tasks = JoinSet::new();
        for (deployment, schedules) in served {
            if deployment.paused {
                tracing::info!(deployment = %deployment.name, "flowkit: deployment paused; nothing scheduled");
                continue;
            }
            tasks.spawn(serve_one(
                deployment,
                schedules,
                self.clock.clone(),
                state.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
        std::future::pending().await
    }
}

/// Registers `specs` with the server, retrying (every 5 s at most) until it answers.
async fn register(api: client::ApiClient, specs: Vec<DeploymentSpec>) {
    for spec in specs {
        let path = format!("/api/deployments/{}", spec.name);
        let mut delay = Duration::from_millis(250);
        let mut said = false;
        loop {
            let sent = api
                .send::<_, serde_json::Value>(
                    reqwest::Method::PUT,
                    &path,
                    &spec,
                    Duration::from_secs(10),
                )
                .await;
            match sent {
                Ok(_) => break,
                Err(error @ client::ApiError::Refused { .. }) => {
                    tracing::warn!(deployment = %spec.name, %error,
                        "flowkit: the server refused the deployment");
                    break;
                }
                Err(error) if !said => {
                    said = true;
                    tracing::warn!(deployment = %spec.name, %error,
                        "flowkit: cannot register the deployment yet; retrying until the server answers");
                }
                Err(error) => {
                    tracing::debug!(deployment = %spec.name, %error,
                        "flowkit: could not register the deployment yet");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// The state and where it is saved.
struct StateFile {
    path: PathBuf,
    state: Mutex<SchedulerState>,
}

impl StateFile {
    fn last(&self, deployment: &str) -> Option<DateTime<Utc>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.last_scheduled.get(deployment).copied()
    }

    /// Records that the run due at `at` started.
    fn started(&self, deployment: &str, at: DateTime<Utc>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let last = state
            .last_scheduled
            .entry(deployment.to_string())
            .or_insert(at);
        if *last < at {
            *last = at;
        }
        if let Err(error) = state.save(&self.path) {
            tracing::warn!(%error, file = %self.path.display(),
                "flowkit: could not save the scheduler's state; a restart may repeat or miss runs");
        }
    }
}

/// Where "now" comes from.
#[derive(Clone)]
enum Clock {
    /// The system's clock.
    Wall,
    /// `start` plus tokio's time since `at`.
    Virtual {
        start: DateTime<Utc>,
        at: tokio::time::Instant,
    },
}

impl Clock {
    fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::Wall => Utc::now(),
            Clock::Virtual { start, at } => {
                *start + chrono::TimeDelta::from_std(at.elapsed()).unwrap_or_default()
            }
        }
    }

    /// Sleeps until `when`. On the system's clock, at most a minute at a time, so a clock that
    /// jumps (a laptop waking up, a time sync) is noticed.
    async fn sleep_until(&self, when: DateTime<Utc>) {
        loop {
            let left = (when - self.now()).to_std().unwrap_or_default();
            if left.is_zero() {
                return;
            }
            let step = match self {
                Clock::Wall => left.min(Duration::from_secs(60)),
                Clock::Virtual { .. } => left,
            };
            tokio::time::sleep(step).await;
        }
    }
}

/// Schedules one deployment: finds due times, and starts their runs in order.
async fn serve_one(
    deployment: Deployment,
    schedules: Vec<Schedule>,
    clock: Clock,
    state: Arc<StateFile>,
) {
    let name: Arc<str> = deployment.name.as_str().into();
    let (due_tx, mut due_rx) = mpsc::unbounded_channel::<ScheduledRun>();
    // Starts due runs in order, at most `max_active_runs` at once.
    let starter = {
        let (start, state, name) = (deployment.start.clone(), state.clone(), name.clone());
        let slots = Arc::new(Semaphore::new(deployment.max_active_runs));
        async move {
            let mut runs = JoinSet::new();
            while let Some(run) = due_rx.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                state.started(&name, run.scheduled_at());
                tracing::debug!(deployment = %name, at = %run.scheduled_at(), "flowkit: starting a scheduled run");
                let start = start.clone();
                runs.spawn(async move {
                    let ended = start(run).await;
                    drop(slot);
                    ended
                });
                while runs.try_join_next().is_some() {}
            }
            while runs.join_next().await.is_some() {}
        }
    };
    let due = |at: DateTime<Utc>, previous: Option<DateTime<Utc>>| {
        let run = ScheduledRun::new(&name, at);
        let run = match previous {
            Some(start) => run.with_interval(start, at),
            None => run,
        };
        let _ = due_tx.send(run);
    };
    let scheduler = async {
        let now = clock.now();
        let mut cursor = now;
        // Missed while no program served the deployment.
        if let Some(last) = state.last(&name) {
            let missed = flowkit_api::missed(&schedules, last, now, deployment.catchup);
            if !missed.is_empty() {
                tracing::info!(deployment = %name, runs = missed.len(),
                    "flowkit: running scheduled times missed while not served");
            }
            for (at, previous) in missed {
                due(at, previous);
            }
        }
        loop {
            let Some((at, previous)) = next_due(&schedules, cursor) else {
                // No schedule has a time left.
                return;
            };
            clock.sleep_until(at).await;
            // Woken late (the clock jumped): times passed meanwhile follow `catchup`.
            let now = clock.now();
            let mut passed = vec![(at, previous)];
            let later = flowkit_api::missed(&schedules, at, now, deployment.catchup);
            if !later.is_empty() {
                if !deployment.catchup {
                    passed.clear();
                }
                passed.extend(later);
            }
            for (at, previous) in passed {
                cursor = at;
                due(at, previous);
            }
        }
    };
    tokio::join!(scheduler, starter);
}
