//! Hashes: of a call's inputs, and the keys results are stored under.

use std::fmt::Write as _;

use serde::Serialize;
use uuid::Uuid;

/// Hashes a task call's arguments (blake3 over their serde JSON), for cache keys and for
/// matching a call to its earlier attempt on resume. The macros feed it; using it by hand:
///
/// ```
/// use flowkit::InputsHasher;
/// let mut a = InputsHasher::new();
/// a.add(&(1, "x"));
/// let mut b = InputsHasher::new();
/// b.add(&(1, "y"));
/// assert_ne!(a.finish(), b.finish());
/// ```
#[derive(Clone, Debug, Default)]
pub struct InputsHasher {
    hasher: blake3::Hasher,
    failed: bool,
}

impl InputsHasher {
    /// An empty hash.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an argument, by its serde JSON.
    pub fn add<T: Serialize + ?Sized>(&mut self, value: &T) {
        if serde_json::to_writer(&mut self.hasher, value).is_err() {
            self.failed = true;
        }
        // 0xFF never occurs in UTF-8 JSON: arguments cannot run into each other.
        self.hasher.update(&[0xFF]);
    }

    /// Adds an argument that cannot be serialized (a connection, a client): only its type counts.
    pub fn add_opaque(&mut self, type_name: &str) {
        self.hasher.update(&[0xFE]);
        self.hasher.update(type_name.as_bytes());
        self.hasher.update(&[0xFF]);
    }

    /// The hash; `None` if an argument failed to serialize (a map with non-string keys…), so
    /// that no two different calls can share a key.
    pub fn finish(&self) -> Option<[u8; 32]> {
        (!self.failed).then(|| *self.hasher.finalize().as_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `cache/<blake3(task name, inputs)>.json`
pub(crate) fn cache_key(task: &str, inputs: &[u8; 32]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"flowkit-cache-v1\0");
    hasher.update(task.as_bytes());
    hasher.update(&[0]);
    hasher.update(inputs);
    format!("cache/{}.json", hex(&hasher.finalize().as_bytes()[..20]))
}

/// `runs/<flow run>/tasks/<blake3(task name, occurrence, map index, inputs)>.json`: the identity
/// of a call within a flow run, stable across attempts of the run.
pub(crate) fn call_key(
    flow_run_id: Uuid,
    task: &str,
    occurrence: u64,
    map_index: Option<u64>,
    inputs: &[u8; 32],
) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"flowkit-call-v1\0");
    hasher.update(task.as_bytes());
    hasher.update(&[0]);
    hasher.update(&occurrence.to_le_bytes());
    match map_index {
        Some(index) => {
            hasher.update(&[1]);
            hasher.update(&index.to_le_bytes());
        }
        None => {
            hasher.update(&[0]);
        }
    }
    hasher.update(inputs);
    format!(
        "runs/{flow_run_id}/tasks/{}.json",
        hex(&hasher.finalize().as_bytes()[..20])
    )
}

/// The identity of a child flow call within its parent run:
/// `<blake3(flow name, occurrence, parameters hash)>`.
pub(crate) fn child_identity(flow: &str, occurrence: u64, parameters: &[u8; 32]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"flowkit-child-v1\0");
    hasher.update(flow.as_bytes());
    hasher.update(&[0]);
    hasher.update(&occurrence.to_le_bytes());
    hasher.update(parameters);
    hex(&hasher.finalize().as_bytes()[..20])
}

/// `runs/<flow run>/children.json`: its child flow runs by identity.
pub(crate) fn children_key(flow_run_id: Uuid) -> String {
    format!("runs/{flow_run_id}/children.json")
}

/// `runs/<flow run>/flow.json`
pub(crate) fn manifest_key(flow_run_id: Uuid) -> String {
    format!("runs/{flow_run_id}/flow.json")
}

/// `keys/<blake3(flow name, key)>.json`
pub(crate) fn idempotency_key(flow: &str, key: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"flowkit-key-v1\0");
    hasher.update(flow.as_bytes());
    hasher.update(&[0]);
    hasher.update(key.as_bytes());
    format!("keys/{}.json", hex(&hasher.finalize().as_bytes()[..20]))
}

/// Hashes an argument by its JSON if it is `Serialize`, else by its type name: the macros call
/// `(&&Input(&arg)).hash_input(&mut hasher)` with both traits in scope, and the method of
/// [`HashSerialize`] wins where it applies (autoref specialization).
#[doc(hidden)]
pub struct Input<'a, T: ?Sized>(pub &'a T);

#[doc(hidden)]
pub trait HashSerialize {
    fn hash_input(&self, hasher: &mut InputsHasher);
}

impl<T: Serialize + ?Sized> HashSerialize for &Input<'_, T> {
    fn hash_input(&self, hasher: &mut InputsHasher) {
        hasher.add(self.0);
    }
}

#[doc(hidden)]
pub trait HashOpaque {
    fn hash_input(&self, hasher: &mut InputsHasher);
}

impl<T: ?Sized> HashOpaque for Input<'_, T> {
    fn hash_input(&self, hasher: &mut InputsHasher) {
        hasher.add_opaque(std::any::type_name::<T>());
    }
}

/// A codec for `T` if it is `Serialize + DeserializeOwned`, else none: the macros call
/// `(&&Probe::<T>::new()).codec()` (autoref specialization, as [`Input`]).
#[doc(hidden)]
pub struct Probe<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Probe<T> {
    pub const fn new() -> Self {
        Probe(std::marker::PhantomData)
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[doc(hidden)]
pub trait ProbeSerde<T> {
    fn codec(&self) -> Option<super::Codec<T>>;
}

impl<T: Serialize + serde::de::DeserializeOwned> ProbeSerde<T> for &Probe<T> {
    fn codec(&self) -> Option<super::Codec<T>> {
        Some(super::Codec::json())
    }
}

#[doc(hidden)]
pub trait ProbeNone<T> {
    fn codec(&self) -> Option<super::Codec<T>>;
}

impl<T> ProbeNone<T> for Probe<T> {
    fn codec(&self) -> Option<super::Codec<T>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Opaque;

    // The borrows are what autoref specialization dispatches on.
    #[allow(clippy::needless_borrow)]
    #[test]
    fn serializable_arguments_hash_by_value_others_by_type() {
        let hash = |a: u32| {
            let mut h = InputsHasher::new();
            (&&Input(&a)).hash_input(&mut h);
            (&&Input(&Opaque)).hash_input(&mut h);
            h.finish()
        };
        assert_eq!(hash(1), hash(1));
        assert_ne!(hash(1), hash(2));
        let codec: Option<super::super::Codec<u32>> = (&&Probe::<u32>::new()).codec();
        assert!(codec.is_some());
        let none: Option<super::super::Codec<Opaque>> = (&&Probe::<Opaque>::new()).codec();
        assert!(none.is_none());
    }

    #[test]
    fn keys_differ_by_each_part() {
        let inputs = [7; 32];
        let run = Uuid::nil();
        let a = call_key(run, "t", 0, None, &inputs);
        assert_ne!(a, call_key(run, "t", 1, None, &inputs));
        assert_ne!(a, call_key(run, "t", 0, Some(0), &inputs));
        assert_ne!(a, call_key(run, "u", 0, None, &inputs));
        assert_ne!(a, call_key(run, "t", 0, None, &[8; 32]));
        assert!(a.starts_with("runs/00000000-0000-0000-0000-000000000000/tasks/"));
        assert_ne!(cache_key("t", &inputs), cache_key("u", &inputs));
    }
}
