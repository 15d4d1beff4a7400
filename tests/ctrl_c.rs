//! Ctrl-C, for real: a child process (this test binary, running its ignored `child_process`
//! test) runs a tree of flows and tasks, sends itself SIGINT, and checks that every run under the
//! top-level flow run ended `Cancelled` before the run above it. The parent reads the child's
//! stderr: the Ctrl-C warning and the run logs are plain text in a pipe, and in color on a
//! terminal (a pseudo-terminal made by `script`) unless `NO_COLOR` is set.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::assert_ends_in_order;
use common::tree::{UNDER_TREE, root};
use flowkit::{MemorySink, State};

const CHILD: &str = "child_process";

#[tokio::test(flavor = "current_thread")]
#[ignore = "run as a child process by the tests below"]
async fn child_process() {
    let memory = MemorySink::new();
    flowkit::Config::from_env()
        .sink(memory.clone())
        .init()
        .expect("first init");
    tracing::info!("child started");
    let handle = root(3600).submit();
    // Real time: wait until every run of the tree runs (each runs once).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        flowkit::flush().await;
        let running = memory
            .events()
            .iter()
            .filter(|e| e.state() == Some(State::Running))
            .count();
        if running == UNDER_TREE + 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{running} runs started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = std::process::id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status();
    assert!(
        sent.as_ref().is_ok_and(|s| s.success()),
        "kill -INT {pid}: {sent:?}"
    );
    let error = tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("Ctrl-C stopped the flow run")
        .expect_err("cancelled");
    assert!(error.is_cancelled(), "{error}");
    flowkit::flush().await;
    let events = memory.events();
    let ends = assert_ends_in_order(&events);
    assert_eq!(ends.len(), UNDER_TREE + 1);
    assert!(ends.values().all(|s| *s == State::Cancelled), "{ends:?}");
    eprintln!("child done");
}

/// Runs the child test with `console` on or off, its stderr into a pipe.
fn run_child(console: bool, no_color: Option<&str>) -> Output {
    let mut command = common::child_test(CHILD);
    command
        .env("FLOWKIT_CONSOLE", if console { "on" } else { "off" })
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    command.output().expect("the child process runs")
}

fn check_success(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the child failed ({}):\n{}\n{stderr}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(stderr.contains("child done"), "{stderr}");
    stderr
}

#[test]
fn ctrl_c_cancels_every_run_in_order_and_the_logs_in_a_pipe_are_plain() {
    // The console on: the progress lines and run logs come from the console sink, the Ctrl-C
    // warning from the log formatter.
    let stderr = check_success(&run_child(true, None));
    assert!(
        stderr.contains("Ctrl-C: cancelling 1 flow run(s); press Ctrl-C again to exit now"),
        "{stderr}"
    );
    assert!(stderr.contains("flow root Cancelled"), "{stderr}");
    assert!(stderr.contains("child started"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no escape codes in a pipe:\n{stderr:?}"
    );

    // The console off: every log line comes from the log formatter.
    let stderr = check_success(&run_child(false, None));
    assert!(
        stderr.contains("Ctrl-C: cancelling 1 flow run(s)"),
        "{stderr}"
    );
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no escape codes in a pipe:\n{stderr:?}"
    );
}

/// Runs the child on a pseudo-terminal (util-linux `script`), returning what the terminal got.
fn run_child_on_a_terminal(no_color: Option<&str>) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let inner = format!(
        "'{}' {CHILD} --exact --ignored --nocapture --color never",
        exe.display()
    );
    let mut command = Command::new("script");
    command
        .args(["-q", "-e", "-c", &inner, "/dev/null"])
        .env("FLOWKIT_CONSOLE", "on")
        .env("RUST_LOG", "info")
        .env_remove("FLOWKIT_API_URL")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let output = command.output().expect("util-linux `script` runs");
    let terminal = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the child failed on a terminal ({}):\n{terminal}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(terminal.contains("child done"), "{terminal}");
    assert!(
        terminal.contains("Ctrl-C: cancelling 1 flow run(s)"),
        "{terminal}"
    );
    terminal
}

#[test]
fn on_a_terminal_the_logs_are_in_color_unless_no_color_is_set() {
    let colored = run_child_on_a_terminal(None);
    assert!(
        colored.contains("\x1b["),
        "color on a terminal:\n{colored:?}"
    );
    // An empty NO_COLOR does not count (https://no-color.org).
    let colored = run_child_on_a_terminal(Some(""));
    assert!(
        colored.contains("\x1b["),
        "color with NO_COLOR empty:\n{colored:?}"
    );
    let plain = run_child_on_a_terminal(Some("1"));
    assert!(!plain.contains('\x1b'), "NO_COLOR=1:\n{plain:?}");
}
