//! Finding what went wrong through the API, on SQLite and PostgreSQL: run names searched, task
//! runs counted by state per flow run, the "with failed tasks" filter, several states at once
//! in any case, and errors that name the problem (unknown runs, routes, methods, bad times).

mod common;

use common::{BACKENDS, Server, TempDir};
use flowkit::{flow, task};
use serde_json::Value;

#[task]
async fn check_row(i: u32) -> Result<u32, String> {
    if i == 2 {
        return Err(format!("row {i} is malformed"));
    }
    Ok(i)
}

/// Completes even though one of its task runs fails: the failure is handled.
#[flow(name = "api-daily", run_name = "daily-{day}")]
async fn daily(day: String, bad_rows: bool) -> usize {
    tracing::info!("checking the rows of {day}");
    let rows = if bad_rows { vec![1, 2, 3] } else { vec![1, 3] };
    let checked = flowkit::map(rows, check_row).await;
    checked.iter().filter(|r| r.is_ok()).count()
}

#[flow(name = "api-failing")]
async fn failing() -> Result<u32, flowkit::RunError<String>> {
    check_row(2).await
}

#[flow(name = "api-crashing")]
async fn crashing() {
    panic!("the flow body exploded");
}

async fn status_and_body(url: String, method: reqwest::Method) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn run_names(page: &Value) -> Vec<String> {
    let mut names: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["run_name"].as_str().unwrap_or("?").to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_named_counted_and_filtered_by_failures() {
    for backend in BACKENDS {
        let dir = TempDir::new("findings-api");
        let server = Server::start_with(&backend.database_url(dir.path()).await, 0, &[]).await;
        let spool = TempDir::new("findings-api-spool");
        let bus = server.bus(spool.path());
        daily("2026-11-01".into(), false).on(&bus).await.unwrap();
        daily("2026-11-02".into(), true).on(&bus).await.unwrap();
        assert!(failing().on(&bus).await.is_err());
        assert!(crashing().on(&bus).await.is_err());
        bus.flush().await;

        // The name: templated, stored, listed and searched (and a generated one otherwise).
        let found = server.get("/api/flow_runs?q=daily-2026-11-02").await;
        assert_eq!(
            run_names(&found),
            ["daily-2026-11-02"],
            "{backend:?}: {found}"
        );
        let by_parameter = server.get("/api/flow_runs?q=2026-11-01").await;
        assert_eq!(
            run_names(&by_parameter),
            ["daily-2026-11-01"],
            "{backend:?}"
        );
        let failing_run = &server.get("/api/flow_runs?flow=api-failing").await["items"][0];
        let generated = failing_run["run_name"].as_str().expect("a generated name");
        assert_eq!(generated.split('-').count(), 2, "{generated}");
        let by_generated = server
            .get(&format!("/api/flow_runs?q={generated}&flow=api-failing"))
            .await;
        assert_eq!(by_generated["items"].as_array().unwrap().len(), 1);

        // Task runs by state on each flow run of the page.
        let all = server.get("/api/flow_runs?flow=api-daily").await;
        let counts: Vec<Value> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["task_counts"].clone())
            .collect();
        assert!(
            counts.contains(&serde_json::json!({"Completed": 2, "Failed": 1}))
                && counts.contains(&serde_json::json!({"Completed": 2})),
            "{backend:?}: {counts:?}"
        );

        // The grid: each run's task runs by task and state.
        let grid = server.get("/api/flows/api-daily/grid").await;
        assert_eq!(
            grid["tasks"],
            serde_json::json!(["check_row"]),
            "{backend:?}: {grid}"
        );
        let mut cells: Vec<(String, i64)> = grid["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["state"].as_str().unwrap().to_string(),
                    c["count"].as_i64().unwrap(),
                )
            })
            .collect();
        cells.sort();
        assert_eq!(
            cells,
            [
                ("Completed".to_string(), 2),
                ("Completed".to_string(), 2),
                ("Failed".to_string(), 1)
            ],
            "{backend:?}"
        );

        // "With failed tasks": the completed run with a failed task, and the failed one.
        let with_failures = server.get("/api/flow_runs?failed_tasks=true").await;
        let states: Vec<(String, String)> = with_failures["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [
                ("api-failing".to_string(), "Failed".to_string()),
                ("api-daily".to_string(), "Completed".to_string())
            ],
            "{backend:?}"
        );

        // Several states, in any case.
        let failed_or_crashed = server.get("/api/flow_runs?state=failed,CRASHED").await;
        let names: Vec<&str> = failed_or_crashed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["api-crashing", "api-failing"], "{backend:?}");
        let (status, body) = status_and_body(
            format!("{}/api/flow_runs?state=Failed,Broken", server.url),
            reqwest::Method::GET,
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["field"], "state");
        assert!(
            body["error"].as_str().unwrap().contains("\"Broken\""),
            "{body}"
        );

        // The logs of a run the server does not have: 404, like its states.
        let unknown = uuid::Uuid::now_v7();
        for path in ["logs", "states"] {
            let (status, body) = status_and_body(
                format!("{}/api/flow_runs/{unknown}/{path}", server.url),
                reqwest::Method::GET,
            )
            .await;
            assert_eq!(status, 404, "{path}: {body}");
            assert!(body["error"].as_str().unwrap().contains("not found"));
        }
        // Unknown routes and wrong methods answer JSON.
        let (status, body) =
            status_and_body(format!("{}/api/nope", server.url), reqwest::Method::GET).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"], "route /api/nope not found");
        let (status, body) = status_and_body(
            format!("{}/api/flow_runs", server.url),
            reqwest::Method::DELETE,
        )
        .await;
        assert_eq!(status, 405);
        assert_eq!(body["error"], "/api/flow_runs does not answer DELETE");
        // A bad time names its field and the format wanted.
        let (status, body) = status_and_body(
            format!("{}/api/flow_runs?since=yesterday", server.url),
            reqwest::Method::GET,
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["field"], "since");
        assert!(
            body["error"].as_str().unwrap().contains("RFC 3339"),
            "{body}"
        );
        // Every list route refuses an unknown parameter alike, naming it; a bad time in any of
        // them names its field and RFC 3339.
        for path in [
            "/api/flow_runs?colour=red",
            "/api/deployments/nightly/runs?colour=red",
            "/api/deployments/nightly/gaps?start=2026-11-01T00:00:00Z&end=2026-11-02T00:00:00Z&colour=red",
        ] {
            let (status, body) =
                status_and_body(format!("{}{path}", server.url), reqwest::Method::GET).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert_eq!(body["field"], "colour", "{path}: {body}");
        }
        let (status, body) = status_and_body(
            format!(
                "{}/api/deployments/nightly/gaps?start=monday&end=2026-11-02T00:00:00Z",
                server.url
            ),
            reqwest::Method::GET,
        )
        .await;
        assert_eq!(
            (status, &body["field"]),
            (400, &Value::from("start")),
            "{body}"
        );
        assert!(
            body["error"].as_str().unwrap().contains("RFC 3339"),
            "{body}"
        );
        // The runtime's own lines reach the server: the failed task's end, at ERROR.
        let failing_id = failing_run["id"].as_str().unwrap();
        let logs = server
            .get(&format!("/api/flow_runs/{failing_id}/logs?min_level=error"))
            .await;
        let messages: Vec<&str> = logs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        assert!(
            messages.contains(&"Finished in state Failed after 1 attempt: row 2 is malformed"),
            "{backend:?}: {messages:?}"
        );
    }
}

/// The activity chart counts a run where it started: a backfill queued three days ago whose run
/// started an hour ago is in the last bucket of the last day, not missing from the window; a
/// run made an hour ago and not started yet counts where it was made.
#[tokio::test]
async fn activity_counts_runs_where_they_started() {
    use chrono::{Duration, Utc};
    use flowkit::State;
    use flowkit::events::{Event, EventKind, RunType, StateChanged};
    use uuid::Uuid;

    for backend in BACKENDS {
        let dir = TempDir::new("activity");
        let store = flowkit_server::Store::open(&backend.database_url(dir.path()).await)
            .await
            .unwrap();
        let now = Utc::now();
        let event = |run: Uuid, at: chrono::DateTime<Utc>, kind: EventKind| Event {
            id: Uuid::now_v7(),
            timestamp: at,
            flow_run_id: Some(run),
            task_run_id: None,
            kind,
        };
        let state = |state| {
            EventKind::StateChanged(StateChanged {
                state,
                attempt: 1,
                message: None,
                next_attempt_at: None,
                result: None,
            })
        };
        let (queued, waiting) = (Uuid::now_v7(), Uuid::now_v7());
        store
            .ingest(&[
                event(
                    queued,
                    now - Duration::days(3),
                    common::run_created(RunType::Flow, "backfilled", 0),
                ),
                event(queued, now - Duration::hours(1), state(State::Running)),
                event(queued, now - Duration::minutes(30), state(State::Completed)),
                event(
                    waiting,
                    now - Duration::hours(7),
                    common::run_created(RunType::Flow, "backfilled", 0),
                ),
            ])
            .await
            .unwrap();
        let activity = store
            .flow_activity(now - Duration::days(1), now, 4)
            .await
            .unwrap();
        assert_eq!(activity.flows.len(), 1, "{backend:?}");
        let buckets = &activity.flows[0].buckets;
        assert_eq!(
            buckets[3].get("Completed"),
            Some(&1),
            "{backend:?}: {buckets:?}"
        );
        assert_eq!(
            buckets[2].get("Pending"),
            Some(&1),
            "{backend:?}: {buckets:?}"
        );
        assert_eq!(
            buckets.iter().flat_map(|b| b.values()).sum::<i64>(),
            2,
            "{backend:?}: {buckets:?}"
        );
    }
}
