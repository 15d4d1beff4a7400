//! The options of a task or flow, fixed at compile time by the attribute macros.

use std::borrow::Cow;
use std::time::Duration;

use crate::RetryPolicy;

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
        }
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
    /// The template of each run's name (`#[flow(run_name = "etl-{day}")]`): `{parameter}` is
    /// replaced by that parameter's value. Without one, a run gets a generated name like
    /// `brave-otter` (see [`crate::run_name`]).
    pub run_name: Option<Cow<'static, str>>,
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
            run_name: None,
        }
    }
}
