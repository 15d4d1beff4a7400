//! The options of a task or flow, fixed at compile time by the attribute macros.

use std::borrow::Cow;
use std::time::Duration;

use crate::{Hooks, RetryPolicy};

/// The options of a `#[task]`. The macro builds one as a `static`; building one by hand lets a
/// task be defined without the macro (see [`crate::runtime::task`]).
///
/// ```
/// use std::{borrow::Cow, time::Duration};
/// use flowkit::{RetryDelay, RetryPolicy, TaskOptions};
///
/// static FETCH: TaskOptions = TaskOptions {
///     name: Cow::Borrowed("fetch"),
///     description: None,
///     retry: RetryPolicy { retries: 3, delay: RetryDelay::Fixed(Duration::from_secs(60)), jitter: 0.0 },
///     timeout: Some(Duration::from_secs(30)),
///     tags: Cow::Borrowed(&[Cow::Borrowed("api")]),
///     persist_result: None,
///     cache: None,
///     record_arguments: None,
///     hooks: flowkit::Hooks::NONE,
/// };
/// assert_eq!(FETCH.name, "fetch");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TaskOptions {
    /// The task's name in events and on the console.
    pub name: Cow<'static, str>,
    /// Its doc comment.
    pub description: Option<Cow<'static, str>>,
    /// How it retries.
    pub retry: RetryPolicy,
    /// The timeout of each attempt.
    pub timeout: Option<Duration>,
    /// Tags recorded with each run.
    pub tags: Cow<'static, [Cow<'static, str>]>,
    /// Whether a completed run stores its result in the result store: `Some(true)` always,
    /// `Some(false)` never, `None` as its flow run says (`#[flow(persist_result = true)]`).
    pub persist_result: Option<bool>,
    /// Reuse a stored result for the same inputs (`cache_key = inputs`).
    pub cache: Option<CachePolicy>,
    /// Whether each run records its call's arguments as its parameters (up to
    /// [`ARGUMENTS_CAP`](crate::ARGUMENTS_CAP) of JSON): `Some(true)` always
    /// (`record_arguments = true`), `Some(false)` never, `None` as its flow run says
    /// (`#[flow(record_arguments = true)]`). The `#[task]` macro serializes them; a call built
    /// by hand records none.
    pub record_arguments: Option<bool>,
    /// Called when a run completes, fails, retries or is cancelled (`on_failure = notify`).
    pub hooks: Hooks,
}

/// How a task's results are cached (`#[task(cache_key = inputs, cache_expiration = "1d")]`).
///
/// ```
/// use std::time::Duration;
/// use flowkit::{CacheKey, CachePolicy};
/// let policy = CachePolicy { key: CacheKey::Inputs, expiration: Some(Duration::from_secs(86_400)), refresh: false };
/// assert_eq!(policy.key, CacheKey::Inputs);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CachePolicy {
    /// What the key is made of.
    pub key: CacheKey,
    /// How long a stored result may be reused; forever if `None`.
    pub expiration: Option<Duration>,
    /// Always run and store a new result (`refresh_cache = true`).
    pub refresh: bool,
}

/// What a cache key is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CacheKey {
    /// The task's name and the blake3 hash of its arguments' serde JSON.
    Inputs,
}

impl TaskOptions {
    /// Options with this name and every default: no retry, no timeout, no tags.
    pub const fn new(name: &'static str) -> Self {
        TaskOptions {
            name: Cow::Borrowed(name),
            description: None,
            retry: RetryPolicy::NONE,
            timeout: None,
            tags: Cow::Borrowed(&[]),
            persist_result: None,
            cache: None,
            record_arguments: None,
            hooks: Hooks::NONE,
        }
    }

    /// The same options with these hooks (see [`Hooks`]).
    pub const fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }
}

/// The options of a `#[flow]`.
///
/// ```
/// use flowkit::FlowOptions;
/// static ETL: FlowOptions = FlowOptions::new("etl");
/// assert_eq!(ETL.concurrency_limit, None);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FlowOptions {
    /// The flow's name in events and on the console.
    pub name: Cow<'static, str>,
    /// Its doc comment.
    pub description: Option<Cow<'static, str>>,
    /// How it retries (the whole body runs again).
    pub retry: RetryPolicy,
    /// The timeout of each attempt.
    pub timeout: Option<Duration>,
    /// Tags recorded with each run.
    pub tags: Cow<'static, [Cow<'static, str>]>,
    /// At most this many of the flow run's task runs run at once (tasks called from other tasks
    /// do not count, so a task that waits for its own sub-tasks cannot deadlock the flow).
    pub concurrency_limit: Option<usize>,
    /// Its task runs store their results (unless a task says `persist_result = false`), and the
    /// flow run keeps a manifest in the result store, so that it can be resumed.
    pub persist_result: bool,
    /// The template of each run's name (`#[flow(run_name = "etl-{day}")]`): `{parameter}` is
    /// replaced by that parameter's value. Without one, a run gets a generated name like
    /// `brave-otter` (see [`crate::run_name`]).
    pub run_name: Option<Cow<'static, str>>,
    /// Its task runs record their arguments as their parameters, unless a task says
    /// `record_arguments = false` (`#[flow(record_arguments = true)]`).
    pub record_arguments: bool,
    /// Called when a run completes, fails, retries or is cancelled (`on_failure = notify`).
    pub hooks: Hooks,
}

impl FlowOptions {
    /// Options with this name and every default.
    pub const fn new(name: &'static str) -> Self {
        FlowOptions {
            name: Cow::Borrowed(name),
            description: None,
            retry: RetryPolicy::NONE,
            timeout: None,
            tags: Cow::Borrowed(&[]),
            concurrency_limit: None,
            persist_result: false,
            run_name: None,
            record_arguments: false,
            hooks: Hooks::NONE,
        }
    }

    /// The same options with these hooks (see [`Hooks`]).
    pub const fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }
}
