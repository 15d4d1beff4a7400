//! A flow streams its events to a real server process; its runs are read back through the API.

mod common;

use std::time::Duration;

use common::{BACKENDS, Server, TempDir, free_port};
use flowkit::{EventBus, HttpSink, MemorySink, RunLogLayer, flow, task};
use tracing_subscriber::prelude::*;

#[task(retries = 2, retry_delay = 0)]
async fn extract(day: String) -> Result<Vec<u32>, String> {
    let attempt = flowkit::context().map_or(1, |c| c.attempt());
    tracing::info!(attempt, "fetching {day}");
    if attempt == 1 {
        return Err("source answered 503".into());
    }
    Ok(vec![1, 2, 3])
}

#[task]
async fn double(x: u32) -> u32 {
    x * 2
}

#[flow(name = "e2e-etl", tags = ["e2e"])]
async fn etl(day: String) -> anyhow::Result<u32> {
    let rows = extract(day).await?;
    let doubled = flowkit::map(rows, double).await;
    Ok(doubled
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .sum())
}

fn http_bus(url: &str, spool: &TempDir) -> (EventBus, MemorySink) {
    let memory = MemorySink::new();
    let bus = EventBus::builder()
        .sink(memory.clone())
        .sink(HttpSink::builder(url).spool_dir(spool.path()).build())
        .build();
    (bus, memory)
}

#[tokio::test]
async fn a_flow_run_is_read_back_through_the_api() {
    // Global, not per thread: tests run in parallel, and `tracing` caches per call site
    // whether anyone listens.
    static LOGS: std::sync::Once = std::sync::Once::new();
    LOGS.call_once(|| {
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(RunLogLayer),
        );
    });
    for backend in BACKENDS {
        read_back(backend).await;
    }
}

async fn read_back(backend: common::Backend) {
    let dir = TempDir::new("e2e");
    let database = backend.database_url(dir.path()).await;
    let server = Server::start_with(&database, 0, &[]).await;
    let spool = TempDir::new("e2e-spool");
    let (bus, memory) = http_bus(&server.url, &spool);

    assert_eq!(etl("2026-11-26".into()).on(&bus).await.unwrap(), 12);
    bus.flush().await;
    let sent = memory.len() as i64;
    assert_eq!(
        server.event_count().await,
        sent,
        "{backend:?}: every event arrived once"
    );

    let runs = server.get("/api/flow_runs?flow=e2e-etl").await;
    let run = &runs["items"][0];
    assert_eq!(run["state"], "Completed");
    assert_eq!(run["parameters"]["day"], "2026-11-26");
    assert_eq!(run["tags"][0], "e2e");
    assert!(run["duration_ms"].as_f64().unwrap() >= 0.0);

    let id = run["id"].as_str().unwrap();
    let detail = server.get(&format!("/api/flow_runs/{id}")).await;
    let tasks = detail["task_runs"].as_array().unwrap();
    assert_eq!(tasks.len(), 4, "extract and three doubles");
    let extract = tasks.iter().find(|t| t["name"] == "extract").unwrap();
    assert_eq!(extract["state"], "Completed");
    assert_eq!(extract["attempts"], 2);
    assert!(extract["start"].is_string() && extract["end"].is_string());
    let indexes: Vec<i64> = tasks
        .iter()
        .filter(|t| t["name"] == "double")
        .map(|t| t["map_index"].as_i64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2]);

    let logs = server.get(&format!("/api/flow_runs/{id}/logs")).await;
    let lines = logs["items"].as_array().unwrap();
    assert_eq!(
        lines.len(),
        3,
        "one log line per extract attempt, and flowkit's for the retry"
    );
    assert_eq!(lines[0]["message"], "fetching 2026-11-26");
    assert_eq!(lines[0]["task_run_id"], extract["id"]);
    assert_eq!(lines[1]["level"], "WARN");
    assert_eq!(lines[1]["target"], flowkit::RUNTIME_TARGET);
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("Attempt 1 of "),
        "{}",
        lines[1]
    );
    let info_only = server
        .get(&format!("/api/flow_runs/{id}/logs?level=error"))
        .await;
    assert_eq!(info_only["items"].as_array().unwrap().len(), 0);
    for (min, expected) in [("debug", 3), ("INFO", 3), ("warn", 1)] {
        let lines = server
            .get(&format!("/api/flow_runs/{id}/logs?min_level={min}"))
            .await;
        assert_eq!(
            lines["items"].as_array().unwrap().len(),
            expected,
            "{backend:?}: min_level={min}"
        );
    }

    // Compressed for clients that accept it.
    let gzipped = reqwest::Client::new()
        .get(format!("{}/api/flow_runs/{id}", server.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");

    // State history: every attempt of a task that ran more than once, and the flow run's own.
    let extract_id = extract["id"].as_str().unwrap();
    let history = server
        .get(&format!("/api/flow_runs/{id}/states?retried_only=true"))
        .await;
    let history = history.as_array().unwrap();
    let attempts: Vec<(&str, i64)> = history
        .iter()
        .filter(|c| c["run_id"] == extract_id && c["state"] != "Pending")
        .map(|c| (c["state"].as_str().unwrap(), c["attempt"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        attempts,
        [
            ("Running", 1),
            ("Retrying", 1),
            ("Running", 2),
            ("Completed", 2)
        ],
        "{backend:?}"
    );
    assert!(
        history
            .iter()
            .any(|c| c["run_id"] == id && c["state"] == "Completed"),
        "the flow run's own changes"
    );
    let doubles: Vec<&serde_json::Value> = tasks.iter().filter(|t| t["name"] == "double").collect();
    assert!(
        !history
            .iter()
            .any(|c| doubles.iter().any(|t| t["id"] == c["run_id"])),
        "single-attempt task runs are left out"
    );
    let everything = server.get(&format!("/api/flow_runs/{id}/states")).await;
    let everything = everything.as_array().unwrap();
    assert!(
        doubles
            .iter()
            .all(|t| everything.iter().any(|c| c["run_id"] == t["id"])),
        "without the filter, every task run's changes"
    );

    // Search: case-insensitive text in the name or tags, wildcards taken literally, or an id.
    let short = &id[id.len() - 8..];
    for (q, expected) in [
        ("E2E-e", 1),
        ("e2e", 1),
        ("100%", 0),
        ("e_e", 0),
        (id, 1),
        (short, 1),
        ("ffffff0", 0),
    ] {
        let found = server
            .get(&format!("/api/flow_runs?q={}", q.replace('%', "%25")))
            .await;
        assert_eq!(
            found["items"].as_array().unwrap().len(),
            expected,
            "{backend:?}: search {q:?}"
        );
    }

    // Runs by state over time: the run is in the last of four buckets of the last 24 hours.
    let activity = server.get("/api/flow_activity?buckets=4").await;
    let flow = &activity["flows"][0];
    assert_eq!(flow["name"], "e2e-etl");
    let buckets = flow["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 4);
    assert_eq!(buckets[3]["Completed"], 1, "{activity}");
    assert_eq!(activity["bucket_seconds"], 6.0 * 3600.0);
}

#[tokio::test]
async fn a_server_down_for_the_whole_flow_gets_every_event_exactly_once() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let spool = TempDir::new("down-spool");
    let (bus, memory) = http_bus(&url, &spool);

    // No server: the flow still succeeds, and its events wait in the spool.
    assert_eq!(etl("2026-11-27".into()).on(&bus).await.unwrap(), 12);
    bus.flush().await;
    let sent = memory.len() as i64;
    assert!(sent > 10);
    drop(bus);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let spooled = std::fs::read_dir(spool.path()).unwrap().count();
    assert!(spooled > 0, "events were spooled");

    // The server comes back; the next program using the spool delivers it.
    let dir = TempDir::new("down-db");
    let server = Server::start(dir.path(), port, &[]).await;
    let (next_bus, _) = http_bus(&url, &spool);
    let mut waited = 0;
    while server.event_count().await < sent && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    next_bus.flush().await;
    assert_eq!(server.event_count().await, sent, "every event, none twice");
    let runs = server.get("/api/flow_runs?flow=e2e-etl").await;
    assert_eq!(runs["items"][0]["state"], "Completed");
    let left: Vec<_> = std::fs::read_dir(spool.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(left.is_empty(), "the spool is empty once delivered");
}

#[tokio::test]
async fn live_events_flow_summaries_and_metrics() {
    let dir = TempDir::new("live");
    let server = Server::start(dir.path(), 0, &[]).await;
    let mut stream = reqwest::Client::new()
        .get(format!("{}/api/events/stream", server.url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers().get("content-encoding").is_none(),
        "the live stream is never compressed (it would wait for a full buffer)"
    );
    let watcher = tokio::spawn(async move {
        let mut seen = String::new();
        while let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await
        {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("\"state\":\"Completed\"") && seen.contains("e2e-etl") {
                break;
            }
        }
        seen
    });

    let spool = TempDir::new("live-spool");
    let (bus, _memory) = http_bus(&server.url, &spool);
    etl("2026-11-28".into()).on(&bus).await.unwrap();
    bus.flush().await;

    let seen = watcher.await.unwrap();
    assert!(seen.contains("event: event"), "SSE frames: {seen}");
    assert!(seen.contains("e2e-etl"), "the run arrived live");

    let flows = server.get("/api/flows").await;
    let etl = flows
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "e2e-etl")
        .expect("a summary of the flow");
    assert_eq!(etl["by_state"]["Completed"], 1);
    assert_eq!(etl["success_rate"], 1.0);
    assert!(etl["p95_ms"].as_f64().is_some());

    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("flowkit_events_ingested_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flowkit_runs{run_type=\"flow\",state=\"Completed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flowkit_task_run_duration_seconds"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_api_route() {
    let dir = TempDir::new("openapi");
    let server = Server::start(dir.path(), 0, &[]).await;
    let document = server.get("/api/openapi.json").await;
    let paths = document["paths"].as_object().expect("paths");
    for route in [
        "/api/events",
        "/api/events/stream",
        "/api/flow_runs",
        "/api/flow_runs/{id}",
        "/api/flow_runs/{id}/logs",
        "/api/flows",
        "/api/flow_runs/{id}/states",
        "/api/flow_activity",
        "/api/stats",
    ] {
        assert!(paths.contains_key(route), "{route} is missing");
    }
    let run = &document["components"]["schemas"]["Run"]["properties"];
    assert!(run["state"].is_object() && run["attempts"].is_object());
    assert_eq!(document["info"]["title"], "flowkit-server");
}

#[flow(name = "scheduled-etl")]
async fn scheduled_etl() -> u32 {
    let run = flowkit::context()
        .and_then(|c| c.scheduled().cloned())
        .expect("a scheduled run");
    run.logical_date().to_string().len() as u32
}

#[tokio::test]
async fn a_deployment_run_is_recorded_with_its_schedule_and_interval() {
    for backend in BACKENDS {
        let dir = TempDir::new("scheduled");
        let database = backend.database_url(dir.path()).await;
        let server = Server::start_with(&database, 0, &[]).await;
        let spool = TempDir::new("scheduled-spool");
        let (bus, _) = http_bus(&server.url, &spool);
        let at = |text: &str| text.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let run = flowkit::serve::ScheduledRun::new("nightly", at("2026-11-27T02:00:00Z"))
            .with_interval(at("2026-11-26T02:00:00Z"), at("2026-11-27T02:00:00Z"));
        assert_eq!(scheduled_etl().scheduled(run).on(&bus).await.unwrap(), 10);
        bus.flush().await;

        let runs = server.get("/api/flow_runs?deployment=nightly").await;
        let items = runs["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{backend:?}: {runs}");
        let run = &items[0];
        assert_eq!(run["deployment"], "nightly");
        assert_eq!(run["scheduled"], "2026-11-27T02:00:00Z");
        assert_eq!(run["interval_start"], "2026-11-26T02:00:00Z");
        assert_eq!(run["interval_end"], "2026-11-27T02:00:00Z");
        let found = server.get("/api/flow_runs?q=NIGHT").await;
        assert_eq!(
            found["items"].as_array().unwrap().len(),
            1,
            "{backend:?}: searched by deployment"
        );
        let none = server.get("/api/flow_runs?deployment=weekly").await;
        assert_eq!(none["items"].as_array().unwrap().len(), 0);
    }
}
