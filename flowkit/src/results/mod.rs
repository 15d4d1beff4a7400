//! Durable runs: persisted results, cache keys, resuming a flow run, idempotency keys.
//!
//! Everything lives in a [`ResultStore`]: a flat namespace of keys (`/`-separated, like object
//! store paths) holding whole objects written atomically. The layout:
//!
//! - `runs/<flow_run_id>/flow.json`: the flow run's manifest (flow name, parameters, last
//!   attempt, last state), written at each attempt's start and end;
//! - `runs/<flow_run_id>/tasks/<call>.json`: the result of one completed task call, keyed by the
//!   call's identity (task name, occurrence, map index, inputs hash): what a resume reuses (the
//!   [`LocalStore`] packs the small ones of a run into `runs/<flow_run_id>/tasks.pack`);
//! - `runs/<flow_run_id>/children.json`: its child flow runs by identity (flow name,
//!   occurrence, parameters hash), so that a resumed parent resumes them;
//! - `cache/<key>.json`: a task result under its cache key (task name + inputs hash);
//! - `keys/<key>.json`: the result of the flow run that completed an idempotency key.
//!
//! Every object is JSON: an envelope (which run stored it, when, until when it is valid) around
//! the value.

pub(crate) mod envelope;
pub(crate) mod keys;
mod local;
#[cfg(feature = "object-store")]
mod object;
mod pack;
pub(crate) mod plan;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

pub use envelope::Codec;
pub use keys::InputsHasher;
pub(crate) use keys::idempotency_key;
pub use local::LocalStore;
#[cfg(feature = "object-store")]
pub use object::ObjectStoreResults;

/// A boxed future, as [`ResultStore`]'s methods return (the trait is object-safe, so that a
/// store can be chosen at run time).
pub type StoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ResultStoreError>> + Send + 'a>>;

/// Where persisted results go: whole objects under `/`-separated keys.
///
/// The two operations are those every object store has (`object_store`'s `get` and `put`), so
/// an S3, GCS or Azure store can implement it as well as the local directory
/// ([`LocalStore`], the default). A `put` must be atomic: a reader sees the old object, the new
/// one, or none, never a part.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use flowkit::{ResultStore, ResultStoreError, StoreFuture};
///
/// /// Keeps results in memory (for tests).
/// #[derive(Debug, Default)]
/// struct InMemory(Mutex<HashMap<String, Vec<u8>>>);
///
/// impl ResultStore for InMemory {
///     fn location(&self) -> String { "memory".into() }
///     fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
///         let value = self.0.lock().unwrap().get(key).cloned();
///         Box::pin(async move { Ok(value) })
///     }
///     fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
///         self.0.lock().unwrap().insert(key.to_string(), value);
///         Box::pin(async { Ok(()) })
///     }
/// }
/// # let _: std::sync::Arc<dyn ResultStore> = std::sync::Arc::new(InMemory::default());
/// ```
pub trait ResultStore: Send + Sync + std::fmt::Debug + 'static {
    /// Where the store keeps its objects, for messages (a directory, a URL).
    fn location(&self) -> String;
    /// The object under `key`, or `None` if there is none.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// Stores `value` under `key`, replacing what was there, atomically.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()>;
    /// Copies the object under `from` to `to` (a result kept under its cache key as well).
    /// The default reads it and writes it again; a store that can copy in place (an object
    /// store's server-side copy) overrides it.
    fn copy<'a>(&'a self, from: &'a str, to: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            match self.get(from).await? {
                Some(value) => self.put(to, value).await,
                None => Err(ResultStoreError::Unavailable {
                    location: self.location(),
                    action: "copy",
                    key: from.to_string(),
                    message: "the object to copy is gone".into(),
                }),
            }
        })
    }
    /// When the store packs the value of `len` bytes under `key` into a larger object, that
    /// object's key (what a run's record shows as where its result is); `None` (the default)
    /// when each key is an object of its own.
    fn packed_in(&self, key: &str, len: usize) -> Option<String> {
        let _ = (key, len);
        None
    }
}

impl<S: ResultStore + ?Sized> ResultStore for Arc<S> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        (**self).get(key)
    }
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        (**self).put(key, value)
    }
    fn copy<'a>(&'a self, from: &'a str, to: &'a str) -> StoreFuture<'a, ()> {
        (**self).copy(from, to)
    }
    fn packed_in(&self, key: &str, len: usize) -> Option<String> {
        (**self).packed_in(key, len)
    }
}

/// The result store a URL names: a directory path or `file:///dir` is a [`LocalStore`] (the
/// embedded default, which packs a flow run's small results into one file); `s3://bucket/prefix`,
/// `gs://bucket/prefix`, `az://container/prefix` and `memory:///` are object stores
/// ([`ObjectStoreResults`], features `s3`, `gcs`, `azure`, `object-store`). `FLOWKIT_RESULTS`
/// takes the same URLs.
///
/// ```
/// let store = flowkit::result_store_from_url("/var/lib/etl/results").unwrap();
/// assert_eq!(store.location(), "/var/lib/etl/results");
/// # #[cfg(not(feature = "s3"))]
/// assert!(flowkit::result_store_from_url("s3://bucket/results").is_err());
/// ```
pub fn result_store_from_url(url: &str) -> Result<Arc<dyn ResultStore>, ResultStoreError> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Arc::new(LocalStore::new(path)));
    }
    let scheme = url.split_once("://").map(|(scheme, _)| scheme).filter(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let Some(_scheme) = scheme else {
        return Ok(Arc::new(LocalStore::new(url)));
    };
    #[cfg(feature = "object-store")]
    {
        Ok(Arc::new(ObjectStoreResults::from_url(url)?))
    }
    #[cfg(not(feature = "object-store"))]
    Err(ResultStoreError::Unavailable {
        location: url.to_string(),
        action: "open",
        key: String::new(),
        message: format!(
            "`{_scheme}://` result stores need flowkit's `s3`, `gcs` or `azure` feature (`object-store` for `memory://`)"
        ),
    })
}

/// A store that could not be opened (a bad `FLOWKIT_RESULTS`): every use fails with why, so a
/// task that persists fails with a clear error instead of writing somewhere else.
#[derive(Debug)]
struct Unopened(ResultStoreError);

impl ResultStore for Unopened {
    fn location(&self) -> String {
        match &self.0 {
            ResultStoreError::Unavailable { location, .. } => location.clone(),
            other => other.to_string(),
        }
    }
    fn get<'a>(&'a self, _key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let error = self.0.clone();
        Box::pin(async move { Err(error) })
    }
    fn put<'a>(&'a self, _key: &'a str, _value: Vec<u8>) -> StoreFuture<'a, ()> {
        let error = self.0.clone();
        Box::pin(async move { Err(error) })
    }
}

/// Why the result store could not be used. A task that cannot store its result fails with it
/// (and is retried like any failure); a stored result that is missing, corrupt or of another
/// type is not an error: the task runs again, with a warning logged on its run.
///
/// ```
/// use flowkit::ResultStoreError;
/// let error = ResultStoreError::Unavailable {
///     location: "/data/results".into(),
///     action: "write",
///     key: "cache/ab12.json".into(),
///     message: "Permission denied (os error 13)".into(),
/// };
/// assert!(error.to_string().contains("could not write"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResultStoreError {
    /// Reading or writing failed (unreachable, permission denied, disk full…).
    #[error("the result store at {location} could not {action} `{key}`: {message}")]
    Unavailable {
        /// The store's location.
        location: String,
        /// `read` or `write`.
        action: &'static str,
        /// The object's key.
        key: String,
        /// What went wrong.
        message: String,
    },
    /// A result could not be serialized.
    #[error("could not serialize the result: {message}")]
    Serialize {
        /// serde's message.
        message: String,
    },
    /// `resume` was given a flow run the store has no record of.
    #[error(
        "no flow run {run_id} in the result store at {location}: only flow runs made with `#[flow(persist_result = true)]` can be resumed"
    )]
    RunNotFound {
        /// The store's location.
        location: String,
        /// The flow run asked for.
        run_id: uuid::Uuid,
    },
    /// `resume` was given a run of another flow.
    #[error("flow run {run_id} is a run of `{found}`, not of `{expected}`")]
    WrongFlow {
        /// The flow run asked for.
        run_id: uuid::Uuid,
        /// The flow resumed.
        expected: String,
        /// The flow the run belongs to.
        found: String,
    },
}

static GLOBAL_STORE: OnceLock<Arc<dyn ResultStore>> = OnceLock::new();

/// The store used by runs that were not given one: the one [`Config::results_dir`] or
/// [`Config::result_store`] installed, else the one `FLOWKIT_RESULTS` names (a URL or a path,
/// see [`result_store_from_url`]), else a [`LocalStore`] in `FLOWKIT_RESULTS_DIR`, else in
/// `$XDG_DATA_HOME/flowkit/results` (`~/.local/share/flowkit/results`).
///
/// [`Config::results_dir`]: crate::Config::results_dir
/// [`Config::result_store`]: crate::Config::result_store
///
/// ```
/// println!("results go to {}", flowkit::global_result_store().location());
/// ```
pub fn global_result_store() -> &'static Arc<dyn ResultStore> {
    GLOBAL_STORE.get_or_init(|| {
        let Some(url) = std::env::var("FLOWKIT_RESULTS").ok().filter(|u| !u.is_empty()) else {
            return Arc::new(LocalStore::new(default_results_dir()));
        };
        result_store_from_url(&url).unwrap_or_else(|error| {
            tracing::error!(%error, "FLOWKIT_RESULTS names no usable result store: persisting tasks will fail");
            Arc::new(Unopened(error))
        })
    })
}

/// Installs the global store; false if one was set before.
pub(crate) fn set_global_store(store: Arc<dyn ResultStore>) -> bool {
    GLOBAL_STORE.set(store).is_ok()
}

/// `FLOWKIT_RESULTS_DIR`, else `$XDG_DATA_HOME/flowkit/results`, else
/// `~/.local/share/flowkit/results`, else (no home) `flowkit-results` in the temp directory.
pub fn default_results_dir() -> std::path::PathBuf {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("FLOWKIT_RESULTS_DIR") {
        return dir.into();
    }
    if let Some(data) = var("XDG_DATA_HOME") {
        return std::path::PathBuf::from(data).join("flowkit/results");
    }
    match var("HOME") {
        Some(home) => std::path::PathBuf::from(home).join(".local/share/flowkit/results"),
        None => std::env::temp_dir().join("flowkit-results"),
    }
}

/// Now, by tokio's clock: wall-clock time at the first call, moved on by tokio's `Instant`
/// since. Cache expirations use it, so tests with a paused clock can step over them.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    static ANCHOR: OnceLock<(chrono::DateTime<chrono::Utc>, tokio::time::Instant)> =
        OnceLock::new();
    let (wall, instant) = *ANCHOR.get_or_init(|| (chrono::Utc::now(), tokio::time::Instant::now()));
    let current = tokio::time::Instant::now();
    let signed = match current.checked_duration_since(instant) {
        Some(ahead) => chrono::Duration::from_std(ahead).unwrap_or(chrono::Duration::MAX),
        None => -chrono::Duration::from_std(instant.duration_since(current))
            .unwrap_or(chrono::Duration::MAX),
    };
    wall.checked_add_signed(signed).unwrap_or(wall)
}
