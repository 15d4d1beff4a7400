//! The dashboard's orchestration pages in a real browser (Debian's headless Chromium) against a
//! real server process: the "Run" form drawn from a deployment's parameter schema, the pause
//! switch, upcoming and late runs, cancelling a run (one no worker took, and one a real worker
//! is running), the workers page, and backfills drawn as a calendar of their intervals. The
//! server wants an API key, so every write the pages make carries it. One server and one browser
//! for every step of the first test: they take most of the time.
//! Screenshots go to `target/tmp/dashboard-screenshots/`.

mod common;

use std::time::{Duration, Instant};

use common::api::{get, post, put, report, until};
use common::browser::Browser;
use common::{Server, TempDir};
use fantoccini::Locator;
use flowkit::State;
use serde_json::{Value, json};

const KEY: &str = "orchestration-key";

/// Types `text` into the input matching `css`, replacing what it held, as a user would.
async fn fill(browser: &Browser, css: &str, text: &str) {
    let input = browser
        .client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    input.clear().await.expect("cleared");
    input.send_keys(text).await.expect("typed");
}

/// Sets the value of a date input (typing a date depends on the browser's locale).
async fn set_value(browser: &Browser, css: &str, value: &str) {
    let set = browser
        .eval(
            "const el = document.querySelector(arguments[0]); if (!el) return false;\
             el.value = arguments[1]; el.dispatchEvent(new Event('input', { bubbles: true }));\
             return el.value === arguments[1];",
            vec![json!(css), json!(value)],
        )
        .await;
    assert_eq!(set, json!(true), "{css} takes {value}");
}

/// The states of a backfill's cells on the page, in order, and its counts by state.
async fn cells_and_counts(browser: &Browser) -> (Vec<String>, Value) {
    let value = browser
        .eval(
            "return [[...document.querySelectorAll('[data-testid=interval]')].map(c => c.dataset.state),\
             Object.fromEntries([...document.querySelectorAll('[data-testid=backfill-counts] [data-state]')]\
             .map(c => [c.dataset.state, Number(c.dataset.count)]))];",
            vec![],
        )
        .await;
    let cells = value[0]
        .as_array()
        .expect("cells")
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect();
    (cells, value[1].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_form_pause_cancel_workers_and_backfills_in_the_browser() {
    let dir = TempDir::new("dash-orchestration");
    let mut server = Server::start(dir.path(), 0, &["--api-key", KEY]).await;
    server.key = Some(KEY.into());
    // The schema schemars makes of `struct Params { day: NaiveDate, limit: Option<u32>,
    // mode: Mode, dry_run: bool, tables: Vec<String> }`, with defaults for some.
    let (status, body) = put(
        &server,
        "/api/deployments/adhoc",
        json!({"name": "adhoc", "flow": "etl",
        "parameters": {"limit": 10, "mode": "delta", "tables": ["orders"]},
        "parameter_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "day": {"type": "string", "format": "date", "description": "The day to load"},
                "limit": {"type": ["integer", "null"], "format": "uint32", "minimum": 0},
                "mode": {"$ref": "#/$defs/Mode"},
                "dry_run": {"type": "boolean", "default": false},
                "tables": {"type": "array", "items": {"type": "string"}}
            },
            "required": ["day"],
            "additionalProperties": false,
            "$defs": {"Mode": {"type": "string", "enum": ["full", "delta"]}}
        }}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put(
        &server,
        "/api/deployments/daily",
        json!({"name": "daily", "flow": "etl", "schedules": [{"cron": "0 0 * * *"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let browser = Browser::start().await;
    browser.open(&server, "/deployments").await;
    browser.enter_key(KEY).await;
    browser
        .wait_for_count("two deployments", "[data-testid=deployment-row]", 2)
        .await;

    // The Run form, drawn from the schema: an input per parameter by its type, with defaults.
    browser
        .click_js("[data-name=adhoc] [data-testid=run-button]")
        .await;
    browser
        .wait_until(
            "the run dialog",
            "document.querySelector('[data-testid=run-dialog]').open",
        )
        .await;
    let inputs = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=run-form] [data-param]')].map(el => {\
             const label = document.querySelector(`label[for=\"${el.id}\"]`);\
             return [el.dataset.param, el.tagName.toLowerCase(), el.type,\
               el.type === 'checkbox' ? String(el.checked) : el.tagName === 'SELECT' ? el.selectedOptions[0].textContent : el.value,\
               !!label && label.textContent.includes(el.dataset.param)]; });",
            vec![],
        )
        .await;
    assert_eq!(
        inputs,
        json!([
            ["day", "input", "date", "", true],
            ["dry_run", "input", "checkbox", "false", true],
            ["limit", "input", "number", "10", true],
            ["mode", "select", "select-one", "delta", true],
            ["tables", "textarea", "textarea", "[\n  \"orders\"\n]", true]
        ]),
        "each parameter labelled, with an input for its type, filled from the defaults, required first"
    );

    // A bad value: the server's message shows under the field it names, and no run is made.
    set_value(&browser, "[data-param=day]", "2026-11-01").await;
    fill(&browser, "[data-param=limit]", "-1").await;
    browser.click("[data-testid=run-submit]").await;
    let error = browser
        .wait_until(
            "the limit's error",
            "(() => { const e = document.querySelector('[data-field=\"parameters.limit\"] [data-testid=field-error]');\
             return e && e.offsetParent !== null && e.textContent; })()",
        )
        .await;
    assert!(
        error.as_str().unwrap_or_default().contains("minimum of 0"),
        "the server's message: {error}"
    );
    let flags = browser
        .eval(
            "return [document.querySelector('[data-param=limit]').getAttribute('aria-invalid'),\
             document.querySelector('[data-param=day]').getAttribute('aria-invalid'),\
             [...document.querySelectorAll('[data-testid=field-error]')].filter(e => e.offsetParent !== null).length,\
             !!document.querySelector('[data-testid=run-created]')];",
            vec![],
        )
        .await;
    assert_eq!(
        flags,
        json!(["true", null, 1, false]),
        "only the limit is marked, nothing was created"
    );
    assert_eq!(
        get(&server, "/api/deployments/adhoc/runs").await,
        json!([]),
        "no run for a refused form"
    );

    // A good value: the run is made with the form's parameters, and linked.
    fill(&browser, "[data-param=limit]", "3").await;
    browser.click("[data-param=dry_run]").await;
    browser.click("[data-testid=run-submit]").await;
    let triggered = browser
        .wait_until(
            "the new run",
            "document.querySelector('[data-testid=run-created]')?.dataset.runId",
        )
        .await
        .as_str()
        .expect("a run id")
        .to_string();
    let runs = get(&server, "/api/deployments/adhoc/runs").await;
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["id"], triggered.as_str());
    assert_eq!(
        runs[0]["parameters"],
        json!({"day": "2026-11-01", "limit": 3, "mode": "delta", "dry_run": true, "tables": ["orders"]})
    );
    let link = browser
        .eval(
            "return document.querySelector('[data-testid=new-run-link]').getAttribute('href');",
            vec![],
        )
        .await;
    assert_eq!(link, json!(format!("#/runs/{triggered}")));
    // No error is left over from the refused try.
    assert_eq!(
        browser
            .eval(
                "return [...document.querySelectorAll('[data-testid=field-error]')].filter(e => e.offsetParent !== null).length;",
                vec![]
            )
            .await,
        json!(0)
    );
    browser.screenshot("orchestration-run-form").await;
    browser
        .click("[data-testid=run-form] .actions button[type=button]")
        .await;
    browser
        .wait_until(
            "the keyboard back on the Run button",
            "!document.querySelector('[data-testid=run-dialog]').open\
             && document.activeElement?.dataset.focus === 'run:adhoc'",
        )
        .await;

    // The new run is listed as upcoming on its deployment's row.
    browser
        .wait_until(
            "the triggered run among the upcoming",
            &format!(
                "!!document.querySelector('[data-name=adhoc] [data-testid=upcoming-run][data-run-id=\"{triggered}\"]')"
            ),
        )
        .await;

    // Pause: the switch sets it on the server, and shows it.
    assert_eq!(
        get(&server, "/api/deployments/daily").await["paused"],
        false
    );
    browser
        .click_js("[data-name=daily] [data-testid=pause-toggle]")
        .await;
    until(&server, "daily paused", "/api/deployments/daily", |d| {
        d["paused"] == true
    })
    .await;
    browser
        .wait_until(
            "the switch shows paused",
            "document.querySelector('[data-name=daily] [data-testid=pause-toggle]')?.getAttribute('aria-checked') === 'false'",
        )
        .await;
    assert_eq!(
        get(&server, "/api/deployments/adhoc").await["paused"],
        false,
        "only that one"
    );
    browser.screenshot("orchestration-deployments").await;

    // Upcoming and late runs on the runs page.
    let in_an_hour = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let (status, upcoming) = post(
        &server,
        "/api/deployments/adhoc/runs",
        json!({"parameters": {"day": "2026-11-02"}, "scheduled_at": in_an_hour}),
    )
    .await;
    assert_eq!(status, 201, "{upcoming}");
    let upcoming = upcoming["id"].as_str().unwrap().to_string();
    let two_minutes_ago = (chrono::Utc::now() - chrono::TimeDelta::minutes(2)).to_rfc3339();
    let (status, late) = post(
        &server,
        "/api/deployments/adhoc/runs",
        json!({"parameters": {"day": "2026-11-03"}, "scheduled_at": two_minutes_ago}),
    )
    .await;
    assert_eq!(status, 201, "{late}");
    let late = late["id"].as_str().unwrap().to_string();
    browser.open(&server, "/runs").await;
    let marks = browser
        .wait_until(
            "upcoming and late runs marked",
            &format!(
                "(() => {{ const row = (id) => document.querySelector(`[data-testid=run-row][data-run-id=\"${{id}}\"]`);\
                 const a = row('{upcoming}'), b = row('{late}');\
                 return a && b && [a.dataset.upcoming, !!a.querySelector('[data-testid=late]'), a.textContent.includes('upcoming'),\
                   b.dataset.upcoming, !!b.querySelector('[data-testid=late]')]; }})()"
            ),
        )
        .await;
    assert_eq!(
        marks,
        json!(["due", false, true, "late", true]),
        "the run due in an hour is upcoming, the one due two minutes ago is late"
    );
    browser.screenshot("orchestration-runs").await;

    // Cancel the upcoming run from its page: asked once more, then the server's answer.
    browser.open(&server, &format!("/runs/{upcoming}")).await;
    let answer = browser.cancel_run().await;
    assert_eq!(answer, json!("Cancelled"));
    until(
        &server,
        "the run cancelled",
        &format!("/api/flow_runs/{upcoming}"),
        |r| r["state"] == "Cancelled",
    )
    .await;
    browser
        .wait_until(
            "the badge shows Cancelled and the button is gone",
            "document.querySelector('[data-testid=run-head] .badge')?.dataset.state === 'Cancelled'\
             && document.querySelector('[data-testid=cancel-run]').offsetParent === null\
             && document.querySelector('[data-testid=cancel-confirm]').offsetParent === null",
        )
        .await;
    browser.screenshot("orchestration-run-cancelled").await;
    // A run that ended offers no cancel.
    let done = uuid::Uuid::now_v7();
    report(&server, done, &[State::Running, State::Completed], 0).await;
    browser.open(&server, &format!("/runs/{done}")).await;
    browser
        .wait_until(
            "the ended run's page",
            "document.querySelector('[data-testid=run-head] .badge')?.dataset.state === 'Completed'",
        )
        .await;
    assert_eq!(
        browser
            .eval(
                "return document.querySelector('[data-testid=cancel-run]').offsetParent === null;",
                vec![]
            )
            .await,
        json!(true),
        "no cancel button on a Completed run"
    );

    // A worker that polled shows on the workers page, with the run it took.
    let (status, answer) = post(
        &server,
        "/api/workers/w1/poll",
        json!({"host": "build-7", "deployments": ["adhoc"], "queues": ["default"], "capacity": 1, "running": []}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let taken = answer["runs"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(taken, late, "the oldest due run: {answer}");
    browser.open(&server, "/workers").await;
    let row = browser
        .wait_until(
            "the worker's row",
            "(() => { const r = document.querySelector('[data-testid=worker-row][data-name=w1]');\
             return r && [r.querySelector('[data-testid=worker-host]').textContent,\
               r.querySelector('[data-testid=worker-queues]').textContent,\
               r.querySelector('[data-testid=worker-runs]').textContent,\
               r.querySelector('[data-testid=worker-last-seen]').textContent,\
               r.querySelector('.badge').textContent]; })()",
        )
        .await;
    let last_seen = row[3].as_str().unwrap_or_default().to_string();
    assert!(last_seen.ends_with("s ago"), "seconds ago: {row}");
    assert_eq!(
        row,
        json!([
            "build-7",
            "default",
            format!("1{}", &late[late.len() - 8..]),
            last_seen,
            "online"
        ]),
        "host, queues, the run in hand (linked), state"
    );
    assert_eq!(
        browser
            .eval(
                "return document.querySelectorAll('[data-testid=worker-row]').length;",
                vec![]
            )
            .await,
        json!(1)
    );
    browser.screenshot("orchestration-workers").await;
    // The run's page says how it was made and which worker took it.
    browser.open(&server, &format!("/runs/{taken}")).await;
    let made = browser
        .wait_until(
            "the run's worker",
            "(() => { const w = document.querySelector('[data-testid=run-worker]');\
             const o = document.querySelector('[data-testid=run-origin]');\
             return w && o && [o.textContent, w.textContent]; })()",
        )
        .await;
    assert_eq!(made, json!(["trigger", "w1"]));

    // The backfill form: a bad range is refused under its field; a good one opens its grid.
    browser.open(&server, "/backfills?deployment=daily").await;
    browser
        .wait_until(
            "the backfill form",
            "document.querySelector('[data-testid=backfill-deployment]')?.value === 'daily'",
        )
        .await;
    set_value(&browser, "[data-testid=backfill-start]", "2024-01-11").await;
    set_value(&browser, "[data-testid=backfill-end]", "2024-01-01").await;
    browser.click("[data-testid=backfill-submit]").await;
    browser
        .wait_until(
            "the range's error",
            "(() => { const e = document.querySelector('[data-field=end] [data-testid=field-error]'); return e && e.offsetParent !== null && e.textContent; })()",
        )
        .await;
    assert_eq!(get(&server, "/api/backfills").await, json!([]));
    set_value(&browser, "[data-testid=backfill-start]", "2024-01-01").await;
    set_value(&browser, "[data-testid=backfill-end]", "2024-01-11").await;
    fill(&browser, "[data-testid=backfill-chunk]", "7d").await;
    browser.click("[data-testid=backfill-submit]").await;
    browser
        .wait_until(
            "the chunked backfill's page",
            "location.hash.startsWith('#/backfills/') && document.querySelectorAll('[data-testid=interval]').length === 2",
        )
        .await;
    let chunked = until(&server, "the chunked backfill", "/api/backfills", |b| {
        b.as_array().map(Vec::len) == Some(1)
    })
    .await;
    assert_eq!(chunked[0]["chunk"], "7d");
    assert_eq!(chunked[0]["intervals"].as_array().map(Vec::len), Some(2));
    browser.screenshot("orchestration-backfill-chunked").await;
    let url_id = browser
        .eval("return location.hash.split('/')[2];", vec![])
        .await;
    assert_eq!(url_id, chunked[0]["id"]);

    // A daily backfill made through the API: a calendar of 10 days, updated as runs end.
    let (status, backfill) = post(
        &server,
        "/api/deployments/daily/backfills",
        json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-11T00:00:00Z", "max_active": 2}),
    )
    .await;
    assert_eq!(status, 201, "{backfill}");
    let id = backfill["id"].as_str().unwrap().to_string();
    browser.open(&server, &format!("/backfills/{id}")).await;
    browser
        .wait_for_count("ten day cells", "[data-testid=interval]", 10)
        .await;
    let (cells, counts) = cells_and_counts(&browser).await;
    assert_eq!(cells, vec!["Scheduled"; 10]);
    assert_eq!(counts, json!({"Scheduled": 10}));
    let calendar = browser
        .eval(
            "const g = document.querySelector('[data-testid=backfill-grid]');\
             return [g.classList.contains('calendar'), g.querySelector('[data-testid=interval]').textContent,\
               g.querySelector('[data-testid=interval]').getAttribute('href')];",
            vec![],
        )
        .await;
    let first_run = backfill["intervals"][0]["run"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        calendar,
        json!([true, "Jan 1", format!("#/runs/{first_run}")]),
        "days on a calendar, each opening its run"
    );
    // Two of its runs end: the page follows without a reload.
    report(
        &server,
        first_run.parse().unwrap(),
        &[State::Running, State::Completed],
        0,
    )
    .await;
    let second_run = backfill["intervals"][1]["run"].as_str().unwrap();
    report(
        &server,
        second_run.parse().unwrap(),
        &[State::Running, State::Failed],
        0,
    )
    .await;
    browser
        .wait_until(
            "the cells follow the runs",
            "(() => { const c = document.querySelectorAll('[data-testid=interval]');\
             return c[0].dataset.state === 'Completed' && c[1].dataset.state === 'Failed'; })()",
        )
        .await;
    let (cells, counts) = cells_and_counts(&browser).await;
    assert_eq!(cells[2..], vec!["Scheduled"; 8]);
    assert_eq!(counts, json!({"Scheduled": 8, "Completed": 1, "Failed": 1}));
    browser.screenshot("orchestration-backfill").await;

    // Cancel: its runs not started are cancelled.
    browser.click("[data-testid=backfill-cancel]").await;
    until(
        &server,
        "the backfill cancelled",
        &format!("/api/backfills/{id}"),
        |b| b["status"] == "cancelled",
    )
    .await;
    browser
        .wait_until(
            "the page shows it cancelled",
            "document.querySelector('[data-testid=backfill-status] .badge')?.textContent === 'cancelled'\
             && document.querySelector('[data-testid=backfill-cancel]').offsetParent === null",
        )
        .await;
    browser
        .wait_until(
            "the rest cancelled",
            "document.querySelectorAll('[data-testid=interval][data-state=Cancelled]').length === 8",
        )
        .await;
    let (_, counts) = cells_and_counts(&browser).await;
    assert_eq!(counts, json!({"Completed": 1, "Failed": 1, "Cancelled": 8}));

    // Both are listed, newest first.
    browser.open(&server, "/backfills").await;
    browser
        .wait_for_count("two backfills", "[data-testid=backfill-row]", 2)
        .await;
    let listed = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=backfill-row]')].map(r => r.dataset.id);",
            vec![],
        )
        .await;
    assert_eq!(listed, json!([id, chunked[0]["id"]]));
    browser.screenshot("orchestration-backfills").await;
    browser.close().await;
}

/// The task of the worker below: sleeps a minute (unless cancelled).
#[flowkit::task]
async fn nap() {
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[flowkit::flow]
async fn napping() -> Result<(), flowkit::RunError<std::convert::Infallible>> {
    nap().await
}

/// A worker serving `napping` (run as a child process by the test below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the test below"]
async fn napping_worker() {
    flowkit::init();
    let deployment =
        flowkit::serve::Deployment::new("napping", |_: &flowkit::serve::ScheduledRun| napping());
    flowkit::serve::Server::new([deployment])
        .worker_name("napper")
        .run()
        .await
        .expect("serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_a_worker_is_running_from_the_browser() {
    let dir = TempDir::new("dash-cancel-live");
    let mut server = Server::start(dir.path(), 0, &["--api-key", KEY]).await;
    server.key = Some(KEY.into());
    let mut worker = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args(["napping_worker", "--exact", "--ignored", "--nocapture"])
        .env("FLOWKIT_API_URL", &server.url)
        .env("FLOWKIT_API_KEY", KEY)
        .env("FLOWKIT_CONSOLE", "off")
        .env("FLOWKIT_SPOOL_DIR", dir.path().join("spool"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the worker starts");
    struct Reap<'a>(&'a mut std::process::Child);
    impl Drop for Reap<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _reap = Reap(&mut worker);
    until(
        &server,
        "the deployment registered",
        "/api/deployments/napping",
        |d| d["name"] == "napping",
    )
    .await;
    let (status, run) = post(&server, "/api/deployments/napping/runs", json!({})).await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().expect("an id").to_string();
    // The worker took it and its task sleeps.
    until(
        &server,
        "the task running",
        &format!("/api/flow_runs/{id}"),
        |r| r["state"] == "Running" && r["task_runs"][0]["state"] == "Running",
    )
    .await;

    let browser = Browser::start().await;
    browser.goto(&format!("{}/#/runs/{id}", server.url)).await;
    browser
        .wait_until(
            "the key prompt",
            "document.getElementById('key-dialog').open",
        )
        .await;
    browser.type_into("#key-input", KEY).await;
    browser.click("#key-form button[type=submit]").await;
    browser
        .wait_until(
            "the cancel button of the running run",
            "(() => { const b = document.querySelector('[data-testid=cancel-run]');\
             return document.querySelector('[data-testid=run-head] .badge')?.dataset.state === 'Running'\
               && b && !b.hidden && b.offsetParent !== null; })()",
        )
        .await;
    browser.click("[data-testid=cancel-run]").await;
    let asked = Instant::now();
    browser.click("[data-testid=cancel-confirm]").await;
    let answer = browser
        .wait_until(
            "the cancel answer",
            "document.querySelector('[data-testid=cancel-answer]')?.dataset.state",
        )
        .await;
    assert_eq!(
        answer,
        json!("Cancelling"),
        "the worker is asked to stop it"
    );
    browser
        .wait_until(
            "the badge shows Cancelled",
            "document.querySelector('[data-testid=run-head] .badge')?.dataset.state === 'Cancelled'",
        )
        .await;
    let took = asked.elapsed();
    eprintln!(
        "dashboard cancel of a running run → Cancelled on the page in {} ms",
        took.as_millis()
    );
    assert!(
        took < Duration::from_secs(2),
        "within a second or two: {took:?}"
    );
    let detail = get(&server, &format!("/api/flow_runs/{id}")).await;
    assert_eq!(detail["state"], "Cancelled", "{detail}");
    assert_eq!(detail["task_runs"][0]["state"], "Cancelled", "{detail}");
    browser
        .screenshot("orchestration-running-run-cancelled")
        .await;
    browser.close().await;
}
