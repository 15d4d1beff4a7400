//! Concurrency and rate limits shared by every program using one server: what an operator sets
//! (`PUT /api/limits/{name}`), what the dashboard and `flowkit limits ls` show, and the messages
//! programs exchange to take and give back slots and rate tokens.
//!
//! ```
//! use flowkit_api::limits::Rate;
//! let rate: Rate = "10/s".parse().unwrap();
//! assert_eq!((rate.count, rate.per_ms), (10, 1000));
//! assert_eq!(rate.interval(), std::time::Duration::from_millis(100));
//! assert_eq!("30/m".parse::<Rate>().unwrap().to_string(), "30/m");
//! assert!("ten a second".parse::<Rate>().is_err());
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `count` calls per `per_ms` milliseconds: `10/s`, `600/m`, `5/h`, `3/500ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    /// How many calls…
    pub count: u32,
    /// …per this many milliseconds.
    pub per_ms: u64,
}

/// Why a rate did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a rate: write N/s, N/m, N/h or N/<duration> (like 10/s or 3/500ms)")]
pub struct RateError(pub String);

impl Rate {
    /// The time between two calls at this rate (the emission interval).
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(
            (u128::from(self.per_ms) * 1_000_000 / u128::from(self.count.max(1)))
                .try_into()
                .unwrap_or(u64::MAX),
        )
    }
}

impl std::str::FromStr for Rate {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Rate, RateError> {
        let bad = || RateError(text.to_string());
        let (count, per) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per_ms = match per.trim() {
            "s" | "sec" | "second" => 1_000,
            "m" | "min" | "minute" => 60_000,
            "h" | "hour" => 3_600_000,
            "d" | "day" => 86_400_000,
            other => u64::try_from(
                humantime::parse_duration(other)
                    .map_err(|_| bad())?
                    .as_millis(),
            )
            .map_err(|_| bad())?,
        };
        if count == 0 || per_ms == 0 {
            return Err(bad());
        }
        Ok(Rate { count, per_ms })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per_ms {
            1_000 => "s".to_string(),
            60_000 => "m".to_string(),
            3_600_000 => "h".to_string(),
            86_400_000 => "d".to_string(),
            ms => humantime::format_duration(Duration::from_millis(ms)).to_string(),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// What `PUT /api/limits/{name}` sets: a concurrency limit (slots for the task runs tagged
/// `name`), a rate limit (for `flowkit::rate_limit(name)`), or both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// At most this many task runs tagged with the name run at once, across every program.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// At most this many calls of `rate_limit(name)` per period, across every program…
    #[serde(default)]
    pub rate: Option<Rate>,
    /// …with up to this many at once after a quiet spell (default 1).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// A task run holding a slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The task run.
    pub task_run_id: Uuid,
    /// Its flow run, if it has one.
    pub flow_run_id: Option<Uuid>,
    /// Since when.
    pub acquired_at: DateTime<Utc>,
}

/// A limit as `GET /api/limits` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitView {
    /// The tag (concurrency) or name (rate).
    pub name: String,
    /// Its slots, if it limits concurrency.
    pub concurrency: Option<u32>,
    /// Its rate, if it limits calls.
    pub rate: Option<Rate>,
    /// The burst of its rate.
    pub burst: Option<u32>,
    /// The task runs holding its slots, longest first.
    pub holders: Vec<Holder>,
    /// How many task runs wait for a slot.
    pub waiting: u32,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// What programs read to know which tags and names cost a trip to the server
/// (`GET /api/limits/names`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitNames {
    /// The tags with a concurrency limit, and their slots.
    pub concurrency: BTreeMap<String, u32>,
    /// The names with a rate limit.
    pub rate: Vec<String>,
}

/// A program asks for a slot of a tag for a task run (`POST /api/limits/{name}/acquire`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquireRequest {
    /// The program's ticket: its place in line, and the slot's id once granted. Asking again
    /// with the same ticket keeps the place (and answers `granted` if it was).
    pub ticket: Uuid,
    /// The task run that will hold the slot.
    pub task_run_id: Uuid,
    /// Its flow run: the slot is freed when that run's heartbeats stop.
    pub flow_run_id: Option<Uuid>,
}

/// The answer to an acquire: granted, still waiting (ask again with the same ticket), or the
/// tag has no concurrency limit (any more).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquireResponse {
    /// The slot is the caller's: give it back with a release of the same ticket.
    pub granted: bool,
    /// False if the tag has no concurrency limit: run without a slot.
    pub limited: bool,
    /// How many wait before the caller (when not granted).
    pub ahead: u32,
    /// How often the holder must send heartbeats for its run (ms).
    pub heartbeat_ms: u64,
}

/// A program gives back a slot, or its place in line (`POST /api/limits/{name}/release`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// The ticket it acquired with.
    pub ticket: Uuid,
}

/// The answer to taking a rate token (`POST /api/limits/{name}/rate`): how long to wait
/// before going on (the token is the caller's from then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateResponse {
    /// False if the name has no rate limit: go on at once.
    pub limited: bool,
    /// How long to wait, in microseconds.
    pub wait_us: u64,
}
