//! The HTTP sink against a server that hangs, fails on one event, or cannot take a batch that
//! large: every event still arrives, exactly once, and what cannot is set aside with its
//! reason, never blocking the rest. A real server process each time; where a fault cannot be
//! produced by the server itself any more (it no longer fails on any valid event), a small proxy
//! in front of it injects the fault.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use common::{Server, TempDir};
use flowkit::events::{Event, EventKind, LogLevel, LogRecord, RunType};
use flowkit::{EventBus, HttpSink, MemorySink, flow, task};
use uuid::Uuid;

#[task]
async fn square(x: u64) -> u64 {
    x * x
}

#[flow(name = "hung-server-map")]
async fn map_flow(n: u64) -> u64 {
    flowkit::map(0..n, square).await.into_iter().flatten().sum()
}

/// Events in the spool's waiting files (not those set aside).
fn spooled_events(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let events: Vec<serde_json::Value> =
                serde_json::from_slice(&std::fs::read(e.path()).expect("readable")).expect("JSON");
            events.len()
        })
        .sum()
}

fn http_bus(url: &str, spool: &Path) -> (EventBus, MemorySink) {
    let memory = MemorySink::new();
    let bus = EventBus::builder()
        .sink(memory.clone())
        .sink(HttpSink::builder(url).spool_dir(spool).build())
        .build();
    (bus, memory)
}

/// A program whose only sink delivers what the spool holds: its flush returns once delivered.
async fn deliver_spool(url: &str, spool: &Path) {
    let bus = EventBus::builder()
        .sink(HttpSink::builder(url).spool_dir(spool).build())
        .build();
    bus.flush().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_loses_no_event() {
    let dir = TempDir::new("hung");
    let server = Server::start(dir.path(), 0, &[]).await;
    let spool = TempDir::new("hung-spool");
    // Stopped: it accepts connections and never answers.
    server.signal("STOP");

    let (bus, memory) = http_bus(&server.url, spool.path());
    // An unreachable server never stalls a flow: it returns once its events are in the spool,
    // long before the sink's 10 s post timeout (a generous bound: this machine is shared).
    let started = std::time::Instant::now();
    assert_eq!(
        map_flow(500).on(&bus).await.expect("the flow succeeds"),
        41_541_750
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the flow waited {took:?} on a hung server"
    );
    let emitted = memory.len();
    assert_eq!(emitted, 3 + 3 * 500, "the flow's and its task runs' events");
    assert_eq!(
        spooled_events(spool.path()),
        emitted,
        "every event in the spool when the flow returns"
    );
    // The program's last flush gives up on the hung server; the events stay on disk.
    assert!(!bus.flush_timeout(Duration::from_millis(500)).await);
    assert_eq!(
        spooled_events(spool.path()),
        emitted,
        "every event still in the spool"
    );
    drop(bus);

    // The server comes back; the next program delivers the spool: each event once.
    server.signal("CONT");
    deliver_spool(&server.url, spool.path()).await;
    assert_eq!(server.event_count().await, emitted as i64);
    assert_eq!(spooled_events(spool.path()), 0);
}

/// A log line event of a run, carrying `message`.
fn log_line(flow_run: Uuid, message: String) -> Event {
    let log = LogRecord {
        level: LogLevel::Info,
        target: "sink_faults".into(),
        message,
        fields: Default::default(),
    };
    common::event_now(flow_run, None, EventKind::Log(Arc::new(log)))
}

fn flow_created(flow_run: Uuid) -> Event {
    common::event_now(
        flow_run,
        None,
        common::run_created(RunType::Flow, "faults", 0),
    )
}

/// A proxy to `upstream` that answers `fault(body)` instead of forwarding, when it says so.
async fn fault_proxy(
    upstream: String,
    fault: impl Fn(&[u8]) -> Option<StatusCode> + Send + Sync + 'static,
) -> String {
    let fault = Arc::new(fault);
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, body: Bytes| {
            let (fault, client, upstream) = (fault.clone(), client.clone(), upstream.clone());
            async move {
                if let Some(status) = fault(&body) {
                    return (status, Bytes::from_static(b"injected fault"));
                }
                let response = client
                    .request(method, format!("{upstream}{uri}"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("the real server answers");
                let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
                (status, response.bytes().await.expect("a body"))
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_set_aside_and_the_rest_flows() {
    let dir = TempDir::new("poison");
    let server = Server::start(dir.path(), 0, &[]).await;
    // The server fails (500) on any batch holding the poison; it is healthy otherwise.
    let proxy = fault_proxy(server.url.clone(), |body| {
        contains(body, b"POISON").then_some(StatusCode::INTERNAL_SERVER_ERROR)
    })
    .await;
    let spool = TempDir::new("poison-spool");

    let flow_run = Uuid::now_v7();
    let (bus, memory) = http_bus(&proxy, spool.path());
    bus.emit(flow_created(flow_run));
    for i in 0..600 {
        let text = if i == 417 {
            "POISON".into()
        } else {
            format!("line {i}")
        };
        bus.emit(log_line(flow_run, text));
    }
    // The first flush returns when the batch fails; the sink goes on in the background.
    bus.flush().await;
    let expected = memory.len() as i64 - 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while server.event_count().await < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poison is isolated within a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bus.flush().await;
    assert_eq!(server.event_count().await, expected);

    // The poison waits in refused/, with the reason beside it.
    let refused = spool.path().join("refused");
    let names: Vec<String> = std::fs::read_dir(&refused)
        .expect("refused/ exists")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .collect();
    let batch = names
        .iter()
        .find(|n| n.ends_with(".json"))
        .expect("the refused batch");
    let kept: Vec<Event> =
        serde_json::from_slice(&std::fs::read(refused.join(batch)).expect("readable"))
            .expect("events");
    assert_eq!(kept.len(), 1, "only the poison is set aside");
    assert!(matches!(&kept[0].kind, EventKind::Log(l) if l.message == "POISON"));
    let reason =
        std::fs::read_to_string(refused.join(format!("{batch}.reason.txt"))).expect("the reason");
    assert!(reason.contains("500"), "{reason}");

    // A later program sharing the spool delivers its own events.
    drop(bus);
    let (next, memory) = http_bus(&proxy, spool.path());
    for i in 0..50 {
        next.emit(log_line(flow_run, format!("later {i}")));
    }
    next.flush().await;
    assert_eq!(server.event_count().await, 601 - 1 + memory.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_arrive_in_batches_the_server_takes() {
    let dir = TempDir::new("large");
    let server = Server::start(dir.path(), 0, &[]).await;
    let spool = TempDir::new("large-spool");

    // 400 log lines of 100 KB: 40 MB, in batches under the server's limit.
    let flow_run = Uuid::now_v7();
    let (bus, memory) = http_bus(&server.url, spool.path());
    bus.emit(flow_created(flow_run));
    for i in 0..400 {
        bus.emit(log_line(flow_run, format!("{i:03}{}", "x".repeat(100_000))));
    }
    // One line of 20 MB: kept, truncated with a marker.
    bus.emit(log_line(flow_run, "y".repeat(20_000_000)));
    bus.flush().await;
    assert_eq!(server.event_count().await, memory.len() as i64);
    assert!(!spool.path().join("refused").exists(), "nothing refused");
    let logs = server
        .get(&format!("/api/flow_runs/{flow_run}/logs?limit=1000"))
        .await;
    let lines = logs["items"].as_array().expect("log lines");
    assert_eq!(lines.len(), 401);
    let last = lines[400]["message"].as_str().expect("a message");
    assert!(last.starts_with("yyyy"));
    assert!(
        last.ends_with("… [truncated by flowkit: 20000000 bytes]"),
        "{}",
        &last[last.len() - 80..]
    );
    assert!(last.len() < 70_000);

    // A server with a smaller limit (413 above 256 KB): the sink splits what it refuses.
    let proxy = fault_proxy(server.url.clone(), |body| {
        (body.len() > 256 * 1024).then_some(StatusCode::PAYLOAD_TOO_LARGE)
    })
    .await;
    let flow_run = Uuid::now_v7();
    let (bus, memory) = http_bus(&proxy, spool.path());
    bus.emit(flow_created(flow_run));
    for i in 0..100 {
        bus.emit(log_line(flow_run, format!("{i:03}{}", "z".repeat(20_000))));
    }
    bus.flush().await;
    assert!(!spool.path().join("refused").exists(), "nothing refused");
    let logs = server
        .get(&format!("/api/flow_runs/{flow_run}/logs?limit=1000"))
        .await;
    assert_eq!(
        logs["items"].as_array().expect("log lines").len() + 1,
        memory.len()
    );
}
