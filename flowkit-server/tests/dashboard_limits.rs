//! The limits page in a real browser (Debian's headless Chromium) against a real server
//! process: each limit with its slots in use, how many wait, its rate, and the task runs holding
//! its slots as links to them; a slot given back disappears without a reload. A screenshot goes
//! to `target/tmp/dashboard-screenshots/limits.png`.

mod common;

use common::api::{post, put};
use common::browser::Browser;
use common::{Server, TempDir};
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_page_shows_slots_in_use_and_who_holds_them() {
    let dir = TempDir::new("dashboard-limits");
    let server = Server::start(dir.path(), 0, &[]).await;
    let (status, body) = put(&server, "/api/limits/api", json!({"concurrency": 2})).await;
    assert_eq!(status, 200, "{body}");
    put(
        &server,
        "/api/limits/orders-api",
        json!({"rate": {"count": 10, "per_ms": 1000}, "burst": 5}),
    )
    .await;
    let (task, flow, ticket) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (status, granted) = post(
        &server,
        "/api/limits/api/acquire",
        json!({"ticket": ticket, "task_run_id": task, "flow_run_id": flow}),
    )
    .await;
    assert_eq!(
        (status, granted["granted"].as_bool()),
        (200, Some(true)),
        "{granted}"
    );

    let browser = Browser::start().await;
    browser.open(&server, "/limits").await;
    browser
        .wait_for_count("two limits", "[data-testid=limit-row]", 2)
        .await;
    let api = "[data-testid=limit-row][data-name=api]";
    assert_eq!(
        browser
            .text(&format!("{api} [data-testid=limit-slots]"))
            .await,
        "1 / 2"
    );
    assert_eq!(
        browser
            .text(&format!("{api} [data-testid=limit-waiting]"))
            .await,
        "0"
    );
    let orders = "[data-testid=limit-row][data-name=orders-api]";
    assert_eq!(
        browser
            .text(&format!("{orders} [data-testid=limit-rate]"))
            .await,
        "10/s (burst 5)"
    );
    assert_eq!(
        browser
            .text(&format!("{orders} [data-testid=limit-slots]"))
            .await,
        "—"
    );
    let href = browser
        .eval(
            "return document.querySelector(arguments[0]).getAttribute('href');",
            vec![json!(format!("{api} [data-testid=limit-holder] a"))],
        )
        .await;
    assert_eq!(
        href,
        json!(format!("#/runs/{flow}/tasks/{task}")),
        "a link to the holder"
    );
    let active = browser
        .eval(
            "return document.querySelector('[data-nav=limits]').classList.contains('active');",
            vec![],
        )
        .await;
    assert_eq!(active, json!(true));
    browser.screenshot("limits").await;

    // Given back: the page shows it within its refresh, without a reload.
    post(
        &server,
        "/api/limits/api/release",
        json!({"ticket": ticket}),
    )
    .await;
    browser
        .wait_until(
            "the slot given back",
            &format!(
                "document.querySelector('{api} [data-testid=limit-slots]')?.textContent === '0 / 2'"
            ),
        )
        .await;
    browser.close().await;
}
