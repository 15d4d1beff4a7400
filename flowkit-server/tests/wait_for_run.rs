//! `flowkit::wait_for_run` against a real server: a sensor in one program waits until another
//! deployment's run for the same logical date has completed (Airflow's ExternalTaskSensor; the
//! customers → orders example).

mod common;

use std::time::Duration;

use common::{Server, TempDir};
use flowkit::flow;
use flowkit::serve::ScheduledRun;

#[flow(name = "load-customers")]
async fn load_customers(fail: bool) -> Result<u32, String> {
    if fail {
        Err("customers API answered 503".into())
    } else {
        Ok(42)
    }
}

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().expect("a time")
}

/// The run of deployment `customers` due at 02:00 on `due`, for the day before.
fn customers_run(due: &str) -> ScheduledRun {
    let end = at(&format!("{due}T02:00:00Z"));
    ScheduledRun::new("customers", end).with_interval(end - chrono::Days::new(1), end)
}

#[tokio::test]
async fn the_sensor_waits_until_the_run_of_the_same_logical_date_completes() {
    let dir = TempDir::new("wait-for-run");
    let server = Server::start(dir.path(), 0, &[]).await;
    // SAFETY: this test binary has this one test, and nothing reads the environment
    // concurrently (the runtime is current-thread and no request has been made yet).
    unsafe { std::env::set_var("FLOWKIT_API_URL", &server.url) };
    let spool = TempDir::new("wait-for-run-spool");
    let bus = server.bus(spool.path());

    let day = customers_run("2026-11-28").logical_date();
    assert_eq!(day.to_string(), "2026-11-27");
    let sensor = flowkit::wait_for_run("customers", day)
        .every(Duration::from_millis(100))
        .timeout(Duration::from_secs(60))
        .on(&bus)
        .submit();

    // Another day's run completes, and this day's first run fails: not what it waits for.
    load_customers(false)
        .scheduled(customers_run("2026-11-27"))
        .on(&bus)
        .await
        .unwrap();
    load_customers(true)
        .scheduled(customers_run("2026-11-28"))
        .on(&bus)
        .await
        .unwrap_err();
    bus.flush().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sensor.state(), None, "still waiting");

    // This day's run is made again and completes: the sensor is ready with its id.
    let again = customers_run("2026-11-28").with_id(uuid::Uuid::now_v7());
    let id = again.id().unwrap();
    load_customers(false)
        .scheduled(again)
        .on(&bus)
        .await
        .unwrap();
    bus.flush().await;
    let found = tokio::time::timeout(Duration::from_secs(20), sensor)
        .await
        .expect("ready soon after the run completed")
        .expect("completed");
    assert_eq!(found, id);

    let list = server.get("/api/flow_runs?deployment=customers").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3), "{list}");
    // The sensor's own end is delivered before the server goes: else the sink would spool it
    // into the spool directory after that directory was removed, and leave it in /tmp.
    bus.flush().await;
    server.kill().await;
}
