//! Deployments served in-process, on tokio's paused clock: schedules, catchup after downtime,
//! `max_active_runs`, the data interval in the run context, and the state file across restarts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

mod common;

use chrono::{DateTime, Utc};
use flowkit::flow;
use flowkit::serve::{Backfill, Deployment, ScheduledRun, ServeError, Server};

/// What the runs of each deployment saw: their scheduled run, and how many ran at once.
#[derive(Default)]
struct Seen {
    runs: Vec<ScheduledRun>,
    active: usize,
    most_active: usize,
}

static SEEN: Mutex<Option<HashMap<String, Seen>>> = Mutex::new(None);

fn with_seen<R>(deployment: &str, f: impl FnOnce(&mut Seen) -> R) -> R {
    let mut seen = SEEN.lock().unwrap();
    f(seen
        .get_or_insert_with(HashMap::new)
        .entry(deployment.to_string())
        .or_default())
}

/// Records its scheduled run, then works for `work_secs` (virtual) seconds.
#[flow]
async fn record(work_secs: u64) {
    let ctx = flowkit::context().expect("inside a flow");
    let run = ctx.scheduled().expect("a scheduled run").clone();
    let name = run.deployment().to_string();
    with_seen(&name, |s| {
        s.runs.push(run);
        s.active += 1;
        s.most_active = s.most_active.max(s.active);
    });
    tokio::time::sleep(Duration::from_secs(work_secs)).await;
    with_seen(&name, |s| s.active -= 1);
}

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A state file in a fresh directory, removed with the directory at the test's end.
fn state_file(tag: &str) -> (common::TempDir, PathBuf) {
    let dir = common::TempDir::new(&format!("serve-test-{tag}"));
    let file = dir.join("serve.json");
    (dir, file)
}

/// Serves `deployment` from `start` for `for_secs` seconds of virtual time.
async fn serve_for(deployment: Deployment, state: &PathBuf, start: &str, for_secs: u64) {
    let server = Server::new([deployment])
        .state_file(state)
        .virtual_time_from(utc(start));
    let served = tokio::time::timeout(Duration::from_secs(for_secs), server.run()).await;
    assert!(served.is_err(), "serving goes on until stopped: {served:?}");
}

fn scheduled_times(deployment: &str) -> Vec<String> {
    with_seen(deployment, |s| {
        s.runs
            .iter()
            .map(|r| r.scheduled_at().format("%H:%M").to_string())
            .collect()
    })
}

/// Writes a state file saying `deployment` last ran at `at`.
fn last_ran(state: &PathBuf, deployment: &str, at: &str) {
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(
        state,
        format!(r#"{{"last_scheduled": {{"{deployment}": "{at}"}}}}"#),
    )
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn runs_start_when_due_with_their_data_interval() {
    let (_dir, state) = state_file("due");
    let deployment = Deployment::new("due", |_| record(0)).every("15m");
    serve_for(deployment, &state, "2026-11-27T10:05:00Z", 50 * 60).await;
    assert_eq!(scheduled_times("due"), ["10:15", "10:30", "10:45"]);
    let first = with_seen("due", |s| s.runs[0].clone());
    assert_eq!(
        first.interval(),
        Some((utc("2026-11-27T10:00:00Z"), utc("2026-11-27T10:15:00Z")))
    );
    assert_eq!(first.logical_date().to_string(), "2026-11-27");
    // The state file remembers the last one.
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("2026-11-27T10:45:00Z"), "{saved}");
}

#[tokio::test(start_paused = true)]
async fn catchup_runs_exactly_the_missed_intervals_oldest_first_within_max_active_runs() {
    let (_dir, state) = state_file("catchup");
    // The program last ran the 10:00 run, then was down for three intervals.
    last_ran(&state, "catchup", "2026-11-27T10:00:00Z");
    let deployment = Deployment::new("catchup", |_| record(60))
        .every("15m")
        .catchup(true)
        .max_active_runs(2);
    // Back at 10:50: 10:15, 10:30 and 10:45 were missed; 11:00 comes on time.
    serve_for(deployment, &state, "2026-11-27T10:50:00Z", 11 * 60).await;
    assert_eq!(
        scheduled_times("catchup"),
        ["10:15", "10:30", "10:45", "11:00"]
    );
    assert_eq!(
        with_seen("catchup", |s| s.most_active),
        2,
        "never more than 2 at once"
    );
}

#[tokio::test(start_paused = true)]
async fn without_catchup_only_the_latest_missed_interval_runs() {
    let (_dir, state) = state_file("latest");
    last_ran(&state, "latest", "2026-11-27T10:00:00Z");
    let deployment = Deployment::new("latest", |_| record(0)).every("15m");
    serve_for(deployment, &state, "2026-11-27T10:50:00Z", 60).await;
    assert_eq!(scheduled_times("latest"), ["10:45"]);
}

#[tokio::test(start_paused = true)]
async fn a_due_run_waits_for_the_one_before_it_with_one_active_run() {
    let (_dir, state) = state_file("serial");
    // Each run takes 20 minutes; one runs at a time, so they start late but in order.
    let deployment = Deployment::new("serial", |_| record(20 * 60)).every("15m");
    serve_for(deployment, &state, "2026-11-27T10:00:30Z", 61 * 60).await;
    assert_eq!(scheduled_times("serial"), ["10:15", "10:30", "10:45"]);
    assert_eq!(with_seen("serial", |s| s.most_active), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_program_catches_up_from_its_state_file() {
    let (_dir, state) = state_file("restart");
    let deployment = || {
        Deployment::new("restart", |_| record(0))
            .every("1h")
            .catchup(true)
    };
    serve_for(deployment(), &state, "2026-11-27T09:30:00Z", 45 * 60).await;
    assert_eq!(scheduled_times("restart"), ["10:00"]);
    // Down from 10:15 to 13:30; started again, it runs 11:00, 12:00 and 13:00.
    serve_for(deployment(), &state, "2026-11-27T13:30:00Z", 60).await;
    assert_eq!(
        scheduled_times("restart"),
        ["10:00", "11:00", "12:00", "13:00"]
    );
}

/// What `tracing` logs on this thread while it is alive (the tests' runtime has one thread).
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// The lines that contain `text`.
    fn lines(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(text))
            .map(String::from)
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl tracing_subscriber::fmt::MakeWriter<'_> for Logs {
    type Writer = Logs;

    fn make_writer(&self) -> Logs {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_state_file_is_a_warning_and_a_fresh_start() {
    let (_dir, state) = state_file("corrupt");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    std::fs::write(&state, "{ half a file").unwrap();
    let deployment = Deployment::new("corrupt", |_| record(0))
        .every("15m")
        .catchup(true);
    let logs = Logs::default();
    let guard = logs.capture();
    serve_for(deployment, &state, "2026-11-27T10:50:00Z", 11 * 60).await;
    drop(guard);
    assert_eq!(scheduled_times("corrupt"), ["11:00"], "nothing to catch up");
    let warned = logs.lines("the scheduler's state is corrupt; starting fresh");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("WARN"), "{warned:?}");
    assert!(
        warned[0].contains(&state.display().to_string()),
        "{warned:?}"
    );
    // The file is good again after the run it made.
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("2026-11-27T11:00:00Z"), "{saved}");
    std::fs::remove_dir_all(state.parent().unwrap()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_missing_state_file_is_a_fresh_start_said_once_at_info() {
    let (_dir, state) = state_file("missing");
    let deployment = || {
        Deployment::new("missing", |_| record(0))
            .every("15m")
            .catchup(true)
    };
    let logs = Logs::default();
    let guard = logs.capture();
    serve_for(deployment(), &state, "2026-11-27T10:50:00Z", 11 * 60).await;
    assert_eq!(scheduled_times("missing"), ["11:00"], "nothing to catch up");
    let said = logs.lines("no scheduler state yet; starting fresh");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains(" INFO "), "{said:?}");
    assert!(said[0].contains(&state.display().to_string()), "{said:?}");
    // Started again, the file is there: nothing said, and what was missed is caught up.
    serve_for(deployment(), &state, "2026-11-27T11:20:00Z", 60).await;
    drop(guard);
    assert_eq!(logs.lines("no scheduler state yet").len(), 1);
    assert_eq!(scheduled_times("missing"), ["11:00", "11:15"]);
    assert!(logs.lines("WARN").is_empty(), "{:?}", logs.lines("WARN"));
    std::fs::remove_dir_all(state.parent().unwrap()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn several_schedules_merge_their_times_each_run_with_its_own_interval() {
    let intervals = |deployment: &str| -> Vec<String> {
        with_seen(deployment, |s| {
            s.runs
                .iter()
                .map(|r| {
                    let (start, end) = r.interval().expect("an interval");
                    format!(
                        "{} [{}, {})",
                        r.scheduled_at().format("%H:%M"),
                        start.format("%H:%M"),
                        end.format("%H:%M")
                    )
                })
                .collect()
        })
    };
    // Hourly on the hour and at half past: each run's interval is from its own schedule's
    // previous time.
    let (_dir, state) = state_file("several");
    let deployment = Deployment::new("several", |_| record(0))
        .every("1h")
        .cron("30 * * * *");
    serve_for(deployment, &state, "2026-11-27T10:05:00Z", 2 * 3600).await;
    assert_eq!(
        intervals("several"),
        [
            "10:30 [09:30, 10:30)",
            "11:00 [10:00, 11:00)",
            "11:30 [10:30, 11:30)",
            "12:00 [11:00, 12:00)",
        ]
    );
    std::fs::remove_dir_all(state.parent().unwrap()).unwrap();

    // Two schedules that meet on the hour: one run per time, its interval from the first
    // schedule given that fires then (here the half-hourly one).
    let (_dir, state) = state_file("meeting");
    let deployment = Deployment::new("meeting", |_| record(0))
        .every("30m")
        .cron("0 * * * *");
    serve_for(deployment, &state, "2026-11-27T10:05:00Z", 3600).await;
    assert_eq!(
        intervals("meeting"),
        ["10:30 [10:00, 10:30)", "11:00 [10:30, 11:00)",]
    );
    std::fs::remove_dir_all(state.parent().unwrap()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_cron_in_a_time_zone_runs_at_local_times() {
    let (_dir, state) = state_file("cron");
    let deployment = Deployment::new("cron", |_| record(0))
        .cron("0 2 * * *")
        .time_zone("Europe/Madrid");
    // Three days, across the end of summer time (25 October 2026).
    serve_for(deployment, &state, "2026-10-23T23:00:00Z", 3 * 24 * 3600).await;
    let runs: Vec<String> = with_seen("cron", |s| {
        s.runs
            .iter()
            .map(|r| r.scheduled_at().to_rfc3339())
            .collect()
    });
    assert_eq!(
        runs,
        [
            "2026-10-24T00:00:00+00:00", // 02:00 CEST
            "2026-10-25T00:00:00+00:00", // 02:00 CEST, the first of two
            "2026-10-26T01:00:00+00:00", // 02:00 CET
        ]
    );
}

#[tokio::test]
async fn bad_deployments_are_refused_at_start_naming_the_deployment() {
    let error = Server::new([Deployment::new("typo", |_| record(0)).cron("0 2 * *")])
        .run()
        .await
        .unwrap_err();
    assert!(matches!(&error, ServeError::Schedule { deployment, .. } if deployment == "typo"));
    assert!(
        error
            .to_string()
            .starts_with("deployment \"typo\": invalid cron expression"),
        "{error}"
    );
    let error = Server::new([Deployment::new("tz", |_| record(0))
        .cron("0 2 * * *")
        .time_zone("Europe/Atlantis")])
    .run()
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown time zone \"Europe/Atlantis\""),
        "{error}"
    );
    let error = Server::new([
        Deployment::new("twice", |_| record(0)).every("1h"),
        Deployment::new("twice", |_| record(0)).every("2h"),
    ])
    .run()
    .await
    .unwrap_err();
    assert!(matches!(error, ServeError::DuplicateName(name) if name == "twice"));
}

/// Fails the run whose interval starts on `fail_on`.
#[flow]
async fn fails_on(fail_on: String) -> Result<(), String> {
    let run = flowkit::context().unwrap().scheduled().unwrap().clone();
    record(0).await.map_err(|e| e.to_string())?;
    if run.logical_date().to_string() == fail_on {
        return Err(format!("source empty for {fail_on}"));
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_backfill_of_2024_in_weekly_chunks_tiles_the_year_exactly() {
    let daily = Deployment::new("chunks", |_| record(0)).cron("0 0 * * *");
    let backfill = Backfill::new(
        daily,
        utc("2024-01-01T00:00:00Z"),
        utc("2025-01-01T00:00:00Z"),
    )
    .chunk("7d")
    .max_active(8);
    let plan = backfill.plan().unwrap();
    assert_eq!(plan.len(), 53, "52 weeks and 2 days");
    let intervals: Vec<_> = plan.iter().map(|r| r.interval().unwrap()).collect();
    assert_eq!(intervals[0].0, utc("2024-01-01T00:00:00Z"));
    assert!(
        intervals.windows(2).all(|w| w[0].1 == w[1].0),
        "no gap, no overlap"
    );
    assert!(
        intervals[..52]
            .iter()
            .all(|(s, e)| *e - *s == chrono::TimeDelta::days(7))
    );
    assert_eq!(
        intervals[52],
        (utc("2024-12-30T00:00:00Z"), utc("2025-01-01T00:00:00Z")),
        "the last chunk is short"
    );
    let report = backfill.run().await.unwrap();
    assert_eq!(report.runs().len(), 53);
    assert_eq!(with_seen("chunks", |s| s.runs.len()), 53);
    assert!(with_seen("chunks", |s| s.most_active) <= 8);
}

#[tokio::test(start_paused = true)]
async fn a_daily_backfill_runs_each_day_oldest_first_and_reports_the_failures() {
    let daily = Deployment::new("days", |_| fails_on("2024-02-29".into()))
        .cron("0 0 * * *")
        .max_active_runs(3);
    let backfill = Backfill::new(
        daily,
        utc("2024-02-01T00:00:00Z"),
        utc("2024-03-01T00:00:00Z"),
    );
    let report = backfill.run().await.unwrap();
    assert_eq!(report.runs().len(), 29, "February 2024");
    let days = with_seen("days", |s| {
        s.runs
            .iter()
            .map(|r| r.logical_date().to_string())
            .collect::<Vec<_>>()
    });
    assert_eq!(days.first().map(String::as_str), Some("2024-02-01"));
    assert_eq!(days.last().map(String::as_str), Some("2024-02-29"));
    assert!(days.windows(2).all(|w| w[0] < w[1]), "oldest first");
    let failed: Vec<String> = report
        .failed()
        .map(|(run, _)| run.logical_date().to_string())
        .collect();
    assert_eq!(failed, ["2024-02-29"]);
    let text = report.to_string();
    assert!(
        text.starts_with(
            "backfill days 2024-02-01 00:00 → 2024-03-01 00:00: 29 runs, 28 completed, 1 failed"
        ),
        "{text}"
    );
    assert!(
        text.contains("2024-02-29 00:00 → 2024-03-01 00:00  failed:"),
        "{text}"
    );
    assert!(text.contains("source empty for 2024-02-29"), "{text}");
}

#[tokio::test]
async fn an_empty_backfill_range_is_an_error() {
    let daily = Deployment::new("empty", |_| record(0)).cron("0 0 * * *");
    let at = utc("2024-02-01T00:00:00Z");
    let error = Backfill::new(daily, at, at).plan().unwrap_err();
    assert!(matches!(error, ServeError::EmptyRange { .. }), "{error}");
}
