//! The dashboard's automations in a real browser (Debian's headless Chromium) against a real
//! server process: the page lists the rules and their latest notifications with each try, the
//! circuit breaker's badge shows on the deployment it paused, switching it on resumes it, and
//! deleting a rule from the page removes it, and a rule is made with the page's form (a refused
//! field named under it). One server and one browser for every step.
//! Screenshots go to `target/tmp/dashboard-screenshots/`.

mod common;

use std::time::Duration;

use common::api::{eventually, get, post, put};
use common::browser::Browser;
use common::{Server, TempDir, event_now};
use flowkit::State;
use flowkit::events::{EventKind, StateChanged};
use serde_json::json;
use uuid::Uuid;

const KEY: &str = "automations-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_deliveries_and_the_breaker_badge_in_the_browser() {
    let dir = TempDir::new("dash-automations");
    let mut server = Server::start(
        dir.path(),
        0,
        &[
            "--api-key",
            KEY,
            "--notify-retry",
            "100ms",
            "--notify-attempts",
            "2",
        ],
    )
    .await;
    server.key = Some(KEY.into());
    // A receiver that takes everything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(|| async { "ok" })).await
    });
    let dead = format!("http://127.0.0.1:{}/gone", common::free_port());

    let (status, body) = post(
        &server,
        "/api/automations",
        json!({"name": "breaker", "on": {"state": ["Failed"]}, "deployment": "flaky",
               "pause_after": 2, "notify": [{"webhook": format!("{receiver}/hook")}, {"webhook": dead}]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(
        &server,
        "/api/automations",
        json!({"name": "slow-loads", "on": {"sla": {"max_duration": "1h"}}, "flow": "load",
               "tags": ["prod"], "notify": [{"slack": "https://hooks.slack.com/services/T0/B0/secret"}]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = put(
        &server,
        "/api/deployments/flaky",
        json!({"name": "flaky", "flow": "etl"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Two triggered runs of `flaky` fail: the breaker pauses it.
    for _ in 0..2 {
        let (status, run) = post(&server, "/api/deployments/flaky/runs", json!({})).await;
        assert_eq!(status, 201, "{run}");
        let id: Uuid = run["id"].as_str().unwrap().parse().unwrap();
        let change = |state| {
            event_now(
                id,
                None,
                EventKind::StateChanged(StateChanged {
                    state,
                    attempt: 1,
                    message: Some("the partner API is down".into()),
                    next_attempt_at: None,
                    result: None,
                }),
            )
        };
        let (status, body) = post(
            &server,
            "/api/events",
            json!([change(State::Running), change(State::Failed)]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        get(&server, "/api/deployments/flaky").await["paused_by"],
        "automation:breaker"
    );
    // Wait until the dead target is given up (two tries), so the page shows both outcomes.
    eventually(
        Duration::from_secs(15),
        "the dead target given up",
        || async {
            let all = get(&server, "/api/deliveries").await;
            all.as_array()
                .is_some_and(|d| d.iter().filter(|d| d["status"] == "failed").count() == 3)
        },
    )
    .await;

    let browser = Browser::start().await;
    browser.open(&server, "/automations").await;
    browser.enter_key(KEY).await;
    browser
        .wait_for_count("two rules", "[data-testid=automation-row]", 2)
        .await;
    let when = browser
        .text("[data-name=slow-loads] [data-testid=automation-when]")
        .await;
    assert_eq!(when, "SLA: longer than 1h");
    let breaker = browser
        .text("[data-name=breaker] [data-testid=automation-breaker]")
        .await;
    assert_eq!(breaker, "pause after 2 failures");
    // A Slack webhook's secret path is not on the page.
    let page = browser.text("[data-testid=automations]").await;
    assert!(page.contains("https://hooks.slack.com/…"), "{page}");
    assert!(!page.contains("secret"), "{page}");

    // Notifications: 2 failures + 1 breaker notice, to 2 targets each: 3 delivered, 3 failed.
    browser
        .wait_for_count("six notifications", "[data-testid=delivery-row]", 6)
        .await;
    let statuses = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=delivery-row]')].map(r => r.dataset.status).sort();",
            vec![],
        )
        .await;
    assert_eq!(
        statuses,
        json!([
            "delivered",
            "delivered",
            "delivered",
            "failed",
            "failed",
            "failed"
        ])
    );
    let tries = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=delivery-row][data-status=failed] [data-testid=delivery-attempt]')]\
             .map(a => a.textContent);",
            vec![],
        )
        .await;
    assert_eq!(
        tries,
        json!(vec!["no answer"; 6]),
        "two tries each, no answer"
    );
    let says = browser.text("[data-testid=deliveries]").await;
    assert!(says.contains("Paused deployment flaky"), "{says}");
    browser.screenshot("automations").await;

    // The breaker's badge on the deployment; switching it on resumes it and clears the badge.
    browser.open(&server, "/deployments").await;
    browser
        .wait_for_count("the breaker's badge", "[data-testid=breaker-badge]", 1)
        .await;
    let badge = browser.text("[data-testid=breaker-badge]").await;
    assert_eq!(badge, "paused by breaker (breaker)");
    browser.screenshot("automations-breaker-badge").await;
    browser
        .click_js("[data-name=flaky] [data-testid=pause-toggle]")
        .await;
    browser
        .wait_until(
            "resumed",
            "document.querySelector('[data-name=flaky]')?.dataset.paused === 'false'",
        )
        .await;
    browser
        .wait_for_count("no badge", "[data-testid=breaker-badge]", 0)
        .await;
    assert_eq!(
        get(&server, "/api/deployments/flaky").await["paused"],
        false
    );

    // Deleting a rule from the page.
    browser.open(&server, "/automations").await;
    browser
        .wait_for_count("two rules", "[data-testid=automation-row]", 2)
        .await;
    browser
        .eval("window.confirm = () => true; return true;", vec![])
        .await;
    browser
        .click_js("[data-name=slow-loads] [data-testid=automation-delete]")
        .await;
    browser
        .wait_for_count("one rule", "[data-testid=automation-row]", 1)
        .await;
    let rules = get(&server, "/api/automations").await;
    assert_eq!(rules.as_array().map(Vec::len), Some(1), "{rules}");
    let audit = get(&server, "/api/audit?actor=api-key").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "automation_delete" && e["detail"] == "slow-loads"),
        "{audit}"
    );

    // Making a rule from the page: a state the server refuses is named under its field; a
    // late-run rule is made and listed.
    browser
        .type_into("[data-testid=automation-name]", "from-page")
        .await;
    browser
        .eval(
            "const s = document.querySelector('[data-testid=automation-on-state]'); s.value = 'Failed, Exploded'; return true;",
            vec![],
        )
        .await;
    browser
        .type_into(
            "[data-testid=automation-webhook]",
            &format!("{receiver}/hook"),
        )
        .await;
    browser.click_js("[data-testid=automation-submit]").await;
    browser
        .wait_until(
            "the refused state named under its field",
            "document.querySelector('[data-field=\"on.state\"] [data-testid=field-error]')?.textContent.includes('Exploded')",
        )
        .await;
    browser
        .eval(
            "const k = document.querySelector('[data-testid=automation-on]'); k.value = 'late'; k.dispatchEvent(new Event('change')); return true;",
            vec![],
        )
        .await;
    let hidden = browser
        .eval(
            "return [document.querySelector('[data-field=\"on.state\"]').hidden, document.querySelector('[data-field=\"on.late\"]').hidden];",
            vec![],
        )
        .await;
    assert_eq!(hidden, json!([true, false]), "only the late field shows");
    browser
        .type_into("[data-testid=automation-on-late]", "15m")
        .await;
    browser
        .type_into("[data-testid=automation-deployment]", "flaky")
        .await;
    browser.click_js("[data-testid=automation-submit]").await;
    browser
        .wait_for_count("the rule made", "[data-name=from-page]", 1)
        .await;
    let when = browser
        .text("[data-name=from-page] [data-testid=automation-when]")
        .await;
    assert_eq!(when, "late by 15m");
    let rules = get(&server, "/api/automations").await;
    let made = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "from-page")
        .cloned()
        .unwrap_or_default();
    assert_eq!(made["on"], json!({"late": "15m"}), "{rules}");
    assert_eq!(made["deployment"], "flaky", "{rules}");
    browser.screenshot("automations-form").await;
    browser.close().await;
}
