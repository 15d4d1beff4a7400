//! Concurrency limits across real programs: each program is this test binary re-executing
//! itself to run the ignored `limits_program`, streaming to a real server process (SQLite and
//! PostgreSQL). Its flow submits one task per entry of `LIMIT_TASKS` (milliseconds to hold),
//! all tagged `LIMIT_TAG`; each task appends `enter` and `leave` lines to a shared file with
//! `O_APPEND` (the kernel orders the appends: replayed in file order they are an atomic counter
//! of the task runs inside their bodies): `<enter|leave> <pid> <task run> <unix µs>`.
//!
//! What is proven: with a global limit of 3, four programs hammering one tag never have more
//! than 3 task runs inside their bodies (the file's counter) nor more than 3 holders on the
//! server (sampled all along), and do reach 3; waiters are served in the order they arrived;
//! a SIGKILLed holder's slot is freed within the heartbeat timeout and goes to the next in line.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::api::{eventually, put};
use common::{BACKENDS, Backend, Server, TempDir};
use flowkit::{flow, task};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The child program.

fn mark(what: &str) {
    let path = PathBuf::from(std::env::var("LIMIT_OUT").expect("LIMIT_OUT"));
    let run = flowkit::context()
        .and_then(|c| c.task_run_id())
        .map(|id| id.to_string())
        .unwrap_or_default();
    let micros = chrono::Utc::now().timestamp_micros();
    let text = format!("{what} {} {run} {micros}\n", std::process::id());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the shared file");
    // One write of the whole line: appends never interleave.
    file.write_all(text.as_bytes()).expect("one line");
}

#[task(tags = ["limited"])]
async fn hold(ms: u64) {
    mark("enter");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    mark("leave");
}

#[flow]
async fn holders(times: Vec<u64>) {
    let handles: Vec<_> = times.into_iter().map(|ms| hold(ms).submit()).collect();
    for handle in handles {
        handle.await.expect("the task ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the tests below"]
async fn limits_program() {
    flowkit::init();
    let times: Vec<u64> = std::env::var("LIMIT_TASKS")
        .expect("LIMIT_TASKS")
        .split(',')
        .map(|t| t.trim().parse().expect("milliseconds"))
        .collect();
    holders(times).await.expect("the flow ran");
    eprintln!("program done");
}

// ---------------------------------------------------------------------------------------------
// The parent's helpers.

fn program(server: &Server, dir: &Path, name: &str, tasks: &str) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args(["limits_program", "--exact", "--ignored", "--nocapture"])
        .env("FLOWKIT_API_URL", &server.url)
        .env("FLOWKIT_CONSOLE", "off")
        .env("FLOWKIT_SPOOL_DIR", dir.join(format!("spool-{name}")))
        .env(
            "RUST_LOG",
            std::env::var("CHILD_LOG").unwrap_or("warn".into()),
        )
        .env("LIMIT_OUT", dir.join("marks.txt"))
        .env("LIMIT_TASKS", tasks)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("the program starts")
}

async fn wait_exit(mut child: Child, limit: Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            assert!(status.success(), "a program failed: {status}");
            return;
        }
        assert!(
            started.elapsed() < limit,
            "a program did not finish in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug)]
struct Mark {
    enter: bool,
    pid: u32,
    micros: i64,
}

fn marks(dir: &Path) -> Vec<Mark> {
    std::fs::read_to_string(dir.join("marks.txt"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            Mark {
                enter: parts[0] == "enter",
                pid: parts[1].parse().expect("pid"),
                micros: parts[3].parse().expect("time"),
            }
        })
        .collect()
}

/// The most task runs inside their bodies at once, replaying the file in order.
fn peak(marks: &[Mark]) -> i64 {
    let (mut now, mut peak) = (0i64, 0i64);
    for mark in marks {
        now += if mark.enter { 1 } else { -1 };
        peak = peak.max(now);
    }
    peak
}

async fn limit(server: &Server, tag: &str) -> Value {
    let all = server.get("/api/limits").await;
    all.as_array()
        .and_then(|all| all.iter().find(|l| l["name"] == tag))
        .cloned()
        .unwrap_or(Value::Null)
}

fn holders_of(view: &Value) -> usize {
    view["holders"].as_array().map_or(0, Vec::len)
}

async fn server_for(backend: Backend, dir: &Path) -> Server {
    let database = backend.database_url(dir).await;
    Server::start_with(&database, 0, &["--heartbeat-timeout", "2s"]).await
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_programs_hammering_one_tag_never_exceed_the_limit() {
    for backend in BACKENDS {
        let dir = TempDir::new("limits-hammer");
        let server = server_for(backend, dir.path()).await;
        let (status, body) = put(&server, "/api/limits/limited", json!({"concurrency": 3})).await;
        assert_eq!(status, 200, "{body}");
        let programs: Vec<Child> = (0..4)
            .map(|i| {
                program(
                    &server,
                    dir.path(),
                    &format!("p{i}"),
                    "40,40,40,40,40,40,40,40",
                )
            })
            .collect();
        // The server's count, sampled while they run.
        let mut server_peak = 0;
        let started = Instant::now();
        while marks(dir.path()).len() < 64 && started.elapsed() < Duration::from_secs(60) {
            server_peak = server_peak.max(holders_of(&limit(&server, "limited").await));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for child in programs {
            wait_exit(child, Duration::from_secs(30)).await;
        }
        let marks = marks(dir.path());
        assert_eq!(
            marks.len(),
            64,
            "{backend:?}: 32 task runs entered and left"
        );
        assert_eq!(
            peak(&marks),
            3,
            "{backend:?}: at most 3 at once, and 3 reached"
        );
        assert!(
            (1..=3).contains(&server_peak),
            "{backend:?}: the server counted {server_peak} holders at once"
        );
        let pids: std::collections::HashSet<u32> = marks.iter().map(|m| m.pid).collect();
        assert_eq!(pids.len(), 4, "{backend:?}: every program ran tasks");
        assert_eq!(
            holders_of(&limit(&server, "limited").await),
            0,
            "{backend:?}: all given back"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order_and_a_killed_holder_frees_its_slot() {
    for backend in BACKENDS {
        let dir = TempDir::new("limits-fifo");
        let server = server_for(backend, dir.path()).await;
        put(&server, "/api/limits/limited", json!({"concurrency": 3})).await;
        // A takes the three slots and gives them back one by one.
        let a = program(&server, dir.path(), "a", "4000,4600,5200");
        eventually(Duration::from_secs(20), "A holds 3 slots", || async {
            holders_of(&limit(&server, "limited").await) == 3
        })
        .await;
        // B, C, D line up in that order; B's task holds its slot for a minute.
        let mut line = Vec::new();
        for (i, (name, tasks)) in [("b", "60000"), ("c", "300"), ("d", "300")]
            .into_iter()
            .enumerate()
        {
            let child = program(&server, dir.path(), name, tasks);
            eventually(
                Duration::from_secs(20),
                "the program waits in line",
                || async {
                    limit(&server, "limited").await["waiting"].as_u64() == Some(i as u64 + 1)
                },
            )
            .await;
            line.push(child);
        }
        wait_exit(a, Duration::from_secs(30)).await;
        let d = line.pop().expect("d");
        let c = line.pop().expect("c");
        let b = line.pop().expect("b");
        let b_pid = b.id();
        let (c_pid, d_pid) = (c.id(), d.id());
        wait_exit(c, Duration::from_secs(30)).await;
        wait_exit(d, Duration::from_secs(30)).await;
        let all = marks(dir.path());
        let entered = |pid: u32| {
            all.iter()
                .find(|m| m.enter && m.pid == pid)
                .map(|m| m.micros)
                .expect("entered")
        };
        assert!(
            entered(b_pid) < entered(c_pid) && entered(c_pid) < entered(d_pid),
            "{backend:?}: served in arrival order B, C, D: {all:?}"
        );
        assert!(peak(&all) <= 3, "{backend:?}: {all:?}");

        // B holds its slot; killed, its slot is freed once its heartbeats stop (2 s), and goes
        // to E, waiting in line.
        assert_eq!(holders_of(&limit(&server, "limited").await), 1);
        put(&server, "/api/limits/limited", json!({"concurrency": 1})).await;
        let e = program(&server, dir.path(), "e", "10");
        let e_pid = e.id();
        eventually(Duration::from_secs(20), "E waits behind B", || async {
            limit(&server, "limited").await["waiting"].as_u64() == Some(1)
        })
        .await;
        let killed = Instant::now();
        let mut b = b;
        b.kill().expect("SIGKILL");
        let _ = b.wait();
        eventually(Duration::from_secs(20), "E gets B's slot", || async {
            marks(dir.path()).iter().any(|m| m.enter && m.pid == e_pid)
        })
        .await;
        let gone = killed.elapsed();
        wait_exit(e, Duration::from_secs(20)).await;
        // Its last heartbeat came at most a third of the timeout before the kill.
        assert!(
            gone < Duration::from_millis(2000 + 1000),
            "{backend:?}: freed {gone:?} after the kill, the heartbeat timeout being 2 s"
        );
        assert!(
            gone >= Duration::from_millis(1000),
            "{backend:?}: not freed before its heartbeats could stop ({gone:?})"
        );
        assert_eq!(
            holders_of(&limit(&server, "limited").await),
            0,
            "{backend:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_a_rate_limits_bucket_and_tells_each_caller_its_wait() {
    for backend in BACKENDS {
        let dir = TempDir::new("limits-rate");
        let server = server_for(backend, dir.path()).await;
        let (status, body) = put(
            &server,
            "/api/limits/orders-api",
            json!({"rate": {"count": 10, "per_ms": 1000}, "burst": 5}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let started = Instant::now();
        let mut turns = Vec::new();
        for _ in 0..8 {
            let (status, answer) =
                common::api::post(&server, "/api/limits/orders-api/rate", Value::Null).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["limited"], true);
            let wait = answer["wait_us"].as_u64().expect("a wait") as i64;
            // When the turn comes, counted from the first call.
            turns.push((started.elapsed().as_micros() as i64 + wait) / 1000);
        }
        // Five at once, then one every 100 ms (within the time the calls themselves took).
        let slack = started.elapsed().as_millis() as i64 + 5;
        for (i, turn) in turns.iter().enumerate() {
            let expected = (i as i64 - 4).max(0) * 100;
            assert!(
                (turn - expected).abs() <= slack,
                "{backend:?}: call {i} goes at {turn} ms, not {expected} ms: {turns:?}"
            );
        }
        let (_, free) = common::api::post(&server, "/api/limits/nobody/rate", Value::Null).await;
        assert_eq!(free, json!({"limited": false, "wait_us": 0}), "{backend:?}");
    }
}
