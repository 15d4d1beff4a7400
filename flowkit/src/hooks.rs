//! Hooks: async functions called when a run completes, fails, retries or is cancelled.

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures::FutureExt;
use uuid::Uuid;

use crate::State;
use crate::events::{LogLevel, RunType};
use crate::run::Record;

/// The target of the log lines saying a hook failed or panicked (the console prints them).
pub const HOOKS_TARGET: &str = "flowkit::hooks";

/// What a hook is told about the run it is called for.
///
/// ```
/// use flowkit::{HookContext, State, task};
///
/// async fn notify_slack(run: &HookContext) -> Result<(), String> {
///     assert_eq!(run.state(), State::Failed);
///     assert_eq!(run.error(), Some("source unavailable"));
///     println!("{} {} failed on attempt {}", run.name(), run.run_id(), run.attempt());
///     Ok(())
/// }
///
/// #[task(on_failure = notify_slack)]
/// async fn extract() -> Result<u32, String> { Err("source unavailable".into()) }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// assert!(extract().await.is_err());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HookContext {
    pub(crate) run_type: RunType,
    pub(crate) name: Cow<'static, str>,
    pub(crate) run_id: Uuid,
    pub(crate) flow_run_id: Option<Uuid>,
    pub(crate) attempt: u32,
    pub(crate) state: State,
    pub(crate) error: Option<String>,
    pub(crate) parameters: Option<serde_json::Value>,
}

impl HookContext {
    /// Flow or task.
    pub fn run_type(&self) -> RunType {
        self.run_type
    }

    /// The flow's or task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The run's id.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The id of the flow run it belongs to (its own, for a flow run).
    pub fn flow_run_id(&self) -> Option<Uuid> {
        self.flow_run_id
    }

    /// The attempt that ended (1-based; 0 if none ran, as for a cached run).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The state the run enters: its terminal state, or `Retrying` for `on_retry`.
    pub fn state(&self) -> State {
        self.state
    }

    /// Why it failed, was cancelled or retries: the error of the attempt that ended (as its
    /// `Display` with `{:#}`), a timeout, a panic's message. `None` for `on_completion`.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The flow run's parameters, as JSON.
    pub fn parameters(&self) -> Option<&serde_json::Value> {
        self.parameters.as_ref()
    }
}

/// The future a hook returns: `Err` with a message if it failed.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A hook as the runtime calls it. [`hook!`](crate::hook) makes one from an `async fn`.
pub type HookFn = for<'a> fn(&'a HookContext) -> HookFuture<'a>;

/// A named hook.
///
/// ```
/// use flowkit::{Hook, HookContext, HookFuture};
///
/// fn log_it(run: &HookContext) -> HookFuture<'_> {
///     Box::pin(async move { println!("{} ended {}", run.name(), run.state()); Ok(()) })
/// }
///
/// static LOG: Hook = Hook::new("log_it", log_it);
/// assert_eq!(LOG.name, "log_it");
/// ```
#[derive(Clone, Copy)]
pub struct Hook {
    /// Its name, in the log line written if it fails.
    pub name: &'static str,
    /// The function.
    pub run: HookFn,
}

impl Hook {
    /// A hook named `name` calling `run`.
    pub const fn new(name: &'static str, run: HookFn) -> Self {
        Hook { name, run }
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Hook").field(&self.name).finish()
    }
}

impl PartialEq for Hook {
    /// Hooks compare by name (function pointers do not compare reliably).
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// The hooks of a task or flow, by transition (`#[task(on_failure = notify)]` fills these).
///
/// - `on_completion`: the run ended `Completed` or `Cached`;
/// - `on_failure`: it ended `Failed`, `TimedOut` or `Crashed` (a panic);
/// - `on_retry`: an attempt failed and another one follows (once per retry, with that
///   attempt's error);
/// - `on_cancel`: it ended `Cancelled`.
///
/// A run `Skipped` by its trigger rule never ran and calls none. Each hook is awaited once its
/// transition is decided, before it is recorded, so the hook's log lines belong to the run and a
/// flow run ends after the hooks of its task runs. A hook that returns `Err` or panics is logged
/// on the run (level error, target [`HOOKS_TARGET`]); the run's state never changes.
///
/// ```
/// use flowkit::{Hook, HookContext, Hooks, TaskOptions};
///
/// async fn page_oncall(run: &HookContext) -> Result<(), String> { Ok(()) }
///
/// static FETCH: TaskOptions = TaskOptions::new("fetch").with_hooks(Hooks {
///     on_failure: &[flowkit::hook!(page_oncall)],
///     ..Hooks::NONE
/// });
/// assert_eq!(FETCH.hooks.on_failure[0].name, "page_oncall");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Hooks {
    /// Called when the run completes.
    pub on_completion: &'static [Hook],
    /// Called when the run fails, times out or crashes.
    pub on_failure: &'static [Hook],
    /// Called before each retry.
    pub on_retry: &'static [Hook],
    /// Called when the run is cancelled.
    pub on_cancel: &'static [Hook],
}

impl Hooks {
    /// No hook.
    pub const NONE: Hooks = Hooks {
        on_completion: &[],
        on_failure: &[],
        on_retry: &[],
        on_cancel: &[],
    };

    /// The hooks called when a run ends in `state`, and the option's name.
    pub(crate) fn for_end(&self, state: State) -> (&'static [Hook], &'static str) {
        match state {
            State::Completed | State::Cached => (self.on_completion, "on_completion"),
            State::Failed | State::TimedOut | State::Crashed => (self.on_failure, "on_failure"),
            State::Cancelled => (self.on_cancel, "on_cancel"),
            _ => (&[], ""),
        }
    }
}

/// Makes a [`Hook`] of an `async fn(&HookContext)` returning `()` or `Result<(), E>` with
/// `E: Display` (what `#[task(on_failure = f)]` expands to).
///
/// ```
/// async fn audit(run: &flowkit::HookContext) { println!("{} ended", run.name()); }
/// static AUDIT: flowkit::Hook = flowkit::hook!(audit);
/// assert_eq!(AUDIT.name, "audit");
/// ```
#[macro_export]
macro_rules! hook {
    ($hook:path) => {
        $crate::Hook::new(::core::stringify!($hook), {
            fn __flowkit_hook(context: &$crate::HookContext) -> $crate::HookFuture<'_> {
                ::std::boxed::Box::pin(async move {
                    $crate::__private::hook_output($hook(context).await)
                })
            }
            __flowkit_hook
        })
    };
}

/// What a hook may return: `()`, or `Result<(), E>` with `E: Display`.
pub trait HookOutput {
    /// `Err` with the error's message.
    fn into_hook_result(self) -> Result<(), String>;
}

impl HookOutput for () {
    fn into_hook_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> HookOutput for Result<(), E> {
    fn into_hook_result(self) -> Result<(), String> {
        self.map_err(|error| format!("{error:#}"))
    }
}

/// The context of a hook of `record`.
pub(crate) fn context_of<R: Record>(
    record: &R,
    state: State,
    attempt: u32,
    error: Option<String>,
) -> HookContext {
    HookContext {
        run_type: record.run_type(),
        name: record.name().clone(),
        run_id: record.run_id(),
        flow_run_id: record.flow_run_id(),
        attempt,
        state,
        error,
        parameters: record.hook_parameters(),
    }
}

/// Calls each hook once, in order; one that fails or panics is logged on the run.
pub(crate) async fn fire<R: Record>(
    record: &R,
    hooks: &'static [Hook],
    option: &'static str,
    context: &HookContext,
) {
    for hook in hooks {
        let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| (hook.run)(context))) {
            Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
            Err(payload) => Err(payload),
        };
        let problem = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => format!("failed: {error}"),
            Err(payload) => format!("panicked: {}", crate::run::panic_message(payload)),
        };
        record.runtime_log(LogLevel::Error, HOOKS_TARGET, || {
            format!(
                "{option} hook `{}` {problem} (the run stays {})",
                hook.name, context.state
            )
        });
    }
}

/// The hooks of the end in `state`, as one boxed future; `None` (and nothing allocated) when
/// there are none, so a run without hooks pays one branch.
pub(crate) fn end_hooks<'a, R: Record>(
    record: &'a R,
    state: State,
    attempt: u32,
    message: Option<&String>,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>> {
    let (hooks, option) = record.hooks().for_end(state);
    if hooks.is_empty() {
        return None;
    }
    let error = if state.is_success() {
        None
    } else {
        message.cloned()
    };
    let context = context_of(record, state, attempt, error);
    Some(Box::pin(async move {
        fire(record, hooks, option, &context).await;
    }))
}

/// The `on_retry` hooks of the attempt that failed with `error`, as one boxed future; `None`
/// when there are none (nothing of the context is then held in the retry loop's future).
pub(crate) fn retry_hooks<R: Record>(
    record: &R,
    attempt: u32,
    error: String,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> {
    let hooks = record.hooks().on_retry;
    if hooks.is_empty() {
        return None;
    }
    let context = context_of(record, State::Retrying, attempt, Some(error));
    Some(Box::pin(async move {
        fire(record, hooks, "on_retry", &context).await;
    }))
}

/// Calls the hooks of the end in `state`, then ends the run (for the ends outside the retry
/// loop: a cached run, a store that cannot be read).
pub(crate) async fn end_run<R: Record>(
    record: &R,
    state: State,
    attempt: u32,
    message: Option<String>,
    result: Option<Box<crate::events::ResultLocation>>,
) {
    if let Some(hooks) = end_hooks(record, state, attempt, message.as_ref()) {
        hooks.await;
    }
    record.end_with(state, attempt, message, result);
}
