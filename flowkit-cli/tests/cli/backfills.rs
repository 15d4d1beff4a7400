//! Backfills followed to their end with a worker played by the test, the gap report, the
//! backfill list and calendar, re-running the failed intervals, cancelling a backfill.

use chrono::{DateTime, Utc};
use flowkit::State;
use serde_json::json;

use crate::common::{flowkit, flowkit_start, server};
use crate::worker::Worker;

fn day(text: &str) -> DateTime<Utc> {
    format!("{text}T00:00:00Z").parse().expect("a day")
}

/// Claims `n` runs and ends each: Failed when its interval starts on `failing`, else Completed.
fn work_through(worker: &Worker, n: usize, failing: Option<DateTime<Utc>>) {
    for _ in 0..n {
        let run = worker.claim(&[]);
        worker.report(run.id, State::Running, None);
        if failing.is_some() && run.interval_start == failing {
            worker.report(run.id, State::Failed, Some("the source had no rows"));
        } else {
            worker.report(run.id, State::Completed, None);
        }
    }
}

#[test]
fn backfill_wait_follows_every_interval_then_prints_the_gap_report() {
    server().put_deployment(json!({
        "name": "cli-backfill", "flow": "etl", "schedules": [{"cron": "0 0 * * *"}],
    }));
    let worker = Worker::new("cli-backfill-worker", "cli-backfill");
    let waiting = flowkit_start(&[
        "backfill",
        "cli-backfill",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-06",
        "--max-active",
        "2",
        "--wait",
    ]);
    work_through(&worker, 5, Some(day("2024-01-03")));
    let out = waiting.finish().expect_code(4);
    let headline = out.stdout.lines().next().unwrap_or_default();
    assert!(headline.starts_with("Backfill "), "{out}");
    assert!(
        headline.ends_with(
            " of cli-backfill: 2024-01-01 → 2024-01-06, 5 intervals, at most 2 at once (running)."
        ),
        "{out}"
    );
    let id = headline
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    // Progress on stderr, the gap report on stdout.
    assert!(out.stderr.contains("5 of 5 ended"), "{out}");
    let failed_row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("2024-01-03"))
        .unwrap_or_else(|| panic!("the failed day in\n{out}"));
    assert!(failed_row.contains("Failed"), "{out}");
    assert!(
        out.stdout.contains("5 intervals: 4 completed, 1 failed\n"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("1 of 5 intervals have no successful run"),
        "{out}"
    );

    // The gap report of a wider range shows the days no run was made for.
    let gaps = flowkit(&[
        "gaps",
        "cli-backfill",
        "--from",
        "2023-12-30",
        "--to",
        "2024-01-06",
    ])
    .ok();
    assert_eq!(gaps.cell("2023-12-30", "STATE"), "missing");
    assert_eq!(gaps.cell("2023-12-31", "STATE"), "missing");
    assert_eq!(gaps.cell("2024-01-03", "STATE"), "Failed");
    assert_eq!(gaps.stdout.lines().count(), 5, "{gaps}");
    assert!(
        gaps.stdout
            .ends_with("7 intervals: 4 completed, 1 failed, 2 missing\n"),
        "{gaps}"
    );
    let report = flowkit(&[
        "--json",
        "gaps",
        "cli-backfill",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-06",
    ])
    .ok()
    .json();
    let states: Vec<&str> = report
        .as_array()
        .map(|all| all.iter().filter_map(|i| i["state"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        states,
        ["Completed", "Completed", "Failed", "Completed", "Completed"]
    );

    // The list, and the backfill with its calendar.
    let list = flowkit(&["backfills"]).ok();
    assert_eq!(list.cell(&id, "DEPLOYMENT"), "cli-backfill");
    assert_eq!(list.cell(&id, "STATUS"), "done");
    assert_eq!(list.cell(&id, "PROGRESS"), "4/5 completed, 1 failed");
    let one = flowkit(&["backfills", &id]).ok();
    assert!(one.stdout.contains("\n2024-01  ✓✓✗✓✓\n"), "{one}");
    assert!(one.stdout.contains("✓ completed  ✗ failed"), "{one}");

    // Again, only the failed interval; then no gaps are left.
    let waiting = flowkit_start(&[
        "backfill",
        "cli-backfill",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-06",
        "--rerun-failed",
        "--wait",
    ]);
    work_through(&worker, 1, None);
    let rerun = waiting.finish().ok();
    assert!(rerun.stdout.contains(", 1 interval, "), "{rerun}");
    assert!(
        rerun.stdout.contains("No gaps. 5 intervals: 5 completed\n"),
        "{rerun}"
    );
}

#[test]
fn a_cancelled_backfill_runs_nothing_more() {
    // Chunks of two days over a deployment without a schedule.
    server().put_deployment(json!({"name": "cli-backfill-cancel", "flow": "etl"}));
    let started = flowkit(&[
        "--json",
        "backfill",
        "cli-backfill-cancel",
        "--from",
        "2024-02-01",
        "--to",
        "2024-02-07",
        "--chunk",
        "2d",
    ])
    .ok()
    .json();
    let id = started["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {started}"))
        .to_string();
    let intervals = started["intervals"].as_array().map(Vec::len);
    assert_eq!(intervals, Some(3), "{started}");

    let cancelled = flowkit(&["cancel", "--backfill", &id]).ok();
    assert!(
        cancelled
            .stdout
            .starts_with(&format!("Cancelled backfill {id}")),
        "{cancelled}"
    );
    assert!(
        cancelled
            .stdout
            .contains("3 intervals: 0 completed, 3 cancelled"),
        "{cancelled}"
    );
    let one = flowkit(&["backfills", &id]).ok();
    assert!(one.stdout.contains("\n2024-02  ⊘ ⊘ ⊘\n"), "{one}");
    let gaps = flowkit(&[
        "gaps",
        "cli-backfill-cancel",
        "--from",
        "2024-02-01",
        "--to",
        "2024-02-07",
        "--chunk",
        "2d",
    ])
    .ok();
    assert_eq!(
        gaps.cell("2024-02-03", "INTERVAL"),
        "2024-02-03 → 2024-02-05"
    );
    assert_eq!(gaps.cell("2024-02-03", "STATE"), "Cancelled");
    assert!(
        gaps.stdout
            .ends_with("3 intervals: 0 completed, 3 cancelled\n"),
        "{gaps}"
    );

    // Without a schedule or a chunk there are no intervals: the server says which option.
    let no_chunk = flowkit(&[
        "gaps",
        "cli-backfill-cancel",
        "--from",
        "2024-02-01",
        "--to",
        "2024-02-07",
    ])
    .expect_code(1);
    assert!(no_chunk.stderr.contains("`chunk` (--chunk)"), "{no_chunk}");
}
