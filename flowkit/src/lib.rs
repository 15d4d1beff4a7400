//! # flowkit
//!
//! Workflow orchestration for Rust, in the style of Prefect: annotate ordinary async functions
//! with `#[task]` and `#[flow]`, and each call becomes a tracked run that retries, times out,
//! runs concurrently and reports every state change as an event.
//!
//! ```
//! use flowkit::{flow, task};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("source unavailable")]
//! struct Unavailable;
//!
//! /// Fetches the orders of a day (fails on its first attempt).
//! #[task(retries = 3, retry_delay = "10ms")]
//! async fn extract(day: u32) -> Result<Vec<u32>, Unavailable> {
//!     if flowkit::context().map(|c| c.attempt()) == Some(1) {
//!         return Err(Unavailable);
//!     }
//!     Ok(vec![day, day + 1])
//! }
//!
//! #[task]
//! async fn double(x: u32) -> u32 { x * 2 }
//!
//! #[flow(name = "daily-etl")]
//! async fn daily_etl(day: u32) -> anyhow::Result<u32> {
//!     let orders = extract(day).await?;
//!     let doubled = flowkit::map(orders, double).await;
//!     Ok(doubled.into_iter().collect::<Result<Vec<_>, _>>()?.iter().sum())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> anyhow::Result<()> {
//! # flowkit::Config::new().console(false).init().ok();
//! assert_eq!(daily_etl(20).await?, 82);
//! # Ok(()) }
//! ```
//!
//! The parts: [`task`] and [`flow`] (the macros), [`TaskCall`] and [`FlowCall`] (what a call
//! returns: await it, or `submit` it), [`map`], [`wait_for`](TaskCall::wait_for) with its
//! [`TriggerRule`]s and [`allow_failure`], [`Hooks`], [`sensor`] and [`wait_for_run`], [`context`], [`RunError`], the [`events`] schema, the [`EventBus`] and its
//! sinks ([`ConsoleSink`], [`MemorySink`], your own [`EventSink`]), [`init`], and durable runs:
//! persisted results and caches in a [`ResultStore`] ([`LocalStore`] by default),
//! [`FlowCall::resume`] and [`FlowCall::idempotency_key`].

// The macros expand to `::flowkit::…`: let the crate's own unit tests use them.
#[cfg(test)]
extern crate self as flowkit;

mod arguments;
mod bus;
mod cancel;
mod config;
mod context;
mod error;
pub mod events;
mod exit;
mod flow;
mod hooks;
mod ids;
pub mod limits;
mod logging;
mod map;
mod options;
mod results;
mod retry;
mod run;
pub mod run_name;
mod sensor;
pub mod serve;
mod sink;
mod state;
mod task;
pub mod testing;
mod upstream;

/// The `schemars` crate (1.x), which derives the JSON Schema of a deployment's parameters (see
/// [`Deployment::with_parameters`](serve::Deployment::with_parameters)). With
/// `use flowkit::schemars;` in scope, `#[derive(schemars::JsonSchema)]` needs no dependency of
/// your own; chrono and uuid types are supported.
pub use schemars;

pub use arguments::{ARGUMENTS_CAP, Arguments};
pub use bus::{BusStats, EventBus, EventBusBuilder};
pub use cancel::cancel_all;
pub use config::{Config, InitError, flush, global_bus, init};
pub use context::{RunContext, context, spawn};
pub use error::RunError;
pub use flow::{FlowCall, FlowHandle};
pub use flowkit_macros::{flow, task};
pub use hooks::{HOOKS_TARGET, Hook, HookContext, HookFn, HookFuture, HookOutput, Hooks};
pub use limits::rate_limit;
pub use logging::RunLogLayer;
pub use map::{MapHandle, map};
#[cfg(feature = "object-store")]
pub use object_store;
pub use options::{CacheKey, CachePolicy, FlowOptions, TaskOptions};
#[cfg(feature = "object-store")]
pub use results::ObjectStoreResults;
pub use results::{
    Codec, InputsHasher, LocalStore, ResultStore, ResultStoreError, StoreFuture,
    default_results_dir, global_result_store, result_store_from_url,
};
pub use retry::{RetryDelay, RetryPolicy};
pub use run::{RETRY_IF_TARGET, RUNTIME_TARGET};
pub use sensor::{Poke, RunPoke, Sensor, SensorError, sensor, wait_for_run};
pub use sink::{ConsoleSink, EventSink, HttpSink, HttpSinkBuilder, MemorySink};
pub use state::State;
pub use task::TaskCall;
pub use task::TaskHandle;
pub use upstream::{TriggerRule, Upstream, allow_failure};

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The building blocks the macros expand to, for defining tasks and flows without them.
///
/// ```
/// use flowkit::{TaskOptions, runtime::{Body, task}};
///
/// static ADD: TaskOptions = TaskOptions::new("add");
///
/// fn add(a: u32, b: u32) -> flowkit::TaskCall<'static, impl flowkit::runtime::TaskBody<Output = Result<u32, std::convert::Infallible>>> {
///     task(&ADD, Body::new(move || async move { Ok(a + b) }, |_: &_| true))
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// assert_eq!(add(2, 3).await.unwrap(), 5);
/// # }
/// ```
pub mod runtime {
    pub use crate::flow::{FlowBody, FlowResult};
    pub use crate::task::{Body, Outcome, TaskBody, TaskResult};

    use crate::{FlowCall, FlowOptions, TaskCall, TaskOptions};

    /// A call of a task: `options` and a body.
    pub fn task<'a, B: TaskBody + 'a>(options: &'static TaskOptions, body: B) -> TaskCall<'a, B> {
        TaskCall::new(options, body)
    }

    /// A call of a flow: `options`, its parameters as JSON, and a body.
    pub fn flow<B>(
        options: &'static FlowOptions,
        parameters: serde_json::Value,
        body: B,
    ) -> FlowCall<B>
    where
        B: FlowBody,
        <B::Output as Outcome>::Ok: Send + 'static,
        <B::Output as Outcome>::Err: std::fmt::Display + Send + 'static,
    {
        FlowCall::new(options, parameters, body)
    }
}

/// What the macros' expansions use. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::arguments::{Argument, RecordOpaque, RecordSerialize, wants_arguments};
    pub use crate::results::keys::{
        HashOpaque, HashSerialize, Input, Probe, ProbeNone, ProbeSerde,
    };
    pub use crate::task::wants_inputs;
    pub use serde_json;

    /// The codec of a task whose result is persisted: its type must be serializable (the
    /// macro points an error here at the option that asked for it).
    #[inline(always)]
    pub fn codec<T: serde::Serialize + serde::de::DeserializeOwned>() -> Option<crate::Codec<T>> {
        Some(crate::Codec::json())
    }

    /// Adds an argument to a cache key: it must be serializable (the macro points an error here
    /// at `cache_key`).
    #[inline(always)]
    pub fn hash_argument<T: serde::Serialize + ?Sized>(
        hasher: &mut crate::InputsHasher,
        value: &T,
    ) {
        hasher.add(value);
    }

    /// Gives the macro's error spans a place to point: the future of a task or flow body must
    /// be `Send`, so that it can run on any worker thread.
    #[inline(always)]
    pub fn require_send<F: Send>(future: F) -> F {
        future
    }

    /// Records an argument of a task with `record_arguments = true`: it must be serializable
    /// (the macro points an error here at the option, naming the argument's type).
    #[inline(always)]
    pub fn record_argument<T: serde::Serialize + ?Sized>(
        arguments: &mut crate::Arguments,
        name: &str,
        value: &T,
    ) {
        arguments.add(name, value);
    }

    /// Points an error at an argument that cannot be sent to another thread.
    #[inline(always)]
    pub fn require_send_argument<T: Send + ?Sized>(_: &T) {}

    /// Gives a `retry_if` closure its argument type (`&E` of the task's `Result<T, E>`).
    #[inline(always)]
    pub fn retry_if<O, P>(predicate: P) -> P
    where
        O: crate::runtime::Outcome,
        P: Fn(&O::Err) -> bool,
    {
        predicate
    }

    /// The default `retry_if`: every error is worth a retry.
    #[inline(always)]
    pub fn always_retry<E>(_: &E) -> bool {
        true
    }

    /// What a hook returned, as the runtime reads it.
    #[inline(always)]
    pub fn hook_output<O: crate::HookOutput>(output: O) -> Result<(), String> {
        output.into_hook_result()
    }

    /// A flow parameter as JSON; a value that does not serialize is recorded as its error.
    pub fn parameter<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Value {
        serde_json::to_value(value).unwrap_or_else(|error| {
            serde_json::Value::String(format!("<not serializable: {error}>"))
        })
    }
}
