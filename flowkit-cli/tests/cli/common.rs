//! One real flowkit-server for this test binary, on a free port, with its own SQLite database
//! and an API key; and the real `flowkit` binary run against it.
//!
//! A test crate gets `CARGO_BIN_EXE_*` only for its own package's binaries, so the server is
//! this test binary run again as `serve_process` (see `main.rs`), told its database by
//! environment. It exits when its stdin closes: when this process ends, whichever way.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{LazyLock, Mutex, mpsc};
use std::time::{Duration, Instant};

use flowkit_server::orchestrate::Orchestra;
use flowkit_server::{AppState, Limits, Store, app};

/// The server process learns its directory (its database is there; it removes it when it
/// exits) and its API key from these variables.
const DIR_ENV: &str = "FLOWKIT_CLI_TEST_DIR";
const KEY_ENV: &str = "FLOWKIT_CLI_TEST_KEY";
/// The line the server process prints once it listens: this, then its URL.
const LISTENING: &str = "flowkit-server listening on ";

/// The API key of the test server.
pub const API_KEY: &str = "cli-test-key";

/// How long any one `flowkit` command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// The body of `serve_process`: serves until stdin closes. Does nothing when not started by
/// [`server`] (a plain `cargo test -- --ignored`).
pub async fn serve_process() {
    let Some(dir) = std::env::var_os(DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let database = format!("sqlite://{}", dir.join("flowkit.db").display());
    let key = std::env::var(KEY_ENV).ok();
    let store = Store::open(&database).await.expect("the database opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("its address");
    std::thread::spawn(move || {
        // EOF (or an error) on stdin: the test process is gone.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = std::fs::remove_dir_all(&dir);
        std::process::exit(0);
    });
    // A short heartbeat timeout, so a worker's poll answers within a second when it has
    // nothing, and a fast scheduler.
    let orchestra = Orchestra::new(Duration::from_secs(3), Duration::from_secs(1));
    let state = AppState::new(store, key).with_orchestra(orchestra);
    flowkit_server::orchestrate::spawn(&state);
    let shutdown = state.shutdown.clone();
    println!("{LISTENING}http://{address}");
    flowkit_server::serve(listener, app(state), &Limits::default(), shutdown)
        .await
        .expect("the server serves");
}

/// A fresh temporary directory, removed at drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "flowkit-cli-test-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
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

/// The test server.
pub struct Server {
    pub url: String,
    /// Its SQLite database, for a test to reach under the API.
    pub database: String,
    _child: Mutex<Child>,
    /// Held open: the server exits when it closes.
    _stdin: Mutex<ChildStdin>,
}

static SERVER: LazyLock<Server> = LazyLock::new(Server::start);

/// The server of this test binary, started by the first test that asks.
pub fn server() -> &'static Server {
    &SERVER
}

impl Server {
    fn start() -> Server {
        // The server process removes it when it exits (a static is never dropped).
        let dir =
            std::env::temp_dir().join(format!("flowkit-cli-test-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the server's directory");
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args(["serve_process", "--exact", "--ignored", "--nocapture"])
            .env(DIR_ENV, &dir)
            .env(KEY_ENV, API_KEY)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server process starts");
        let stdin = child.stdin.take().expect("its stdin");
        let stdout = child.stdout.take().expect("its stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            // Keep reading after the address, so the pipe never fills.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix(LISTENING) {
                    Some(url) if !sent => {
                        let _ = sender.send(url.trim().to_string());
                        sent = true;
                    }
                    _ => {}
                }
            }
        });
        let url = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens within a minute");
        Server {
            url,
            database: format!("sqlite://{}", dir.join("flowkit.db").display()),
            _child: Mutex::new(child),
            _stdin: Mutex::new(stdin),
        }
    }

    /// `PUT /api/deployments/{name}` of this spec (a `flowkit_api::DeploymentSpec` as JSON), as a
    /// serving program registers a deployment.
    pub fn put_deployment(&self, spec: serde_json::Value) {
        let spec: flowkit_api::DeploymentSpec =
            serde_json::from_value(spec).expect("a deployment spec");
        let url = format!("{}/api/deployments/{}", self.url, spec.name);
        block_on(async move {
            let response = reqwest::Client::new()
                .put(url)
                .bearer_auth(API_KEY)
                .json(&spec)
                .send()
                .await
                .expect("the server answers");
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            assert!(
                status.is_success(),
                "registering {}: {status} {text}",
                spec.name
            );
        });
    }
}

/// Runs `future` to its end on a runtime of its own (the tests are plain `#[test]`s).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// What a `flowkit` command did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Checks the exit code, showing everything it printed if it is another.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Output {
        assert_eq!(self.code, code, "exit code of flowkit:\n{self}");
        self
    }

    /// Checks it succeeded.
    #[track_caller]
    pub fn ok(self) -> Output {
        self.expect_code(0)
    }

    /// The stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("flowkit --json printed no JSON ({e}):\n{self}"))
    }

    /// The cell of column `title` in the row whose first cell is `first`, in a table printed
    /// with its header on stdout's first line. (Columns start where the header has a title
    /// after two spaces; a cell read off a misaligned row is wrong, so this checks alignment.)
    #[track_caller]
    pub fn cell(&self, first: &str, title: &str) -> String {
        let header: Vec<char> = self.stdout.lines().next().unwrap_or("").chars().collect();
        let starts: Vec<usize> = (0..header.len())
            .filter(|&i| header[i] != ' ' && (i == 0 || (i >= 2 && header[i - 2..i] == [' ', ' '])))
            .collect();
        let titles: Vec<String> = starts
            .iter()
            .enumerate()
            .map(|(n, &start)| {
                let end = starts.get(n + 1).copied().unwrap_or(header.len());
                header[start..end]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_string()
            })
            .collect();
        let column = titles
            .iter()
            .position(|t| t == title)
            .unwrap_or_else(|| panic!("no column {title:?} in {titles:?}:\n{self}"));
        let row: Vec<char> = self.row(first).chars().collect();
        let start = starts[column].min(row.len());
        let end = starts
            .get(column + 1)
            .copied()
            .unwrap_or(row.len())
            .min(row.len());
        row[start..end]
            .iter()
            .collect::<String>()
            .trim()
            .to_string()
    }

    /// The line of stdout whose first column is `first`.
    #[track_caller]
    pub fn row(&self, first: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(first))
            .unwrap_or_else(|| panic!("no line starting with {first:?}:\n{self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\n--- stdout\n{}--- stderr\n{}---",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `flowkit ARGS` against the test server (its URL and key in the environment).
pub fn flowkit(args: &[&str]) -> Output {
    let server = server();
    flowkit_env(
        &[
            ("FLOWKIT_API_URL", &server.url),
            ("FLOWKIT_API_KEY", API_KEY),
        ],
        args,
    )
}

/// `flowkit ARGS` with only `env` of the FLOWKIT_ variables set; killed (and the test failed)
/// if it takes more than a minute.
pub fn flowkit_env(env: &[(&str, &str)], args: &[&str]) -> Output {
    Running::start(env, args).finish()
}

/// `flowkit ARGS` against the test server, started and left running.
pub fn flowkit_start(args: &[&str]) -> Running {
    let server = server();
    Running::start(
        &[
            ("FLOWKIT_API_URL", &server.url),
            ("FLOWKIT_API_KEY", API_KEY),
        ],
        args,
    )
}

/// A `flowkit` command still running.
pub struct Running {
    args: Vec<String>,
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    deadline: Instant,
}

impl Running {
    fn start(env: &[(&str, &str)], args: &[&str]) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flowkit"));
        command
            .args(args)
            .env_remove("FLOWKIT_API_URL")
            .env_remove("FLOWKIT_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("flowkit starts");
        let stdout = reader(child.stdout.take().expect("stdout"));
        let stderr = reader(child.stderr.take().expect("stderr"));
        Running {
            args: args.iter().map(|a| a.to_string()).collect(),
            child,
            stdout,
            stderr,
            deadline: Instant::now() + COMMAND_DEADLINE,
        }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to exit: what it did. Fails the test if it runs past its minute.
    pub fn finish(mut self) -> Output {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for flowkit") {
                break status;
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "flowkit {:?} still ran after {COMMAND_DEADLINE:?}:\n--- stdout\n{}--- stderr\n{}",
                    self.args,
                    self.stdout.join().unwrap_or_default(),
                    self.stderr.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Output {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
