//! Workers for real: programs calling `flowkit::serve` with `FLOWKIT_API_URL` set, against real
//! server processes. Each worker (and each plain program) is this test binary re-executing
//! itself to run one of the ignored tests below; its flow's task writes `start` and `done`
//! lines to a file, so the parent counts what ran where:
//! `<start|done> <run id> <pid> <unix time in µs>`.
//!
//! What is proven: 1,000 runs triggered on two servers sharing PostgreSQL (one SIGKILLed midway), served by three workers,
//! each execute exactly once and all end `Completed`; a SIGKILLed worker's run is `Crashed`
//! within the heartbeat timeout and, its flow having a retry, completed by another worker; a
//! cancel from the API stops a sleeping task within a second; a plain program streaming to the
//! server that is SIGKILLed leaves its run `Crashed`, one that ends normally never; SIGTERM
//! stops a worker gracefully (runs in hand finish within the grace period, or are cancelled and
//! handed back after it).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::api::{eventually, get, post, run_state};
use common::{Backend, Server, TempDir};
use flowkit::schemars::{self, JsonSchema};
use flowkit::serve::{Deployment, ScheduledRun};
use flowkit::{RunError, flow, task};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// The child processes.

/// The deployment's parameters.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
struct Work {
    /// How long the task sleeps on the run's first attempt, in milliseconds.
    sleep_ms: u64,
}

fn out_file() -> PathBuf {
    PathBuf::from(std::env::var("WORKER_OUT").expect("WORKER_OUT"))
}

fn line(what: &str, run: Uuid) {
    let micros = chrono::Utc::now().timestamp_micros();
    let text = format!("{what} {run} {} {micros}\n", std::process::id());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out_file())
        .expect("the output file");
    file.write_all(text.as_bytes()).expect("one line");
}

/// Writes `start`, sleeps (first attempt only), writes `done`.
#[task]
async fn append(run: Uuid, sleep_ms: u64) {
    line("start", run);
    tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
    line("done", run);
}

/// One run of the deployment: the server's run id, slept on its first attempt only.
#[flow(retries = 1, retry_delay = 0)]
async fn appending(sleep_ms: u64) -> Result<(), RunError<std::convert::Infallible>> {
    let context = flowkit::context().expect("in a flow");
    let run = context.flow_run_id().expect("a flow run");
    let first = context.scheduled().is_none_or(|s| s.attempt() == 1);
    append(run, if first { sleep_ms } else { 0 }).await
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the tests below"]
async fn worker_process() {
    flowkit::init();
    let deployment = Deployment::with_parameters(
        "append",
        Work { sleep_ms: 0 },
        |_: &ScheduledRun, work: Work| appending(work.sleep_ms),
    )
    .max_active_runs(10_000);
    flowkit::serve::Server::new([deployment])
        .worker_name(std::env::var("WORKER_NAME").expect("WORKER_NAME"))
        .max_runs(env_u64("WORKER_MAX_RUNS", 8) as usize)
        .grace_period(Duration::from_millis(env_u64("WORKER_GRACE_MS", 30_000)))
        .run()
        .await
        .expect("serves");
    eprintln!("worker stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the tests below"]
async fn plain_program() {
    flowkit::init();
    match appending(env_u64("WORKER_SLEEP_MS", 0)).await {
        Ok(()) => eprintln!("program done"),
        Err(error) if error.is_cancelled() => std::process::exit(3),
        Err(error) => panic!("{error}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The parent's helpers.

/// A child process of this test binary running `test`, streaming to `urls`.
fn child(test: &str, urls: &str, dir: &Path, name: &str, env: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([test, "--exact", "--ignored", "--nocapture"])
        .env("FLOWKIT_API_URL", urls)
        .env("FLOWKIT_CONSOLE", "off")
        .env("FLOWKIT_SPOOL_DIR", dir.join(format!("spool-{name}")))
        .env(
            "RUST_LOG",
            std::env::var("CHILD_LOG").unwrap_or("warn".into()),
        )
        .env("WORKER_OUT", dir.join("runs.txt"))
        .env("WORKER_NAME", name)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("the child starts")
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal}");
}

/// Waits up to `limit` for `child` to exit.
async fn exited(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A line of the output file.
#[derive(Clone, Debug)]
struct Line {
    what: String,
    run: Uuid,
    pid: u32,
    micros: i64,
}

fn lines(dir: &Path) -> Vec<Line> {
    std::fs::read_to_string(dir.join("runs.txt"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.split(' ').collect();
            Line {
                what: parts[0].to_string(),
                run: parts[1].parse().expect("a run id"),
                pid: parts[2].parse().expect("a pid"),
                micros: parts[3].parse().expect("a time"),
            }
        })
        .collect()
}

/// Triggers a run of `append` sleeping `sleep_ms` on its first attempt; its id.
async fn trigger(server: &Server, sleep_ms: u64) -> Uuid {
    let (status, run) = post(
        server,
        "/api/deployments/append/runs",
        json!({"parameters": {"sleep_ms": sleep_ms}}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().expect("an id").parse().expect("a uuid")
}

/// Waits until the workers named are online on `server` (they registered and polled).
async fn online(server: &Server, names: &[&str]) {
    eventually(Duration::from_secs(20), "the workers online", || async {
        let workers = get(server, "/api/workers").await;
        names.iter().all(|name| {
            workers.as_array().is_some_and(|all| {
                all.iter()
                    .any(|w| w["name"] == *name && w["state"] == "online")
            })
        })
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "the deployment registered",
        || async { get(server, "/api/deployments/append").await["name"] == "append" },
    )
    .await;
}

/// Kills the children left (a failed test must not leave workers behind).
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_and_two_servers_run_each_triggered_run_exactly_once() {
    let dir = TempDir::new("workers-once");
    let database = Backend::Postgres.database_url(dir.path()).await;
    let args = ["--heartbeat-timeout", "3s"];
    let one = Server::start_with(&database, 0, &args).await;
    let two = Server::start_with(&database, 0, &args).await;
    let urls = [
        format!("{},{}", one.url, two.url),
        format!("{},{}", two.url, one.url),
        format!("{},{}", one.url, two.url),
    ];
    let names = ["w1", "w2", "w3"];
    let mut workers = Reap(
        names
            .iter()
            .zip(&urls)
            .map(|(name, urls)| child("worker_process", urls, dir.path(), name, &[]))
            .collect(),
    );
    online(&one, &names).await;

    // Idle workers: trigger to the task's start, one run at a time.
    let mut latencies = Vec::new();
    for i in 0..20 {
        let server = if i % 2 == 0 { &one } else { &two };
        let triggered = chrono::Utc::now().timestamp_micros();
        let run = trigger(server, 0).await;
        eventually(Duration::from_secs(10), "the run to start", || async {
            lines(dir.path())
                .iter()
                .any(|l| l.run == run && l.what == "done")
        })
        .await;
        let started = lines(dir.path())
            .into_iter()
            .find(|l| l.run == run && l.what == "start")
            .expect("a start line");
        latencies.push(started.micros - triggered);
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    eprintln!(
        "trigger → task start on an idle worker, over {} runs: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        latencies.len(),
        p(0.5),
        p(0.95),
        p(1.0)
    );

    // What one run stores, for the exact count at the end: every run of the flow stores the
    // same events (its own and the server's), and one flow run and one task run.
    let first: Vec<Uuid> = {
        let mut ids: Vec<Uuid> = lines(dir.path()).iter().map(|l| l.run).collect();
        ids.dedup();
        ids
    };
    assert_eq!(first.len(), 20);
    for run in &first {
        eventually(Duration::from_secs(10), "the run Completed", || async {
            run_state(&one, *run).await == "Completed"
        })
        .await;
    }
    let stats = get(&one, "/api/stats").await;
    let (events, runs) = (
        stats["events"].as_i64().unwrap_or(-1),
        stats["runs"].as_i64().unwrap_or(-1),
    );
    assert_eq!(runs, 40, "a flow run and a task run each: {stats}");
    assert_eq!(events % 20, 0, "as many events for each run: {stats}");
    let per_run = events / 20;
    eprintln!("each run stores {per_run} events, a flow run and a task run");
    let history = |states: serde_json::Value| -> Vec<String> {
        states
            .as_array()
            .expect("a history")
            .iter()
            .map(|c| c["state"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let expected = history(get(&one, &format!("/api/flow_runs/{}/states", first[0])).await);

    // Many at once, on both servers; then one server is killed, and the rest go to the other.
    let mut triggered = vec![];
    let started = Instant::now();
    for i in 0..490 {
        let server = if i % 2 == 0 { &one } else { &two };
        triggered.push(trigger(server, 0).await);
    }
    one.kill().await;
    for _ in 0..490 {
        triggered.push(trigger(&two, 0).await);
    }
    eventually(Duration::from_secs(120), "every run done", || async {
        lines(dir.path())
            .iter()
            .filter(|l| l.what == "done")
            .count()
            >= 1000
    })
    .await;
    eprintln!(
        "980 runs triggered and run by three workers, one of two servers killed midway, in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // Give late duplicates a chance to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = lines(dir.path());
    let mut done: HashMap<Uuid, Vec<u32>> = HashMap::new();
    for line in lines.iter().filter(|l| l.what == "done") {
        done.entry(line.run).or_default().push(line.pid);
    }
    assert_eq!(done.len(), 1000, "1,000 distinct runs");
    for run in &triggered {
        assert_eq!(done.get(run).map(Vec::len), Some(1), "run {run} ran once");
    }
    let pids: std::collections::HashSet<u32> = done.values().flatten().copied().collect();
    assert!(pids.len() >= 2, "the work was shared: {pids:?}");
    // None left unfinished: the sinks delivered every run's end through the other server.
    for run in &triggered {
        eventually(Duration::from_secs(10), "the run Completed", || async {
            run_state(&two, *run).await == "Completed"
        })
        .await;
    }
    // No event lost, none twice, none extra (no Crashed recorded by the server): each run has
    // exactly the history of the first ones, one task run, and the total is exact.
    for run in &triggered {
        let detail = get(&two, &format!("/api/flow_runs/{run}")).await;
        assert_eq!(
            detail["task_runs"].as_array().map(Vec::len),
            Some(1),
            "one task run: {detail}"
        );
        assert_eq!(detail["task_runs"][0]["state"], "Completed", "{detail}");
        let states = history(get(&two, &format!("/api/flow_runs/{run}/states")).await);
        assert_eq!(states, expected, "the state history of {run}");
    }
    let stats = get(&two, "/api/stats").await;
    assert_eq!(
        (stats["events"].as_i64(), stats["runs"].as_i64()),
        (Some(1000 * per_run), Some(2000)),
        "{per_run} events and 2 runs for each of 1,000 runs: {stats}"
    );

    // SIGTERM: each worker stops at once (nothing in hand) and says so.
    for worker in &workers.0 {
        signal(worker, "TERM");
    }
    for worker in &mut workers.0 {
        let status = exited(worker, Duration::from_secs(15)).await;
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }
    let listed = get(&two, "/api/workers").await;
    for name in names {
        let worker = listed
            .as_array()
            .and_then(|all| all.iter().find(|w| w["name"] == name))
            .expect("listed");
        assert_eq!(worker["state"], "stopped", "{listed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_run_crashes_and_its_retry_completes_on_another_worker() {
    let dir = TempDir::new("workers-kill");
    let server = Server::start(dir.path(), 0, &["--heartbeat-timeout", "2s"]).await;
    let mut workers = Reap(vec![
        child("worker_process", &server.url, dir.path(), "k1", &[]),
        child("worker_process", &server.url, dir.path(), "k2", &[]),
    ]);
    online(&server, &["k1", "k2"]).await;
    let run = trigger(&server, 60_000).await;
    eventually(Duration::from_secs(10), "the run to start", || async {
        lines(dir.path()).iter().any(|l| l.run == run)
    })
    .await;
    // Its events reached the server (the flow's retry with them).
    eventually(Duration::from_secs(5), "the run Running", || async {
        let detail = get(&server, &format!("/api/flow_runs/{run}")).await;
        detail["state"] == "Running" && detail["task_runs"][0]["state"] == "Running"
    })
    .await;
    let pid = lines(dir.path())[0].pid;
    let (victim, survivor): (Vec<_>, Vec<_>) = workers.0.drain(..).partition(|c| c.id() == pid);
    workers.0 = survivor;
    let mut victim = victim.into_iter().next().expect("the worker running it");
    signal(&victim, "KILL");
    let _ = victim.wait();
    let took = eventually(Duration::from_secs(8), "the run Crashed", || async {
        run_state(&server, run).await == "Crashed"
    })
    .await;
    eprintln!(
        "SIGKILL → Crashed in {:.2} s (heartbeat timeout 2 s)",
        took.as_secs_f64()
    );
    assert!(
        took >= Duration::from_millis(1500),
        "not before the timeout: {took:?}"
    );
    let detail = get(&server, &format!("/api/flow_runs/{run}")).await;
    assert_eq!(detail["task_runs"][0]["state"], "Crashed", "{detail}");
    // Made again (attempt 2, which does not sleep) and completed by the other worker.
    eventually(Duration::from_secs(10), "the retry done", || async {
        lines(dir.path())
            .iter()
            .any(|l| l.what == "done" && l.run != run)
    })
    .await;
    let lines = lines(dir.path());
    let retry = lines.iter().find(|l| l.run != run).expect("the retry");
    assert_ne!(retry.pid, pid, "another worker");
    assert!(lines.iter().all(|l| !(l.run == run && l.what == "done")));
    eventually(Duration::from_secs(5), "the retry Completed", || async {
        run_state(&server, retry.run).await == "Completed"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_the_api_stops_a_sleeping_task_within_a_second() {
    let dir = TempDir::new("workers-cancel");
    let server = Server::start(dir.path(), 0, &["--heartbeat-timeout", "3s"]).await;
    let _workers = Reap(vec![child(
        "worker_process",
        &server.url,
        dir.path(),
        "c1",
        &[],
    )]);
    online(&server, &["c1"]).await;
    let run = trigger(&server, 60_000).await;
    eventually(Duration::from_secs(10), "the task to start", || async {
        lines(dir.path()).iter().any(|l| l.run == run)
    })
    .await;
    eventually(Duration::from_secs(5), "the run Running", || async {
        run_state(&server, run).await == "Running"
    })
    .await;
    let (status, answer) = post(&server, &format!("/api/flow_runs/{run}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let took = eventually(Duration::from_secs(1), "the run Cancelled", || async {
        run_state(&server, run).await == "Cancelled"
    })
    .await;
    eprintln!("cancel → Cancelled in {} ms", took.as_millis());
    let detail = get(&server, &format!("/api/flow_runs/{run}")).await;
    assert_eq!(detail["task_runs"][0]["state"], "Cancelled", "{detail}");
    assert!(lines(dir.path()).iter().all(|l| l.what != "done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_program_killed_is_crashed_and_one_that_ends_is_never() {
    let dir = TempDir::new("workers-plain");
    let server = Server::start(dir.path(), 0, &["--heartbeat-timeout", "1s"]).await;
    // Programs that finish and exit at once: twenty, five at a time.
    let mut finished = Vec::new();
    let started = Instant::now();
    for wave in 0..4 {
        let mut programs: Vec<Child> = (0..5)
            .map(|i| {
                child(
                    "plain_program",
                    &server.url,
                    dir.path(),
                    &format!("p{wave}-{i}"),
                    &[("WORKER_SLEEP_MS", "50".into())],
                )
            })
            .collect();
        for program in &mut programs {
            let status = exited(program, Duration::from_secs(20)).await;
            assert!(status.is_some_and(|s| s.success()), "{status:?}");
            let pid = program.id();
            let line = lines(dir.path()).into_iter().find(|l| l.pid == pid);
            finished.push(line.expect("its line").run);
        }
    }
    eprintln!(
        "{} plain programs ran and exited in {:.2} s",
        finished.len(),
        started.elapsed().as_secs_f64()
    );
    // One that runs for more than twice the timeout, healthy: never Crashed meanwhile.
    let mut long = child(
        "plain_program",
        &server.url,
        dir.path(),
        "long",
        &[("WORKER_SLEEP_MS", "2500".into())],
    );
    eventually(Duration::from_secs(10), "its task to start", || async {
        lines(dir.path()).len() > 2 * finished.len()
    })
    .await;
    let long_run = lines(dir.path()).last().expect("its line").run;
    let mut seen = Vec::new();
    while long.try_wait().expect("wait").is_none() {
        seen.push(run_state(&server, long_run).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(long.wait().expect("wait").success());
    assert!(seen.iter().all(|s| s != "Crashed"), "{seen:?}");
    assert_eq!(run_state(&server, long_run).await, "Completed");
    finished.push(long_run);
    // One killed while its task sleeps.
    let mut killed = child(
        "plain_program",
        &server.url,
        dir.path(),
        "killed",
        &[("WORKER_SLEEP_MS", "60000".into())],
    );
    eventually(Duration::from_secs(10), "its task to start", || async {
        lines(dir.path()).len() > 2 * finished.len()
    })
    .await;
    let run = lines(dir.path()).last().expect("its line").run;
    assert!(!finished.contains(&run));
    eventually(Duration::from_secs(5), "its run Running", || async {
        run_state(&server, run).await == "Running"
    })
    .await;
    signal(&killed, "KILL");
    let _ = killed.wait();
    let took = eventually(Duration::from_secs(5), "its run Crashed", || async {
        run_state(&server, run).await == "Crashed"
    })
    .await;
    eprintln!(
        "plain program SIGKILL → Crashed in {} ms (timeout 1 s)",
        took.as_millis()
    );
    // Well past the timeout, the others are still Completed, and were never Crashed, not even
    // for a moment (a program's late end replaces a crash, but the history would show it).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for run in finished {
        assert_eq!(run_state(&server, run).await, "Completed", "{run}");
        let states = get(&server, &format!("/api/flow_runs/{run}/states")).await;
        let crashed = states
            .as_array()
            .expect("a history")
            .iter()
            .any(|change| change["state"] == "Crashed");
        assert!(!crashed, "{run} was recorded Crashed: {states}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_programs_run_is_cancelled_through_its_heartbeats_within_a_second() {
    let dir = TempDir::new("workers-plain-cancel");
    // The default heartbeat timeout: heartbeats every 10 s, each held by the server meanwhile.
    let server = Server::start(dir.path(), 0, &[]).await;
    let mut program = Reap(vec![child(
        "plain_program",
        &server.url,
        dir.path(),
        "cancelled",
        &[("WORKER_SLEEP_MS", "60000".into())],
    )]);
    eventually(Duration::from_secs(10), "its task to start", || async {
        !lines(dir.path()).is_empty()
    })
    .await;
    let run = lines(dir.path())[0].run;
    eventually(Duration::from_secs(5), "its run Running", || async {
        run_state(&server, run).await == "Running"
    })
    .await;
    let (status, answer) = post(&server, &format!("/api/flow_runs/{run}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "Cancelling", "its heartbeats keep it live");
    // Told by the answer to its heartbeat, which the server held until now (not at the next
    // one, up to 10 s later).
    let took = eventually(Duration::from_secs(1), "the run Cancelled", || async {
        run_state(&server, run).await == "Cancelled"
    })
    .await;
    eprintln!(
        "plain program: cancel → Cancelled in {} ms",
        took.as_millis()
    );
    let detail = get(&server, &format!("/api/flow_runs/{run}")).await;
    assert_eq!(detail["task_runs"][0]["state"], "Cancelled", "{detail}");
    // The program's flow call returned `Cancelled` (the program exits with 3 on it).
    let status = exited(&mut program.0[0], Duration::from_secs(10)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(3), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_runs_finish_within_the_grace_period_then_hands_back_the_rest() {
    let dir = TempDir::new("workers-term");
    let server = Server::start(dir.path(), 0, &["--heartbeat-timeout", "3s"]).await;
    let grace = [("WORKER_GRACE_MS", "1500".to_string())];
    let mut workers = Reap(vec![child(
        "worker_process",
        &server.url,
        dir.path(),
        "t1",
        &grace,
    )]);
    online(&server, &["t1"]).await;
    // A run that finishes within the grace period, and one that does not.
    let short = trigger(&server, 500).await;
    let long = trigger(&server, 60_000).await;
    eventually(Duration::from_secs(10), "both started", || async {
        lines(dir.path()).len() == 2
    })
    .await;
    let signalled = Instant::now();
    signal(&workers.0[0], "TERM");
    let status = exited(&mut workers.0[0], Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let lines = lines(dir.path());
    assert!(lines.iter().any(|l| l.run == short && l.what == "done"));
    assert!(!lines.iter().any(|l| l.run == long && l.what == "done"));
    assert_eq!(run_state(&server, short).await, "Completed");
    assert_eq!(run_state(&server, long).await, "Cancelled");
    // The worker told the server it stopped, and the run it handed back is made again for
    // another worker (a new run of the same deployment, origin `retry`, waiting).
    let listed = get(&server, "/api/workers").await;
    assert_eq!(listed[0]["state"], "stopped", "{listed}");
    let runs = get(&server, "/api/deployments/append/runs").await;
    let again: Vec<&serde_json::Value> = runs
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["origin"] == "retry" && r["status"] == "scheduled")
        .collect();
    assert_eq!(again.len(), 1, "{runs}");
}
