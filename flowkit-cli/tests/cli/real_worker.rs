//! A real worker: a program serving a deployment with `flowkit::serve` (this test binary run
//! again as `worker_process`), registering it with the test server and running the runs the
//! `flowkit` command line starts, its flows' events streamed to the server.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use flowkit::flow;
use flowkit::schemars::{self, JsonSchema};
use flowkit::serve::{Deployment, ScheduledRun};
use serde::{Deserialize, Serialize};

use crate::common::{API_KEY, flowkit, flowkit_start, server};

/// Tells the worker process it is one (a plain `cargo test -- --ignored` returns at once).
const WORKER_ENV: &str = "FLOWKIT_CLI_TEST_WORKER";
/// The day the flow fails for, as if its source had no rows.
const BAD_DAY: &str = "2024-03-03";

/// The parameters of `cli-load` runs.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
struct Load {
    /// How many days to load.
    days: u32,
    /// Fail on purpose.
    #[serde(default)]
    fail: bool,
}

#[flow(name = "cli-load")]
async fn cli_load(days: u32, fail: bool, day: NaiveDate) -> Result<String, String> {
    if fail || day.to_string() == BAD_DAY {
        return Err(format!("the source had no rows for {day}"));
    }
    Ok(format!("{days} day(s) from {day}"))
}

/// The body of `worker_process`: serves `cli-real` for the server in `FLOWKIT_API_URL` until
/// its stdin closes.
pub async fn serve() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    flowkit::init();
    let dir = std::env::temp_dir().join(format!("flowkit-cli-test-worker-{}", std::process::id()));
    let deployment = Deployment::with_parameters(
        "cli-real",
        Load {
            days: 1,
            fail: false,
        },
        |run: &ScheduledRun, load: Load| cli_load(load.days, load.fail, run.logical_date()),
    )
    .cron("0 0 * * *")
    .max_active_runs(2);
    flowkit::serve::Server::new([deployment])
        .worker_name("cli-real-worker")
        .state_file(dir.join("serve.json"))
        .run()
        .await
        .expect("the worker serves");
}

/// The worker process, killed at drop.
struct WorkerProcess(Child);

impl WorkerProcess {
    fn start() -> WorkerProcess {
        let exe = std::env::current_exe().expect("the test binary's path");
        let child = Command::new(exe)
            .args(["worker_process", "--exact", "--ignored", "--nocapture"])
            .env(WORKER_ENV, "1")
            .env("FLOWKIT_API_URL", &server().url)
            .env("FLOWKIT_API_KEY", API_KEY)
            .env("FLOWKIT_CONSOLE", "off")
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the worker process starts");
        WorkerProcess(child)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(mut out) = self.0.stdout.take() {
            let _ = out.read_to_end(&mut Vec::new());
        }
    }
}

#[test]
fn a_real_worker_runs_what_the_command_line_starts() {
    let _worker = WorkerProcess::start();
    // The program registers its deployment, with the schema of its parameters.
    let deadline = Instant::now() + Duration::from_secs(30);
    let detail = loop {
        let out = flowkit(&["deployment", "cli-real"]);
        if out.code == 0 {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "cli-real not registered in 30 s:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let days = detail
        .stdout
        .lines()
        .find(|l| l.starts_with("days "))
        .unwrap_or_else(|| panic!("the days parameter in\n{detail}"));
    assert!(
        days.contains("integer") && days.contains("How many days to load"),
        "{detail}"
    );

    // `Load` has no `deny_unknown_fields`, so serde alone would drop a misspelt parameter: the
    // schema the program publishes refuses it, and the server names it.
    let published = serde_json::to_value(flowkit::schemars::schema_for!(Load)).unwrap();
    assert_eq!(published.get("additionalProperties"), None, "{published}");
    let unknown = flowkit(&["trigger", "cli-real", "--param", "colour=red"]).expect_code(1);
    assert!(
        unknown
            .stderr
            .contains("`parameters.colour` (--param colour)"),
        "{unknown}"
    );
    assert!(unknown.stderr.contains("(HTTP 400 from "), "{unknown}");

    let done = flowkit(&["trigger", "cli-real", "--param", "days=2", "--wait"]).ok();
    assert!(done.stderr.contains("Completed after "), "{done}");
    let failed = flowkit(&["trigger", "cli-real", "--param", "fail=true", "--wait"]).expect_code(4);
    assert!(failed.stderr.contains("ended Failed: "), "{failed}");
    assert!(
        failed.stderr.contains("the source had no rows for "),
        "{failed}"
    );

    let backfill = flowkit_start(&[
        "backfill",
        "cli-real",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-06",
        "--max-active",
        "2",
        "--wait",
    ])
    .finish()
    .expect_code(4);
    assert!(
        backfill
            .stdout
            .contains("5 intervals: 4 completed, 1 failed\n"),
        "{backfill}"
    );
    let failed_day = backfill
        .stdout
        .lines()
        .find(|l| l.starts_with(BAD_DAY))
        .unwrap_or_else(|| panic!("{BAD_DAY} in\n{backfill}"));
    assert!(failed_day.contains("Failed"), "{backfill}");

    let workers = flowkit(&["workers"]).ok();
    assert_eq!(workers.cell("cli-real-worker", "STATE"), "online");
    assert_eq!(workers.cell("cli-real-worker", "QUEUES"), "all");
}
