//! Flow calls: running a flow (or a child flow) and the flow-run engine.

use std::future::{Future, IntoFuture};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::context::{CURRENT, Scope, with_current};
use crate::error::RunError;
use crate::events::{EventKind, RunCreated, RunType};
use crate::run::{Attempt, Cancel, Completion, EndGuard, FlowRun, Live, Record, drive};
use crate::task::Outcome;
use crate::upstream::{Upstream, UpstreamRun, wait_all};
use crate::{EventBus, FlowOptions, State};

/// How long a top-level flow run waits, at its end, for its events to reach the sinks.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// The body of a flow: starts one future per attempt. Flow bodies run as their own tokio task,
/// so they are `Send + 'static`.
pub trait FlowBody: Send + 'static {
    /// What one attempt returns.
    type Output: Outcome + Send + 'static;
    /// The future of one attempt.
    type Future: Future<Output = Self::Output> + Send + 'static;
    /// Starts an attempt.
    fn attempt(&mut self) -> Self::Future;
}

impl<F, Fut> FlowBody for F
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Outcome + Send + 'static,
{
    type Output = Fut::Output;
    type Future = Fut;

    fn attempt(&mut self) -> Fut {
        self()
    }
}

/// What awaiting a flow call gives.
pub type FlowResult<B> = Result<
    <<B as FlowBody>::Output as Outcome>::Ok,
    RunError<<<B as FlowBody>::Output as Outcome>::Err>,
>;

/// A call of a `#[flow]` function, not started yet.
///
/// `.await` it to run the flow; called inside another flow or task, it becomes a child flow run
/// linked to its parent. [`submit`](Self::submit) starts it concurrently and gives a
/// [`FlowHandle`] that can cancel it.
///
/// ```
/// use flowkit::{flow, task};
///
/// #[task]
/// async fn square(x: u64) -> u64 { x * x }
///
/// #[flow]
/// async fn sum_of_squares(n: u64) -> u64 {
///     let mut total = 0;
///     for x in 1..=n {
///         total += square(x).await.unwrap_or(0);
///     }
///     total
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// assert_eq!(sum_of_squares(3).await.unwrap(), 14);
/// # }
/// ```
#[must_use = "a flow call does nothing until it is awaited or submitted"]
pub struct FlowCall<B> {
    options: &'static FlowOptions,
    parameters: serde_json::Value,
    body: B,
    upstream: Vec<Upstream>,
    bus: Option<EventBus>,
    scheduled: Option<Arc<crate::serve::ScheduledRun>>,
    /// Whether the options' retries are ignored (a run refused before it started).
    no_retries: bool,
}

impl<B: FlowBody> FlowCall<B>
where
    <B::Output as Outcome>::Ok: Send + 'static,
    <B::Output as Outcome>::Err: std::fmt::Display + Send + 'static,
{
    /// A call of the flow with these options, parameters and body (what `#[flow]` expands to).
    pub fn new(options: &'static FlowOptions, parameters: serde_json::Value, body: B) -> Self {
        FlowCall {
            options,
            parameters,
            body,
            upstream: Vec::new(),
            bus: None,
            scheduled: None,
            no_retries: false,
        }
    }

    /// The bus set with [`on`](Self::on), if any.
    pub(crate) fn bus(&self) -> Option<&EventBus> {
        self.bus.as_ref()
    }

    /// The same call, making one attempt whatever its options say.
    pub(crate) fn without_retries(mut self) -> Self {
        self.no_retries = true;
        self
    }

    /// Runs the flow as the scheduled run `run` (what a [`Deployment`](crate::serve::Deployment)
    /// does): [`RunContext::scheduled`](crate::RunContext::scheduled) gives it inside the run,
    /// and inside its child flows and tasks. If the run has an id (the server's, see
    /// [`ScheduledRun::id`](crate::serve::ScheduledRun::id)), the flow run takes it, so its
    /// events update the server's run.
    ///
    /// ```
    /// use flowkit::{flow, serve::ScheduledRun};
    ///
    /// #[flow]
    /// async fn nightly() -> Option<uuid::Uuid> { flowkit::context()?.flow_run_id() }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # flowkit::Config::new().console(false).init().ok();
    /// let id = uuid::Uuid::now_v7();
    /// let run = ScheduledRun::new("nightly", chrono::Utc::now()).with_id(id);
    /// assert_eq!(nightly().scheduled(run).await.unwrap(), Some(id));
    /// # }
    /// ```
    pub fn scheduled(mut self, run: crate::serve::ScheduledRun) -> Self {
        self.scheduled = Some(Arc::new(run));
        self
    }

    /// Waits for these runs to end before starting (see [`TaskCall::wait_for`](crate::TaskCall::wait_for)).
    pub fn wait_for<U: Into<Upstream>>(mut self, upstream: impl IntoIterator<Item = U>) -> Self {
        self.upstream.extend(upstream.into_iter().map(Into::into));
        self
    }

    /// Sends the events of this flow run, and of every run inside it, to `bus` instead of the
    /// global bus (tests use this with a [`MemorySink`](crate::MemorySink)).
    pub fn on(mut self, bus: &EventBus) -> Self {
        self.bus = Some(bus.clone());
        self
    }

    /// The flow's options.
    pub fn options(&self) -> &'static FlowOptions {
        self.options
    }

    fn prepare(self, scope: Option<&Scope>) -> Prepared<B> {
        let parent_flow = scope.and_then(Scope::flow).cloned();
        let parent_task = match scope {
            Some(Scope::Task(task)) => Some(task.clone()),
            _ => None,
        };
        let bus = match (self.bus, &parent_flow) {
            (Some(bus), _) => bus,
            (None, Some(parent)) => parent.bus.clone(),
            (None, None) => crate::context::default_bus(scope),
        };
        // Recorded on the run a deployment started, not on the child flows that inherit it.
        let scheduled_event = self.scheduled.as_deref().map(|run| {
            Box::new(crate::events::Scheduled {
                deployment: run.deployment().to_string(),
                scheduled_at: run.scheduled_at(),
                interval_start: run.interval().map(|(start, _)| start),
                interval_end: run.interval().map(|(_, end)| end),
            })
        });
        let id = self
            .scheduled
            .as_deref()
            .and_then(crate::serve::ScheduledRun::id)
            .unwrap_or_else(|| crate::ids::new_id(chrono::Utc::now()));
        let run = Arc::new(FlowRun {
            id,
            options: self.options,
            parameters: self.parameters,
            scheduled: self
                .scheduled
                .or_else(|| parent_flow.as_ref().and_then(|p| p.scheduled.clone())),
            bus,
            limiter: self
                .options
                .concurrency_limit
                .map(|n| Semaphore::new(n.min(Semaphore::MAX_PERMITS))),
            attempt: AtomicU32::new(0),
            parent: parent_flow.clone(),
            parent_task,
            live: Live::default(),
            idle: Default::default(),
            cancel: Cancel::default(),
            done: Completion::default(),
            detached: Default::default(),
        });
        let upstream_ids: Vec<Uuid> = self.upstream.iter().map(Upstream::id).collect();
        run.bus.emit_with(Some(run.id), None, || {
            EventKind::RunCreated(Arc::new(RunCreated {
                run_type: RunType::Flow,
                name: run.options.name.clone(),
                run_name: Some(crate::run_name::of_run(
                    run.options.run_name.as_deref(),
                    &run.parameters,
                    run.id,
                )),
                description: run.options.description.clone(),
                parameters: Some(run.parameters.clone()),
                tags: run.options.tags.clone(),
                parent_flow_run_id: run.parent.as_ref().map(|p| p.id),
                parent_task_run_id: run.parent_task.as_ref().map(|task| task.id),
                upstream: upstream_ids,
                map_index: None,
                retries: run.options.retry.retries,
                scheduled: scheduled_event,
            }))
        });
        Prepared {
            no_retries: self.no_retries,
            root: parent_flow.is_none(),
            guard: EndGuard::new(run.clone()),
            run,
            body: self.body,
            upstream: self.upstream,
        }
    }

    /// Starts the flow run now, concurrently; the handle awaits its result or cancels it.
    ///
    /// Dropping the handle cancels the run, unless it was [detached](FlowHandle::detach).
    pub fn submit(self) -> FlowHandle<<B::Output as Outcome>::Ok, <B::Output as Outcome>::Err> {
        let prepared = with_current(|scope| self.prepare(scope));
        let run = prepared.run.clone();
        let join = tokio::spawn(prepared.run_to_end());
        FlowHandle {
            run,
            join: Some(join),
        }
    }
}

impl<B: FlowBody> IntoFuture for FlowCall<B>
where
    <B::Output as Outcome>::Ok: Send + 'static,
    <B::Output as Outcome>::Err: std::fmt::Display + Send + 'static,
{
    type Output = FlowResult<B>;
    type IntoFuture = Pin<Box<dyn Future<Output = FlowResult<B>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { with_current(|scope| self.prepare(scope)).run_to_end().await })
    }
}

struct Prepared<B> {
    no_retries: bool,
    run: Arc<FlowRun>,
    body: B,
    upstream: Vec<Upstream>,
    root: bool,
    guard: EndGuard<FlowRun>,
}

/// The spawned body of one attempt: if the flow run's future is dropped (its parent was
/// cancelled), the body and the runs it detached are stopped too.
struct Body<T> {
    join: JoinHandle<T>,
    run: Arc<FlowRun>,
}

impl<T> Body<T> {
    /// Stops the body and every run it detached.
    fn stop(&self) {
        self.join.abort();
        self.run.abort_detached();
    }
}

impl<T> Drop for Body<T> {
    fn drop(&mut self) {
        if !self.join.is_finished() {
            self.stop();
        }
    }
}

impl<B: FlowBody> Prepared<B>
where
    <B::Output as Outcome>::Ok: Send + 'static,
    <B::Output as Outcome>::Err: std::fmt::Display + Send + 'static,
{
    async fn run_to_end(self) -> FlowResult<B> {
        let Prepared {
            no_retries,
            run,
            mut body,
            upstream,
            root,
            guard,
        } = self;
        let _guard = guard;
        // Cancellable (by Ctrl-C too) from the start, including while it waits for upstreams.
        let _registration = root.then(|| crate::cancel::register(&run));
        let waited = tokio::select! {
            waited = wait_all(&upstream) => waited,
            _ = run.cancel.cancelled() => {
                run.end(State::Cancelled, 0, Some("cancelled before it started".into()));
                return Err(RunError::Cancelled {
                    run_type: RunType::Flow,
                    name: run.options.name.clone(),
                    run_id: run.id,
                });
            }
        };
        if let Err((upstream_id, upstream_state)) = waited {
            let error = RunError::UpstreamFailed {
                run_type: RunType::Flow,
                name: run.options.name.clone(),
                run_id: run.id,
                upstream: upstream_id,
                upstream_state,
            };
            run.end(State::Skipped, 0, Some(error.to_string()));
            return Err(error);
        }
        drop(upstream);
        let timeout = run.options.timeout;
        let start = |attempt: u32| {
            let span = tracing::info_span!(
                "flow_run",
                flow = %run.options.name,
                flow_run_id = %run.id,
                attempt,
            );
            let attempt_future = CURRENT
                .scope(
                    Scope::Flow(run.clone()),
                    AssertUnwindSafe(body.attempt()).catch_unwind(),
                )
                .instrument(span);
            let mut body = Body {
                join: tokio::spawn(attempt_future),
                run: run.clone(),
            };
            let run = run.clone();
            async move {
                // The timeout covers the body and the runs it leaves behind (detached ones).
                let body_and_runs = async {
                    let finished = (&mut body.join).await;
                    run.wait_idle().await;
                    finished
                };
                let finished = tokio::select! {
                    biased;
                    _ = run.cancel.cancelled() => None,
                    finished = run_limited(timeout, body_and_runs) => Some(finished),
                };
                let interrupted = !matches!(finished, Some(Some(_)));
                let outcome = match finished {
                    None => Attempt::Cancelled,
                    Some(None) => Attempt::TimedOut(timeout.unwrap_or_default()),
                    Some(Some(Ok(Ok(output)))) => match output.into_result() {
                        Ok(value) => Attempt::Ok(value),
                        Err(error) => Attempt::Err(error),
                    },
                    Some(Some(Ok(Err(payload)))) => {
                        Attempt::Panicked(crate::run::panic_message(payload))
                    }
                    Some(Some(Err(join_error))) if join_error.is_panic() => {
                        Attempt::Panicked(crate::run::panic_message(join_error.into_panic()))
                    }
                    Some(Some(Err(_))) => Attempt::Cancelled,
                };
                if interrupted {
                    // Cancelled or timed out: stop the body and the runs it detached, then wait
                    // until every run it started has ended, so their last states are recorded
                    // before the flow's.
                    body.stop();
                    if !body.join.is_finished() {
                        let _ = (&mut body.join).await;
                    }
                }
                run.wait_idle().await;
                outcome
            }
        };
        let policy = if no_retries {
            &crate::RetryPolicy::NONE
        } else {
            &run.options.retry
        };
        let result = drive(&*run, policy, start, |_| true).await;
        if root && !run.bus.flush_timeout(FLUSH_LIMIT).await {
            tracing::warn!(
                flow = %run.options.name,
                "flowkit: the event sinks had not finished delivering when the flow run ended (the HTTP sink keeps what the server has not acknowledged in its spool)"
            );
        }
        result
    }
}

/// Awaits `work` within the attempt's timeout; `None` if it ran out.
async fn run_limited<T>(timeout: Option<Duration>, work: impl Future<Output = T>) -> Option<T> {
    match timeout {
        Some(limit) => tokio::time::timeout(limit, work).await.ok(),
        None => Some(work.await),
    }
}

/// A flow run started with [`FlowCall::submit`]: await it for the flow's result, or cancel it.
#[must_use = "dropping a flow handle cancels its run; await it or call .detach()"]
pub struct FlowHandle<T, E> {
    run: Arc<FlowRun>,
    join: Option<JoinHandle<Result<T, RunError<E>>>>,
}

impl<T, E> FlowHandle<T, E> {
    /// The flow run's id.
    pub fn id(&self) -> Uuid {
        self.run.id
    }

    /// The terminal state of the run, once it has ended.
    pub fn state(&self) -> Option<State> {
        self.run.done.get()
    }

    /// Asks the flow run to stop: its body and every run still running under it (task runs,
    /// child flow runs, detached ones) are cancelled and recorded `Cancelled`, each before the
    /// run above it; awaiting the handle then gives [`RunError::Cancelled`].
    pub fn cancel(&self) {
        self.run.cancel.cancel();
    }

    /// Lets the run go on after the handle is dropped. Its parent flow run, if any, still waits
    /// for it before it ends, and still stops it if the parent is cancelled or times out; so
    /// does the task run that submitted it, if a task did.
    pub fn detach(mut self) {
        if let Some(join) = self.join.take() {
            if let Some(task) = &self.run.parent_task {
                task.live.detach(join.abort_handle());
            }
            if let Some(parent) = &self.run.parent {
                parent.detach(join.abort_handle());
            }
        }
    }
}

impl<T, E> Drop for FlowHandle<T, E> {
    fn drop(&mut self) {
        if let Some(join) = &self.join {
            join.abort();
        }
    }
}

impl<T, E> Future for FlowHandle<T, E> {
    type Output = Result<T, RunError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let cancelled = |run: &FlowRun| RunError::Cancelled {
            run_type: RunType::Flow,
            name: run.options.name.clone(),
            run_id: run.id,
        };
        let Some(join) = this.join.as_mut() else {
            return Poll::Ready(Err(cancelled(&this.run)));
        };
        match Pin::new(join).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(error)) if error.is_panic() => Poll::Ready(Err(RunError::Panicked {
                run_type: RunType::Flow,
                name: this.run.options.name.clone(),
                run_id: this.run.id,
                message: crate::run::panic_message(error.into_panic()),
            })),
            Poll::Ready(Err(_)) => Poll::Ready(Err(cancelled(&this.run))),
        }
    }
}

impl<T, E> From<&FlowHandle<T, E>> for Upstream {
    fn from(handle: &FlowHandle<T, E>) -> Self {
        Upstream {
            run: UpstreamRun::Flow(handle.run.clone()),
            allow_failure: false,
        }
    }
}
