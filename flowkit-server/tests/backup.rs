//! `flowkit-server backup --to FILE` while the server ingests: the file opens (a server starts
//! on it), passes SQLite's integrity check, and holds every event acknowledged before the
//! backup began. A PostgreSQL URL is pointed to pg_dump; an existing file is never replaced.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Server, TempDir, event_now, run_created};
use flowkit::events::RunType;
use sqlx::Connection;
use tokio::sync::Mutex;

async fn backup(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_flowkit-server"))
        .arg("backup")
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("the backup command runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_ingestion_holds_every_acknowledged_event() {
    let dir = TempDir::new("backup");
    let database = format!("sqlite://{}", dir.path().join("flowkit.db").display());
    let server = Server::start_with(&database, 0, &[]).await;

    // Ingest batches without pause, remembering the ids of every batch acknowledged.
    let acknowledged: Arc<Mutex<Vec<uuid::Uuid>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Four writers, small batches: acknowledgements every few milliseconds.
    let ingest: Vec<_> = (0..4)
        .map(|_| {
            let (url, acknowledged, stop) =
                (server.url.clone(), acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let run = uuid::Uuid::now_v7();
                    let batch: Vec<_> = (0..50)
                        .map(|_| event_now(run, None, run_created(RunType::Flow, "backed-up", 0)))
                        .collect();
                    let response = client
                        .post(format!("{url}/api/events"))
                        .json(&batch)
                        .send()
                        .await
                        .expect("the server answers");
                    assert_eq!(response.status(), 200);
                    acknowledged.lock().await.extend(batch.iter().map(|e| e.id));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Three backups while ingestion goes on, each checked: a whole database holding every
    // event acknowledged before it began, and nothing that was never acknowledged.
    let mut overlapped = 0;
    let mut last = None;
    for round in 0..3 {
        let file = dir.path().join(format!("copy-{round}.db"));
        let before: Vec<uuid::Uuid> = acknowledged.lock().await.clone();
        assert!(before.len() >= 1000, "ingestion runs: {}", before.len());
        let out = backup(&[
            "--database-url",
            &database,
            "--to",
            &file.display().to_string(),
        ])
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if acknowledged.lock().await.len() > before.len() {
            overlapped += 1;
        }
        let url = format!("sqlite://{}", file.display());
        let mut copy = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("the copy opens");
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut copy)
            .await
            .expect("an integrity check");
        assert_eq!(integrity, "ok");
        let stored: std::collections::HashSet<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM events")
                .fetch_all(&mut copy)
                .await
                .expect("its events")
                .into_iter()
                .collect();
        let missing = before.iter().filter(|id| !stored.contains(id)).count();
        assert_eq!(
            missing,
            0,
            "of {} events acknowledged before backup {round}",
            before.len()
        );
        let now: std::collections::HashSet<uuid::Uuid> =
            acknowledged.lock().await.iter().copied().collect();
        let never = stored.iter().filter(|id| !now.contains(id)).count();
        // A batch stored but not yet acknowledged to its writer when counted may be in it:
        // at most one batch in flight per writer.
        assert!(
            never <= 1000,
            "{never} events in the copy were never acknowledged"
        );
        drop(copy);
        last = Some((url, stored.len()));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in ingest {
        writer.await.expect("ingestion ends cleanly");
    }
    assert!(
        overlapped > 0,
        "no backup overlapped ingestion: the test proves nothing"
    );
    // A server opens a copy.
    let (url, count) = last.expect("a copy");
    let restored = Server::start_with(&url, 0, &[]).await;
    assert_eq!(restored.event_count().await, count as i64);
    let file = dir.path().join("copy-0.db");

    // Never over an existing file; PostgreSQL is pg_dump's job.
    let again = backup(&[
        "--database-url",
        &database,
        "--to",
        &file.display().to_string(),
    ])
    .await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    let postgres = backup(&["--database-url", "postgres://nowhere/db", "--to", "x.db"]).await;
    assert!(!postgres.status.success());
    assert!(String::from_utf8_lossy(&postgres.stderr).contains("pg_dump"));
}
