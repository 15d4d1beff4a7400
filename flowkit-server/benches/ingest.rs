//! Ingestion throughput into SQLite, query latency, and bytes on disk per task run.
//!
//! ```text
//! cargo bench -p flowkit-server --bench ingest            # 1,000,000 events into SQLite
//! cargo bench -p flowkit-server --bench ingest -- 3000000 # another size
//! FLOWKIT_BENCH_DATABASE_URL=postgres://… cargo bench -p flowkit-server --bench ingest
//! ```
//!
//! Events are what a flow of task runs sends (created, running, completed per task run; a log
//! line every tenth run), in batches of 1,000 like the HTTP sink, through `Store::ingest`.
//!
//! Beside it, in the same run: a raw bulk insert of the same event rows (the same columns and
//! JSON bodies, made before the clock starts) into a table of the same schema, one transaction
//! per batch: on SQLite in a second file opened with the same settings, one multi-row `INSERT`
//! per batch; on PostgreSQL in a schema `bench_raw` of the same database, one per 500 rows.
//! That is the rate of the database alone; the store's ingest is reported against it.
//!
//! And end to end (SQLite): the same batches, encoded as JSON before the clock starts, posted
//! one at a time (as the HTTP sink does) to a `flowkit-server` process (the binary cargo built
//! beside this bench) on a third file: parsing, checking, storing and answering, against the
//! same raw baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use flowkit::State;
use flowkit::events::{Event, EventKind, LogLevel, LogRecord, RunCreated, RunType, StateChanged};
use flowkit_server::Store;
use flowkit_server::store::{LogFilter, RunFilter};
use uuid::Uuid;

fn event(flow_run: Uuid, task_run: Option<Uuid>, kind: EventKind) -> Event {
    Event {
        id: Uuid::now_v7(),
        timestamp: Utc::now(),
        flow_run_id: Some(flow_run),
        task_run_id: task_run,
        kind,
    }
}

fn state(state: State) -> EventKind {
    attempt(state, 1)
}

fn attempt(state: State, attempt: u32) -> EventKind {
    EventKind::StateChanged(StateChanged {
        state,
        attempt,
        message: None,
        next_attempt_at: None,
        result: None,
    })
}

fn created(run_type: RunType, name: &'static str, map_index: Option<u64>) -> EventKind {
    EventKind::RunCreated(Arc::new(RunCreated {
        run_type,
        name: name.into(),
        run_name: None,
        description: None,
        parameters: (run_type == RunType::Flow).then(|| serde_json::json!({"day": "2026-11-26"})),
        tags: Default::default(),
        parent_flow_run_id: None,
        parent_task_run_id: None,
        upstream: Vec::new(),
        map_index,
        retries: 0,
        scheduled: None,
    }))
}

/// The events of one flow run with `tasks` task runs (one in 50 retried once).
fn flow_events(tasks: u64) -> (Uuid, Vec<Event>) {
    let flow = Uuid::now_v7();
    let mut events = vec![
        event(flow, None, created(RunType::Flow, "daily-etl", None)),
        event(flow, None, state(State::Running)),
    ];
    for i in 0..tasks {
        let task = Some(Uuid::now_v7());
        events.push(event(
            flow,
            task,
            created(RunType::Task, "transform", Some(i)),
        ));
        events.push(event(flow, task, state(State::Running)));
        // One task run in 50 fails once and is retried.
        if i % 50 == 0 {
            events.push(event(flow, task, attempt(State::Retrying, 1)));
            events.push(event(flow, task, attempt(State::Running, 2)));
        }
        if i % 10 == 0 {
            events.push(event(
                flow,
                task,
                EventKind::Log(Arc::new(LogRecord {
                    level: LogLevel::Info,
                    target: "etl".into(),
                    message: format!("transformed partition {i}"),
                    fields: Default::default(),
                })),
            ));
        }
        events.push(event(flow, task, state(State::Completed)));
    }
    events.push(event(flow, None, state(State::Completed)));
    (flow, events)
}

/// An event as a row of `events` (what the store writes), made before the raw insert is timed.
struct RawRow {
    id: Uuid,
    ts: i64,
    flow_run_id: Option<Uuid>,
    task_run_id: Option<Uuid>,
    kind: &'static str,
    level: Option<String>,
    body: String,
}

fn raw_row(event: &Event) -> RawRow {
    let (kind, level) = match &event.kind {
        EventKind::RunCreated(_) => ("run_created", None),
        EventKind::StateChanged(_) => ("state_changed", None),
        EventKind::Log(log) => ("log", Some(log.level.to_string())),
    };
    RawRow {
        id: event.id,
        ts: event.timestamp.timestamp_nanos_opt().unwrap_or_default(),
        flow_run_id: event.flow_run_id,
        task_run_id: event.task_run_id,
        kind,
        level,
        body: serde_json::to_string(&event.kind).expect("JSON"),
    }
}

/// A second SQLite file with the store's settings and its `events` table, for the raw insert.
async fn raw_pool(path: &std::path::Path) -> anyhow::Result<sqlx::SqlitePool> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory");
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE events (
            id BLOB PRIMARY KEY, ts INTEGER NOT NULL, flow_run_id BLOB, task_run_id BLOB,
            kind TEXT NOT NULL, level TEXT, body TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX logs_by_flow_run ON events (flow_run_id, ts) WHERE kind = 'log';",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

/// Inserts a batch of rows in one transaction, one multi-row statement.
async fn raw_insert(pool: &sqlx::SqlitePool, rows: &[RawRow]) -> anyhow::Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO events (id, ts, flow_run_id, task_run_id, kind, level, body) ",
    );
    insert.push_values(rows, |mut row, r| {
        row.push_bind(r.id)
            .push_bind(r.ts)
            .push_bind(r.flow_run_id)
            .push_bind(r.task_run_id)
            .push_bind(r.kind)
            .push_bind(r.level.as_deref())
            .push_bind(r.body.as_str());
    });
    insert.build().execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// A `flowkit-server` process on the SQLite file at `path`, and its URL.
async fn server_process(path: &std::path::Path) -> anyhow::Result<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowkit-server"))
        .args(["--bind", "127.0.0.1:0", "--database-url"])
        .arg(format!("sqlite://{}", path.display()))
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await?
        .ok_or_else(|| anyhow::anyhow!("the server said nothing"))?;
    let url = line
        .rsplit(' ')
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address in {line:?}"))?
        .to_string();
    // Keep reading its output so the pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

/// A schema `bench_raw` in the store's PostgreSQL database with a table like its `events`, for
/// the raw insert there (dropped first if a bench left it).
async fn raw_pg_pool(url: &str) -> anyhow::Result<sqlx::PgPool> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    sqlx::raw_sql(
        "DROP SCHEMA IF EXISTS bench_raw CASCADE;
        CREATE SCHEMA bench_raw;
        CREATE TABLE bench_raw.events (
            id UUID PRIMARY KEY, ts BIGINT NOT NULL, flow_run_id UUID, task_run_id UUID,
            kind TEXT NOT NULL, level TEXT, body TEXT NOT NULL
        );
        CREATE INDEX logs_by_flow_run ON bench_raw.events (flow_run_id, ts) WHERE kind = 'log';",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

/// Like [`raw_insert`], into PostgreSQL (500 rows per statement, as the store's statements).
async fn raw_pg_insert(pool: &sqlx::PgPool, rows: &[RawRow]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for rows in rows.chunks(500) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "INSERT INTO bench_raw.events (id, ts, flow_run_id, task_run_id, kind, level, body) ",
        );
        insert.push_values(rows, |mut row, r| {
            row.push_bind(r.id)
                .push_bind(r.ts)
                .push_bind(r.flow_run_id)
                .push_bind(r.task_run_id)
                .push_bind(r.kind)
                .push_bind(r.level.as_deref())
                .push_bind(r.body.as_str());
        });
        insert.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

fn p95(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 95 / 100).min(samples.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let target: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("flowkit-ingest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.db");
    let url = std::env::var("FLOWKIT_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", path.display()));
    let store = Store::open(&url).await?;
    let raw_dir = dir.join("raw");
    std::fs::create_dir_all(&raw_dir)?;
    let (raw, raw_pg) = match url.starts_with("sqlite") {
        true => (Some(raw_pool(&raw_dir.join("raw.db")).await?), None),
        false => (None, Some(raw_pg_pool(&url).await?)),
    };
    let mut raw_spent = Duration::ZERO;
    let server = match url.starts_with("sqlite") {
        true => {
            let http_dir = dir.join("http");
            std::fs::create_dir_all(&http_dir)?;
            Some(server_process(&http_dir.join("http.db")).await?)
        }
        false => None,
    };
    let client = reqwest::Client::new();
    let mut http_spent = Duration::ZERO;

    // 1,000 task runs per flow run.
    let mut flows = Vec::new();
    let mut total = 0usize;
    let mut task_runs = 0u64;
    let mut spent = Duration::ZERO;
    while total < target {
        let (flow, events) = flow_events(1_000);
        task_runs += 1_000;
        let start = Instant::now();
        for batch in events.chunks(1_000) {
            store.ingest(batch).await?;
        }
        spent += start.elapsed();
        if raw.is_some() || raw_pg.is_some() {
            let rows: Vec<RawRow> = events.iter().map(raw_row).collect();
            let start = Instant::now();
            for batch in rows.chunks(1_000) {
                match (&raw, &raw_pg) {
                    (Some(raw), _) => raw_insert(raw, batch).await?,
                    (_, Some(raw)) => raw_pg_insert(raw, batch).await?,
                    _ => {}
                }
            }
            raw_spent += start.elapsed();
        }
        if let Some((_, url)) = &server {
            let bodies = events
                .chunks(1_000)
                .map(serde_json::to_vec)
                .collect::<Result<Vec<_>, _>>()?;
            let start = Instant::now();
            for body in bodies {
                let answer = client
                    .post(format!("{url}/api/events"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = answer.status();
                let text = answer.text().await?;
                anyhow::ensure!(status.is_success(), "the server answered {status}: {text}");
            }
            http_spent += start.elapsed();
        }
        total += events.len();
        flows.push(flow);
        if flows.len() % 1000 == 0 {
            eprintln!(
                "{total} events: {:.0} events/s so far",
                total as f64 / spent.as_secs_f64()
            );
        }
    }
    let rate = total as f64 / spent.as_secs_f64();
    let raw_rate = total as f64 / raw_spent.as_secs_f64();
    let http_rate = total as f64 / http_spent.as_secs_f64();
    drop(server);

    // Queries, each 100 times.
    let mut list = Vec::new();
    let mut detail = Vec::new();
    let mut logs = Vec::new();
    let mut timeline = Vec::new();
    let mut activity = Vec::new();
    for i in 0..100 {
        let flow = flows[i % flows.len()];
        let start = Instant::now();
        store
            .flow_runs(&RunFilter {
                limit: 50,
                ..Default::default()
            })
            .await?;
        list.push(start.elapsed());
        let start = Instant::now();
        store.run(flow).await?;
        store.task_runs(flow).await?;
        store.child_flow_runs(flow).await?;
        detail.push(start.elapsed());
        let start = Instant::now();
        store
            .logs(
                flow,
                &LogFilter {
                    limit: 100,
                    ..Default::default()
                },
            )
            .await?;
        logs.push(start.elapsed());
        // The dashboard's timeline: the detail, plus the attempts of retried task runs.
        let start = Instant::now();
        let run = store.run(flow).await?.expect("the flow run");
        store.task_runs(flow).await?;
        let changes = store.state_changes(&run, true, None).await?;
        timeline.push(start.elapsed());
        assert!(changes.len() >= 20 * 4, "the retried runs' attempts");
        let start = Instant::now();
        let now = chrono::Utc::now();
        store
            .flow_activity(now - chrono::Duration::hours(24), now, 24)
            .await?;
        activity.push(start.elapsed());
    }
    // The store's file only (the raw insert's file is in a folder of its own).
    let bytes: u64 = std::fs::read_dir(&dir)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("events ingested     {total}");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average        {}",
        load.split(' ').take(3).collect::<Vec<_>>().join(" ")
    );
    println!("ingest rate         {rate:.0} events/s (guide bar: 100,000 events/s)");
    if raw.is_some() || raw_pg.is_some() {
        println!(
            "raw bulk insert     {raw_rate:.0} events/s (the same rows, same database settings); ingest is {:.2}x of it (issue 14's bar: 0.5)",
            rate / raw_rate
        );
    }
    if http_spent > Duration::ZERO {
        println!(
            "over HTTP           {http_rate:.0} events/s (batches of 1,000 posted one at a time to a server process); {:.2}x of the raw insert",
            http_rate / raw_rate
        );
    }
    println!(
        "run list p95        {:.2} ms",
        p95(list).as_secs_f64() * 1e3
    );
    println!(
        "run detail p95      {:.2} ms (1,000 task runs)",
        p95(detail).as_secs_f64() * 1e3
    );
    println!(
        "logs page p95       {:.2} ms",
        p95(logs).as_secs_f64() * 1e3
    );
    println!(
        "timeline p95        {:.2} ms (detail + attempts of retried runs)",
        p95(timeline).as_secs_f64() * 1e3
    );
    println!(
        "flow activity p95   {:.2} ms (24 buckets over 24 h)",
        p95(activity).as_secs_f64() * 1e3
    );
    if url.starts_with("sqlite") {
        println!(
            "bytes on disk       {bytes} ({:.0} per task run; guide bar: 1,024)",
            bytes as f64 / task_runs as f64
        );
    } else {
        println!("bytes on disk       (see pg_database_size) for {task_runs} task runs");
    }
    if let Some(pool) = raw_pg {
        sqlx::raw_sql("DROP SCHEMA bench_raw CASCADE")
            .execute(&pool)
            .await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
