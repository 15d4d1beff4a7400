//! `flowkit runs`: flow runs that a program streamed to the server, filtered; a filter the
//! server refuses is exit 1 naming the field and the option.

use chrono::{DateTime, TimeDelta, Utc};
use flowkit::serve::ScheduledRun;
use flowkit::{EventBus, HttpSink, flow};
use serde_json::json;

use crate::common::{API_KEY, TempDir, block_on, flowkit, server};

#[flow(name = "cli-etl")]
async fn cli_etl(day: chrono::NaiveDate, fail: bool) -> Result<String, String> {
    if fail {
        Err(format!("no data for {day}"))
    } else {
        Ok(day.to_string())
    }
}

/// Runs `cli-etl` as `deployment`'s scheduled run of each day (failing where told), one after
/// the other, its events streamed to the test server.
pub fn run_days(deployment: &str, days: &[(&str, bool)]) {
    block_on(async {
        let spool = TempDir::new("spool");
        let bus = EventBus::builder()
            .sink(
                HttpSink::builder(&server().url)
                    .api_key(API_KEY)
                    .spool_dir(spool.path())
                    .build(),
            )
            .build();
        for (day, fail) in days {
            let start: DateTime<Utc> = format!("{day}T00:00:00Z").parse().expect("a day");
            let end = start + TimeDelta::days(1);
            let run = ScheduledRun::new(deployment, end).with_interval(start, end);
            let _ = cli_etl(run.logical_date(), *fail)
                .scheduled(run)
                .on(&bus)
                .await;
        }
        bus.flush().await;
    });
}

#[test]
fn runs_lists_a_deployments_runs_newest_first_and_filters_by_state() {
    // No schedule: the server makes no runs of its own for it.
    server().put_deployment(json!({"name": "cli-runs", "flow": "cli-etl"}));
    run_days(
        "cli-runs",
        &[
            ("2024-01-01", false),
            ("2024-01-02", true),
            ("2024-01-03", false),
        ],
    );

    let out = flowkit(&["runs", "--deployment", "cli-runs"]).ok();
    let rows: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{out}");
    let ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    let cells: Vec<(String, String, String, String)> = ids
        .iter()
        .map(|id| {
            (
                out.cell(id, "FLOW"),
                out.cell(id, "DEPLOYMENT"),
                out.cell(id, "STATE"),
                out.cell(id, "INTERVAL"),
            )
        })
        .collect();
    let expected = [
        ("Completed", "2024-01-03"),
        ("Failed", "2024-01-02"),
        ("Completed", "2024-01-01"),
    ];
    for ((flow, deployment, state, interval), (want_state, want_day)) in cells.iter().zip(expected)
    {
        assert_eq!(
            (
                flow.as_str(),
                deployment.as_str(),
                state.as_str(),
                interval.as_str()
            ),
            ("cli-etl", "cli-runs", want_state, want_day),
            "{out}"
        );
    }

    // The same runs as the server's JSON.
    let page = flowkit(&["--json", "runs", "--deployment", "cli-runs"])
        .ok()
        .json();
    let json_ids: Vec<&str> = page["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(json_ids, ids);

    // A state in any case; and a limit.
    let failed = flowkit(&["runs", "--deployment", "cli-runs", "--state", "failed"]).ok();
    assert_eq!(failed.stdout.lines().count(), 2, "{failed}");
    assert_eq!(failed.cell(ids[1], "STATE"), "Failed");
    let one = flowkit(&["runs", "--deployment", "cli-runs", "--limit", "1"]).ok();
    assert_eq!(
        one.stdout.lines().nth(1).map(|r| r.starts_with(ids[0])),
        Some(true),
        "{one}"
    );
    assert!(one.stdout.contains("--limit shows more"), "{one}");

    // The deployment's last runs, oldest to newest.
    let deployments = flowkit(&["deployments"]).ok();
    assert_eq!(deployments.cell("cli-runs", "LAST RUNS"), "✓✗✓");
    assert!(
        deployments.stdout.contains("✓ completed  ✗ failed"),
        "{deployments}"
    );
}

#[test]
fn a_filter_the_server_refuses_is_exit_1_naming_the_field_and_option() {
    let limit = flowkit(&["runs", "--limit", "0"]).expect_code(1);
    assert!(limit.stderr.contains("`limit` (--limit)"), "{limit}");
    assert!(limit.stderr.contains("must be 1 to 1000"), "{limit}");
    let state = flowkit(&["runs", "--state", "Sleeping"]).expect_code(1);
    assert!(state.stderr.contains("`state` (--state)"), "{state}");
    assert!(state.stderr.contains("Completed"), "{state}");
}
