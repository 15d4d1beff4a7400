//! With an API key, every route but `/healthz` and the dashboard's static files needs it.

mod common;

use common::{Server, TempDir};

const ROUTES: [(&str, &str); 11] = [
    ("GET", "/api/openapi.json"),
    ("GET", "/api/flows"),
    ("GET", "/api/events/stream"),
    ("GET", "/metrics"),
    ("GET", "/api/flow_runs"),
    ("GET", "/api/flow_runs/01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01"),
    (
        "GET",
        "/api/flow_runs/01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01/logs",
    ),
    (
        "GET",
        "/api/flow_runs/01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01/states",
    ),
    ("GET", "/api/flow_activity"),
    ("GET", "/api/stats"),
    ("POST", "/api/events"),
];

#[tokio::test]
async fn every_route_but_health_needs_the_key() {
    let dir = TempDir::new("auth");
    let server = Server::start(dir.path(), 0, &["--api-key", "s3cret-key"]).await;
    let client = reqwest::Client::new();
    let send = |method: &str, path: &str, key: Option<&str>| {
        let url = format!("{}{path}", server.url);
        let mut request = match method {
            "POST" => client
                .post(url)
                .header("content-type", "application/json")
                .body("[]"),
            _ => client.get(url),
        };
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    for (method, path) in ROUTES {
        let none = send(method, path, None).await.unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a key");
        let body: serde_json::Value = none.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("API key"));
        let wrong = send(method, path, Some("s3cret-kez")).await.unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong key");
        let right = send(method, path, Some("s3cret-key")).await.unwrap();
        assert_ne!(right.status(), 401, "{method} {path} with the key");
        assert!(right.status().as_u16() < 500);
    }
    let health = send("GET", "/healthz", None).await.unwrap();
    assert_eq!(health.status(), 200);
    // The dashboard's page and scripts hold no data: they load without the key, then ask for it.
    for path in ["/", "/assets/js/api.js"] {
        let page = send("GET", path, None).await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
    }
}

/// Listening beyond this machine without a key is refused at start, naming the flag that
/// fixes it; `--allow-public-without-key` says it is meant.
#[tokio::test]
async fn a_public_bind_without_a_key_is_refused() {
    let dir = TempDir::new("auth-public");
    let database = format!("sqlite://{}", dir.path().join("flowkit.db").display());
    let binary = env!("CARGO_BIN_EXE_flowkit-server");
    let refused = tokio::process::Command::new(binary)
        .args(["--bind", "0.0.0.0:0", "--database-url", &database])
        .env_remove("FLOWKIT_API_KEY")
        .output()
        .await
        .expect("the server runs");
    assert!(!refused.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without an API key")
            && stderr.contains("--api-key"),
        "{stderr}"
    );

    let mut allowed = tokio::process::Command::new(binary)
        .args(["--bind", "0.0.0.0:0", "--database-url", &database])
        .arg("--allow-public-without-key")
        .env_remove("FLOWKIT_API_KEY")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server runs");
    let stdout = allowed.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("it says where it listens")
        .expect("reading its output")
        .expect("a line");
    assert!(line.contains("0.0.0.0:"), "{line}");
    let port = line.rsplit(':').next().expect("a port");
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("it answers");
    assert_eq!(health.status(), 200);
}
