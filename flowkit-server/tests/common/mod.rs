//! A real server process on a free port, with a database of its own.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Server {
    pub url: String,
    pub port: u16,
    child: Child,
}

/// A fresh temporary directory, removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "flowkit-test-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nobody listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Starts the server binary on `port` (0: any) with a SQLite database in `dir`.
    pub async fn start(dir: &Path, port: u16, extra: &[&str]) -> Server {
        let database = format!("sqlite://{}", dir.join("flowkit.db").display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowkit-server"))
            .args([
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                &database,
            ])
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the server says where it listens")
            .expect("reading its output")
            .expect("a line");
        let url = line.rsplit(' ').next().expect("an address").to_string();
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        // Keep reading stdout so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { url, port, child }
    }

    /// SIGKILL: no shutdown, no flush.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    pub async fn event_count(&self) -> i64 {
        self.get("/api/stats").await["events"]
            .as_i64()
            .unwrap_or(-1)
    }
}
