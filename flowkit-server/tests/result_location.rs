//! The location of a persisted task result is part of the run's record: a flow with persisted
//! tasks streams its events to a real server process (SQLite, then a throwaway PostgreSQL), the
//! API returns where each persisted result is, the file is there and holds it, and a task that
//! persists nothing has no location. The dashboard's task page shows it (Chromium, SQLite run).

mod common;

use std::sync::Arc;

use common::browser::Browser;
use common::{BACKENDS, Backend, Server, TempDir};
use flowkit::{EventBus, HttpSink, LocalStore, ResultStore, RunError, flow, task};
use serde_json::Value;

/// A small result: packed into the flow run's `tasks.pack`.
#[task(persist_result = true)]
async fn small(x: u32) -> u32 {
    x * 7
}

/// A large result (over the 4 KiB packing limit): a file of its own.
#[task(persist_result = true)]
async fn large(n: usize) -> String {
    "r".repeat(n)
}

/// Persists nothing.
#[task]
async fn plain(x: u32) -> u32 {
    x + 1
}

/// Cached by its inputs: a second run is `Cached`, its result read from the cache entry.
#[task(cache_key = inputs)]
async fn cached(x: u32) -> u32 {
    x * 100
}

#[flow(name = "located")]
async fn located() -> Result<usize, RunError<std::convert::Infallible>> {
    let a = small(6).await?;
    let b = large(10_000).await?;
    let c = plain(1).await?;
    let d = cached(3).await?;
    Ok(a as usize + b.len() + c as usize + d as usize)
}

fn bus(url: &str, spool: &TempDir) -> EventBus {
    EventBus::builder()
        .sink(HttpSink::builder(url).spool_dir(spool.path()).build())
        .build()
}

/// The task run named `name` of a flow run's detail.
fn task_run<'a>(detail: &'a Value, name: &str) -> &'a Value {
    detail["task_runs"]
        .as_array()
        .expect("task runs")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task run {name}"))
}

async fn run_once(server: &Server, store: &Arc<dyn ResultStore>, spool: &TempDir) -> Value {
    let bus = bus(&server.url, spool);
    let total = located().on(&bus).result_store(store.clone()).await;
    assert_eq!(total.expect("the flow completes"), 42 + 10_000 + 2 + 300);
    bus.flush().await;
    let runs = server.get("/api/flow_runs?flow=located").await;
    let id = runs["items"][0]["id"].as_str().expect("a run").to_string();
    server.get(&format!("/api/flow_runs/{id}")).await
}

async fn locations(backend: Backend, browse: bool) {
    let dir = TempDir::new("located");
    let database = backend.database_url(dir.path()).await;
    let server = Server::start_with(&database, 0, &[]).await;
    let spool = TempDir::new("located-spool");
    let root = dir.path().join("results");
    let store: Arc<dyn ResultStore> = Arc::new(LocalStore::new(&root));

    let detail = run_once(&server, &store, &spool).await;
    let flow_run = detail["id"].as_str().expect("the flow run's id");

    // The small result: a record in the flow run's pack.
    let small = task_run(&detail, "small");
    assert_eq!(small["state"], "Completed", "{backend:?}");
    let location = &small["result"];
    assert_eq!(location["store"], root.display().to_string(), "{backend:?}");
    let key = location["key"].as_str().expect("a key");
    assert!(
        key.starts_with(&format!("runs/{flow_run}/tasks/")),
        "{backend:?}: {key}"
    );
    let pack = location["packed_in"].as_str().expect("packed");
    assert_eq!(pack, format!("runs/{flow_run}/tasks.pack"));
    let packed = std::fs::read(root.join(pack)).expect("the pack is where the record says");
    let record = key.rsplit('/').next().expect("the record's name");
    assert!(
        contains(&packed, record.as_bytes()),
        "{backend:?}: the pack holds record {record}"
    );
    assert_eq!(
        stored_value(&store, key).await,
        Value::from(42),
        "{backend:?}: the result is under its key"
    );

    // The large result: a file of its own, at the key.
    let large = task_run(&detail, "large");
    let key = large["result"]["key"].as_str().expect("a key");
    assert!(large["result"].get("packed_in").is_none(), "{backend:?}");
    let file = root.join(key);
    assert!(file.is_file(), "{backend:?}: {} exists", file.display());
    assert!(std::fs::metadata(&file).expect("its size").len() > 10_000);

    // Nothing persisted, nothing located.
    let plain = task_run(&detail, "plain");
    assert_eq!(plain["state"], "Completed");
    assert!(plain.get("result").is_none(), "{backend:?}: {plain}");

    // A cached call outside a resumable run: its result is the cache entry.
    let cached = task_run(&detail, "cached");
    let key = cached["result"]["key"].as_str().expect("a key");
    assert!(key.starts_with("cache/"), "{backend:?}: {key}");
    assert!(
        root.join(key).is_file(),
        "{backend:?}: the cache entry exists"
    );

    // Run again: the cached call is `Cached`, located at the same entry.
    let again = run_once(&server, &store, &spool).await;
    assert_ne!(again["id"], detail["id"]);
    let hit = task_run(&again, "cached");
    assert_eq!(hit["state"], "Cached", "{backend:?}");
    assert_eq!(hit["result"]["key"], key, "{backend:?}");

    if browse {
        let task = small["id"].as_str().expect("an id");
        let browser = Browser::start().await;
        browser
            .goto(&format!("{}/#/runs/{flow_run}/tasks/{task}", server.url))
            .await;
        browser
            .wait_until(
                "the task page shows where the result is",
                "document.querySelector('[data-testid=task-result]')?.textContent",
            )
            .await;
        let shown = browser.text("[data-testid=task-result]").await;
        assert!(
            shown.contains(&format!("{}/{pack}", root.display())) && shown.contains(record),
            "{shown}"
        );
        browser.screenshot("task-result-location").await;
        let plain = plain["id"].as_str().expect("an id");
        browser
            .goto(&format!("{}/#/runs/{flow_run}/tasks/{plain}", server.url))
            .await;
        browser
            .wait_until(
                "the plain task's page",
                "document.querySelector('[data-testid=task-attempts]')?.textContent",
            )
            .await;
        let none = browser
            .eval(
                "return document.querySelector('[data-testid=task-result]') === null",
                vec![],
            )
            .await;
        assert_eq!(none, Value::Bool(true), "no location for a plain task");
        browser.close().await;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The value stored under `key` (the envelope's `value`).
async fn stored_value(store: &Arc<dyn ResultStore>, key: &str) -> Value {
    let bytes = store.get(key).await.expect("readable").expect("stored");
    let envelope: Value = serde_json::from_slice(&bytes).expect("JSON");
    envelope["value"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_returns_where_each_persisted_result_is() {
    for backend in BACKENDS {
        locations(backend, backend == Backend::Sqlite).await;
    }
}
