//! Deployments: a flow plus a name, schedules and run policies.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::error::RunError;
use crate::flow::{FlowBody, FlowCall};
use crate::task::Outcome;
use flowkit_api::{DeploymentSpec, Schedule, ScheduleError, ScheduleSpec};

/// The run a deployment starts: which deployment, when it was due, and the data interval it is
/// for. Inside the run, [`RunContext::scheduled`](crate::RunContext::scheduled) gives it.
///
/// ```
/// use flowkit::serve::ScheduledRun;
/// let run = ScheduledRun::new("nightly", "2026-11-27T02:00:00Z".parse().unwrap())
///     .with_interval("2026-11-26T02:00:00Z".parse().unwrap(), "2026-11-27T02:00:00Z".parse().unwrap());
/// assert_eq!(run.logical_date().to_string(), "2026-11-26");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledRun {
    deployment: Arc<str>,
    scheduled_at: DateTime<Utc>,
    interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl ScheduledRun {
    /// A run of `deployment` due at `scheduled_at`, with no data interval.
    pub fn new(deployment: &str, scheduled_at: DateTime<Utc>) -> ScheduledRun {
        ScheduledRun {
            deployment: deployment.into(),
            scheduled_at,
            interval: None,
        }
    }

    /// The same run, for the data interval `[start, end)`.
    pub fn with_interval(mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> ScheduledRun {
        self.interval = Some((start, end));
        self
    }

    /// The deployment's name.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// When the run was due.
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        self.scheduled_at
    }

    /// The data interval `[start, end)` the run is for: from the schedule's previous time to this
    /// one (Airflow's `data_interval_start` / `data_interval_end`).
    pub fn interval(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.interval
    }

    /// The start of the interval, or the scheduled time if there is none (Airflow's `ds`, as a
    /// UTC date).
    pub fn logical_date(&self) -> chrono::NaiveDate {
        self.interval
            .map_or(self.scheduled_at, |(start, _)| start)
            .date_naive()
    }
}

/// How a deployment's run ended: `Ok` or the error, as text.
pub(crate) type Ended = Result<(), String>;

/// Starts one run of a deployment's flow.
pub(crate) type Starter = Arc<dyn Fn(ScheduledRun) -> BoxFuture<'static, Ended> + Send + Sync>;

/// A flow served on schedules, with run policies. Give deployments to
/// [`serve`](crate::serve::serve).
///
/// The closure makes each run's flow call from the run it is for, so parameters come from the
/// data interval and stay type-checked:
///
/// ```
/// use flowkit::serve::Deployment;
/// use flowkit::flow;
///
/// #[flow]
/// async fn daily_etl(day: chrono::NaiveDate) -> anyhow::Result<usize> { Ok(0) }
///
/// let nightly = Deployment::new("nightly", |run| daily_etl(run.logical_date()))
///     .cron("0 2 * * *")
///     .time_zone("Europe/Madrid")
///     .catchup(true)
///     .max_active_runs(3);
/// assert_eq!(nightly.name(), "nightly");
/// ```
pub struct Deployment {
    pub(crate) name: String,
    /// The name of the flow its runs call.
    pub(crate) flow: String,
    pub(crate) schedules: Vec<ScheduleSpec>,
    pub(crate) time_zone: String,
    pub(crate) catchup: bool,
    pub(crate) max_active_runs: usize,
    pub(crate) paused: bool,
    pub(crate) start: Starter,
}

impl Deployment {
    /// A deployment named `name` whose runs call `flow` (a `#[flow]` function, given the run).
    pub fn new<F, B>(name: impl Into<String>, flow: F) -> Deployment
    where
        F: Fn(&ScheduledRun) -> FlowCall<B> + Send + Sync + 'static,
        B: FlowBody,
        <B::Output as Outcome>::Ok: Send + 'static,
        <B::Output as Outcome>::Err: std::fmt::Display + Send + 'static,
    {
        let name = name.into();
        // A call made only to read the flow's name; it never runs.
        let flow_name = flow(&ScheduledRun::new(&name, Utc::now()))
            .options()
            .name
            .to_string();
        let start: Starter = Arc::new(move |run: ScheduledRun| {
            let call = flow(&run).scheduled(run);
            Box::pin(async move {
                call.await
                    .map(drop)
                    .map_err(|error: RunError<_>| error.to_string())
            })
        });
        Deployment {
            name,
            flow: flow_name,
            schedules: Vec::new(),
            time_zone: "UTC".into(),
            catchup: false,
            max_active_runs: 1,
            paused: false,
            start,
        }
    }

    /// The deployment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a 5-field cron schedule (`"0 2 * * *"`), read in the deployment's time zone.
    pub fn cron(mut self, expression: impl Into<String>) -> Self {
        self.schedules.push(ScheduleSpec::Cron {
            cron: expression.into(),
        });
        self
    }

    /// Adds an interval schedule (`"15m"`, `"1h"`, `"1d"`), at multiples of it since the Unix
    /// epoch.
    pub fn every(mut self, period: impl Into<String>) -> Self {
        self.schedules.push(ScheduleSpec::Every {
            every: period.into(),
            anchor: None,
        });
        self
    }

    /// Adds a ready-made schedule (an interval with an anchor, say).
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedules.push(ScheduleSpec::from(&schedule));
        self
    }

    /// The IANA time zone cron schedules are read in (default `"UTC"`).
    pub fn time_zone(mut self, name: impl Into<String>) -> Self {
        self.time_zone = name.into();
        self
    }

    /// Whether the times missed while no program served the deployment are run when one starts
    /// again, oldest first (default `false`: only the latest missed time runs).
    pub fn catchup(mut self, catchup: bool) -> Self {
        self.catchup = catchup;
        self
    }

    /// At most this many runs of the deployment at once (default 1; at least 1). Due runs wait
    /// their turn, oldest first.
    pub fn max_active_runs(mut self, runs: usize) -> Self {
        self.max_active_runs = runs.max(1);
        self
    }

    /// Starts paused: nothing is scheduled until resumed.
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }

    /// The deployment as data (what a serving program registers with the server).
    pub fn spec(&self) -> DeploymentSpec {
        DeploymentSpec {
            name: self.name.clone(),
            flow: self.flow.clone(),
            schedules: self.schedules.clone(),
            time_zone: self.time_zone.clone(),
            catchup: self.catchup,
            max_active_runs: self.max_active_runs,
            paused: self.paused,
            queue: flowkit_api::DEFAULT_QUEUE.into(),
            priority: 0,
            parameters: None,
            parameter_schema: None,
        }
    }

    /// The schedules, checked.
    pub(crate) fn checked_schedules(&self) -> Result<Vec<Schedule>, ScheduleError> {
        self.spec().schedules().map_err(|(_, error)| error)
    }
}
