//! Automations: rules the server evaluates on its own. When a flow run ends in a failing state,
//! when a deployment's run is late, or when a run misses its SLA, it sends a notification (a
//! generic JSON webhook, or Slack's incoming-webhook format); a rule can also pause a
//! deployment after N consecutive failures (the circuit breaker).
//!
//! A rule as JSON (`POST /api/automations`):
//!
//! ```
//! use flowkit_api::automation::{AutomationSpec, Target, Trigger};
//! let rule: AutomationSpec = serde_json::from_str(r#"{
//!     "name": "etl-failures",
//!     "on": {"state": ["Failed", "Crashed", "TimedOut"]},
//!     "deployment": "nightly",
//!     "notify": [{"slack": "https://hooks.slack.com/services/T0/B0/x"}],
//!     "pause_after": 3
//! }"#).unwrap();
//! assert!(matches!(rule.on, Trigger::State(ref states) if states.len() == 3));
//! assert!(matches!(rule.notify[0], Target::Slack(_)));
//! assert_eq!(rule.check(), Ok(()));
//!
//! let late: AutomationSpec =
//!     serde_json::from_str(r#"{"name": "late", "on": {"late": "5m"}, "notify": [{"webhook": "http://127.0.0.1:9/x"}]}"#)
//!         .unwrap();
//! assert_eq!(late.on.grace(), Some(std::time::Duration::from_secs(300)));
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The states a flow run can end in, which a `state` trigger may name; those that count as
/// failures for the circuit breaker.
pub use crate::states::{END_STATES, FAILURE_STATES};

/// A rule: when it fires (`on`), which runs it watches (`flow`, `deployment`, `tags`: all that
/// are given must hold), whom it tells (`notify`) and whether it pauses the deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutomationSpec {
    /// Its unique name (shown in notifications and the audit trail).
    pub name: String,
    /// When it fires.
    pub on: Trigger,
    /// Only runs of this flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Only runs of this deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Only runs carrying every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Where notifications go.
    #[serde(default)]
    pub notify: Vec<Target>,
    /// The circuit breaker (with a `state` trigger): pause the run's deployment when its last
    /// this-many ended runs all failed (Failed, Crashed or TimedOut), and notify that it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after: Option<u32>,
}

/// When a rule fires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A flow run enters one of these states (`{"state": ["Failed", "Crashed", "TimedOut"]}`).
    State(Vec<String>),
    /// A deployment's run is still waiting for a worker this long after it was due
    /// (`{"late": "5m"}`).
    Late(String),
    /// A run misses its service level (`{"sla": {"max_duration": "30m"}}` or
    /// `{"sla": {"deadline": "6h"}}`).
    Sla(Sla),
}

/// A service level: a run must end within `max_duration` of its start, or (a deployment's
/// run) complete within `deadline` of its logical date (the start of its data interval, else
/// the time it was due). Either or both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    /// Longest a run may take from its start (`"30m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
    /// How long after its logical date a run must have completed (`"30h"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

/// Where a notification goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A `POST` of a [`Notification`] as JSON to this URL.
    Webhook(String),
    /// A `POST` in Slack's incoming-webhook format (`text` and `blocks`) to this URL.
    Slack(String),
}

impl Target {
    /// `webhook` or `slack`.
    pub fn format(&self) -> &'static str {
        match self {
            Target::Webhook(_) => "webhook",
            Target::Slack(_) => "slack",
        }
    }

    /// The URL it posts to.
    pub fn url(&self) -> &str {
        match self {
            Target::Webhook(url) | Target::Slack(url) => url,
        }
    }
}

fn duration(field: &str, text: &str) -> Result<Duration, (String, String)> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err((field.into(), "must be more than zero".into())),
        Ok(d) => Ok(d),
        Err(error) => Err((
            field.into(),
            format!("{error} (write it like 30s, 5m or 2h)"),
        )),
    }
}

impl Trigger {
    /// `state`, `late` or `sla`.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::State(_) => "state",
            Trigger::Late(_) => "late",
            Trigger::Sla(_) => "sla",
        }
    }

    /// A `late` trigger's grace.
    pub fn grace(&self) -> Option<Duration> {
        match self {
            Trigger::Late(text) => humantime::parse_duration(text).ok(),
            _ => None,
        }
    }

    /// An `sla` trigger's maximum duration.
    pub fn max_duration(&self) -> Option<Duration> {
        match self {
            Trigger::Sla(sla) => sla
                .max_duration
                .as_deref()
                .and_then(|t| humantime::parse_duration(t).ok()),
            _ => None,
        }
    }

    /// An `sla` trigger's deadline after the logical date.
    pub fn deadline(&self) -> Option<Duration> {
        match self {
            Trigger::Sla(sla) => sla
                .deadline
                .as_deref()
                .and_then(|t| humantime::parse_duration(t).ok()),
            _ => None,
        }
    }

    /// A few words: `state in Failed, Crashed`, `late by 5m`, `sla: max 30m`.
    pub fn describe(&self) -> String {
        match self {
            Trigger::State(states) => format!("enters {}", states.join(" | ")),
            Trigger::Late(grace) => format!("late by {grace}"),
            Trigger::Sla(sla) => {
                let mut parts = Vec::new();
                if let Some(max) = &sla.max_duration {
                    parts.push(format!("longer than {max}"));
                }
                if let Some(deadline) = &sla.deadline {
                    parts.push(format!("not done {deadline} after its logical date"));
                }
                format!("SLA: {}", parts.join(" or "))
            }
        }
    }
}

impl AutomationSpec {
    /// Whether the rule makes sense; else the field to blame and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, message: &str| Err((field.to_string(), message.to_string()));
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return bad("name", "must be 1 to 200 characters");
        }
        match &self.on {
            Trigger::State(states) => {
                if states.is_empty() {
                    return bad("on.state", "name at least one state, like Failed");
                }
                if let Some(wrong) = states.iter().find(|s| !END_STATES.contains(&s.as_str())) {
                    return Err((
                        "on.state".into(),
                        format!(
                            "{wrong:?} is not a state a run ends in: expected one of {}",
                            END_STATES.join(", ")
                        ),
                    ));
                }
            }
            Trigger::Late(grace) => {
                duration("on.late", grace)?;
            }
            Trigger::Sla(sla) => {
                if sla.max_duration.is_none() && sla.deadline.is_none() {
                    return bad("on.sla", "give max_duration, deadline or both");
                }
                if let Some(max) = &sla.max_duration {
                    duration("on.sla.max_duration", max)?;
                }
                if let Some(deadline) = &sla.deadline {
                    duration("on.sla.deadline", deadline)?;
                }
            }
        }
        if let Some(n) = self.pause_after {
            if !matches!(self.on, Trigger::State(_)) {
                return bad("pause_after", "the circuit breaker needs a state trigger");
            }
            if n == 0 {
                return bad("pause_after", "must be at least 1");
            }
        }
        if self.notify.is_empty() && self.pause_after.is_none() {
            return bad("notify", "give a target to notify (or pause_after)");
        }
        if self.notify.len() > 10 {
            return bad("notify", "at most 10 targets");
        }
        for (i, target) in self.notify.iter().enumerate() {
            let url = target.url();
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2000 {
                return Err((
                    format!("notify[{i}]"),
                    "must be an http:// or https:// URL".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A rule as listed (`GET /api/automations`). Targets' URLs show only their scheme and host:
/// a Slack webhook's path is its secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutomationView {
    /// Its id.
    pub id: Uuid,
    /// The rule (targets' paths hidden).
    #[serde(flatten)]
    pub spec: AutomationSpec,
    /// When it was made …
    pub created_at: DateTime<Utc>,
    /// … and by which key.
    pub created_by: String,
}

/// What happened, in a [`Notification`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A flow run entered a state the rule names.
    State,
    /// A deployment's run waits past its due time and the grace.
    Late,
    /// A run missed its SLA.
    Sla,
    /// The circuit breaker paused a deployment.
    Breaker,
}

/// The JSON body a `webhook` target receives (`Content-Type: application/json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The rule that fired.
    pub automation: String,
    /// What happened.
    pub kind: NotificationKind,
    /// One line, for people: `etl run brave-otter (nightly) is Failed: boom`.
    pub summary: String,
    /// When the server noticed.
    pub at: DateTime<Utc>,
    /// The flow run it is about.
    pub flow_run: Option<RunSummary>,
    /// The deployment it is about (the breaker's, a late run's).
    pub deployment: Option<String>,
    /// The link to the run's page (or the deployment's) on the dashboard.
    pub url: Option<String>,
}

/// A flow run, as a [`Notification`] shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The flow run's id.
    pub id: Uuid,
    /// Its flow.
    pub flow: String,
    /// Its human-readable name.
    pub run_name: Option<String>,
    /// Its state now.
    pub state: String,
    /// Its state's message (the error, for a failure), at most 1,000 characters.
    pub message: Option<String>,
    /// The deployment that made it.
    pub deployment: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// When it was due (a deployment's run).
    pub scheduled: Option<DateTime<Utc>>,
    /// When it started.
    pub start: Option<DateTime<Utc>>,
    /// When it ended.
    pub end: Option<DateTime<Utc>>,
}

/// One try of a delivery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptView {
    /// Which try (from 1).
    pub attempt: u32,
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The HTTP status the target answered, if it answered.
    pub status_code: Option<u16>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub millis: u64,
}

/// A notification to one target and how its delivery went (`GET /api/deliveries`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// Its id (UUID v7: ids sort by time).
    pub id: Uuid,
    /// The rule that made it.
    pub automation: String,
    /// `webhook` or `slack`.
    pub format: String,
    /// Where it goes (scheme and host).
    pub target: String,
    /// What it says.
    pub summary: String,
    /// The flow run it is about.
    pub flow_run_id: Option<Uuid>,
    /// The deployment it is about.
    pub deployment: Option<String>,
    /// `pending` (to be tried, or again), `delivered`, or `failed` (gave up).
    pub status: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was delivered, or given up.
    pub done_at: Option<DateTime<Utc>>,
    /// Its tries, first first.
    pub attempts: Vec<AttemptView>,
}

/// A URL with its path, query and credentials hidden: `https://hooks.slack.com/…`.
///
/// ```
/// assert_eq!(flowkit_api::automation::redact("https://hooks.slack.com/services/T/B/x"), "https://hooks.slack.com/…");
/// assert_eq!(flowkit_api::automation::redact("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
/// ```
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "…".into();
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let tail = if path.is_empty() || path == "/" {
        path
    } else {
        "/…"
    };
    format!("{scheme}://{host}{tail}")
}
