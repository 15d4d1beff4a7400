//! Small task results of a flow run packed into one append-only file, with an index in memory.
//!
//! One file per result takes a filesystem block (4 KiB) however small the value; a flow run's
//! small results go instead to `runs/<flow run>/tasks.pack`, one record after another:
//!
//! ```text
//! 0xF1 | name length (u16 LE) | value length (u32 LE; u32::MAX: removed) | name | value
//! ```
//!
//! where the name is the part of the key after `runs/<flow run>/tasks/`. Each record is written
//! with one `write` to a file opened for appending, so records of concurrent writers (threads,
//! or processes resuming the same run) never interleave, and a process killed mid-write leaves
//! at most a truncated last record, which readers ignore. The index (name → offset, length) is
//! built by reading the file once per process, and extended when the file grew since.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Values up to this size are packed; larger ones get a file of their own.
pub(crate) const PACK_MAX: usize = 4096;
/// At most this many packs are kept open; the oldest are closed first.
const OPEN_PACKS: usize = 64;
const MAGIC: u8 = 0xF1;
const HEADER: usize = 1 + 2 + 4;
const REMOVED: u32 = u32::MAX;

/// `runs/<flow run>/tasks/<name>` split into the pack's path and the name.
pub(crate) fn split(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("runs/")?;
    let (run, name) = rest.split_once("/tasks/")?;
    (run.len() == 36 && !run.contains('/') && !name.contains('/') && name.len() < 1024)
        .then(|| (&key[..5 + run.len()], name))
}

/// One flow run's pack.
#[derive(Debug)]
struct Pack {
    file: File,
    /// Name → (offset of the value, its length).
    index: HashMap<Box<str>, (u64, u32)>,
    /// How far the file has been read into the index.
    indexed: u64,
    /// When it was last used (for closing the oldest).
    used: u64,
}

impl Pack {
    fn open(path: &Path) -> std::io::Result<Pack> {
        let file = match open(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open(path)?
            }
            other => other?,
        };
        let mut pack = Pack {
            file,
            index: HashMap::new(),
            indexed: 0,
            used: 0,
        };
        pack.catch_up()?;
        Ok(pack)
    }

    /// Indexes the records written since the last look (by this process or another).
    fn catch_up(&mut self) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        if len <= self.indexed {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity((len - self.indexed) as usize);
        let mut reader = &self.file;
        reader.seek(SeekFrom::Start(self.indexed))?;
        reader.take(len - self.indexed).read_to_end(&mut bytes)?;
        let mut at = 0usize;
        while bytes.len() - at >= HEADER {
            if bytes[at] != MAGIC {
                // Not a record: stop here (a torn write); what follows is not trusted.
                break;
            }
            let name_len = u16::from_le_bytes([bytes[at + 1], bytes[at + 2]]) as usize;
            let value_len =
                u32::from_le_bytes([bytes[at + 3], bytes[at + 4], bytes[at + 5], bytes[at + 6]]);
            let stored = if value_len == REMOVED {
                0
            } else {
                value_len as usize
            };
            let end = at + HEADER + name_len + stored;
            if end > bytes.len() {
                break;
            }
            let Ok(name) = std::str::from_utf8(&bytes[at + HEADER..at + HEADER + name_len]) else {
                break;
            };
            if value_len == REMOVED {
                self.index.remove(name);
            } else {
                let offset = self.indexed + (at + HEADER + name_len) as u64;
                self.index.insert(name.into(), (offset, value_len));
            }
            at = end;
        }
        self.indexed += at as u64;
        Ok(())
    }

    fn get(&mut self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !self.index.contains_key(name) {
            self.catch_up()?;
        }
        let Some(&(offset, len)) = self.index.get(name) else {
            return Ok(None);
        };
        let mut value = vec![0; len as usize];
        let mut reader = &self.file;
        reader.seek(SeekFrom::Start(offset))?;
        reader.read_exact(&mut value)?;
        Ok(Some(value))
    }

    /// Appends a record (`None`: the name's value was removed from the pack).
    fn append(&mut self, name: &str, value: Option<&[u8]>) -> std::io::Result<()> {
        let name_len = u16::try_from(name.len()).map_err(std::io::Error::other)?;
        let value_len = match value {
            Some(value) => u32::try_from(value.len())
                .ok()
                .filter(|len| *len != REMOVED)
                .ok_or_else(|| std::io::Error::other("value too large for a pack"))?,
            None => REMOVED,
        };
        let value = value.unwrap_or_default();
        let mut record = Vec::with_capacity(HEADER + name.len() + value.len());
        record.push(MAGIC);
        record.extend_from_slice(&name_len.to_le_bytes());
        record.extend_from_slice(&value_len.to_le_bytes());
        record.extend_from_slice(name.as_bytes());
        record.extend_from_slice(value);
        // Index what others appended first, so the offset of this record is known.
        self.catch_up()?;
        if self.file.metadata()?.len() > self.indexed {
            // A torn record at the end (its writer was killed): cut it off, or readers would
            // stop there and never see this record.
            self.file.set_len(self.indexed)?;
        }
        self.file.write_all(&record)?;
        let end = self.file.metadata()?.len();
        let start = end - record.len() as u64;
        if start == self.indexed {
            self.indexed = end;
            if value_len == REMOVED {
                self.index.remove(name);
            } else {
                let offset = start + (HEADER + name.len()) as u64;
                self.index.insert(name.into(), (offset, value_len));
            }
        } else {
            // Another process appended meanwhile: read it all in order.
            self.catch_up()?;
        }
        Ok(())
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

/// The packs of a store's flow runs, opened on first use.
#[derive(Debug, Default)]
pub(crate) struct Packs {
    open: HashMap<PathBuf, Pack>,
    clock: u64,
}

impl Packs {
    fn pack(&mut self, path: PathBuf) -> std::io::Result<&mut Pack> {
        self.clock += 1;
        if !self.open.contains_key(&path) {
            if self.open.len() >= OPEN_PACKS {
                let oldest = self
                    .open
                    .iter()
                    .min_by_key(|(_, pack)| pack.used)
                    .map(|(path, _)| path.clone());
                if let Some(oldest) = oldest {
                    self.open.remove(&oldest);
                }
            }
            let pack = Pack::open(&path)?;
            self.open.insert(path.clone(), pack);
        }
        let clock = self.clock;
        let pack = self
            .open
            .get_mut(&path)
            .ok_or_else(|| std::io::Error::other("the pack was not kept"))?;
        pack.used = clock;
        Ok(pack)
    }

    /// The value packed under `name` in the pack at `path`, if any (no pack: none).
    pub(crate) fn get(&mut self, path: PathBuf, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !self.open.contains_key(&path) && !path.exists() {
            return Ok(None);
        }
        self.pack(path)?.get(name)
    }

    /// Packs `value` under `name`.
    pub(crate) fn put(&mut self, path: PathBuf, name: &str, value: &[u8]) -> std::io::Result<()> {
        self.pack(path)?.append(name, Some(value))
    }

    /// Removes `name` from the pack (its value now has a file of its own), if it is there.
    pub(crate) fn remove(&mut self, path: PathBuf, name: &str) -> std::io::Result<()> {
        if !self.open.contains_key(&path) && !path.exists() {
            return Ok(());
        }
        let pack = self.pack(path)?;
        pack.catch_up()?;
        if pack.index.contains_key(name) {
            pack.append(name, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flowkit-pack-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn keys_of_task_results_split_into_pack_and_name() {
        let run = "0193a3e1-59c7-7a4e-9d53-1c3b2f0e5a11";
        let key = format!("runs/{run}/tasks/ab12.json");
        assert_eq!(split(&key), Some((&*format!("runs/{run}"), "ab12.json")));
        assert_eq!(split(&format!("runs/{run}/flow.json")), None);
        assert_eq!(split("cache/ab12.json"), None);
        assert_eq!(split(&format!("runs/{run}/tasks/a/b.json")), None);
    }

    #[test]
    fn values_written_by_one_process_are_read_by_another_and_later_records_win() {
        let dir = dir("reopen");
        let path = dir.join("tasks.pack");
        let mut writer = Packs::default();
        writer.put(path.clone(), "a", b"first").unwrap();
        writer.put(path.clone(), "b", b"bee").unwrap();
        writer.put(path.clone(), "a", b"second").unwrap();
        assert_eq!(writer.get(path.clone(), "a").unwrap().unwrap(), b"second");
        // Another process (a fresh index) reads the file.
        let mut reader = Packs::default();
        assert_eq!(reader.get(path.clone(), "a").unwrap().unwrap(), b"second");
        assert_eq!(reader.get(path.clone(), "b").unwrap().unwrap(), b"bee");
        assert_eq!(reader.get(path.clone(), "c").unwrap(), None);
        // What the writer appends later, the reader finds too.
        writer.put(path.clone(), "c", b"sea").unwrap();
        assert_eq!(reader.get(path.clone(), "c").unwrap().unwrap(), b"sea");
        // Removed: gone for both.
        writer.remove(path.clone(), "b").unwrap();
        assert_eq!(writer.get(path.clone(), "b").unwrap(), None);
        assert_eq!(Packs::default().get(path.clone(), "b").unwrap(), None);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_torn_last_record_is_ignored_and_the_next_write_is_read_after_it() {
        let dir = dir("torn");
        let path = dir.join("tasks.pack");
        let mut writer = Packs::default();
        writer.put(path.clone(), "a", b"whole").unwrap();
        // A process killed mid-write: half a record at the end.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(&[MAGIC, 1, 0, 10, 0, 0, 0, b'b', b'x'])
            .unwrap();
        let mut reader = Packs::default();
        assert_eq!(reader.get(path.clone(), "a").unwrap().unwrap(), b"whole");
        assert_eq!(reader.get(path.clone(), "b").unwrap(), None);
        // The process resuming the run writes after cutting the torn record off.
        reader.put(path.clone(), "b", b"bee").unwrap();
        assert_eq!(
            Packs::default().get(path.clone(), "b").unwrap().unwrap(),
            b"bee"
        );
        assert_eq!(
            Packs::default().get(path.clone(), "a").unwrap().unwrap(),
            b"whole"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn no_pack_is_no_value_and_makes_no_file() {
        let dir = dir("none");
        let path = dir.join("runs/x/tasks.pack");
        let mut packs = Packs::default();
        assert_eq!(packs.get(path.clone(), "a").unwrap(), None);
        packs.remove(path.clone(), "a").unwrap();
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).ok();
    }
}
