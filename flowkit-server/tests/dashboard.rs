//! The dashboard in a real browser (Debian's headless Chromium): the server runs real flows'
//! events, then the tests look at the pages as a user would. Screenshots of every page are saved
//! in `target/tmp/dashboard-screenshots/`.

mod common;

use std::sync::LazyLock;
use std::time::Instant;

use common::api::until;
use common::browser::{Browser, artifacts};
use common::{Server, TempDir};
use flowkit::{RunLogLayer, flow, task};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tracing_subscriber::prelude::*;

/// The README's main job, as it is, run against the server.
#[allow(dead_code)]
#[path = "../../examples/etl/mod.rs"]
mod etl;

/// A flow that calls child flows, one of them cancelled.
#[allow(dead_code)]
#[path = "../../examples/subflows.rs"]
mod subflows;

/// One browser at a time: two cores are not enough for several Chromiums and servers at once.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn install_log_layer() {
    static LOGS: std::sync::Once = std::sync::Once::new();
    LOGS.call_once(|| {
        let _ = tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(RunLogLayer),
        );
    });
}

#[task(retries = 2, retry_delay = "150ms")]
async fn extract(day: String) -> Result<Vec<u32>, String> {
    let attempt = flowkit::context().map_or(1, |c| c.attempt());
    tracing::info!(attempt, "fetching orders for {day}");
    if attempt < 3 {
        return Err(format!("source answered 503 (attempt {attempt})"));
    }
    Ok(vec![1, 2, 3, 4, 5])
}

#[task]
async fn audit() -> u32 {
    tracing::info!("audit trail written");
    1
}

#[task]
async fn transform(x: u32) -> u32 {
    if x == 5 {
        tracing::warn!(row = x, "suspicious row");
    }
    x * 10
}

#[flow(name = "browser-etl", tags = ["nightly"])]
async fn etl(day: String) -> anyhow::Result<u32> {
    let extracted = extract(day).submit();
    audit().wait_for([&extracted]).await?;
    let rows = extracted.await?;
    let out = flowkit::map(rows, transform).await;
    Ok(out.into_iter().collect::<Result<Vec<_>, _>>()?.iter().sum())
}

#[task]
async fn load_warehouse() -> Result<(), String> {
    Err("warehouse refused the connection".into())
}

#[flow(name = "browser-failing")]
async fn failing() -> anyhow::Result<()> {
    load_warehouse().await?;
    Ok(())
}

/// Opened by the test while the flow runs.
static GATE: LazyLock<Notify> = LazyLock::new(Notify::new);

#[task]
async fn wait_for_gate() {
    GATE.notified().await;
    tracing::info!("gate opened");
}

#[flow(name = "browser-live")]
async fn live() {
    let _ = wait_for_gate().await;
}

/// Opened by the test once the page of `live_wide` is open.
static WIDE_GATE: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Ends over 3 seconds: time enough for a page that refetched on events to do it often.
#[task]
async fn staggered(i: u64) -> u64 {
    tokio::time::sleep(std::time::Duration::from_millis(i % 40 * 75)).await;
    i
}

#[flow(name = "browser-live-wide")]
async fn live_wide() -> usize {
    WIDE_GATE.notified().await;
    flowkit::map(0..300u64, staggered).await.len()
}

#[task]
async fn tiny(i: u32) -> u32 {
    i
}

#[flow(name = "browser-wide")]
async fn wide() -> usize {
    flowkit::map(0..10_000u32, tiny).await.len()
}

const COUNT: &str = "document.querySelectorAll";

/// The flow name and state badge of each table row matching `rows`, in order.
async fn names_and_states(browser: &Browser, rows: &str) -> Value {
    browser
        .eval(
            "return [...document.querySelectorAll(arguments[0])].map(r => \
             [(r.children[1].querySelector('a') || r.children[1]).textContent, \
             r.querySelector('.badge').dataset.state]);",
            vec![Value::String(rows.to_string())],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_timeline_logs_and_flows_as_a_user_sees_them() {
    let _one = ONE_BROWSER.lock().await;
    install_log_layer();
    let dir = TempDir::new("dash");
    let server = Server::start(dir.path(), 0, &[]).await;
    let spool = TempDir::new("dash-spool");
    let bus = server.bus(spool.path());
    assert_eq!(etl("2026-11-26".into()).on(&bus).await.unwrap(), 150);
    assert!(failing().on(&bus).await.is_err());
    let warehouse = TempDir::new("dash-warehouse");
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
    // Run as a deployment's scheduled run: the list says which, and for which day.
    let at = |text: &str| text.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let scheduled = flowkit::serve::ScheduledRun::new("nightly-etl", at("2026-11-27T02:00:00Z"))
        .with_interval(at("2026-11-26T02:00:00Z"), at("2026-11-27T02:00:00Z"));
    etl::daily_etl(day, warehouse.path().to_path_buf())
        .scheduled(scheduled)
        .on(&bus)
        .await
        .unwrap();
    bus.flush().await;

    let browser = Browser::start().await;
    // The run list: the three runs, with their states.
    browser.open(&server, "/runs").await;
    browser
        .wait_for_count("three runs listed", "[data-testid=run-row]", 3)
        .await;
    let states = names_and_states(&browser, "[data-testid=run-row]").await;
    assert_eq!(
        states,
        json!([
            ["ecommerce-daily-etl", "Completed"],
            ["browser-failing", "Failed"],
            ["browser-etl", "Completed"]
        ]),
        "newest first, each with its state"
    );
    assert!(
        browser.text("[data-testid=runs]").await.contains("nightly"),
        "tags are shown"
    );
    assert_eq!(
        browser.text("[data-testid=deployment]").await,
        "nightly-etl · for 2026-11-26",
        "a deployment's run says which deployment, and its day"
    );
    browser.screenshot("runs").await;
    let unversioned = browser
        .eval(
            "return performance.getEntriesByType('resource').map(e => e.name)\
             .filter(n => n.includes('/assets/') && !n.includes('?v='))",
            vec![],
        )
        .await;
    assert_eq!(
        unversioned,
        json!([]),
        "every asset, imports included, is versioned"
    );

    // Search narrows the list without a reload.
    browser.type_into("[data-testid=search]", "FAILING").await;
    browser
        .wait_for_count("the search result", "[data-testid=run-row]", 1)
        .await;
    assert!(
        browser
            .text("[data-testid=run-row]")
            .await
            .contains("browser-failing")
    );
    assert!(
        browser
            .eval("return location.hash", vec![])
            .await
            .as_str()
            .unwrap()
            .contains("q=FAILING")
    );

    // The failed run shows its error.
    browser.click_js("[data-testid=run-row]").await;
    browser
        .wait_until(
            "the error of the failed run",
            "document.querySelector('[data-testid=run-error]')",
        )
        .await;
    assert!(
        browser
            .text("[data-testid=run-error]")
            .await
            .contains("warehouse refused the connection")
    );
    browser.full_page_screenshot("run-failed").await;

    // The ETL run: parameters, state history, one bar per task run, retry segments, upstream.
    let runs = server.get("/api/flow_runs?flow=browser-etl").await;
    let id = runs["items"][0]["id"].as_str().unwrap().to_string();
    browser.open(&server, &format!("/runs/{id}")).await;
    browser
        .wait_for_count("the timeline", "[data-testid=task-row]", 7)
        .await;
    assert!(
        browser
            .text("[data-testid=parameters]")
            .await
            .contains("2026-11-26")
    );
    let history = browser.text("[data-testid=state-history]").await;
    assert!(
        history.contains("Running") && history.contains("Completed"),
        "{history}"
    );
    let extract_row = browser
        .eval(
            "const row = [...document.querySelectorAll('[data-testid=task-row]')].find(r => r.textContent.startsWith('extract'));\
             return { id: row.dataset.runId,\
               attempts: [...row.querySelectorAll('[data-testid=segment]')].map(s => [s.dataset.attempt, s.dataset.state]),\
               waits: row.querySelectorAll('[data-testid=retry-wait]').length };",
            vec![],
        )
        .await;
    assert_eq!(
        extract_row["attempts"],
        json!([["1", "Retrying"], ["2", "Retrying"], ["3", "Completed"]]),
        "each attempt is its own segment"
    );
    assert_eq!(
        extract_row["waits"], 2,
        "the delays between attempts are drawn"
    );
    let mapped = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=task-row]')].filter(r => r.textContent.startsWith('transform [')).length",
            vec![],
        )
        .await;
    assert_eq!(mapped, 5, "one bar per mapped task run");
    let dependencies = browser
        .eval(
            &format!("return {COUNT}('[data-testid=dependency]').length"),
            vec![],
        )
        .await;
    assert_eq!(dependencies, 1, "audit waits for extract: one line");

    // Zoom: dragging across the right half of the axis hides the first attempt; reset shows it.
    let segments_of_extract = "[...document.querySelectorAll('[data-testid=task-row]')].find(r => r.textContent.startsWith('extract')).querySelectorAll('[data-testid=segment]').length";
    browser
        .eval(
            "const axis = document.querySelector('.timeline-axis'); const r = axis.getBoundingClientRect();\
             const at = (f) => ({ clientX: r.left + 240 + (r.width - 256) * f, clientY: r.top + 5, bubbles: true });\
             axis.dispatchEvent(new MouseEvent('mousedown', at(0.6)));\
             window.dispatchEvent(new MouseEvent('mousemove', at(1)));\
             window.dispatchEvent(new MouseEvent('mouseup', at(1)));",
            vec![],
        )
        .await;
    browser
        .wait_until("the zoomed timeline", &format!("!document.querySelector('[data-testid=zoom-reset]').hidden && {segments_of_extract} < 3"))
        .await;
    browser.screenshot("run-zoomed").await;
    browser.click_js("[data-testid=zoom-reset]").await;
    browser
        .wait_until(
            "the whole run again",
            &format!("{segments_of_extract} === 3"),
        )
        .await;

    // Selecting a task shows its attempts and only its logs.
    let extract_id = extract_row["id"].as_str().unwrap().to_string();
    browser
        .click(&format!(
            "[data-testid=task-row][data-run-id='{extract_id}']"
        ))
        .await;
    browser
        .wait_until(
            "the task's logs",
            &format!(
                // Three lines of its own, and flowkit's line for each of its two retries.
                "{COUNT}('[data-testid=log-line]').length === 5 && \
                 [...{COUNT}('[data-testid=log-line]')].every(l => l.dataset.taskRunId === '{extract_id}')"
            ),
        )
        .await;
    assert_eq!(browser.text("[data-testid=task-attempts]").await, "3 of 3");
    assert!(
        browser
            .text("[data-testid=logs]")
            .await
            .contains("fetching orders for 2026-11-26")
    );
    browser.full_page_screenshot("run").await;

    // The level filter.
    browser.click_js("[data-testid=log-task] button").await;
    browser
        .wait_for_count("all lines again", "[data-testid=log-line]", 7)
        .await;
    browser
        .eval(
            "const s = document.querySelector('[data-testid=log-level]'); s.value = 'WARN'; \
             s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
    // The warning, and the two retries' lines flowkit wrote at WARN.
    browser
        .wait_for_count("only the warnings", "[data-testid=log-line]", 3)
        .await;
    let warnings = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=log-line]')].map(l => l.textContent)",
            vec![],
        )
        .await;
    let warnings: Vec<&str> = warnings
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        warnings
            .iter()
            .filter(|l| l.contains("suspicious row"))
            .count(),
        1,
        "{warnings:?}"
    );
    assert_eq!(
        warnings
            .iter()
            .filter(|l| l.contains("failed: source answered 503"))
            .count(),
        2,
        "{warnings:?}"
    );

    // The example's run: its flaky extract's three attempts, the mapped transforms, the loads.
    let runs = server.get("/api/flow_runs?flow=ecommerce-daily-etl").await;
    let example = runs["items"][0]["id"].as_str().unwrap().to_string();
    browser.open(&server, &format!("/runs/{example}")).await;
    browser
        .wait_until(
            "the example's timeline",
            &format!("{COUNT}('[data-testid=task-row]').length > 3"),
        )
        .await;
    let example_rows = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=task-row]')].map(r => [r.querySelector('text').textContent,\
               [...r.querySelectorAll('[data-testid=segment]')].map(s => s.dataset.state).join(' '),\
               r.querySelectorAll('[data-testid=retry-wait]').length]);",
            vec![],
        )
        .await;
    let example_rows = example_rows.as_array().unwrap();
    assert_eq!(
        example_rows[0],
        json!(["extract_orders", "Retrying Retrying Completed", 2]),
        "{example_rows:?}"
    );
    assert!(
        example_rows
            .iter()
            .any(|r| r[0].as_str().unwrap().starts_with("transform [")),
        "{example_rows:?}"
    );
    let loads: Vec<&str> = example_rows
        .iter()
        .filter_map(|r| r[0].as_str().filter(|l| l.starts_with("load")))
        .collect();
    assert_eq!(
        loads,
        ["load", "load#2", "load#3", "load#4"],
        "one per table"
    );
    browser.full_page_screenshot("run-example-daily-etl").await;

    // Flows: health per flow, with runs by state over time.
    browser.open(&server, "/flows").await;
    browser
        .wait_for_count("three flow cards", "[data-testid=flow-card]", 3)
        .await;
    let etl_card = "[data-testid=flow-card][data-flow=browser-etl]";
    assert_eq!(
        browser
            .text(&format!("{etl_card} [data-testid=success-rate]"))
            .await,
        "100%"
    );
    assert_eq!(
        browser
            .text("[data-flow=browser-failing] [data-testid=success-rate]")
            .await,
        "0%"
    );
    let bars = browser
        .eval(
            &format!("return [...document.querySelectorAll('{etl_card} [data-testid=activity-chart] rect')].map(r => r.dataset.state)"),
            vec![],
        )
        .await;
    assert_eq!(
        bars,
        json!(["Completed"]),
        "one run, completed, in the last bucket"
    );
    browser.screenshot("flows").await;

    // Dark: the same pages, readable.
    browser.click("#theme").await;
    browser.click("#theme").await;
    assert_eq!(browser.text("#theme").await, "Theme: dark");
    let background = browser
        .eval(
            "return getComputedStyle(document.body).backgroundColor",
            vec![],
        )
        .await;
    assert_eq!(background, "rgb(15, 18, 22)");
    browser.screenshot("flows-dark").await;
    browser.open(&server, &format!("/runs/{id}")).await;
    browser
        .wait_for_count("the timeline in dark", "[data-testid=task-row]", 7)
        .await;
    browser.full_page_screenshot("run-dark").await;

    // Child flow runs: listed on the parent's page, each linking back to its parent.
    subflows::backfill(vec!["eu", "us"]).on(&bus).await.unwrap();
    bus.flush().await;
    let runs = server.get("/api/flow_runs?flow=regional-backfill").await;
    let parent = runs["items"][0]["id"].as_str().unwrap().to_string();
    browser.open(&server, &format!("/runs/{parent}")).await;
    browser
        .wait_for_count(
            "the child flow runs",
            "[data-testid=child-runs] tbody tr",
            3,
        )
        .await;
    let children = names_and_states(&browser, "[data-testid=child-runs] tbody tr").await;
    assert_eq!(
        children,
        json!([
            ["copy_region", "Completed"],
            ["copy_region", "Completed"],
            ["slow_export", "Cancelled"]
        ])
    );
    browser.full_page_screenshot("run-with-children").await;
    browser.click_js("[data-testid=child-runs] tbody tr").await;
    browser
        .wait_until("the child's page", &format!("[...document.querySelectorAll('[data-testid=run-head] a')].some(a => a.getAttribute('href') === '#/runs/{parent}')"))
        .await;
    assert_eq!(browser.text("[data-testid=run-name]").await, "copy_region");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_for_the_api_key_once_then_updates_live() {
    let _one = ONE_BROWSER.lock().await;
    install_log_layer();
    const KEY: &str = "dashboard-key-1";
    let dir = TempDir::new("dash-key");
    let mut server = Server::start(dir.path(), 0, &["--api-key", KEY]).await;
    server.key = Some(KEY.into());
    let browser = Browser::start().await;
    browser.goto(&server.url).await;
    browser
        .wait_until(
            "the key prompt",
            "document.getElementById('key-dialog').open",
        )
        .await;
    browser.screenshot("api-key-prompt").await;

    // A wrong key is refused, and the prompt says so.
    browser.type_into("#key-input", "not-the-key").await;
    browser.click("#key-form button[type=submit]").await;
    browser
        .wait_until(
            "the refusal",
            "document.getElementById('key-dialog').open && !document.getElementById('key-error').hidden",
        )
        .await;
    browser.type_into("#key-input", KEY).await;
    browser.click("#key-form button[type=submit]").await;
    browser
        .wait_until(
            "the empty list",
            "document.querySelector('[data-testid=empty]')",
        )
        .await;
    assert!(
        browser
            .text("[data-testid=empty]")
            .await
            .contains("No flow runs yet")
    );
    browser.screenshot("runs-empty").await;

    // Kept for the session: a reload does not ask again.
    browser.client.refresh().await.unwrap();
    browser
        .wait_until(
            "the list after a reload",
            "document.querySelector('[data-testid=empty]')",
        )
        .await;
    assert_eq!(
        browser
            .eval("return document.getElementById('key-dialog').open", vec![])
            .await,
        false
    );

    // A run appears live, without a reload.
    browser
        .wait_until(
            "the live stream",
            "document.getElementById('live').dataset.status === 'live'",
        )
        .await;
    browser.eval("window.noReload = true;", vec![]).await;
    let spool = TempDir::new("dash-key-spool");
    let bus = server.bus(spool.path());
    let running = tokio::spawn({
        let bus = bus.clone();
        async move { live().on(&bus).await }
    });
    browser
        .wait_for_count("the new run in the list", "[data-testid=run-row]", 1)
        .await;
    assert_eq!(
        browser
            .eval("return window.noReload === true", vec![])
            .await,
        true
    );

    // Its page follows it: Running, then Completed, with the log line arriving live.
    let runs = until(&server, "the runs", "/api/flow_runs", |v| {
        v["items"][0]["state"] == "Running"
    })
    .await;
    let id = runs["items"][0]["id"].as_str().unwrap().to_string();
    browser.open(&server, &format!("/runs/{id}")).await;
    browser
        .wait_until(
            "the running run",
            "document.querySelector('.badge.big')?.dataset.state === 'Running'",
        )
        .await;
    browser
        .wait_until(
            "its live stream",
            "document.getElementById('live').dataset.status === 'live'",
        )
        .await;
    browser.screenshot("run-live-running").await;
    browser.eval("window.noReload = true;", vec![]).await;
    GATE.notify_one();
    running.await.unwrap().unwrap();
    bus.flush().await;
    browser
        .wait_until(
            "the completed run",
            "document.querySelector('.badge.big')?.dataset.state === 'Completed'",
        )
        .await;
    browser
        .wait_until(
            "the live log line",
            "document.querySelector('[data-testid=logs]').textContent.includes('gate opened')",
        )
        .await;
    assert_eq!(
        browser
            .eval("return window.noReload === true", vec![])
            .await,
        true,
        "no reload"
    );
    browser.full_page_screenshot("run-live-completed").await;

    // A run with 300 task runs, followed live: its events update the page in place, without
    // fetching the run again for each of them.
    let wide = tokio::spawn({
        let bus = bus.clone();
        async move { live_wide().on(&bus).await }
    });
    let runs = until(
        &server,
        "the wide run",
        "/api/flow_runs?flow=browser-live-wide",
        |v| v["items"][0]["state"] == "Running",
    )
    .await;
    let wide_id = runs["items"][0]["id"].as_str().unwrap().to_string();
    browser.open(&server, &format!("/runs/{wide_id}")).await;
    browser
        .wait_until(
            "the wide run's page",
            "document.querySelector('[data-testid=no-tasks]')",
        )
        .await;
    browser
        .wait_until(
            "its live stream",
            "document.getElementById('live').dataset.status === 'live'",
        )
        .await;
    WIDE_GATE.notify_one();
    assert_eq!(wide.await.unwrap().unwrap(), 300);
    bus.flush().await;
    browser
        .wait_until(
            "300 completed task runs",
            "window.flowkitTimeline.rows === 300 && \
             [...document.querySelectorAll('[data-testid=state-chip]')].map(c => c.textContent).join() === 'Completed 300' && \
             document.querySelector('.badge.big')?.dataset.state === 'Completed'",
        )
        .await;
    let loads = browser
        .eval(
            &format!("return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/api/flow_runs/{wide_id}')).length"),
            vec![],
        )
        .await;
    assert!(
        loads.as_u64().unwrap() <= 3,
        "the first load, the final one, at most one more: {loads}"
    );
    browser.screenshot("run-live-wide").await;

    // The server goes away: the indicator says so, and a page that cannot load says what to do.
    browser.open(&server, "/runs").await;
    browser
        .wait_for_count("the list", "[data-testid=run-row]", 2)
        .await;
    server.kill().await;
    browser
        .wait_until(
            "the reconnecting indicator",
            "document.getElementById('live').dataset.status === 'reconnecting'",
        )
        .await;
    browser
        .eval(
            "const s = document.querySelector('[data-testid=state-filter]'); s.value = 'Failed'; \
             s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
    browser
        .wait_until(
            "the error state",
            "document.querySelector('[data-testid=error]')",
        )
        .await;
    let error = browser.text("[data-testid=error]").await;
    assert!(
        error.contains("Is flowkit-server still running?") && error.contains("Try again"),
        "{error}"
    );
    browser.screenshot("runs-server-down").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_task_runs_render_and_scroll() {
    let _one = ONE_BROWSER.lock().await;
    let dir = TempDir::new("dash-wide");
    let server = Server::start(dir.path(), 0, &[]).await;
    let spool = TempDir::new("dash-wide-spool");
    let bus = server.bus(spool.path());
    assert_eq!(wide().on(&bus).await.unwrap(), 10_000);
    bus.flush().await;
    let runs = server.get("/api/flow_runs?flow=browser-wide").await;
    let id = runs["items"][0]["id"].as_str().unwrap().to_string();
    let detail_bytes = reqwest::get(format!("{}/api/flow_runs/{id}", server.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();

    let browser = Browser::start().await;
    let opened = Instant::now();
    browser.open(&server, &format!("/runs/{id}")).await;
    browser
        .wait_until(
            "the timeline of 10,000 runs",
            "window.flowkitTimeline && window.flowkitTimeline.rows === 10000",
        )
        .await;
    let wall_ms = opened.elapsed().as_millis();
    let first = browser
        .eval(
            "return { rendered: performance.getEntriesByName('flowkit:run-rendered')[0].startTime,\
                      firstFrame: window.flowkitTimeline.firstFrameAt,\
                      drawn: document.querySelectorAll('[data-testid=task-row]').length,\
                      fetches: performance.getEntriesByType('resource')\
                        .filter(e => e.name.includes('/api/flow_runs/'))\
                        .map(e => [e.name.split('/api/')[1].split('?')[0].replace(/[0-9a-f-]{36}/, '{id}'), Math.round(e.duration), e.transferSize]) };",
            vec![],
        )
        .await;
    let drawn = first["drawn"].as_u64().unwrap();
    assert!(
        drawn > 0 && drawn < 200,
        "only the rows in view are drawn: {drawn}"
    );
    browser.screenshot("run-10k-top").await;

    // Scroll to the bottom in 40 steps, a frame each, timing each frame.
    let scrolled = browser
        .eval(
            "const body = document.querySelector('[data-testid=timeline-body]');\
             const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));\
             return (async () => {\
               window.flowkitTimeline.slowestFrameMs = 0;\
               const began = performance.now();\
               for (let i = 1; i <= 40; i++) { body.scrollTop = (body.scrollHeight - body.clientHeight) * i / 40; await frame(); }\
               return { ms: performance.now() - began, slowest: window.flowkitTimeline.slowestFrameMs,\
                        last: !!document.querySelector('[data-testid=task-row][data-index=\"9999\"]') };\
             })();",
            vec![],
        )
        .await;
    assert_eq!(
        scrolled["last"], true,
        "the last task run is drawn at the bottom"
    );
    browser.screenshot("run-10k-bottom").await;
    let report = json!({
        "task_runs": 10_000,
        "detail_json_bytes": detail_bytes,
        "first_render_ms_after_navigation": first["rendered"],
        "first_timeline_frame_ms_after_navigation": first["firstFrame"],
        "api_fetches_ms_and_bytes_transferred": first["fetches"],
        "test_wall_ms_until_rendered": wall_ms,
        "rows_in_dom": drawn,
        "scroll_40_steps_ms": scrolled["ms"],
        "slowest_frame_ms": scrolled["slowest"],
    });
    eprintln!("dashboard with 10,000 task runs: {report}");
    std::fs::write(artifacts().join("timing-10k.json"), report.to_string()).unwrap();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_flow_runs_list_and_chart_quickly() {
    use flowkit::State;
    use flowkit::events::{Event, EventKind, RunType, StateChanged};
    let _one = ONE_BROWSER.lock().await;
    let dir = TempDir::new("dash-many");
    let server = Server::start(dir.path(), 0, &[]).await;
    // 5,000 flow runs of 20 flows over the last day, one in ten failed.
    const NAMES: [&str; 20] = [
        "orders",
        "payments",
        "refunds",
        "inventory",
        "customers",
        "sessions",
        "clicks",
        "emails",
        "invoices",
        "shipments",
        "returns",
        "reviews",
        "ads",
        "search",
        "carts",
        "coupons",
        "stores",
        "suppliers",
        "payroll",
        "forecast",
    ];
    let now = chrono::Utc::now();
    let mut events = Vec::new();
    for i in 0..5_000i64 {
        let at = now - chrono::Duration::seconds(86_000 * i / 5_000 + 60);
        let id = common::id_at(at);
        let event = |kind, seconds: i64| Event {
            id: common::id_at(at + chrono::Duration::seconds(seconds)),
            timestamp: at + chrono::Duration::seconds(seconds),
            flow_run_id: Some(id),
            task_run_id: None,
            kind,
        };
        let state = |state, attempt| {
            EventKind::StateChanged(StateChanged {
                state,
                attempt,
                message: None,
                next_attempt_at: None,
            })
        };
        events.push(event(
            common::run_created(RunType::Flow, NAMES[i as usize % 20], 0),
            0,
        ));
        events.push(event(state(State::Running, 1), 0));
        let end = if i % 10 == 0 {
            State::Failed
        } else {
            State::Completed
        };
        events.push(event(state(end, 1), 1 + i % 30));
    }
    let client = reqwest::Client::new();
    for batch in events.chunks(5_000) {
        let response = client
            .post(format!("{}/api/events", server.url))
            .json(batch)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let browser = Browser::start().await;
    browser.open(&server, "/runs").await;
    browser
        .wait_for_count("the first page of runs", "[data-testid=run-row]", 50)
        .await;
    let list_ms = browser
        .eval(
            "return performance.getEntriesByName('flowkit:runs-rendered')[0].startTime",
            vec![],
        )
        .await;
    assert!(
        browser
            .text("[data-testid=more]")
            .await
            .contains("Load more")
    );
    browser.screenshot("runs-5000").await;
    browser.open(&server, "/flows").await;
    browser
        .wait_for_count("20 flow cards", "[data-testid=flow-card]", 20)
        .await;
    let flows_ms = browser
        .eval(
            "return performance.getEntriesByName('flowkit:flows-rendered')[0].startTime",
            vec![],
        )
        .await;
    let orders = browser
        .text("[data-flow=orders] [data-testid=flow-runs]")
        .await;
    assert_eq!(
        orders, "250",
        "every run of the flow in the last 24h is counted"
    );
    assert_eq!(
        browser
            .text("[data-flow=orders] [data-testid=success-rate]")
            .await,
        "0%",
        "runs 0, 20, 40… of `orders` are the failed ones"
    );
    browser.screenshot("flows-20").await;
    let report = json!({
        "flow_runs": 5_000,
        "runs_page_first_render_ms_after_navigation": list_ms,
        "flows_page_first_render_ms_after_navigation": flows_ms,
    });
    eprintln!("dashboard with 5,000 flow runs: {report}");
    std::fs::write(
        artifacts().join("timing-5000-runs.json"),
        report.to_string(),
    )
    .unwrap();
    browser.close().await;
}

#[flow(name = "deployed-load")]
async fn deployed_load() -> Result<(), String> {
    let run = flowkit::context().unwrap().scheduled().unwrap().clone();
    if run.logical_date().to_string() == "2026-11-25" {
        return Err("the source had no file for 2026-11-25".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_show_their_schedule_next_runs_and_last_runs() {
    let _one = ONE_BROWSER.lock().await;
    let dir = TempDir::new("dash-deployments");
    let server = Server::start(dir.path(), 0, &[]).await;
    let spool = TempDir::new("dash-deployments-spool");
    let registered = reqwest::Client::new()
        .put(format!("{}/api/deployments/nightly-load", server.url))
        .json(&json!({"name": "nightly-load", "flow": "deployed-load",
            "schedules": [{"cron": "0 2 * * *"}], "time_zone": "Europe/Madrid", "catchup": true}))
        .send()
        .await
        .expect("registered");
    assert!(registered.status().is_success());
    let bus = server.bus(spool.path());
    for day in ["2026-11-24", "2026-11-25", "2026-11-26"] {
        let start: chrono::DateTime<chrono::Utc> = format!("{day}T01:00:00Z").parse().unwrap();
        let run = flowkit::serve::ScheduledRun::new("nightly-load", start + chrono::Days::new(1))
            .with_interval(start, start + chrono::Days::new(1));
        let _ = deployed_load().scheduled(run).on(&bus).await;
    }
    bus.flush().await;

    let browser = Browser::start().await;
    browser.open(&server, "/deployments").await;
    browser
        .wait_for_count("one deployment", "[data-testid=deployment-row]", 1)
        .await;
    let schedule = browser.text("[data-testid=schedule]").await;
    assert!(schedule.contains("0 2 * * * (Europe/Madrid)"), "{schedule}");
    assert!(schedule.contains("catchup"), "{schedule}");
    assert!(browser.text("[data-testid=next-run]").await.contains("in "));
    let strip = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=last-runs] .cell')]\
             .map(c => [c.title, c.dataset.state]);",
            vec![],
        )
        .await;
    assert_eq!(
        strip,
        json!([
            ["2026-11-24 · Completed", "Completed"],
            ["2026-11-25 · Failed", "Failed"],
            ["2026-11-26 · Completed", "Completed"]
        ]),
        "oldest on the left, each with its day and state"
    );
    browser.screenshot("deployments").await;
    browser.close().await;
}
