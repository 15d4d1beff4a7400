//! Durable runs: a flow whose task results are persisted fails midway; resumed as a new attempt
//! of the same flow run, only what did not complete runs again. A cached task is not recomputed
//! for the same inputs.
//!
//! `cargo run --example durable` (results go to a temporary directory)

use std::sync::atomic::{AtomicBool, Ordering};

use flowkit::{RunError, flow, task};

/// Whether the warehouse refuses day 2 (it does, until it is fixed).
static DAY_2_REFUSED: AtomicBool = AtomicBool::new(true);

/// A slow lookup worth caching for a day, whichever flow calls it.
#[task(cache_key = inputs, cache_expiration = "1d")]
async fn exchange_rate(currency: String) -> Result<f64, String> {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    Ok(if currency == "EUR" { 1.08 } else { 1.0 })
}

#[task]
async fn extract(day: u32) -> Result<Vec<u32>, String> {
    Ok((0..day * 3).collect())
}

/// Fails for day 2 while the warehouse refuses it.
#[task]
async fn load(day: u32, rows: Vec<u32>) -> Result<usize, String> {
    if day == 2 && DAY_2_REFUSED.load(Ordering::SeqCst) {
        return Err(format!("day {day}: the warehouse refused the batch"));
    }
    Ok(rows.len())
}

#[flow(persist_result = true)]
async fn backfill(days: Vec<u32>) -> Result<f64, RunError<String>> {
    let rate = exchange_rate("EUR".into()).await?;
    let mut loaded = 0;
    for day in days {
        let rows = extract(day).await?;
        loaded += load(day, rows).await?;
    }
    Ok(loaded as f64 * rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("flowkit-example-{}", std::process::id()));
    flowkit::Config::from_env().results_dir(&dir).init()?;

    let failed = backfill(vec![1, 2, 3]).await.expect_err("day 2 is refused");
    tracing::warn!("{failed}");

    // Once the warehouse is fixed: the same flow run, a second attempt. `exchange_rate`, and
    // `extract` and `load` of day 1 and `extract` of day 2, return their stored results; `load`
    // of day 2 and day 3 run.
    DAY_2_REFUSED.store(false, Ordering::SeqCst);
    let value = backfill(vec![1, 2, 3]).resume(failed.run_id()).await?;
    tracing::info!("loaded {value:.2}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
