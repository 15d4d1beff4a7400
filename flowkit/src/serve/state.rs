//! The embedded scheduler's memory: the last scheduled time of each deployment, in a small JSON
//! file, so a program restarted after downtime knows which runs it missed.
//!
//! The file is written aside and renamed over the old one, so it is never half-written. A file
//! that is missing is a fresh start, said at `info` (the usual first start, so not a warning;
//! it names the file, so a user who moved it sees why nothing was caught up); one that cannot
//! be read or parsed is a `warn` and a fresh start, never a crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the scheduler remembers of each deployment.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct SchedulerState {
    /// By deployment name: the latest scheduled time a run was started for.
    #[serde(default)]
    pub(crate) last_scheduled: BTreeMap<String, DateTime<Utc>>,
}

impl SchedulerState {
    /// Reads the state at `path`; missing or unreadable is a fresh start (said at `info` if
    /// missing, at `warn` if unreadable or corrupt).
    pub(crate) fn load(path: &Path) -> SchedulerState {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(file = %path.display(),
                    "flowkit: no scheduler state yet; starting fresh (times missed before now are not caught up)");
                return SchedulerState::default();
            }
            Err(error) => {
                tracing::warn!(%error, file = %path.display(),
                    "flowkit: could not read the scheduler's state; starting fresh (missed runs are not caught up)");
                return SchedulerState::default();
            }
        };
        serde_json::from_slice(&text).unwrap_or_else(|error| {
            tracing::warn!(%error, file = %path.display(),
                "flowkit: the scheduler's state is corrupt; starting fresh (missed runs are not caught up)");
            SchedulerState::default()
        })
    }

    /// Writes the state to `path` (aside, then renamed).
    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = path.with_extension("partial");
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, path)
    }
}

/// Where a program keeps its scheduler state by default: `FLOWKIT_STATE_DIR`, else
/// `$XDG_STATE_HOME/flowkit` or `~/.local/state/flowkit`, in `serve-<program>.json`.
pub(crate) fn default_path() -> PathBuf {
    let dir = std::env::var_os("FLOWKIT_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("flowkit")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/flowkit")))
        .unwrap_or_else(|| std::env::temp_dir().join("flowkit"));
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "program".into());
    dir.join(format!("serve-{program}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_corrupt_or_missing_file_starts_fresh() {
        let dir = std::env::temp_dir().join(format!(
            "flowkit-state-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let path = dir.join("serve.json");
        assert_eq!(SchedulerState::load(&path), SchedulerState::default());
        let mut state = SchedulerState::default();
        state
            .last_scheduled
            .insert("nightly".into(), "2026-11-27T02:00:00Z".parse().unwrap());
        state.save(&path).unwrap();
        assert_eq!(SchedulerState::load(&path), state);
        std::fs::write(&path, b"{ not json").unwrap();
        assert_eq!(SchedulerState::load(&path), SchedulerState::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
