//! The console progress view: lines a person reads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowkit::{ConsoleSink, EventBus, flow, task};

#[task(retries = 1, retry_delay = "2s")]
async fn flaky() -> Result<(), String> {
    if flowkit::context().unwrap().attempt() == 1 {
        Err("503 from source".into())
    } else {
        Ok(())
    }
}

#[task]
async fn noop(_i: u32) {}

#[task]
async fn bad(i: u32) -> Result<(), String> {
    if i == 7 {
        Err("row 7 is malformed".into())
    } else {
        Ok(())
    }
}

#[flow(name = "console-demo")]
async fn demo(day: String) {
    tracing::debug!(%day);
    let _ = flaky().await;
    let _ = flowkit::map(0..1000, noop).await;
    let _ = flowkit::map(0..10, bad).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_flow_shows_progress_retries_map_counts_and_a_summary() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let bus = EventBus::builder()
        .sink(ConsoleSink::to_writer(out.clone()))
        .build();
    demo("2026-11-26".into()).on(&bus).await.unwrap();
    bus.flush().await;
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    println!("{text}");

    assert!(lines[0].contains("flow console-demo run ") && lines[0].contains("day=\"2026-11-26\""));
    assert!(text.contains("task flaky running"));
    assert!(text.contains("task flaky attempt 1 failed: 503 from source · retrying in 2s"));
    assert!(text.contains("task flaky Completed in"));
    assert!(text.contains("(2 attempts)"));
    // 1000 mapped runs: a summary line, not a line per run.
    assert!(text.contains("map noop 1000 runs: 1000 completed"));
    assert!(lines.len() < 20, "{} lines", lines.len());
    // A failed mapped run is shown on its own, with its error.
    // (Its duration is real time: any number of milliseconds on a busy machine.)
    let failed = lines
        .iter()
        // Labelled as the dashboard labels a mapped run.
        .find(|l| l.contains("task bad [7] Failed in "))
        .expect("the failed mapped run's line");
    assert!(failed.ends_with("ms: row 7 is malformed"), "{failed}");
    assert!(text.contains("map bad 10 runs: 9 completed · 1 failed"));
    let last = lines.last().unwrap();
    assert!(last.contains("flow console-demo Completed in"), "{last}");
    assert!(
        last.contains("1011 task runs: 1010 completed, 1 failed · 1 retry"),
        "{last}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deployment_run_says_which_deployment_and_when_it_was_due() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let bus = EventBus::builder()
        .sink(ConsoleSink::to_writer(out.clone()))
        .build();
    let due = "2026-11-27T02:00:00Z".parse().unwrap();
    let run = flowkit::serve::ScheduledRun::new("nightly", due);
    demo("2026-11-26".into())
        .scheduled(run)
        .on(&bus)
        .await
        .unwrap();
    bus.flush().await;
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("flow console-demo run ")
            && first.contains(" · nightly due 2026-11-27 02:00:00 UTC day=\"2026-11-26\""),
        "{first}"
    );
}

#[task]
async fn explain() -> Result<(), String> {
    Err(
        "the warehouse refused the load:\n  table orders is locked\n  retry after the backup"
            .into(),
    )
}

#[flow(name = "console-multiline")]
async fn multiline() {
    let _ = explain().await;
}

#[tokio::test]
async fn a_multi_line_error_is_indented_under_its_line() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let bus = EventBus::builder()
        .sink(ConsoleSink::to_writer(out.clone()))
        .build();
    multiline().on(&bus).await.unwrap();
    bus.flush().await;
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("the warehouse refused the load:"))
        .expect("the error's first line");
    let column = lines[at].find("task explain").expect("the task's label");
    for next in &lines[at + 1..at + 3] {
        let starts = next.len() - next.trim_start().len();
        assert!(
            starts >= column,
            "{next:?} starts at {starts}, before column {column}:\n{text}"
        );
    }
    assert!(
        lines[at + 1]
            .trim_start()
            .starts_with("table orders is locked"),
        "{text}"
    );
}

async fn failing_hook(_run: &flowkit::HookContext) -> Result<(), String> {
    Err("webhook answered 500".into())
}

#[task(on_completion = failing_hook)]
async fn hooked() {}

#[flow(name = "console-sensor")]
async fn waits_for_a_file() -> Result<(), flowkit::RunError<std::convert::Infallible>> {
    let start = tokio::time::Instant::now();
    flowkit::sensor("file-landed", move || async move {
        start.elapsed() >= Duration::from_secs(20)
    })
    .every(Duration::from_secs(10))
    .await?;
    hooked().await
}

#[tokio::test(start_paused = true)]
async fn a_sensor_shows_one_running_line_then_why_it_waits_and_a_failed_hook_shows() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let bus = EventBus::builder()
        .sink(ConsoleSink::to_writer(out.clone()))
        .build();
    waits_for_a_file().on(&bus).await.unwrap();
    bus.flush().await;
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    println!("{text}");
    assert_eq!(
        text.matches("task file-landed running").count(),
        1,
        "{text}"
    );
    assert!(text.contains("task file-landed waiting: poke 1: not ready; next poke in 10s"));
    assert!(text.contains("task file-landed waiting: poke 2: not ready; next poke in 10s"));
    assert!(text.contains(
        "on_completion hook `failing_hook` failed: webhook answered 500 (the run stays Completed)"
    ));
}
