//! Calling a test server's API as JSON, and waiting for what it reports.

use std::time::{Duration, Instant};

use flowkit::State;
use flowkit::events::{EventKind, RunType, StateChanged};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Server, event_now, run_created};

/// A request to `path` with a JSON body (and the server's key, if it has one): the status and
/// the JSON answer (`null` if it had none).
pub async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    if let Some(key) = &server.key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    send(server, reqwest::Method::POST, path, Some(body)).await
}

pub async fn put(server: &Server, path: &str, body: Value) -> (u16, Value) {
    send(server, reqwest::Method::PUT, path, Some(body)).await
}

pub async fn patch(server: &Server, path: &str, body: Value) -> (u16, Value) {
    send(server, reqwest::Method::PATCH, path, Some(body)).await
}

/// The JSON answer to `GET path`, whatever its status.
pub async fn get(server: &Server, path: &str) -> Value {
    send(server, reqwest::Method::GET, path, None).await.1
}

/// A flow run's state as the API shows it (empty if none).
pub async fn run_state(server: &Server, run: Uuid) -> String {
    get(server, &format!("/api/flow_runs/{run}")).await["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Reports a flow run of flow `etl` (with `retries`) in `states`, as the program running it
/// would.
pub async fn report(server: &Server, run: Uuid, states: &[State], retries: u32) {
    let mut events = vec![event_now(
        run,
        None,
        run_created(RunType::Flow, "etl", retries),
    )];
    for state in states {
        events.push(event_now(
            run,
            None,
            EventKind::StateChanged(StateChanged {
                state: *state,
                attempt: 1,
                message: None,
                next_attempt_at: None,
                result: None,
            }),
        ));
    }
    let (status, body) = post(server, "/api/events", json!(events)).await;
    assert_eq!(status, 200, "{body}");
}

/// Waits until `check` holds (polling every 25 ms), or panics after `limit` naming `what`;
/// how long it took.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

/// Reads `path` until `ready` holds for the answer (30 s at most, naming `what` if not), and
/// returns it.
pub async fn until(
    server: &Server,
    what: &str,
    path: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = get(server, path).await;
        if ready(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {path} answers {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
