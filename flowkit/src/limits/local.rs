//! Concurrency limits within one process: a FIFO semaphore per tag (tokio's semaphore hands
//! permits out in the order they were asked for).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One tag's slots.
pub(super) struct Tag {
    semaphore: Arc<Semaphore>,
    /// Its limit, and the permits still to forget when they come back (a lowered limit).
    state: Mutex<(u32, usize)>,
}

/// A slot of a tag, given back when dropped.
pub(super) struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    tag: Arc<Tag>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.tag.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(permit) = self.permit.take()
            && state.1 > 0
        {
            state.1 -= 1;
            permit.forget();
        }
    }
}

static TAGS: OnceLock<RwLock<HashMap<String, Arc<Tag>>>> = OnceLock::new();
static ANY: AtomicBool = AtomicBool::new(false);

fn tags() -> &'static RwLock<HashMap<String, Arc<Tag>>> {
    TAGS.get_or_init(Default::default)
}

/// Sets the limit of `tag` to `slots`: raised, waiters go on at once; lowered, slots held
/// stay held and the limit holds again as they are given back.
pub(super) fn set(tag: &str, slots: u32) {
    let mut map = tags().write().unwrap_or_else(|e| e.into_inner());
    match map.get(tag) {
        Some(existing) => {
            let mut state = existing.state.lock().unwrap_or_else(|e| e.into_inner());
            let (current, debt) = *state;
            if slots > current {
                let more = (slots - current) as usize;
                let paid = more.min(debt);
                existing.semaphore.add_permits(more - paid);
                *state = (slots, debt - paid);
            } else {
                let fewer = (current - slots) as usize;
                let forgotten = existing.semaphore.forget_permits(fewer);
                *state = (slots, debt + fewer - forgotten);
            }
        }
        None => {
            map.insert(
                tag.to_string(),
                Arc::new(Tag {
                    semaphore: Arc::new(Semaphore::new(slots as usize)),
                    state: Mutex::new((slots, 0)),
                }),
            );
        }
    }
    ANY.store(true, Ordering::Release);
}

/// Removes the limit of `tag`: its waiters go on at once.
pub(super) fn remove(tag: &str) -> bool {
    let mut map = tags().write().unwrap_or_else(|e| e.into_inner());
    let removed = map.remove(tag);
    if map.is_empty() {
        ANY.store(false, Ordering::Release);
    }
    if let Some(tag) = &removed {
        tag.semaphore.close();
    }
    removed.is_some()
}

/// The limit of `tag` in this process, if any.
pub(super) fn get(tag: &str) -> Option<u32> {
    if !ANY.load(Ordering::Acquire) {
        return None;
    }
    let map = tags().read().unwrap_or_else(|e| e.into_inner());
    map.get(tag)
        .map(|t| t.state.lock().unwrap_or_else(|e| e.into_inner()).0)
}

/// Whether any tag has a limit in this process.
pub(super) fn any() -> bool {
    ANY.load(Ordering::Acquire)
}

/// Waits for a slot of `tag` (none if it has no limit, or it was removed meanwhile); `waiting`
/// is called once if the caller must wait.
pub(super) async fn acquire(tag: &str, waiting: &mut (dyn FnMut() + Send)) -> Option<Permit> {
    let found = {
        let map = tags().read().unwrap_or_else(|e| e.into_inner());
        map.get(tag).cloned()
    }?;
    let permit = match found.semaphore.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(tokio::sync::TryAcquireError::Closed) => return None,
        Err(tokio::sync::TryAcquireError::NoPermits) => {
            waiting();
            found.semaphore.clone().acquire_owned().await.ok()?
        }
    };
    Some(Permit {
        permit: Some(permit),
        tag: found,
    })
}
