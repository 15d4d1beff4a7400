//! Scoped API keys and the audit trail, on both databases: every route of the API with every
//! scope (allowed, or a 403 naming the scope needed), keys shown once and revoked at once (on
//! every server sharing one PostgreSQL), and operators' actions recorded with the key's name.

mod common;

use common::{BACKENDS, Backend, Server, TempDir};
use reqwest::Method;
use serde_json::{Value, json};

const ADMIN: &str = "the-servers-own-key";
const RUN: &str = "01936b2e-7b4c-7d2a-9c1e-3f2b6a1d9e01";

/// Every route of the API: method, path, body, and the scope it needs (None: any valid key).
fn routes() -> Vec<(Method, String, Option<Value>, Option<&'static str>)> {
    let run = RUN;
    let deployment = json!({"name": "scoped", "flow": "scoped-flow"});
    let rows: Vec<(&str, String, Option<Value>, Option<&str>)> = vec![
        // read: the dashboard and queries.
        ("GET", "/api/openapi.json".into(), None, Some("read")),
        ("GET", "/metrics".into(), None, Some("read")),
        ("GET", "/api/stats".into(), None, Some("read")),
        ("GET", "/api/flows".into(), None, Some("read")),
        ("GET", "/api/flows/nowhere/grid".into(), None, Some("read")),
        ("GET", "/api/flow_activity".into(), None, Some("read")),
        ("GET", "/api/flow_runs".into(), None, Some("read")),
        ("GET", format!("/api/flow_runs/{run}"), None, Some("read")),
        (
            "GET",
            format!("/api/flow_runs/{run}/task_runs/{run}"),
            None,
            Some("read"),
        ),
        (
            "GET",
            format!("/api/flow_runs/{run}/logs"),
            None,
            Some("read"),
        ),
        (
            "GET",
            format!("/api/flow_runs/{run}/states"),
            None,
            Some("read"),
        ),
        ("GET", "/api/events/stream".into(), None, Some("read")),
        ("GET", "/api/deployments".into(), None, Some("read")),
        ("GET", "/api/deployments/scoped".into(), None, Some("read")),
        (
            "GET",
            "/api/deployments/scoped/runs".into(),
            None,
            Some("read"),
        ),
        (
            "GET",
            "/api/deployments/scoped/gaps?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"
                .into(),
            None,
            Some("read"),
        ),
        ("GET", "/api/workers".into(), None, Some("read")),
        ("GET", "/api/backfills".into(), None, Some("read")),
        ("GET", format!("/api/backfills/{run}"), None, Some("read")),
        ("GET", "/api/audit".into(), None, Some("read")),
        ("GET", "/api/limits".into(), None, Some("read")),
        ("GET", "/api/automations".into(), None, Some("read")),
        ("GET", "/api/deliveries".into(), None, Some("read")),
        // write: programs and workers.
        ("GET", "/api/limits/names".into(), None, Some("write")),
        (
            "POST",
            "/api/limits/nowhere/acquire".into(),
            Some(json!({"ticket": run, "task_run_id": run})),
            Some("write"),
        ),
        (
            "POST",
            "/api/limits/nowhere/release".into(),
            Some(json!({"ticket": run})),
            Some("write"),
        ),
        (
            "POST",
            "/api/limits/nowhere/rate".into(),
            None,
            Some("write"),
        ),
        ("POST", "/api/events".into(), Some(json!([])), Some("write")),
        (
            "POST",
            "/api/heartbeats".into(),
            Some(json!({"runs": []})),
            Some("write"),
        ),
        (
            "POST",
            "/api/workers/w1/poll".into(),
            Some(json!({"wait_ms": 0})),
            Some("write"),
        ),
        (
            "POST",
            "/api/workers/w1/stop".into(),
            Some(json!({})),
            Some("write"),
        ),
        (
            "PUT",
            "/api/deployments/scoped".into(),
            Some(deployment),
            Some("write"),
        ),
        // operate: operators.
        (
            "POST",
            "/api/deployments/nowhere/runs".into(),
            Some(json!({})),
            Some("operate"),
        ),
        (
            "POST",
            format!("/api/flow_runs/{run}/cancel"),
            Some(json!({})),
            Some("operate"),
        ),
        (
            "POST",
            format!("/api/flow_runs/{run}/retry"),
            Some(json!({})),
            Some("operate"),
        ),
        (
            "PATCH",
            "/api/deployments/nowhere".into(),
            Some(json!({"paused": true})),
            Some("operate"),
        ),
        (
            "POST",
            "/api/deployments/nowhere/backfills".into(),
            Some(json!({"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"})),
            Some("operate"),
        ),
        (
            "POST",
            format!("/api/backfills/{run}/cancel"),
            Some(json!({})),
            Some("operate"),
        ),
        (
            "PUT",
            "/api/limits/scoped".into(),
            Some(json!({"concurrency": 2})),
            Some("operate"),
        ),
        // (An empty name: allowed through, then refused as a bad request.)
        (
            "POST",
            "/api/automations".into(),
            Some(json!({"name": "", "on": {"late": "1m"}, "notify": []})),
            Some("operate"),
        ),
        (
            "DELETE",
            "/api/limits/nowhere".into(),
            None,
            Some("operate"),
        ),
        (
            "DELETE",
            "/api/automations/nobody".into(),
            None,
            Some("operate"),
        ),
        // admin: keys. (An empty name: allowed through, then refused as a bad request.)
        (
            "POST",
            "/api/keys".into(),
            Some(json!({"name": "", "scopes": ["read"]})),
            Some("admin"),
        ),
        ("GET", "/api/keys".into(), None, Some("admin")),
        ("DELETE", "/api/keys/nobody".into(), None, Some("admin")),
        // Any key may ask what it may do.
        ("GET", "/api/keys/me".into(), None, None),
    ];
    rows.into_iter()
        .map(|(m, p, b, s)| (Method::from_bytes(m.as_bytes()).expect("a method"), p, b, s))
        .collect()
}

async fn call(
    server: &Server,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        // The live stream never ends: its head is the answer.
        return (status, Value::Null);
    }
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Makes a key with `scopes`; its secret.
async fn make_key(server: &Server, name: &str, scopes: &[&str]) -> String {
    let (status, body) = call(
        server,
        Some(ADMIN),
        Method::POST,
        "/api/keys",
        Some(&json!({"name": name, "scopes": scopes})),
    )
    .await;
    assert_eq!(status, 201, "making {name}: {body}");
    body["key"]
        .as_str()
        .expect("the key, shown once")
        .to_string()
}

async fn every_route_with_every_scope(backend: Backend) {
    let dir = TempDir::new("scopes");
    let database = backend.database_url(dir.path()).await;
    let server = Server::start_with(&database, 0, &["--api-key", ADMIN]).await;

    // Every route of the OpenAPI document is in the table.
    let (_, document) = call(&server, Some(ADMIN), Method::GET, "/api/openapi.json", None).await;
    let table = routes();
    let templated = |path: &str| -> String {
        // `/api/flow_runs/0193…/cancel` → `/api/flow_runs/{}/cancel`, as the table writes it.
        path.split('?')
            .next()
            .unwrap_or_default()
            .split('/')
            .map(|part| {
                let variable = part.starts_with('{')
                    || part == RUN
                    || ["scoped", "nowhere", "w1", "nobody"].contains(&part);
                if variable { "{}" } else { part }
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let paths = document["paths"].as_object().expect("paths");
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            let covered = table.iter().any(|(m, p, _, _)| {
                m.as_str().eq_ignore_ascii_case(method) && templated(p) == templated(path)
            });
            assert!(covered, "{method} {path} is in no row of the scope table");
        }
    }

    let keys = [
        ("read", make_key(&server, "reader", &["read"]).await),
        ("write", make_key(&server, "writer", &["write"]).await),
        ("operate", make_key(&server, "operator", &["operate"]).await),
        ("admin", make_key(&server, "keeper", &["admin"]).await),
    ];
    for (method, path, body, needed) in &table {
        let (status, answer) = call(&server, None, method.clone(), path, body.as_ref()).await;
        assert_eq!(
            status, 401,
            "{backend:?} {method} {path} without a key: {answer}"
        );
        let (status, _) = call(
            &server,
            Some("fk_0000"),
            method.clone(),
            path,
            body.as_ref(),
        )
        .await;
        assert_eq!(
            status, 401,
            "{backend:?} {method} {path} with an unknown key"
        );
        for (scope, key) in &keys {
            let (status, answer) =
                call(&server, Some(key), method.clone(), path, body.as_ref()).await;
            let allowed = match needed {
                None => true,
                Some(needed) => scope == needed || *scope == "admin",
            };
            if allowed {
                assert!(
                    status != 401 && status != 403 && status < 500,
                    "{backend:?} {method} {path} with a {scope} key: {status} {answer}"
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{backend:?} {method} {path} with a {scope} key: {answer}"
                );
                let needed = needed.expect("a scope");
                assert_eq!(answer["scope"], needed, "{method} {path}");
                let message = answer["error"].as_str().unwrap_or_default();
                assert!(
                    message.contains(&format!("`{needed}`")),
                    "the 403 names the scope: {message}"
                );
            }
        }
    }
    // The server's own key is an admin key, as before.
    for (method, path, body, _) in &table {
        let (status, answer) =
            call(&server, Some(ADMIN), method.clone(), path, body.as_ref()).await;
        assert!(
            status != 401 && status != 403 && status < 500,
            "{method} {path} with --api-key: {answer}"
        );
    }
    // A path no route has: a 404 for a key of any scope, never a 403.
    let writer = &keys[1].1;
    let (status, _) = call(
        &server,
        Some(writer),
        Method::POST,
        "/api/nowhere",
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 404);
    // A key with two scopes holds both.
    let both = make_key(&server, "dashboard-ops", &["read", "operate"]).await;
    let (_, me) = call(&server, Some(&both), Method::GET, "/api/keys/me", None).await;
    assert_eq!(
        me,
        json!({"name": "dashboard-ops", "scopes": ["read", "operate"]})
    );
    let (status, _) = call(
        &server,
        Some(&both),
        Method::POST,
        "/api/events",
        Some(&json!([])),
    )
    .await;
    assert_eq!(status, 403);

    // Listed without the secret; names are unique; revoked keys are 401 at once.
    let (_, listed) = call(&server, Some(ADMIN), Method::GET, "/api/keys", None).await;
    let listed = listed.as_array().expect("a list").clone();
    assert_eq!(listed.len(), 5);
    for key in &listed {
        assert!(key.get("key").is_none(), "never listed in full: {key}");
        assert!(key["prefix"].as_str().is_some_and(|p| p.starts_with("fk_")));
    }
    let (status, answer) = call(
        &server,
        Some(ADMIN),
        Method::POST,
        "/api/keys",
        Some(&json!({"name": "reader", "scopes": ["read"]})),
    )
    .await;
    assert_eq!((status, answer["field"].clone()), (409, json!("name")));
    let reader = &keys[0].1;
    let (status, _) = call(&server, Some(reader), Method::GET, "/api/flows", None).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        Some(&keys[3].1),
        Method::DELETE,
        "/api/keys/reader",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, Some(reader), Method::GET, "/api/flows", None).await;
    assert_eq!(
        status, 401,
        "{backend:?}: a revoked key stops working at once"
    );

    // Who did what: the operator's actions, with its name.
    let operator = &keys[2].1;
    let (status, _) = call(
        &server,
        Some(writer),
        Method::PUT,
        "/api/deployments/audited",
        Some(&json!({"name": "audited", "flow": "f"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, run) = call(
        &server,
        Some(operator),
        Method::POST,
        "/api/deployments/audited/runs",
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_str().expect("the run's id").to_string();
    let (status, _) = call(
        &server,
        Some(operator),
        Method::POST,
        &format!("/api/flow_runs/{run_id}/cancel"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &server,
        Some(operator),
        Method::PATCH,
        "/api/deployments/audited",
        Some(&json!({"paused": true})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, backfill) = call(
        &server,
        Some(operator),
        Method::POST,
        "/api/deployments/audited/backfills",
        Some(
            &json!({"start": "2026-01-01T00:00:00Z", "end": "2026-01-03T00:00:00Z", "chunk": "1d"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{backfill}");
    let backfill_id = backfill["id"].as_str().expect("its id").to_string();
    let (status, _) = call(
        &server,
        Some(operator),
        Method::POST,
        &format!("/api/backfills/{backfill_id}/cancel"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200);

    let actions = |entries: &Value| -> Vec<(String, String)> {
        entries
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["actor"].as_str().unwrap_or("").to_string(),
                    e["action"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    let (_, on_run) = call(
        &server,
        Some(&both),
        Method::GET,
        &format!("/api/audit?run={run_id}"),
        None,
    )
    .await;
    assert_eq!(
        actions(&on_run),
        [pair("operator", "cancel"), pair("operator", "trigger")]
    );
    let (_, on_deployment) = call(
        &server,
        Some(&both),
        Method::GET,
        "/api/audit?deployment=audited",
        None,
    )
    .await;
    assert_eq!(
        actions(&on_deployment),
        [
            pair("operator", "backfill_cancel"),
            pair("operator", "backfill"),
            pair("operator", "pause"),
            pair("operator", "cancel"),
            pair("operator", "trigger"),
            pair("writer", "deployment_register"),
        ]
    );
    let (_, everything) = call(&server, Some(&both), Method::GET, "/api/audit", None).await;
    let everything = actions(&everything);
    assert!(
        everything.contains(&pair("keeper", "key_revoke")),
        "{everything:?}"
    );
    assert!(
        everything.contains(&pair("api-key", "key_create")),
        "{everything:?}"
    );
    let (_, newest) = call(
        &server,
        Some(&both),
        Method::GET,
        "/api/audit?limit=1",
        None,
    )
    .await;
    assert_eq!(newest.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn every_route_with_every_scope_on_both_databases() {
    let runs = BACKENDS.map(every_route_with_every_scope);
    let [sqlite, postgres] = runs;
    tokio::join!(sqlite, postgres);
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once_on_every_server_sharing_postgres() {
    let dir = TempDir::new("scopes-revoke");
    let database = Backend::Postgres.database_url(dir.path()).await;
    let first = Server::start_with(&database, 0, &["--api-key", ADMIN]).await;
    let second = Server::start_with(&database, 0, &["--api-key", ADMIN]).await;
    // Their listeners connect: from then on each trusts its cache of keys.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for round in 0..5 {
        let name = format!("shared-{round}");
        let key = make_key(&first, &name, &["read"]).await;
        // Both servers know it (and have cached it).
        for server in [&first, &second, &second] {
            let (status, _) = call(server, Some(&key), Method::GET, "/api/stats", None).await;
            assert_eq!(status, 200, "round {round}");
        }
        let (status, _) = call(
            &first,
            Some(ADMIN),
            Method::DELETE,
            &format!("/api/keys/{name}"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        // The very next request on the other server is refused.
        let (status, _) = call(&second, Some(&key), Method::GET, "/api/stats", None).await;
        assert_eq!(
            status, 401,
            "round {round}: the other server still takes a revoked key"
        );
        let (status, _) = call(&first, Some(&key), Method::GET, "/api/stats", None).await;
        assert_eq!(status, 401, "round {round}");
    }
}

#[tokio::test]
async fn a_server_without_an_api_key_makes_no_keys() {
    let dir = TempDir::new("scopes-open");
    let server = Server::start(dir.path(), 0, &[]).await;
    let (status, answer) = call(
        &server,
        None,
        Method::POST,
        "/api/keys",
        Some(&json!({"name": "x", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap_or("").contains("--api-key"),
        "{answer}"
    );
    let (_, me) = call(&server, None, Method::GET, "/api/keys/me", None).await;
    assert_eq!(
        me,
        json!({"name": "anonymous", "scopes": ["read", "write", "operate", "admin"]})
    );
}

/// A key is stored as its SHA-256 only: no column holds the key itself.
async fn keys_are_stored_as_their_digest(backend: Backend) {
    use sha2::Digest;
    use sqlx::Connection;
    let dir = TempDir::new("scopes-hash");
    let database = backend.database_url(dir.path()).await;
    let server = Server::start_with(&database, 0, &["--api-key", ADMIN]).await;
    let key = make_key(&server, "stored", &["read"]).await;
    let digest: String = sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let query = "SELECT name, hash, prefix, scopes, created_by FROM api_keys";
    let rows: Vec<(String, String, String, String, String)> = match backend {
        Backend::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(&database).await.unwrap();
            sqlx::query_as(query).fetch_all(&mut db).await.unwrap()
        }
        Backend::Postgres => {
            let mut db = sqlx::PgConnection::connect(&database).await.unwrap();
            sqlx::query_as(query).fetch_all(&mut db).await.unwrap()
        }
    };
    let row = rows
        .iter()
        .find(|row| row.0 == "stored")
        .expect("the key's row");
    assert_eq!(row.1, digest, "{backend:?}");
    for row in &rows {
        let columns = [&row.0, &row.1, &row.2, &row.3, &row.4];
        assert!(
            columns
                .iter()
                .all(|c| !c.contains(&key) && !c.contains(ADMIN)),
            "{backend:?}: a key is stored in clear: {row:?}"
        );
    }
}

#[tokio::test]
async fn keys_are_stored_as_their_digest_on_both_databases() {
    let [sqlite, postgres] = BACKENDS.map(keys_are_stored_as_their_digest);
    tokio::join!(sqlite, postgres);
}

/// A program's `write` key may register deployments (what `flowkit::serve` does at start);
/// a new deployment and each change of one is on the audit trail with the key's name, and
/// registering the same spec again is not.
async fn registering_a_deployment_is_audited(backend: Backend) {
    let dir = TempDir::new("scopes-register");
    let database = backend.database_url(dir.path()).await;
    let server = Server::start_with(&database, 0, &["--api-key", ADMIN]).await;
    let program = make_key(&server, "etl-program", &["write"]).await;
    let spec =
        |every: &str| json!({"name": "registered", "flow": "etl", "schedules": [{"every": every}]});
    for every in ["1h", "1h", "2h"] {
        let (status, body) = call(
            &server,
            Some(&program),
            Method::PUT,
            "/api/deployments/registered",
            Some(&spec(every)),
        )
        .await;
        assert_eq!(status, 200, "{backend:?}: {body}");
    }
    let (_, entries) = call(
        &server,
        Some(ADMIN),
        Method::GET,
        "/api/audit?deployment=registered",
        None,
    )
    .await;
    let entries: Vec<(&str, &str, &str)> = entries
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("etl-program", "deployment_register", "changed: schedules"),
            ("etl-program", "deployment_register", "new"),
        ],
        "{backend:?}"
    );
}

#[tokio::test]
async fn registering_a_deployment_is_audited_on_both_databases() {
    let [sqlite, postgres] = BACKENDS.map(registering_a_deployment_is_audited);
    tokio::join!(sqlite, postgres);
}
