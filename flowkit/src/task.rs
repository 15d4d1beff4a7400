//! Task calls: awaiting a task inline, submitting it, and the task-run engine.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::task::{Context, Poll};

use futures::FutureExt;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::context::{CURRENT, Scope, with_current};
use crate::error::RunError;
use crate::events::{EventKind, RunCreated, RunType};
use crate::run::{Attempt, Completion, EndGuard, Live, Record, TaskRun, drive};
use crate::upstream::{Upstream, UpstreamRun, wait_all};
use crate::{EventBus, State, TaskOptions};

/// The value-or-error of a task's body: implemented for `Result<T, E>`.
///
/// The `#[task]` macro wraps the body of a task that returns no `Result` in
/// `Ok::<_, Infallible>`, so every task body has an `Outcome`.
pub trait Outcome {
    /// The success value.
    type Ok;
    /// The task's own error.
    type Err;
    /// Splits it into a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E> Outcome for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Result<T, E> {
        self
    }
}

/// The body of a task: a closure that starts one future per attempt, and a `retry_if`
/// predicate saying which errors are worth a retry.
pub trait TaskBody: Send {
    /// What one attempt returns.
    type Output: Outcome;
    /// The future of one attempt.
    type Future: Future<Output = Self::Output> + Send;
    /// Starts an attempt.
    type Start: FnMut() -> Self::Future + Send;
    /// True if an error may be retried.
    type RetryIf: Fn(&<Self::Output as Outcome>::Err) -> bool + Send;
    /// Splits the body into its two parts.
    fn into_parts(self) -> (Self::Start, Self::RetryIf);
}

/// A [`TaskBody`] made of a closure that starts attempts and a `retry_if` predicate.
pub struct Body<F, P> {
    start: F,
    retry_if: P,
}

impl<F, P> Body<F, P> {
    /// Pairs an attempt-starting closure with a `retry_if` predicate.
    pub fn new(start: F, retry_if: P) -> Self {
        Body { start, retry_if }
    }
}

impl<F, Fut, P> TaskBody for Body<F, P>
where
    F: FnMut() -> Fut + Send,
    Fut: Future + Send,
    Fut::Output: Outcome,
    P: Fn(&<Fut::Output as Outcome>::Err) -> bool + Send,
{
    type Output = Fut::Output;
    type Future = Fut;
    type Start = F;
    type RetryIf = P;

    fn into_parts(self) -> (F, P) {
        (self.start, self.retry_if)
    }
}

/// What awaiting a task call gives: the task's value, or why there is none.
pub type TaskResult<B> = Result<
    <<B as TaskBody>::Output as Outcome>::Ok,
    RunError<<<B as TaskBody>::Output as Outcome>::Err>,
>;

/// A call of a `#[task]` function, not started yet.
///
/// `.await` it to run the task inline as a tracked task run, or [`submit`](Self::submit) it to
/// run it concurrently. `'a` is the lifetime of borrowed arguments: a task may borrow when it is
/// awaited inline, and must own its arguments to be submitted.
///
/// ```
/// use flowkit::task;
///
/// #[task(retries = 2, retry_delay = "1s")]
/// async fn total(rows: &[u32]) -> u32 { rows.iter().sum() }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// let rows = vec![1, 2, 3];
/// assert_eq!(total(&rows).await.unwrap(), 6);
/// # }
/// ```
#[must_use = "a task call does nothing until it is awaited or submitted"]
pub struct TaskCall<'a, B> {
    options: &'static TaskOptions,
    body: B,
    upstream: Vec<Upstream>,
    bus: Option<EventBus>,
    map_index: Option<u64>,
    _borrows: PhantomData<&'a ()>,
}

impl<'a, B: TaskBody + 'a> TaskCall<'a, B> {
    /// A call of the task with these options and this body (what `#[task]` expands to).
    pub fn new(options: &'static TaskOptions, body: B) -> Self {
        TaskCall {
            options,
            body,
            upstream: Vec::new(),
            bus: None,
            map_index: None,
            _borrows: PhantomData,
        }
    }

    /// Waits for these runs to end before starting; if one of them fails (and is not wrapped in
    /// [`allow_failure`](crate::allow_failure)), this run is `Skipped` and returns
    /// [`RunError::UpstreamFailed`].
    pub fn wait_for<U: Into<Upstream>>(mut self, upstream: impl IntoIterator<Item = U>) -> Self {
        self.upstream.extend(upstream.into_iter().map(Into::into));
        self
    }

    /// Sends the events of this run to `bus` when it runs outside any flow (inside a flow, the
    /// flow's bus is used).
    pub fn on(mut self, bus: &EventBus) -> Self {
        self.bus = Some(bus.clone());
        self
    }

    pub(crate) fn with_map_index(mut self, index: u64) -> Self {
        self.map_index = Some(index);
        self
    }

    /// The task's options.
    pub fn options(&self) -> &'static TaskOptions {
        self.options
    }

    fn prepare(self, scope: Option<&Scope>) -> Prepared<B> {
        let (flow, parent_task) = match scope {
            Some(Scope::Flow(flow)) => (Some(flow.clone()), None),
            Some(Scope::Task(task)) => (task.flow.clone(), Some(task.clone())),
            None => (None, None),
        };
        let own_bus = match (&flow, self.bus) {
            (Some(_), _) => EventBus::disabled(),
            (None, Some(bus)) => bus,
            (None, None) => crate::context::default_bus(scope),
        };
        let now = chrono::Utc::now();
        let run = Arc::new(TaskRun {
            id: crate::ids::new_id(now),
            options: self.options,
            flow,
            parent_task,
            own_bus,
            attempt: AtomicU32::new(0),
            map_index: self.map_index,
            done: Completion::default(),
            live: Live::default(),
        });
        let upstream_ids: Vec<Uuid> = self.upstream.iter().map(Upstream::id).collect();
        run.bus().emit_at(now, run.flow_run_id(), Some(run.id), || {
            EventKind::RunCreated(Arc::new(RunCreated {
                run_type: RunType::Task,
                name: run.options.name.clone(),
                run_name: None,
                description: None,
                parameters: None,
                tags: run.options.tags.clone(),
                parent_flow_run_id: None,
                parent_task_run_id: run.parent_task.as_ref().map(|task| task.id),
                upstream: upstream_ids,
                map_index: run.map_index,
                retries: run.options.retry.retries,
                scheduled: None,
            }))
        });
        let guard = EndGuard::new(run.clone());
        // Only the flow's own task runs take a concurrency slot: a task waiting for its
        // sub-tasks must not hold a slot they need.
        let takes_slot = matches!(scope, Some(Scope::Flow(_)));
        Prepared {
            run,
            body: self.body,
            upstream: self.upstream,
            takes_slot,
            guard,
        }
    }

    /// Starts the task run now, concurrently, and returns a handle to await its result.
    ///
    /// Dropping the handle cancels the run (as dropping any future would); call
    /// [`TaskHandle::detach`] to let it finish on its own. Needs a tokio runtime.
    pub fn submit(self) -> TaskHandle<<B::Output as Outcome>::Ok, <B::Output as Outcome>::Err>
    where
        B: 'static,
        B::Output: 'static,
        <B::Output as Outcome>::Ok: Send + 'static,
        <B::Output as Outcome>::Err: std::fmt::Display + Send + 'static,
    {
        let prepared = with_current(|scope| self.prepare(scope));
        let run = prepared.run.clone();
        let fut = prepared.run_to_end();
        let join = tokio::spawn(fut);
        TaskHandle {
            run,
            join: Some(join),
        }
    }
}

impl<'a, B> IntoFuture for TaskCall<'a, B>
where
    B: TaskBody + 'a,
    <B::Output as Outcome>::Ok: Send + 'a,
    <B::Output as Outcome>::Err: std::fmt::Display + Send + 'a,
{
    type Output = TaskResult<B>;
    type IntoFuture = Pin<Box<dyn Future<Output = TaskResult<B>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { with_current(|scope| self.prepare(scope)).run_to_end().await })
    }
}

struct Prepared<B> {
    run: Arc<TaskRun>,
    body: B,
    upstream: Vec<Upstream>,
    takes_slot: bool,
    guard: EndGuard<TaskRun>,
}

impl<B: TaskBody> Prepared<B>
where
    <B::Output as Outcome>::Err: std::fmt::Display,
{
    async fn run_to_end(self) -> TaskResult<B> {
        let Prepared {
            run,
            body,
            upstream,
            takes_slot,
            guard,
        } = self;
        let _guard = guard;
        if let Err((upstream_id, upstream_state)) = wait_all(&upstream).await {
            let error = RunError::UpstreamFailed {
                run_type: RunType::Task,
                name: run.options.name.clone(),
                run_id: run.id,
                upstream: upstream_id,
                upstream_state,
            };
            run.end(State::Skipped, 0, Some(error.to_string()));
            return Err(error);
        }
        drop(upstream);
        let limiter = match (&run.flow, takes_slot) {
            (Some(flow), true) => flow.limiter.as_ref(),
            _ => None,
        };
        let _slot = match limiter {
            Some(limiter) => limiter.acquire().await.ok(),
            None => None,
        };
        let (mut start_attempt, retry_if) = body.into_parts();
        let timeout = run.options.timeout;
        let start = |attempt: u32| {
            let span = tracing::info_span!(
                "task_run",
                task = %run.options.name,
                task_run_id = %run.id,
                attempt,
            );
            let attempt_future = CURRENT
                .scope(
                    Scope::Task(run.clone()),
                    AssertUnwindSafe(start_attempt()).catch_unwind(),
                )
                .instrument(span);
            // A timed-out attempt stops the runs it detached, as a flow's timeout does.
            let timed = timeout.map(|limit| (limit, run.clone()));
            async move {
                let outcome = match timed {
                    // Boxed: a timer is large, and only runs with a timeout need one.
                    Some((limit, run)) => {
                        match Box::pin(tokio::time::timeout(limit, attempt_future)).await {
                            Ok(outcome) => outcome,
                            Err(_) => {
                                run.live.abort_detached();
                                return Attempt::TimedOut(limit);
                            }
                        }
                    }
                    None => attempt_future.await,
                };
                match outcome {
                    Ok(output) => match output.into_result() {
                        Ok(value) => Attempt::Ok(value),
                        Err(error) => Attempt::Err(error),
                    },
                    Err(payload) => Attempt::Panicked(crate::run::panic_message(payload)),
                }
            }
        };
        drive(&*run, &run.options.retry, start, retry_if).await
    }
}

/// A task run started with [`TaskCall::submit`]: await it for the task's result.
///
/// Dropping the handle cancels the run, unless it was [detached](Self::detach).
#[must_use = "dropping a task handle cancels its run; await it or call .detach()"]
pub struct TaskHandle<T, E> {
    run: Arc<TaskRun>,
    join: Option<JoinHandle<Result<T, RunError<E>>>>,
}

impl<T, E> TaskHandle<T, E> {
    /// The task run's id.
    pub fn id(&self) -> Uuid {
        self.run.id
    }

    /// The terminal state of the run, once it has ended.
    pub fn state(&self) -> Option<State> {
        self.run.done.get()
    }

    /// Cancels the run; awaiting the handle then gives [`RunError::Cancelled`].
    pub fn cancel(&self) {
        if let Some(join) = &self.join {
            join.abort();
        }
    }

    /// Lets the run go on after the handle is dropped. Its flow run still waits for it before
    /// it ends, and still stops it if the flow run is cancelled or times out; so does the task
    /// run that submitted it, if a task did (that task run is recorded as ended only after it).
    pub fn detach(mut self) {
        if let Some(join) = self.join.take() {
            if let Some(task) = &self.run.parent_task {
                task.live.detach(join.abort_handle());
            }
            if let Some(flow) = &self.run.flow {
                flow.detach(join.abort_handle());
            }
        }
    }
}

impl<T, E> Drop for TaskHandle<T, E> {
    fn drop(&mut self) {
        if let Some(join) = &self.join {
            join.abort();
        }
    }
}

impl<T, E> Future for TaskHandle<T, E> {
    type Output = Result<T, RunError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let run = &this.run;
        let Some(join) = this.join.as_mut() else {
            return Poll::Ready(Err(RunError::Cancelled {
                run_type: RunType::Task,
                name: run.options.name.clone(),
                run_id: run.id,
            }));
        };
        match Pin::new(join).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(error)) => Poll::Ready(Err(if error.is_panic() {
                RunError::Panicked {
                    run_type: RunType::Task,
                    name: run.options.name.clone(),
                    run_id: run.id,
                    message: crate::run::panic_message(error.into_panic()),
                }
            } else {
                RunError::Cancelled {
                    run_type: RunType::Task,
                    name: run.options.name.clone(),
                    run_id: run.id,
                }
            })),
        }
    }
}

impl<T, E> From<&TaskHandle<T, E>> for Upstream {
    fn from(handle: &TaskHandle<T, E>) -> Self {
        Upstream {
            run: UpstreamRun::Task(handle.run.clone()),
            allow_failure: false,
        }
    }
}
