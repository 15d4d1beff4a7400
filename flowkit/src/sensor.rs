//! Sensors: a task run that pokes a condition at an interval until it holds or times out.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use crate::context::{CURRENT, Scope, with_current};
use crate::error::{RunError, humanize};
use crate::events::RunType;
use crate::run::{EndGuard, Record, TaskRun};
use crate::{EventBus, State, TaskHandle, TaskOptions};

/// What a sensor's poke returns: ready (with a value) or not yet, or an error that fails the
/// sensor. Implemented for `bool`, `Option<T>`, `Result<bool, E>` and `Result<Option<T>, E>`.
pub trait Poke {
    /// The value of a poke that found the condition met.
    type Ready;
    /// The error of a poke that failed.
    type Err;
    /// `Ok(Some(value))` when ready, `Ok(None)` when not yet.
    fn into_poke(self) -> Result<Option<Self::Ready>, Self::Err>;
}

impl Poke for bool {
    type Ready = ();
    type Err = std::convert::Infallible;
    fn into_poke(self) -> Result<Option<()>, Self::Err> {
        Ok(self.then_some(()))
    }
}

impl<T> Poke for Option<T> {
    type Ready = T;
    type Err = std::convert::Infallible;
    fn into_poke(self) -> Result<Option<T>, Self::Err> {
        Ok(self)
    }
}

impl<E> Poke for Result<bool, E> {
    type Ready = ();
    type Err = E;
    fn into_poke(self) -> Result<Option<()>, E> {
        self.map(|ready| ready.then_some(()))
    }
}

impl<T, E> Poke for Result<Option<T>, E> {
    type Ready = T;
    type Err = E;
    fn into_poke(self) -> Result<Option<T>, E> {
        self
    }
}

/// How often a sensor pokes unless told (Airflow's `poke_interval`).
const DEFAULT_EVERY: Duration = Duration::from_secs(60);
/// How long a sensor waits unless told: a day (Airflow's seven days lets a forgotten sensor wait
/// a week; a daily pipeline's next run comes within one).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// A sensor, not started yet: `.await` it, or [`submit`](Self::submit) it.
#[must_use = "a sensor does nothing until it is awaited or submitted"]
pub struct Sensor<F> {
    name: Cow<'static, str>,
    poke: F,
    every: Duration,
    timeout: Duration,
    bus: Option<EventBus>,
}

/// Waits for a condition: calls `poke` now, then every minute (see [`every`](Sensor::every))
/// until it says ready, for at most a day (see [`timeout`](Sensor::timeout)).
///
/// A sensor is recorded as a task run named `name`, tagged `sensor`: `Running` while a poke
/// runs, `Pending` between pokes (the message says which poke found nothing and when the next
/// one is), then `Completed` with the poke's value, `TimedOut` when the time is up (exactly
/// `timeout` after its start: a poke still running then is stopped), `Failed` when a poke
/// returns an error, `Crashed` if one panics.
///
/// Only pokes run as the sensor's work: it takes its flow run's concurrency slot
/// (`#[flow(concurrency_limit = n)]`) for each poke and gives it back while it sleeps, so a
/// waiting sensor holds no slot.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// static ROWS: AtomicU32 = AtomicU32::new(0);
///
/// #[flowkit::flow]
/// async fn load() -> Result<u32, flowkit::RunError<std::convert::Infallible>> {
///     flowkit::sensor("orders-landed", || async {
///         // The third poke finds the file.
///         let seen = ROWS.fetch_add(1, Ordering::SeqCst) + 1;
///         (seen == 3).then_some(seen * 100)
///     })
///     .every(Duration::from_secs(30))
///     .timeout(Duration::from_secs(600))
///     .await
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// let started = tokio::time::Instant::now();
/// assert_eq!(load().await.unwrap(), 300);
/// assert_eq!(started.elapsed(), Duration::from_secs(60)); // pokes at 0 s, 30 s and 60 s
/// # }
/// ```
pub fn sensor<F, Fut>(name: impl Into<Cow<'static, str>>, poke: F) -> Sensor<F>
where
    F: FnMut() -> Fut + Send,
    Fut: Future + Send,
    Fut::Output: Poke,
{
    Sensor {
        name: name.into(),
        poke,
        every: DEFAULT_EVERY,
        timeout: DEFAULT_TIMEOUT,
        bus: None,
    }
}

impl<F, Fut> Sensor<F>
where
    F: FnMut() -> Fut + Send,
    Fut: Future + Send,
    Fut::Output: Poke,
    <Fut::Output as Poke>::Err: std::fmt::Display,
{
    /// The time between the end of a poke and the start of the next (default one minute).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    /// How long after its start the sensor gives up, `TimedOut` (default one day).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends its events to `bus` when it runs outside any flow.
    pub fn on(mut self, bus: &EventBus) -> Self {
        self.bus = Some(bus.clone());
        self
    }

    /// Starts the sensor now, concurrently: the handle awaits its value, and is an upstream for
    /// [`wait_for`](crate::TaskCall::wait_for).
    pub fn submit(self) -> TaskHandle<<Fut::Output as Poke>::Ready, <Fut::Output as Poke>::Err>
    where
        F: 'static,
        Fut: 'static,
        <Fut::Output as Poke>::Ready: Send + 'static,
        <Fut::Output as Poke>::Err: Send + 'static,
    {
        let (run, start) = self.start();
        TaskHandle::spawned(run, tokio::spawn(start))
    }

    /// Creates the task run and the future that pokes.
    fn start(
        self,
    ) -> (
        Arc<TaskRun>,
        impl Future<Output = SensorResult<Fut::Output>> + Send,
    ) {
        let options = options_named(&self.name);
        let (run, guard, takes_slot) = with_current(|scope| {
            crate::task::new_run(options, scope, self.bus, &[], None, None, None)
        });
        let future = poke_until(
            run.clone(),
            guard,
            takes_slot,
            self.poke,
            self.every,
            self.timeout,
        );
        (run, future)
    }
}

/// What awaiting a sensor gives.
type SensorResult<O> = Result<<O as Poke>::Ready, RunError<<O as Poke>::Err>>;

impl<F, Fut> IntoFuture for Sensor<F>
where
    F: FnMut() -> Fut + Send,
    Fut: Future + Send,
    Fut::Output: Poke,
    <Fut::Output as Poke>::Err: std::fmt::Display,
    <Fut::Output as Poke>::Ready: Send,
    <Fut::Output as Poke>::Err: Send,
    F: 'static,
    Fut: 'static,
{
    type Output = SensorResult<Fut::Output>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.start().1.await })
    }
}

/// The options of the sensors named `name`: made once per name and kept (a program has few).
fn options_named(name: &str) -> &'static TaskOptions {
    static BY_NAME: OnceLock<Mutex<HashMap<String, &'static TaskOptions>>> = OnceLock::new();
    let mut by_name = BY_NAME
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    by_name.entry(name.to_string()).or_insert_with(|| {
        Box::leak(Box::new(TaskOptions {
            name: Cow::Owned(name.to_string()),
            tags: Cow::Borrowed(&[Cow::Borrowed("sensor")]),
            ..TaskOptions::new("sensor")
        }))
    })
}

/// How the poke loop ended.
enum Ended<T, E> {
    Ready(T),
    Failed(E),
    Panicked(String),
    TimedOut,
}

async fn poke_until<F, Fut>(
    run: Arc<TaskRun>,
    guard: EndGuard<TaskRun>,
    takes_slot: bool,
    mut poke: F,
    every: Duration,
    timeout: Duration,
) -> SensorResult<Fut::Output>
where
    F: FnMut() -> Fut + Send,
    Fut: Future + Send,
    Fut::Output: Poke,
    <Fut::Output as Poke>::Err: std::fmt::Display,
{
    let _guard = guard;
    let deadline = Instant::now() + timeout;
    run.set_attempt(1);
    let limiter = match (&run.flow, takes_slot) {
        (Some(flow), true) => flow.limiter.as_ref(),
        _ => None,
    };
    let mut pokes: u32 = 0;
    let ended = loop {
        pokes += 1;
        let attempt = CURRENT.scope(
            Scope::Task(run.clone()),
            AssertUnwindSafe(poke()).catch_unwind(),
        );
        let poked = async {
            // A slot for the poke only: released before the sleep.
            let _slot = match limiter {
                Some(limiter) => limiter.acquire().await.ok(),
                None => None,
            };
            let message = (pokes > 1).then(|| format!("poke {pokes}"));
            run.emit_state(State::Running, 1, message, None);
            attempt.await
        };
        let Ok(poked) = tokio::time::timeout_at(deadline, poked).await else {
            break Ended::TimedOut;
        };
        match poked.map(Poke::into_poke) {
            Ok(Ok(Some(value))) => break Ended::Ready(value),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => break Ended::Failed(error),
            Err(payload) => break Ended::Panicked(crate::run::panic_message(payload)),
        }
        let now = Instant::now();
        let next = now + every;
        let (wake, message) = if next < deadline {
            (
                next,
                format!("poke {pokes}: not ready; next poke in {}", humanize(every)),
            )
        } else {
            (
                deadline,
                format!(
                    "poke {pokes}: not ready; times out in {}",
                    humanize(deadline - now)
                ),
            )
        };
        let at = chrono::Duration::from_std(wake - now)
            .ok()
            .and_then(|d| chrono::Utc::now().checked_add_signed(d));
        run.emit_state(State::Pending, 1, Some(message), at);
        tokio::time::sleep_until(wake).await;
        if wake >= deadline {
            break Ended::TimedOut;
        }
    };
    let s = if pokes == 1 { "" } else { "s" };
    match ended {
        Ended::Ready(value) => {
            run.end(State::Completed, 1, Some(format!("ready on poke {pokes}")));
            Ok(value)
        }
        Ended::Failed(error) => {
            run.end(State::Failed, 1, Some(format!("poke {pokes}: {error:#}")));
            Err(RunError::Failed {
                run_type: RunType::Task,
                name: run.options.name.clone(),
                run_id: run.id,
                attempts: 1,
                error,
            })
        }
        Ended::Panicked(message) => {
            run.end(State::Crashed, 1, Some(format!("poke {pokes}: {message}")));
            Err(RunError::Panicked {
                run_type: RunType::Task,
                name: run.options.name.clone(),
                run_id: run.id,
                message,
            })
        }
        Ended::TimedOut => {
            let message = format!(
                "condition not met after {pokes} poke{s} in {} (one every {})",
                humanize(timeout),
                humanize(every)
            );
            run.end(State::TimedOut, 1, Some(message));
            Err(RunError::TimedOut {
                run_type: RunType::Task,
                name: run.options.name.clone(),
                run_id: run.id,
                attempts: 1,
                after: timeout,
            })
        }
    }
}

/// Why [`wait_for_run`] could not look the run up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SensorError {
    /// `FLOWKIT_API_URL` is not set.
    #[error(
        "waiting for a run of deployment `{deployment}` needs a flowkit server: set FLOWKIT_API_URL"
    )]
    NoServer {
        /// The deployment waited for.
        deployment: String,
    },
    /// The server refused the request (a wrong API key, say); trying again would not help.
    #[error("the flowkit server refused to list the runs of deployment `{deployment}`: {why}")]
    Refused {
        /// The deployment waited for.
        deployment: String,
        /// What it said.
        why: String,
    },
}

/// One flow run of the server's list, as far as [`wait_for_run`] reads it.
#[derive(serde::Deserialize)]
struct ListedRun {
    id: uuid::Uuid,
    state: String,
    scheduled: Option<chrono::DateTime<chrono::Utc>>,
    interval_start: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(serde::Deserialize)]
struct RunPage {
    items: Vec<ListedRun>,
}

/// One poke of [`wait_for_run`]: the id of the completed run, once there is one.
pub type RunPoke = Pin<Box<dyn Future<Output = Result<Option<uuid::Uuid>, SensorError>> + Send>>;

/// How many of a deployment's runs of one logical date [`wait_for_run`] looks through (the
/// newest: a day's runs are few, reruns included).
const RUNS_LOOKED_AT: usize = 100;

/// Waits until a run of another deployment for the same logical date has completed (Airflow's
/// `ExternalTaskSensor`): a [`sensor`] named `wait for <deployment>` whose poke asks the
/// server (`FLOWKIT_API_URL`, with `FLOWKIT_API_KEY`) for the deployment's runs and looks for a
/// `Completed` one whose logical date (the start of its data interval, else the day it was due,
/// as [`ScheduledRun::logical_date`](crate::serve::ScheduledRun::logical_date) says) is
/// `logical_date`. Its value is that run's id. It asks only for the runs of that logical date
/// (`GET /api/flow_runs?deployment=…&logical_date=…`), however many of other days there are.
///
/// Without a server it fails at once, saying so. A server that cannot be reached counts as "not
/// yet" (the sensor keeps poking until its timeout).
///
/// ```no_run
/// use flowkit::serve::ScheduledRun;
///
/// #[flowkit::flow]
/// async fn orders(day: chrono::NaiveDate) -> anyhow::Result<()> {
///     // Orders need the day's customers: wait for that deployment's run of the same day.
///     flowkit::wait_for_run("customers", day)
///         .every(std::time::Duration::from_secs(60))
///         .timeout(std::time::Duration::from_secs(6 * 3600))
///         .await?;
///     Ok(())
/// }
/// ```
pub fn wait_for_run(
    deployment: &str,
    logical_date: chrono::NaiveDate,
) -> Sensor<impl FnMut() -> RunPoke + Send + 'static> {
    let client = std::env::var("FLOWKIT_API_URL")
        .ok()
        .map(|text| crate::serve::client::urls(&text))
        .filter(|urls| !urls.is_empty())
        .map(|urls| {
            let key = std::env::var("FLOWKIT_API_KEY")
                .ok()
                .filter(|key| !key.is_empty());
            crate::serve::client::ApiClient::new(urls, key)
        });
    let deployment = deployment.to_string();
    sensor(format!("wait for {deployment}"), move || {
        let client = client.clone();
        let deployment = deployment.clone();
        let poke: RunPoke =
            Box::pin(async move { poke_run(client, deployment, logical_date).await });
        poke
    })
}

async fn poke_run(
    client: Option<crate::serve::client::ApiClient>,
    deployment: String,
    logical_date: chrono::NaiveDate,
) -> Result<Option<uuid::Uuid>, SensorError> {
    let Some(client) = client else {
        return Err(SensorError::NoServer { deployment });
    };
    let limit = RUNS_LOOKED_AT.to_string();
    let day = logical_date.to_string();
    let query = [
        ("deployment", deployment.as_str()),
        ("logical_date", day.as_str()),
        ("limit", limit.as_str()),
    ];
    let page: RunPage = match client
        .get("/api/flow_runs", &query, Duration::from_secs(10))
        .await
    {
        Ok(page) => page,
        Err(crate::serve::client::ApiError::Refused { status, text, .. }) => {
            return Err(SensorError::Refused {
                deployment,
                why: format!("{status}: {text}"),
            });
        }
        Err(unavailable) => {
            tracing::warn!(
                "could not ask the server for the runs of `{deployment}`: {unavailable}"
            );
            return Ok(None);
        }
    };
    let of_the_day: Vec<&ListedRun> = page
        .items
        .iter()
        .filter(|run| {
            run.interval_start
                .or(run.scheduled)
                .is_some_and(|at| at.date_naive() == logical_date)
        })
        .collect();
    if let Some(done) = of_the_day
        .iter()
        .find(|run| matches!(run.state.as_str(), "Completed" | "Cached"))
    {
        return Ok(Some(done.id));
    }
    match of_the_day.first() {
        Some(latest) => tracing::info!(
            "the latest run of `{deployment}` for {logical_date} is {} ({})",
            latest.state,
            latest.id
        ),
        None => tracing::info!("no run of `{deployment}` for {logical_date} yet"),
    }
    Ok(None)
}
