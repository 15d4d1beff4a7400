//! Whether the store can take events right now: what `/healthz` answers, and why not.
//!
//! Three things can make a database that answers reads unable to store events: a write fails
//! (disk full, read-only, I/O error), or, for SQLite, its file is removed or replaced under the
//! server. The store remembers the last failed write until a write succeeds again, checks that
//! its file is still the one it opened before it acknowledges a batch, and proves it can write
//! with a small real write (at most once a second, whoever asks).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StoreError;

/// How long a readiness probe's answer is reused.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The health of one store.
#[derive(Default)]
pub(crate) struct Health {
    /// The SQLite file and its identity when opened; `None` for PostgreSQL or memory.
    file: Option<DatabaseFile>,
    /// Why the last write failed, until one succeeds.
    write_error: Mutex<Option<String>>,
    /// The last probe (or successful write): when, and what it found.
    probe: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Health {
    /// The health of a store over the SQLite file at `path` (for PostgreSQL, `None`).
    pub(crate) fn new(path: Option<PathBuf>) -> Health {
        Health {
            file: path.and_then(DatabaseFile::new),
            ..Health::default()
        }
    }

    /// Errors if the database file is no longer the one the store opened.
    pub(crate) fn check_file(&self) -> Result<(), StoreError> {
        match &self.file {
            Some(file) => file.check(),
            None => Ok(()),
        }
    }

    /// Records how a write went.
    pub(crate) fn wrote<T>(&self, result: &Result<T, StoreError>) {
        let mut error = self.write_error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => {
                *error = None;
                *self.probe.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((Instant::now(), Ok(())));
            }
            // A value the database refuses says nothing about the database.
            Err(e) if e.is_data_error() => {}
            Err(e) => *error = Some(e.to_string()),
        }
    }

    /// Whether events can be stored now; `probe` makes a small real write.
    pub(crate) async fn ready<F>(&self, probe: F) -> Result<(), String>
    where
        F: Future<Output = Result<(), StoreError>>,
    {
        self.check_file().map_err(|e| e.to_string())?;
        if let Some(error) = self
            .write_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(format!("the last write failed: {error}"));
        }
        if let Some((at, answer)) = &*self.probe.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < PROBE_EVERY
        {
            return answer.clone();
        }
        let answer = match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("cannot write: {error}")),
            Err(_) => Err("cannot write: the database did not answer within 5 s".into()),
        };
        *self.probe.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), answer.clone()));
        answer
    }
}

/// A database file, known by its device and inode.
struct DatabaseFile {
    path: PathBuf,
    #[cfg(unix)]
    identity: (u64, u64),
}

impl DatabaseFile {
    fn new(path: PathBuf) -> Option<DatabaseFile> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(&path).ok()?;
            Some(DatabaseFile {
                identity: (meta.dev(), meta.ino()),
                path,
            })
        }
        #[cfg(not(unix))]
        Some(DatabaseFile { path })
    }

    fn check(&self) -> Result<(), StoreError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata(&self.path) {
                Ok(meta) if (meta.dev(), meta.ino()) == self.identity => Ok(()),
                _ => Err(StoreError::FileGone(self.path.display().to_string())),
            }
        }
        #[cfg(not(unix))]
        match self.path.exists() {
            true => Ok(()),
            false => Err(StoreError::FileGone(self.path.display().to_string())),
        }
    }
}
