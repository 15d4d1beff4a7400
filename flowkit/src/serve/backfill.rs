//! Backfills: a deployment run over a range of past intervals, as individual runs or in chunks.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::deployment::{Deployment, ScheduledRun};
use super::{ServeError, next_due};

/// Runs a deployment for every interval of its schedules whose start lies in `[start, end)`,
/// oldest first, at most `max_active` at once; or, with [`chunk`](Self::chunk), one run per
/// chunk of the range, its interval covering the chunk (the last one short).
///
/// ```
/// use flowkit::flow;
/// use flowkit::serve::{Backfill, Deployment};
///
/// #[flow]
/// async fn daily(day: chrono::NaiveDate) -> Result<(), String> { Ok(()) }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// let nightly = Deployment::new("nightly", |run| daily(run.logical_date())).cron("0 0 * * *");
/// let report = Backfill::new(nightly, "2026-11-01T00:00:00Z".parse().unwrap(),
///                                     "2026-11-08T00:00:00Z".parse().unwrap())
///     .max_active(4)
///     .run()
///     .await
///     .unwrap();
/// assert_eq!(report.runs().len(), 7);
/// assert_eq!(report.failed().count(), 0);
/// # }
/// ```
pub struct Backfill {
    deployment: Deployment,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    chunk: Option<String>,
    max_active: usize,
}

impl Backfill {
    /// A backfill of `deployment` over `[start, end)`.
    pub fn new(deployment: Deployment, start: DateTime<Utc>, end: DateTime<Utc>) -> Backfill {
        Backfill {
            deployment,
            start,
            end,
            chunk: None,
            max_active: 1,
        }
    }

    /// One run per `period` of the range (`"7d"`, `"1d"`, `"12h"`) instead of one per scheduled
    /// interval; the last chunk ends at the end of the range.
    pub fn chunk(mut self, period: impl Into<String>) -> Self {
        self.chunk = Some(period.into());
        self
    }

    /// At most this many runs at once (default 1; at least 1).
    pub fn max_active(mut self, runs: usize) -> Self {
        self.max_active = runs.max(1);
        self
    }

    /// The runs the backfill would make, in order, without running them.
    pub fn plan(&self) -> Result<Vec<ScheduledRun>, ServeError> {
        let name = self.deployment.name();
        let error = |error| ServeError::Schedule {
            deployment: name.to_string(),
            error,
        };
        if self.end <= self.start {
            return Err(ServeError::EmptyRange {
                start: self.start,
                end: self.end,
            });
        }
        let mut runs = Vec::new();
        match &self.chunk {
            Some(period) => {
                let period = humantime::parse_duration(period.trim())
                    .ok()
                    .and_then(|p| TimeDelta::from_std(p).ok())
                    .filter(|p| *p >= TimeDelta::seconds(1))
                    .ok_or_else(|| error(super::ScheduleError::Period(period.clone())))?;
                let mut at = self.start;
                while at < self.end {
                    let until = (at + period).min(self.end);
                    runs.push(ScheduledRun::new(name, until).with_interval(at, until));
                    at = until;
                }
            }
            None => {
                let schedules = self.deployment.checked_schedules().map_err(error)?;
                // Intervals by their start: the first time at or after `start` opens the first.
                let mut at = self.start - TimeDelta::nanoseconds(1);
                while let Some((open, _)) = next_due(&schedules, at).filter(|(t, _)| *t < self.end)
                {
                    let Some((close, _)) = next_due(&schedules, open) else {
                        break;
                    };
                    runs.push(ScheduledRun::new(name, close).with_interval(open, close));
                    at = open;
                }
            }
        }
        Ok(runs)
    }

    /// Runs the backfill; the report says how each run ended.
    pub async fn run(self) -> Result<BackfillReport, ServeError> {
        let plan = self.plan()?;
        let slots = Arc::new(Semaphore::new(self.max_active));
        let mut runs = JoinSet::new();
        for (index, run) in plan.iter().cloned().enumerate() {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let start = self.deployment.start.clone();
            runs.spawn(async move {
                let ended = start(run).await;
                drop(slot);
                (index, ended)
            });
        }
        let mut ended: Vec<Option<Result<(), String>>> = vec![None; plan.len()];
        while let Some(joined) = runs.join_next().await {
            match joined {
                Ok((index, result)) => ended[index] = Some(result),
                Err(error) => {
                    tracing::error!(%error, "flowkit: a backfill run could not be joined")
                }
            }
        }
        Ok(BackfillReport {
            deployment: self.deployment.name().to_string(),
            start: self.start,
            end: self.end,
            runs: plan
                .into_iter()
                .zip(ended)
                .map(|(run, ended)| {
                    let ended = ended.unwrap_or_else(|| Err("the run was lost".into()));
                    (run, ended)
                })
                .collect(),
        })
    }
}

/// How a backfill went: each run, in order, with its result. Its `Display` is the gap report:
/// a summary line, then each interval that did not complete.
#[derive(Debug)]
pub struct BackfillReport {
    deployment: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    runs: Vec<(ScheduledRun, Result<(), String>)>,
}

impl BackfillReport {
    /// Each run, in order, with how it ended (`Err` holds the error).
    pub fn runs(&self) -> &[(ScheduledRun, Result<(), String>)] {
        &self.runs
    }

    /// The runs that did not complete.
    pub fn failed(&self) -> impl Iterator<Item = &(ScheduledRun, Result<(), String>)> {
        self.runs.iter().filter(|(_, ended)| ended.is_err())
    }
}

impl fmt::Display for BackfillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.failed().count();
        writeln!(
            f,
            "backfill {} {} → {}: {} runs, {} completed, {failed} failed",
            self.deployment,
            self.start.format("%Y-%m-%d %H:%M"),
            self.end.format("%Y-%m-%d %H:%M"),
            self.runs.len(),
            self.runs.len() - failed,
        )?;
        for (run, ended) in self.failed() {
            let (start, end) = run
                .interval()
                .unwrap_or((run.scheduled_at(), run.scheduled_at()));
            let error = ended.as_ref().err().map_or("", String::as_str);
            writeln!(
                f,
                "  {} → {}  failed: {error}",
                start.format("%Y-%m-%d %H:%M"),
                end.format("%Y-%m-%d %H:%M")
            )?;
        }
        Ok(())
    }
}
