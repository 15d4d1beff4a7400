//! Scoped keys in the dashboard, in a real browser (Debian's headless Chromium) against a real
//! server process: with a `read` key no button that acts is shown; with an operator's key
//! (`read,operate`) the run page cancels a run, and the run's "who did what" panel and the
//! audit page name the key. Also the dashboard and API under `--base-path`.

mod common;

use common::api::send;
use common::browser::Browser;
use common::{Server, TempDir};
use serde_json::json;

const ADMIN: &str = "dashboard-access-admin";

async fn make_key(server: &Server, name: &str, scopes: &[&str]) -> String {
    let (status, body) = send(
        server,
        reqwest::Method::POST,
        "/api/keys",
        Some(json!({"name": name, "scopes": scopes})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().expect("the key").to_string()
}

/// Opens `hash` of the dashboard with `key` as the session's key.
async fn open_with_key(browser: &Browser, server: &Server, key: &str, hash: &str) {
    browser.goto(&format!("{}/", server.url)).await;
    browser
        .eval(
            "sessionStorage.setItem('flowkit.apiKey', arguments[0]); return true;",
            vec![json!(key)],
        )
        .await;
    browser
        .goto(&format!(
            "{}/?fresh={}#{hash}",
            server.url,
            fastrand::u32(..)
        ))
        .await;
}

/// The elements that act (`data-needs`) the page shows.
const SHOWN_ACTIONS: &str = "[...document.querySelectorAll('[data-needs]')]\
     .filter(el => el.offsetParent !== null || el.getClientRects().length > 0)\
     .map(el => el.dataset.testid || el.textContent.trim())";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_key_sees_no_actions_and_an_operator_cancels_and_is_audited() {
    let dir = TempDir::new("dash-access");
    let mut server = Server::start(dir.path(), 0, &["--api-key", ADMIN]).await;
    server.key = Some(ADMIN.into());
    let reader = make_key(&server, "viewers", &["read"]).await;
    let operator = make_key(&server, "ops-team", &["read", "operate"]).await;
    let (status, body) = send(
        &server,
        reqwest::Method::PUT,
        "/api/deployments/nightly",
        Some(json!({"name": "nightly", "flow": "etl"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let in_an_hour = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let (status, run) = send(
        &server,
        reqwest::Method::POST,
        "/api/deployments/nightly/runs",
        Some(json!({"scheduled_at": in_an_hour})),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let run = run["id"].as_str().expect("its id").to_string();
    let (status, backfill) = send(
        &server,
        reqwest::Method::POST,
        "/api/deployments/nightly/backfills",
        Some(
            json!({"start": "2026-01-01T00:00:00Z", "end": "2026-01-03T00:00:00Z", "chunk": "1d"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{backfill}");
    let backfill = backfill["id"].as_str().expect("its id").to_string();

    let browser = Browser::start().await;

    // A read key: every page loads, no action is shown.
    open_with_key(&browser, &server, &reader, &format!("/runs/{run}")).await;
    browser
        .wait_until(
            "the run page with the reader's scopes",
            "document.documentElement.dataset.scopes === 'read'\
             && document.querySelector('[data-testid=run-head] .badge')",
        )
        .await;
    for (hash, ready) in [
        (format!("/runs/{run}"), "[data-testid=run-head] .badge"),
        ("/deployments".to_string(), "[data-testid=deployment-row]"),
        ("/backfills".to_string(), "[data-testid=backfills] a"),
        (
            format!("/backfills/{backfill}"),
            "[data-testid=backfill-intervals] [data-testid=interval]",
        ),
        (
            "/automations".to_string(),
            "[data-testid=automations-empty], [data-testid=automation-row]",
        ),
    ] {
        browser
            .eval(
                "location.hash = arguments[0]; return true;",
                vec![json!(hash)],
            )
            .await;
        browser
            .wait_until(
                &format!("{hash} loaded"),
                &format!("document.querySelector('{ready}')"),
            )
            .await;
        // Elements that act exist on the page, none is shown.
        let present = browser
            .eval(
                "return document.querySelectorAll('[data-needs]').length;",
                vec![],
            )
            .await;
        assert!(
            present.as_u64().unwrap_or(0) > 0,
            "{hash} has actions to hide"
        );
        let shown = browser
            .eval(&format!("return {SHOWN_ACTIONS};"), vec![])
            .await;
        assert_eq!(shown, json!([]), "{hash} shows actions to a read key");
    }
    browser.screenshot("access-read-key-deployments").await;

    // An operator's key: the run page offers cancel; it cancels; the audit names the key.
    open_with_key(&browser, &server, &operator, &format!("/runs/{run}")).await;
    let answer = browser.cancel_run().await;
    assert_eq!(answer, json!("Cancelled"));
    let on_run = browser
        .wait_until(
            "the run's audit panel names the key",
            "(() => { const e = document.querySelector('[data-testid=audit-panel] [data-testid=audit-entry][data-action=cancel]');\
             return e && e.dataset.actor; })()",
        )
        .await;
    assert_eq!(on_run, json!("ops-team"));
    browser.screenshot("access-operator-cancelled").await;

    browser
        .eval("location.hash = '#/audit'; return true;", vec![])
        .await;
    let entries = browser
        .wait_until(
            "the audit page",
            "(() => { const rows = [...document.querySelectorAll('[data-testid=audit] [data-testid=audit-entry]')];\
             return rows.length >= 2 && rows.map(r => [r.dataset.actor, r.dataset.action]); })()",
        )
        .await;
    let entries = entries.as_array().expect("rows").clone();
    assert_eq!(entries[0], json!(["ops-team", "cancel"]), "{entries:?}");
    assert!(
        entries.contains(&json!(["api-key", "trigger"])),
        "{entries:?}"
    );
    assert!(
        entries.contains(&json!(["api-key", "key_create"])),
        "{entries:?}"
    );
    let text = browser.text("[data-testid=audit]").await;
    assert!(
        text.contains("ops-team") && text.contains("cancelled a run"),
        "{text}"
    );
    // The deployment's link leads to what touched it.
    browser
        .eval("location.hash = '#/deployments'; return true;", vec![])
        .await;
    browser
        .wait_until(
            "the deployment row",
            "document.querySelector('[data-testid=deployment-audit]')",
        )
        .await;
    browser.click_js("[data-testid=deployment-audit]").await;
    let on_deployment = browser
        .wait_until(
            "the deployment's audit",
            "(() => { const rows = [...document.querySelectorAll('[data-testid=audit] [data-testid=audit-entry]')];\
             return location.hash.includes('deployment=nightly') && rows.length === 4 && rows.map(r => r.dataset.action); })()",
        )
        .await;
    assert_eq!(
        on_deployment,
        json!(["cancel", "backfill", "trigger", "deployment_register"])
    );
    browser.screenshot("access-audit").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_api_work_under_a_base_path() {
    use common::{event_now, run_created};
    use flowkit::events::RunType;
    let dir = TempDir::new("dash-base-path");
    let mut server = Server::start(
        dir.path(),
        0,
        &["--api-key", ADMIN, "--base-path", "/flowkit/"],
    )
    .await;
    server.key = Some(ADMIN.into());
    let run = uuid::Uuid::now_v7();
    let events = vec![event_now(
        run,
        None,
        run_created(RunType::Flow, "prefixed", 0),
    )];
    let (status, body) = send(
        &server,
        reqwest::Method::POST,
        "/flowkit/api/events",
        Some(json!(events)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Only under the prefix.
    let (status, _) = send(&server, reqwest::Method::GET, "/api/stats", None).await;
    assert_eq!(status, 404);
    let (status, _) = send(&server, reqwest::Method::GET, "/flowkit/healthz", None).await;
    assert_eq!(status, 200);
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
        .get(format!("{}/flowkit", server.url))
        .send()
        .await
        .expect("an answer");
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/flowkit/");

    let browser = Browser::start().await;
    // The page asks for the key, then lists the run, live.
    browser.goto(&format!("{}/flowkit", server.url)).await;
    browser.enter_key(ADMIN).await;
    browser
        .wait_until(
            "the run listed",
            &format!("document.querySelector('[data-testid=run-row][data-run-id=\"{run}\"]')"),
        )
        .await;
    browser
        .wait_until(
            "live updates under the prefix",
            "document.getElementById('live').dataset.status === 'live'",
        )
        .await;
    let path = browser.eval("return location.pathname;", vec![]).await;
    assert_eq!(path, json!("/flowkit/"));
    browser
        .eval(
            &format!("location.hash = '#/runs/{run}'; return true;"),
            vec![],
        )
        .await;
    browser
        .wait_until(
            "the run page",
            "document.querySelector('[data-testid=run-head] .badge')",
        )
        .await;
    // An admin key sees the actions.
    browser
        .wait_until(
            "the admin's scopes",
            "document.documentElement.dataset.scopes.split(' ').includes('operate')",
        )
        .await;
    // Every request the page made went under the prefix.
    let outside = browser
        .eval(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)\
             .filter(p => !p.startsWith('/flowkit/'));",
            vec![],
        )
        .await;
    assert_eq!(outside, json!([]), "requests outside the prefix");
    browser.screenshot("access-base-path").await;
    browser.close().await;
}
