//! What a flow run and a task call do with the result store.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::envelope::Meta;
use super::keys::{cache_key, call_key, manifest_key};
use super::{Codec, ResultStore, ResultStoreError};
use crate::State;
use crate::context::{CURRENT, Scope};
use crate::events::ResultLocation;
use crate::run::{FlowRun, TaskRun};

/// The durable side of a flow run: where results go, whether its tasks persist by default,
/// whether it resumes an earlier attempt, and how many times each task was called in it.
pub(crate) struct FlowDurable {
    pub(crate) store: Arc<dyn ResultStore>,
    /// Tasks persist their results unless they say otherwise (`#[flow(persist_result = true)]`).
    pub(crate) persist: bool,
    /// Task calls look for their result from an earlier attempt of the run.
    pub(crate) resume: bool,
    occurrences: Mutex<HashMap<Cow<'static, str>, u64>>,
    /// Its child flow runs by identity (`children_key`): loaded on resume, so a child flow call
    /// resumes the child run its earlier attempt made.
    children: Mutex<HashMap<String, Uuid>>,
    /// Writes of the children's record take turns, so the last written holds them all.
    children_written: tokio::sync::Mutex<()>,
}

impl FlowDurable {
    pub(crate) fn new(store: Arc<dyn ResultStore>, persist: bool, resume: bool) -> Self {
        FlowDurable {
            store,
            persist,
            resume,
            occurrences: Mutex::default(),
            children: Mutex::default(),
            children_written: tokio::sync::Mutex::const_new(()),
        }
    }

    /// The identity of a child flow call in this run: the flow's name, its occurrence among the
    /// calls of that flow here, and the hash of its parameters; with the child run an earlier
    /// attempt made for it, if this run resumes and one was recorded.
    pub(crate) fn child_call(
        &self,
        flow: &str,
        parameters: &serde_json::Value,
    ) -> (String, Option<Uuid>) {
        let occurrence = {
            let mut occurrences = self
                .occurrences
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let next = occurrences
                .entry(Cow::Owned(format!("flow:{flow}")))
                .or_insert(0);
            *next += 1;
            *next - 1
        };
        let mut hasher = super::InputsHasher::new();
        hasher.add(parameters);
        let hash = hasher.finish().unwrap_or_default();
        let identity = super::keys::child_identity(flow, occurrence, &hash);
        let earlier = if self.resume {
            self.children
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&identity)
                .copied()
        } else {
            None
        };
        (identity, earlier)
    }

    /// Records that the child call `identity` runs as flow run `child` (in
    /// `runs/<this run>/children.json`), so that a resume of this run resumes it.
    pub(crate) async fn record_child(
        &self,
        run_id: Uuid,
        identity: String,
        child: Uuid,
    ) -> Result<(), ResultStoreError> {
        let _turn = self.children_written.lock().await;
        let bytes = {
            let mut children = self.children.lock().unwrap_or_else(PoisonError::into_inner);
            if children.get(&identity) == Some(&child) {
                return Ok(());
            }
            children.insert(identity, child);
            serde_json::to_vec(&*children).map_err(|error| ResultStoreError::Serialize {
                message: error.to_string(),
            })?
        };
        self.store
            .put(&super::keys::children_key(run_id), bytes)
            .await
    }

    /// Loads the children an earlier attempt of run `run_id` recorded (none if it recorded
    /// none, or its record is unreadable: those children then run again).
    pub(crate) async fn load_children(&self, run_id: Uuid) -> Result<(), ResultStoreError> {
        let Some(bytes) = self.store.get(&super::keys::children_key(run_id)).await? else {
            return Ok(());
        };
        match serde_json::from_slice::<HashMap<String, Uuid>>(&bytes) {
            Ok(found) => {
                *self.children.lock().unwrap_or_else(PoisonError::into_inner) = found;
            }
            Err(error) => {
                tracing::warn!(%run_id, %error, "the record of the flow run's children is corrupt: they run again");
            }
        }
        Ok(())
    }

    /// The run keeps a manifest (`runs/<id>/flow.json`), so that it can be resumed.
    pub(crate) fn keeps_manifest(&self) -> bool {
        self.persist || self.resume
    }

    /// The position of this call among the calls of `task` in the flow run, from 0.
    pub(crate) fn next_occurrence(&self, task: &crate::TaskOptions) -> u64 {
        let mut occurrences = self
            .occurrences
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match occurrences.get_mut(&*task.name) {
            Some(next) => {
                *next += 1;
                *next - 1
            }
            None => {
                occurrences.insert(task.name.clone(), 1);
                0
            }
        }
    }
}

/// `runs/<id>/flow.json`: what a resume needs to know of a flow run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) flow: String,
    pub(crate) flow_run_id: Uuid,
    pub(crate) parameters: serde_json::Value,
    /// The last attempt started.
    pub(crate) attempt: u32,
    /// Its state: `Running` until it ended (still `Running` if the process was killed).
    pub(crate) state: State,
    pub(crate) updated_at: DateTime<Utc>,
}

pub(crate) async fn read_manifest(
    store: &dyn ResultStore,
    run_id: Uuid,
) -> Result<Option<Manifest>, ResultStoreError> {
    let key = manifest_key(run_id);
    let Some(bytes) = store.get(&key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| ResultStoreError::Unavailable {
            location: store.location(),
            action: "read",
            key,
            message: format!("the manifest is corrupt: {error}"),
        })
}

pub(crate) async fn write_manifest(
    store: &dyn ResultStore,
    run: &FlowRun,
    attempt: u32,
    state: State,
) -> Result<(), ResultStoreError> {
    let manifest = Manifest {
        flow: run.options.name.to_string(),
        flow_run_id: run.id,
        parameters: run.parameters.clone(),
        attempt,
        state,
        updated_at: Utc::now(),
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|error| ResultStoreError::Serialize {
        message: error.to_string(),
    })?;
    store.put(&manifest_key(run.id), bytes).await
}

/// A task call's arguments, hashed or not.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum Inputs {
    /// Not needed: the task does not persist.
    #[default]
    NotHashed,
    Hashed([u8; 32]),
    /// An argument failed to serialize.
    Failed,
}

/// What only calls that persist carry (boxed: a plain call pays one pointer).
#[derive(Debug, Default)]
pub(crate) struct CallExtras {
    pub(crate) inputs: Inputs,
    pub(crate) occurrence: Option<u64>,
    pub(crate) refresh: bool,
    pub(crate) store: Option<Arc<dyn ResultStore>>,
}

/// Logs a warning on the task run (a log event of the run, where a `RunLogLayer` is installed).
pub(crate) fn warn_on(run: &Arc<TaskRun>, message: &str) {
    CURRENT.sync_scope(Scope::Task(run.clone()), || {
        tracing::warn!(task = %run.options.name, "{message}");
    });
}

/// What a task call reads from and writes to the result store.
pub(crate) struct TaskPlan<T> {
    /// The task run, for the envelope of what it stores.
    name: Cow<'static, str>,
    run_id: Uuid,
    flow_run_id: Option<Uuid>,
    store: Arc<dyn ResultStore>,
    codec: Codec<T>,
    /// Where its result is recorded (for a resume, in a durable flow run).
    record_key: String,
    /// Whether to write it there: always, but for a cached call outside a flow run that can
    /// be resumed (the cache entry holds its result).
    record: bool,
    /// Look for the result of an earlier attempt of the flow run first.
    resume: bool,
    cache_key: Option<String>,
    refresh: bool,
    expiration: Option<Duration>,
    /// Where the last completed attempt's result was stored, for the run's end event.
    stored: Mutex<Option<Box<ResultLocation>>>,
}

/// What a task call knows when its run starts.
pub(crate) struct CallParts<T> {
    pub(crate) codec: Option<Codec<T>>,
    pub(crate) extras: Option<Box<CallExtras>>,
}

impl<T> TaskPlan<T> {
    /// The plan of a call, or `None` if its result is not persisted; and a warning to log on
    /// the run when what it asks cannot be done in full.
    ///
    /// The warning is returned, not logged here: a call is planned while its caller's scope is
    /// borrowed, and logging on the run enters the run's scope (see `Prepared::warn`).
    pub(crate) fn new(
        run: &Arc<TaskRun>,
        parts: CallParts<T>,
    ) -> (Option<Self>, Option<&'static str>) {
        let options = run.options;
        let durable = run.flow.as_ref().and_then(|flow| flow.durable.as_deref());
        let persist = options.cache.is_some()
            || options
                .persist_result
                .unwrap_or_else(|| durable.is_some_and(|d| d.persist));
        if !persist {
            return (None, None);
        }
        let extras = parts.extras.map(|extras| *extras).unwrap_or_default();
        let Some(codec) = parts.codec else {
            return (
                None,
                Some(
                    "its result is not persisted: its return type is not `Serialize + DeserializeOwned` (a resume runs it again)",
                ),
            );
        };
        let mut warning = None;
        let inputs = match extras.inputs {
            Inputs::Hashed(inputs) => Some(inputs),
            Inputs::Failed => {
                warning = Some(
                    "an argument failed to serialize: its result is not cached, nor reused on resume",
                );
                None
            }
            Inputs::NotHashed => None,
        };
        let flow_run_id = run.flow.as_ref().map(|f| f.id);
        let record_key = match (flow_run_id, extras.occurrence, inputs) {
            (Some(flow), Some(occurrence), Some(inputs)) => {
                call_key(flow, &options.name, occurrence, run.map_index, &inputs)
            }
            (Some(flow), _, _) => format!("runs/{flow}/tasks/{}.json", run.id),
            (None, _, _) => format!("tasks/{}.json", run.id),
        };
        let store = extras
            .store
            .or_else(|| durable.map(|d| d.store.clone()))
            .unwrap_or_else(|| super::global_result_store().clone());
        let cache_key = options
            .cache
            .as_ref()
            .and(inputs)
            .map(|inputs| cache_key(&options.name, &inputs));
        let plan = TaskPlan {
            name: options.name.clone(),
            run_id: run.id,
            flow_run_id,
            store,
            codec,
            record: durable.is_some_and(FlowDurable::keeps_manifest) || cache_key.is_none(),
            resume: durable.is_some_and(|d| d.resume)
                && extras.occurrence.is_some()
                && inputs.is_some(),
            record_key,
            cache_key,
            refresh: extras.refresh || options.cache.as_ref().is_some_and(|c| c.refresh),
            expiration: options.cache.as_ref().and_then(|c| c.expiration),
            stored: Mutex::new(None),
        };
        (Some(plan), warning)
    }

    /// A stored result this call may return instead of running: the earlier attempt's (on
    /// resume), else the cache's. `Err` if the store cannot be read.
    pub(crate) async fn lookup(
        &self,
        run: &Arc<TaskRun>,
    ) -> Result<Option<(T, String, Box<ResultLocation>)>, ResultStoreError> {
        if self.resume
            && let Some((meta, value, len)) =
                self.read(run, &self.record_key, "earlier result").await?
        {
            let message = format!(
                "resumed: the result of task run {} (stored {})",
                meta.run_id,
                meta.stored_at.format("%Y-%m-%d %H:%M:%S%.3f UTC")
            );
            return Ok(Some((value, message, self.location(&self.record_key, len))));
        }
        let Some(cache_key) = self.cache_key.as_deref().filter(|_| !self.refresh) else {
            return Ok(None);
        };
        let Some((meta, value, len)) = self.read(run, cache_key, "cached result").await? else {
            return Ok(None);
        };
        if meta.expires_at.is_some_and(|at| at <= super::now()) {
            return Ok(None);
        }
        let message = format!(
            "cache hit: the result of task run {} (stored {})",
            meta.run_id,
            meta.stored_at.format("%Y-%m-%d %H:%M:%S%.3f UTC")
        );
        // Not recorded for the flow run: a resume finds it in the cache again (or, if it has
        // expired meanwhile, runs the task, as the cache would).
        Ok(Some((value, message, self.location(cache_key, len))))
    }

    /// Where the value of `len` bytes under `key` is.
    fn location(&self, key: &str, len: usize) -> Box<ResultLocation> {
        Box::new(ResultLocation {
            store: self.store.location(),
            key: key.to_string(),
            packed_in: self.store.packed_in(key, len),
        })
    }

    /// Where the result of the completed attempt was stored (once).
    pub(crate) fn take_stored(&self) -> Option<Box<ResultLocation>> {
        self.stored
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The stored value under `key`, with its size in bytes.
    async fn read(
        &self,
        run: &Arc<TaskRun>,
        key: &str,
        what: &str,
    ) -> Result<Option<(Meta, T, usize)>, ResultStoreError> {
        let Some(bytes) = self.store.get(key).await? else {
            return Ok(None);
        };
        match (self.codec.decode)(&bytes) {
            Ok((meta, value)) => Ok(Some((meta, value, bytes.len()))),
            Err(unusable) => {
                warn_on(
                    run,
                    &format!("the {what} at `{key}` cannot be used: {unusable}; running it again"),
                );
                Ok(None)
            }
        }
    }

    /// Serializes the result of a completed attempt, for [`store`](Self::store).
    pub(crate) fn encode(&self, attempt: u32, value: &T) -> Result<Vec<u8>, ResultStoreError> {
        let now = super::now();
        let meta = Meta {
            name: self.name.clone(),
            run_id: self.run_id,
            flow_run_id: self.flow_run_id,
            attempt,
            stored_at: now,
            expires_at: self
                .expiration
                .and_then(|e| chrono::Duration::from_std(e).ok())
                .and_then(|e| now.checked_add_signed(e)),
        };
        (self.codec.encode)(&meta, value).map_err(|error| ResultStoreError::Serialize {
            message: error.to_string(),
        })
    }

    /// Stores the value of a completed attempt: the attempt completes, or fails with the
    /// store's error (and is retried like any failure).
    pub(crate) async fn persist_attempt<E>(
        &self,
        attempt: u32,
        ended: crate::run::Attempt<T, E>,
    ) -> crate::run::Attempt<T, E> {
        let value = match ended {
            crate::run::Attempt::Ok(value) => value,
            other => return other,
        };
        let stored = match self.encode(attempt, &value) {
            Ok(bytes) => self.store(bytes).await,
            Err(error) => Err(error),
        };
        match stored {
            Ok(()) => crate::run::Attempt::Ok(value),
            Err(error) => crate::run::Attempt::Store(Box::new(error)),
        }
    }

    /// Stores a serialized result (once: a result kept under its cache key too is copied
    /// there by the store, not held twice), and notes where, for the run's end.
    pub(crate) async fn store(&self, bytes: Vec<u8>) -> Result<(), ResultStoreError> {
        let len = bytes.len();
        let key = match (&self.cache_key, self.record) {
            (Some(cache_key), true) => {
                self.store.put(&self.record_key, bytes).await?;
                self.store.copy(&self.record_key, cache_key).await?;
                &self.record_key
            }
            (Some(cache_key), false) => {
                self.store.put(cache_key, bytes).await?;
                cache_key
            }
            (None, _) => {
                self.store.put(&self.record_key, bytes).await?;
                &self.record_key
            }
        };
        *self.stored.lock().unwrap_or_else(PoisonError::into_inner) = Some(self.location(key, len));
        Ok(())
    }
}
