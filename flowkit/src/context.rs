//! The run context: which run the current code is part of.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use uuid::Uuid;

use crate::EventBus;
use crate::run::{FlowRun, Record, TaskRun};

/// The run a piece of code runs in, set for the duration of each attempt.
#[derive(Clone)]
pub(crate) enum Scope {
    Flow(Arc<FlowRun>),
    Task(Arc<TaskRun>),
}

tokio::task_local! {
    pub(crate) static CURRENT: Scope;
    /// The bus set by [`EventBus::scope`] for runs started outside any flow.
    static DEFAULT_BUS: EventBus;
}

pub(crate) fn current() -> Option<Scope> {
    CURRENT.try_with(Scope::clone).ok()
}

/// Calls `f` with the current scope, without cloning it.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Scope>) -> R) -> R {
    if CURRENT.try_with(|_| ()).is_ok() {
        CURRENT.with(|scope| f(Some(scope)))
    } else {
        f(None)
    }
}

/// The bus of a run started outside any flow run: that of the standalone task run it is started
/// in, else the one set by [`EventBus::scope`], else the global bus.
pub(crate) fn default_bus(scope: Option<&Scope>) -> EventBus {
    if let Some(scope) = scope {
        return scope.bus().clone();
    }
    DEFAULT_BUS
        .try_with(EventBus::clone)
        .unwrap_or_else(|_| crate::config::global_bus().clone())
}

impl EventBus {
    /// Runs the future that `start` returns with this bus as the default: runs started in it
    /// outside any flow (task calls, [`map`](crate::map), submitted tasks, flows) send their
    /// events here, as if each were called with `.on(&bus)`. Runs inside a flow keep using
    /// their flow's bus.
    ///
    /// `start` is called inside the scope, so runs that start as soon as they are called
    /// (`map`, `submit`) belong to it: write `bus.scope(|| flowkit::map(items, task))`, not
    /// `bus.scope(|| handle)` with a handle made before.
    ///
    /// ```
    /// use flowkit::{EventBus, MemorySink, task};
    ///
    /// #[task]
    /// async fn double(x: u32) -> u32 { x * 2 }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let memory = MemorySink::new();
    /// let bus = EventBus::builder().sink(memory.clone()).build();
    /// let doubled = bus.scope(|| flowkit::map([1, 2, 3], double)).await;
    /// bus.flush().await;
    /// assert_eq!(doubled.len(), 3);
    /// assert_eq!(memory.runs_named("double").len(), 3);
    /// # }
    /// ```
    pub fn scope<F: std::future::IntoFuture>(
        &self,
        start: impl FnOnce() -> F,
    ) -> impl std::future::Future<Output = F::Output> {
        let future = DEFAULT_BUS.sync_scope(self.clone(), || start().into_future());
        DEFAULT_BUS.scope(self.clone(), future)
    }
}

impl Scope {
    /// The bus the runs of this scope emit on.
    pub(crate) fn bus(&self) -> &EventBus {
        match self {
            Scope::Flow(flow) => &flow.bus,
            Scope::Task(task) => task.bus(),
        }
    }

    /// The flow run this scope belongs to.
    pub(crate) fn flow(&self) -> Option<&Arc<FlowRun>> {
        match self {
            Scope::Flow(flow) => Some(flow),
            Scope::Task(task) => task.flow.as_ref(),
        }
    }
}

/// What a task or flow knows about its own run: ids, names, attempt, parameters.
///
/// ```
/// use flowkit::{flow, task};
///
/// #[task(retries = 2, retry_delay = 0)]
/// async fn flaky() -> Result<u32, String> {
///     let ctx = flowkit::context().expect("inside a task");
///     // Attempts are 1-based: fail twice, then succeed.
///     if ctx.attempt() < 3 { Err(format!("attempt {}", ctx.attempt())) } else { Ok(ctx.attempt()) }
/// }
///
/// #[flow]
/// async fn demo(day: String) -> Result<u32, flowkit::RunError<String>> {
///     let ctx = flowkit::context().expect("inside a flow");
///     assert_eq!(ctx.flow_name(), Some("demo"));
///     assert_eq!(ctx.parameters().unwrap()["day"], "2026-11-26");
///     flaky().await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// assert_eq!(demo("2026-11-26".into()).await.unwrap(), 3);
/// assert!(flowkit::context().is_none()); // outside any run
/// # }
/// ```
#[derive(Clone)]
pub struct RunContext {
    scope: Scope,
}

/// The context of the run the caller is part of; `None` outside any task or flow.
pub fn context() -> Option<RunContext> {
    current().map(|scope| RunContext { scope })
}

impl RunContext {
    /// The id of the innermost run: the task run inside a task, else the flow run.
    pub fn run_id(&self) -> Uuid {
        match &self.scope {
            Scope::Flow(flow) => flow.id,
            Scope::Task(task) => task.id,
        }
    }

    /// The flow run's id, if the code runs in a flow.
    pub fn flow_run_id(&self) -> Option<Uuid> {
        self.scope.flow().map(|f| f.id)
    }

    /// The flow's name, if the code runs in a flow.
    pub fn flow_name(&self) -> Option<&str> {
        self.scope.flow().map(|f| &*f.options.name)
    }

    /// The task run's id, inside a task.
    pub fn task_run_id(&self) -> Option<Uuid> {
        match &self.scope {
            Scope::Task(task) => Some(task.id),
            Scope::Flow(_) => None,
        }
    }

    /// The task's name, inside a task.
    pub fn task_name(&self) -> Option<&str> {
        match &self.scope {
            Scope::Task(task) => Some(&task.options.name),
            Scope::Flow(_) => None,
        }
    }

    /// The attempt of the innermost run, from 1.
    pub fn attempt(&self) -> u32 {
        match &self.scope {
            Scope::Flow(flow) => flow.attempt.load(Ordering::Relaxed),
            Scope::Task(task) => task.attempt.load(Ordering::Relaxed),
        }
    }

    /// The position of the item, in a task run made by `map`.
    pub fn map_index(&self) -> Option<u64> {
        match &self.scope {
            Scope::Task(task) => task.map_index,
            Scope::Flow(_) => None,
        }
    }

    /// The flow run's parameters, as JSON.
    pub fn parameters(&self) -> Option<&serde_json::Value> {
        self.scope.flow().map(|f| &f.parameters)
    }

    /// The scheduled run of a [`Deployment`](crate::serve::Deployment) this run belongs to: when
    /// it was due and its data interval. `None` for a flow called directly.
    pub fn scheduled(&self) -> Option<&crate::serve::ScheduledRun> {
        self.scope.flow().and_then(|f| f.scheduled.as_deref())
    }
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("flow_run_id", &self.flow_run_id())
            .field("flow_name", &self.flow_name())
            .field("task_run_id", &self.task_run_id())
            .field("task_name", &self.task_name())
            .field("attempt", &self.attempt())
            .finish()
    }
}

/// Spawns a tokio task that carries the current run with it: inside it, `tracing` events are
/// logged on this run, [`context`] answers, and tasks it calls belong to this run's flow run, as
/// they would in the run's own body. Like a submitted task run, it is part of the flow run's
/// work: the flow run ends only after it, and stops it when cancelled or timed out. Outside any
/// run it is `tokio::spawn`. The current `tracing` span goes along too.
///
/// ```
/// use flowkit::{flow, task};
///
/// #[task]
/// async fn fetch_pages() -> usize {
///     let page = flowkit::spawn(async {
///         tracing::info!("fetching page 2"); // logged on the task run
///         flowkit::context().map(|c| c.attempt())
///     });
///     page.await.unwrap().unwrap_or(0) as usize
/// }
///
/// #[flow]
/// async fn crawl() -> Result<usize, flowkit::RunError<std::convert::Infallible>> {
///     fetch_pages().await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// assert_eq!(crawl().await.unwrap(), 1);
/// # }
/// ```
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;
    let future = future.in_current_span();
    let Some(scope) = current() else {
        return match DEFAULT_BUS.try_with(EventBus::clone) {
            Ok(bus) => tokio::spawn(DEFAULT_BUS.scope(bus, future)),
            Err(_) => tokio::spawn(future),
        };
    };
    let flow = scope.flow().cloned();
    let counted = Counted::new(flow.clone());
    let join = tokio::spawn(CURRENT.scope(scope, async move {
        let _counted = counted;
        future.await
    }));
    if let Some(flow) = flow {
        flow.detach(join.abort_handle());
    }
    join
}

/// Counts a spawned future in the live work of its flow run and every flow run above it, until
/// it ends or is dropped (as `EndGuard` does for runs).
struct Counted(Option<Arc<FlowRun>>);

impl Counted {
    fn new(flow: Option<Arc<FlowRun>>) -> Self {
        let mut run = flow.as_deref();
        while let Some(r) = run {
            r.live.enter();
            run = r.parent.as_deref();
        }
        Counted(flow)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut run = self.0.as_deref();
        while let Some(r) = run {
            r.leave();
            run = r.parent.as_deref();
        }
    }
}
