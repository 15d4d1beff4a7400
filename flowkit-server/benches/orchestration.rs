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
//! The server runs in this process on a real port, over HTTP like a worker on another machine;
//! workers are HTTP clients that poll for runs and report each one's `Running` and `Completed`
//! events (what a no-op deployment run sends). The baseline is the floor of a queue on the same
//! database: the same claims as bare SQL (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
//! LOCKED)` on PostgreSQL), with no HTTP, no events and no run rows.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flowkit::State;
use flowkit::events::{Event, EventKind, RunCreated, RunType, StateChanged};
use flowkit_server::AppState;
use serde_json::{Value, json};
use uuid::Uuid;

const WORKERS: usize = 3;
const RUNS: usize = 3_000;
const DEPLOYMENTS: usize = 10_000;

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

/// Schedule accuracy: a deployment due every second; from each run's scheduled time to its
/// claim by an idle worker.
async fn schedule_accuracy(bench: &Bench, runs: usize) -> Vec<f64> {
    let name = "every-second";
    bench
        .deployment(name, json!({"schedules": [{"every": "1s"}]}))
        .await;
    let client = reqwest::Client::new();
    let mut ms = Vec::new();
    while ms.len() < runs {
        let answer: Value = client
            .post(format!("{}/api/workers/accuracy/poll", bench.url))
            .json(&json!({"host": "bench", "deployments": [name], "capacity": 1}))
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
            // The first run may have been due before the worker started.
            if now - at < chrono::TimeDelta::seconds(1) {
                ms.push((now - at).num_microseconds().unwrap_or(0) as f64 / 1e3);
            }
            bench.post("/api/events", json!(run_events(id))).await;
        }
    }
    ms
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
    // A tick with nothing new to make, then one a minute later making a minute's runs.
    let now = Utc::now();
    for (label, at) in [
        ("a tick with nothing to make", now),
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

    let idle = latency_idle(&bench).await;
    println!("trigger → claimed, idle worker: {}", summary(idle));
    let rate = if database.starts_with("postgres") {
        200
    } else {
        100
    };
    let loaded = latency_loaded(&bench, rate, 5).await;
    println!(
        "trigger → claimed, {WORKERS} workers, {rate} triggers/s: {}",
        summary(loaded)
    );

    let accuracy = schedule_accuracy(&bench, 10).await;
    println!(
        "schedule accuracy (scheduled time → claimed), every 1s: {}",
        summary(accuracy)
    );

    println!("scheduler, {DEPLOYMENTS} deployments due every minute:");
    scheduler_cost(&bench).await;
    println!(
        "  baseline: {DEPLOYMENTS} bare rows inserted in one transaction: {:.0} ms",
        baseline_inserts(database).await
    );
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("flowkit-bench-orch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let sqlite = format!("sqlite://{}", dir.join("bench.db").display());
    run(&sqlite, "SQLite (one server, one writer)").await;
    if let Ok(url) = std::env::var("FLOWKIT_BENCH_DATABASE_URL") {
        run(&url, "PostgreSQL").await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
