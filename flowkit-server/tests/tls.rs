//! HTTPS: the server on a certificate signed by a private CA (made by scripts/test-certs.sh)
//! answers over TLS, a client trusting that CA connects and one that does not is refused, the
//! HTTP sink delivers a flow's events with the CA configured, and a client that never finishes
//! its handshake is cut off like one that never sends its request.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Server, TempDir};
use flowkit::{EventBus, HttpSink, flow};

const KEY: &str = "tls-test-key";

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, made in `dir` by
/// `scripts/test-certs.sh`: (CA certificate, server certificate, server key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-certs.sh");
    let made = std::process::Command::new("bash")
        .arg(script)
        .arg(dir)
        .output();
    let made = made.expect("bash runs");
    let why = String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "{script}: {why}");
    let file = |name: &str| dir.join(name);
    (file("ca.pem"), file("server.pem"), file("server.key"))
}

/// A server on a certificate signed by a CA made in `dir`, with the API key and `extra`
/// flags: the CA's certificate (to trust) and the server.
async fn tls_server(dir: &TempDir, extra: &[&str]) -> (PathBuf, Server) {
    let (ca, cert, key) = certificates(dir.path());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut flags = vec!["--api-key", KEY, "--tls-cert", &cert, "--tls-key", &key];
    flags.extend_from_slice(extra);
    (ca, Server::start(dir.path(), 0, &flags).await)
}

fn client(ca: Option<&Path>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("the CA");
        builder =
            builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM"));
    }
    builder.build().expect("a client")
}

#[flow(name = "over-tls")]
async fn over_tls(n: u32) -> u32 {
    n * 2
}

#[tokio::test]
async fn the_server_answers_over_https_and_the_sink_connects_with_the_ca() {
    let dir = TempDir::new("tls");
    let (ca, server) = tls_server(&dir, &["--header-timeout", "1s"]).await;
    assert!(server.url.starts_with("https://"), "{}", server.url);

    // Trusting the CA: health and the API answer over HTTPS.
    let trusted = client(Some(&ca));
    let health = trusted
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("HTTPS");
    assert_eq!(health.status(), 200);
    let stats = trusted
        .get(format!("{}/api/stats", server.url))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("HTTPS");
    assert_eq!(stats.status(), 200);
    // Not trusting it: refused (an unknown issuer), never a silent plain-text answer.
    let error = client(None)
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect_err("an unknown CA is refused");
    assert!(error.is_connect() || error.is_request(), "{error:?}");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = client(None)
        .get(format!("http://127.0.0.1:{}/healthz", server.port))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));

    // The HTTP sink delivers a flow's events over HTTPS with the CA.
    let spool = TempDir::new("tls-spool");
    let bus = EventBus::builder()
        .sink(
            HttpSink::builder(&server.url)
                .api_key(KEY)
                .ca_cert(&ca)
                .spool_dir(spool.path())
                .build(),
        )
        .build();
    assert_eq!(over_tls(21).on(&bus).await.expect("the flow runs"), 42);
    bus.flush().await;
    let runs: serde_json::Value = trusted
        .get(format!("{}/api/flow_runs?flow=over-tls", server.url))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("HTTPS")
        .json()
        .await
        .expect("JSON");
    let runs = runs["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 1, "the flow run arrived over HTTPS: {runs:?}");
    assert_eq!(runs[0]["state"], "Completed");

    // A client that opens a connection and never starts its handshake is cut off after the
    // header timeout (1 s), freeing its slot.
    let started = Instant::now();
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("TCP");
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut stalled, &mut buffer),
    )
    .await
    .expect("the server closes a stalled handshake");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[flow(name = "tls-worker-flow")]
async fn tls_worker_flow() -> u32 {
    7
}

/// A worker that knows the server's CA only from `FLOWKIT_CA_CERT`: its polls (the worker's
/// client) and its events (the HTTP sink) both go over HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the test below"]
async fn tls_worker_process() {
    flowkit::init();
    let deployment =
        flowkit::serve::Deployment::new("over-tls", |_: &flowkit::serve::ScheduledRun| {
            tls_worker_flow()
        });
    flowkit::serve::Server::new([deployment])
        .worker_name("tls-worker")
        .run()
        .await
        .expect("serves");
}

#[tokio::test]
async fn a_worker_with_the_ca_in_flowkit_ca_cert_polls_and_reports_over_https() {
    let dir = TempDir::new("tls-worker");
    let (ca, server) = tls_server(&dir, &[]).await;
    let mut worker = tokio::process::Command::new(std::env::current_exe().expect("this binary"))
        .args(["tls_worker_process", "--exact", "--ignored", "--nocapture"])
        .env("FLOWKIT_API_URL", &server.url)
        .env("FLOWKIT_API_KEY", KEY)
        .env("FLOWKIT_CA_CERT", &ca)
        .env("FLOWKIT_CONSOLE", "off")
        .env("FLOWKIT_SPOOL_DIR", dir.path().join("spool"))
        .env("FLOWKIT_STATE_DIR", dir.path().join("state"))
        .kill_on_drop(true)
        .spawn()
        .expect("the worker starts");
    let trusted = client(Some(&ca));
    let get = |path: String| {
        let request = trusted
            .get(format!("{}{path}", server.url))
            .bearer_auth(KEY);
        async move {
            let response = request.send().await.expect("HTTPS");
            let status = response.status().as_u16();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let until = |what: &'static str, path: String, ready: fn(u16, &serde_json::Value) -> bool| {
        let get = &get;
        async move {
            loop {
                let (status, body) = get(path.clone()).await;
                if ready(status, &body) {
                    return body;
                }
                assert!(Instant::now() < deadline, "{what}: {status} {body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // The worker registers its deployment over HTTPS.
    until(
        "the worker never registered",
        "/api/deployments/over-tls".into(),
        |status, _| status == 200,
    )
    .await;
    let triggered: serde_json::Value = trusted
        .post(format!("{}/api/deployments/over-tls/runs", server.url))
        .bearer_auth(KEY)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("HTTPS")
        .json()
        .await
        .expect("JSON");
    let id = triggered["id"].as_str().expect("the run's id");
    // It claims the run over HTTPS and its sink reports the run's end.
    let run = until(
        "the run did not complete over HTTPS",
        format!("/api/flow_runs/{id}"),
        |_, run| run["state"] == "Completed",
    )
    .await;
    assert_eq!(run["worker"], "tls-worker", "{run}");
    worker.kill().await.ok();
}
