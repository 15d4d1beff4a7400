//! Triggering (parameters, idempotency keys, `--wait`), pausing, cancelling and workers,
//! against the server's orchestration.

use flowkit::State;
use serde_json::json;

use crate::common::{flowkit, flowkit_start, server};
use crate::worker::Worker;

/// A deployment taking `days` (an integer, required) and `region` (`eu` by default).
fn register_with_parameters(name: &str) {
    server().put_deployment(json!({
        "name": name, "flow": "report",
        "parameter_schema": {
            "type": "object",
            "properties": {
                "days": {"type": "integer", "description": "How many days to report"},
                "region": {"type": "string", "enum": ["eu", "us"], "default": "eu"},
            },
            "required": ["days"],
            "additionalProperties": false,
        },
    }));
}

#[test]
fn trigger_reads_params_as_json_and_the_server_refusing_one_is_exit_1_naming_it() {
    register_with_parameters("cli-params");
    // `days=3` is the number 3, so it fits the schema.
    let run = flowkit(&["--json", "trigger", "cli-params", "--param", "days=3"])
        .ok()
        .json();
    assert_eq!(run["parameters"], json!({"days": 3}), "{run}");
    assert_eq!(
        (run["created"].clone(), run["status"].clone()),
        (json!(true), json!("scheduled"))
    );
    assert_eq!(run["origin"], "trigger");

    // `--param` goes over `--params`; a quoted value is a string.
    let out = flowkit(&[
        "--json",
        "trigger",
        "cli-params",
        "--params",
        r#"{"days": 1, "region": "us"}"#,
        "--param",
        r#"region="eu""#,
    ])
    .ok();
    assert_eq!(out.json()["parameters"], json!({"days": 1, "region": "eu"}));

    let text = flowkit(&["trigger", "cli-params", "--param", "days=7"]).ok();
    assert!(
        text.stdout.starts_with("Triggered cli-params: run "),
        "{text}"
    );
    assert!(text.stdout.contains(" is scheduled, due now."), "{text}");

    // A value that is not JSON is a string, which is not an integer.
    let bad = flowkit(&["trigger", "cli-params", "--param", "days=three"]).expect_code(1);
    assert!(
        bad.stderr.contains("`parameters.days` (--param days)"),
        "{bad}"
    );
    let missing = flowkit(&["trigger", "cli-params", "--param", "region=us"]).expect_code(1);
    assert!(missing.stderr.contains("`parameters.days`"), "{missing}");
    let unknown = flowkit(&[
        "trigger",
        "cli-params",
        "--param",
        "days=1",
        "--param",
        "colour=red",
    ])
    .expect_code(1);
    assert!(
        unknown
            .stderr
            .contains("`parameters.colour` (--param colour)"),
        "{unknown}"
    );
    let nowhere = flowkit(&["trigger", "cli-no-such-deployment"]).expect_code(1);
    assert!(nowhere.stderr.contains("not found"), "{nowhere}");
}

#[test]
fn the_same_idempotency_key_twice_gives_the_same_run() {
    server().put_deployment(json!({"name": "cli-idempotent", "flow": "load"}));
    let first = flowkit(&[
        "--json",
        "trigger",
        "cli-idempotent",
        "--key",
        "load-2024-01-01",
    ])
    .ok()
    .json();
    let id = first["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {first}"));
    let again = flowkit(&["trigger", "cli-idempotent", "--key", "load-2024-01-01"]).ok();
    assert!(again.stdout.contains(id), "{again}");
    assert!(again.stdout.contains("not triggered again"), "{again}");
    let third = flowkit(&[
        "--json",
        "trigger",
        "cli-idempotent",
        "--key",
        "load-2024-01-01",
    ])
    .ok()
    .json();
    assert_eq!(
        (third["id"].as_str(), &third["created"]),
        (Some(id), &json!(false))
    );
    let other = flowkit(&[
        "--json",
        "trigger",
        "cli-idempotent",
        "--key",
        "load-2024-01-02",
    ])
    .ok()
    .json();
    assert_ne!(other["id"].as_str(), Some(id));
    assert_eq!(other["created"], true);
}

#[test]
fn pause_and_resume_show_in_deployments() {
    server().put_deployment(json!({
        "name": "cli-pausable", "flow": "sync", "schedules": [{"every": "1h"}],
    }));
    let paused = flowkit(&["pause", "cli-pausable"]).ok();
    assert!(
        paused.stdout.starts_with("Paused cli-pausable:"),
        "{paused}"
    );
    let list = flowkit(&["deployments"]).ok();
    assert_eq!(list.cell("cli-pausable", "PAUSED"), "yes");
    assert_eq!(list.cell("cli-pausable", "NEXT RUN"), "paused");
    let detail = flowkit(&["--json", "deployment", "cli-pausable"])
        .ok()
        .json();
    assert_eq!(
        (&detail["paused"], &detail["next_runs"]),
        (&json!(true), &json!([]))
    );

    let resumed = flowkit(&["resume", "cli-pausable"]).ok();
    assert!(
        resumed
            .stdout
            .starts_with("Resumed cli-pausable: next run "),
        "{resumed}"
    );
    let list = flowkit(&["deployments"]).ok();
    assert_eq!(list.cell("cli-pausable", "PAUSED"), "no");
    assert!(
        list.cell("cli-pausable", "NEXT RUN").contains("(in "),
        "{list}"
    );

    let nowhere = flowkit(&["pause", "cli-no-such-deployment"]).expect_code(1);
    assert!(nowhere.stderr.contains("not found"), "{nowhere}");
}

#[test]
fn cancelling_a_scheduled_run_makes_it_cancelled() {
    server().put_deployment(json!({"name": "cli-cancel", "flow": "load"}));
    let run = flowkit(&["--json", "trigger", "cli-cancel", "--at", "+1h"])
        .ok()
        .json();
    let id = run["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {run}"))
        .to_string();
    // It waits among the deployment's upcoming runs.
    let detail = flowkit(&["deployment", "cli-cancel"]).ok();
    let upcoming = detail
        .stdout
        .split("Upcoming runs:")
        .nth(1)
        .unwrap_or_else(|| panic!("upcoming runs in\n{detail}"));
    assert!(upcoming.contains(&id), "{detail}");

    let cancelled = flowkit(&["cancel", &id]).ok();
    assert_eq!(cancelled.stdout.trim(), format!("Cancelled run {id}."));
    let runs = flowkit(&["runs", "--deployment", "cli-cancel"]).ok();
    assert_eq!(runs.cell(&id, "STATE"), "Cancelled");
    let detail = flowkit(&["deployment", "cli-cancel"]).ok();
    assert!(!detail.stdout.contains("Upcoming runs:"), "{detail}");
    let again = flowkit(&["--json", "cancel", &id]).ok().json();
    assert_eq!(again, json!({"id": id, "state": "Cancelled"}));
    let unknown = flowkit(&["cancel", &uuid::Uuid::now_v7().to_string()]).expect_code(1);
    assert!(unknown.stderr.contains("not found"), "{unknown}");
}

#[test]
fn trigger_wait_follows_the_run_and_exits_4_when_it_fails() {
    server().put_deployment(json!({"name": "cli-wait", "flow": "load"}));
    let worker = Worker::new("cli-test-worker", "cli-wait");

    let mut waiting = flowkit_start(&["trigger", "cli-wait", "--wait"]);
    let run = worker.claim(&[]);
    worker.report(run.id, State::Running, None);
    // The worker holds the run: `workers` shows it.
    let workers = flowkit(&["workers"]).ok();
    assert_eq!(workers.cell("cli-test-worker", "HOST"), "test-host");
    assert_eq!(workers.cell("cli-test-worker", "QUEUES"), "all");
    assert_eq!(workers.cell("cli-test-worker", "RUNS"), "1");
    assert_eq!(workers.cell("cli-test-worker", "STATE"), "online");
    assert!(waiting.running(), "--wait returned while its run ran");
    worker.report(run.id, State::Completed, None);
    let done = waiting.finish().ok();
    assert!(done.stdout.contains(&run.id.to_string()), "{done}");
    assert!(done.stderr.contains("Completed after "), "{done}");

    let waiting = flowkit_start(&["trigger", "cli-wait", "--wait"]);
    let run = worker.claim(&[]);
    worker.report(run.id, State::Running, None);
    worker.report(run.id, State::Failed, Some("no data for 2024-01-01"));
    let failed = waiting.finish().expect_code(4);
    assert!(
        failed.stderr.contains(&format!(
            "run {} ended Failed: no data for 2024-01-01",
            run.id
        )),
        "{failed}"
    );
}

#[test]
fn runs_retry_hands_a_failed_run_back_to_a_worker_as_a_resume_and_refuses_a_live_one() {
    server().put_deployment(json!({"name": "cli-retry", "flow": "load"}));
    let worker = Worker::new("cli-retry-worker", "cli-retry");
    let triggered = flowkit(&["trigger", "cli-retry", "--json"]).ok().json();
    let id = triggered["id"].as_str().expect("an id").to_string();
    let run = worker.claim(&[]);
    assert_eq!(run.id.to_string(), id);
    assert!(!run.resume);
    worker.report(run.id, State::Running, None);
    let refused = flowkit(&["runs", "retry", &id]).expect_code(1);
    assert!(
        refused.stderr.contains("has not ended") && refused.stderr.contains("cancel it first"),
        "{refused}"
    );
    worker.report(run.id, State::Failed, Some("no data for 2024-01-01"));

    let retried = flowkit(&["runs", "retry", &id]).ok();
    assert!(
        retried.stdout.contains(&format!(
            "Retrying run {id} from where it failed: attempt 2, Scheduled for a worker of cli-retry."
        )),
        "{retried}"
    );
    // The same flow run, handed out again as a resume.
    let again = worker.claim(&[]);
    assert_eq!((again.id, again.attempt, again.resume), (run.id, 2, true));
    let mut waiting = flowkit_start(&["runs", "retry", &id, "--wait"]);
    let busy = waiting.finish().expect_code(1);
    assert!(busy.stderr.contains("has not ended"), "{busy}");
    worker.report_attempt(run.id, State::Running, 2, None);
    worker.report_attempt(run.id, State::Completed, 2, None);
    let runs = flowkit(&["runs", "--deployment", "cli-retry"]).ok();
    assert_eq!(runs.cell(&id, "STATE"), "Completed", "{runs}");
    waiting = flowkit_start(&["runs", "retry", &id]);
    let done = waiting.finish().expect_code(1);
    assert!(
        done.stderr.contains(&format!(
            "error: the server refused `state`: flow run {id} is Completed: there is nothing to resume (HTTP 409 from POST /api/flow_runs/{id}/retry)"
        )),
        "{done}"
    );

    flowkit(&["runs", "retry", "not-a-run"]).expect_code(2);
    let unknown = flowkit(&["runs", "retry", &uuid::Uuid::now_v7().to_string()]).expect_code(1);
    assert!(unknown.stderr.contains("not found"), "{unknown}");
}

#[test]
fn deployment_shows_its_parameters_schema_and_defaults() {
    register_with_parameters("cli-detail");
    let out = flowkit(&["deployment", "cli-detail"]).ok();
    assert_eq!(out.stdout.lines().next(), Some("cli-detail"), "{out}");
    let field = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .map(|l| {
                l.split("  ")
                    .filter(|c| !c.is_empty())
                    .map(str::trim)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
    };
    assert_eq!(
        field("days"),
        ["days", "integer", "yes", "How many days to report"]
    );
    assert_eq!(
        field("region"),
        ["region", r#"one of "eu", "us""#, "no", r#""eu""#]
    );
    assert_eq!(field("flow"), ["flow", "report"]);
    assert_eq!(field("paused"), ["paused", "no"]);
    let nowhere = flowkit(&["deployment", "cli-no-such-deployment"]).expect_code(1);
    assert!(nowhere.stderr.contains("not found"), "{nowhere}");
}
