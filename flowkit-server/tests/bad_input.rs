//! Malformed, oversized, truncated and hostile requests get a 4xx with a message, never a 5xx,
//! and the server stays up. Inputs are generated from a fixed seed, so a failure reproduces.

mod common;

use common::{Server, TempDir};

const VALID: &str = r#"[{"id":"01a21abb-1d00-7d2a-9c1e-3f2b6a1d9e00","timestamp":"2026-11-27T02:00:00Z","flow_run_id":"01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01","task_run_id":null,"kind":{"type":"run_created","run_type":"flow","name":"etl","parameters":{"day":"x"}}}]"#;

fn mutate(rng: &mut fastrand::Rng, base: &str) -> Vec<u8> {
    let mut bytes = base.as_bytes().to_vec();
    match rng.u8(0..8) {
        0 => bytes.truncate(rng.usize(0..bytes.len())),
        1 => {
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(0..bytes.len());
                bytes[i] = rng.u8(..);
            }
        }
        2 => {
            let i = rng.usize(0..bytes.len());
            bytes.insert(i, b"{}[]\",:0-e\\"[rng.usize(0..11)]);
        }
        3 => bytes = "[".repeat(rng.usize(1..5000)).into_bytes(),
        4 => {
            let hostile = [
                r#"[{"id":"not-a-uuid"}]"#,
                r#"{"not":"an array"}"#,
                r#"[1, "two", null, true]"#,
                r#"[{"id":"01a21abb-1d00-7d2a-9c1e-3f2b6a1d9e00","timestamp":"99999-01-01T00:00:00Z","flow_run_id":null,"task_run_id":null,"kind":{"type":"log"}}]"#,
                r#"[{"id":"01a21abb-1d00-7d2a-9c1e-3f2b6a1d9e00","timestamp":"2300-01-01T00:00:00Z","flow_run_id":"01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01","task_run_id":null,"kind":{"type":"state_changed","state":"Running","attempt":1}}]"#,
                r#"[{"id":"01a21abb-1d00-7d2a-9c1e-3f2b6a1d9e00","timestamp":"2026-11-27T02:00:00Z","flow_run_id":"01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01","task_run_id":null,"kind":{"type":"exploded"}}]"#,
                r#"[{"id":"01a21abb-1d00-7d2a-9c1e-3f2b6a1d9e00","timestamp":"2026-11-27T02:00:00Z","flow_run_id":"01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01","task_run_id":null,"kind":{"type":"state_changed","state":"Running","attempt":-1}}]"#,
                "\u{0}\u{1}\u{2}",
            ];
            bytes = hostile[rng.usize(0..hostile.len())].as_bytes().to_vec();
        }
        5 => bytes = format!("[{}]", VALID.repeat(rng.usize(2..4))).into_bytes(),
        6 => bytes = format!(r#"[{{"id":"{}"}}]"#, "a".repeat(rng.usize(0..100_000))).into_bytes(),
        _ => bytes = Vec::new(),
    }
    bytes
}

#[tokio::test]
async fn hostile_requests_get_a_4xx_with_a_message() {
    for backend in common::BACKENDS {
        hostile(backend).await;
    }
}

async fn hostile(backend: common::Backend) {
    let dir = TempDir::new("bad-input");
    let database = backend.database_url(dir.path()).await;
    let server = Server::start_with(&database, 0, &[]).await;
    let client = reqwest::Client::new();
    let mut rng = fastrand::Rng::with_seed(20261127);
    let queries = [
        "/api/flow_runs?limit=0",
        "/api/flow_runs?limit=-5",
        "/api/flow_runs?limit=abc",
        "/api/flow_runs?state=Exploded",
        "/api/flow_runs?since=yesterday",
        "/api/flow_runs?cursor=zzz",
        "/api/flow_runs?parent=123",
        "/api/flow_runs?unknown=1",
        "/api/flow_runs/not-a-uuid",
        "/api/flow_runs/01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e99",
        "/api/flow_runs/01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01/logs?level=LOUD",
        "/api/flow_runs/01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01/logs?cursor=1_2",
        "/api/flow_runs/01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01/logs?min_level=LOUDER",
        "/api/flow_runs/%00/logs",
        "/api/flow_runs/01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e99/states",
        "/api/flow_runs/01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01/states?retried_only=maybe",
        "/api/flow_activity?buckets=0",
        "/api/flow_activity?buckets=100000",
        "/api/flow_activity?since=2026-11-27T00:00:00Z&until=2026-11-26T00:00:00Z",
        "/api/flow_activity?since=never",
        "/assets/no-such-file.js",
    ];
    for path in queries {
        let response = client
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(status.is_client_error(), "{path}: {status}");
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(body["error"].is_string(), "{path}: no message in {body}");
    }
    // The valid event is stored; an id that does not sort by time (a UUID v4), or whose time is
    // not the event's, is refused, by name.
    let late = VALID.replace("2026-11-27T02:00:00Z", "2026-11-28T02:00:00Z");
    let v4 = VALID.replace("7d2a-9c1e-3f2b6a1d9e00", "4d2a-9c1e-3f2b6a1d9e00");
    for (body, status, says) in [
        (VALID.to_string(), 200, "stored"),
        (v4, 400, "id: must be a UUID v7"),
        (
            late,
            400,
            "id: its time (UUID v7) must be within 2 ms of `timestamp`",
        ),
    ] {
        let response = client
            .post(format!("{}/api/events", server.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        let text = response.text().await.unwrap();
        assert!(text.contains(says), "{text}");
    }
    for round in 0..300 {
        let body = mutate(&mut rng, VALID);
        let response = client
            .post(format!("{}/api/events", server.url))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status.is_success() || status.is_client_error(),
            "{backend:?} round {round}: {status} for {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        if status.is_client_error() {
            let text = response.text().await.unwrap_or_default();
            assert!(!text.is_empty(), "round {round}: a 4xx without a message");
        }
    }
    // Oversized: over the body limit.
    let huge = vec![b' '; flowkit_server::MAX_BODY + 1];
    let response = client
        .post(format!("{}/api/events", server.url))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Still alive.
    let health = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// Times at the edges of what the server can store (nanoseconds since 1970 in an i64: from
/// 1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z), of what chrono can
/// parse, and beyond both.
const EDGE_TIMES: [&str; 21] = [
    "1678-01-01T00:00:00Z",
    "2262-01-01T00:00:00Z",
    "1677-09-21T00:12:43.145224191Z",
    "1677-09-21T00:12:43.145224192Z",
    "2262-04-11T23:47:16.854775807Z",
    "2262-04-11T23:47:16.854775808Z",
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "1970-01-01T00:00:00Z",
    "2026-11-27T00:00:00+23:59",
    "2026-11-27T00:00:00-23:59",
    "+262143-12-31T23:59:59Z",
    "-262143-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-27T24:00:00Z",
    "2026-12-31T23:59:60Z",
    "1e30",
    "",
    "now",
    "2026-11-27",
];

const EDGE_NUMBERS: [&str; 20] = [
    "0",
    "-1",
    "1",
    "24",
    "500",
    "501",
    "1000",
    "1001",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e3",
    "NaN",
    "-0",
    "+5",
    "4294967296",
    "",
];

fn time(rng: &mut fastrand::Rng) -> String {
    if rng.bool() {
        return EDGE_TIMES[rng.usize(..EDGE_TIMES.len())].to_string();
    }
    let offset = match rng.u8(0..3) {
        0 => "Z".to_string(),
        _ => format!(
            "{}{:02}:{:02}",
            if rng.bool() { '+' } else { '-' },
            rng.u8(0..24),
            rng.u8(0..60)
        ),
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}{offset}",
        rng.u16(0..10_000),
        rng.u8(1..13),
        rng.u8(1..29),
        rng.u8(0..24),
        rng.u8(0..60),
        rng.u8(0..60),
        rng.u32(0..1_000_000_000)
    )
}

fn number(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..3) {
        0 => rng.i64(..).to_string(),
        1 => rng.u64(..).to_string(),
        _ => EDGE_NUMBERS[rng.usize(..EDGE_NUMBERS.len())].to_string(),
    }
}

fn cursor(rng: &mut fastrand::Rng) -> String {
    let ts = match rng.u8(0..3) {
        0 => i64::MAX.to_string(),
        1 => i64::MIN.to_string(),
        _ => number(rng),
    };
    format!("{ts}_01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01")
}

/// `+` is a space in a query string.
fn encode(value: &str) -> String {
    value.replace('+', "%2B")
}

/// A query string of some of `params`, each with a hostile value.
fn query_of(rng: &mut fastrand::Rng, params: &[&str]) -> String {
    let mut pairs = Vec::new();
    for param in params {
        if rng.u8(0..4) == 0 {
            continue;
        }
        let value = match *param {
            "since" | "until" => time(rng),
            "cursor" => cursor(rng),
            _ => number(rng),
        };
        pairs.push(format!("{param}={}", encode(&value)));
    }
    pairs.join("&")
}

#[tokio::test]
async fn hostile_times_and_numbers_in_queries_never_get_a_5xx() {
    for backend in common::BACKENDS {
        hostile_queries(backend).await;
    }
}

async fn hostile_queries(backend: common::Backend) {
    let dir = TempDir::new("bad-queries");
    let database = backend.database_url(dir.path()).await;
    let server = Server::start_with(&database, 0, &[]).await;
    let client = reqwest::Client::new();
    let stored = client
        .post(format!("{}/api/events", server.url))
        .header("content-type", "application/json")
        .body(VALID)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    let run = "01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01";

    // The window of issue 8: wider than nanoseconds in an i64 can span.
    let response = client
        .get(format!(
            "{}/api/flow_activity?since=1678-01-01T00:00:00Z&until=2262-01-01T00:00:00Z&buckets=500",
            server.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "{backend:?}: the widest window");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["field"], "since", "{body}");

    // A NUL in a text filter is searched as stored (U+FFFD), never sent to the database.
    for path in [
        "/api/flow_runs?flow=%00",
        "/api/flow_runs?q=a%00b",
        "/api/flow_runs?tag=%00",
        "/api/flow_runs?deployment=x%00",
    ] {
        let response = client
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{backend:?} {path}");
    }

    // A bad number names its field, parsed or not.
    for (path, field) in [
        ("/api/flow_runs?limit=abc", "limit"),
        ("/api/flow_runs?limit=99999999999999999999", "limit"),
        (
            "/api/flow_runs?until=2262-04-11T23:47:16.854775808Z",
            "until",
        ),
        ("/api/flow_activity?buckets=-1", "buckets"),
        ("/api/flow_activity?buckets=4294967296", "buckets"),
        ("/api/flow_activity?until=-262143-01-01T00:00:00Z", "until"),
        ("/api/flow_activity?since=yesterday", "since"),
    ] {
        let response = client
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{backend:?} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["field"], field, "{backend:?} {path}: {body}");
    }

    let routes: [(String, &[&str]); 3] = [
        (
            "/api/flow_runs".into(),
            &["since", "until", "limit", "cursor"],
        ),
        (format!("/api/flow_runs/{run}/logs"), &["limit", "cursor"]),
        ("/api/flow_activity".into(), &["since", "until", "buckets"]),
    ];
    let mut rng = fastrand::Rng::with_seed(8_2026_1127);
    let mut answered = [0usize; 2];
    for round in 0..600 {
        let (route, params) = &routes[round % routes.len()];
        let path = format!("{route}?{}", query_of(&mut rng, params));
        let response = client
            .get(format!("{}{path}", server.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{backend:?} {path}: no answer: {e}"));
        let status = response.status();
        assert!(
            status.is_success() || status.is_client_error(),
            "{backend:?} {path}: {status}"
        );
        answered[usize::from(status.is_client_error())] += 1;
        if status.is_client_error() {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert!(body["error"].is_string(), "{path}: no message in {body}");
        }
    }
    // Both kinds were tried, not only hopeless ones.
    assert!(
        answered[0] > 30 && answered[1] > 30,
        "{backend:?}: {answered:?}"
    );
    let health = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
