//! Deployments registered by a serving program, listed with their next and last runs; bad
//! registrations are 400s naming the field.

mod common;

use std::time::Duration;

use common::{BACKENDS, Server, TempDir};
use flowkit::flow;
use flowkit::serve::{Deployment, ScheduledRun};
use serde_json::json;

#[flow(name = "deployed-etl")]
async fn deployed_etl(day: chrono::NaiveDate) -> String {
    day.to_string()
}

async fn put(server: &Server, name: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .put(format!("{}/api/deployments/{name}", server.url))
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_serving_program_registers_its_deployments_with_the_server() {
    for backend in BACKENDS {
        let dir = TempDir::new("deployments");
        let database = backend.database_url(dir.path()).await;
        let server = Server::start_with(&database, 0, &[]).await;

        // The program serves, and registers its deployment at start.
        let nightly = Deployment::new("nightly", |run| deployed_etl(run.logical_date()))
            .cron("0 2 * * *")
            .time_zone("Europe/Madrid")
            .catchup(true);
        let serving = flowkit::serve::Server::new([nightly])
            .state_file(dir.path().join("serve.json"))
            .register_with(server.url.clone(), None);
        let _ = tokio::time::timeout(Duration::from_millis(500), serving.run()).await;

        // One of its runs streams to the server.
        let spool = TempDir::new("deployments-spool");
        let bus = server.bus(spool.path());
        let at = |text: &str| text.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let run = ScheduledRun::new("nightly", at("2026-11-27T01:00:00Z"))
            .with_interval(at("2026-11-26T01:00:00Z"), at("2026-11-27T01:00:00Z"));
        let day = run.logical_date();
        deployed_etl(day).scheduled(run).on(&bus).await.unwrap();
        bus.flush().await;

        let list = server.get("/api/deployments").await;
        let deployments = list.as_array().expect("a list");
        assert_eq!(deployments.len(), 1, "{backend:?}: {list}");
        let nightly = &deployments[0];
        assert_eq!(nightly["name"], "nightly");
        assert_eq!(nightly["flow"], "deployed-etl");
        assert_eq!(nightly["schedules"], json!(["0 2 * * * (Europe/Madrid)"]));
        assert_eq!(nightly["catchup"], true);
        assert_eq!(nightly["max_active_runs"], 1);
        let next = nightly["next_runs"].as_array().expect("next runs");
        assert_eq!(next.len(), 5);
        let first: chrono::DateTime<chrono::Utc> =
            next[0].as_str().unwrap().parse().expect("a time");
        assert!(first > chrono::Utc::now());
        // 02:00 in Madrid: 01:00 UTC in winter, 00:00 in summer.
        let utc = first.format("%H:%M").to_string();
        assert!(utc == "01:00" || utc == "00:00", "{first}");
        let last = nightly["last_runs"].as_array().expect("last runs");
        assert_eq!(last.len(), 1);
        assert_eq!(last[0]["state"], "Completed");
        assert_eq!(last[0]["interval_start"], "2026-11-26T01:00:00Z");
    }
}

/// The ids of deployment `nightly`'s runs for logical date `day`, newest first.
async fn runs_of_day(server: &Server, day: &str) -> Vec<String> {
    let path = format!("/api/flow_runs?deployment=nightly&logical_date={day}");
    let page = server.get(&path).await;
    let items = page["items"].as_array().unwrap_or_else(|| panic!("{page}"));
    items
        .iter()
        .map(|r| r["id"].as_str().unwrap().into())
        .collect()
}

#[tokio::test]
async fn a_deployments_runs_are_listed_by_logical_date() {
    for backend in BACKENDS {
        let dir = TempDir::new("logical-date");
        let database = backend.database_url(dir.path()).await;
        let server = Server::start_with(&database, 0, &[]).await;
        let spool = TempDir::new("logical-date-spool");
        let bus = server.bus(spool.path());
        let at = |text: &str| text.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        // Three nightly runs, each for the day before it is due, then one due on the 27th
        // with no interval (its logical date is the day it was due).
        let mut ids = Vec::new();
        for due in ["2026-11-27", "2026-11-28", "2026-11-29"] {
            let end = at(&format!("{due}T01:00:00Z"));
            let run = ScheduledRun::new("nightly", end)
                .with_interval(end - chrono::Days::new(1), end)
                .with_id(uuid::Uuid::now_v7());
            ids.push(run.id().unwrap().to_string());
            deployed_etl(run.logical_date())
                .scheduled(run)
                .on(&bus)
                .await
                .unwrap();
        }
        let adhoc =
            ScheduledRun::new("nightly", at("2026-11-27T15:00:00Z")).with_id(uuid::Uuid::now_v7());
        ids.push(adhoc.id().unwrap().to_string());
        deployed_etl(adhoc.logical_date())
            .scheduled(adhoc)
            .on(&bus)
            .await
            .unwrap();
        bus.flush().await;

        assert_eq!(runs_of_day(&server, "2026-11-26").await, [ids[0].clone()]);
        assert_eq!(
            runs_of_day(&server, "2026-11-27").await,
            [ids[3].clone(), ids[1].clone()],
            "{backend:?}: the interval's day, else the day it was due"
        );
        assert!(runs_of_day(&server, "2026-11-25").await.is_empty());
        let bad = reqwest::get(format!(
            "{}/api/flow_runs?logical_date=27.11.2026",
            server.url
        ))
        .await
        .expect("an answer");
        assert_eq!(bad.status(), 400);
        let body: serde_json::Value = bad.json().await.unwrap_or_default();
        assert_eq!(body["field"], "logical_date", "{body}");
    }
}

#[tokio::test]
async fn a_bad_registration_is_a_400_naming_the_field() {
    let dir = TempDir::new("bad-deployments");
    let server = Server::start(dir.path(), 0, &[]).await;
    let spec = |schedules: serde_json::Value, time_zone: &str| json!({"name": "nightly", "flow": "etl", "schedules": schedules, "time_zone": time_zone});
    let cases = [
        (
            "nightly",
            spec(json!([{"cron": "0 2 * *"}]), "UTC"),
            "schedules[0]",
        ),
        (
            "nightly",
            spec(json!([{"every": "1h"}, {"every": "soon"}]), "UTC"),
            "schedules[1]",
        ),
        (
            "nightly",
            spec(json!([{"cron": "0 2 * * *"}]), "Mars/Olympus"),
            "time_zone",
        ),
        ("weekly", spec(json!([]), "UTC"), "name"),
    ];
    for (name, body, field) in cases {
        let (status, answer) = put(&server, name, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert!(!answer["error"].as_str().unwrap_or("").is_empty());
    }
    let (status, answer) = put(&server, "nightly", json!({"name": "nightly"})).await;
    assert_eq!(status, 422, "a missing field: {answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("flow"),
        "{answer}"
    );
    assert_eq!(server.get("/api/deployments").await, json!([]));
}
