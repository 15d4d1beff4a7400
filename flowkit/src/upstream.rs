//! Ordering without data: `wait_for` and `allow_failure`.

use std::sync::Arc;

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

    /// Waits for the upstream run to end; `Err` with its state if the downstream must not run.
    pub(crate) async fn wait(&self) -> Result<(), State> {
        let state = self.completion().wait().await;
        if state.is_success() || self.allow_failure {
            Ok(())
        } else {
            Err(state)
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

/// Waits for every upstream; the first that did not succeed (and is not allowed to fail).
pub(crate) async fn wait_all(upstream: &[Upstream]) -> Result<(), (Uuid, State)> {
    for up in upstream {
        up.wait().await.map_err(|state| (up.id(), state))?;
    }
    Ok(())
}
