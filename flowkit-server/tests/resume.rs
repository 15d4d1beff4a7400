//! Resuming a flow run through the server (`POST /api/flow_runs/{id}/retry`, "Retry from
//! failure"): real worker processes (this test binary re-executing itself as `worker_process`)
//! serve deployments whose flows persist their results in a result store the workers share;
//! every task's side effect is a line appended to a file, so the parent counts what ran.
//!
//! What is proven: a program SIGKILLed in the middle of a 20-task flow, its run resumed from the
//! API on another worker, ran each completed task's side effect exactly once, ran the rest, and
//! ended `Completed` with its earlier attempt (`Crashed`) in its state history; a map of 1,000
//! with 10 failures resumed reran exactly those 10; runs still in progress, completed, or not
//! handed out by the server are refused (409) with the reason; the dashboard's "Retry from failure"
//! button resumes a failed run, whose reused task runs show `Cached` (one browser for this
//! binary).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::api::{eventually, get, post, run_state};
use common::browser::Browser;
use common::{Server, TempDir};
use flowkit::schemars::{self, JsonSchema};
use flowkit::serve::{Deployment, ScheduledRun};
use flowkit::{RunError, flow, task};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

const KEY: &str = "resume-key";

// ---------------------------------------------------------------------------------------------
// The worker processes.

fn work_dir() -> PathBuf {
    PathBuf::from(std::env::var("WORKER_DIR").expect("WORKER_DIR"))
}

/// Appends `line` to the file `name` of the work directory (one side effect).
fn effect(name: &str, line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work_dir().join(name))
        .expect("the effects file");
    file.write_all(format!("{line}\n").as_bytes())
        .expect("one line");
}

/// The parameters of `steps` runs.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
struct Steps {
    /// How many tasks, one after the other.
    n: u32,
}

/// One step: fails while the file `fail-at` names its index (a source not ready); with
/// `BLOCK_AT` naming its index, says so in the file `blocked` and waits to be killed.
#[task]
async fn step(index: u32) -> Result<u32, String> {
    let dir = work_dir();
    if std::env::var("BLOCK_AT").ok() == Some(index.to_string()) {
        std::fs::write(dir.join("blocked"), b"").expect("the marker");
        std::future::pending::<()>().await;
    }
    let fail_at = std::fs::read_to_string(dir.join("fail-at")).unwrap_or_default();
    if fail_at.trim() == index.to_string() {
        return Err(format!("step {index}: the source has no rows yet"));
    }
    effect("steps", &index.to_string());
    Ok(index)
}

#[flow(name = "steps", persist_result = true)]
async fn steps(n: u32) -> Result<u32, RunError<String>> {
    let mut sum = 0;
    for index in 0..n {
        sum += step(index).await?;
    }
    Ok(sum)
}

/// One item of the map: items `i % 100 == 7` fail while the file `broken` exists.
#[task]
async fn item(index: u32) -> Result<u64, String> {
    if index % 100 == 7 && work_dir().join("broken").exists() {
        return Err(format!("item {index}: source unavailable"));
    }
    effect("items", &index.to_string());
    Ok(u64::from(index))
}

#[flow(name = "thousand", persist_result = true)]
async fn thousand() -> Result<u64, RunError<String>> {
    flowkit::map(0..1000u32, item).await.into_iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the tests below"]
async fn worker_process() {
    flowkit::init();
    let steps =
        Deployment::with_parameters("steps", Steps { n: 20 }, |_: &ScheduledRun, s: Steps| {
            steps(s.n)
        });
    let thousand = Deployment::new("thousand", |_| thousand());
    flowkit::serve::Server::new([steps, thousand])
        .worker_name(std::env::var("WORKER_NAME").expect("WORKER_NAME"))
        .run()
        .await
        .expect("serves");
}

// ---------------------------------------------------------------------------------------------
// The parent's helpers.

/// A worker process named `name` for `server`, its results in `dir/results`.
fn worker(server: &Server, dir: &Path, name: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args(["worker_process", "--exact", "--ignored", "--nocapture"])
        .env("FLOWKIT_API_URL", &server.url)
        .env("FLOWKIT_API_KEY", KEY)
        .env("FLOWKIT_CONSOLE", "off")
        .env("FLOWKIT_SPOOL_DIR", dir.join(format!("spool-{name}")))
        .env("FLOWKIT_RESULTS_DIR", dir.join("results"))
        .env(
            "RUST_LOG",
            std::env::var("CHILD_LOG").unwrap_or("warn".into()),
        )
        .env("WORKER_DIR", dir)
        .env("WORKER_NAME", name)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("the worker starts")
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

/// A server wanting `KEY`, with a short heartbeat timeout.
async fn server(dir: &Path) -> Server {
    let mut server = Server::start(dir, 0, &["--api-key", KEY, "--heartbeat-timeout", "2s"]).await;
    server.key = Some(KEY.into());
    server
}

/// Waits until `deployment` is registered and a worker is online.
async fn ready(server: &Server, deployment: &str) {
    eventually(
        Duration::from_secs(30),
        "the deployment registered",
        || async {
            get(server, &format!("/api/deployments/{deployment}")).await["name"] == deployment
        },
    )
    .await;
    eventually(Duration::from_secs(30), "a worker online", || async {
        get(server, "/api/workers")
            .await
            .as_array()
            .is_some_and(|all| all.iter().any(|w| w["state"] == "online"))
    })
    .await;
}

/// Triggers a run of `deployment`; its id.
async fn trigger(server: &Server, deployment: &str, parameters: Value) -> Uuid {
    let (status, run) = post(
        server,
        &format!("/api/deployments/{deployment}/runs"),
        json!({"parameters": parameters}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().expect("an id").parse().expect("a uuid")
}

/// Waits until the run's state is `state`.
async fn state_is(server: &Server, run: Uuid, state: &str, limit: Duration) {
    eventually(limit, &format!("run {run} {state}"), || async {
        run_state(server, run).await == state
    })
    .await;
}

/// The numbers written to the effects file `name`, one per side effect.
fn effects(dir: &Path, name: &str) -> Vec<u32> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().expect("a number"))
        .collect()
}

/// How many of the flow run's task runs are in `state`.
fn tasks_in(detail: &Value, state: &str) -> usize {
    detail["task_runs"]
        .as_array()
        .expect("task runs")
        .iter()
        .filter(|t| t["state"] == state)
        .count()
}

/// Asks for a retry: the status and the answer.
async fn retry(server: &Server, run: Uuid) -> (u16, Value) {
    post(server, &format!("/api/flow_runs/{run}/retry"), json!({})).await
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_run_resumed_through_the_server_runs_each_completed_task_once() {
    let dir = TempDir::new("resume-kill");
    let server = server(dir.path()).await;
    let mut first = worker(&server, dir.path(), "first", &[("BLOCK_AT", "11")]);
    ready(&server, "steps").await;
    let run = trigger(&server, "steps", json!({"n": 20})).await;
    eventually(Duration::from_secs(30), "step 11 blocked", || async {
        dir.path().join("blocked").exists()
    })
    .await;
    assert_eq!(effects(dir.path(), "steps"), (0..11).collect::<Vec<_>>());
    // Its events reached the server: the run is Running, 11 task runs completed.
    eventually(
        Duration::from_secs(10),
        "11 task runs Completed",
        || async {
            let detail = get(&server, &format!("/api/flow_runs/{run}")).await;
            detail["state"] == "Running" && tasks_in(&detail, "Completed") == 11
        },
    )
    .await;
    // Still running: resuming it now would run it twice.
    let (status, refused) = retry(&server, run).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("has not ended") && e.contains("run it twice")),
        "{refused}"
    );

    let _ = first.kill();
    let _ = first.wait();
    state_is(&server, run, "Crashed", Duration::from_secs(15)).await;
    let _workers = Reap(vec![worker(&server, dir.path(), "second", &[])]);

    let (status, answer) = retry(&server, run).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["attempt"], 2, "{answer}");
    assert_eq!(answer["deployment"], "steps", "{answer}");
    state_is(&server, run, "Completed", Duration::from_secs(30)).await;

    // Each side effect exactly once: 0..11 by the first worker, 11..20 by the second.
    assert_eq!(
        effects(dir.path(), "steps"),
        (0..20).collect::<Vec<_>>(),
        "{}",
        get(&server, "/api/deployments/steps/runs").await
    );
    let detail = get(&server, &format!("/api/flow_runs/{run}")).await;
    assert_eq!(detail["attempts"], 2, "{detail}");
    assert_eq!(tasks_in(&detail, "Cached"), 11, "{detail}");
    // 11 in the first attempt and 9 in the second completed; step 11 of the first crashed.
    assert_eq!(tasks_in(&detail, "Completed"), 20, "{detail}");
    assert_eq!(tasks_in(&detail, "Crashed"), 1, "{detail}");
    let history = get(&server, &format!("/api/flow_runs/{run}/states")).await;
    let own: Vec<(String, i64)> = history
        .as_array()
        .expect("states")
        .iter()
        .filter(|c| c["run_id"] == run.to_string())
        .map(|c| {
            (
                c["state"].as_str().unwrap_or_default().to_string(),
                c["attempt"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let crashed = own.iter().position(|c| *c == ("Crashed".into(), 1));
    let scheduled = own.iter().position(|c| *c == ("Scheduled".into(), 2));
    let completed = own.iter().position(|c| *c == ("Completed".into(), 2));
    assert!(
        crashed < scheduled && scheduled < completed && crashed.is_some(),
        "{own:?}"
    );
    // Completed now: nothing to resume.
    let (status, refused) = retry(&server, run).await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("nothing to resume")),
        "{refused}"
    );
    // Recorded in the audit trail.
    let audit = get(&server, &format!("/api/audit?run={run}")).await;
    assert!(
        audit.to_string().contains("\"retry\""),
        "the retry is audited: {audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_of_1000_with_10_failures_resumed_through_the_server_reruns_exactly_10() {
    let dir = TempDir::new("resume-map");
    let server = server(dir.path()).await;
    let _workers = Reap(vec![worker(&server, dir.path(), "mapper", &[])]);
    std::fs::write(dir.path().join("broken"), b"").expect("broken");
    ready(&server, "thousand").await;
    let run = trigger(&server, "thousand", json!({})).await;
    state_is(&server, run, "Failed", Duration::from_secs(60)).await;
    assert_eq!(effects(dir.path(), "items").len(), 990);

    // The source is back.
    std::fs::remove_file(dir.path().join("broken")).expect("fixed");
    let (status, answer) = retry(&server, run).await;
    assert_eq!(status, 202, "{answer}");
    state_is(&server, run, "Completed", Duration::from_secs(60)).await;
    let mut items = effects(dir.path(), "items");
    assert_eq!(items.len(), 1000, "exactly 10 reran");
    items.sort_unstable();
    items.dedup();
    assert_eq!(items.len(), 1000, "each item once");
    let detail = get(&server, &format!("/api/flow_runs/{run}")).await;
    assert_eq!(tasks_in(&detail, "Cached"), 990);
    assert_eq!(tasks_in(&detail, "Failed"), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_the_server_did_not_hand_out_or_unknown_is_refused_with_the_reason() {
    let dir = TempDir::new("resume-refused");
    let server = server(dir.path()).await;
    let run = Uuid::now_v7();
    common::api::report(
        &server,
        run,
        &[flowkit::State::Running, flowkit::State::Failed],
        0,
    )
    .await;
    let (status, refused) = retry(&server, run).await;
    assert_eq!(status, 409, "{refused}");
    let message = refused["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("not handed out by this server") && message.contains(".resume(run_id)"),
        "{refused}"
    );
    let (status, missing) = retry(&server, Uuid::now_v7()).await;
    assert_eq!(status, 404, "{missing}");
    let (status, bad) = retry(&server, Uuid::nil()).await;
    assert_eq!(status, 404, "{bad}");
    let (status, bad) = post(&server, "/api/flow_runs/nope/retry", json!({})).await;
    assert_eq!(status, 400, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_from_failure_in_the_browser_reuses_the_completed_tasks() {
    let dir = TempDir::new("resume-dashboard");
    let server = server(dir.path()).await;
    let _workers = Reap(vec![worker(&server, dir.path(), "dash", &[])]);
    std::fs::write(dir.path().join("fail-at"), b"3").expect("the failure");
    ready(&server, "steps").await;
    let run = trigger(&server, "steps", json!({"n": 5})).await;
    state_is(&server, run, "Failed", Duration::from_secs(30)).await;

    let browser = Browser::start().await;
    browser.open(&server, &format!("/runs/{run}")).await;
    browser.enter_key(KEY).await;
    browser
        .wait_shown("the retry button", "[data-testid=retry-run]")
        .await;
    browser.screenshot("resume-failed-run").await;

    // The source is fixed; the operator presses the button.
    std::fs::remove_file(dir.path().join("fail-at")).expect("fixed");
    browser.click("[data-testid=retry-run]").await;
    browser
        .wait_until(
            "the answer",
            "document.querySelector('[data-testid=retry-answer]').textContent.includes('attempt 2')",
        )
        .await;
    state_is(&server, run, "Completed", Duration::from_secs(30)).await;
    // The page follows the run live: Completed, with the three reused task runs Cached.
    browser
        .wait_until(
            "the run Completed on the page",
            "document.querySelector('[data-testid=run-head] .badge')?.textContent.includes('Completed')",
        )
        .await;
    browser
        .wait_until(
            "three Cached task rows",
            "document.querySelectorAll('[data-testid=task-row][data-state=Cached]').length === 3",
        )
        .await;
    browser.screenshot("resume-retried-run").await;
    let hidden = browser
        .eval(
            "return document.querySelector('[data-testid=retry-run]').hidden;",
            vec![],
        )
        .await;
    assert_eq!(hidden, json!(true), "no retry for a completed run");
    assert_eq!(effects(dir.path(), "steps"), vec![0, 1, 2, 3, 4]);
    browser.close().await;
}
