//! Rules as the server holds them, which runs they watch, and when a run misses an SLA: pure
//! functions of a rule, a run and a time, tested without a database or a clock.

use chrono::{DateTime, Utc};
use flowkit_api::automation::{AutomationSpec, Trigger};
use uuid::Uuid;

use crate::store::Run;
use crate::store::automations::AutomationRow;

/// A stored rule, parsed.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its id.
    pub id: Uuid,
    /// The rule.
    pub spec: AutomationSpec,
    /// When it was made: it notifies of nothing that happened before.
    pub created: DateTime<Utc>,
}

impl Rule {
    /// The rule of a stored row (None if the row cannot be read: a newer schema).
    pub fn from_row(row: &AutomationRow) -> Option<Rule> {
        match serde_json::from_str::<AutomationSpec>(&row.spec) {
            Ok(spec) => Some(Rule {
                id: row.id,
                spec,
                created: DateTime::from_timestamp_nanos(row.created_ts),
            }),
            Err(error) => {
                tracing::warn!(%error, name = %row.name, "a stored automation could not be read");
                None
            }
        }
    }

    /// The name the audit trail and the deployment's badge show for it: `automation:<name>`.
    pub fn actor(&self) -> String {
        format!("automation:{}", self.spec.name)
    }
}

/// Whether `run` is one `spec` watches: its flow, deployment and tags, where given.
pub fn matches(spec: &AutomationSpec, run: &Run) -> bool {
    if run.run_type != "flow" {
        return false;
    }
    if spec
        .flow
        .as_ref()
        .is_some_and(|f| run.name.as_deref() != Some(f.as_str()))
    {
        return false;
    }
    if spec
        .deployment
        .as_ref()
        .is_some_and(|d| run.deployment.as_deref() != Some(d.as_str()))
    {
        return false;
    }
    spec.tags.iter().all(|tag| run.tags.contains(tag))
}

/// When `run` missed the SLA of `trigger`, if it has by `now`: for a maximum duration, its start
/// plus that duration, if it still runs after it or ended after it; for a deadline, its logical
/// date (the start of its data interval, else when it was due) plus the deadline, if it had not
/// completed by then.
pub fn sla_missed_at(trigger: &Trigger, run: &Run, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let completed_by = |at: DateTime<Utc>| {
        matches!(run.state.as_str(), "Completed" | "Cached") && run.end.is_some_and(|end| end <= at)
    };
    let mut missed: Option<DateTime<Utc>> = None;
    if let (Some(max), Some(start)) = (trigger.max_duration(), run.start) {
        let at = start + chrono::Duration::from_std(max).ok()?;
        let over = match run.end {
            Some(end) => end > at,
            None => now > at && !ended(&run.state),
        };
        if over {
            missed = Some(at);
        }
    }
    if let (Some(deadline), Some(logical)) =
        (trigger.deadline(), run.interval_start.or(run.scheduled))
    {
        let at = logical + chrono::Duration::from_std(deadline).ok()?;
        if now > at && !completed_by(at) {
            missed = Some(missed.map_or(at, |m| m.min(at)));
        }
    }
    missed
}

fn ended(state: &str) -> bool {
    flowkit_api::states::is_final(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn run(state: &str) -> Run {
        Run {
            id: Uuid::now_v7(),
            run_type: "flow",
            name: Some("etl".into()),
            run_name: None,
            flow_run_id: None,
            parent_flow_run_id: None,
            parent_task_run_id: None,
            state: state.into(),
            message: None,
            attempts: 1,
            created: None,
            start: None,
            end: None,
            duration_ms: None,
            parameters: None,
            tags: vec!["prod".into()],
            upstream: vec![],
            map_index: None,
            retries: None,
            deployment: Some("nightly".into()),
            scheduled: None,
            interval_start: None,
            interval_end: None,
            result: None,
        }
    }

    fn sla(json: &str) -> Trigger {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_run_over_its_maximum_misses_at_its_start_plus_the_maximum() {
        let trigger = sla(r#"{"sla": {"max_duration": "30m"}}"#);
        let mut r = run("Running");
        r.start = Some(at("2026-01-01T00:00:00Z"));
        assert_eq!(
            sla_missed_at(&trigger, &r, at("2026-01-01T00:29:59Z")),
            None
        );
        assert_eq!(
            sla_missed_at(&trigger, &r, at("2026-01-01T00:30:00Z")),
            None
        );
        assert_eq!(
            sla_missed_at(&trigger, &r, at("2026-01-01T00:30:01Z")),
            Some(at("2026-01-01T00:30:00Z"))
        );
        // Ended in time: never missed, whatever the time now.
        r.state = "Completed".into();
        r.end = Some(at("2026-01-01T00:20:00Z"));
        assert_eq!(
            sla_missed_at(&trigger, &r, at("2026-01-02T00:00:00Z")),
            None
        );
        // Ended late (even failing): missed.
        r.state = "Failed".into();
        r.end = Some(at("2026-01-01T00:40:00Z"));
        assert_eq!(
            sla_missed_at(&trigger, &r, at("2026-01-01T00:41:00Z")),
            Some(at("2026-01-01T00:30:00Z"))
        );
        // Not started: no duration yet.
        assert_eq!(
            sla_missed_at(&trigger, &run("Scheduled"), at("2030-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn a_deadline_counts_from_the_logical_date_and_only_completion_meets_it() {
        let trigger = sla(r#"{"sla": {"deadline": "6h"}}"#);
        let mut r = run("Scheduled");
        r.scheduled = Some(at("2026-01-02T00:00:00Z"));
        r.interval_start = Some(at("2026-01-01T00:00:00Z"));
        // From the interval's start, not the due time.
        assert_eq!(
            sla_missed_at(&trigger, &r, at("2026-01-01T05:59:00Z")),
            None
        );
        assert_eq!(
            sla_missed_at(&trigger, &r, at("2026-01-01T06:00:01Z")),
            Some(at("2026-01-01T06:00:00Z"))
        );
        // Without an interval, from the due time.
        r.interval_start = None;
        assert_eq!(
            sla_missed_at(&trigger, &r, at("2026-01-02T05:00:00Z")),
            None
        );
        assert!(sla_missed_at(&trigger, &r, at("2026-01-02T06:00:01Z")).is_some());
        // Completed in time: met.
        r.state = "Completed".into();
        r.end = Some(at("2026-01-02T05:00:00Z"));
        assert_eq!(
            sla_missed_at(&trigger, &r, at("2026-01-03T00:00:00Z")),
            None
        );
        // Failed in time: still missed (it did not complete).
        r.state = "Failed".into();
        assert!(sla_missed_at(&trigger, &r, at("2026-01-03T00:00:00Z")).is_some());
    }

    #[test]
    fn filters_need_the_flow_the_deployment_and_every_tag() {
        let spec = |extra: &str| -> AutomationSpec {
            serde_json::from_str(&format!(
                r#"{{"name": "n", "on": {{"state": ["Failed"]}}, "notify": [{{"webhook": "http://h/"}}]{extra}}}"#
            ))
            .unwrap()
        };
        let r = run("Failed");
        assert!(matches(&spec(""), &r));
        assert!(matches(
            &spec(r#", "flow": "etl", "deployment": "nightly", "tags": ["prod"]"#),
            &r
        ));
        assert!(!matches(&spec(r#", "flow": "other""#), &r));
        assert!(!matches(&spec(r#", "deployment": "hourly""#), &r));
        assert!(!matches(&spec(r#", "tags": ["prod", "eu"]"#), &r));
    }
}
