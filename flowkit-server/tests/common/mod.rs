//! A real server process on a free port, with a database of its own.
#![allow(dead_code)]

pub mod api;
pub mod browser;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Server {
    pub url: String,
    pub port: u16,
    /// The API key the helpers of `api` send, for a server started with one.
    pub key: Option<String>,
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

/// The id flowkit gives an event made at `at`: a UUID v7 of that millisecond.
pub fn id_at(at: chrono::DateTime<chrono::Utc>) -> uuid::Uuid {
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        at.timestamp() as u64,
        at.timestamp_subsec_nanos(),
    ))
}

/// An event of `kind` made now, of `flow_run` (and `task_run`), with the id flowkit would give it.
pub fn event_now(
    flow_run: uuid::Uuid,
    task_run: Option<uuid::Uuid>,
    kind: flowkit::events::EventKind,
) -> flowkit::events::Event {
    let at = chrono::Utc::now();
    flowkit::events::Event {
        id: id_at(at),
        timestamp: at,
        flow_run_id: Some(flow_run),
        task_run_id: task_run,
        kind,
    }
}

/// The `RunCreated` kind of a run with this name and nothing else set.
pub fn run_created(
    run_type: flowkit::events::RunType,
    name: &'static str,
    retries: u32,
) -> flowkit::events::EventKind {
    flowkit::events::EventKind::RunCreated(std::sync::Arc::new(flowkit::events::RunCreated {
        run_type,
        name: name.into(),
        run_name: None,
        description: None,
        parameters: None,
        tags: Default::default(),
        parent_flow_run_id: None,
        parent_task_run_id: None,
        upstream: vec![],
        map_index: None,
        retries,
        scheduled: None,
    }))
}

/// A database for one test: a SQLite file in `dir`, or a fresh database in the test binary's
/// PostgreSQL cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

impl Backend {
    pub async fn database_url(self, dir: &Path) -> String {
        match self {
            Backend::Sqlite => format!("sqlite://{}", dir.join("flowkit.db").display()),
            Backend::Postgres => postgres::database().await,
        }
    }
}

impl Server {
    /// Starts the server binary on `port` (0: any) with a SQLite database in `dir`.
    pub async fn start(dir: &Path, port: u16, extra: &[&str]) -> Server {
        let database = Backend::Sqlite.database_url(dir).await;
        Self::start_with(&database, port, extra).await
    }

    /// Starts the server binary on `port` (0: any) with the database at `database`: the one
    /// cargo built for these tests, or `FLOWKIT_TEST_SERVER` (say, a release build).
    pub async fn start_with(database: &str, port: u16, extra: &[&str]) -> Server {
        Self::start_under(&[], database, port, extra).await
    }

    /// Like `start_with`, with the binary run by `wrapper` (say `["prlimit", "--nofile=1024",
    /// "--"]`), which must exec it so the process is the server.
    pub async fn start_under(
        wrapper: &[&str],
        database: &str,
        port: u16,
        extra: &[&str],
    ) -> Server {
        let binary: std::ffi::OsString = std::env::var_os("FLOWKIT_TEST_SERVER")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_flowkit-server").into());
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let mut child = command
            .args([
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                database,
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
        Server {
            url,
            port,
            key: None,
            child,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// Sends `signal` (a name `kill` knows: TERM, INT, …) to the server.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits up to `limit` for the server to exit: its status, or None if it still runs.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("waiting for the server"))
    }

    /// `/healthz`: its status and body.
    pub async fn health(&self) -> (u16, serde_json::Value) {
        let response = reqwest::get(format!("{}/healthz", self.url))
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
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

    /// An event bus streaming to this server (with its key, if it has one), spooling to `spool`
    /// while it cannot reach it: how a program reports runs here.
    pub fn bus(&self, spool: &Path) -> flowkit::EventBus {
        let mut sink = flowkit::HttpSink::builder(&self.url).spool_dir(spool);
        if let Some(key) = &self.key {
            sink = sink.api_key(key);
        }
        flowkit::EventBus::builder().sink(sink.build()).build()
    }

    pub async fn event_count(&self) -> i64 {
        self.get("/api/stats").await["events"]
            .as_i64()
            .unwrap_or(-1)
    }
}

/// A throwaway PostgreSQL cluster for this test binary, from the system's binaries: initdb and
/// pg_ctl in a temporary directory, on a free port. A watchdog shell stops it and removes its
/// directory once this process is gone, since statics are never dropped.
pub mod postgres {
    use std::process::Command;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    const BIN: &str = "/usr/lib/postgresql/15/bin";

    struct Cluster {
        port: u16,
        /// Kept, never waited on: it outlives this process's tests by design.
        _watchdog: std::sync::Mutex<std::process::Child>,
    }

    static CLUSTER: OnceLock<Cluster> = OnceLock::new();

    fn as_postgres(root: bool, program: &str) -> Command {
        if root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", program]);
            command
        } else {
            Command::new(program)
        }
    }

    fn start() -> Cluster {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = std::env::temp_dir().join(format!(
            "flowkit-pg-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        if root {
            let status = Command::new("chown")
                .args(["postgres"])
                .arg(&dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown of {}", dir.display());
        }
        let data = dir.join("data");
        let status = as_postgres(root, &format!("{BIN}/initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("initdb runs (is PostgreSQL 15 installed?)");
        assert!(status.success(), "initdb failed");
        let port = super::free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            dir.display()
        );
        let pg_ctl = format!("{BIN}/pg_ctl");
        let runas = if root { "runuser -u postgres -- " } else { "" };
        let script = format!(
            "{runas}{pg_ctl} -D '{data}' -o '{options}' -l '{dir}/log' -w start >/dev/null || exit 1; \
             while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             {runas}{pg_ctl} -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{dir}'",
            data = data.display(),
            dir = dir.display(),
            pid = std::process::id(),
        );
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the cluster's watchdog starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(format!("{BIN}/pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .stdout(std::process::Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start; see {}/log",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster {
            port,
            _watchdog: std::sync::Mutex::new(watchdog),
        }
    }

    /// A fresh, empty database in the cluster.
    pub async fn database() -> String {
        let port = tokio::task::spawn_blocking(|| CLUSTER.get_or_init(start).port)
            .await
            .expect("the cluster starts");
        let name = format!("t_{}", fastrand::u64(..));
        let status = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-q",
                "-c",
            ])
            .arg(format!("CREATE DATABASE {name}"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("psql runs");
        assert!(status.success(), "CREATE DATABASE {name}");
        format!("postgres://postgres@127.0.0.1:{port}/{name}")
    }
}
