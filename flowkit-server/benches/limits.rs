//! Slot handoff latency between programs through the server: program A holds the one slot of
//! a tag, program B waits for it (a long poll); A gives it back; the time from A sending its
//! release to B holding the slot, p50/p95 over many handoffs. Prefect hands a freed slot to a
//! waiting task at its next poll, 30 s by default.
//!
//! ```text
//! cargo bench -p flowkit-server --bench limits                                   # SQLite
//! FLOWKIT_BENCH_DATABASE_URL=postgres://… cargo bench -p flowkit-server --bench limits
//! ```
//!
//! The servers run in this process on real ports, over HTTP like programs on other machines.
//! On PostgreSQL the handoff is also measured across two servers sharing the database (B waits
//! on one, A releases on the other: `NOTIFY` carries the wake-up). The baseline, measured in the
//! same run: one release and one uncontended acquire, back to back, from one program (the
//! requests a handoff needs, with no waiting).

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

const HANDOFFS: usize = 300;

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> Value {
    let response = client
        .request(method, &url)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

async fn acquire(client: &reqwest::Client, url: &str, tag: &str, ticket: Uuid) {
    loop {
        let answer = call(
            client,
            reqwest::Method::POST,
            format!("{url}/api/limits/{tag}/acquire"),
            json!({"ticket": ticket, "task_run_id": ticket, "flow_run_id": null}),
        )
        .await;
        if answer["granted"] == json!(true) {
            return;
        }
    }
}

async fn release(client: &reqwest::Client, url: &str, tag: &str, ticket: Uuid) {
    call(
        client,
        reqwest::Method::POST,
        format!("{url}/api/limits/{tag}/release"),
        json!({"ticket": ticket}),
    )
    .await;
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms (n = {})",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        ms.last().copied().unwrap_or(0.0),
        ms.len()
    )
}

/// Handoffs from a holder releasing on `release_url` to a waiter waiting on `wait_url`.
async fn handoffs(release_url: &str, wait_url: &str, tag: &str) -> Vec<f64> {
    let (a, b) = (reqwest::Client::new(), reqwest::Client::new());
    call(
        &a,
        reqwest::Method::PUT,
        format!("{release_url}/api/limits/{tag}"),
        json!({"concurrency": 1}),
    )
    .await;
    let mut held = Uuid::now_v7();
    acquire(&a, release_url, tag, held).await;
    let mut out = Vec::with_capacity(HANDOFFS);
    for _ in 0..HANDOFFS {
        let next = Uuid::now_v7();
        let waiter = {
            let (b, url, tag) = (b.clone(), wait_url.to_string(), tag.to_string());
            tokio::spawn(async move {
                acquire(&b, &url, &tag, next).await;
                Instant::now()
            })
        };
        // B is in line (its first request reached the server and waits).
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sent = Instant::now();
        release(&a, release_url, tag, held).await;
        let got = waiter.await.expect("the waiter");
        out.push(got.duration_since(sent).as_secs_f64() * 1000.0);
        held = next;
    }
    release(&a, release_url, tag, held).await;
    out
}

/// One release and one uncontended acquire, back to back.
async fn baseline(url: &str, tag: &str) -> Vec<f64> {
    let a = reqwest::Client::new();
    call(
        &a,
        reqwest::Method::PUT,
        format!("{url}/api/limits/{tag}"),
        json!({"concurrency": 1}),
    )
    .await;
    let mut held = Uuid::now_v7();
    acquire(&a, url, tag, held).await;
    let mut out = Vec::with_capacity(HANDOFFS);
    for _ in 0..HANDOFFS {
        let next = Uuid::now_v7();
        let sent = Instant::now();
        release(&a, url, tag, held).await;
        acquire(&a, url, tag, next).await;
        out.push(sent.elapsed().as_secs_f64() * 1000.0);
        held = next;
    }
    out
}

async fn run(database: &str, label: &str) {
    println!("\n== {label} ==");
    let url = common::start_server(database).await.0;
    println!(
        "slot handoff between two programs, one server: {}",
        summary(handoffs(&url, &url, "handoff").await)
    );
    println!(
        "  baseline, a release then an uncontended acquire from one program: {}",
        summary(baseline(&url, "baseline").await)
    );
    if database.starts_with("postgres") {
        let other = common::start_server(database).await.0;
        println!(
            "slot handoff across two servers sharing the database (LISTEN/NOTIFY): {}",
            summary(handoffs(&url, &other, "across").await)
        );
    }
    println!("  Prefect: a freed slot is taken at the waiter's next poll, every 30 s by default");
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("flowkit-bench-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let sqlite = format!("sqlite://{}", dir.join("bench.db").display());
    run(&sqlite, "SQLite (one server)").await;
    if let Ok(url) = std::env::var("FLOWKIT_BENCH_DATABASE_URL") {
        run(&url, "PostgreSQL").await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
