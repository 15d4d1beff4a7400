//! Result stores through the `object_store` crate (features `object-store`, `s3`), for real:
//! `file://` (object_store's local file system) and S3 (a moto server this test starts on a
//! free loopback port, as the server's tests start PostgreSQL). In each: a put and a get, a
//! 17 MiB result uploaded in parts, a flow whose persisted results land there with their
//! location on the end events, and a resume that reuses them from the store.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flowkit::events::EventKind;
use flowkit::object_store::{self, ObjectStore, ObjectStoreExt, aws::AmazonS3Builder};
use flowkit::testing::capture;
use flowkit::{MemorySink, ObjectStoreResults, ResultStore, RunError, State, flow, task};
use uuid::Uuid;

static CALLS: AtomicUsize = AtomicUsize::new(0);
static BROKEN: AtomicBool = AtomicBool::new(true);

#[task]
async fn rows(day: u32) -> Result<u32, String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(day * 10)
}

/// A 17 MiB result: over the multipart threshold (16 MiB).
#[task]
async fn blob(n: usize) -> Result<String, String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok("b".repeat(n))
}

#[task]
async fn publish(total: u32) -> Result<u32, String> {
    if BROKEN.load(Ordering::SeqCst) {
        return Err("the target is down".into());
    }
    Ok(total + 1)
}

const BLOB: usize = 17 << 20;

#[flow(persist_result = true)]
async fn daily(day: u32) -> Result<u32, RunError<String>> {
    let rows = rows(day).await?;
    let blob = blob(BLOB).await?;
    publish(rows + blob.len() as u32).await
}

/// Where each task run's end event says its result is.
fn location_of(events: &MemorySink, name: &str) -> flowkit::events::ResultLocation {
    let run = events.runs_named(name)[0];
    events
        .events()
        .into_iter()
        .filter(|e| e.run_id() == Some(run))
        .find_map(|e| match e.kind {
            EventKind::StateChanged(change) => change.result.map(|r| *r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name}'s end carries no result location"))
}

fn end_of(events: &MemorySink, name: &str) -> State {
    let run = events.runs_named(name)[0];
    *events.states(run).last().expect("a state")
}

/// The whole scenario against `store`; `exists(key)` says whether the store holds an object
/// at `key`, asked of the backend directly (the file system, the S3 server).
async fn scenario(store: Arc<dyn ResultStore>, exists: impl Fn(&str) -> Option<u64>) {
    // The tests share the counters above: one scenario at a time.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = SERIAL.lock().await;
    // Put and get, and a missing key.
    store
        .put("probe/a.json", b"{\"a\":1}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.get("probe/a.json").await.unwrap().as_deref(),
        Some(&b"{\"a\":1}"[..])
    );
    assert_eq!(store.get("probe/missing.json").await.unwrap(), None);
    assert_eq!(exists("probe/a.json"), Some(7));

    // A flow that persists its tasks' results, failing at its last task.
    BROKEN.store(true, Ordering::SeqCst);
    CALLS.store(0, Ordering::SeqCst);
    let (failed, events) = capture(|| daily(3).result_store(store.clone())).await;
    let run_id = failed.expect_err("publish fails").run_id();
    assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    let small = location_of(&events, "rows");
    assert_eq!(small.store, store.location());
    assert_eq!(small.packed_in, None, "one object per result");
    assert!(small.key.starts_with(&format!("runs/{run_id}/tasks/")));
    assert!(exists(&small.key).is_some(), "{} exists", small.key);
    let large = location_of(&events, "blob");
    let size = exists(&large.key).expect("the large result exists");
    assert!(size > BLOB as u64, "all of it: {size} bytes");

    // Resumed: the completed tasks are read back from the store, only `publish` runs.
    BROKEN.store(false, Ordering::SeqCst);
    let (resumed, events) = capture(|| daily(3).result_store(store.clone()).resume(run_id)).await;
    assert_eq!(resumed.expect("completes"), 30 + BLOB as u32 + 1);
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "nothing completed ran again"
    );
    assert_eq!(end_of(&events, "rows"), State::Cached);
    assert_eq!(end_of(&events, "blob"), State::Cached);
    assert_eq!(end_of(&events, "publish"), State::Completed);
    assert_eq!(location_of(&events, "rows").key, small.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_urls_go_through_object_stores_local_file_system() {
    let dir = temp_dir("file");
    let url = format!("file://{}", dir.display());
    let store: Arc<dyn ResultStore> = Arc::new(ObjectStoreResults::from_url(&url).unwrap());
    assert_eq!(store.location(), url);
    let root = dir.clone();
    scenario(store, move |key| {
        std::fs::metadata(root.join(key)).ok().map(|m| m.len())
    })
    .await;
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn urls_without_their_feature_or_with_a_bad_scheme_are_clear_errors() {
    let error = ObjectStoreResults::from_url("nope://bucket/x").unwrap_err();
    assert!(error.to_string().contains("nope://bucket/x"), "{error}");
    let local = flowkit::result_store_from_url("/var/lib/etl/results").unwrap();
    assert_eq!(local.location(), "/var/lib/etl/results");
    let s3 = flowkit::result_store_from_url("s3://bucket/results").unwrap();
    assert_eq!(s3.location(), "s3://bucket/results");
}

// ---------------------------------------------------------------------------------------------
// S3, through a moto server on a free loopback port.

const MOTO: &str = "/opt/flowkit-s3/bin/moto_server";

/// A moto S3 server, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Moto {
    fn start() -> Moto {
        if !Path::new(MOTO).exists() {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-test-deps.sh");
            let status = Command::new("bash").arg(script).status().expect("bash");
            assert!(status.success(), "{script} failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log =
            std::env::temp_dir().join(format!("flowkit-moto-{}-{port}.log", std::process::id()));
        let child = Command::new(MOTO)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("the log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Moto { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// Sends a bare HTTP request (moto takes unsigned ones); the status code.
    fn request(&self, method: &str, path: &str) -> u16 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("moto");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("the request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("the response");
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_urls_store_and_resume_through_a_real_s3_server() {
    let moto = Moto::start();
    assert_eq!(moto.request("PUT", "/results"), 200, "the bucket is made");
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let store = ObjectStoreResults::from_url_with(
        "s3://results/flowkit",
        [
            ("aws_endpoint", endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ],
    )
    .unwrap();
    assert_eq!(store.location(), "s3://results/flowkit");
    // Asked of the server by a client of its own (moto refuses unsigned HEADs).
    let client: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name("results")
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap(),
    );
    scenario(Arc::new(store), move |key| {
        let path = object_store::path::Path::from(format!("flowkit/{key}"));
        let client = client.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move { client.head(&path).await })
        })
        .ok()
        .map(|meta| meta.size)
    })
    .await;
    drop(moto);
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "flowkit-objects-{name}-{}-{}",
        std::process::id(),
        Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}
