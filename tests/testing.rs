//! Testing helpers: `flowkit::testing::capture`, the `MemorySink` queries, `EventBus::scope`.

mod common;

use flowkit::{EventBus, MemorySink, State, flow, task};

#[task(retries = 3, retry_delay = "1h")]
async fn flaky(fail_times: u32) -> Result<u32, String> {
    let attempt = flowkit::context().map_or(1, |c| c.attempt());
    tracing::info!(attempt, "fetching");
    if attempt <= fail_times {
        Err(format!("busy on attempt {attempt}"))
    } else {
        Ok(attempt)
    }
}

#[task]
async fn double(x: u32) -> u32 {
    x * 2
}

#[flow(name = "testing-demo")]
async fn demo() -> Result<u32, flowkit::RunError<String>> {
    tracing::info!("starting");
    let attempts = flaky(2).await?;
    let doubled = flowkit::map([1, 2], double).await;
    Ok(attempts + doubled.into_iter().map(|r| r.unwrap_or(0)).sum::<u32>())
}

#[tokio::test(start_paused = true)]
async fn capture_returns_the_result_and_the_events_to_query() {
    let (result, events) = flowkit::testing::capture(demo).await;
    assert_eq!(result.unwrap(), 3 + 2 + 4);

    let runs = events.runs_named("testing-demo");
    assert_eq!(runs.len(), 1);
    let flow_run = runs[0];
    assert_eq!(events.states(flow_run), [State::Running, State::Completed]);
    assert_eq!(events.attempts(flow_run), 1);

    let task_runs = events.task_runs_of(flow_run);
    assert_eq!(task_runs.len(), 3, "flaky, then two doubles");
    assert_eq!(events.runs_named("flaky"), task_runs[..1]);
    assert_eq!(events.runs_named("double"), task_runs[1..]);

    let flaky_run = task_runs[0];
    assert_eq!(events.attempts(flaky_run), 3);
    assert_eq!(
        events.states(flaky_run),
        [
            State::Running,
            State::Retrying,
            State::Running,
            State::Retrying,
            State::Running,
            State::Completed
        ]
    );
    let (logs, runtime): (Vec<_>, Vec<_>) = events
        .logs(flaky_run)
        .into_iter()
        .partition(|l| l.target != flowkit::RUNTIME_TARGET);
    assert_eq!(runtime.len(), 2, "one line per retry: {runtime:?}");
    let attempts: Vec<_> = logs.iter().map(|l| l.fields["attempt"].clone()).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(logs.iter().all(|l| l.message == "fetching"));
    // A flow run's logs are its own, not its task runs'.
    let flow_logs = events.logs(flow_run);
    assert_eq!(flow_logs.len(), 1);
    assert_eq!(flow_logs[0].message, "starting");
}

#[tokio::test]
async fn a_run_that_never_ran_made_no_attempt() {
    let events = MemorySink::new();
    assert_eq!(events.attempts(uuid::Uuid::nil()), 0);
    assert!(events.states(uuid::Uuid::nil()).is_empty());
    assert!(events.logs(uuid::Uuid::nil()).is_empty());
}

#[tokio::test]
async fn a_scope_sends_a_map_outside_any_flow_to_its_bus() {
    let memory = MemorySink::new();
    let bus = EventBus::builder().sink(memory.clone()).build();
    let results = bus.scope(|| flowkit::map([1, 2, 3], double)).await;
    bus.flush().await;
    let values: Vec<u32> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(values, [2, 4, 6]);
    let runs = memory.runs_named("double");
    assert_eq!(runs.len(), 3);
    for run in runs {
        assert_eq!(memory.states(run), [State::Running, State::Completed]);
    }
}

#[task]
async fn outer() -> u32 {
    let a = double(1).await.unwrap_or(0);
    let b = double(2).submit().await.unwrap_or(0);
    a + b
}

#[tokio::test]
async fn tasks_called_in_a_standalone_task_use_its_bus() {
    let memory = MemorySink::new();
    let bus = EventBus::builder().sink(memory.clone()).build();
    assert_eq!(outer().on(&bus).await.unwrap(), 6);
    bus.flush().await;
    assert_eq!(memory.runs_named("outer").len(), 1);
    assert_eq!(
        memory.runs_named("double").len(),
        2,
        "sub-tasks follow their task's bus"
    );
}

#[tokio::test(start_paused = true)]
async fn a_scope_covers_async_blocks_and_flowkit_spawn() {
    let memory = MemorySink::new();
    let bus = EventBus::builder().sink(memory.clone()).build();
    let total = bus
        .scope(|| async {
            let a = double(1).await.unwrap();
            let b = flowkit::spawn(async { double(2).await.unwrap() })
                .await
                .unwrap();
            let c = demo().await.unwrap();
            a + b + c
        })
        .await;
    bus.flush().await;
    assert_eq!(total, 2 + 4 + 9);
    assert_eq!(memory.runs_named("double").len(), 4);
    assert_eq!(memory.runs_named("testing-demo").len(), 1);
}

#[flow]
async fn noisy(marker: String) {
    tracing::warn!("{marker}");
}

const CHILD: &str = "child_logs_in_and_out_of_capture";

/// Run by `capture_prints_nothing` in a child process, with stderr observed.
#[tokio::test]
#[ignore = "run by capture_prints_nothing"]
async fn child_logs_in_and_out_of_capture() {
    // The setup that printed every in-run line to stderr, outside libtest's capture.
    flowkit::Config::new()
        .console(false)
        .ctrl_c(false)
        .init()
        .expect("first init");
    let (result, events) =
        flowkit::testing::capture(|| noisy("marker-inside-capture".into())).await;
    result.unwrap();
    let run = events.runs_named("noisy")[0];
    assert_eq!(events.logs(run)[0].message, "marker-inside-capture");
    noisy("marker-outside-capture".into()).await.unwrap();
    eprintln!("child done");
}

#[test]
fn capture_prints_nothing() {
    let output = common::child_test(CHILD)
        .output()
        .expect("the child process runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("child done"), "{stderr}");
    // The uncaptured run's line is printed: the child's output is really observed.
    assert!(stderr.contains("marker-outside-capture"), "{stderr}");
    assert!(
        !stderr.contains("marker-inside-capture") && !stdout.contains("marker-inside-capture"),
        "a captured run's log line was printed:\n{stdout}\n{stderr}"
    );
}
