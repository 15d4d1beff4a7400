//! The shared records of a running flow run or task run, and the retry loop they both use.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use crate::error::{RunError, humanize};
use crate::events::{EventKind, RunType, StateChanged};
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

/// Counts a flow run's live task runs, so the flow ends only after all of them.
#[derive(Default)]
pub(crate) struct Active {
    count: AtomicUsize,
    idle: Notify,
}

impl Active {
    pub(crate) fn enter(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn leave(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
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
    pub(crate) bus: EventBus,
    pub(crate) limiter: Option<Semaphore>,
    pub(crate) attempt: AtomicU32,
    /// The flow run this one is a child of.
    pub(crate) parent: Option<Arc<FlowRun>>,
    pub(crate) parent_task: Option<Uuid>,
    pub(crate) active: Active,
    pub(crate) cancel: Cancel,
    pub(crate) done: Completion,
    /// Task runs detached from their handles: still stopped when the flow run is.
    pub(crate) detached: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl FlowRun {
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
    pub(crate) parent_task: Option<Uuid>,
    /// The bus of a task run outside any flow (inside one, the flow's bus is used).
    pub(crate) own_bus: EventBus,
    pub(crate) attempt: AtomicU32,
    pub(crate) map_index: Option<u64>,
    pub(crate) done: Completion,
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
pub(crate) trait Record {
    fn run_type(&self) -> RunType;
    fn name(&self) -> &Cow<'static, str>;
    fn run_id(&self) -> Uuid;
    fn bus(&self) -> &EventBus;
    fn flow_run_id(&self) -> Option<Uuid>;
    fn task_run_id(&self) -> Option<Uuid>;
    fn set_attempt(&self, attempt: u32);
    fn attempt(&self) -> u32;
    fn completion(&self) -> &Completion;
    /// The flow run whose count of live runs includes this one.
    fn counted_in(&self) -> Option<&FlowRun>;
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
        self.bus()
            .emit_with(self.flow_run_id(), self.task_run_id(), || {
                EventKind::StateChanged(StateChanged {
                    state,
                    attempt,
                    message,
                    next_attempt_at,
                })
            });
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
    fn counted_in(&self) -> Option<&FlowRun> {
        self.flow.as_deref()
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
    fn completion(&self) -> &Completion {
        &self.done
    }
    fn counted_in(&self) -> Option<&FlowRun> {
        self.parent.as_deref()
    }
    fn cancel_requested(&self) -> bool {
        self.cancel.is_requested()
    }
    fn wait_cancel(&self) -> impl Future<Output = ()> + Send {
        self.cancel.cancelled()
    }
}

/// Ends a run: if its future is dropped (or aborted, even before its first poll) before it
/// reached a terminal state, records `Cancelled`; then leaves the count of live runs of the
/// flow run it belongs to.
pub(crate) struct EndGuard<R: Record> {
    pub(crate) record: Arc<R>,
}

impl<R: Record> EndGuard<R> {
    /// Counts the run in every flow run above it, so that each of them (a parent flow run
    /// included) ends only after it.
    pub(crate) fn new(record: Arc<R>) -> Self {
        let mut flow = record.counted_in();
        while let Some(run) = flow {
            run.active.enter();
            flow = run.parent.as_deref();
        }
        EndGuard { record }
    }
}

impl<R: Record> Drop for EndGuard<R> {
    fn drop(&mut self) {
        let record = &*self.record;
        if record.completion().get().is_none() {
            // A panic outside the caught region (in `retry_if`, an error's `Display`, an
            // argument's `Clone`) unwinds through here: that is a crash, not a cancellation.
            let (state, message) = if std::thread::panicking() {
                (State::Crashed, "panicked outside the task body")
            } else {
                (State::Cancelled, "cancelled before it finished")
            };
            record.emit_state(state, record.attempt(), Some(message.into()), None);
            record.completion().complete(state);
        }
        let mut flow = record.counted_in();
        while let Some(run) = flow {
            run.active.leave();
            flow = run.parent.as_deref();
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
}

/// Runs attempts until one succeeds, retries are spent, or the error is not worth retrying,
/// recording every state on the way. `start` runs attempt `n` (1-based).
pub(crate) async fn drive<R, T, E, S, F>(
    record: &R,
    policy: &RetryPolicy,
    mut start: S,
    should_retry: impl Fn(&E) -> bool,
) -> Result<T, RunError<E>>
where
    R: Record,
    E: std::fmt::Display,
    S: FnMut(u32) -> F,
    F: Future<Output = Attempt<T, E>>,
{
    let mut attempt = 1;
    loop {
        record.set_attempt(attempt);
        let outcome = if record.cancel_requested() {
            Attempt::Cancelled
        } else {
            record.emit_state(State::Running, attempt, None, None);
            start(attempt).await
        };
        let retryable = attempt <= policy.retries;
        let retry_message = match &outcome {
            Attempt::Err(error) if retryable && should_retry(error) => Some(format!("{error:#}")),
            Attempt::TimedOut(after) if retryable => Some(timeout_message(*after)),
            _ => None,
        };
        let outcome = match retry_message {
            Some(message) => {
                if retry(record, policy, attempt, message).await {
                    attempt += 1;
                    continue;
                }
                Attempt::Cancelled
            }
            None => outcome,
        };
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
        };
        let message = match &result {
            Ok(_) => None,
            Err(RunError::Failed { error, .. }) => Some(format!("{error:#}")),
            Err(RunError::TimedOut { after, .. }) => Some(timeout_message(*after)),
            Err(other) => Some(other.to_string()),
        };
        record.emit_state(state, attempt, message, None);
        record.completion().complete(state);
        return result;
    }
}

fn timeout_message(after: Duration) -> String {
    format!("timed out after {}", humanize(after))
}

/// Records `Retrying` and waits out the delay; false if the run was cancelled meanwhile.
async fn retry<R: Record>(record: &R, policy: &RetryPolicy, attempt: u32, message: String) -> bool {
    let delay = policy.next_delay(attempt);
    let now = Utc::now();
    let next = chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    record.emit_state(State::Retrying, attempt, Some(message), Some(next));
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
