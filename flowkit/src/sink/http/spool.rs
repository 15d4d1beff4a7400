//! The spool: batches waiting for the server, one file each, delivered oldest first.
//!
//! Every batch is written here before it is posted and removed once the server acknowledges
//! it, so a program that exits (or is killed) while a post hangs leaves its events on disk for
//! the next program that uses the same server. A file is named
//! `<nanoseconds>-<pid>-<sequence>-<events>.json`; the halves of a split file take its name
//! with `.0` or `.1` after the sequence, so they sort where it stood. Batches the server
//! refuses are moved to `refused/`, each with a `.reason.txt` beside it.
//!
//! When the disk cannot take a batch (full, read-only), it waits in memory instead: nothing is
//! dropped while the program runs.
//!
//! A batch that will be posted next (the spool holds at most one before it) is also kept in
//! memory until its first post takes it, so a server that keeps up costs one write and one
//! removal per batch, no read. A backlog is read back from its files when its turn comes.

use std::collections::VecDeque;
use std::path::PathBuf;

use super::body::Body;

/// A new batch is kept in memory beside its file when fewer batches than this wait before it.
const FRESH_BEHIND: usize = 2;

/// A batch waiting for delivery.
pub(super) struct Entry {
    stored: Stored,
    /// The bytes of a batch just written to its file, until its first post takes them.
    fresh: Option<Vec<u8>>,
    /// Events in the batch.
    pub(super) events: usize,
    /// How many times in a row the server answered it with a server error.
    pub(super) failures: u32,
    /// Made by splitting a batch the server kept failing on: split again at its first failure.
    pub(super) suspect: bool,
}

enum Stored {
    /// `<dir>/<stem>-<events>.json`.
    File { stem: String },
    /// The disk could not take it.
    Memory(Vec<u8>),
}

/// The spool of one server.
pub(super) struct Spool {
    dir: PathBuf,
    queue: VecDeque<Entry>,
    sequence: u64,
    /// Whether the last write failed (said once, not for every batch).
    disk_failing: bool,
    /// Whether the directory is known to exist (made once, not for every batch).
    dir_made: bool,
    /// Events gone from the spool so far: delivered, set aside, or delivered by another program.
    gone: u64,
}

impl Spool {
    /// Opens the spool at `dir`, picking up the batches earlier programs left.
    pub(super) fn open(dir: PathBuf) -> Spool {
        let mut found: Vec<(String, usize)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let base = name.strip_suffix(".json")?;
                let (stem, count) = base.rsplit_once('-')?;
                Some((stem.to_string(), count.parse().ok()?))
            })
            .collect();
        found.sort();
        Spool {
            dir,
            queue: found
                .into_iter()
                .map(|(stem, events)| Entry {
                    stored: Stored::File { stem },
                    fresh: None,
                    events,
                    failures: 0,
                    suspect: false,
                })
                .collect(),
            sequence: 0,
            disk_failing: false,
            dir_made: false,
            gone: 0,
        }
    }

    /// Events gone from the spool since it was opened (delivered, set aside, or delivered by
    /// another program): with the events pushed, the position delivery has reached, since
    /// batches leave in order.
    pub(super) fn gone(&self) -> u64 {
        self.gone
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Events waiting, in all batches.
    pub(super) fn events(&self) -> usize {
        self.queue.iter().map(|e| e.events).sum()
    }

    /// The oldest batch.
    pub(super) fn front_mut(&mut self) -> Option<&mut Entry> {
        self.queue.front_mut()
    }

    /// Adds a batch (a body of `events` events) as the newest.
    pub(super) fn push(&mut self, bytes: &[u8], events: usize) {
        self.sequence += 1;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let stem = format!("{stamp:024}-{}-{:06}", std::process::id(), self.sequence);
        let mut entry = self.store(stem, bytes, events, false);
        if matches!(entry.stored, Stored::File { .. }) && self.queue.len() < FRESH_BEHIND {
            entry.fresh = Some(bytes.to_vec());
        }
        self.queue.push_back(entry);
    }

    /// Writes a batch to disk (atomically: aside, then renamed), or keeps it in memory.
    fn store(&mut self, stem: String, bytes: &[u8], events: usize, suspect: bool) -> Entry {
        let stored = match self.write(&stem, events, bytes) {
            Ok(()) => {
                self.disk_failing = false;
                Stored::File { stem }
            }
            Err(error) => {
                if !self.disk_failing {
                    tracing::error!(%error, dir = %self.dir.display(),
                        "flowkit: could not write the event spool; undelivered events wait in memory");
                }
                self.disk_failing = true;
                Stored::Memory(bytes.to_vec())
            }
        };
        Entry {
            stored,
            fresh: None,
            events,
            failures: 0,
            suspect,
        }
    }

    fn write(&mut self, stem: &str, events: usize, bytes: &[u8]) -> std::io::Result<()> {
        if !self.dir_made {
            std::fs::create_dir_all(&self.dir)?;
            self.dir_made = true;
        }
        let partial = self.dir.join(format!(".{stem}.partial"));
        if std::fs::write(&partial, bytes).is_err() {
            // The directory may have been removed since: make it again, once.
            std::fs::create_dir_all(&self.dir)?;
            std::fs::write(&partial, bytes)?;
        }
        std::fs::rename(&partial, self.path(stem, events))
    }

    fn path(&self, stem: &str, events: usize) -> PathBuf {
        self.dir.join(format!("{stem}-{events}.json"))
    }

    /// The oldest batch's body; `None` (and the batch forgotten) if its file is gone, which
    /// happens when another program sharing the spool delivered it.
    pub(super) fn read_front(&mut self) -> Option<Vec<u8>> {
        loop {
            let entry = self.queue.front_mut()?;
            let read = match (&entry.stored, entry.fresh.take()) {
                (Stored::Memory(bytes), _) => Ok(bytes.clone()),
                (Stored::File { stem }, Some(bytes)) => {
                    // Written by this program: only whether another one delivered it since.
                    match std::fs::exists(self.dir.join(format!("{stem}-{}.json", entry.events))) {
                        Ok(true) => Ok(bytes),
                        _ => Err(()),
                    }
                }
                (Stored::File { stem }, None) => {
                    std::fs::read(self.dir.join(format!("{stem}-{}.json", entry.events)))
                        .map_err(|_| ())
                }
            };
            match read {
                Ok(bytes) => return Some(bytes),
                Err(_) => {
                    if let Some(entry) = self.queue.pop_front() {
                        self.gone += entry.events as u64;
                    }
                }
            }
        }
    }

    /// The oldest batch was delivered: forget it.
    pub(super) fn delivered(&mut self) {
        if let Some(entry) = self.queue.pop_front() {
            self.gone += entry.events as u64;
            if let Stored::File { stem } = &entry.stored {
                let _ = std::fs::remove_file(self.path(stem, entry.events));
            }
        }
    }

    /// Replaces the oldest batch by its two halves (both suspect), which take its place.
    pub(super) fn split_front(&mut self, (first, second): (Body, Body)) {
        let Some(entry) = self.queue.pop_front() else {
            return;
        };
        let stem = match &entry.stored {
            Stored::File { stem } => {
                let _ = std::fs::remove_file(self.path(stem, entry.events));
                stem.clone()
            }
            Stored::Memory(_) => {
                self.sequence += 1;
                format!("{:024}-{}-{:06}", 0, std::process::id(), self.sequence)
            }
        };
        let second = self.store(format!("{stem}.1"), &second.bytes, second.events, true);
        let first = self.store(format!("{stem}.0"), &first.bytes, first.events, true);
        self.queue.push_front(second);
        self.queue.push_front(first);
    }

    /// Moves the oldest batch to `refused/`, with the reason beside it.
    pub(super) fn set_aside(&mut self, reason: &str) {
        let Some(entry) = self.queue.pop_front() else {
            return;
        };
        self.gone += entry.events as u64;
        let refused = self.dir.join("refused");
        let (name, moved) = match &entry.stored {
            Stored::File { stem } => {
                let from = self.path(stem, entry.events);
                let name = format!("{stem}-{}.json", entry.events);
                let to = refused.join(&name);
                let moved =
                    std::fs::create_dir_all(&refused).and_then(|()| std::fs::rename(&from, &to));
                (name, moved)
            }
            Stored::Memory(bytes) => {
                self.sequence += 1;
                let name = format!("memory-{}-{:06}.json", std::process::id(), self.sequence);
                let moved = std::fs::create_dir_all(&refused)
                    .and_then(|()| std::fs::write(refused.join(&name), bytes));
                (name, moved)
            }
        };
        let _ = std::fs::write(refused.join(format!("{name}.reason.txt")), reason);
        tracing::warn!(file = %refused.join(&name).display(), events = entry.events, %reason, ?moved,
            "flowkit: the server refused a batch of events; kept aside");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str, events: usize) -> Body {
        Body {
            bytes: text.as_bytes().to_vec(),
            events,
        }
    }

    fn push(spool: &mut Spool, text: &str, events: usize) {
        spool.push(text.as_bytes(), events);
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flowkit-spool-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn batches_survive_a_restart_in_order_and_split_halves_keep_their_place() {
        let dir = temp_dir();
        let mut spool = Spool::open(dir.clone());
        push(&mut spool, "[1,2]", 2);
        push(&mut spool, "[3]", 1);
        spool.split_front((body("[1]", 1), body("[2]", 1)));
        assert_eq!(spool.events(), 3);
        // Another program opens the same spool: same batches, same order.
        let mut next = Spool::open(dir.clone());
        let mut seen = Vec::new();
        while let Some(bytes) = next.read_front() {
            seen.push(String::from_utf8(bytes).unwrap());
            next.delivered();
        }
        assert_eq!(seen, ["[1]", "[2]", "[3]"]);
        // Their files are gone: the first spool skips what the other delivered.
        assert!(spool.read_front().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fresh_batch_is_posted_from_memory_then_read_back_from_its_file() {
        let dir = temp_dir();
        let mut spool = Spool::open(dir.clone());
        push(&mut spool, "[1]", 1);
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"[1]",
            "on disk before it is posted"
        );
        std::fs::write(&file, "[2]").unwrap();
        assert_eq!(
            spool.read_front().as_deref(),
            Some(&b"[1]"[..]),
            "first post: memory"
        );
        assert_eq!(
            spool.read_front().as_deref(),
            Some(&b"[2]"[..]),
            "a retry: the file"
        );
        spool.delivered();
        assert!(spool.is_empty() && !file.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_batch_is_kept_aside_with_its_reason() {
        let dir = temp_dir();
        let mut spool = Spool::open(dir.clone());
        push(&mut spool, "[\"poison\"]", 1);
        spool.set_aside("server answered 500: bad event");
        assert!(spool.is_empty());
        let refused: Vec<String> = std::fs::read_dir(dir.join("refused"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        let reason = refused.iter().find(|n| n.ends_with(".reason.txt")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("refused").join(reason)).unwrap(),
            "server answered 500: bad event"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_spool_keeps_batches_in_memory() {
        let dir = temp_dir();
        let file = dir.join("not-a-directory");
        std::fs::write(&file, "").unwrap();
        let mut spool = Spool::open(file.clone());
        push(&mut spool, "[1]", 1);
        assert_eq!(spool.read_front().as_deref(), Some(&b"[1]"[..]));
        spool.delivered();
        assert!(spool.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
