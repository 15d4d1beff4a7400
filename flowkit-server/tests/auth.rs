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
