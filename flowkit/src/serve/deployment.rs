//! Deployments: a flow plus a name, schedules and run policies.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::RunError;
use crate::flow::{FlowBody, FlowCall};
use crate::task::Outcome;
use flowkit_api::{DeploymentSpec, Schedule, ScheduleError, ScheduleSpec};

/// The run a deployment starts: which deployment, when it was due, the data interval it is
/// for and, for a run a flowkit server handed out, its id, attempt and parameters. Inside the
/// run, [`RunContext::scheduled`](crate::RunContext::scheduled) gives it.
///
/// ```
/// use flowkit::serve::ScheduledRun;
/// let run = ScheduledRun::new("nightly", "2026-11-27T02:00:00Z".parse().unwrap())
///     .with_interval("2026-11-26T02:00:00Z".parse().unwrap(), "2026-11-27T02:00:00Z".parse().unwrap());
/// assert_eq!(run.logical_date().to_string(), "2026-11-26");
/// // Scheduled in this program: no server id, a first attempt, the deployment's defaults.
/// assert_eq!((run.id(), run.attempt(), run.parameters()), (None, 1, None));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledRun {
    deployment: Arc<str>,
    scheduled_at: DateTime<Utc>,
    interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
    id: Option<Uuid>,
    attempt: u32,
    parameters: Option<Arc<serde_json::Value>>,
    resume: bool,
}

impl ScheduledRun {
    /// A run of `deployment` due at `scheduled_at`, with no data interval.
    pub fn new(deployment: &str, scheduled_at: DateTime<Utc>) -> ScheduledRun {
        ScheduledRun {
            deployment: deployment.into(),
            scheduled_at,
            interval: None,
            id: None,
            attempt: 1,
            parameters: None,
            resume: false,
        }
    }

    /// The same run, for the data interval `[start, end)`.
    pub fn with_interval(mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> ScheduledRun {
        self.interval = Some((start, end));
        self
    }

    /// The same run, with the flow run id `id` (the one the server created it with): the flow
    /// run started for it takes this id, so its events update the server's run.
    ///
    /// ```
    /// use flowkit::serve::ScheduledRun;
    /// let id = uuid::Uuid::now_v7();
    /// let run = ScheduledRun::new("nightly", chrono::Utc::now()).with_id(id);
    /// assert_eq!(run.id(), Some(id));
    /// ```
    pub fn with_id(mut self, id: Uuid) -> ScheduledRun {
        self.id = Some(id);
        self
    }

    /// The same run, as attempt `attempt` (from 1; the server counts a run that replaces one
    /// that crashed as the next attempt).
    ///
    /// ```
    /// use flowkit::serve::ScheduledRun;
    /// let run = ScheduledRun::new("nightly", chrono::Utc::now()).with_attempt(2);
    /// assert_eq!(run.attempt(), 2);
    /// ```
    pub fn with_attempt(mut self, attempt: u32) -> ScheduledRun {
        self.attempt = attempt.max(1);
        self
    }

    /// The same run, with these parameters (a JSON object; `None`: the deployment's defaults).
    ///
    /// ```
    /// use flowkit::serve::ScheduledRun;
    /// let run = ScheduledRun::new("report", chrono::Utc::now())
    ///     .with_parameters(serde_json::json!({"limit": 10}));
    /// assert_eq!(run.parameters().unwrap()["limit"], 10);
    /// ```
    pub fn with_parameters(mut self, parameters: serde_json::Value) -> ScheduledRun {
        self.parameters = Some(Arc::new(parameters));
        self
    }

    /// The same run, as a resume of its flow run ([`with_id`](Self::with_id)): the flow call
    /// made for it resumes that run ([`FlowCall::resume`]), so the task calls that completed in
    /// its earlier attempts return their stored results. A server's workers get such runs from
    /// "Retry from failure" (`POST /api/flow_runs/{id}/retry`).
    ///
    /// ```
    /// use flowkit::serve::ScheduledRun;
    /// let run = ScheduledRun::new("nightly", chrono::Utc::now())
    ///     .with_id(uuid::Uuid::now_v7())
    ///     .with_attempt(2)
    ///     .resuming();
    /// assert!(run.resumes());
    /// ```
    pub fn resuming(mut self) -> ScheduledRun {
        self.resume = true;
        self
    }

    /// Whether the run resumes its flow run (see [`resuming`](Self::resuming)).
    pub fn resumes(&self) -> bool {
        self.resume && self.id.is_some()
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
    /// one (Airflow's `data_interval_start` / `data_interval_end`); a backfill's interval; for a
    /// triggered (manual) run, the one its trigger gave (`interval_start`/`interval_end`), else
    /// `None`: a manual run has no data interval unless given one.
    pub fn interval(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.interval
    }

    /// The start of the interval (Airflow's `ds`, as a UTC date); for a run without one (a
    /// manual run not given an interval) the day it was due, so a deployment's
    /// `|run| etl(run.logical_date())` still has a day to pass (Airflow 2 gives a manual run its
    /// trigger time the same way). Whether the run has a data interval of its own is
    /// [`interval`](Self::interval)`.is_some()`.
    ///
    /// ```
    /// use flowkit::serve::ScheduledRun;
    /// // Triggered at 09:15 on 28 November with no interval: none, and that day.
    /// let manual = ScheduledRun::new("nightly", "2026-11-28T09:15:00Z".parse().unwrap());
    /// assert_eq!(manual.interval(), None);
    /// assert_eq!(manual.logical_date().to_string(), "2026-11-28");
    /// ```
    pub fn logical_date(&self) -> chrono::NaiveDate {
        self.interval
            .map_or(self.scheduled_at, |(start, _)| start)
            .date_naive()
    }

    /// The flow run id the server gave the run; `None` for a run scheduled in this program
    /// (its flow run gets a fresh id).
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    /// The attempt, from 1: 2 and up when the server made the run again after one crashed.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The run's parameters as JSON (the deployment's defaults merged under the trigger's), or
    /// `None` for a run that was given none (it uses the defaults).
    pub fn parameters(&self) -> Option<&serde_json::Value> {
        self.parameters.as_deref()
    }

    /// The run a server handed out.
    pub(crate) fn claimed(run: &flowkit_api::work::ClaimedRun) -> ScheduledRun {
        let scheduled = ScheduledRun::new(&run.deployment, run.scheduled_at)
            .with_id(run.id)
            .with_attempt(run.attempt);
        let scheduled = match (run.interval_start, run.interval_end) {
            (Some(start), Some(end)) => scheduled.with_interval(start, end),
            _ => scheduled,
        };
        let scheduled = if run.resume {
            scheduled.resuming()
        } else {
            scheduled
        };
        match &run.parameters {
            Some(parameters) => scheduled.with_parameters(parameters.clone()),
            None => scheduled,
        }
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
///
/// A deployment whose runs take parameters from outside (a trigger from the API, the command
/// line or the dashboard's form) declares them as a type: see
/// [`with_parameters`](Deployment::with_parameters).
pub struct Deployment {
    pub(crate) name: String,
    /// The name of the flow its runs call.
    pub(crate) flow: String,
    pub(crate) schedules: Vec<ScheduleSpec>,
    pub(crate) time_zone: String,
    pub(crate) catchup: bool,
    pub(crate) max_active_runs: usize,
    pub(crate) paused: bool,
    pub(crate) queue: String,
    pub(crate) priority: i32,
    /// The default parameters, or why they could not be encoded.
    pub(crate) parameters: Result<Option<serde_json::Value>, String>,
    pub(crate) parameter_schema: Option<serde_json::Value>,
    pub(crate) start: Starter,
}

impl Deployment {
    /// A deployment named `name` whose runs call `flow` (a `#[flow]` function, given the run).
    /// It takes no parameters from outside (its spec has no parameter schema).
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
        let start: Starter = Arc::new(move |run: ScheduledRun| run_call(flow(&run).scheduled(run)));
        Deployment::with_starter(name, flow_name, start)
    }

    /// A deployment named `name` whose runs take parameters of type `P`: `defaults` for runs
    /// given none (scheduled ones), else the run's parameters (a triggered run's, merged over
    /// the defaults). `flow` makes the flow call from the run and its parameters.
    ///
    /// The deployment registers `defaults` and the JSON Schema of `P` with the server, which
    /// checks a trigger's parameters against it and draws the dashboard's "Run" form from it.
    /// A run whose parameters do not fit `P` (a program older than its schema, say) is recorded
    /// as a `Failed` flow run whose message names the field; the program goes on.
    ///
    /// `P` derives [`JsonSchema`](crate::schemars::JsonSchema) from the `schemars` crate, which
    /// flowkit re-exports: `use flowkit::schemars;` lets `#[derive(schemars::JsonSchema)]` find
    /// it without a dependency of your own. Doc comments become the fields' descriptions.
    ///
    /// The published schema refuses properties `P` does not name (`additionalProperties:
    /// false`), so a trigger with a misspelt parameter is a 400 naming it rather than a run that
    /// silently ignores it, whether or not `P` has `#[serde(deny_unknown_fields)]`. A `P` that
    /// takes other properties says so itself: a `#[serde(flatten)]` map of extras publishes
    /// what they may be, and is kept.
    ///
    /// ```
    /// use flowkit::flow;
    /// use flowkit::schemars::{self, JsonSchema};
    /// use flowkit::serve::{Deployment, ScheduledRun};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Clone, Serialize, Deserialize, JsonSchema)]
    /// struct Report {
    ///     /// The region to report on.
    ///     region: String,
    ///     /// At most this many rows.
    ///     limit: u32,
    /// }
    ///
    /// #[flow]
    /// async fn report(day: chrono::NaiveDate, region: String, limit: u32) -> anyhow::Result<()> {
    ///     Ok(())
    /// }
    ///
    /// let daily = Deployment::with_parameters(
    ///     "daily-report",
    ///     Report { region: "eu".into(), limit: 100 },
    ///     |run: &ScheduledRun, p: Report| report(run.logical_date(), p.region, p.limit),
    /// )
    /// .cron("0 6 * * *");
    /// let spec = daily.spec();
    /// assert_eq!(spec.parameters.unwrap()["limit"], 100);
    /// let schema = spec.parameter_schema.unwrap();
    /// assert_eq!(schema["properties"]["limit"]["type"], "integer");
    /// assert_eq!(schema["properties"]["region"]["description"], "The region to report on.");
    /// assert_eq!(schema["additionalProperties"], false);
    /// ```
    pub fn with_parameters<P, F, B>(name: impl Into<String>, defaults: P, flow: F) -> Deployment
    where
        P: Serialize + DeserializeOwned + schemars::JsonSchema + Clone + Send + Sync + 'static,
        F: Fn(&ScheduledRun, P) -> FlowCall<B> + Send + Sync + 'static,
        B: FlowBody,
        <B::Output as Outcome>::Ok: Send + 'static,
        <B::Output as Outcome>::Err: std::fmt::Display + Send + 'static,
    {
        let name = name.into();
        let options = flow(&ScheduledRun::new(&name, Utc::now()), defaults.clone()).options();
        let encoded = serde_json::to_value(&defaults).map_err(|error| error.to_string());
        let defaults_json = encoded.clone().ok();
        let start: Starter = Arc::new(move |run: ScheduledRun| {
            let given = run.parameters().cloned();
            let decoded = match (&given, &defaults_json) {
                (None, _) => Ok(defaults.clone()),
                (Some(given), defaults) => decode::<P>(&merged(defaults.as_ref(), given)),
            };
            match decoded {
                Ok(parameters) => run_call(flow(&run, parameters).scheduled(run)),
                Err(why) => {
                    // The run is recorded where the deployment's runs go (a bus set with `.on`).
                    let bus = flow(&run, defaults.clone()).bus().cloned();
                    refuse(options, bus, given.unwrap_or_default(), run, why)
                }
            }
        });
        let mut deployment = Deployment::with_starter(name, options.name.to_string(), start);
        deployment.parameters = encoded.map(Some);
        deployment.parameter_schema = Some(closed(schemars::schema_for!(P).to_value()));
        deployment
    }

    fn with_starter(name: String, flow: String, start: Starter) -> Deployment {
        Deployment {
            name,
            flow,
            schedules: Vec::new(),
            time_zone: "UTC".into(),
            catchup: false,
            max_active_runs: 1,
            paused: false,
            queue: flowkit_api::DEFAULT_QUEUE.into(),
            priority: 0,
            parameters: Ok(None),
            parameter_schema: None,
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

    /// The work queue its runs wait in on a server (default `"default"`); workers serve queues
    /// (see [`Server::queues`](crate::serve::Server::queues)).
    ///
    /// ```
    /// use flowkit::serve::Deployment;
    /// # #[flowkit::flow] async fn etl() {}
    /// let urgent = Deployment::new("hotfix", |_| etl()).queue("urgent").priority(10);
    /// assert_eq!((urgent.spec().queue.as_str(), urgent.spec().priority), ("urgent", 10));
    /// ```
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Within its queue, runs of higher priority are handed out first (default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
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
            queue: self.queue.clone(),
            priority: self.priority,
            parameters: self.parameters.clone().ok().flatten(),
            parameter_schema: self.parameter_schema.clone(),
        }
    }

    /// The schedules, checked.
    pub(crate) fn checked_schedules(&self) -> Result<Vec<Schedule>, ScheduleError> {
        self.spec().schedules().map_err(|(_, error)| error)
    }
}

/// The schema, refusing properties it does not name: serde drops an unknown field of a struct
/// without `#[serde(deny_unknown_fields)]`, so a trigger's misspelt parameter (`colour` for
/// `color`) would be accepted and silently ignored. A root object schema that says nothing of
/// other properties gets `additionalProperties: false`; one that does (a flattened map gives
/// `additionalProperties: {…}`, `deny_unknown_fields` gives `false`) or that is built from
/// subschemas (`allOf`/`oneOf`/`anyOf`: a flattened enum, whose properties the root does not
/// list) is kept as it is.
fn closed(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(root) = schema.as_object_mut() {
        let object = root.get("type").and_then(|t| t.as_str()) == Some("object")
            || root.contains_key("properties");
        let composed = ["allOf", "oneOf", "anyOf", "$ref"]
            .iter()
            .any(|key| root.contains_key(*key));
        let says = [
            "additionalProperties",
            "unevaluatedProperties",
            "patternProperties",
        ]
        .iter()
        .any(|key| root.contains_key(*key));
        if object && !composed && !says {
            root.insert(
                "additionalProperties".into(),
                serde_json::Value::Bool(false),
            );
        }
    }
    schema
}

/// Runs a deployment's flow call to its end.
fn run_call<B>(call: FlowCall<B>) -> BoxFuture<'static, Ended>
where
    B: FlowBody,
    <B::Output as Outcome>::Ok: Send + 'static,
    <B::Output as Outcome>::Err: std::fmt::Display + Send + 'static,
{
    Box::pin(async move {
        call.await
            .map(drop)
            .map_err(|error: RunError<_>| error.to_string())
    })
}

/// `given` over `defaults`, key by key, when both are objects; else `given`.
fn merged(defaults: Option<&serde_json::Value>, given: &serde_json::Value) -> serde_json::Value {
    match (defaults, given) {
        (Some(serde_json::Value::Object(defaults)), serde_json::Value::Object(given)) => {
            let mut merged = defaults.clone();
            merged.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
            serde_json::Value::Object(merged)
        }
        _ => given.clone(),
    }
}

/// The parameters as `P`, or why not, naming the field.
fn decode<P: DeserializeOwned>(parameters: &serde_json::Value) -> Result<P, String> {
    serde_path_to_error::deserialize(parameters).map_err(|error| {
        let path = error.path().to_string();
        if path == "." {
            format!(
                "the run's parameters do not fit the deployment's: {}",
                error.inner()
            )
        } else {
            format!(
                "the run's parameters do not fit the deployment's: {path}: {}",
                error.inner()
            )
        }
    })
}

/// Records the run as a `Failed` flow run of the deployment's flow, with `why` (no retries: the
/// same parameters would fail the same way).
fn refuse(
    options: &'static crate::FlowOptions,
    bus: Option<crate::EventBus>,
    parameters: serde_json::Value,
    run: ScheduledRun,
    why: String,
) -> BoxFuture<'static, Ended> {
    tracing::error!(deployment = %run.deployment(), run_id = ?run.id(), %why,
        "flowkit: a run's parameters do not fit its deployment; recorded Failed");
    let body = move || std::future::ready(Err::<(), String>(why.clone()));
    let call = FlowCall::new(options, parameters, body)
        .scheduled(run)
        .without_retries();
    run_call(match &bus {
        Some(bus) => call.on(bus),
        None => call,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde::Deserialize;

    use super::*;
    use crate::{EventBus, MemorySink, State, flow};

    /// A report's parameters.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    struct Report {
        /// The region to report on.
        region: String,
        /// At most this many rows.
        limit: u32,
    }

    static SEEN: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

    #[flow(retries = 3, retry_delay = 0)]
    async fn report(region: String, limit: u32) {
        SEEN.lock().unwrap().push((region, limit));
    }

    fn deployment(bus: &EventBus) -> Deployment {
        let bus = bus.clone();
        Deployment::with_parameters(
            "report",
            Report {
                region: "eu".into(),
                limit: 100,
            },
            move |_: &ScheduledRun, p: Report| report(p.region, p.limit).on(&bus),
        )
    }

    #[tokio::test]
    async fn typed_parameters_default_merge_and_a_misfit_is_a_failed_run_naming_the_field() {
        let memory = MemorySink::new();
        let bus = EventBus::builder().sink(memory.clone()).build();
        let deployment = deployment(&bus);
        let spec = deployment.spec();
        assert_eq!(spec.flow, "report");
        assert_eq!(
            spec.parameters,
            Some(serde_json::json!({"region": "eu", "limit": 100}))
        );
        let schema = spec.parameter_schema.expect("a schema");
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["limit"]["type"], "integer");
        assert_eq!(
            schema["properties"]["region"]["description"],
            "The region to report on."
        );
        assert_eq!(schema["required"], serde_json::json!(["region", "limit"]));

        let run = || ScheduledRun::new("report", Utc::now());
        // No parameters: the defaults.
        (deployment.start)(run()).await.unwrap();
        // Some: over the defaults.
        let given = run().with_parameters(serde_json::json!({"limit": 7}));
        (deployment.start)(given).await.unwrap();
        assert_eq!(
            *SEEN.lock().unwrap(),
            [("eu".to_string(), 100), ("eu".to_string(), 7)]
        );
        // Parameters that do not fit: a Failed run of the flow, with the server's id, once
        // (no retries), naming the field; the flow's body never runs.
        let id = Uuid::now_v7();
        let bad = run()
            .with_id(id)
            .with_parameters(serde_json::json!({"limit": "ten"}));
        let error = (deployment.start)(bad).await.unwrap_err();
        assert!(
            error.contains("limit: invalid type: string \"ten\", expected u32"),
            "{error}"
        );
        assert_eq!(SEEN.lock().unwrap().len(), 2);
        bus.flush().await;
        assert_eq!(memory.states(id), [State::Running, State::Failed]);
        let events = memory.events();
        let message = events
            .iter()
            .filter(|e| e.flow_run_id == Some(id))
            .find_map(|e| match &e.kind {
                crate::events::EventKind::StateChanged(s) if s.state == State::Failed => {
                    s.message.clone()
                }
                _ => None,
            })
            .unwrap();
        assert!(
            message.starts_with("the run's parameters do not fit the deployment's: limit: "),
            "{message}"
        );
        // The run records the parameters it was given, and its deployment.
        let created = events
            .iter()
            .find_map(|e| match &e.kind {
                crate::events::EventKind::RunCreated(c) if e.flow_run_id == Some(id) => {
                    Some(c.clone())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(
            created.parameters,
            Some(serde_json::json!({"limit": "ten"}))
        );
        assert_eq!(created.scheduled.as_ref().unwrap().deployment, "report");
        assert_eq!(created.name, "report");
    }

    #[test]
    fn the_published_schema_refuses_unknown_properties_unless_the_type_takes_them() {
        #[flow]
        async fn load(_days: u32) {}
        // A plain struct (no `deny_unknown_fields`): serde would drop `colour`; the schema
        // refuses it.
        let spec = deployment(&EventBus::builder().build()).spec();
        let schema = spec.parameter_schema.unwrap();
        assert_eq!(schema["additionalProperties"], false, "{schema:#}");

        // `deny_unknown_fields`: already closed, kept as it is.
        #[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        struct Strict {
            days: u32,
        }
        let spec =
            Deployment::with_parameters("strict", Strict { days: 1 }, |_, p: Strict| load(p.days))
                .spec();
        assert_eq!(
            spec.parameter_schema.unwrap()["additionalProperties"],
            false
        );

        // A flattened map of extras: other properties are the type's to take, so the schema
        // keeps saying what they may be (here: strings).
        #[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
        struct Open {
            days: u32,
            #[serde(flatten)]
            extra: std::collections::BTreeMap<String, String>,
        }
        let open = Open {
            days: 1,
            extra: Default::default(),
        };
        let spec = Deployment::with_parameters("open", open, |_, p: Open| load(p.days)).spec();
        let schema = spec.parameter_schema.unwrap();
        assert_eq!(
            schema["additionalProperties"],
            serde_json::json!({"type": "string"}),
            "{schema:#}"
        );

        // Not an object at the root (a bare number): nothing to close.
        let spec = Deployment::with_parameters("days", 1u32, |_, days: u32| load(days)).spec();
        let schema = spec.parameter_schema.unwrap();
        assert_eq!(schema.get("additionalProperties"), None, "{schema:#}");
    }

    #[test]
    fn a_handed_out_run_has_the_interval_it_was_given_and_a_manual_one_none() {
        let claimed = |interval: Option<(&str, &str)>| flowkit_api::work::ClaimedRun {
            id: Uuid::now_v7(),
            deployment: "nightly".into(),
            scheduled_at: "2026-11-28T09:15:00Z".parse().unwrap(),
            interval_start: interval.map(|(s, _)| s.parse().unwrap()),
            interval_end: interval.map(|(_, e)| e.parse().unwrap()),
            parameters: None,
            attempt: 1,
            resume: false,
        };
        // Triggered with no interval: none; its logical date is the day it was due.
        let manual = ScheduledRun::claimed(&claimed(None));
        assert_eq!(manual.interval(), None);
        assert_eq!(manual.logical_date().to_string(), "2026-11-28");
        // Triggered (or backfilled) for a day: that day, whenever it runs.
        let given = ScheduledRun::claimed(&claimed(Some((
            "2024-03-01T00:00:00Z",
            "2024-03-02T00:00:00Z",
        ))));
        assert_eq!(given.logical_date().to_string(), "2024-03-01");
        assert_eq!(
            given
                .interval()
                .map(|(s, e)| (s.to_rfc3339(), e.to_rfc3339())),
            Some((
                "2024-03-01T00:00:00+00:00".to_string(),
                "2024-03-02T00:00:00+00:00".to_string()
            ))
        );
    }

    #[test]
    fn a_deployment_without_parameters_has_no_schema() {
        #[flow]
        async fn plain() {}
        let spec = Deployment::new("plain", |_| plain()).spec();
        assert_eq!((spec.parameters, spec.parameter_schema), (None, None));
    }
}
