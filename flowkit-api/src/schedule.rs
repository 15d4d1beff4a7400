//! Schedules: when a deployment's runs are due, and the data interval each run is for.
//!
//! A schedule is a 5-field cron expression in a time zone, or a fixed period from an anchor. The
//! run due at time `t` covers the interval from the schedule's previous time up to `t` (as
//! Airflow's data intervals do): the run of a daily `0 2 * * *` schedule due on the 27th at
//! 02:00 is for the 26th, 02:00 to the 27th, 02:00.
//!
//! **Daylight saving time** (cron in a time zone, as croner and Vixie cron do it): a time that a
//! spring-forward change skips fires once, right after the change (`30 2 * * *` in
//! Europe/Madrid on the last Sunday of March fires at 03:00); a time that a fall-back change
//! repeats fires once, at its first occurrence. Schedules with a wildcard or step in the hour
//! (`*/15 * * * *`) follow the wall clock: skipped times are skipped, repeated ones repeat.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

/// When a deployment's runs are due.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// A 5-field cron expression (`"0 2 * * *"`), in a time zone.
    Cron {
        /// The expression as written.
        expression: String,
        /// Its parsed form.
        cron: Box<croner::Cron>,
        /// The time zone its hours and days are read in.
        time_zone: Tz,
    },
    /// Every `period`, at `anchor + k × period`.
    Every {
        /// The time between runs.
        period: TimeDelta,
        /// One of the times (by default the Unix epoch, so `every 15m` fires at :00, :15, …).
        anchor: DateTime<Utc>,
    },
}

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error(
        "invalid cron expression {expression:?}: {reason} (5 fields: minute hour day-of-month month day-of-week, like \"0 2 * * *\")"
    )]
    Cron {
        /// The expression.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?}: expected an IANA name like \"Europe/Madrid\" or \"UTC\"")]
    TimeZone(String),
    /// The period does not parse or is not positive.
    #[error(
        "invalid period {0:?}: write it like \"30s\", \"15m\", \"2h\", \"1d\" or \"1h 30m\" (at least one second)"
    )]
    Period(String),
}

impl Schedule {
    /// A 5-field cron schedule in `time_zone` (an IANA name such as `"Europe/Madrid"`).
    ///
    /// ```
    /// use flowkit_api::Schedule;
    /// let nightly = Schedule::cron("0 2 * * *", "Europe/Madrid").unwrap();
    /// let at = "2026-11-27T12:00:00Z".parse().unwrap();
    /// assert_eq!(nightly.next_after(at).unwrap().to_rfc3339(), "2026-11-28T01:00:00+00:00");
    /// assert!(Schedule::cron("0 25 * * *", "UTC").is_err());
    /// ```
    pub fn cron(expression: &str, time_zone: &str) -> Result<Schedule, ScheduleError> {
        let time_zone: Tz = time_zone
            .parse()
            .map_err(|_| ScheduleError::TimeZone(time_zone.to_string()))?;
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build()
            .parse(expression.trim())
            .map_err(|error| ScheduleError::Cron {
                expression: expression.to_string(),
                reason: error.to_string(),
            })?;
        Ok(Schedule::Cron {
            expression: expression.trim().to_string(),
            cron: Box::new(cron),
            time_zone,
        })
    }

    /// A schedule every `period` (`"15m"`, `"1h"`, `"1d"`), at multiples of it since the Unix
    /// epoch.
    ///
    /// ```
    /// use flowkit_api::Schedule;
    /// let quarterly = Schedule::every("15m").unwrap();
    /// let at = "2026-11-27T12:07:00Z".parse().unwrap();
    /// assert_eq!(quarterly.next_after(at).unwrap().to_rfc3339(), "2026-11-27T12:15:00+00:00");
    /// ```
    pub fn every(period: &str) -> Result<Schedule, ScheduleError> {
        let error = || ScheduleError::Period(period.to_string());
        let parsed = humantime::parse_duration(period.trim()).map_err(|_| error())?;
        Schedule::every_duration(parsed).ok_or_else(error)
    }

    /// A schedule every `period` (at least a second), at multiples of it since the Unix epoch.
    pub fn every_duration(period: Duration) -> Option<Schedule> {
        let period = TimeDelta::from_std(period).ok()?;
        (period >= TimeDelta::seconds(1)).then_some(Schedule::Every {
            period,
            anchor: DateTime::UNIX_EPOCH,
        })
    }

    /// The same schedule with its times at `anchor + k × period` (interval schedules only).
    pub fn anchored_at(self, anchor: DateTime<Utc>) -> Schedule {
        match self {
            Schedule::Every { period, .. } => Schedule::Every { period, anchor },
            cron => cron,
        }
    }

    /// The first time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron {
                cron, time_zone, ..
            } => {
                // Cron times are whole minutes: search from the whole second at or before `t`.
                let from = t.with_nanosecond(0)?.with_timezone(time_zone);
                let at = cron.find_next_occurrence(&from, false).ok()?;
                let at = at.with_timezone(&Utc).with_nanosecond(0)?;
                checked(cron, *time_zone, t, at, Direction::Forward)
            }
            Schedule::Every { period, anchor } => {
                let period = period.num_nanoseconds()?;
                let steps = (t - *anchor).num_nanoseconds()?.div_euclid(period);
                let offset = period.checked_mul(steps.checked_add(1)?)?;
                Some(*anchor + TimeDelta::nanoseconds(offset))
            }
        }
    }

    /// The last time strictly before `t`.
    pub fn previous_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron {
                cron, time_zone, ..
            } => {
                // `t` itself counts only if it is after its whole second.
                let inclusive = t.nanosecond() > 0;
                let from = t.with_nanosecond(0)?.with_timezone(time_zone);
                let at = cron.find_previous_occurrence(&from, inclusive).ok()?;
                let at = at.with_timezone(&Utc).with_nanosecond(0)?;
                checked(cron, *time_zone, t, at, Direction::Backward)
            }
            Schedule::Every { period, anchor } => {
                let period = period.num_nanoseconds()?;
                let steps = ((t - *anchor).num_nanoseconds()? - 1).div_euclid(period);
                Some(*anchor + TimeDelta::nanoseconds(period.checked_mul(steps)?))
            }
        }
    }

    /// The schedule in words: `"0 2 * * * (Europe/Madrid)"`, `"every 15m"`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Cron {
                expression,
                time_zone,
                ..
            } => format!("{expression} ({time_zone})"),
            Schedule::Every { period, .. } => match period.to_std() {
                Ok(period) => format!("every {}", humantime::format_duration(period)),
                Err(_) => format!("every {period}"),
            },
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Backward,
}

/// `found` (croner's answer, searched by local time), checked around a daylight-saving change:
/// there, a search by local time can step over a wildcard or stepped hour that a fall-back
/// change repeats, or land on the wrong side of `t`. Then the right time is looked for minute by
/// minute (at most a year and a bit).
fn checked(
    cron: &croner::Cron,
    time_zone: Tz,
    t: DateTime<Utc>,
    found: DateTime<Utc>,
    direction: Direction,
) -> Option<DateTime<Utc>> {
    use chrono::Offset;
    let wrong_side = match direction {
        Direction::Forward => found <= t,
        Direction::Backward => found >= t,
    };
    let offset = |at: DateTime<Utc>| at.with_timezone(&time_zone).offset().fix();
    let fixed_time = cron.determine_job_type() == croner::JobType::FixedTime;
    if !wrong_side && (fixed_time || offset(t) == offset(found)) {
        return Some(found);
    }
    let minute = TimeDelta::minutes(1);
    let floor = t.with_second(0)?.with_nanosecond(0)?;
    let (mut at, step) = match direction {
        Direction::Forward => (floor + minute, minute),
        Direction::Backward => (if floor < t { floor } else { floor - minute }, -minute),
    };
    for _ in 0..(400 * 24 * 60) {
        let before_found = match direction {
            Direction::Forward => at < found,
            Direction::Backward => at > found,
        };
        if !wrong_side && !before_found {
            return Some(found);
        }
        if cron
            .is_time_matching(&at.with_timezone(&time_zone))
            .unwrap_or(false)
        {
            return Some(at);
        }
        at += step;
    }
    None
}

/// The first time after `after` on any of `schedules`, with the schedule's own previous time.
pub fn next_due(
    schedules: &[Schedule],
    after: DateTime<Utc>,
) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    schedules
        .iter()
        .filter_map(|s| s.next_after(after).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at)
        .map(|(at, schedule)| (at, schedule.previous_before(at)))
}

/// At most this many missed times are run after downtime (the latest ones).
pub const MAX_CATCHUP: usize = 10_000;

/// The times of `schedules` in `(after, now]`, oldest first, each with its schedule's previous
/// time: all of them with `catchup` (at most the latest [`MAX_CATCHUP`]), else only the latest.
/// What runs after downtime, in a serving program and on the server alike.
///
/// ```
/// use flowkit_api::{Schedule, missed};
/// let hourly = [Schedule::cron("0 * * * *", "UTC").unwrap()];
/// let (after, now) = ("2026-01-01T00:00:00Z".parse().unwrap(), "2026-01-01T03:30:00Z".parse().unwrap());
/// assert_eq!(missed(&hourly, after, now, true).len(), 3);
/// assert_eq!(missed(&hourly, after, now, false)[0].0.to_rfc3339(), "2026-01-01T03:00:00+00:00");
/// ```
pub fn missed(
    schedules: &[Schedule],
    after: DateTime<Utc>,
    now: DateTime<Utc>,
    catchup: bool,
) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    let mut missed = std::collections::VecDeque::new();
    let mut at = after;
    while let Some(next) = next_due(schedules, at).filter(|(t, _)| *t <= now) {
        at = next.0;
        missed.push_back(next);
        if missed.len() > MAX_CATCHUP || (!catchup && missed.len() > 1) {
            missed.pop_front();
        }
    }
    missed.into()
}

/// A data interval `[start, end)`.
pub type Interval = (DateTime<Utc>, DateTime<Utc>);

/// The intervals of a range `[start, end)`: with `chunk` (`"7d"`), consecutive chunks of that
/// length tiling the range (the last one short); else one interval per scheduled time whose
/// interval starts in the range, from that time to the next one (the last may end after `end`).
///
/// ```
/// use flowkit_api::{Schedule, intervals};
/// let start = "2024-01-01T00:00:00Z".parse().unwrap();
/// let end = "2024-01-20T00:00:00Z".parse().unwrap();
/// let weeks = intervals(&[], start, end, Some("7d")).unwrap();
/// assert_eq!(weeks.len(), 3);
/// assert_eq!(weeks[2].1, end); // the last chunk is short
/// let daily = [Schedule::cron("0 0 * * *", "UTC").unwrap()];
/// assert_eq!(intervals(&daily, start, end, None).unwrap().len(), 19);
/// ```
// Each interval is a (start, end) pair: a named type would add to the API for no reader's gain.
pub fn intervals(
    schedules: &[Schedule],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    chunk: Option<&str>,
) -> Result<Vec<Interval>, ScheduleError> {
    let mut out = Vec::new();
    match chunk {
        Some(period) => {
            let step = humantime::parse_duration(period.trim())
                .ok()
                .and_then(|p| TimeDelta::from_std(p).ok())
                .filter(|p| *p >= TimeDelta::seconds(1))
                .ok_or_else(|| ScheduleError::Period(period.to_string()))?;
            let mut at = start;
            while at < end {
                let until = (at + step).min(end);
                out.push((at, until));
                at = until;
            }
        }
        None => {
            let mut at = start - TimeDelta::nanoseconds(1);
            while let Some((open, _)) = next_due(schedules, at).filter(|(t, _)| *t < end) {
                let Some((close, _)) = next_due(schedules, open) else {
                    break;
                };
                out.push((open, close));
                at = open;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().expect("an RFC 3339 time")
    }

    /// The fire times of `schedule` in `[from, to)`.
    fn times(schedule: &Schedule, from: &str, to: &str) -> Vec<String> {
        let (mut at, to) = (utc(from) - TimeDelta::nanoseconds(1), utc(to));
        let mut out = Vec::new();
        while let Some(next) = schedule.next_after(at).filter(|n| *n < to) {
            out.push(next.to_rfc3339());
            at = next;
        }
        out
    }

    #[test]
    fn a_cron_in_a_time_zone_fires_at_the_right_times_across_both_changes_of_a_year() {
        // Europe/Madrid: CET (+1) to CEST (+2) on 29 March 2026 at 02:00 local; back to CET on
        // 25 October 2026 at 03:00 local (02:00-03:00 happens twice).
        let nightly = Schedule::cron("30 2 * * *", "Europe/Madrid").unwrap();
        assert_eq!(
            times(&nightly, "2026-03-27T00:00:00Z", "2026-03-31T00:00:00Z"),
            [
                "2026-03-27T01:30:00+00:00", // 02:30 CET
                "2026-03-28T01:30:00+00:00",
                "2026-03-29T01:00:00+00:00", // 02:30 does not exist: right after the change, 03:00 CEST
                "2026-03-30T00:30:00+00:00", // 02:30 CEST
            ]
        );
        assert_eq!(
            times(&nightly, "2026-10-23T00:00:00Z", "2026-10-27T00:00:00Z"),
            [
                "2026-10-23T00:30:00+00:00", // 02:30 CEST
                "2026-10-24T00:30:00+00:00",
                "2026-10-25T00:30:00+00:00", // 02:30 happens twice: once, at the first (CEST)
                "2026-10-26T01:30:00+00:00", // 02:30 CET
            ]
        );
        // Every 30 minutes follows the wall clock: the skipped hour has no runs, the repeated
        // one has both.
        let often = Schedule::cron("*/30 * * * *", "Europe/Madrid").unwrap();
        assert_eq!(
            times(&often, "2026-03-29T00:30:00Z", "2026-03-29T01:31:00Z"),
            [
                "2026-03-29T00:30:00+00:00", // 01:30 CET
                "2026-03-29T01:00:00+00:00", // 03:00 CEST
                "2026-03-29T01:30:00+00:00",
            ]
        );
        assert_eq!(
            times(&often, "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z").len(),
            4,
            "02:00 and 02:30, twice each"
        );
    }

    #[test]
    fn the_previous_time_gives_a_run_its_interval() {
        let nightly = Schedule::cron("0 2 * * *", "UTC").unwrap();
        let due = utc("2026-11-27T02:00:00Z");
        assert_eq!(
            nightly.previous_before(due),
            Some(utc("2026-11-26T02:00:00Z"))
        );
        let every = Schedule::every("15m").unwrap();
        assert_eq!(
            every.previous_before(utc("2026-11-27T12:15:00Z")),
            Some(utc("2026-11-27T12:00:00Z"))
        );
        assert_eq!(
            every.previous_before(utc("2026-11-27T12:14:00Z")),
            Some(utc("2026-11-27T12:00:00Z"))
        );
        assert_eq!(
            every.next_after(utc("2026-11-27T12:15:00Z")),
            Some(utc("2026-11-27T12:30:00Z"))
        );
        let anchored = Schedule::every("1h")
            .unwrap()
            .anchored_at(utc("2026-01-01T00:20:00Z"));
        assert_eq!(
            anchored.next_after(utc("2026-11-27T12:00:00Z")),
            Some(utc("2026-11-27T12:20:00Z"))
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let error = Schedule::cron("0 2 * *", "UTC").unwrap_err().to_string();
        assert!(error.contains("\"0 2 * *\""), "{error}");
        assert!(Schedule::cron("61 * * * *", "UTC").is_err());
        assert!(
            Schedule::cron("0 0 2 * * *", "UTC").is_err(),
            "no seconds field"
        );
        assert_eq!(
            Schedule::cron("0 2 * * *", "Mars/Olympus").unwrap_err(),
            ScheduleError::TimeZone("Mars/Olympus".into())
        );
        assert!(Schedule::every("soon").is_err());
        assert!(Schedule::every("0s").is_err());
        assert_eq!(
            Schedule::every("1h 30m").unwrap().describe(),
            "every 1h 30m"
        );
        assert_eq!(
            Schedule::cron("0 2 * * *", "Europe/Madrid")
                .unwrap()
                .describe(),
            "0 2 * * * (Europe/Madrid)"
        );
    }
}
