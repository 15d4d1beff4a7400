//! The store when the database cannot take writes: a full disk, a read-only file, a database
//! removed under the server, NUL characters, and concurrent writers on PostgreSQL. The server
//! never acknowledges an event it did not store, says so on `/healthz`, and recovers by itself
//! once the cause is gone.
//!
//! The disk tests mount a small tmpfs, which needs root (CI runs as root); elsewhere they say
//! so and pass without checking.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{BACKENDS, Backend, Server, TempDir};
use flowkit::State;
use flowkit::events::{Event, EventKind, LogLevel, LogRecord, RunType, StateChanged};
use uuid::Uuid;

/// A small tmpfs, unmounted at drop (lazily: a server killed a moment before may still hold a
/// file there, and a busy mount would be left behind with its directory).
struct Tmpfs(TempDir);

impl Tmpfs {
    fn mount(megabytes: u32) -> Option<Tmpfs> {
        let dir = TempDir::new("tmpfs");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.path())
            .status();
    }
}

/// Log line events of one flow run (its creation first), 2 KB each.
fn batch(flow_run: Uuid, size: usize) -> Vec<Event> {
    let mut events = vec![common::event_now(
        flow_run,
        None,
        common::run_created(RunType::Flow, "storage", 0),
    )];
    events.extend((1..size).map(|i| {
        common::event_now(
            flow_run,
            None,
            EventKind::Log(Arc::new(LogRecord {
                level: LogLevel::Info,
                target: "storage_faults".into(),
                message: format!("{i:04} {}", "x".repeat(2_000)),
                fields: Default::default(),
            })),
        )
    }));
    events
}

async fn post(client: &reqwest::Client, server: &Server, events: &[Event]) -> (u16, String) {
    let response = client
        .post(format!("{}/api/events", server.url))
        .json(events)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Fills the file system of `dir` with a file of its own, until the disk is full.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    filler
}

#[tokio::test]
async fn a_full_disk_is_a_503_until_space_returns_and_loses_nothing() {
    let Some(disk) = Tmpfs::mount(24) else { return };
    let database = format!("sqlite://{}", disk.path().join("flowkit.db").display());
    let server = Server::start_with(&database, 0, &[]).await;
    let client = reqwest::Client::new();
    let flow_run = Uuid::now_v7();
    let mut sent: Vec<Vec<Event>> = Vec::new();
    let mut acknowledged = 0;

    let first = batch(flow_run, 200);
    assert_eq!(post(&client, &server, &first).await.0, 200);
    acknowledged += first.len();
    sent.push(first);

    // The disk fills up: writes fail, and the server says so.
    let filler = fill(disk.path());
    let mut refused = None;
    for _ in 0..50 {
        let events = batch(flow_run, 200);
        let (status, body) = post(&client, &server, &events).await;
        sent.push(events);
        if status == 200 {
            acknowledged += sent.last().map_or(0, Vec::len);
        } else {
            refused = Some((status, body));
            break;
        }
    }
    let (status, _) = refused.expect("a full disk refuses a write");
    assert_eq!(status, 503);
    let (health, why) = server.health().await;
    assert_eq!(health, 503, "healthz says it cannot store events: {why}");
    assert!(
        why["error"].as_str().unwrap_or("").contains("full"),
        "{why}"
    );

    // Space returns: the next write succeeds, and health with it.
    std::fs::remove_file(&filler).expect("the filler goes");
    let again = batch(flow_run, 200);
    let (status, body) = post(&client, &server, &again).await;
    assert_eq!(status, 200, "{body}");
    sent.push(again);
    assert_eq!(server.health().await.0, 200);

    // Every acknowledged event is stored; sending everything again stores each event once.
    assert!(server.event_count().await >= (acknowledged + 200) as i64);
    for events in &sent {
        assert_eq!(post(&client, &server, events).await.0, 200);
    }
    let total: usize = sent.iter().map(Vec::len).sum();
    assert_eq!(server.event_count().await, total as i64);
}

#[tokio::test]
async fn a_read_only_database_is_refused_at_start_with_a_clear_message() {
    let Some(disk) = Tmpfs::mount(16) else { return };
    let database = format!("sqlite://{}", disk.path().join("flowkit.db").display());
    let server = Server::start_with(&database, 0, &[]).await;
    server.kill().await;

    disk.remount("ro");
    let output = tokio::task::spawn_blocking({
        let database = database.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_flowkit-server"))
                .args(["--bind", "127.0.0.1:0", "--database-url", &database])
                .output()
                .expect("the server runs")
        }
    })
    .await
    .expect("joined");
    assert!(!output.status.success(), "a read-only database is refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("readonly")
            || stderr.contains("read-only")
            || stderr.contains("cannot be written"),
        "{stderr}"
    );

    // Fixed: it starts and stores.
    disk.remount("rw");
    let server = Server::start_with(&database, 0, &[]).await;
    let events = batch(Uuid::now_v7(), 10);
    assert_eq!(post(&reqwest::Client::new(), &server, &events).await.0, 200);
    assert_eq!(server.health().await.0, 200);
}

#[tokio::test]
async fn a_removed_database_is_never_acknowledged() {
    let dir = TempDir::new("removed");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("a data dir");
    let database = format!("sqlite://{}", data.join("flowkit.db").display());
    let server = Server::start_with(&database, 0, &[]).await;
    let client = reqwest::Client::new();
    assert_eq!(
        post(&client, &server, &batch(Uuid::now_v7(), 10)).await.0,
        200
    );
    assert_eq!(server.health().await.0, 200);

    std::fs::remove_dir_all(&data).expect("the database goes");
    let (status, body) = post(&client, &server, &batch(Uuid::now_v7(), 10)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("removed or replaced"), "{body}");
    let (health, why) = server.health().await;
    assert_eq!(health, 503);
    assert!(
        why["error"].as_str().unwrap_or("").contains("removed"),
        "{why}"
    );
}

#[tokio::test]
async fn nul_characters_are_stored_alike_on_both_databases() {
    for backend in BACKENDS {
        let dir = TempDir::new("nul");
        let database = backend.database_url(dir.path()).await;
        let server = Server::start_with(&database, 0, &[]).await;
        let flow_run = Uuid::now_v7();
        let task_run = Uuid::now_v7();
        let mut fields = serde_json::Map::new();
        fields.insert("key\0".into(), serde_json::json!(["a\0b"]));
        let events = vec![
            common::event_now(flow_run, None, common::run_created(RunType::Flow, "nul", 0)),
            common::event_now(
                flow_run,
                Some(task_run),
                common::run_created(RunType::Task, "nul-task", 0),
            ),
            common::event_now(
                flow_run,
                Some(task_run),
                EventKind::StateChanged(StateChanged {
                    state: State::Failed,
                    attempt: 1,
                    message: Some("bad byte \0 here".into()),
                    next_attempt_at: None,
                    result: None,
                }),
            ),
            common::event_now(
                flow_run,
                Some(task_run),
                EventKind::Log(Arc::new(LogRecord {
                    level: LogLevel::Error,
                    target: "nul".into(),
                    message: "nul \0 in a log".into(),
                    fields,
                })),
            ),
        ];
        let (status, body) = post(&reqwest::Client::new(), &server, &events).await;
        assert_eq!(status, 200, "{backend:?}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(answer["stored"], 4, "{backend:?}: {answer}");

        let detail = server.get(&format!("/api/flow_runs/{flow_run}")).await;
        assert_eq!(
            detail["task_runs"][0]["message"], "bad byte \u{FFFD} here",
            "{backend:?}"
        );
        let logs = server.get(&format!("/api/flow_runs/{flow_run}/logs")).await;
        let line = &logs["items"][0];
        assert_eq!(line["message"], "nul \u{FFFD} in a log", "{backend:?}");
        assert_eq!(
            line["fields"]["key\u{FFFD}"][0], "a\u{FFFD}b",
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn a_value_the_database_refuses_is_one_rejected_event_not_a_failed_batch() {
    // Straight to the store, past the API's NUL replacement: PostgreSQL refuses the NUL.
    let database = Backend::Postgres
        .database_url(Path::new("/nonexistent"))
        .await;
    let store = flowkit_server::Store::open(&database)
        .await
        .expect("the store opens");
    let flow_run = Uuid::now_v7();
    let mut events = batch(flow_run, 40);
    events[23] = common::event_now(
        flow_run,
        Some(Uuid::now_v7()),
        EventKind::StateChanged(StateChanged {
            state: State::Failed,
            attempt: 1,
            message: Some("raw \0".into()),
            next_attempt_at: None,
            result: None,
        }),
    );
    let outcome = store.ingest(&events).await.expect("the batch is stored");
    assert_eq!(outcome.stored, 39);
    assert_eq!(outcome.refused.len(), 1);
    assert_eq!(outcome.refused[0].0, 23);
    assert!(
        outcome.refused[0].1.contains("refused"),
        "{:?}",
        outcome.refused
    );
    assert_eq!(
        store.ready().await,
        Ok(()),
        "a refused value leaves the store healthy"
    );
}

#[tokio::test]
async fn overlapping_concurrent_batches_never_fail_on_postgres() {
    let dir = TempDir::new("overlap");
    let database = Backend::Postgres.database_url(dir.path()).await;
    let server = Arc::new(Server::start_with(&database, 0, &[]).await);
    let flow_run = Uuid::now_v7();
    let created = common::event_now(
        flow_run,
        None,
        common::run_created(RunType::Flow, "overlap", 0),
    );
    assert_eq!(
        post(&reqwest::Client::new(), &server, &[created]).await.0,
        200
    );
    // Every batch moves the same 200 task runs, in its own random order.
    let runs: Arc<Vec<Uuid>> = Arc::new((0..200).map(|_| Uuid::now_v7()).collect());
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (server, runs) = (server.clone(), runs.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut statuses = Vec::new();
                for round in 0..25 {
                    let mut order: Vec<Uuid> = runs.to_vec();
                    fastrand::shuffle(&mut order);
                    let events: Vec<Event> = order
                        .iter()
                        .map(|run| {
                            common::event_now(
                                flow_run,
                                Some(*run),
                                EventKind::StateChanged(StateChanged {
                                    state: State::Running,
                                    attempt: writer * 100 + round + 1,
                                    message: None,
                                    next_attempt_at: None,
                                    result: None,
                                }),
                            )
                        })
                        .collect();
                    statuses.push(post(&client, &server, &events).await);
                }
                statuses
            })
        })
        .collect();
    for writer in writers {
        for (status, body) in writer.await.expect("joined") {
            assert_eq!(status, 200, "{body}");
        }
    }
    assert_eq!(server.event_count().await, 1 + 8 * 25 * 200);
    // Each run took the highest attempt any writer sent.
    let detail = server.get(&format!("/api/flow_runs/{flow_run}")).await;
    let tasks = detail["task_runs"].as_array().expect("task runs");
    assert_eq!(tasks.len(), 200);
    assert!(tasks.iter().all(|t| t["attempts"] == 725), "{}", tasks[0]);
}
