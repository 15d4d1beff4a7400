//! The error a task or flow call returns.

use std::borrow::Cow;
use std::time::Duration;

use uuid::Uuid;

use crate::State;
use crate::events::RunType;

/// Why a task run or flow run did not produce a value.
///
/// `E` is the error type of the task's own `Result`; its value is kept, after the last retry, in
/// [`RunError::Failed`]. Timeouts, panics, cancellation and skipped upstreams are their own
/// variants. `RunError<E>` implements [`std::error::Error`] whenever `E` is `Debug + Display`, so
/// `?` turns it into an `anyhow::Error` or into your own error type (with a `From` impl).
///
/// ```
/// use flowkit::{RunError, task};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("source answered {0}")]
/// struct ApiError(u16);
///
/// #[task]
/// async fn fetch() -> Result<u32, ApiError> {
///     Err(ApiError(404))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// match fetch().await {
///     Err(RunError::Failed { error, attempts, .. }) => {
///         assert_eq!(error.0, 404);
///         assert_eq!(attempts, 1);
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// # }
/// ```
#[derive(Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError<E> {
    /// The run's code returned `Err` on its last attempt.
    #[error("{run_type} `{name}` failed after {attempts} attempt{s}: {error}", s = plural(*attempts))]
    Failed {
        /// Flow or task.
        run_type: RunType,
        /// The flow's or task's name.
        name: Cow<'static, str>,
        /// The run's id.
        run_id: Uuid,
        /// How many attempts were made.
        attempts: u32,
        /// The error of the last attempt.
        error: E,
    },
    /// The last attempt ran out of time.
    #[error("{run_type} `{name}` timed out after {} (attempt {attempts})", humanize(*after))]
    TimedOut {
        /// Flow or task.
        run_type: RunType,
        /// The flow's or task's name.
        name: Cow<'static, str>,
        /// The run's id.
        run_id: Uuid,
        /// How many attempts were made.
        attempts: u32,
        /// The timeout of one attempt.
        after: Duration,
    },
    /// The run's code panicked; the panic was caught and the run marked `Crashed`.
    #[error("{run_type} `{name}` panicked: {message}")]
    Panicked {
        /// Flow or task.
        run_type: RunType,
        /// The flow's or task's name.
        name: Cow<'static, str>,
        /// The run's id.
        run_id: Uuid,
        /// The panic's message.
        message: String,
    },
    /// The run was cancelled (its flow run was cancelled, or its handle dropped).
    #[error("{run_type} `{name}` was cancelled")]
    Cancelled {
        /// Flow or task.
        run_type: RunType,
        /// The flow's or task's name.
        name: Cow<'static, str>,
        /// The run's id.
        run_id: Uuid,
    },
    /// The run never started: a run it waited for did not complete.
    #[error("{run_type} `{name}` was skipped: upstream run {upstream} ended {upstream_state}{}", rule_suffix(*trigger))]
    UpstreamFailed {
        /// Flow or task.
        run_type: RunType,
        /// The flow's or task's name.
        name: Cow<'static, str>,
        /// The run's id.
        run_id: Uuid,
        /// The upstream run that did not complete.
        upstream: Uuid,
        /// The state it ended in.
        upstream_state: State,
        /// The trigger rule that was not met.
        trigger: crate::TriggerRule,
    },
    /// The result store could not be used: a task's result could not be stored (after its
    /// last attempt) or read, or a flow run to resume was not found. The run ends `Failed`.
    #[error("{run_type} `{name}` failed after {attempts} attempt{s}: {error}", s = plural(*attempts))]
    ResultStore {
        /// Flow or task.
        run_type: RunType,
        /// The flow's or task's name.
        name: Cow<'static, str>,
        /// The run's id.
        run_id: Uuid,
        /// How many attempts were made (0 if none ran).
        attempts: u32,
        /// What the store said (boxed: it is rare, and every `RunError` would carry its size).
        error: Box<crate::ResultStoreError>,
    },
}

/// The parts of a [`RunError::Failed`].
struct Failed<E> {
    run_type: RunType,
    name: Cow<'static, str>,
    run_id: Uuid,
    attempts: u32,
    error: E,
}

/// How a skip names its trigger rule: nothing for the default one.
fn rule_suffix(rule: crate::TriggerRule) -> String {
    match rule {
        crate::TriggerRule::AllSucceeded => String::new(),
        rule => format!(" (trigger rule {rule})"),
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub(crate) fn humanize(d: Duration) -> String {
    let ms = (d.as_secs_f64() * 1000.0).round() as u128;
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        if ms.is_multiple_of(1_000) {
            format!("{s:.0}s")
        } else {
            format!("{s:.2}s")
        }
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

impl<E> RunError<E> {
    /// The task's own error, if the run failed with one.
    pub fn error(&self) -> Option<&E> {
        match self {
            RunError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The task's own error by value, if the run failed with one.
    pub fn into_error(self) -> Option<E> {
        match self {
            RunError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The id of the run that failed.
    pub fn run_id(&self) -> Uuid {
        match self {
            RunError::Failed { run_id, .. }
            | RunError::TimedOut { run_id, .. }
            | RunError::Panicked { run_id, .. }
            | RunError::Cancelled { run_id, .. }
            | RunError::UpstreamFailed { run_id, .. }
            | RunError::ResultStore { run_id, .. } => *run_id,
        }
    }

    /// The name of the flow or task that failed.
    pub fn name(&self) -> &str {
        match self {
            RunError::Failed { name, .. }
            | RunError::TimedOut { name, .. }
            | RunError::Panicked { name, .. }
            | RunError::Cancelled { name, .. }
            | RunError::UpstreamFailed { name, .. }
            | RunError::ResultStore { name, .. } => name,
        }
    }

    /// The terminal state the run ended in.
    pub fn state(&self) -> State {
        match self {
            RunError::Failed { .. } => State::Failed,
            RunError::TimedOut { .. } => State::TimedOut,
            RunError::Panicked { .. } => State::Crashed,
            RunError::Cancelled { .. } => State::Cancelled,
            RunError::UpstreamFailed { .. } => State::Skipped,
            RunError::ResultStore { .. } => State::Failed,
        }
    }

    /// True if the run timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RunError::TimedOut { .. })
    }

    /// True if the run's code panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, RunError::Panicked { .. })
    }

    /// True if the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, RunError::Cancelled { .. })
    }

    /// The result store's error, if the run failed because the store could not be used.
    pub fn result_store_error(&self) -> Option<&crate::ResultStoreError> {
        match self {
            RunError::ResultStore { error, .. } => Some(error),
            _ => None,
        }
    }

    /// True if the run never started because a run it waited for did not complete.
    pub fn is_upstream_failed(&self) -> bool {
        matches!(self, RunError::UpstreamFailed { .. })
    }

    /// For [`RunError::UpstreamFailed`], the upstream run that did not complete and the state
    /// it ended in.
    pub fn upstream(&self) -> Option<(Uuid, State)> {
        match self {
            RunError::UpstreamFailed {
                upstream,
                upstream_state,
                ..
            } => Some((*upstream, *upstream_state)),
            _ => None,
        }
    }

    /// This error with another error type, when it holds no error value (every case but
    /// `Failed`); the parts of `Failed` are given back.
    fn without_error<F>(self) -> Result<RunError<F>, Failed<E>> {
        match self {
            RunError::Failed {
                run_type,
                name,
                run_id,
                attempts,
                error,
            } => Err(Failed {
                run_type,
                name,
                run_id,
                attempts,
                error,
            }),
            RunError::TimedOut {
                run_type,
                name,
                run_id,
                attempts,
                after,
            } => Ok(RunError::TimedOut {
                run_type,
                name,
                run_id,
                attempts,
                after,
            }),
            RunError::Panicked {
                run_type,
                name,
                run_id,
                message,
            } => Ok(RunError::Panicked {
                run_type,
                name,
                run_id,
                message,
            }),
            RunError::Cancelled {
                run_type,
                name,
                run_id,
            } => Ok(RunError::Cancelled {
                run_type,
                name,
                run_id,
            }),
            RunError::UpstreamFailed {
                run_type,
                name,
                run_id,
                upstream,
                upstream_state,
                trigger,
            } => Ok(RunError::UpstreamFailed {
                run_type,
                name,
                run_id,
                upstream,
                upstream_state,
                trigger,
            }),
            RunError::ResultStore {
                run_type,
                name,
                run_id,
                attempts,
                error,
            } => Ok(RunError::ResultStore {
                run_type,
                name,
                run_id,
                attempts,
                error,
            }),
        }
    }

    /// Maps the task's own error, keeping every other case.
    pub fn map_err<F>(self, f: impl FnOnce(E) -> F) -> RunError<F> {
        match self.without_error() {
            Ok(other) => other,
            Err(Failed {
                run_type,
                name,
                run_id,
                attempts,
                error,
            }) => RunError::Failed {
                run_type,
                name,
                run_id,
                attempts,
                error: f(error),
            },
        }
    }
}

impl<E> RunError<RunError<E>> {
    /// The error of a flow whose own error type is `RunError<E>` (its body used `?` on task
    /// calls), one level down: the task run's (or child flow run's) error that the flow failed
    /// with, or, when the flow ended for a reason of its own (it timed out, panicked, was
    /// cancelled or skipped), the flow's error in the same case.
    ///
    /// After it, `run_id()` and `name()` are those of the run that failed: the task's, or the
    /// flow's for its own reasons. Deeper nesting (a flow returning its child flow's error)
    /// flattens one level per call.
    ///
    /// ```
    /// use flowkit::{RunError, flow, task};
    ///
    /// #[task]
    /// async fn extract() -> Result<u32, String> { Err("HTTP 503".into()) }
    ///
    /// #[task]
    /// async fn load(rows: u32) -> Result<(), String> { Ok(()) }
    ///
    /// #[flow]
    /// async fn etl() -> Result<(), RunError<String>> {
    ///     let rows = extract().submit();
    ///     load(0).wait_for([&rows]).await // skipped: `extract` failed
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (result, _) = flowkit::testing::capture(|| etl()).await;
    /// // Without `flatten`: Err(RunError::Failed { error: RunError::UpstreamFailed { .. }, .. })
    /// let error = result.map_err(RunError::flatten).unwrap_err();
    /// assert!(error.is_upstream_failed());
    /// assert_eq!(error.name(), "load");
    /// # }
    /// ```
    pub fn flatten(self) -> RunError<E> {
        match self.without_error() {
            Ok(own) => own,
            Err(failed) => failed.error,
        }
    }
}
