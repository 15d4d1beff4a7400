//! A deployment as data: what a serving program tells the server, and what the server checks and
//! shows (next runs, schedule in words). The one contract for deployments, like the events are
//! for runs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::schedule::{Schedule, ScheduleError, next_due};

/// A schedule as written: a cron expression (read in the deployment's time zone) or a period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScheduleSpec {
    /// `{"cron": "0 2 * * *"}`.
    Cron {
        /// A 5-field cron expression.
        cron: String,
    },
    /// `{"every": "15m"}`, optionally with an `anchor` time.
    Every {
        /// The period (`"30s"`, `"15m"`, `"1d"`).
        every: String,
        /// One of the times (default: the Unix epoch).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        anchor: Option<DateTime<Utc>>,
    },
}

impl ScheduleSpec {
    /// The schedule, checked; cron expressions are read in `time_zone`.
    pub fn to_schedule(&self, time_zone: &str) -> Result<Schedule, ScheduleError> {
        match self {
            ScheduleSpec::Cron { cron } => Schedule::cron(cron, time_zone),
            ScheduleSpec::Every { every, anchor } => {
                let schedule = Schedule::every(every)?;
                Ok(match anchor {
                    Some(anchor) => schedule.anchored_at(*anchor),
                    None => schedule,
                })
            }
        }
    }
}

impl From<&Schedule> for ScheduleSpec {
    fn from(schedule: &Schedule) -> ScheduleSpec {
        match schedule {
            Schedule::Cron { expression, .. } => ScheduleSpec::Cron {
                cron: expression.clone(),
            },
            Schedule::Every { period, anchor } => ScheduleSpec::Every {
                every: period
                    .to_std()
                    .map(|p| humantime::format_duration(p).to_string())
                    .unwrap_or_default(),
                anchor: (*anchor != DateTime::UNIX_EPOCH).then_some(*anchor),
            },
        }
    }
}

/// A deployment as data: its name, its flow, its schedules and run policies.
///
/// ```
/// use flowkit_api::DeploymentSpec;
/// let spec: DeploymentSpec = serde_json::from_str(r#"{"name": "nightly", "flow": "etl",
///     "schedules": [{"cron": "0 2 * * *"}], "time_zone": "Europe/Madrid"}"#).unwrap();
/// let after = "2026-11-27T12:00:00Z".parse().unwrap();
/// assert_eq!(spec.next_runs(after, 1).unwrap()[0].to_rfc3339(), "2026-11-28T01:00:00+00:00");
/// assert_eq!(spec.describe().unwrap(), ["0 2 * * * (Europe/Madrid)"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    /// The deployment's name, unique on a server.
    pub name: String,
    /// The name of the flow it runs.
    pub flow: String,
    /// When its runs are due.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    /// The IANA time zone cron schedules are read in.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Whether missed times run after downtime.
    #[serde(default)]
    pub catchup: bool,
    /// At most this many runs at once.
    #[serde(default = "one")]
    pub max_active_runs: usize,
    /// Whether nothing is scheduled.
    #[serde(default)]
    pub paused: bool,
    /// The work queue its runs wait in (workers serve queues; default `"default"`).
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Within a queue, runs of higher priority are handed out first (default 0).
    #[serde(default)]
    pub priority: i32,
    /// The parameters a run gets when none are given (a JSON object), merged under the ones a
    /// triggered run gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// The JSON Schema of the parameters a triggered run may give; the server checks them
    /// against it, and the dashboard draws its "Run" form from it. `None`: the deployment takes
    /// no parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_schema: Option<serde_json::Value>,
}

/// The queue a deployment's runs wait in unless it names one.
pub const DEFAULT_QUEUE: &str = "default";

fn default_queue() -> String {
    DEFAULT_QUEUE.into()
}

fn utc() -> String {
    "UTC".into()
}

fn one() -> usize {
    1
}

impl DeploymentSpec {
    /// The schedules, checked; an error says which one (by position) is wrong.
    pub fn schedules(&self) -> Result<Vec<Schedule>, (usize, ScheduleError)> {
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err((0, ScheduleError::TimeZone(self.time_zone.clone())));
        }
        self.schedules
            .iter()
            .enumerate()
            .map(|(i, spec)| spec.to_schedule(&self.time_zone).map_err(|e| (i, e)))
            .collect()
    }

    /// The next `n` times after `after`, on any of its schedules.
    pub fn next_runs(
        &self,
        after: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<DateTime<Utc>>, (usize, ScheduleError)> {
        let schedules = self.schedules()?;
        let mut times = Vec::with_capacity(n);
        let mut at = after;
        while times.len() < n {
            let Some((next, _)) = next_due(&schedules, at) else {
                break;
            };
            times.push(next);
            at = next;
        }
        Ok(times)
    }

    /// Each schedule in words.
    pub fn describe(&self) -> Result<Vec<String>, (usize, ScheduleError)> {
        Ok(self.schedules()?.iter().map(Schedule::describe).collect())
    }
}
