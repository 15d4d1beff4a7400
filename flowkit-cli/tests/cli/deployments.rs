//! `flowkit deployments`: what serving programs registered, as a table and as JSON.

use serde_json::json;

use crate::common::{block_on, flowkit, server};

#[test]
fn deployments_shows_schedules_in_words_pauses_and_next_runs() {
    let server = server();
    server.put_deployment(json!({
        "name": "cli-nightly", "flow": "etl",
        "schedules": [{"cron": "0 2 * * *"}], "time_zone": "Europe/Madrid",
    }));
    server.put_deployment(json!({
        "name": "cli-hourly", "flow": "sync",
        "schedules": [{"every": "1h"}, {"cron": "30 * * * *"}], "paused": true,
    }));
    server.put_deployment(json!({"name": "cli-manual", "flow": "report"}));

    let out = flowkit(&["deployments"]).ok();
    assert_eq!(out.cell("cli-nightly", "FLOW"), "etl");
    assert_eq!(
        out.cell("cli-nightly", "SCHEDULE"),
        "0 2 * * * (Europe/Madrid)"
    );
    assert_eq!(out.cell("cli-nightly", "PAUSED"), "no");
    assert_eq!(
        out.cell("cli-hourly", "SCHEDULE"),
        "every 1h, 30 * * * * (UTC)"
    );
    assert_eq!(out.cell("cli-hourly", "PAUSED"), "yes");
    assert_eq!(out.cell("cli-hourly", "NEXT RUN"), "paused");
    assert_eq!(out.cell("cli-manual", "SCHEDULE"), "none (triggered only)");
    assert_eq!(out.cell("cli-manual", "NEXT RUN"), "-");

    // The next run is the server's first next run, in UTC, and how far off it is.
    let listed = flowkit(&["--json", "deployments"]).ok().json();
    let nightly = listed
        .as_array()
        .and_then(|all| all.iter().find(|d| d["name"] == "cli-nightly"))
        .unwrap_or_else(|| panic!("cli-nightly in {listed}"));
    assert_eq!(nightly["schedules"], json!(["0 2 * * * (Europe/Madrid)"]));
    let next: chrono::DateTime<chrono::Utc> = nightly["next_runs"][0]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("a next run in {nightly}"));
    let shown = out.cell("cli-nightly", "NEXT RUN");
    let expected = next.format("%Y-%m-%d %H:%MZ (in ").to_string();
    assert!(shown.starts_with(&expected), "{shown:?} vs {expected:?}");
}

#[test]
fn a_deployment_the_circuit_breaker_paused_says_which_automation_did() {
    let server = server();
    server.put_deployment(
        json!({"name": "cli-flaky", "flow": "etl", "schedules": [{"every": "1h"}]}),
    );
    // What the breaker does when a rule's runs keep failing (its own tests are the server's).
    block_on(async {
        let store = flowkit_server::Store::open(&server.database)
            .await
            .expect("the database opens");
        let paused = store.pause_by("cli-flaky", "automation:etl-breaker").await;
        assert!(paused.expect("the pause"), "it was not paused yet");
    });

    let out = flowkit(&["deployments"]).ok();
    assert_eq!(
        out.cell("cli-flaky", "PAUSED"),
        "yes, by automation:etl-breaker"
    );
    let shown = flowkit(&["deployment", "cli-flaky"]).ok();
    assert!(
        shown.stdout.contains("yes, by automation:etl-breaker"),
        "{}",
        shown.stdout
    );
}
