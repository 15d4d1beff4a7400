//! Concurrency: `map` over many items under a flow-wide concurrency limit, `submit`, and
//! `wait_for` with `allow_failure`.
//!
//! `cargo run --example mapping`

use std::time::Duration;

use flowkit::{allow_failure, flow, task};

/// Scores one customer (takes 50 ms, fails for every 97th).
#[task]
async fn score(customer: u32) -> Result<u32, String> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    if customer % 97 == 0 {
        return Err(format!("customer {customer} has no history"));
    }
    Ok(customer % 10)
}

#[task]
async fn refresh_dimension() -> Result<(), String> {
    Err("dimension table is locked".into())
}

#[task]
async fn publish(scored: usize) {
    tracing::info!(scored, "published the scores");
}

/// 500 tasks of 50 ms, 100 at a time: about 250 ms, not 25 s.
#[flow(concurrency_limit = 100)]
async fn score_customers() -> anyhow::Result<usize> {
    let dimension = refresh_dimension().submit();
    let scores = flowkit::map(1..=500, score).await;
    let scored = scores.iter().filter(|s| s.is_ok()).count();
    // Publish after the refresh has ended, even though it failed.
    publish(scored)
        .wait_for([allow_failure(&dimension)])
        .await?;
    Ok(scored)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flowkit::init();
    let started = std::time::Instant::now();
    let scored = score_customers().await?;
    println!(
        "{scored} of 500 customers scored in {:?}",
        started.elapsed()
    );
    Ok(())
}
