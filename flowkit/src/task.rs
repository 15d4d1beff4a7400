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

use crate::bus::Held;
use crate::context::{CURRENT, Scope, with_current};
use crate::error::RunError;
use crate::events::{EventKind, RunCreated, RunType};
use crate::hooks::end_run;
use crate::results::plan::{CallExtras, CallParts, FlowDurable, Inputs, TaskPlan};
use crate::retry::RetryPolicy;
use crate::run::{Attempt, Completion, EndGuard, Live, Record, TaskRun, drive_from, settle};
use crate::upstream::{TriggerRule, Upstream, UpstreamRun, wait_all};
use crate::{Codec, EventBus, ResultStore, State, TaskOptions};

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
pub struct TaskCall<'a, B: TaskBody> {
    options: &'static TaskOptions,
    body: B,
    upstream: Vec<Upstream>,
    trigger: TriggerRule,
    bus: Option<EventBus>,
    map_index: Option<u64>,
    /// How its result is stored, if its type allows (the macros probe it).
    codec: Option<Codec<<B::Output as Outcome>::Ok>>,
    extras: Option<Box<CallExtras>>,
    /// Its arguments as JSON, when its task or flow records them.
    arguments: Option<Box<serde_json::Value>>,
    _borrows: PhantomData<&'a ()>,
}

impl<'a, B: TaskBody + 'a> TaskCall<'a, B> {
    /// A call of the task with these options and this body (what `#[task]` expands to).
    pub fn new(options: &'static TaskOptions, body: B) -> Self {
        TaskCall {
            options,
            body,
            upstream: Vec::new(),
            trigger: TriggerRule::AllSucceeded,
            bus: None,
            map_index: None,
            codec: None,
            extras: None,
            arguments: None,
            _borrows: PhantomData,
        }
    }

    /// Gives the call what persisting its result needs: how to store its value, and the hash
    /// of its arguments (what `#[task]` expands to).
    #[doc(hidden)]
    pub fn __durable(
        mut self,
        codec: Option<Codec<<B::Output as Outcome>::Ok>>,
        inputs: Option<crate::InputsHasher>,
    ) -> Self {
        self.codec = codec;
        if let Some(hasher) = inputs {
            self.extras().inputs = match hasher.finish() {
                Some(hash) => Inputs::Hashed(hash),
                None => Inputs::Failed,
            };
        }
        self
    }

    /// Gives the call its recorded arguments (what `#[task]` expands to, when its task or its
    /// flow run records them): the run's `RunCreated` event carries them as its parameters.
    #[doc(hidden)]
    #[inline]
    pub fn __arguments(mut self, arguments: Option<serde_json::Value>) -> Self {
        if let Some(arguments) = arguments {
            self.arguments = Some(Box::new(arguments));
        }
        self
    }

    fn extras(&mut self) -> &mut CallExtras {
        self.extras.get_or_insert_with(Default::default)
    }

    /// Runs the task and stores a new result even if its cache holds one for these inputs
    /// (as `#[task(refresh_cache = true)]` does for every call).
    ///
    /// ```
    /// use flowkit::task;
    ///
    /// #[task(cache_key = inputs)]
    /// async fn price(item: u32) -> u32 { item * 10 }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # flowkit::Config::new().console(false).init().ok();
    /// # let dir = std::env::temp_dir().join(format!("flowkit-refresh-{}", std::process::id()));
    /// let store = std::sync::Arc::new(flowkit::LocalStore::new(&dir));
    /// assert_eq!(price(3).result_store(store).refresh_cache().await.unwrap(), 30);
    /// # std::fs::remove_dir_all(dir).ok();
    /// # }
    /// ```
    pub fn refresh_cache(mut self) -> Self {
        self.extras().refresh = true;
        self
    }

    /// Stores this call's result in `store` instead of its flow run's (or the global) store.
    pub fn result_store(mut self, store: Arc<dyn ResultStore>) -> Self {
        self.extras().store = Some(store);
        self
    }

    /// Takes the next occurrence of this task in the current flow run, for the calls of one
    /// `map` (they share it, told apart by their map index).
    pub(crate) fn reserve_occurrence(&self) -> Option<u64> {
        with_current(|scope| {
            let durable = scope.and_then(Scope::flow)?.durable.as_deref()?;
            persists(self.options, durable).then(|| durable.next_occurrence(self.options))
        })
    }

    pub(crate) fn with_occurrence(mut self, occurrence: Option<u64>) -> Self {
        if occurrence.is_some() {
            self.extras().occurrence = occurrence;
        }
        self
    }

    /// Waits for these runs to end before starting; if one of them fails (and is not wrapped in
    /// [`allow_failure`](crate::allow_failure)), this run is `Skipped` and returns
    /// [`RunError::UpstreamFailed`]. [`trigger`](Self::trigger) chooses another rule.
    pub fn wait_for<U: Into<Upstream>>(mut self, upstream: impl IntoIterator<Item = U>) -> Self {
        self.upstream.extend(upstream.into_iter().map(Into::into));
        self
    }

    /// When this run starts, given how the runs it [waits for](Self::wait_for) end (see
    /// [`TriggerRule`]; [`AllSucceeded`](TriggerRule::AllSucceeded) by default). A run whose rule
    /// is not met is recorded `Skipped` and returns [`RunError::UpstreamFailed`].
    ///
    /// ```
    /// use flowkit::{TriggerRule, flow, task};
    ///
    /// #[task]
    /// async fn primary() -> Result<u32, String> { Err("primary source down".into()) }
    /// #[task]
    /// async fn fallback() -> u32 { 42 }
    ///
    /// #[flow]
    /// async fn fetch() -> Result<u32, flowkit::RunError<String>> {
    ///     let first = primary().submit();
    ///     let backup = fallback().wait_for([&first]).trigger(TriggerRule::OneFailed).submit();
    ///     match first.await {
    ///         Ok(value) => Ok(value),
    ///         Err(_) => Ok(backup.await.expect("the fallback runs when the primary fails")),
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # flowkit::Config::new().console(false).init().ok();
    /// assert_eq!(fetch().await.unwrap(), 42);
    /// # }
    /// ```
    pub fn trigger(mut self, rule: TriggerRule) -> Self {
        self.trigger = rule;
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
        self.prepare_holding(scope, None)
    }

    /// [`prepare`](Self::prepare), its `RunCreated` event held in `held` when given.
    fn prepare_holding(mut self, scope: Option<&Scope>, held: Option<&mut Held>) -> Prepared<B> {
        if self.extras.as_ref().is_none_or(|e| e.occurrence.is_none()) {
            let flow = scope.and_then(Scope::flow);
            let durable = flow.and_then(|flow| flow.durable.as_deref());
            if let Some(durable) = durable.filter(|durable| persists(self.options, durable)) {
                self.extras().occurrence = Some(durable.next_occurrence(self.options));
            }
        }
        let bus = self.bus.take();
        let arguments = self.arguments.take().map(|arguments| *arguments);
        let (run, guard, takes_slot) = new_run(
            self.options,
            scope,
            bus,
            &self.upstream,
            self.map_index,
            arguments,
            held,
        );
        let (plan, warning) = TaskPlan::new(
            &run,
            CallParts {
                codec: self.codec,
                extras: self.extras,
            },
        );
        Prepared {
            run,
            body: self.body,
            upstream: self.upstream,
            trigger: self.trigger,
            takes_slot,
            guard,
            // Boxed: a call that does not persist carries none of it.
            plan: plan.map(Box::new),
            warning,
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
        let mut prepared = with_current(|scope| self.prepare(scope));
        prepared.warn();
        prepared.start()
    }

    /// Creates the run of this call in `scope` without starting it, its `RunCreated` event held
    /// in `held` (what `map` does for a batch of calls before starting them).
    pub(crate) fn prepare_in(self, scope: Option<&Scope>, held: &mut Held) -> Prepared<B> {
        self.prepare_holding(scope, Some(held))
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
        Box::pin(async move {
            let mut prepared = with_current(|scope| self.prepare(scope));
            prepared.warn();
            if prepared.is_plain() {
                prepared.into_plain().await
            } else {
                Box::pin(prepared.run_to_end()).await
            }
        })
    }
}

/// A task call whose run is created and recorded (its `RunCreated` emitted), not started yet.
pub(crate) struct Prepared<B: TaskBody> {
    run: Arc<TaskRun>,
    body: B,
    upstream: Vec<Upstream>,
    trigger: TriggerRule,
    takes_slot: bool,
    guard: EndGuard<TaskRun>,
    /// How its result is stored, for a call that persists it.
    plan: Option<Box<TaskPlan<<B::Output as Outcome>::Ok>>>,
    /// What its plan could not do, to log on the run with [`warn`](Self::warn).
    warning: Option<&'static str>,
}

/// Creates a task run of `options` in `scope` and records it: the run, the guard that ends it
/// if it is dropped, and whether it takes its flow run's concurrency slot.
pub(crate) fn new_run(
    options: &'static TaskOptions,
    scope: Option<&Scope>,
    bus: Option<EventBus>,
    upstream: &[Upstream],
    map_index: Option<u64>,
    arguments: Option<serde_json::Value>,
    held: Option<&mut Held>,
) -> (Arc<TaskRun>, EndGuard<TaskRun>, bool) {
    let (flow, parent_task) = match scope {
        Some(Scope::Flow(flow)) => (Some(flow.clone()), None),
        Some(Scope::Task(task)) => (task.flow.clone(), Some(task.clone())),
        None => (None, None),
    };
    let own_bus = match (&flow, bus) {
        (Some(_), _) => EventBus::disabled(),
        (None, Some(bus)) => bus,
        (None, None) => crate::context::default_bus(scope),
    };
    let now = crate::ids::Now::read();
    let run = Arc::new(TaskRun {
        id: now.id(),
        options,
        flow,
        parent_task,
        own_bus,
        attempt: AtomicU32::new(0),
        map_index,
        done: Completion::default(),
        live: Live::default(),
    });
    let upstream_ids: Vec<Uuid> = upstream.iter().map(Upstream::id).collect();
    run.bus()
        .emit_now_into(held, now, run.flow_run_id(), Some(run.id), || {
            EventKind::RunCreated(Arc::new(RunCreated {
                run_type: RunType::Task,
                name: run.options.name.clone(),
                run_name: None,
                description: None,
                parameters: arguments,
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
    (run, guard, takes_slot)
}

/// True if a call of a task with `options` in a durable flow run persists its result.
fn persists(options: &TaskOptions, durable: &FlowDurable) -> bool {
    options.cache.is_some() || options.persist_result.unwrap_or(durable.persist)
}

/// True if a call of a task with these options needs its arguments hashed (what `#[task]`
/// asks before hashing them).
#[doc(hidden)]
pub fn wants_inputs(options: &TaskOptions) -> bool {
    if options.cache.is_some() {
        return true;
    }
    if options.persist_result == Some(false) {
        return false;
    }
    with_current(|scope| {
        scope
            .and_then(Scope::flow)
            .and_then(|flow| flow.durable.as_deref())
            .is_some_and(|durable| persists(options, durable))
    })
}

impl<B: TaskBody> Prepared<B>
where
    <B::Output as Outcome>::Err: std::fmt::Display,
{
    /// True if the run needs nothing but its body: no upstream to wait for, no result to look
    /// up or store, no concurrency slot, no timeout.
    fn is_plain(&self) -> bool {
        let needs_slot = self.takes_slot
            && self
                .run
                .flow
                .as_ref()
                .is_some_and(|flow| flow.limiter.is_some());
        self.upstream.is_empty()
            && self.plan.is_none()
            && !needs_slot
            && self.run.options.timeout.is_none()
            && !crate::limits::may_limit(&self.run.options.tags)
    }

    /// Starts the run on the runtime and returns its handle (see [`TaskCall::submit`]).
    pub(crate) fn start(self) -> TaskHandle<<B::Output as Outcome>::Ok, <B::Output as Outcome>::Err>
    where
        B: 'static,
        B::Output: 'static,
        <B::Output as Outcome>::Ok: Send + 'static,
        <B::Output as Outcome>::Err: Send + 'static,
    {
        let run = self.run.clone();
        // Most runs need nothing but their body: they get a future a fraction of the size of
        // the full engine's, which every spawned run would otherwise allocate and copy.
        let join = if self.is_plain() {
            tokio::spawn(self.into_plain())
        } else {
            tokio::spawn(self.run_to_end())
        };
        TaskHandle {
            run,
            join: Some(join),
        }
    }

    /// Logs the warning its plan left, if any, on the run. Call it once the caller's scope is
    /// no longer borrowed (logging on a run enters the run's scope, which panics inside
    /// `with_current`) and after the run's `RunCreated` was sent (a sink drops the log lines
    /// of a run it has not seen).
    pub(crate) fn warn(&mut self) {
        if let Some(message) = self.warning.take() {
            crate::results::plan::warn_on(&self.run, message);
        }
    }

    /// The future of a [plain](Self::is_plain) run.
    fn into_plain(self) -> impl Future<Output = TaskResult<B>> {
        let Prepared { guard, body, .. } = self;
        run_plain(guard, body)
    }

    async fn run_to_end(self) -> TaskResult<B> {
        let Prepared {
            run,
            body,
            upstream,
            trigger,
            takes_slot,
            guard,
            plan,
            warning: _,
        } = self;
        let _guard = guard;
        if !upstream.is_empty() {
            // Boxed: only calls with upstreams carry the wait's state.
            let waited = Box::pin(wait_all(&upstream, trigger)).await;
            if let Err((upstream_id, upstream_state)) = waited {
                let error = RunError::UpstreamFailed {
                    run_type: RunType::Task,
                    name: run.options.name.clone(),
                    run_id: run.id,
                    upstream: upstream_id,
                    upstream_state,
                    trigger,
                };
                run.end(State::Skipped, 0, Some(error.to_string()));
                return Err(error);
            }
        }
        drop(upstream);
        if let Some(plan) = &plan {
            match Box::pin(plan.lookup(&run)).await {
                Ok(Some((value, message, location))) => {
                    end_run(&*run, State::Cached, 0, Some(message), Some(location)).await;
                    return Ok(value);
                }
                Ok(None) => {}
                Err(error) => {
                    // Never run again what may have completed: a store that cannot be read
                    // fails the run before its body.
                    end_run(&*run, State::Failed, 0, Some(error.to_string()), None).await;
                    return Err(RunError::ResultStore {
                        run_type: RunType::Task,
                        name: run.options.name.clone(),
                        run_id: run.id,
                        attempts: 0,
                        error: Box::new(error),
                    });
                }
            }
        }
        let limiter = match (&run.flow, takes_slot) {
            (Some(flow), true) => flow.limiter.as_ref(),
            _ => None,
        };
        let _slot = match limiter {
            Some(limiter) => limiter.acquire().await.ok(),
            None => None,
        };
        let (start_attempt, retry_if) = body.into_parts();
        attempts::<B>(&run, start_attempt, retry_if, plan, None).await
    }
}

/// Runs a plain run: its first attempt here, in a future that holds little more than the
/// attempt's own; a failed attempt that may be retried goes on in the full retry loop, boxed.
async fn run_plain<B: TaskBody>(guard: EndGuard<TaskRun>, body: B) -> TaskResult<B>
where
    <B::Output as Outcome>::Err: std::fmt::Display,
{
    let run = &guard.record;
    let (mut start_attempt, retry_if) = body.into_parts();
    run.set_attempt(1);
    run.emit_state(State::Running, 1, None, None);
    let outcome = attempt_of(attempt_future(run, start_attempt(), 1).await);
    if matches!(outcome, Attempt::Err(_)) && run.options.retry.retries > 0 {
        return Box::pin(attempts::<B>(
            run,
            start_attempt,
            retry_if,
            None,
            Some(outcome),
        ))
        .await;
    }
    let (state, result, message) = settle(&**run, 1, outcome);
    if run.options.hooks.for_end(state).0.is_empty() {
        // Nothing to await: the run's result is not held in its future across an await, which
        // would make every spawned run's future (and tokio's task allocation) larger.
        run.end(state, 1, message);
        return result;
    }
    // Boxed: only runs with hooks for this end carry the result across the hooks' await.
    Box::pin(async move {
        end_run(&**run, state, 1, message, None).await;
        result
    })
    .await
}

/// One attempt of a task's body: in the run's scope and span, its panics caught.
fn attempt_future<F: Future>(
    run: &Arc<TaskRun>,
    body: F,
    attempt: u32,
) -> impl Future<Output = Result<F::Output, Box<dyn std::any::Any + Send>>> {
    let span = tracing::info_span!(
        "task_run",
        task = %run.options.name,
        task_run_id = %run.id,
        attempt,
    );
    CURRENT
        .scope(
            Scope::Task(run.clone()),
            AssertUnwindSafe(body).catch_unwind(),
        )
        .instrument(span)
}

/// How an attempt of body `B` ended.
type BodyAttempt<B> =
    Attempt<<<B as TaskBody>::Output as Outcome>::Ok, <<B as TaskBody>::Output as Outcome>::Err>;

/// The retry loop of a task run, from its first attempt or after it (`first`).
async fn attempts<B: TaskBody>(
    run: &Arc<TaskRun>,
    mut start_attempt: B::Start,
    retry_if: B::RetryIf,
    plan: Option<Box<TaskPlan<<B::Output as Outcome>::Ok>>>,
    first: Option<BodyAttempt<B>>,
) -> TaskResult<B>
where
    <B::Output as Outcome>::Err: std::fmt::Display,
{
    let plan = plan.as_deref();
    let timeout = run.options.timeout;
    let policy: &RetryPolicy = &run.options.retry;
    let start = |attempt: u32| {
        let attempt_future = attempt_future(run, start_attempt(), attempt);
        // A timed-out attempt stops the runs it detached, as a flow's timeout does.
        let timed = timeout.map(|limit| (limit, run.clone()));
        let limited = crate::limits::may_limit(&run.options.tags).then(|| run.clone());
        async move {
            // The slots of its tags, held for this attempt only (not across a retry's delay),
            // taken before its timeout starts.
            let slots = match &limited {
                Some(run) => Some(Box::pin(take_slots(run)).await),
                None => None,
            };
            let ended = match timed {
                // Boxed: a timer is large, and only runs with a timeout need one.
                Some((limit, run)) => {
                    match Box::pin(tokio::time::timeout(limit, attempt_future)).await {
                        Ok(outcome) => attempt_of(outcome),
                        Err(_) => {
                            run.live.abort_detached();
                            Attempt::TimedOut(limit)
                        }
                    }
                }
                None => attempt_of(attempt_future.await),
            };
            if let Some(slots) = slots {
                Box::pin(slots.release()).await;
            }
            if let Attempt::TimedOut(_) = ended {
                return ended;
            }
            match plan {
                // Boxed, and given the whole outcome: nothing of it is held here across
                // the store's await.
                Some(plan) => Box::pin(plan.persist_attempt(attempt, ended)).await,
                None => ended,
            }
        }
    };
    drive_from(&**run, policy, first, start, retry_if, || {
        plan.and_then(TaskPlan::take_stored)
    })
    .await
}

/// Takes the slots of a task run's tags, logging on the run when it must wait.
async fn take_slots(run: &Arc<TaskRun>) -> crate::limits::Slots {
    let mut waiting = |message: String| {
        crate::run::Record::runtime_log(
            &**run,
            crate::events::LogLevel::Info,
            crate::RUNTIME_TARGET,
            || message,
        );
    };
    crate::limits::acquire(
        &run.options.tags,
        run.id,
        run.flow.as_ref().map(|f| f.id),
        &mut waiting,
    )
    .await
}

/// How an attempt's body ended (a function, so that nothing of the body's output is held
/// across the store's await).
fn attempt_of<O: Outcome>(
    outcome: Result<O, Box<dyn std::any::Any + Send>>,
) -> Attempt<O::Ok, O::Err> {
    match outcome {
        Ok(output) => match output.into_result() {
            Ok(value) => Attempt::Ok(value),
            Err(error) => Attempt::Err(error),
        },
        Err(payload) => Attempt::Panicked(crate::run::panic_message(payload)),
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
    /// A handle of `run`, whose work `join` runs.
    pub(crate) fn spawned(run: Arc<TaskRun>, join: JoinHandle<Result<T, RunError<E>>>) -> Self {
        TaskHandle {
            run,
            join: Some(join),
        }
    }

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
