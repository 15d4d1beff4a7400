//! What a stored object holds: the value, and who stored it when (JSON).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who stored a value, when, and until when it may be reused.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Meta {
    /// The task's (or flow's) name.
    pub(crate) name: Cow<'static, str>,
    /// The task run (or flow run) that computed it.
    pub(crate) run_id: Uuid,
    /// Its flow run.
    pub(crate) flow_run_id: Option<Uuid>,
    /// The attempt of the run that computed it.
    pub(crate) attempt: u32,
    pub(crate) stored_at: DateTime<Utc>,
    pub(crate) expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct Out<'a, T> {
    name: &'a str,
    run_id: Uuid,
    flow_run_id: Option<Uuid>,
    attempt: u32,
    stored_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    value: &'a T,
}

#[derive(Deserialize)]
struct In<T> {
    name: String,
    run_id: Uuid,
    flow_run_id: Option<Uuid>,
    attempt: u32,
    stored_at: DateTime<Utc>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
    value: T,
}

/// Why a stored object could not be used (the run computes its value again).
#[derive(Debug)]
pub(crate) enum Unusable {
    /// Not an envelope at all: truncated or overwritten.
    Corrupt(String),
    /// An envelope whose value is not of the type asked for (the task's type changed).
    WrongType(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Corrupt(m) => write!(f, "it is corrupt ({m})"),
            Unusable::WrongType(m) => write!(
                f,
                "it no longer deserializes as the task's return type ({m})"
            ),
        }
    }
}

/// How a task's (or flow's) value is stored and read back: serde JSON. The macros make one for
/// every return type that is `Serialize + DeserializeOwned`.
///
/// ```
/// let codec = flowkit::Codec::<Vec<u32>>::json();
/// # let _ = codec;
/// ```
pub struct Codec<T> {
    pub(crate) encode: fn(&Meta, &T) -> Result<Vec<u8>, serde_json::Error>,
    pub(crate) decode: fn(&[u8]) -> Decoded<T>,
}

/// A stored value read back, or why it cannot be used.
pub(crate) type Decoded<T> = Result<(Meta, T), Unusable>;

impl<T> Clone for Codec<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Codec<T> {}

impl<T> std::fmt::Debug for Codec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec(json)")
    }
}

impl<T: Serialize + DeserializeOwned> Codec<T> {
    /// serde JSON.
    pub const fn json() -> Self {
        Codec {
            encode: encode::<T>,
            decode: decode::<T>,
        }
    }
}

fn encode<T: Serialize>(meta: &Meta, value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Out {
        name: &meta.name,
        run_id: meta.run_id,
        flow_run_id: meta.flow_run_id,
        attempt: meta.attempt,
        stored_at: meta.stored_at,
        expires_at: meta.expires_at,
        value,
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Decoded<T> {
    match serde_json::from_slice::<In<T>>(bytes) {
        Ok(stored) => Ok((
            Meta {
                name: Cow::Owned(stored.name),
                run_id: stored.run_id,
                flow_run_id: stored.flow_run_id,
                attempt: stored.attempt,
                stored_at: stored.stored_at,
                expires_at: stored.expires_at,
            },
            stored.value,
        )),
        Err(error) => Err(match serde_json::from_slice::<In<IgnoredAny>>(bytes) {
            Ok(_) => Unusable::WrongType(error.to_string()),
            Err(_) => Unusable::Corrupt(error.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            name: "t".into(),
            run_id: Uuid::nil(),
            flow_run_id: None,
            attempt: 1,
            stored_at: Utc::now(),
            expires_at: None,
        }
    }

    #[test]
    fn round_trips_and_tells_corrupt_from_wrong_type() {
        let bytes = (Codec::<Vec<u32>>::json().encode)(&meta(), &vec![1, 2]).unwrap();
        let (read, value) = (Codec::<Vec<u32>>::json().decode)(&bytes).unwrap();
        assert_eq!((&*read.name, read.attempt, value), ("t", 1, vec![1, 2]));
        assert!(matches!(
            (Codec::<String>::json().decode)(&bytes),
            Err(Unusable::WrongType(_))
        ));
        assert!(matches!(
            (Codec::<Vec<u32>>::json().decode)(&bytes[..bytes.len() / 2]),
            Err(Unusable::Corrupt(_))
        ));
    }
}
