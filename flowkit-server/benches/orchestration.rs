//! Orchestration figures: runs claimed, run and completed per second by workers; trigger to
//! claim latency, idle and under load; schedule accuracy; the scheduler's cost for 10,000
//! deployments. Each beside a baseline measured in the same run on the same database.
//!
//! ```text
//! cargo bench -p flowkit-server --bench orchestration                  # SQLite
//! FLOWKIT_BENCH_DATABASE_URL=postgres://… cargo bench -p flowkit-server --bench orchestration
//! bash scripts/bench-orchestration.sh                                  # both, with a throwaway PostgreSQL
//! ```
//!
//! The server runs in this process on a real port, over HTTP like a worker on another machine.
//! Two kinds of workers take its runs:
//!
//! - **Real workers**: this benchmark's binary run again as a program calling
//!   `flowkit::serve` with `FLOWKIT_API_URL` set (`FLOWKIT_BENCH_WORKER=<kind>`), running no-op
//!   `#[flow]`s and streaming their events with the HTTP sink, as a user's program does. Their
//!   figures are read from what the server stored: a run's `start` (its `Running` event's
//!   timestamp) against its scheduled time, or against the moment the benchmark sent the
//!   trigger; a SIGKILLed worker's runs' `Crashed` (the server's event) against the kill.
//! - **Raw pollers**: HTTP clients that poll for runs and report each one's `Running` and
//!   `Completed` events at once: the server's own floor, the baseline of the real workers'
//!   latencies (trigger or scheduled time → claimed).
//!
//! The throughput baseline is the floor of a queue on the same database: the same claims as
//! bare SQL (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)` on PostgreSQL), with no
//! HTTP, no events and no run rows.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flowkit::State;
use flowkit::events::{Event, EventKind, RunCreated, RunType, StateChanged};
use flowkit::serve::{Deployment, Schedule};
use flowkit_server::AppState;
use serde_json::{Value, json};
use uuid::Uuid;

const WORKERS: usize = 3;
const RUNS: usize = 3_000;
const DEPLOYMENTS: usize = 10_000;
/// Schedule accuracy: this many deployments due every second, 1 s / this apart, so each run is
/// due alone.
const EVERY_SECOND: usize = 5;
/// At least this many runs measured per latency figure.
const SAMPLES: usize = 100;
/// Tells this binary it is a worker, and which.
const WORKER_ENV: &str = "FLOWKIT_BENCH_WORKER";

fn event(run: Uuid, kind: EventKind) -> Event {
    Event {
        id: Uuid::now_v7(),
        timestamp: Utc::now(),
        flow_run_id: Some(run),
        task_run_id: None,
        kind,
    }
}

fn state(state: State) -> EventKind {
    EventKind::StateChanged(StateChanged {
        state,
        attempt: 1,
        message: None,
        next_attempt_at: None,
        result: None,
    })
}

/// The events of a no-op run of flow `etl`.
fn run_events(run: Uuid) -> Vec<Event> {
    vec![
        event(
            run,
            EventKind::RunCreated(Arc::new(RunCreated {
                run_type: RunType::Flow,
                name: "etl".into(),
                run_name: None,
                description: None,
                parameters: None,
                tags: Default::default(),
                parent_flow_run_id: None,
                parent_task_run_id: None,
                upstream: Vec::new(),
                map_index: None,
                retries: 0,
                scheduled: None,
            })),
        ),
        event(run, state(State::Running)),
        event(run, state(State::Completed)),
    ]
}

struct Bench {
    url: String,
    client: reqwest::Client,
    state: AppState,
}

impl Bench {
    async fn start(database: &str) -> Bench {
        let (url, state) = common::start_server(database).await;
        Bench {
            url,
            client: reqwest::Client::new(),
            state,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }

    async fn deployment(&self, name: &str, spec: Value) {
        let mut body = json!({"name": name, "flow": "etl", "max_active_runs": 1_000_000});
        if let (Some(body), Some(spec)) = (body.as_object_mut(), spec.as_object()) {
            body.extend(spec.clone());
        }
        self.call(
            reqwest::Method::PUT,
            &format!("/api/deployments/{name}"),
            body,
        )
        .await;
    }

    async fn trigger(&self, name: &str) -> Uuid {
        let run = self
            .post(&format!("/api/deployments/{name}/runs"), json!({}))
            .await;
        run["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("a run id")
    }
}

/// A worker: polls for runs of `deployment`, reports each as run and completed; stops when
/// `done` reaches `until`. Calls `claimed` with each run's id as it is handed out.
async fn worker(
    url: String,
    name: String,
    deployment: String,
    done: Arc<AtomicUsize>,
    until: usize,
    claimed: Arc<dyn Fn(Uuid) + Send + Sync>,
) {
    let client = reqwest::Client::new();
    let (mut polls, mut poll_time, mut event_time) = (0u32, Duration::ZERO, Duration::ZERO);
    let debug = std::env::var_os("FLOWKIT_BENCH_DEBUG").is_some();
    while done.load(Ordering::Relaxed) < until {
        polls += 1;
        let asked = Instant::now();
        let answer: Value = client
            .post(format!("{url}/api/workers/{name}/poll"))
            .json(&json!({"host": "bench", "deployments": [deployment], "capacity": 16}))
            .send()
            .await
            .expect("poll")
            .json()
            .await
            .expect("poll answer");
        let ids: Vec<Uuid> = answer["runs"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter_map(|r| r["id"].as_str().and_then(|s| s.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        poll_time += asked.elapsed();
        if ids.is_empty() {
            continue;
        }
        let sent = Instant::now();
        for id in &ids {
            claimed(*id);
        }
        let events: Vec<Event> = ids.iter().flat_map(|id| run_events(*id)).collect();
        let response = client
            .post(format!("{url}/api/events"))
            .json(&events)
            .send()
            .await
            .expect("events");
        assert!(response.status().is_success());
        event_time += sent.elapsed();
        done.fetch_add(ids.len(), Ordering::Relaxed);
    }
    if debug {
        eprintln!("  {name}: {polls} polls, {poll_time:?} polling, {event_time:?} reporting");
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms ({} runs)",
        percentile(&ms, 0.50),
        percentile(&ms, 0.95),
        percentile(&ms, 0.99),
        ms.len()
    )
}

/// Runs claimed, run and completed per second by `WORKERS` workers.
async fn throughput(bench: &Bench, workers: usize) -> f64 {
    let name = format!("throughput-{workers}");
    bench.deployment(&name, json!({})).await;
    let mut triggers = tokio::task::JoinSet::new();
    let per = RUNS / 8;
    for _ in 0..8 {
        let (url, name) = (bench.url.clone(), name.clone());
        triggers.spawn(async move {
            let client = reqwest::Client::new();
            for _ in 0..per {
                let response = client
                    .post(format!("{url}/api/deployments/{name}/runs"))
                    .json(&json!({}))
                    .send()
                    .await
                    .expect("trigger");
                assert!(response.status().is_success());
            }
        });
    }
    triggers.join_all().await;
    let total = per * 8;
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut pool = tokio::task::JoinSet::new();
    for w in 0..workers {
        pool.spawn(worker(
            bench.url.clone(),
            format!("{name}-w{w}"),
            name.clone(),
            done.clone(),
            total,
            Arc::new(|_| {}),
        ));
    }
    // Timed to the last run reported: a worker then waiting in its long poll is not waited for.
    while done.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    pool.abort_all();
    total as f64 / took.as_secs_f64()
}

/// The same claims as bare SQL on the same database: the floor of a database queue.
async fn baseline_queue(database: &str, workers: usize) -> f64 {
    let postgres = database.starts_with("postgres");
    if postgres {
        let pool = sqlx::PgPool::connect(database).await.expect("connect");
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_queue (id BIGSERIAL PRIMARY KEY, status TEXT NOT NULL)")
            .execute(&pool)
            .await
            .expect("table");
        sqlx::query("INSERT INTO bench_queue (status) SELECT 'queued' FROM generate_series(1, $1)")
            .bind(RUNS as i64)
            .execute(&pool)
            .await
            .expect("rows");
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let pool = pool.clone();
            tasks.spawn(async move {
                loop {
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "UPDATE bench_queue SET status = 'claimed' WHERE id IN (
                             SELECT id FROM bench_queue WHERE status = 'queued'
                             ORDER BY id LIMIT 16 FOR UPDATE SKIP LOCKED) RETURNING id",
                    )
                    .fetch_all(&pool)
                    .await
                    .expect("claim");
                    if ids.is_empty() {
                        return;
                    }
                    sqlx::query("UPDATE bench_queue SET status = 'done' WHERE id = ANY($1)")
                        .bind(&ids)
                        .execute(&pool)
                        .await
                        .expect("done");
                }
            });
        }
        tasks.join_all().await;
        RUNS as f64 / started.elapsed().as_secs_f64()
    } else {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(database)
            .await
            .expect("connect");
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_queue (id INTEGER PRIMARY KEY, status TEXT NOT NULL)",
        )
        .execute(&pool)
        .await
        .expect("table");
        for _ in 0..RUNS {
            sqlx::query("INSERT INTO bench_queue (status) VALUES ('queued')")
                .execute(&pool)
                .await
                .expect("row");
        }
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let pool = pool.clone();
            tasks.spawn(async move {
                loop {
                    let ids: Vec<i64> = sqlx::query_scalar(
                        "UPDATE bench_queue SET status = 'claimed' WHERE id IN (
                             SELECT id FROM bench_queue WHERE status = 'queued' ORDER BY id LIMIT 16)
                         RETURNING id",
                    )
                    .fetch_all(&pool)
                    .await
                    .expect("claim");
                    if ids.is_empty() {
                        return;
                    }
                    let mut done =
                        sqlx::QueryBuilder::new("UPDATE bench_queue SET status = 'done' WHERE id IN (");
                    let mut list = done.separated(", ");
                    for id in ids {
                        list.push_bind(id);
                    }
                    done.push(")");
                    done.build().execute(&pool).await.expect("done");
                }
            });
        }
        tasks.join_all().await;
        RUNS as f64 / started.elapsed().as_secs_f64()
    }
}

/// Trigger to claim latency: one run at a time, with one idle worker waiting.
async fn latency_idle(bench: &Bench) -> Vec<f64> {
    let name = "latency-idle";
    bench.deployment(name, json!({})).await;
    let done = Arc::new(AtomicUsize::new(0));
    let claimed_at = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let seen = claimed_at.clone();
    let pool = tokio::spawn(worker(
        bench.url.clone(),
        "idle-w".into(),
        name.into(),
        done.clone(),
        200,
        Arc::new(move |id| {
            seen.lock().expect("lock").insert(id, Instant::now());
        }),
    ));
    let mut ms = Vec::new();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let asked = Instant::now();
        let id = bench.trigger(name).await;
        loop {
            if let Some(at) = claimed_at.lock().expect("lock").get(&id) {
                ms.push(at.duration_since(asked).as_secs_f64() * 1e3);
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let _ = pool.await;
    ms
}

/// Trigger to claim latency while three workers run triggers arriving at `rate` per second.
async fn latency_loaded(bench: &Bench, rate: u64, seconds: u64) -> Vec<f64> {
    let name = "latency-load";
    bench.deployment(name, json!({})).await;
    let total = (rate * seconds) as usize;
    let done = Arc::new(AtomicUsize::new(0));
    let claimed_at = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let mut pool = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let seen = claimed_at.clone();
        pool.spawn(worker(
            bench.url.clone(),
            format!("load-w{w}"),
            name.into(),
            done.clone(),
            total,
            Arc::new(move |id| {
                seen.lock().expect("lock").insert(id, Instant::now());
            }),
        ));
    }
    let mut asked = Vec::with_capacity(total);
    let mut every = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut triggers = tokio::task::JoinSet::new();
    for _ in 0..total {
        every.tick().await;
        let (url, client) = (bench.url.clone(), bench.client.clone());
        triggers.spawn(async move {
            let at = Instant::now();
            let run: Value = client
                .post(format!("{url}/api/deployments/{name}/runs"))
                .json(&json!({}))
                .send()
                .await
                .expect("trigger")
                .json()
                .await
                .expect("run");
            (run["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()), at)
        });
    }
    while let Some(Ok((id, at))) = triggers.join_next().await {
        if let Some(id) = id {
            asked.push((id, at));
        }
    }
    while done.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    pool.abort_all();
    let claimed = claimed_at.lock().expect("lock");
    asked
        .iter()
        .filter_map(|(id, at)| {
            claimed
                .get(id)
                .map(|c| c.duration_since(*at).as_secs_f64() * 1e3)
        })
        .collect()
}

/// The schedules of the accuracy deployments: every second, the `i`th at `i / EVERY_SECOND`
/// past the second.
fn every_second(i: usize) -> Value {
    let anchor =
        DateTime::UNIX_EPOCH + chrono::TimeDelta::milliseconds((1000 * i / EVERY_SECOND) as i64);
    json!([{"every": "1s", "anchor": anchor}])
}

/// Schedule accuracy for a raw poller: `EVERY_SECOND` deployments each due every second; from
/// each run's scheduled time to its claim by an idle poller.
async fn schedule_accuracy(bench: &Bench, runs: usize) -> Vec<f64> {
    let names: Vec<String> = (0..EVERY_SECOND)
        .map(|i| format!("raw-every-second-{i}"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        bench
            .deployment(name, json!({"schedules": every_second(i)}))
            .await;
    }
    let client = reqwest::Client::new();
    let mut ms = Vec::new();
    while ms.len() < runs {
        let answer: Value = client
            .post(format!("{}/api/workers/accuracy/poll", bench.url))
            .json(&json!({"host": "bench", "deployments": names, "capacity": 1}))
            .send()
            .await
            .expect("poll")
            .json()
            .await
            .expect("answer");
        let now = Utc::now();
        for run in answer["runs"].as_array().cloned().unwrap_or_default() {
            let (Some(id), Some(at)) = (
                run["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()),
                run["scheduled_at"]
                    .as_str()
                    .and_then(|s| s.parse::<DateTime<Utc>>().ok()),
            ) else {
                continue;
            };
            // The first runs may have been due before the poller started.
            if now - at < chrono::TimeDelta::milliseconds(150) {
                ms.push((now - at).num_microseconds().unwrap_or(0) as f64 / 1e3);
            }
            bench.post("/api/events", json!(run_events(id))).await;
        }
    }
    ms
}

// ---------------------------------------------------------------------------------------------
// Real workers: this binary run again as a `flowkit::serve` program.

#[flowkit::flow(name = "bench-noop")]
async fn noop() {}

#[flowkit::flow(name = "bench-sleepy")]
async fn sleepy() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// The deployments a worker of `kind` serves.
fn worker_deployments(kind: &str) -> Vec<Deployment> {
    match kind {
        "accuracy" => (0..EVERY_SECOND)
            .map(|i| {
                let anchor = DateTime::UNIX_EPOCH
                    + chrono::TimeDelta::milliseconds((1000 * i / EVERY_SECOND) as i64);
                let every = Schedule::every("1s").expect("a period").anchored_at(anchor);
                Deployment::new(format!("every-second-{i}"), |_| noop())
                    .schedule(every)
                    .max_active_runs(100)
            })
            .collect(),
        "trigger" => vec![Deployment::new("real-trigger", |_| noop()).max_active_runs(1_000_000)],
        "crash" => vec![Deployment::new("real-crash", |_| sleepy()).max_active_runs(100)],
        other => panic!("no worker kind {other:?}"),
    }
}

/// The body of a worker process: serves its kind's deployments for the server in
/// `FLOWKIT_API_URL` until its stdin closes (or it is killed).
fn worker_main(kind: &str) {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        flowkit::init();
        let name = std::env::var("FLOWKIT_BENCH_WORKER_NAME").expect("a worker name");
        let state =
            std::env::temp_dir().join(format!("flowkit-bench-worker-{}.json", std::process::id()));
        flowkit::serve::Server::new(worker_deployments(kind))
            .worker_name(name)
            .max_runs(64)
            .state_file(state)
            .run()
            .await
            .expect("the worker serves");
    });
}

/// A worker process, killed at drop.
struct WorkerProcess(std::process::Child);

impl WorkerProcess {
    fn start(bench: &Bench, kind: &str, name: &str) -> WorkerProcess {
        let exe = std::env::current_exe().expect("this binary's path");
        let child = std::process::Command::new(exe)
            .env(WORKER_ENV, kind)
            .env("FLOWKIT_BENCH_WORKER_NAME", name)
            .env("FLOWKIT_API_URL", &bench.url)
            .env("FLOWKIT_CONSOLE", "off")
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the worker starts");
        WorkerProcess(child)
    }

    /// SIGKILL; when.
    fn kill(&mut self) -> DateTime<Utc> {
        let at = Utc::now();
        let _ = self.0.kill();
        let _ = self.0.wait();
        at
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the server stored of a flow run, once `ready` holds for it (waits up to 60 s).
async fn stored(bench: &Bench, id: Uuid, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = bench
            .client
            .get(format!("{}/api/flow_runs/{id}", bench.url))
            .send()
            .await
            .expect("the server answers");
        if response.status().is_success() {
            let run: Value = response.json().await.unwrap_or(Value::Null);
            if ready(&run) {
                return run;
            }
        }
        assert!(Instant::now() < deadline, "run {id} not as awaited in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn time_of(run: &Value, field: &str) -> Option<DateTime<Utc>> {
    run[field].as_str().and_then(|s| s.parse().ok())
}

/// When the server stored the run's `Running` (its event's timestamp).
async fn running_at(bench: &Bench, id: Uuid) -> DateTime<Utc> {
    let run = stored(bench, id, |r| time_of(r, "start").is_some()).await;
    time_of(&run, "start").expect("a start")
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1e3
}

/// Triggers a run of `deployment` now; its id and when the trigger was sent.
async fn trigger_at(bench: &Bench, deployment: &str) -> (Uuid, DateTime<Utc>) {
    let sent = Utc::now();
    (bench.trigger(deployment).await, sent)
}

/// Waits until a worker serving `deployment` runs what is triggered (a first run, not counted).
async fn warm_up(bench: &Bench, deployment: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while bench
        .client
        .get(format!("{}/api/deployments/{deployment}", bench.url))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "{deployment} not registered in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let id = bench.trigger(deployment).await;
        running_at(bench, id).await;
    }
}

/// Trigger → `Running` (stored) with one idle real worker, one run at a time.
async fn real_trigger_idle(bench: &Bench) -> Vec<f64> {
    let _worker = WorkerProcess::start(bench, "trigger", "real-idle");
    warm_up(bench, "real-trigger").await;
    let mut sent = Vec::new();
    for _ in 0..2 * SAMPLES {
        sent.push(trigger_at(bench, "real-trigger").await);
        // The worker is idle again well before the next one.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut ms = Vec::new();
    for (id, at) in sent {
        ms.push(ms_between(at, running_at(bench, id).await));
    }
    ms
}

/// Trigger → `Running` (stored) with three real workers while triggers arrive at `rate` per
/// second for `seconds`.
async fn real_trigger_loaded(bench: &Bench, rate: u64, seconds: u64) -> Vec<f64> {
    let _workers: Vec<WorkerProcess> = (0..WORKERS)
        .map(|w| WorkerProcess::start(bench, "trigger", &format!("real-load-{w}")))
        .collect();
    warm_up(bench, "real-trigger").await;
    // Every worker polling before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = (rate * seconds) as usize;
    let mut every = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut triggers = tokio::task::JoinSet::new();
    for _ in 0..total {
        every.tick().await;
        let (url, client) = (bench.url.clone(), bench.client.clone());
        triggers.spawn(async move {
            let at = Utc::now();
            let run: Value = client
                .post(format!("{url}/api/deployments/real-trigger/runs"))
                .json(&json!({}))
                .send()
                .await
                .expect("trigger")
                .json()
                .await
                .expect("run");
            (run["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()), at)
        });
    }
    let mut sent = Vec::new();
    while let Some(Ok((id, at))) = triggers.join_next().await {
        sent.extend(id.map(|id| (id, at)));
    }
    let mut ms = Vec::new();
    for (id, at) in sent {
        ms.push(ms_between(at, running_at(bench, id).await));
    }
    ms
}

/// Scheduled time → `Running` (stored) with one idle real worker serving `EVERY_SECOND`
/// deployments due every second, each run due alone.
async fn real_schedule_accuracy(bench: &Bench) -> Vec<f64> {
    let started = Utc::now();
    let _worker = WorkerProcess::start(bench, "accuracy", "real-accuracy");
    // Runs due from 3 s on: the worker is registered and polling by then.
    let from = started + chrono::TimeDelta::seconds(3);
    let seconds = (SAMPLES / EVERY_SECOND) as i64 + 1;
    let until = from + chrono::TimeDelta::seconds(seconds);
    tokio::time::sleep(
        ((until - Utc::now()) + chrono::TimeDelta::seconds(1))
            .to_std()
            .unwrap_or_default(),
    )
    .await;
    let mut ms = Vec::new();
    for i in 0..EVERY_SECOND {
        let runs = bench
            .client
            .get(format!(
                "{}/api/deployments/every-second-{i}/runs?limit=1000",
                bench.url
            ))
            .send()
            .await
            .expect("the runs")
            .json::<Value>()
            .await
            .expect("a list");
        for run in runs.as_array().cloned().unwrap_or_default() {
            let (Some(id), Some(at)) = (
                run["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()),
                time_of(&run, "scheduled_at"),
            ) else {
                continue;
            };
            if at >= from && at < until {
                ms.push(ms_between(at, running_at(bench, id).await));
            }
        }
    }
    ms
}

/// SIGKILL of a worker running three long runs → each stored `Crashed` (the server's event),
/// in seconds, with the server's heartbeat timeout.
async fn crash_detection(bench: &Bench) -> Vec<f64> {
    let mut worker = WorkerProcess::start(bench, "crash", "real-crash");
    let deadline = Instant::now() + Duration::from_secs(60);
    while bench
        .client
        .get(format!("{}/api/deployments/real-crash", bench.url))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "real-crash not registered in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(bench.trigger("real-crash").await);
    }
    for id in &ids {
        running_at(bench, *id).await;
    }
    // Killed at a random point of its polls (they are its heartbeats).
    tokio::time::sleep(Duration::from_millis(fastrand::u64(500..3_000))).await;
    let killed = worker.kill();
    let mut seconds = Vec::new();
    for id in ids {
        let deadline = Instant::now() + Duration::from_secs(120);
        let run = loop {
            let run = stored(bench, id, |_| true).await;
            if run["state"] == "Crashed" {
                break run;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not Crashed in 120 s: {run}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let at = time_of(&run, "end").expect("an end");
        seconds.push(ms_between(killed, at) / 1e3);
    }
    seconds
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// The scheduler with 10,000 deployments due every minute.
async fn scheduler_cost(bench: &Bench) {
    // The accuracy figures' deployments due every second are paused first: a tick makes at
    // most 100 runs ahead of each, so they would be behind and add runs to every tick here.
    for i in 0..EVERY_SECOND {
        for name in [format!("every-second-{i}"), format!("raw-every-second-{i}")] {
            let path = format!("/api/deployments/{name}");
            bench
                .call(reqwest::Method::PATCH, &path, json!({"paused": true}))
                .await;
        }
    }
    let started = Instant::now();
    let mut puts = tokio::task::JoinSet::new();
    for chunk in 0..8 {
        let url = bench.url.clone();
        puts.spawn(async move {
            let client = reqwest::Client::new();
            for i in (chunk..DEPLOYMENTS).step_by(8) {
                let name = format!("minutely-{i:05}");
                let response = client
                    .put(format!("{url}/api/deployments/{name}"))
                    .json(&json!({"name": name, "flow": "etl", "schedules": [{"every": "1m"}]}))
                    .send()
                    .await
                    .expect("register");
                assert!(response.status().is_success());
            }
        });
    }
    puts.join_all().await;
    let registered = started.elapsed();
    println!(
        "  registering {DEPLOYMENTS} deployments (each makes its next 10 minutes of runs): {:.1} s ({:.1} ms each)",
        registered.as_secs_f64(),
        registered.as_secs_f64() * 1e3 / DEPLOYMENTS as f64
    );
    // The tick the scheduler's loop makes as registering ends (the ten-minute horizon moved on
    // while the deployments were registered), the routine tick after it with nothing new to
    // make, then one a minute later making a minute's runs.
    let now = Utc::now();
    for (label, at) in [
        (
            "a tick as registering ends (the horizon moved on meanwhile)",
            now,
        ),
        ("a routine tick with nothing to make", now),
        (
            "a tick making a minute's runs (10,000)",
            now + chrono::TimeDelta::minutes(1),
        ),
    ] {
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        let made = flowkit_server::orchestrate::tick(&bench.state, at)
            .await
            .expect("tick");
        println!(
            "  {label}: {:.0} ms wall, {:.0} ms CPU in this process, {made} runs made",
            wall.elapsed().as_secs_f64() * 1e3,
            (cpu_seconds() - cpu) * 1e3
        );
    }
}

/// The baseline of a tick: inserting 10,000 rows in one transaction, bare.
async fn baseline_inserts(database: &str) -> f64 {
    let started;
    if database.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database).await.expect("connect");
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_rows (id UUID PRIMARY KEY, deployment TEXT, at BIGINT)")
            .execute(&pool)
            .await
            .expect("table");
        started = Instant::now();
        let mut tx = pool.begin().await.expect("begin");
        for chunk in (0..DEPLOYMENTS).collect::<Vec<_>>().chunks(1000) {
            let mut insert =
                sqlx::QueryBuilder::new("INSERT INTO bench_rows (id, deployment, at) ");
            insert.push_values(chunk, |mut row, i| {
                row.push_bind(Uuid::now_v7())
                    .push_bind(format!("minutely-{i:05}"))
                    .push_bind(*i as i64);
            });
            insert.build().execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
    } else {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(database)
            .await
            .expect("connect");
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_rows (id BLOB PRIMARY KEY, deployment TEXT, at BIGINT)")
            .execute(&pool)
            .await
            .expect("table");
        started = Instant::now();
        let mut tx = pool.begin().await.expect("begin");
        for chunk in (0..DEPLOYMENTS).collect::<Vec<_>>().chunks(1000) {
            let mut insert =
                sqlx::QueryBuilder::new("INSERT INTO bench_rows (id, deployment, at) ");
            insert.push_values(chunk, |mut row, i| {
                row.push_bind(Uuid::now_v7())
                    .push_bind(format!("minutely-{i:05}"))
                    .push_bind(*i as i64);
            });
            insert.build().execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
    }
    started.elapsed().as_secs_f64() * 1e3
}

async fn run(database: &str, label: &str) {
    println!("\n== {label} ==");
    let bench = Bench::start(database).await;

    let workers = if database.starts_with("postgres") {
        WORKERS
    } else {
        1
    };
    let ours = throughput(&bench, workers).await;
    let floor = baseline_queue(database, workers).await;
    println!(
        "throughput, {workers} worker(s), {RUNS} no-op runs: {ours:.0} runs/s claimed, run and completed \
         (bare SQL queue on the same database: {floor:.0} claims/s; ratio {:.2}x)",
        floor / ours
    );

    let rate = if database.starts_with("postgres") {
        200
    } else {
        100
    };
    println!("real workers (flowkit::serve processes; times as the server stored them):");
    let accuracy = real_schedule_accuracy(&bench).await;
    println!(
        "  scheduled time → Running, 1 worker, {EVERY_SECOND} deployments due every second: {}",
        summary(accuracy)
    );
    let idle = real_trigger_idle(&bench).await;
    println!("  trigger → Running, 1 idle worker: {}", summary(idle));
    let loaded = real_trigger_loaded(&bench, rate, 5).await;
    println!(
        "  trigger → Running, {WORKERS} workers, {rate} triggers/s: {}",
        summary(loaded)
    );
    let crashes = crash_detection(&bench).await;
    println!(
        "  SIGKILLed worker → its runs Crashed, heartbeat timeout {} s (polls, its heartbeats, every {} s): {}",
        bench.state.orchestra.heartbeat_timeout.as_secs(),
        bench.state.orchestra.poll_wait().as_secs(),
        crashes
            .iter()
            .map(|s| format!("{s:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!("baseline, raw HTTP pollers (claim, then report at once):");
    let accuracy = schedule_accuracy(&bench, SAMPLES).await;
    println!(
        "  scheduled time → claimed, {EVERY_SECOND} deployments due every second: {}",
        summary(accuracy)
    );
    let idle = latency_idle(&bench).await;
    println!("  trigger → claimed, idle poller: {}", summary(idle));
    let loaded = latency_loaded(&bench, rate, 5).await;
    println!(
        "  trigger → claimed, {WORKERS} pollers, {rate} triggers/s: {}",
        summary(loaded)
    );

    println!("scheduler, {DEPLOYMENTS} deployments due every minute:");
    scheduler_cost(&bench).await;
    println!(
        "  baseline: {DEPLOYMENTS} bare rows inserted in one transaction: {:.0} ms",
        baseline_inserts(database).await
    );
}

fn main() {
    if let Ok(kind) = std::env::var(WORKER_ENV) {
        worker_main(&kind);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(bench_main());
}

async fn bench_main() {
    println!(
        "load average at start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let dir = std::env::temp_dir().join(format!("flowkit-bench-orch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let sqlite = format!("sqlite://{}", dir.join("bench.db").display());
    run(&sqlite, "SQLite (one server, one writer)").await;
    if let Ok(url) = std::env::var("FLOWKIT_BENCH_DATABASE_URL") {
        run(&url, "PostgreSQL").await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nload average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
