//! Orchestration through the HTTP API, with real server processes and raw HTTP workers:
//! triggered runs with checked parameters and idempotency keys, claims handed to exactly one
//! worker within `max_active_runs`, queues in a worker's order, cancels, crashes detected from
//! stopped heartbeats, scheduled runs made once per time across servers, backfills and gap
//! reports.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::api::{eventually, get, patch, post, put, report, run_state};
use common::{Backend, Server, TempDir, event_now, run_created};
use flowkit::State;
use flowkit::events::{EventKind, RunType, StateChanged};
use serde_json::{Value, json};
use uuid::Uuid;

/// Registers a deployment with no schedule.
async fn deployment(server: &Server, name: &str, extra: Value) {
    let mut spec = json!({"name": name, "flow": "etl"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let (status, body) = put(server, &format!("/api/deployments/{name}"), spec).await;
    assert_eq!(status, 200, "{body}");
}

async fn trigger(server: &Server, name: &str, body: Value) -> (u16, Value) {
    post(server, &format!("/api/deployments/{name}/runs"), body).await
}

/// One poll of worker `worker`: the ids handed to it, and the answer.
async fn poll(server: &Server, worker: &str, request: Value) -> (Vec<Uuid>, Value) {
    let (status, answer) = post(server, &format!("/api/workers/{worker}/poll"), request).await;
    assert_eq!(status, 200, "{answer}");
    let ids = answer["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|r| r["id"].as_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    (ids, answer)
}

fn poll_body(deployments: &[&str], capacity: u32, running: &[Uuid]) -> Value {
    json!({"host": "test", "deployments": deployments, "capacity": capacity, "running": running})
}

#[tokio::test]
async fn triggered_parameters_are_checked_against_the_schema_and_keys_give_one_run() {
    let dir = TempDir::new("orch-trigger");
    let server = Server::start(dir.path(), 0, &[]).await;
    // The schema schemars makes of `struct Params { day: NaiveDate, limit: Option<u32> }`
    // with `deny_unknown_fields`.
    deployment(
        &server,
        "adhoc",
        json!({
            "parameters": {"limit": 10},
            "parameter_schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {
                    "day": {"type": "string", "format": "date"},
                    "limit": {"type": ["integer", "null"], "format": "uint32", "minimum": 0}
                },
                "required": ["day"],
                "additionalProperties": false
            }
        }),
    )
    .await;

    let (status, run) = trigger(
        &server,
        "adhoc",
        json!({"parameters": {"day": "2026-11-01"}}),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["status"], "scheduled");
    assert_eq!(run["origin"], "trigger");
    assert_eq!(
        run["parameters"],
        json!({"day": "2026-11-01", "limit": 10}),
        "merged over the defaults"
    );
    let id: Uuid = run["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        run_state(&server, id).await,
        "Scheduled",
        "shows at once, as upcoming"
    );

    for (parameters, field) in [
        (
            json!({"day": "2026-11-01", "limit": "ten"}),
            "parameters.limit",
        ),
        (
            json!({"day": "2026-11-01", "limit": -1}),
            "parameters.limit",
        ),
        (json!({"limit": 3}), "parameters.day"),
        (json!({"day": "2026-11-01", "bogus": 1}), "parameters.bogus"),
    ] {
        let (status, body) = trigger(&server, "adhoc", json!({"parameters": parameters})).await;
        assert_eq!(status, 400, "{parameters} → {body}");
        assert_eq!(body["field"], field, "{parameters} → {body}");
    }
    let (status, body) = trigger(&server, "adhoc", json!({"parameters": [1, 2]})).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("parameters")));
    let (status, body) = trigger(&server, "nope", json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = trigger(&server, "adhoc", json!({"bogus": true})).await;
    assert_eq!(
        status, 422,
        "an unknown field of the request itself: {body}"
    );

    // The same key twice: one run.
    let body =
        json!({"parameters": {"day": "2026-11-02"}, "idempotency_key": "nightly-2026-11-02"});
    let (first_status, first) = trigger(&server, "adhoc", body.clone()).await;
    let (second_status, second) = trigger(&server, "adhoc", body).await;
    assert_eq!((first_status, second_status), (201, 200));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        (first["created"].as_bool(), second["created"].as_bool()),
        (Some(true), Some(false))
    );

    // A deployment without a schema takes no parameters.
    deployment(&server, "plain", json!({})).await;
    let (status, body) = trigger(&server, "plain", json!({"parameters": {"x": 1}})).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("parameters.x")),
        "{body}"
    );
    let (status, _) = trigger(&server, "plain", json!({})).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn each_run_goes_to_exactly_one_worker_across_two_servers() {
    let database = Backend::Postgres.database_url(Path::new("/")).await;
    let args = ["--heartbeat-timeout", "3s"];
    let a = Server::start_with(&database, 0, &args).await;
    let b = Server::start_with(&database, 0, &args).await;
    deployment(&a, "many", json!({"max_active_runs": 10_000})).await;
    const RUNS: usize = 300;
    for _ in 0..RUNS {
        let (status, body) = trigger(&a, "many", json!({})).await;
        assert_eq!(status, 201, "{body}");
    }
    // Six workers, three on each server, poll until nothing is left.
    let mut workers = Vec::new();
    for w in 0..6 {
        let server_url = if w % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        workers.push(tokio::spawn(async move {
            let server = ServerUrl(server_url);
            let mut got = Vec::new();
            let mut empty = 0;
            while empty < 2 {
                // Its runs in hand are in every poll: their heartbeats.
                let running: Vec<Uuid> = got
                    .iter()
                    .filter_map(|id: &String| id.parse().ok())
                    .collect();
                let (status, answer) = server
                    .post(
                        &format!("/api/workers/w{w}/poll"),
                        poll_body(&["many"], 7, &running),
                    )
                    .await;
                assert_eq!(status, 200, "{answer}");
                let runs = answer["runs"].as_array().cloned().unwrap_or_default();
                if runs.is_empty() {
                    empty += 1;
                }
                got.extend(
                    runs.iter()
                        .filter_map(|r| r["id"].as_str().map(String::from)),
                );
            }
            got
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("a worker"));
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), RUNS, "every run handed out");
    assert_eq!(distinct.len(), RUNS, "none twice");
}

/// A server by URL, for tasks that outlive a borrow.
struct ServerUrl(String);

impl ServerUrl {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.0))
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn max_active_runs_holds_and_a_finished_run_frees_its_slot() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = TempDir::new("orch-max");
        let database = backend.database_url(dir.path()).await;
        let server = Server::start_with(&database, 0, &["--heartbeat-timeout", "3s"]).await;
        deployment(&server, "two", json!({"max_active_runs": 2})).await;
        for _ in 0..6 {
            trigger(&server, "two", json!({})).await;
        }
        let (first, _) = poll(&server, "a", poll_body(&["two"], 5, &[])).await;
        let (second, _) = poll(&server, "b", poll_body(&["two"], 5, &[])).await;
        assert_eq!((first.len(), second.len()), (2, 0), "{backend:?}");
        report(&server, first[0], &[State::Running, State::Completed], 0).await;
        let (third, _) = poll(&server, "b", poll_body(&["two"], 5, &[])).await;
        assert_eq!(
            third.len(),
            1,
            "the finished run's slot is free ({backend:?})"
        );
    }
}

#[tokio::test]
async fn a_worker_serves_its_first_queue_first() {
    let dir = TempDir::new("orch-queues");
    let server = Server::start(dir.path(), 0, &[]).await;
    deployment(
        &server,
        "daily",
        json!({"schedules": [{"cron": "0 0 * * *"}], "max_active_runs": 1}),
    )
    .await;
    let (status, backfill) = post(
        &server,
        "/api/deployments/daily/backfills",
        json!({"start": "2024-01-01T00:00:00Z", "end": "2024-04-10T00:00:00Z", "max_active": 1}),
    )
    .await;
    assert_eq!(status, 201, "{backfill}");
    assert_eq!(backfill["intervals"].as_array().map(Vec::len), Some(100));
    assert_eq!(backfill["queue"], "backfill");
    let queues = json!(["urgent", "backfill"]);
    let request = |running: &[Uuid]| json!({"host": "h", "deployments": ["daily"], "queues": queues, "capacity": 1, "running": running});
    // The worker is busy with the oldest backfill run.
    let (busy, answer) = poll(&server, "w", request(&[])).await;
    assert_eq!(busy.len(), 1);
    assert_eq!(
        answer["runs"][0]["interval_start"], "2024-01-01T00:00:00Z",
        "oldest first"
    );
    let (status, urgent) = trigger(&server, "daily", json!({"queue": "urgent"})).await;
    assert_eq!(status, 201);
    report(&server, busy[0], &[State::Running, State::Completed], 0).await;
    let (next, _) = poll(&server, "w", request(&[])).await;
    assert_eq!(
        next,
        [urgent["id"].as_str().unwrap().parse::<Uuid>().unwrap()],
        "the urgent run next"
    );
}

#[tokio::test]
async fn cancels_reach_a_waiting_worker_at_once_and_an_unclaimed_run_never_starts() {
    let dir = TempDir::new("orch-cancel");
    let server = Server::start(dir.path(), 0, &[]).await;
    deployment(&server, "c", json!({"max_active_runs": 5})).await;

    // Not yet claimed: Cancelled, and never handed out.
    let (_, queued) = trigger(
        &server,
        "c",
        json!({"scheduled_at": "2100-01-01T00:00:00Z"}),
    )
    .await;
    let queued: Uuid = queued["id"].as_str().unwrap().parse().unwrap();
    let (status, answer) = post(
        &server,
        &format!("/api/flow_runs/{queued}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, answer["state"].as_str()),
        (200, Some("Cancelled")),
        "{answer}"
    );
    assert_eq!(run_state(&server, queued).await, "Cancelled");

    // Claimed and running: the worker's waiting poll answers within a second.
    let (_, running) = trigger(&server, "c", json!({})).await;
    let running: Uuid = running["id"].as_str().unwrap().parse().unwrap();
    let (claimed, _) = poll(&server, "w", poll_body(&["c"], 1, &[])).await;
    assert_eq!(claimed, [running], "only the run that is due");
    report(&server, running, &[State::Running], 0).await;
    let url = server.url.clone();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let answer = ServerUrl(url)
            .post("/api/workers/w/poll", poll_body(&["c"], 0, &[running]))
            .await;
        (answer, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let (status, answer) = post(
        &server,
        &format!("/api/flow_runs/{running}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, answer["state"].as_str()),
        (200, Some("Cancelling")),
        "{answer}"
    );
    let ((status, answer), _) = waiting.await.expect("the poll");
    assert_eq!(status, 200);
    assert_eq!(answer["cancel"], json!([running]), "{answer}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "delivered in {:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn a_run_whose_heartbeats_stop_is_crashed_and_made_again_for_another_worker() {
    let dir = TempDir::new("orch-crash");
    let server = Server::start(dir.path(), 0, &["--heartbeat-timeout", "1s"]).await;
    deployment(&server, "flaky", json!({"max_active_runs": 5})).await;
    let (_, run) = trigger(&server, "flaky", json!({})).await;
    let run: Uuid = run["id"].as_str().unwrap().parse().unwrap();
    let (claimed, answer) = poll(&server, "doomed", poll_body(&["flaky"], 1, &[])).await;
    assert_eq!(claimed, [run]);
    assert_eq!(
        answer["heartbeat_ms"], 333,
        "polls come at least every third of the timeout"
    );
    // The flow has a retry; one task is running when the worker dies.
    report(&server, run, &[State::Running], 1).await;
    let task = Uuid::now_v7();
    let (status, _) = post(
        &server,
        "/api/events",
        json!([
            event_now(run, Some(task), run_created(RunType::Task, "load", 0)),
            event_now(
                run,
                Some(task),
                EventKind::StateChanged(StateChanged {
                    state: State::Running,
                    attempt: 1,
                    message: None,
                    next_attempt_at: None,
                    result: None,
                })
            ),
        ]),
    )
    .await;
    assert_eq!(status, 200);
    let killed = Instant::now();
    eventually(
        Duration::from_secs(5),
        "the run recorded Crashed",
        || async { run_state(&server, run).await == "Crashed" },
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "not before the timeout: {took:?}"
    );
    let detail = get(&server, &format!("/api/flow_runs/{run}")).await;
    assert_eq!(detail["task_runs"][0]["state"], "Crashed", "{detail}");
    assert!(
        detail["message"]
            .as_str()
            .unwrap_or_default()
            .contains("doomed"),
        "the message names the worker: {detail}"
    );
    // Made again, for another worker, as attempt 2.
    let (again, answer) = poll(&server, "healthy", poll_body(&["flaky"], 1, &[])).await;
    assert_eq!(again.len(), 1, "{answer}");
    assert_ne!(again[0], run);
    assert_eq!(answer["runs"][0]["attempt"], 2);
    // The dead worker, back, learns it lost the run.
    let (_, answer) = poll(&server, "doomed", poll_body(&["flaky"], 0, &[run])).await;
    assert_eq!(answer["lost"], json!([run]));
    // No more retries: the second crash is the last.
    report(&server, again[0], &[State::Running], 1).await;
    eventually(
        Duration::from_secs(5),
        "the retry recorded Crashed",
        || async { run_state(&server, again[0]).await == "Crashed" },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (none, _) = poll(&server, "healthy", poll_body(&["flaky"], 1, &[])).await;
    assert!(none.is_empty(), "no third attempt");
}

#[tokio::test]
async fn a_program_that_ends_normally_is_never_crashed() {
    let dir = TempDir::new("orch-heartbeats");
    let server = Server::start(dir.path(), 0, &["--heartbeat-timeout", "500ms"]).await;
    // Ten programs heartbeat, finish and exit at once; one is killed while running.
    let mut finished = Vec::new();
    for _ in 0..10 {
        let run = Uuid::now_v7();
        let (status, answer) = post(&server, "/api/heartbeats", json!({"runs": [run]})).await;
        assert_eq!(status, 200, "{answer}");
        report(&server, run, &[State::Running, State::Completed], 0).await;
        // A heartbeat sent concurrently with the end, arriving after it.
        post(&server, "/api/heartbeats", json!({"runs": [run]})).await;
        finished.push(run);
    }
    let killed = Uuid::now_v7();
    post(&server, "/api/heartbeats", json!({"runs": [killed]})).await;
    report(&server, killed, &[State::Running], 0).await;
    eventually(
        Duration::from_secs(5),
        "the killed program's run Crashed",
        || async { run_state(&server, killed).await == "Crashed" },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    for run in finished {
        assert_eq!(run_state(&server, run).await, "Completed");
    }
    // Its own final state, arriving late (from a spool), replaces the inferred crash.
    report(&server, killed, &[State::Completed], 0).await;
    assert_eq!(run_state(&server, killed).await, "Completed");
}

#[tokio::test]
async fn scheduled_runs_are_made_once_per_time_by_two_servers_and_a_restart() {
    let database = Backend::Postgres.database_url(Path::new("/")).await;
    let args = ["--scheduler-tick", "50ms"];
    let a = Server::start_with(&database, 0, &args).await;
    let b = Server::start_with(&database, 0, &args).await;
    deployment(&a, "often", json!({"schedules": [{"every": "1s"}]})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // One server killed mid-tick and started again.
    a.kill().await;
    let a = Server::start_with(&database, 0, &args).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs = get(&a, "/api/deployments/often/runs?limit=1000").await;
    let times: Vec<&str> = runs
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|r| r["scheduled_at"].as_str())
        .collect();
    let distinct: HashSet<&&str> = times.iter().collect();
    assert!(times.len() >= 100, "made ahead: {}", times.len());
    assert_eq!(distinct.len(), times.len(), "no time twice");
    // And none missing: from the first time to the last, every second has its run.
    let mut seconds: Vec<i64> = times
        .iter()
        .map(|t| {
            t.parse::<chrono::DateTime<chrono::Utc>>()
                .expect("a time")
                .timestamp()
        })
        .collect();
    seconds.sort_unstable();
    let gaps: Vec<(i64, i64)> = seconds
        .windows(2)
        .filter(|w| w[1] - w[0] != 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(gaps.is_empty(), "times missing between {gaps:?}");
    drop(b);
}

#[tokio::test]
async fn a_run_triggered_for_later_is_handed_out_at_its_time() {
    let dir = TempDir::new("orch-due");
    let server = Server::start(dir.path(), 0, &[]).await;
    deployment(&server, "later", json!({})).await;
    let at = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1500);
    let (_, run) = trigger(&server, "later", json!({"scheduled_at": at})).await;
    let (ids, _) = poll(&server, "w", poll_body(&["later"], 1, &[])).await;
    let late = chrono::Utc::now() - at;
    assert_eq!(ids.len(), 1, "handed out within one poll: {run}");
    assert!(late >= chrono::TimeDelta::zero(), "not early: {late}");
    assert!(
        late < chrono::TimeDelta::milliseconds(300),
        "on time: {late}"
    );
}

#[tokio::test]
async fn backfills_tile_the_range_rerun_failed_days_and_report_gaps() {
    let dir = TempDir::new("orch-backfill");
    let server = Server::start(dir.path(), 0, &["--heartbeat-timeout", "3s"]).await;
    deployment(
        &server,
        "daily",
        json!({"schedules": [{"cron": "0 0 * * *"}], "max_active_runs": 10}),
    )
    .await;
    let range = json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-11T00:00:00Z"});

    // Chunked by 7 days: two runs, the last short, tiling the range.
    let (status, chunked) = post(
        &server,
        "/api/deployments/daily/backfills",
        json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-11T00:00:00Z", "chunk": "7d"}),
    )
    .await;
    assert_eq!(status, 201, "{chunked}");
    let bounds: Vec<(&str, &str)> = chunked["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["start"].as_str().unwrap(), i["end"].as_str().unwrap()))
        .collect();
    assert_eq!(
        bounds,
        [
            ("2024-01-01T00:00:00Z", "2024-01-08T00:00:00Z"),
            ("2024-01-08T00:00:00Z", "2024-01-11T00:00:00Z")
        ]
    );
    let chunked_id = chunked["id"].as_str().unwrap().to_string();
    let (status, cancelled) = post(
        &server,
        &format!("/api/backfills/{chunked_id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );

    // Daily, at most 3 at once whatever the deployment allows.
    let mut body = range.clone();
    body["max_active"] = json!(3);
    let (status, daily) = post(&server, "/api/deployments/daily/backfills", body).await;
    assert_eq!(status, 201, "{daily}");
    assert_eq!(daily["intervals"].as_array().map(Vec::len), Some(10));
    let (first, answer) = poll(&server, "w", poll_body(&["daily"], 10, &[])).await;
    assert_eq!(first.len(), 3, "the backfill's own limit: {answer}");
    // Run the backfill to its end: the 2nd and 5th days fail.
    let mut done = 0;
    let mut claimed = first;
    while !claimed.is_empty() {
        for id in &claimed {
            let interval = get(&server, &format!("/api/flow_runs/{id}")).await["interval_start"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let fails = interval.starts_with("2024-01-02") || interval.starts_with("2024-01-05");
            let end = if fails {
                State::Failed
            } else {
                State::Completed
            };
            report(&server, *id, &[State::Running, end], 0).await;
            done += 1;
        }
        claimed = poll(&server, "w", poll_body(&["daily"], 10, &[])).await.0;
    }
    assert_eq!(done, 10);
    let id = daily["id"].as_str().unwrap();
    let view = get(&server, &format!("/api/backfills/{id}")).await;
    assert_eq!(view["status"], "done");

    let gaps = get(
        &server,
        "/api/deployments/daily/gaps?start=2024-01-01T00:00:00Z&end=2024-01-13T00:00:00Z",
    )
    .await;
    let not_done: Vec<(&str, Option<&str>)> = gaps
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| !matches!(i["state"].as_str(), Some("Completed")))
        .map(|i| (&i["start"].as_str().unwrap()[..10], i["state"].as_str()))
        .collect();
    assert_eq!(
        not_done,
        [
            ("2024-01-02", Some("Failed")),
            ("2024-01-05", Some("Failed")),
            ("2024-01-11", None),
            ("2024-01-12", None)
        ],
        "exactly the days with no successful run"
    );

    // Rerun the failed: only those two days.
    let mut body = range.clone();
    body["rerun_failed"] = json!(true);
    let (status, rerun) = post(&server, "/api/deployments/daily/backfills", body).await;
    assert_eq!(status, 201, "{rerun}");
    let days: Vec<&str> = rerun["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["start"].as_str().unwrap()[..10])
        .collect();
    assert_eq!(days, ["2024-01-02", "2024-01-05"]);

    let (status, body) = post(
        &server,
        "/api/deployments/daily/backfills",
        json!({"start": "2024-01-11T00:00:00Z", "end": "2024-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("end")),
        "{body}"
    );
}

#[tokio::test]
async fn pausing_drops_upcoming_runs_and_resuming_makes_them_again() {
    let dir = TempDir::new("orch-pause");
    let server = Server::start(dir.path(), 0, &[]).await;
    deployment(
        &server,
        "hourly",
        json!({"schedules": [{"cron": "0 * * * *"}]}),
    )
    .await;
    let upcoming = |runs: Value| {
        runs.as_array()
            .map(|r| r.iter().filter(|r| r["status"] == "scheduled").count())
            .unwrap_or(0)
    };
    assert_eq!(
        upcoming(get(&server, "/api/deployments/hourly/runs").await),
        1,
        "the next hour"
    );
    let (status, view) = patch(&server, "/api/deployments/hourly", json!({"paused": true})).await;
    assert_eq!(
        (status, view["paused"].as_bool()),
        (200, Some(true)),
        "{view}"
    );
    assert_eq!(view["next_runs"], json!([]));
    assert_eq!(
        upcoming(get(&server, "/api/deployments/hourly/runs").await),
        0
    );
    // A program registering it again does not resume it.
    deployment(
        &server,
        "hourly",
        json!({"schedules": [{"cron": "0 * * * *"}]}),
    )
    .await;
    assert_eq!(
        get(&server, "/api/deployments/hourly").await["paused"],
        true
    );
    let (_, view) = patch(&server, "/api/deployments/hourly", json!({"paused": false})).await;
    assert_eq!(view["paused"], false);
    assert_eq!(
        upcoming(get(&server, "/api/deployments/hourly/runs").await),
        1
    );
    let (status, _) = patch(&server, "/api/deployments/nope", json!({"paused": true})).await;
    assert_eq!(status, 404);
}

/// A counter of the server's `/metrics` (0 before its first increment).
async fn metric(server: &Server, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| line.split([' ', '{']).next() == Some(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The CPU time a process used so far (user and system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the command name (which may hold spaces), from the 3rd: utime is the 14th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 =
        fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

#[tokio::test]
async fn a_poll_held_back_by_max_active_runs_waits_idle_and_gets_the_run_once_the_last_ends() {
    for backend in common::BACKENDS {
        let dir = TempDir::new("orch-held");
        let database = backend.database_url(dir.path()).await;
        // The default heartbeat timeout: a poll waits up to 10 s.
        let server = Server::start_with(&database, 0, &[]).await;
        deployment(&server, "one", json!({})).await; // max_active_runs: 1
        let (_, first) = trigger(&server, "one", json!({})).await;
        let (_, second) = trigger(&server, "one", json!({})).await;
        let first: Uuid = first["id"].as_str().unwrap().parse().unwrap();
        let second: Uuid = second["id"].as_str().unwrap().parse().unwrap();
        let (claimed, _) = poll(&server, "a", poll_body(&["one"], 1, &[])).await;
        assert_eq!(claimed, [first], "{backend:?}");
        report(&server, first, &[State::Running], 0).await;

        // Another worker waits: the second run is due, but held back behind the first.
        let url = server.url.clone();
        let waiting = tokio::spawn(async move {
            let answer = ServerUrl(url)
                .post("/api/workers/b/poll", poll_body(&["one"], 1, &[]))
                .await;
            (answer, Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (rounds, cpu, wall) = (
            metric(&server, "flowkit_claim_rounds_total").await,
            cpu_time(server.pid()),
            Instant::now(),
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rounds = metric(&server, "flowkit_claim_rounds_total").await - rounds;
        let (cpu, wall) = (cpu_time(server.pid()) - cpu, wall.elapsed());
        println!("{backend:?}: {rounds} claim rounds and {cpu:?} of CPU in {wall:?} of waiting");
        assert!(
            rounds <= 2.0,
            "the waiting poll does not look again and again ({backend:?}): {rounds} claim rounds in {wall:?}"
        );
        assert!(
            cpu < wall / 5,
            "the server idles while the poll waits ({backend:?}): {cpu:?} of CPU in {wall:?}"
        );
        assert!(!waiting.is_finished(), "still waiting ({backend:?})");

        // The first run ends: the waiting poll gets the second at once.
        let ended = Instant::now();
        report(&server, first, &[State::Completed], 0).await;
        let ((status, answer), answered) = waiting.await.expect("the poll");
        assert_eq!(status, 200, "{answer}");
        let handed: Vec<&str> = answer["runs"]
            .as_array()
            .map(|runs| runs.iter().filter_map(|r| r["id"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(handed, [second.to_string()], "{backend:?}: {answer}");
        let took = answered.duration_since(ended);
        println!("{backend:?}: handed out {took:?} after the run before it ended");
        assert!(
            took < Duration::from_millis(500),
            "handed out as the run before it ended ({backend:?}): {took:?}"
        );
    }
}

#[tokio::test]
async fn a_run_triggered_on_another_server_reaches_a_waiting_poll_at_once_even_as_listen_reconnects()
 {
    use sqlx::Connection;
    let database = Backend::Postgres.database_url(Path::new("/")).await;
    // The default heartbeat timeout: a poll waits up to 10 s.
    let a = Server::start_with(&database, 0, &[]).await;
    let b = Server::start_with(&database, 0, &[]).await;
    deployment(&a, "x", json!({"max_active_runs": 100})).await;
    let name = database
        .rsplit_once('/')
        .expect("a database URL")
        .1
        .to_string();
    let mut admin = sqlx::PgConnection::connect(&database)
        .await
        .expect("a connection to the test database");
    let mut took = Vec::new();
    for round in 0..6 {
        // A worker waits on server A.
        let url = a.url.clone();
        let waiting = tokio::spawn(async move {
            let answer = ServerUrl(url)
                .post("/api/workers/w/poll", poll_body(&["x"], 1, &[]))
                .await;
            (answer, Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reconnecting = round % 2 == 1;
        if reconnecting {
            // The connections that LISTEN are cut just before the trigger: its notification
            // may be sent while A is not listening, and A must look for itself once it is.
            let cut: Vec<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = $1 AND query LIKE 'LISTEN%' AND pg_terminate_backend(pid)",
            )
            .bind(&name)
            .fetch_all(&mut admin)
            .await
            .expect("terminating the listeners");
            assert!(!cut.is_empty(), "the servers listen");
        }
        // Triggered on server B.
        let from = Instant::now();
        let (status, run) = trigger(&b, "x", json!({})).await;
        assert_eq!(status, 201, "{run}");
        let ((status, answer), answered) = waiting.await.expect("the poll");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["runs"][0]["id"], run["id"],
            "round {round}: {answer}"
        );
        let latency = answered.duration_since(from);
        took.push((reconnecting, latency));
        // It is done: the next round's poll waits again.
        let id: Uuid = run["id"].as_str().unwrap().parse().unwrap();
        report(&a, id, &[State::Running, State::Completed], 0).await;
    }
    println!("trigger on B → handed out by A (reconnecting?, latency): {took:?}");
    for (reconnecting, latency) in took {
        assert!(
            latency < Duration::from_millis(1000),
            "handed out at once (LISTEN reconnecting: {reconnecting}): {latency:?}"
        );
    }
}

#[tokio::test]
async fn a_due_run_cancelled_before_any_worker_took_it_never_starts() {
    for backend in common::BACKENDS {
        let dir = TempDir::new("orch-cancel-due");
        let database = backend.database_url(dir.path()).await;
        // Polls wait 200 ms.
        let server = Server::start_with(&database, 0, &["--heartbeat-timeout", "600ms"]).await;
        deployment(&server, "one", json!({})).await; // max_active_runs: 1
        deployment(&server, "idle", json!({"max_active_runs": 5})).await;
        let id = |run: &Value| -> Uuid { run["id"].as_str().unwrap().parse().unwrap() };

        // Due now, before any worker polled.
        let (_, early) = trigger(&server, "idle", json!({})).await;
        // Due now, held back behind a running run.
        let (_, running) = trigger(&server, "one", json!({})).await;
        let (_, held) = trigger(&server, "one", json!({})).await;
        let (early, running, held) = (id(&early), id(&running), id(&held));
        let (claimed, _) = poll(&server, "w", poll_body(&["one"], 1, &[])).await;
        assert_eq!(claimed, [running], "{backend:?}");
        report(&server, running, &[State::Running], 0).await;

        for run in [early, held] {
            let (status, answer) =
                post(&server, &format!("/api/flow_runs/{run}/cancel"), json!({})).await;
            assert_eq!(
                (status, answer["state"].as_str()),
                (200, Some("Cancelled")),
                "{backend:?}: {answer}"
            );
        }
        // The running run ends (waking the polls); workers with room ask again and again.
        report(&server, running, &[State::Completed], 0).await;
        for _ in 0..3 {
            let (ids, answer) = poll(&server, "w", poll_body(&["one", "idle"], 5, &[])).await;
            assert!(
                ids.is_empty(),
                "a cancelled run is never handed out ({backend:?}): {answer}"
            );
        }
        for run in [early, held] {
            assert_eq!(run_state(&server, run).await, "Cancelled", "{backend:?}");
            let detail = get(&server, &format!("/api/flow_runs/{run}")).await;
            assert!(
                detail["start"].is_null(),
                "it never started ({backend:?}): {detail}"
            );
        }
        let work = get(&server, "/api/deployments/one/runs").await;
        let statuses: Vec<(&str, &str)> = work
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap()))
            .collect();
        assert!(
            statuses.contains(&(held.to_string().as_str(), "cancelled")),
            "{backend:?}: {statuses:?}"
        );
    }
}

#[tokio::test]
async fn within_a_queue_higher_priority_goes_first_and_a_held_back_one_does_not_block_the_rest() {
    for backend in common::BACKENDS {
        let dir = TempDir::new("orch-priority");
        let database = backend.database_url(dir.path()).await;
        let server = Server::start_with(&database, 0, &["--heartbeat-timeout", "600ms"]).await;
        for (name, priority) in [("low", -5), ("mid", 0), ("high", 10)] {
            deployment(
                &server,
                name,
                json!({"queue": "q", "priority": priority, "max_active_runs": 100}),
            )
            .await;
        }
        let id = |run: &Value| -> Uuid { run["id"].as_str().unwrap().parse().unwrap() };
        // Made in the worst order: lowest priority first, oldest first.
        let mut made = Vec::new();
        for name in ["low", "low", "mid", "high", "mid", "high"] {
            let (status, run) = trigger(&server, name, json!({})).await;
            assert_eq!(status, 201, "{run}");
            made.push((name, id(&run)));
        }
        let ranked = |name: &str| {
            made.iter()
                .filter(|m| m.0 == name)
                .map(|m| m.1)
                .collect::<Vec<_>>()
        };
        let expected: Vec<Uuid> = [ranked("high"), ranked("mid"), ranked("low")].concat();
        // One at a time, as a worker with room for one takes them.
        let mut order = Vec::new();
        let request = json!({"host": "h", "deployments": ["low", "mid", "high"], "queues": ["q"], "capacity": 1, "running": []});
        for _ in 0..made.len() {
            let (ids, answer) = poll(&server, "w", request.clone()).await;
            assert_eq!(ids.len(), 1, "{backend:?}: {answer}");
            report(&server, ids[0], &[State::Running, State::Completed], 0).await;
            order.extend(ids);
        }
        assert_eq!(
            order, expected,
            "highest priority first, then oldest ({backend:?})"
        );
        // Several at once come in the same order.
        for name in ["low", "mid", "high"] {
            trigger(&server, name, json!({})).await;
        }
        let mut request = request.clone();
        request["capacity"] = json!(3);
        let (ids, answer) = poll(&server, "w", request.clone()).await;
        let names: Vec<&str> = answer["runs"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter_map(|r| r["deployment"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(names, ["high", "mid", "low"], "{backend:?}: {answer}");
        for run in ids {
            report(&server, run, &[State::Running, State::Completed], 0).await;
        }

        // The highest priority deployment at its limit with many runs due (say a backfill)
        // does not hide a lower one's run from a worker with room.
        deployment(
            &server,
            "busy",
            json!({"queue": "q", "priority": 100, "max_active_runs": 1}),
        )
        .await;
        for _ in 0..40 {
            trigger(&server, "busy", json!({})).await;
        }
        let mut request = request.clone();
        request["deployments"] = json!(["busy", "low"]);
        request["capacity"] = json!(1);
        let (first, _) = poll(&server, "w1", request.clone()).await;
        assert_eq!(first.len(), 1, "{backend:?}");
        let (_, low) = trigger(&server, "low", json!({})).await;
        let (next, answer) = poll(&server, "w2", request.clone()).await;
        assert_eq!(
            next,
            [id(&low)],
            "the lower priority run, while the higher is at its limit ({backend:?}): {answer}"
        );
    }
}
