//! Ordering without data: `wait_for`, `allow_failure` and trigger rules.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use uuid::Uuid;

use crate::State;
use crate::run::{Completion, FlowRun, TaskRun};

/// A run that another run waits for before it starts (Prefect's `wait_for`).
///
/// Made from a `&TaskHandle` or a `&FlowHandle`; wrap it in [`allow_failure`] to go on even if
/// it fails.
///
/// ```
/// use flowkit::{allow_failure, flow, task};
///
/// #[task]
/// async fn create_table() -> Result<(), String> { Err("already exists".into()) }
/// #[task]
/// async fn warm_cache() {}
/// #[task]
/// async fn load() -> u32 { 7 }
///
/// #[flow]
/// async fn pipeline() -> Result<u32, flowkit::RunError<std::convert::Infallible>> {
///     let table = create_table().submit();
///     let cache = warm_cache().submit();
///     // Runs after both, even though `create_table` fails.
///     load().wait_for([allow_failure(&table), (&cache).into()]).await
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// assert_eq!(pipeline().await.unwrap(), 7);
/// # }
/// ```
#[derive(Clone)]
pub struct Upstream {
    pub(crate) run: UpstreamRun,
    pub(crate) allow_failure: bool,
}

#[derive(Clone)]
pub(crate) enum UpstreamRun {
    Task(Arc<TaskRun>),
    Flow(Arc<FlowRun>),
}

impl Upstream {
    pub(crate) fn id(&self) -> Uuid {
        match &self.run {
            UpstreamRun::Task(run) => run.id,
            UpstreamRun::Flow(run) => run.id,
        }
    }

    fn completion(&self) -> &Completion {
        match &self.run {
            UpstreamRun::Task(run) => &run.done,
            UpstreamRun::Flow(run) => &run.done,
        }
    }

    /// How its end counts for a trigger rule (an upstream wrapped in [`allow_failure`] counts
    /// as a success, whatever its state).
    fn outcome(&self, state: State) -> Ended {
        if state.is_success() || self.allow_failure {
            Ended::Succeeded
        } else if state == State::Skipped {
            Ended::Skipped
        } else {
            Ended::Failed
        }
    }
}

/// Waits for a run to end, whatever its state (Prefect's `allow_failure`).
pub fn allow_failure(upstream: impl Into<Upstream>) -> Upstream {
    Upstream {
        allow_failure: true,
        ..upstream.into()
    }
}

/// When a run that waits for upstream runs ([`wait_for`](crate::TaskCall::wait_for)) starts,
/// or is recorded `Skipped` without running (Airflow's trigger rules).
///
/// An upstream run *succeeded* if it ended `Completed` or `Cached` (or is wrapped in
/// [`allow_failure`]); it was *skipped* if it ended `Skipped`; it *failed* if it ended in any
/// other terminal state (`Failed`, `Crashed`, `TimedOut`, `Cancelled`). A run whose rule cannot
/// be met any more is recorded `Skipped`, so that the runs waiting for it see `Skipped` in turn
/// (Airflow's `upstream_failed`). The decision is taken as soon as it is known: a fallback with
/// [`OneFailed`](Self::OneFailed) starts when the first upstream fails. With no upstream, a run
/// always runs.
///
/// ```
/// use flowkit::{TriggerRule, flow, task};
///
/// #[task]
/// async fn extract() -> Result<u32, String> { Err("disk full".into()) }
/// #[task]
/// async fn cleanup() -> &'static str { "temp files removed" }
///
/// #[flow]
/// async fn etl() -> Result<&'static str, flowkit::RunError<std::convert::Infallible>> {
///     let extracted = extract().submit();
///     // The "cleanup always runs" pattern: after every upstream ends, whatever its state.
///     cleanup().wait_for([&extracted]).trigger(TriggerRule::AllDone).await
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// assert_eq!(etl().await.unwrap(), "temp files removed");
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TriggerRule {
    /// Every upstream succeeded (the default; Airflow's `all_success`).
    #[default]
    AllSucceeded,
    /// Every upstream ended, whatever its state (`all_done`): cleanups, reports.
    AllDone,
    /// Every upstream failed (`all_failed`).
    AllFailed,
    /// At least one upstream failed (`one_failed`); starts as soon as one does: fallbacks,
    /// alerts.
    OneFailed,
    /// At least one upstream succeeded (`one_success`); starts as soon as one does.
    OneSucceeded,
    /// No upstream failed: each succeeded or was skipped (`none_failed`).
    NoneFailed,
    /// No upstream was skipped: each succeeded or failed (`none_skipped`).
    NoneSkipped,
}

impl TriggerRule {
    /// The rule's name, as Airflow spells it in snake case (`all_done`).
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSucceeded => "all_succeeded",
            TriggerRule::AllDone => "all_done",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneSucceeded => "one_succeeded",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneSkipped => "none_skipped",
        }
    }

    /// The verdict once this upstream ended `ended`, given the counts so far (including it);
    /// `None` while it cannot be told yet.
    fn decide(self, ended: Ended, counts: &Counts, total: usize) -> Option<Verdict> {
        let all_ended = counts.ended() == total;
        let verdict = match (self, ended) {
            (TriggerRule::AllSucceeded, Ended::Failed | Ended::Skipped) => Verdict::Skip,
            (TriggerRule::AllFailed, Ended::Succeeded | Ended::Skipped) => Verdict::Skip,
            (TriggerRule::NoneFailed, Ended::Failed) => Verdict::Skip,
            (TriggerRule::NoneSkipped, Ended::Skipped) => Verdict::Skip,
            (TriggerRule::OneFailed, Ended::Failed) => Verdict::Run,
            (TriggerRule::OneSucceeded, Ended::Succeeded) => Verdict::Run,
            (TriggerRule::OneFailed | TriggerRule::OneSucceeded, _) if all_ended => Verdict::Skip,
            (_, _) if all_ended => Verdict::Run,
            _ => return None,
        };
        Some(verdict)
    }
}

impl std::fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    Succeeded,
    Failed,
    Skipped,
}

#[derive(Default)]
struct Counts {
    succeeded: usize,
    failed: usize,
    skipped: usize,
}

impl Counts {
    fn add(&mut self, ended: Ended) {
        match ended {
            Ended::Succeeded => self.succeeded += 1,
            Ended::Failed => self.failed += 1,
            Ended::Skipped => self.skipped += 1,
        }
    }

    fn ended(&self) -> usize {
        self.succeeded + self.failed + self.skipped
    }
}

enum Verdict {
    Run,
    Skip,
}

/// Waits until `rule` is met or cannot be: `Err` with the upstream run that decided it and its
/// state if the downstream must not run.
pub(crate) async fn wait_all(
    upstream: &[Upstream],
    rule: TriggerRule,
) -> Result<(), (Uuid, State)> {
    let total = upstream.len();
    let mut counts = Counts::default();
    let mut pending = Vec::new();
    // Those already ended first, in the order given, so that the run blamed does not depend on
    // how futures are polled.
    for up in upstream {
        match up.completion().get() {
            Some(state) => {
                let ended = up.outcome(state);
                counts.add(ended);
                if let Some(verdict) = rule.decide(ended, &counts, total) {
                    return verdict_result(verdict, up, state);
                }
            }
            None => pending.push(up),
        }
    }
    let mut waiting: FuturesUnordered<_> = pending
        .into_iter()
        .map(|up| async move { (up, up.completion().wait().await) })
        .collect();
    while let Some((up, state)) = waiting.next().await {
        let ended = up.outcome(state);
        counts.add(ended);
        if let Some(verdict) = rule.decide(ended, &counts, total) {
            return verdict_result(verdict, up, state);
        }
    }
    Ok(())
}

fn verdict_result(verdict: Verdict, up: &Upstream, state: State) -> Result<(), (Uuid, State)> {
    match verdict {
        Verdict::Run => Ok(()),
        Verdict::Skip => Err((up.id(), state)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verdict of `rule` once every upstream has ended as `ends` says, in that order.
    fn verdict(rule: TriggerRule, ends: &[Ended]) -> Option<bool> {
        let mut counts = Counts::default();
        for &ended in ends {
            counts.add(ended);
            if let Some(verdict) = rule.decide(ended, &counts, ends.len()) {
                return Some(matches!(verdict, Verdict::Run));
            }
        }
        None
    }

    #[test]
    fn each_rule_runs_or_skips_as_airflow_does() {
        use Ended::{Failed as F, Skipped as K, Succeeded as S};
        use TriggerRule::*;
        let cases: &[(TriggerRule, &[Ended], bool)] = &[
            (AllSucceeded, &[S, S], true),
            (AllSucceeded, &[S, F], false),
            (AllSucceeded, &[S, K], false),
            (AllDone, &[F, K], true),
            (AllFailed, &[F, F], true),
            (AllFailed, &[F, S], false),
            (AllFailed, &[F, K], false),
            (OneFailed, &[S, F], true),
            (OneFailed, &[S, K], false),
            (OneSucceeded, &[F, S], true),
            (OneSucceeded, &[F, K], false),
            (NoneFailed, &[S, K], true),
            (NoneFailed, &[S, F], false),
            (NoneSkipped, &[S, F], true),
            (NoneSkipped, &[F, K], false),
        ];
        for (rule, ends, runs) in cases {
            assert_eq!(
                verdict(*rule, ends),
                Some(*runs),
                "{rule} after {} ends",
                ends.len()
            );
        }
    }

    #[test]
    fn a_rule_decides_as_soon_as_it_can() {
        let mut counts = Counts::default();
        counts.add(Ended::Failed);
        assert!(matches!(
            TriggerRule::OneFailed.decide(Ended::Failed, &counts, 3),
            Some(Verdict::Run)
        ));
        assert!(
            TriggerRule::AllDone
                .decide(Ended::Failed, &counts, 3)
                .is_none()
        );
    }
}
