//! The embedded default store: a local directory, one file per object, but for the small
//! task results of a flow run, packed into one file per run (`pack.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::pack::{PACK_MAX, Packs, split};
use super::{ResultStore, ResultStoreError, StoreFuture};

/// A [`ResultStore`] in a local directory: each key is a file under it, written to a temporary
/// file next to it and renamed over it (atomic: a reader, or a process started after a
/// SIGKILL, sees the whole old file, the whole new one, or none). Files are not fsynced: a power
/// loss may lose the last results, which are then computed again.
///
/// The results of a flow run's task calls (`runs/<id>/tasks/...`) of up to 4 KiB are appended
/// to one file per flow run instead, `runs/<id>/tasks.pack`, each record written at once (a
/// process killed mid-write leaves a torn last record, which is ignored): a small result costs
/// its bytes on disk, not a 4 KiB block, and no file of its own. Larger values keep a file each.
///
/// Reads and writes are made on the calling thread: results are small, and a write costs
/// tens of microseconds.
///
/// ```
/// use flowkit::{LocalStore, ResultStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let dir = std::env::temp_dir().join(format!("flowkit-doc-{}", std::process::id()));
/// let store = LocalStore::new(&dir);
/// store.put("cache/a.json", b"{}".to_vec()).await.unwrap();
/// assert_eq!(store.get("cache/a.json").await.unwrap().as_deref(), Some(&b"{}"[..]));
/// assert_eq!(store.get("cache/b.json").await.unwrap(), None);
/// # std::fs::remove_dir_all(dir).ok();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
    packs: Arc<Mutex<Packs>>,
}

impl LocalStore {
    /// A store in `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            packs: Arc::default(),
        }
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        // Keys are made by flowkit (hex digests and uuids joined by `/`): no `..`.
        self.root.join(key)
    }

    fn error(&self, action: &'static str, key: &str, error: std::io::Error) -> ResultStoreError {
        ResultStoreError::Unavailable {
            location: self.root.display().to_string(),
            action,
            key: key.to_string(),
            message: error.to_string(),
        }
    }

    fn packs(&self) -> std::sync::MutexGuard<'_, Packs> {
        self.packs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>, ResultStoreError> {
        if let Some((run, name)) = split(key) {
            let pack = self.path(run).join("tasks.pack");
            let packed = self.packs().get(pack, name);
            match packed {
                Ok(Some(value)) => return Ok(Some(value)),
                Ok(None) => {}
                Err(error) => return Err(self.error("read", key, error)),
            }
        }
        match std::fs::read(self.path(key)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(self.error("read", key, error)),
        }
    }

    fn write(&self, key: &str, value: &[u8]) -> Result<(), ResultStoreError> {
        if let Some((run, name)) = split(key) {
            let pack = self.path(run).join("tasks.pack");
            let mut packs = self.packs();
            let written = if value.len() <= PACK_MAX {
                packs.put(pack, name, value)
            } else {
                // A file of its own: an older packed value must not shadow it.
                packs.remove(pack, name)
            };
            drop(packs);
            written.map_err(|error| self.error("write", key, error))?;
            if value.len() <= PACK_MAX {
                return Ok(());
            }
        }
        let path = self.path(key);
        let temp = path.with_extension(format!(
            "tmp.{}.{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let written = write_file(&temp, value).or_else(|error| {
            if error.kind() != std::io::ErrorKind::NotFound {
                return Err(error);
            }
            match temp.parent() {
                Some(dir) => std::fs::create_dir_all(dir)?,
                None => return Err(error),
            }
            write_file(&temp, value)
        });
        let renamed = written.and_then(|()| std::fs::rename(&temp, &path));
        renamed.map_err(|error| {
            let _ = std::fs::remove_file(&temp);
            self.error("write", key, error)
        })
    }
}

fn write_file(path: &Path, value: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(value)
}

impl ResultStore for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(std::future::ready(self.read(key)))
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(self.write(key, &value)))
    }

    fn packed_in(&self, key: &str, len: usize) -> Option<String> {
        split(key)
            .filter(|_| len <= PACK_MAX)
            .map(|(run, _)| format!("{run}/tasks.pack"))
    }
}
