//! The shared records of a running flow run or task run, and the retry loop they both use.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::error::{RunError, humanize};
use crate::events::{EventKind, LogLevel, LogRecord, ResultLocation, RunType, StateChanged};

/// The target of the log lines the runtime writes for a run (failed attempts, retries, ends
/// that were not a success). The console sink prints those moments from the state changes
/// already, so it skips these lines.
///
/// ```
/// #[flowkit::task(retries = 1)]
/// async fn flaky() -> Result<(), String> { Err("503".into()) }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (_, events) = flowkit::testing::capture(|| flaky()).await;
/// let lines = events.logs(events.runs_named("flaky")[0]);
/// assert!(lines.iter().all(|l| l.target == flowkit::RUNTIME_TARGET));
/// assert_eq!(lines[0].message, "Attempt 1 of 2 failed: 503; retrying now");
/// assert_eq!(lines[1].message, "Finished in state Failed after 2 attempts: 503");
/// # }
/// ```
pub const RUNTIME_TARGET: &str = "flowkit::runtime";

/// The target of the line saying `retry_if` refused to retry an error (the console prints it).
///
/// ```
/// #[flowkit::task(retries = 3, retry_if = |e: &String| e.starts_with('5'))]
/// async fn fetch() -> Result<(), String> { Err("404".into()) }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (_, events) = flowkit::testing::capture(|| fetch()).await;
/// let lines = events.logs(events.runs_named("fetch")[0]);
/// assert_eq!(lines[0].target, flowkit::RETRY_IF_TARGET);
/// assert!(lines[0].message.starts_with("retry_if refused to retry: attempt 1 of 4"));
/// # }
/// ```
pub const RETRY_IF_TARGET: &str = "flowkit::runtime::retry_if";
use crate::{EventBus, FlowOptions, RetryPolicy, State, TaskOptions};

/// A one-shot "this run has ended" signal that others can wait on (`wait_for`).
#[derive(Default)]
pub(crate) struct Completion {
    /// 0 while running, else 1 + the index of the terminal state in `State::ALL`.
    state: AtomicU8,
    /// Set by the first waiter, so that a run nobody waits for skips the notification.
    watched: AtomicBool,
    waiters: Notify,
}

impl Completion {
    pub(crate) fn complete(&self, state: State) {
        let code = State::ALL.iter().position(|s| *s == state).unwrap_or(0) as u8 + 1;
        // SeqCst on both flags: a waiter sets `watched` then reads `state`; we set `state` then
        // read `watched`; at least one of us sees the other.
        if self.state.swap(code, Ordering::SeqCst) == 0 && self.watched.load(Ordering::SeqCst) {
            self.waiters.notify_waiters();
        }
    }

    pub(crate) fn get(&self) -> Option<State> {
        match self.state.load(Ordering::SeqCst) {
            0 => None,
            code => State::ALL.get(code as usize - 1).copied(),
        }
    }

    pub(crate) async fn wait(&self) -> State {
        self.watched.store(true, Ordering::SeqCst);
        loop {
            let notified = self.waiters.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(state) = self.get() {
                return state;
            }
            notified.await;
        }
    }
}

/// The work under a run that is still live, and the run itself until it ends.
///
/// The invariant it keeps: **a run ends after everything under it.** A run's terminal event is
/// recorded only once no run under it is live; a run that ends (or is dropped) while runs under
/// it are still being stopped holds its end, and the last of them to end records it. Every path
/// that ends a run goes through [`Record::end`], so cancels, dropped handles, timeouts and panics
/// all keep the order, at any depth.
///
/// Flow runs count every run (and [`spawn`](crate::spawn)ed future) under them, at any depth, so
/// that they can wait for all of it; task runs count the task runs and flow runs they called.
pub(crate) struct Live {
    /// [`SELF`] while the run has not ended, plus one per live run under it.
    count: AtomicUsize,
    /// What only some runs need, allocated on first use.
    rare: Mutex<Option<Box<Rare>>>,
}

/// The parts of [`Live`] that most runs never use.
#[derive(Default)]
struct Rare {
    /// The end of a run that ended while runs under it were still live.
    end: Option<HeldEnd>,
    /// Runs detached from their handles under a task run: stopped if it is.
    detached: Vec<tokio::task::AbortHandle>,
}

/// The part of [`Live::count`] that stands for the run itself, until it ends.
const SELF: usize = 1 << (usize::BITS - 1);

struct HeldEnd {
    state: State,
    attempt: u32,
    message: Option<String>,
    result: Option<Box<ResultLocation>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            count: AtomicUsize::new(SELF),
            rare: Mutex::new(None),
        }
    }
}

impl Live {
    /// One more live run under this one.
    pub(crate) fn enter(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// True once the run has ended (or holds its end until the runs under it have ended).
    fn ended(&self) -> bool {
        self.count.load(Ordering::Acquire) & SELF == 0
    }

    /// True while no run under this one is live.
    fn idle(&self) -> bool {
        self.count.load(Ordering::Acquire) & !SELF == 0
    }

    fn rare(&self) -> std::sync::MutexGuard<'_, Option<Box<Rare>>> {
        self.rare.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a run detached under this one, to stop it if this run is stopped.
    pub(crate) fn detach(&self, run: tokio::task::AbortHandle) {
        self.rare()
            .get_or_insert_with(Default::default)
            .detached
            .push(run);
    }

    /// Stops the runs detached under this one.
    pub(crate) fn abort_detached(&self) {
        let detached = self
            .rare()
            .as_mut()
            .map(|rare| std::mem::take(&mut rare.detached));
        for run in detached.into_iter().flatten() {
            run.abort();
        }
    }
}
/// A cancellation request for a flow run.
#[derive(Default)]
pub(crate) struct Cancel {
    requested: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub(crate) fn cancel(&self) {
        self.requested.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.requested.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// A flow run in progress.
pub(crate) struct FlowRun {
    pub(crate) id: Uuid,
    pub(crate) options: &'static FlowOptions,
    pub(crate) parameters: serde_json::Value,
    /// The deployment's scheduled run this flow run is (or is under).
    pub(crate) scheduled: Option<Arc<crate::serve::ScheduledRun>>,
    pub(crate) bus: EventBus,
    pub(crate) limiter: Option<Semaphore>,
    pub(crate) attempt: AtomicU32,
    /// The attempts made before this process resumed the run (0 for a new run).
    pub(crate) attempt_base: AtomicU32,
    /// Where its results go, for runs that persist, resume or have an idempotency key.
    pub(crate) durable: Option<Box<crate::results::plan::FlowDurable>>,
    /// The flow run this one is a child of.
    pub(crate) parent: Option<Arc<FlowRun>>,
    /// The task run that called it, if a task did.
    pub(crate) parent_task: Option<Arc<TaskRun>>,
    pub(crate) live: Live,
    /// Woken when the last run under it ends.
    pub(crate) idle: Notify,
    pub(crate) cancel: Cancel,
    pub(crate) done: Completion,
    /// Task runs detached from their handles: still stopped when the flow run is.
    pub(crate) detached: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl FlowRun {
    /// Waits until no run (or spawned future) under this one is live.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live.idle() {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn detach(&self, run: tokio::task::AbortHandle) {
        self.detached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(run);
    }

    pub(crate) fn abort_detached(&self) {
        let detached = std::mem::take(
            &mut *self
                .detached
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for run in detached {
            run.abort();
        }
    }
}

/// A task run in progress.
pub(crate) struct TaskRun {
    pub(crate) id: Uuid,
    pub(crate) options: &'static TaskOptions,
    /// The flow run it belongs to.
    pub(crate) flow: Option<Arc<FlowRun>>,
    /// The task run it was called from.
    pub(crate) parent_task: Option<Arc<TaskRun>>,
    /// The bus of a task run outside any flow (inside one, the flow's bus is used).
    pub(crate) own_bus: EventBus,
    pub(crate) attempt: AtomicU32,
    pub(crate) map_index: Option<u64>,
    pub(crate) done: Completion,
    pub(crate) live: Live,
}

impl TaskRun {
    pub(crate) fn bus(&self) -> &EventBus {
        match &self.flow {
            Some(flow) => &flow.bus,
            None => &self.own_bus,
        }
    }
}

/// What the retry loop needs to know of a run.
pub(crate) trait Record: Send + Sync + 'static {
    fn run_type(&self) -> RunType;
    fn name(&self) -> &Cow<'static, str>;
    fn run_id(&self) -> Uuid;
    fn bus(&self) -> &EventBus;
    fn flow_run_id(&self) -> Option<Uuid>;
    fn task_run_id(&self) -> Option<Uuid>;
    fn set_attempt(&self, attempt: u32);
    fn attempt(&self) -> u32;
    /// The attempts made before this one started (by another process, for a resumed run).
    fn attempt_base(&self) -> u32 {
        0
    }
    fn completion(&self) -> &Completion;
    fn live(&self) -> &Live;
    /// Its hooks (`#[task(on_failure = ...)]`).
    fn hooks(&self) -> &'static crate::Hooks;
    /// The parameters a hook is told (its flow run's).
    fn hook_parameters(&self) -> Option<serde_json::Value>;
    /// Counts the run as live in every run above it that waits for it.
    fn enter_owners(&self);
    /// Leaves the count of every run above it, innermost first.
    fn leave_owners(&self);
    /// Called when the last run under this one has ended while it still runs.
    fn became_idle(&self) {}
    /// True once the run was asked to stop (flow runs only).
    fn cancel_requested(&self) -> bool {
        false
    }
    /// Completes when the run is asked to stop; never, for runs that cannot be.
    fn wait_cancel(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    fn emit_state(
        &self,
        state: State,
        attempt: u32,
        message: Option<String>,
        next_attempt_at: Option<chrono::DateTime<Utc>>,
    ) {
        self.emit_change(StateChanged {
            state,
            attempt,
            message,
            next_attempt_at,
            result: None,
        });
    }

    fn emit_change(&self, change: StateChanged) {
        self.bus()
            .emit_with(self.flow_run_id(), self.task_run_id(), || {
                EventKind::StateChanged(change)
            });
    }

    /// A log line of this run written by the runtime itself (a failed attempt, a retry, the end
    /// of a run that did not succeed), so the API, the dashboard and the console show why.
    fn runtime_log(&self, level: LogLevel, target: &'static str, message: impl FnOnce() -> String) {
        self.bus()
            .emit_with(self.flow_run_id(), self.task_run_id(), || {
                EventKind::Log(Arc::new(LogRecord {
                    level,
                    target: target.to_string(),
                    message: message(),
                    fields: Default::default(),
                }))
            });
    }

    /// Ends the run in `state`: recorded now if no run under it is live, else held until the
    /// last of them ends (see [`Live`]). Called once per run.
    fn end(&self, state: State, attempt: u32, message: Option<String>) {
        self.end_with(state, attempt, message, None);
    }

    /// [`end`](Self::end), with where the run's persisted result is.
    fn end_with(
        &self,
        state: State,
        attempt: u32,
        message: Option<String>,
        result: Option<Box<ResultLocation>>,
    ) {
        let live = self.live();
        // The common case, nothing under it: one atomic operation.
        if live
            .count
            .compare_exchange(SELF, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.record_end(state, attempt, message, result);
            return;
        }
        live.rare().get_or_insert_with(Default::default).end = Some(HeldEnd {
            state,
            attempt,
            message,
            result,
        });
        // Whoever takes the count to zero records the end: us, if the runs under it ended
        // meanwhile, else the last of them (in `leave`).
        if live.count.fetch_sub(SELF, Ordering::AcqRel) == SELF {
            self.record_held_end();
        }
    }

    /// A run under this one has ended.
    fn leave(&self) {
        match self.live().count.fetch_sub(1, Ordering::AcqRel) {
            1 => self.record_held_end(),
            n if n == SELF + 1 => self.became_idle(),
            _ => {}
        }
    }

    fn record_held_end(&self) {
        let held = self.live().rare().as_mut().and_then(|rare| rare.end.take());
        if let Some(end) = held {
            self.record_end(end.state, end.attempt, end.message, end.result);
        }
    }

    /// Records the terminal state, wakes the runs waiting for it, and leaves the runs above it.
    fn record_end(
        &self,
        state: State,
        attempt: u32,
        message: Option<String>,
        result: Option<Box<ResultLocation>>,
    ) {
        if !state.is_success() {
            let level = match state {
                State::Cancelled | State::Skipped => LogLevel::Warn,
                _ => LogLevel::Error,
            };
            self.runtime_log(level, RUNTIME_TARGET, || {
                let after = match attempt {
                    0 => String::new(),
                    1 => " after 1 attempt".to_string(),
                    n => format!(" after {n} attempts"),
                };
                match &message {
                    Some(message) => format!("Finished in state {state}{after}: {message}"),
                    None => format!("Finished in state {state}{after}"),
                }
            });
        }
        self.emit_change(StateChanged {
            state,
            attempt,
            message,
            next_attempt_at: None,
            result,
        });
        self.completion().complete(state);
        self.leave_owners();
    }
}

/// Calls `f` on `flow` and every flow run above it, innermost first.
fn each_flow(mut flow: Option<&FlowRun>, mut f: impl FnMut(&FlowRun)) {
    while let Some(run) = flow {
        f(run);
        flow = run.parent.as_deref();
    }
}

impl Record for TaskRun {
    fn run_type(&self) -> RunType {
        RunType::Task
    }
    fn name(&self) -> &Cow<'static, str> {
        &self.options.name
    }
    fn run_id(&self) -> Uuid {
        self.id
    }
    fn bus(&self) -> &EventBus {
        TaskRun::bus(self)
    }
    fn flow_run_id(&self) -> Option<Uuid> {
        self.flow.as_ref().map(|f| f.id)
    }
    fn task_run_id(&self) -> Option<Uuid> {
        Some(self.id)
    }
    fn set_attempt(&self, attempt: u32) {
        self.attempt.store(attempt, Ordering::Relaxed);
    }
    fn attempt(&self) -> u32 {
        self.attempt.load(Ordering::Relaxed)
    }
    fn completion(&self) -> &Completion {
        &self.done
    }
    fn live(&self) -> &Live {
        &self.live
    }
    fn hooks(&self) -> &'static crate::Hooks {
        &self.options.hooks
    }
    fn hook_parameters(&self) -> Option<serde_json::Value> {
        self.flow.as_ref().map(|flow| flow.parameters.clone())
    }
    fn enter_owners(&self) {
        if let Some(task) = &self.parent_task {
            task.live.enter();
        }
        each_flow(self.flow.as_deref(), |flow| flow.live.enter());
    }
    fn leave_owners(&self) {
        if let Some(task) = &self.parent_task {
            task.leave();
        }
        each_flow(self.flow.as_deref(), FlowRun::leave);
    }
}

impl Record for FlowRun {
    fn run_type(&self) -> RunType {
        RunType::Flow
    }
    fn name(&self) -> &Cow<'static, str> {
        &self.options.name
    }
    fn run_id(&self) -> Uuid {
        self.id
    }
    fn bus(&self) -> &EventBus {
        &self.bus
    }
    fn flow_run_id(&self) -> Option<Uuid> {
        Some(self.id)
    }
    fn task_run_id(&self) -> Option<Uuid> {
        None
    }
    fn set_attempt(&self, attempt: u32) {
        self.attempt.store(attempt, Ordering::Relaxed);
    }
    fn attempt(&self) -> u32 {
        self.attempt.load(Ordering::Relaxed)
    }
    fn attempt_base(&self) -> u32 {
        self.attempt_base.load(Ordering::Relaxed)
    }
    fn completion(&self) -> &Completion {
        &self.done
    }
    fn live(&self) -> &Live {
        &self.live
    }
    fn hooks(&self) -> &'static crate::Hooks {
        &self.options.hooks
    }
    fn hook_parameters(&self) -> Option<serde_json::Value> {
        Some(self.parameters.clone())
    }
    fn enter_owners(&self) {
        if let Some(task) = &self.parent_task {
            task.live.enter();
        }
        each_flow(self.parent.as_deref(), |flow| flow.live.enter());
    }
    fn leave_owners(&self) {
        if let Some(task) = &self.parent_task {
            task.leave();
        }
        each_flow(self.parent.as_deref(), FlowRun::leave);
    }
    fn became_idle(&self) {
        self.idle.notify_waiters();
    }
    fn cancel_requested(&self) -> bool {
        self.cancel.is_requested()
    }
    fn wait_cancel(&self) -> impl Future<Output = ()> + Send {
        self.cancel.cancelled()
    }
}

/// Ends a run whose future is dropped (or aborted, even before its first poll) before it reached
/// a terminal state: `Cancelled`, recorded once the runs under it have ended.
pub(crate) struct EndGuard<R: Record> {
    pub(crate) record: Arc<R>,
}

impl<R: Record> EndGuard<R> {
    /// Counts the run in every run above it, so that each of them ends only after it.
    pub(crate) fn new(record: Arc<R>) -> Self {
        record.enter_owners();
        EndGuard { record }
    }
}

impl<R: Record> Drop for EndGuard<R> {
    fn drop(&mut self) {
        let record = &*self.record;
        if !record.live().ended() {
            // A panic outside the caught region (in `retry_if`, an error's `Display`, an
            // argument's `Clone`) unwinds through here: that is a crash, not a cancellation.
            let (state, message) = if std::thread::panicking() {
                (State::Crashed, "panicked outside the task body")
            } else {
                (State::Cancelled, "cancelled before it finished")
            };
            // Stopped before it ended: so are the runs it detached.
            record.live().abort_detached();
            let hooks = record.hooks().on_cancel;
            if state == State::Cancelled
                && !hooks.is_empty()
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                // The run stays live (its flow run waits) until its hooks have run.
                let record = self.record.clone();
                runtime.spawn(async move {
                    let attempt = record.attempt();
                    let context = crate::hooks::context_of(
                        &*record,
                        state,
                        attempt,
                        Some(message.to_string()),
                    );
                    crate::hooks::fire(&*record, hooks, "on_cancel", &context).await;
                    record.end(state, attempt, Some(message.into()));
                });
                return;
            }
            record.end(state, record.attempt(), Some(message.into()));
        }
    }
}

/// How one attempt ended.
pub(crate) enum Attempt<T, E> {
    Ok(T),
    Err(E),
    Panicked(String),
    TimedOut(Duration),
    Cancelled,
    /// The result store could not be written (retried like an error). Boxed: it is rare, and
    /// every attempt's outcome would carry its size.
    Store(Box<crate::ResultStoreError>),
}

/// Runs attempts until one succeeds, retries are spent, or the error is not worth retrying,
/// recording every state on the way. `start` runs attempt `n` (1-based).
pub(crate) async fn drive<R, T, E, S, F>(
    record: &R,
    policy: &RetryPolicy,
    start: S,
    should_retry: impl Fn(&E) -> bool,
) -> Result<T, RunError<E>>
where
    R: Record,
    E: std::fmt::Display,
    S: FnMut(u32) -> F,
    F: Future<Output = Attempt<T, E>>,
{
    drive_from(record, policy, None, start, should_retry, || None).await
}

/// [`drive`], given how the first attempt ended if it already ran (its `Running` recorded):
/// a task run's first attempt runs outside the loop, and only a failed one enters it.
/// `stored` tells where the result of a completed run was persisted, if it was.
pub(crate) async fn drive_from<R, T, E, S, F>(
    record: &R,
    policy: &RetryPolicy,
    mut first: Option<Attempt<T, E>>,
    mut start: S,
    should_retry: impl Fn(&E) -> bool,
    stored: impl FnOnce() -> Option<Box<ResultLocation>>,
) -> Result<T, RunError<E>>
where
    R: Record,
    E: std::fmt::Display,
    S: FnMut(u32) -> F,
    F: Future<Output = Attempt<T, E>>,
{
    let base = record.attempt_base();
    let mut attempt = base + 1;
    loop {
        let outcome = match first.take() {
            Some(outcome) => outcome,
            None => {
                record.set_attempt(attempt);
                if record.cancel_requested() {
                    Attempt::Cancelled
                } else {
                    record.emit_state(State::Running, attempt, None, None);
                    start(attempt).await
                }
            }
        };
        let retryable = attempt - base <= policy.retries;
        let total = policy.retries.saturating_add(1);
        let retry_message = match &outcome {
            Attempt::Err(error) if retryable => {
                if should_retry(error) {
                    Some((format!("{error:#}"), false))
                } else {
                    let number = attempt - base;
                    record.runtime_log(LogLevel::Warn, RETRY_IF_TARGET, || {
                        let left = total - number;
                        format!(
                            "retry_if refused to retry: attempt {number} of {total} failed with an error it does not retry ({error:#}); {left} retr{} left unused",
                            if left == 1 { "y" } else { "ies" }
                        )
                    });
                    None
                }
            }
            Attempt::TimedOut(after) if retryable => Some((timeout_message(*after), true)),
            Attempt::Store(error) if retryable => Some((error.to_string(), false)),
            _ => None,
        };
        let outcome = match retry_message {
            Some((message, timed_out)) => {
                if retry(record, policy, attempt, attempt - base, message, timed_out).await {
                    attempt += 1;
                    continue;
                }
                Attempt::Cancelled
            }
            None => outcome,
        };
        let result = match outcome {
            Attempt::Ok(_) => stored(),
            _ => None,
        };
        return conclude(record, attempt, outcome, result).await;
    }
}

/// Records how a run's last attempt ended (its terminal state), after its end hooks, and gives
/// its result; `stored` is where a completed run's result was persisted.
pub(crate) async fn conclude<R, T, E>(
    record: &R,
    attempt: u32,
    outcome: Attempt<T, E>,
    stored: Option<Box<ResultLocation>>,
) -> Result<T, RunError<E>>
where
    R: Record,
    E: std::fmt::Display,
{
    let (state, result, message) = settle(record, attempt, outcome);
    if let Some(hooks) = crate::hooks::end_hooks(record, state, attempt, message.as_ref()) {
        hooks.await;
    }
    record.end_with(state, attempt, message, stored);
    result
}

/// The terminal state, result and message of a run whose last attempt ended with `outcome`
/// (nothing recorded yet: [`conclude`] records it after the end hooks).
pub(crate) fn settle<R, T, E>(
    record: &R,
    attempt: u32,
    outcome: Attempt<T, E>,
) -> (State, Result<T, RunError<E>>, Option<String>)
where
    R: Record,
    E: std::fmt::Display,
{
    let (state, result) = match outcome {
        Attempt::Ok(value) => (State::Completed, Ok(value)),
        Attempt::Err(error) => (
            State::Failed,
            Err(RunError::Failed {
                run_type: record.run_type(),
                name: record.name().clone(),
                run_id: record.run_id(),
                attempts: attempt,
                error,
            }),
        ),
        Attempt::TimedOut(after) => (
            State::TimedOut,
            Err(RunError::TimedOut {
                run_type: record.run_type(),
                name: record.name().clone(),
                run_id: record.run_id(),
                attempts: attempt,
                after,
            }),
        ),
        Attempt::Panicked(message) => (
            State::Crashed,
            Err(RunError::Panicked {
                run_type: record.run_type(),
                name: record.name().clone(),
                run_id: record.run_id(),
                message,
            }),
        ),
        Attempt::Cancelled => (
            State::Cancelled,
            Err(RunError::Cancelled {
                run_type: record.run_type(),
                name: record.name().clone(),
                run_id: record.run_id(),
            }),
        ),
        Attempt::Store(error) => (
            State::Failed,
            Err(RunError::ResultStore {
                run_type: record.run_type(),
                name: record.name().clone(),
                run_id: record.run_id(),
                attempts: attempt,
                error,
            }),
        ),
    };
    let message = match &result {
        Ok(_) => None,
        Err(RunError::Failed { error, .. }) => Some(format!("{error:#}")),
        Err(RunError::ResultStore { error, .. }) => Some(error.to_string()),
        Err(RunError::TimedOut { after, .. }) => Some(timeout_message(*after)),
        Err(other) => Some(other.to_string()),
    };
    (state, result, message)
}

fn timeout_message(after: Duration) -> String {
    format!("timed out after {}", humanize(after))
}

/// Records `Retrying` and waits out the delay; false if the run was cancelled meanwhile.
async fn retry<R: Record>(
    record: &R,
    policy: &RetryPolicy,
    attempt: u32,
    retry_number: u32,
    message: String,
    timed_out: bool,
) -> bool {
    let delay = policy.next_delay(retry_number);
    let now = Utc::now();
    let next = chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    record.emit_state(State::Retrying, attempt, Some(message.clone()), Some(next));
    record.runtime_log(LogLevel::Warn, RUNTIME_TARGET, || {
        let total = policy.retries.saturating_add(1);
        let when = if delay.is_zero() {
            "now".to_string()
        } else {
            format!("in {}", humanize(delay))
        };
        if timed_out {
            format!("Attempt {attempt} of {total} {message}; retrying {when}")
        } else {
            format!("Attempt {attempt} of {total} failed: {message}; retrying {when}")
        }
    });
    if let Some(hooks) = crate::hooks::retry_hooks(record, attempt, message) {
        hooks.await;
    }
    if delay.is_zero() {
        return !record.cancel_requested();
    }
    // Boxed: a timer is large, and most runs never wait for one.
    let sleep = Box::pin(tokio::time::sleep(delay));
    tokio::select! {
        _ = sleep => !record.cancel_requested(),
        _ = record.wait_cancel() => false,
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(message) => (*message).to_string(),
            Err(_) => "panicked with a non-string payload".to_string(),
        },
    }
}
