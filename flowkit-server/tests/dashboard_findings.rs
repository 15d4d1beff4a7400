//! Finding what went wrong, in a real browser (Debian's headless Chromium), as an on-call user
//! would: a run found by its name, the runs with failed tasks, the log line of a retried 503, a
//! task run's page opened from its URL with its recorded arguments, the failed flow's link to the
//! task that caused it, and every page at 390 × 844 with nothing clipped sideways. One server and one browser for all.

mod common;

use common::browser::Browser;
use common::{Server, TempDir};
use flowkit::{flow, task};
use serde_json::{Value, json};

#[task(retries = 1, retry_delay = "100ms")]
async fn extract_orders(day: String) -> Result<u32, String> {
    let attempt = flowkit::context().map_or(1, |c| c.attempt());
    if attempt == 1 {
        return Err(format!("orders API answered 503 for {day}"));
    }
    Ok(40)
}

/// Times out on its first attempt, then answers.
#[task(retries = 1, timeout = "150ms")]
async fn slow_source() -> u32 {
    if flowkit::context().map_or(1, |c| c.attempt()) == 1 {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
    1
}

#[task]
async fn validate(row: u32) -> Result<u32, String> {
    if row == 3 {
        return Err(format!("row {row} has no customer"));
    }
    Ok(row)
}

// `retry_if` is given `&E`, and `E` is `String` here.
#[allow(clippy::ptr_arg)]
fn is_transient(error: &String) -> bool {
    error.starts_with("503")
}

#[task(retries = 3, retry_if = is_transient)]
async fn load_warehouse(rows: u32) -> Result<(), String> {
    Err(format!("warehouse refused {rows} rows: disk full"))
}

/// Completes whatever its rows hold: a bad row is counted, not fatal.
#[flow(name = "find-etl", run_name = "etl-{day}", tags = ["nightly"], record_arguments = true)]
async fn nightly(
    day: String,
    bad_row: bool,
    shards: Vec<u32>,
) -> Result<usize, flowkit::RunError<String>> {
    let orders =
        extract_orders(day).await? + slow_source().await.unwrap_or(0) + shards.len() as u32;
    let rows = if bad_row { vec![1, 2, 3] } else { vec![1, 2] };
    let valid = flowkit::map(rows, validate).await;
    Ok(valid.iter().filter(|r| r.is_ok()).count() + orders as usize)
}

/// Stages a batch: its arguments are recorded, the batch over the 16 KiB cap as a marker.
#[task(record_arguments = true)]
async fn stage(table: String, batch: Vec<u32>) -> usize {
    let _ = table;
    batch.len()
}

#[flow(name = "find-load")]
async fn load() -> Result<(), flowkit::RunError<String>> {
    let _ = validate(1).await;
    let _ = stage("orders".into(), (0..10_000).collect()).await;
    load_warehouse(40).await
}

#[flow(name = "find-child")]
async fn child_export() {}

#[flow(name = "find-parent")]
async fn parent_export() -> Result<(), flowkit::RunError<std::convert::Infallible>> {
    child_export().await
}

const CLIPPED: &str = r#"
const vw = document.documentElement.clientWidth;
const bad = [];
if (document.documentElement.scrollWidth > vw + 1) bad.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${vw}`);
const name = (el) => `${el.tagName.toLowerCase()}${el.dataset.testid ? `[${el.dataset.testid}]` : ''}.${[...el.classList].join('.')} "${(el.textContent || '').trim().slice(0, 30)}"`;
for (const el of document.querySelectorAll('main *, header *')) {
  if (!el.getClientRects().length || (el.closest('svg') && el.tagName.toLowerCase() !== 'svg')) continue;
  const r = el.getBoundingClientRect();
  if (r.width === 0) continue;
  // The nearest box that clips sideways: a scroll area is reachable, a hidden overflow is not.
  let right = vw;
  let scrolls = false;
  for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
    const o = getComputedStyle(p).overflowX;
    if (o === 'auto' || o === 'scroll') { scrolls = true; break; }
    if (o === 'hidden' || o === 'clip') { right = Math.min(right, p.getBoundingClientRect().right); break; }
  }
  if (scrolls) continue;
  if (r.right > right + 1 || r.left < -1) bad.push(`${name(el)}: ${Math.round(r.left)}..${Math.round(r.right)} (visible to ${Math.round(right)})`);
}
return bad.slice(0, 8);
"#;

/// The rendered text of the first element matching `css`, read in the page at once (a live
/// page may re-render between finding an element and reading it).
async fn text(browser: &Browser, css: &str) -> String {
    browser
        .eval(
            "const el = document.querySelector(arguments[0]); return el ? (el.innerText ?? el.textContent) : null;",
            vec![Value::String(css.to_string())],
        )
        .await
        .as_str()
        .unwrap_or_else(|| panic!("no {css}"))
        .to_string()
}

/// Opens `hash`, waits for `ready`, and checks that nothing of the page is cut off sideways.
async fn fits_a_phone(browser: &Browser, server: &Server, page: &str, hash: &str, ready: &str) {
    browser.goto(&format!("{}/{hash}", server.url)).await;
    browser
        .wait_until(&format!("{page} on a phone"), ready)
        .await;
    // Layout settles within a frame or two (fonts, the timeline's first draw).
    browser
        .eval(
            "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))));",
            vec![],
        )
        .await;
    let clipped = browser.eval(CLIPPED, vec![]).await;
    browser.screenshot(&format!("phone-{page}")).await;
    assert_eq!(clipped, json!([]), "{page} at 390 px: clipped sideways");
    let theme = browser
        .eval(
            "const r = document.getElementById('theme').getBoundingClientRect(); return r.right <= document.documentElement.clientWidth && r.left >= 0;",
            vec![],
        )
        .await;
    assert_eq!(theme, true, "{page}: the theme toggle is on screen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_went_wrong_is_found_in_seconds() {
    let dir = TempDir::new("findings");
    let server = Server::start(dir.path(), 0, &[]).await;
    let spool = TempDir::new("findings-spool");
    let bus = server.bus(spool.path());
    for (day, bad_row) in [
        ("2026-11-26", false),
        ("2026-11-27", true),
        ("2026-11-28", false),
    ] {
        nightly(day.into(), bad_row, (1..=12).collect())
            .on(&bus)
            .await
            .unwrap();
    }
    assert!(load().on(&bus).await.is_err());
    parent_export().on(&bus).await.unwrap();
    bus.flush().await;
    let etl_runs = server.get("/api/flow_runs?flow=find-etl").await;
    let run_of = |day: &str| -> String {
        etl_runs["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["run_name"] == format!("etl-{day}"))
            .map(|r| r["id"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no run named etl-{day}: {etl_runs}"))
    };
    let bad_day = run_of("2026-11-27");
    let first_of = |page: Value| page["items"][0]["id"].as_str().unwrap().to_string();
    let parent_run = first_of(server.get("/api/flow_runs?flow=find-parent").await);
    let child_run = first_of(server.get("/api/flow_runs?flow=find-child").await);
    let load_run = server.get("/api/flow_runs?flow=find-load").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let browser = Browser::start().await;

    // 1. A run found by its name: typed into the search, one row, with that name.
    browser.open(&server, "/runs").await;
    browser
        .wait_for_count("six runs", "[data-testid=run-row]", 6)
        .await;
    browser
        .type_into("[data-testid=search]", "etl-2026-11-27")
        .await;
    browser
        .wait_for_count("the run named etl-2026-11-27", "[data-testid=run-row]", 1)
        .await;
    assert_eq!(
        text(&browser, "[data-testid=run-row] [data-testid=run-name]").await,
        "etl-2026-11-27"
    );
    assert_eq!(
        text(&browser, "[data-testid=run-row] [data-testid=params]").await,
        "bad_row=true day=2026-11-27 shards=[1,2,3,4,5,6,7,8,9,10,11,12]"
    );

    // 2. Failures in plain sight: the bar counts the failed task of a Completed run; the filter
    // keeps only runs with failed tasks; the failed run shows a snippet of its error.
    let bar = browser
        .eval(
            "const b = document.querySelector('[data-testid=run-row] [data-testid=task-bar]');\
             return [b.dataset.total, b.dataset.failed, b.textContent, \
               document.querySelector('[data-testid=run-row] .badge').dataset.state];",
            vec![],
        )
        .await;
    assert_eq!(bar, json!(["5", "1", "1 of 5 failed", "Completed"]));
    browser.open(&server, "/runs").await;
    browser
        .wait_for_count("all six runs again", "[data-testid=run-row]", 6)
        .await;
    // A child flow run is marked so, with a link to its parent.
    let child_of = browser
        .eval(
            &format!("return document.querySelector(\"[data-run-id='{child_run}'] [data-testid=child-of] a\")?.getAttribute('href')"),
            vec![],
        )
        .await;
    assert_eq!(child_of, Value::from(format!("#/runs/{parent_run}")));
    // In its parent's timeline it is a row that opens its page.
    browser.open(&server, &format!("/runs/{parent_run}")).await;
    browser
        .wait_until(
            "the child's row",
            &format!(
                "document.querySelector(\"[data-testid=task-row][data-run-id='{child_run}']\")"
            ),
        )
        .await;
    assert_eq!(
        text(
            &browser,
            &format!("[data-testid=task-row][data-run-id='{child_run}'] text")
        )
        .await,
        "↳ find-child"
    );
    browser
        .eval(
            &format!("document.querySelector(\"[data-testid=task-row][data-run-id='{child_run}']\").dispatchEvent(new MouseEvent('click', {{ bubbles: true }}))"),
            vec![],
        )
        .await;
    browser
        .wait_until(
            "the child's page",
            &format!("location.hash === '#/runs/{child_run}' && document.querySelector('[data-testid=run-name]')?.textContent === 'find-child'"),
        )
        .await;
    browser.open(&server, "/runs").await;
    browser
        .wait_for_count("the six runs", "[data-testid=run-row]", 6)
        .await;
    browser.click_js("[data-testid=failed-tasks-filter]").await;
    browser
        .wait_for_count("the runs with failed tasks", "[data-testid=run-row]", 2)
        .await;
    let filtered = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=run-row]')].map(r => r.dataset.runId).sort();",
            vec![],
        )
        .await;
    let mut expected = vec![bad_day.clone(), load_run.clone()];
    expected.sort();
    assert_eq!(filtered, json!(expected));
    assert!(
        browser
            .eval("return location.hash", vec![])
            .await
            .as_str()
            .unwrap()
            .contains("failed_tasks=true"),
        "the filter is in the URL"
    );
    let snippet = browser
        .eval(
            &format!("return document.querySelector(\"[data-run-id='{load_run}'] [data-testid=error-snippet]\")?.textContent"),
            vec![],
        )
        .await;
    assert!(
        snippet
            .as_str()
            .is_some_and(|s| s.contains("warehouse refused 40 rows: disk full")),
        "{snippet}"
    );
    browser.screenshot("findings-failed-tasks").await;

    // 3. The retried 503 has its log line, at WARN, with the delay.
    browser.open(&server, &format!("/runs/{bad_day}")).await;
    browser
        .wait_until(
            "the retry's log line",
            "[...document.querySelectorAll('[data-testid=log-line]')].some(l => l.textContent.includes('Attempt 1 of 2 failed: orders API answered 503 for 2026-11-27; retrying in 100ms'))",
        )
        .await;
    let level = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=log-line]')].find(l => l.textContent.includes('answered 503')).dataset.level",
            vec![],
        )
        .await;
    assert_eq!(level, "WARN");
    assert_eq!(
        text(&browser, "[data-testid=run-title]").await,
        "etl-2026-11-27"
    );
    // The retried attempt and the failed mapped run are drawn in their own colors.
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=task-row]')].map(r => [r.querySelector('text').textContent,\
               [...r.querySelectorAll('[data-testid=segment]')].map(s => s.dataset.state).join(' ')]);",
            vec![],
        )
        .await;
    assert_eq!(
        rows[0],
        json!(["extract_orders", "Retrying Completed"]),
        "{rows}"
    );

    // 4. A task run's URL, opened directly: its attempts with their errors, its logs only.
    let detail = server.get(&format!("/api/flow_runs/{bad_day}")).await;
    let task_id = |name: &str, index: Option<u64>| -> String {
        detail["task_runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name && t["map_index"].as_u64() == index)
            .map(|t| t["id"].as_str().unwrap().to_string())
            .expect("the task run")
    };
    let extract = task_id("extract_orders", None);
    // The flow run's list leaves task runs' arguments out; the task run's own route has them.
    assert!(
        detail["task_runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["parameters"].is_null()),
        "{detail}"
    );
    let own = server
        .get(&format!("/api/flow_runs/{bad_day}/task_runs/{extract}"))
        .await;
    assert_eq!(own["parameters"], json!({"day": "2026-11-27"}));
    assert_eq!(own["name"], "extract_orders");
    // A task run asked for under another flow run, or one that does not exist, is a 404; a
    // bad id names its field.
    for (path, status, field) in [
        (
            format!("/api/flow_runs/{load_run}/task_runs/{extract}"),
            404,
            None,
        ),
        (
            format!(
                "/api/flow_runs/{bad_day}/task_runs/{}",
                uuid::Uuid::now_v7()
            ),
            404,
            None,
        ),
        (
            format!("/api/flow_runs/{bad_day}/task_runs/nope"),
            400,
            Some("task_run_id"),
        ),
    ] {
        let response = reqwest::get(format!("{}{path}", server.url))
            .await
            .expect("the request");
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: Value = response.json().await.expect("a JSON error");
        if let Some(field) = field {
            assert_eq!(body["field"], field, "{body}");
        }
    }
    browser
        .open(&server, &format!("/runs/{bad_day}/tasks/{extract}"))
        .await;
    browser
        .wait_for_count("its two attempts", "[data-testid=attempt]", 2)
        .await;
    assert_eq!(
        text(&browser, "[data-testid=task-name]").await,
        "extract_orders"
    );
    assert_eq!(
        text(&browser, "[data-testid=task-attempts]").await,
        "2 of 2"
    );
    let attempts = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=attempt]')].map(a => [a.dataset.state, a.querySelector('.attempt-error').textContent]);",
            vec![],
        )
        .await;
    assert_eq!(
        attempts,
        json!([
            ["Retrying", "orders API answered 503 for 2026-11-27"],
            ["Completed", "—"]
        ])
    );
    browser
        .wait_until(
            "only its log lines",
            &format!("document.querySelectorAll('[data-testid=log-line]').length === 1 && \
                      [...document.querySelectorAll('[data-testid=log-line]')].every(l => l.dataset.taskRunId === '{extract}')"),
        )
        .await;
    let dependents = text(&browser, "[data-testid=task-flow-link]").await;
    assert_eq!(dependents, "find-etl · etl-2026-11-27");
    // Its id is whole and does not run under the next field.
    let id_clear = browser
        .eval(
            "const id = document.querySelector('[data-testid=task-head] .run-id').getBoundingClientRect();\
             const next = document.querySelector('[data-testid=task-head] .run-id').closest('.meta > div').nextElementSibling.getBoundingClientRect();\
             return id.right <= next.left + 1 || next.top >= id.bottom;",
            vec![],
        )
        .await;
    assert_eq!(id_clear, true, "the task run id overlaps the next field");
    // Its arguments, recorded because its flow records its tasks'.
    browser
        .wait_for_count("its one argument", "[data-testid=argument]", 1)
        .await;
    assert_eq!(
        text(
            &browser,
            "[data-testid=argument][data-name=day] td:last-child"
        )
        .await,
        "2026-11-27"
    );
    browser.full_page_screenshot("findings-task-page").await;

    // 5. The failed flow's error callout links to the task that caused it.
    browser.open(&server, &format!("/runs/{load_run}")).await;
    browser
        .wait_until(
            "the link to the culprit",
            "document.querySelector('[data-testid=culprit]')",
        )
        .await;
    assert_eq!(
        text(&browser, "[data-testid=culprit]").await,
        "load_warehouse"
    );
    browser.click_js("[data-testid=culprit]").await;
    browser
        .wait_until(
            "the culprit's page",
            "document.querySelector('[data-testid=task-error]')",
        )
        .await;
    assert!(
        text(&browser, "[data-testid=task-error]")
            .await
            .contains("warehouse refused 40 rows: disk full")
    );
    assert_eq!(
        text(&browser, "[data-testid=task-name]").await,
        "load_warehouse"
    );
    // Its flow does not record arguments, and neither does it: the page says how to.
    assert!(
        text(&browser, "[data-testid=no-arguments]")
            .await
            .contains("record_arguments = true"),
    );
    // "1 of 4" says why it stopped there, and so does its log.
    assert_eq!(
        text(&browser, "[data-testid=task-attempts]").await,
        "1 of 4 · retry_if refused to retry"
    );
    browser
        .wait_until(
            "the retry_if line",
            "[...document.querySelectorAll('[data-testid=log-line]')].some(l => l.dataset.level === 'WARN' && l.textContent.includes('retry_if refused to retry: attempt 1 of 4'))",
        )
        .await;

    // A batch over the 16 KiB cap is a marker saying so and how large it was; the run completed.
    let load_detail = server.get(&format!("/api/flow_runs/{load_run}")).await;
    let stage = load_detail["task_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "stage")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .expect("the stage task run");
    browser
        .goto(&format!("{}/#/runs/{load_run}/tasks/{stage}", server.url))
        .await;
    browser
        .wait_until(
            "the truncation marker",
            "document.querySelector('[data-testid=argument-marker]')",
        )
        .await;
    let size = serde_json::to_string(&(0..10_000).collect::<Vec<u32>>())
        .unwrap()
        .len();
    assert_eq!(
        text(
            &browser,
            "[data-testid=argument][data-name=batch] [data-testid=argument-marker]"
        )
        .await,
        format!("<truncated: {size} bytes of JSON, over the 16 KiB cap>")
    );
    assert_eq!(
        text(
            &browser,
            "[data-testid=argument][data-name=table] td:last-child"
        )
        .await,
        "orders"
    );
    assert_eq!(
        browser
            .eval(
                "return document.querySelector('[data-testid=task-head] .badge').dataset.state",
                vec![]
            )
            .await,
        "Completed"
    );
    browser.screenshot("findings-task-arguments").await;

    // 6. The flows failing most come first, and a low success rate looks like it.
    browser.open(&server, "/flows").await;
    browser
        .wait_for_count("four flow cards", "[data-testid=flow-card]", 4)
        .await;
    let cards = browser
        .eval(
            "return [...document.querySelectorAll('[data-testid=flow-card]')].map(c => [c.dataset.flow, c.querySelector('[data-testid=success-rate]').dataset.health]);",
            vec![],
        )
        .await;
    assert_eq!(cards[0], json!(["find-load", "bad"]), "{cards}");
    assert_eq!(cards.as_array().unwrap().len(), 4);
    assert!(
        cards.as_array().unwrap()[1..]
            .iter()
            .all(|c| c[1] == "good"),
        "{cards}"
    );

    // The grid of a flow: its runs (oldest first) against its tasks; the bad day's bad task.
    browser
        .click_js("[data-testid=flow-card][data-flow=find-etl] [data-testid=grid-link]")
        .await;
    browser
        .wait_for_count("nine grid cells", "[data-testid=grid-cell]", 9)
        .await;
    let grid = browser
        .eval(
            "return { runs: [...document.querySelectorAll('[data-testid=grid-run]')].map(a => a.textContent),               cells: [...document.querySelectorAll('[data-testid=grid-cell]')].map(c => `${c.dataset.task}@${c.dataset.run}=${c.dataset.state}`) };",
            vec![],
        )
        .await;
    assert_eq!(
        grid["runs"],
        json!(["etl-2026-11-26", "etl-2026-11-27", "etl-2026-11-28"])
    );
    let cells: Vec<&str> = grid["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        cells,
        [
            "extract_orders@etl-2026-11-26=Completed",
            "extract_orders@etl-2026-11-27=Completed",
            "extract_orders@etl-2026-11-28=Completed",
            "slow_source@etl-2026-11-26=Completed",
            "slow_source@etl-2026-11-27=Completed",
            "slow_source@etl-2026-11-28=Completed",
            "validate@etl-2026-11-26=Completed",
            "validate@etl-2026-11-27=Failed",
            "validate@etl-2026-11-28=Completed",
        ]
    );
    browser.screenshot("findings-grid").await;

    // 7. Home: what an on-call person needs first.
    browser.open(&server, "/home").await;
    browser
        .wait_for_count(
            "the failed run on the home view",
            "[data-testid=home-failed-run]",
            1,
        )
        .await;
    let home = browser
        .eval(
            "return { failed: document.querySelector('[data-testid=home-failed-run]').dataset.runId,               snippet: document.querySelector('[data-testid=home-failed-run] .snippet').textContent,               flows: [...document.querySelectorAll('[data-testid=home-failing-flow]')].map(f => f.dataset.flow),               counts: Object.fromEntries([...document.querySelectorAll('[data-testid=home-count]')].map(c => [c.dataset.state, c.querySelector('.value').textContent])) };",
            vec![],
        )
        .await;
    assert_eq!(home["failed"], Value::from(load_run.clone()));
    assert!(
        home["snippet"].as_str().unwrap().contains("disk full"),
        "{home}"
    );
    assert_eq!(home["flows"], json!(["find-load"]));
    assert_eq!(home["counts"], json!({"Completed": "5", "Failed": "1"}));

    // 8. Every page at 390 × 844: rows become cards, nothing is cut off sideways.
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("a phone-sized window");
    let width = browser
        .eval("return window.innerWidth", vec![])
        .await
        .as_u64()
        .unwrap();
    assert!(width <= 400, "a phone's width: {width}");
    let rows_ready = "document.querySelectorAll('[data-testid=run-row]').length === 6";
    fits_a_phone(&browser, &server, "runs", "#/runs", rows_ready).await;
    let card = browser
        .eval(
            "return [getComputedStyle(document.querySelector('[data-testid=run-row]')).display, \
               getComputedStyle(document.querySelector('table.list thead')).display]",
            vec![],
        )
        .await;
    assert_eq!(
        card,
        json!(["grid", "none"]),
        "runs are cards, without a header row"
    );
    let task_rows = "document.querySelectorAll('[data-testid=task-row]').length > 3 && document.querySelector('[data-testid=log-line]')";
    fits_a_phone(
        &browser,
        &server,
        "run",
        &format!("#/runs/{bad_day}"),
        task_rows,
    )
    .await;
    let label = browser
        .eval(
            "return +document.querySelector('.label-sep').getAttribute('x1')",
            vec![],
        )
        .await;
    assert!(
        label.as_f64().unwrap() < 150.0,
        "a narrower label column: {label}"
    );
    let validate_3 = task_id("validate", Some(2));
    fits_a_phone(
        &browser,
        &server,
        "task",
        &format!("#/runs/{bad_day}/tasks/{validate_3}"),
        "document.querySelector('[data-testid=task-error]')",
    )
    .await;
    fits_a_phone(
        &browser,
        &server,
        "failed-run",
        &format!("#/runs/{load_run}"),
        "document.querySelector('[data-testid=culprit]')",
    )
    .await;
    fits_a_phone(
        &browser,
        &server,
        "home",
        "#/home",
        "document.querySelector('[data-testid=home-failed-run]')",
    )
    .await;
    fits_a_phone(
        &browser,
        &server,
        "flows",
        "#/flows",
        "document.querySelectorAll('.card').length >= 2",
    )
    .await;
    fits_a_phone(
        &browser,
        &server,
        "grid",
        "#/flows/find-etl/grid",
        "document.querySelectorAll('[data-testid=grid-cell]').length === 9",
    )
    .await;
    for page in ["deployments", "backfills", "workers"] {
        fits_a_phone(
            &browser,
            &server,
            page,
            &format!("#/{page}"),
            "document.querySelector('main h1') && !document.querySelector('main .loading')",
        )
        .await;
    }
    fits_a_phone(
        &browser,
        &server,
        "no-such-run",
        &format!("#/runs/{}", uuid::Uuid::now_v7()),
        "document.querySelector('[data-testid=not-found]')",
    )
    .await;
    // The "no such run" page is only that: no empty panels beneath it.
    let panels = browser
        .eval(
            "return [...document.querySelectorAll('main > *')].filter(e => !e.hidden && e.getClientRects().length).length",
            vec![],
        )
        .await;
    assert_eq!(panels, Value::from(1));
    browser.close().await;
}
