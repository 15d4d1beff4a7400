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
use crate::hooks::end_run;
use crate::results::envelope::Meta;
use crate::results::idempotency_key;
use crate::results::plan::{FlowDurable, read_manifest, write_manifest};
use crate::run::{Attempt, Cancel, Completion, EndGuard, FlowRun, Live, Record, drive};
use crate::task::Outcome;
use crate::upstream::{TriggerRule, Upstream, UpstreamRun, wait_all};
use crate::{Codec, EventBus, FlowOptions, ResultStore, ResultStoreError, State};

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
pub struct FlowCall<B: FlowBody> {
    options: &'static FlowOptions,
    parameters: serde_json::Value,
    body: B,
    upstream: Vec<Upstream>,
    trigger: TriggerRule,
    bus: Option<EventBus>,
    scheduled: Option<Arc<crate::serve::ScheduledRun>>,
    /// Whether the options' retries are ignored (a run refused before it started).
    no_retries: bool,
    persist: Option<bool>,
    resume: Option<Uuid>,
    store: Option<Arc<dyn ResultStore>>,
    idempotency: Option<Idempotency<<B::Output as Outcome>::Ok>>,
}

/// An idempotency key, and how the flow's value is stored under it.
struct Idempotency<T> {
    key: String,
    codec: Codec<T>,
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
            trigger: TriggerRule::AllSucceeded,
            bus: None,
            scheduled: None,
            no_retries: false,
            persist: None,
            resume: None,
            store: None,
            idempotency: None,
        }
    }

    /// Runs again the flow run `run_id`, which failed, crashed (its process was killed) or was
    /// cancelled: a new attempt of the same flow run, with these arguments. Each task call that
    /// completed in an earlier attempt returns its stored result, recorded `Cached`, instead of
    /// running; only the rest runs.
    ///
    /// A call is matched to its earlier attempt by its task's name, its occurrence among the
    /// calls of that task in the flow run, its map index, and the hash of its arguments: a call
    /// whose arguments changed runs again. The earlier attempt must have persisted its results
    /// (`#[flow(persist_result = true)]`, or `persist_result` on the tasks); the resumed attempt
    /// persists its own. The run's manifest is read from the result store (this call's
    /// [`result_store`](Self::result_store), else the global one), so another process than the
    /// one that ran it can resume it.
    ///
    /// ```
    /// use flowkit::{flow, task};
    ///
    /// #[task]
    /// async fn fetch(day: u32) -> Result<u32, String> {
    ///     if day == 0 { Err("no data for day 0".into()) } else { Ok(day * 10) }
    /// }
    ///
    /// #[flow(persist_result = true)]
    /// async fn daily(day: u32) -> Result<u32, flowkit::RunError<String>> {
    ///     let a = fetch(1).await?;
    ///     let b = fetch(day).await?;
    ///     Ok(a + b)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # flowkit::Config::new().console(false).init().ok();
    /// # let dir = std::env::temp_dir().join(format!("flowkit-resume-doc-{}", std::process::id()));
    /// let store = std::sync::Arc::new(flowkit::LocalStore::new(&dir));
    /// let failed = daily(0).result_store(store.clone()).await.unwrap_err();
    /// // Fixed by changing the input: `fetch(1)` is reused, `fetch(2)` runs.
    /// let total = daily(2).result_store(store).resume(failed.run_id()).await.unwrap();
    /// assert_eq!(total, 30);
    /// # std::fs::remove_dir_all(dir).ok();
    /// # }
    /// ```
    pub fn resume(mut self, run_id: Uuid) -> Self {
        self.resume = Some(run_id);
        self
    }

    /// Persists the results of this run's tasks (and keeps its manifest, so that it can be
    /// resumed), or not, whatever `#[flow(persist_result = ...)]` says.
    pub fn persist_result(mut self, on: bool) -> Self {
        self.persist = Some(on);
        self
    }

    /// Keeps this run's results (and its tasks') in `store` instead of the global store.
    pub fn result_store(mut self, store: Arc<dyn ResultStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Runs the flow only if no run with this key has completed yet: if one has, awaiting
    /// gives its stored result, and the new run is recorded `Cached` without running. The key
    /// is scoped to the flow's name (`"nightly-2026-11-27"`).
    ///
    /// Two runs started with the same key at the same time both run: the key is recorded when
    /// a run completes.
    ///
    /// ```
    /// use flowkit::flow;
    ///
    /// #[flow]
    /// async fn nightly(day: String) -> usize { day.len() }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # flowkit::Config::new().console(false).init().ok();
    /// # let dir = std::env::temp_dir().join(format!("flowkit-key-doc-{}", std::process::id()));
    /// let store = std::sync::Arc::new(flowkit::LocalStore::new(&dir));
    /// let first = nightly("2026-11-27".into()).idempotency_key("nightly-2026-11-27").result_store(store.clone());
    /// assert_eq!(first.await.unwrap(), 10);
    /// // Same key, other arguments: the stored result, no new work.
    /// let again = nightly("x".into()).idempotency_key("nightly-2026-11-27").result_store(store);
    /// assert_eq!(again.await.unwrap(), 10);
    /// # std::fs::remove_dir_all(dir).ok();
    /// # }
    /// ```
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self
    where
        <B::Output as Outcome>::Ok: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.idempotency = Some(Idempotency {
            key: key.into(),
            codec: Codec::json(),
        });
        self
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
    ///
    /// A run that [resumes](crate::serve::ScheduledRun::resuming) its flow run makes this
    /// call a [`resume`](Self::resume) of it; with no stored results (the flow does not
    /// persist them), every task runs again, with a warning logged on the run.
    pub fn scheduled(mut self, run: crate::serve::ScheduledRun) -> Self {
        if run.resumes() {
            self.resume = run.id();
        }
        self.scheduled = Some(Arc::new(run));
        self
    }

    /// Waits for these runs to end before starting (see [`TaskCall::wait_for`](crate::TaskCall::wait_for)).
    pub fn wait_for<U: Into<Upstream>>(mut self, upstream: impl IntoIterator<Item = U>) -> Self {
        self.upstream.extend(upstream.into_iter().map(Into::into));
        self
    }

    /// When this run starts, given how the runs it waits for end (see
    /// [`TaskCall::trigger`](crate::TaskCall::trigger)).
    pub fn trigger(mut self, rule: TriggerRule) -> Self {
        self.trigger = rule;
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

    fn prepare(mut self, scope: Option<&Scope>) -> Prepared<B> {
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
        // A child flow call of a run that can be resumed: its identity, and (the parent
        // resuming) the child run the parent's earlier attempt made for it, which it resumes.
        let parent_durable = parent_flow
            .as_ref()
            .and_then(|parent| parent.durable.as_deref())
            .filter(|durable| durable.keeps_manifest());
        let child =
            parent_durable.map(|durable| durable.child_call(&self.options.name, &self.parameters));
        if let (None, Some((_, Some(earlier)))) = (self.resume, &child) {
            self.resume = Some(*earlier);
        }
        let persist = self.resume.is_some()
            || self.persist.unwrap_or(
                self.options.persist_result || parent_durable.is_some_and(|d| d.persist),
            );
        let durable = (persist || self.store.is_some() || self.idempotency.is_some()).then(|| {
            let store = self
                .store
                .or_else(|| {
                    let parent = parent_flow.as_ref()?.durable.as_deref()?;
                    Some(parent.store.clone())
                })
                .unwrap_or_else(|| crate::results::global_result_store().clone());
            Box::new(FlowDurable::new(store, persist, self.resume.is_some()))
        });
        let id = self
            .resume
            .or_else(|| {
                self.scheduled
                    .as_deref()
                    .and_then(crate::serve::ScheduledRun::id)
            })
            .unwrap_or_else(|| crate::ids::new_id(chrono::Utc::now()));
        if self.options.record_arguments {
            crate::arguments::flow_records_arguments();
        }
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
            attempt_base: AtomicU32::new(0),
            durable,
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
            trigger: self.trigger,
            resume: self.resume.is_some(),
            idempotency: self.idempotency,
            child_identity: child.map(|(identity, _)| identity),
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

struct Prepared<B: FlowBody> {
    no_retries: bool,
    run: Arc<FlowRun>,
    body: B,
    upstream: Vec<Upstream>,
    trigger: TriggerRule,
    root: bool,
    guard: EndGuard<FlowRun>,
    resume: bool,
    idempotency: Option<Idempotency<<B::Output as Outcome>::Ok>>,
    /// Its identity as a child flow call of a run that can be resumed.
    child_identity: Option<String>,
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
            trigger,
            root,
            guard,
            resume,
            idempotency,
            child_identity,
        } = self;
        let _guard = guard;
        // Cancellable (by Ctrl-C too) from the start, including while it waits for upstreams.
        let _registration = root.then(|| crate::cancel::register(&run));
        let waited = tokio::select! {
            waited = wait_all(&upstream, trigger) => waited,
            _ = run.cancel.cancelled() => {
                end_run(&*run, State::Cancelled, 0, Some("cancelled before it started".into()), None).await;
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
                trigger,
            };
            run.end(State::Skipped, 0, Some(error.to_string()));
            return Err(error);
        }
        drop(upstream);
        if let Some(durable) = run.durable.as_deref() {
            if let Some(idempotency) = &idempotency {
                match completed_key(&run, durable, idempotency).await {
                    Ok(Some(value)) => return Ok(value),
                    Ok(None) => {}
                    Err(error) => return Err(store_failed(&run, error).await),
                }
            }
            if resume && let Err(error) = resume_from(&run, durable).await {
                return Err(store_failed(&run, error).await);
            }
            let parent = run.parent.as_ref();
            if let (Some(identity), Some(parent)) = (child_identity, parent) {
                let parent_durable = parent.durable.as_deref();
                if let Some(parent_durable) = parent_durable.filter(|_| durable.keeps_manifest()) {
                    let recorded = parent_durable
                        .record_child(parent.id, identity, run.id)
                        .await;
                    if let Err(error) = recorded {
                        tracing::warn!(flow = %run.options.name, %error,
                            "could not record the child flow run with its parent: a resume of the parent runs it again");
                    }
                }
            }
        }
        let manifest = run
            .durable
            .as_deref()
            .filter(|durable| durable.keeps_manifest())
            .map(|durable| durable.store.clone());
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
            let run = run.clone();
            let manifest = manifest.clone();
            async move {
                if let Some(store) = manifest {
                    // Recorded before the body runs: a resume after a SIGKILL knows this attempt.
                    let written = write_manifest(&*store, &run, attempt, State::Running).await;
                    if let Err(error) = written {
                        return Attempt::Store(Box::new(error));
                    }
                }
                let mut body = Body {
                    join: tokio::spawn(attempt_future),
                    run: run.clone(),
                };
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
        if let Some(durable) = run.durable.as_deref() {
            let (state, keyed) = end_record(&run, &result, idempotency.as_ref());
            record_end(&run, durable, state, keyed).await;
        }
        // Handed off, not delivered: the HTTP sink's spool keeps them while it delivers, so a
        // flow run does not wait for the server to store its events (the process does, at exit).
        if root && !run.bus.hand_off_timeout(FLUSH_LIMIT).await {
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

/// Ends a flow run that could not use its result store `Failed`, before any attempt.
async fn store_failed<E>(run: &FlowRun, error: ResultStoreError) -> RunError<E> {
    end_run(run, State::Failed, 0, Some(error.to_string()), None).await;
    RunError::ResultStore {
        run_type: RunType::Flow,
        name: run.options.name.clone(),
        run_id: run.id,
        attempts: 0,
        error: Box::new(error),
    }
}

/// Logs a warning on the flow run.
fn warn_on_flow(run: &Arc<FlowRun>, message: &str) {
    CURRENT.sync_scope(Scope::Flow(run.clone()), || {
        tracing::warn!(flow = %run.options.name, "{message}");
    });
}

/// The stored result of the run that completed this idempotency key, if one did: the run is
/// then ended `Cached`.
async fn completed_key<T>(
    run: &Arc<FlowRun>,
    durable: &FlowDurable,
    idempotency: &Idempotency<T>,
) -> Result<Option<T>, ResultStoreError> {
    let key = idempotency_key(&run.options.name, &idempotency.key);
    let Some(bytes) = durable.store.get(&key).await? else {
        return Ok(None);
    };
    match (idempotency.codec.decode)(&bytes) {
        Ok((meta, value)) => {
            let message = format!(
                "idempotency key `{}` was completed by flow run {}",
                idempotency.key, meta.run_id
            );
            end_run(&**run, State::Cached, 0, Some(message), None).await;
            Ok(Some(value))
        }
        Err(unusable) => {
            warn_on_flow(
                run,
                &format!(
                    "the result stored for idempotency key `{}` cannot be used: {unusable}; running the flow",
                    idempotency.key
                ),
            );
            Ok(None)
        }
    }
}

/// Reads the manifest of the run to resume: the attempts made before (the next one follows
/// them), and an attempt the lost process never ended, recorded `Crashed` now.
async fn resume_from(run: &Arc<FlowRun>, durable: &FlowDurable) -> Result<(), ResultStoreError> {
    // Resumed by a server's worker: the server knows the attempt and recorded how the last
    // one ended (`Crashed` when its heartbeats stopped).
    let server_attempt = run
        .scheduled
        .as_deref()
        .filter(|scheduled| scheduled.resumes() && scheduled.id() == Some(run.id))
        .map(crate::serve::ScheduledRun::attempt);
    let manifest = read_manifest(&*durable.store, run.id).await?;
    let manifest = match (manifest, server_attempt) {
        (Some(manifest), _) => manifest,
        (None, None) => {
            return Err(ResultStoreError::RunNotFound {
                location: durable.store.location(),
                run_id: run.id,
            });
        }
        (None, Some(attempt)) => {
            CURRENT.sync_scope(Scope::Flow(run.clone()), || {
                tracing::warn!(
                    flow = %run.options.name,
                    "no stored results of this flow run in the result store at {}: every task runs again (resuming reuses results only of flows with `#[flow(persist_result = true)]`, whose workers share one result store)",
                    durable.store.location()
                );
            });
            run.attempt_base.store(
                attempt.saturating_sub(1),
                std::sync::atomic::Ordering::Relaxed,
            );
            return Ok(());
        }
    };
    durable.load_children(run.id).await?;
    if manifest.flow != run.options.name {
        return Err(ResultStoreError::WrongFlow {
            run_id: run.id,
            expected: run.options.name.to_string(),
            found: manifest.flow,
        });
    }
    if !manifest.state.is_terminal() && server_attempt.is_none() {
        run.emit_state(
            State::Crashed,
            manifest.attempt,
            Some(
                "the process running this attempt was lost (found when the run was resumed)".into(),
            ),
            None,
        );
    }
    let base = manifest
        .attempt
        .max(server_attempt.map_or(0, |attempt| attempt.saturating_sub(1)));
    run.attempt_base
        .store(base, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// An idempotency key, and the serialized value to store under it.
type Keyed = (String, Result<Vec<u8>, ResultStoreError>);

/// What [`record_end`] writes, taken from the result (which is not held across an await: its
/// types need not be `Sync`).
fn end_record<T, E>(
    run: &FlowRun,
    result: &Result<T, RunError<E>>,
    idempotency: Option<&Idempotency<T>>,
) -> (State, Option<Keyed>) {
    let state = match result {
        Ok(_) => State::Completed,
        Err(error) => error.state(),
    };
    let keyed = match (idempotency, result) {
        (Some(idempotency), Ok(value)) => {
            let meta = Meta {
                name: run.options.name.clone(),
                run_id: run.id,
                flow_run_id: Some(run.id),
                attempt: run.attempt(),
                stored_at: crate::results::now(),
                expires_at: None,
            };
            let bytes = (idempotency.codec.encode)(&meta, value).map_err(|error| {
                ResultStoreError::Serialize {
                    message: error.to_string(),
                }
            });
            Some((idempotency.key.clone(), bytes))
        }
        _ => None,
    };
    (state, keyed)
}

/// Records how the run ended in its manifest, and the value under its idempotency key.
async fn record_end(run: &Arc<FlowRun>, durable: &FlowDurable, state: State, keyed: Option<Keyed>) {
    if durable.keeps_manifest()
        && let Err(error) = write_manifest(&*durable.store, run, run.attempt(), state).await
    {
        warn_on_flow(
            run,
            &format!("could not record the end of the run: {error}"),
        );
    }
    if let Some((key, bytes)) = keyed {
        let stored = match bytes {
            Ok(bytes) => {
                let path = idempotency_key(&run.options.name, &key);
                durable.store.put(&path, bytes).await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = stored {
            warn_on_flow(
                run,
                &format!(
                    "could not record idempotency key `{key}` (a run with it will run again): {error}"
                ),
            );
        }
    }
}
