//! Timeouts: per attempt, retried like any failure, and a longer timeout on each attempt.
//!
//! `cargo run --example timeouts`

use std::time::Duration;

use flowkit::{flow, task};

/// Hangs on its first attempt; the 200 ms timeout cuts it and the retry succeeds.
#[task(retries = 1, timeout = "200ms")]
async fn sometimes_hangs() -> &'static str {
    if flowkit::context().map_or(1, |c| c.attempt()) == 1 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    "answered"
}

/// Gives itself 100 ms more on each attempt, reading the attempt from the run context.
#[task(retries = 3)]
async fn patient() -> Result<u32, String> {
    let attempt = flowkit::context().map_or(1, |c| c.attempt());
    let limit = Duration::from_millis(100 * u64::from(attempt));
    tokio::time::timeout(limit, tokio::time::sleep(Duration::from_millis(250)))
        .await
        .map(|_| attempt)
        .map_err(|_| format!("needed more than {limit:?}"))
}

/// Never answers: ends `TimedOut`.
#[task(timeout = "300ms")]
async fn never_answers() {
    std::future::pending::<()>().await;
}

#[flow]
async fn timeouts_demo() -> anyhow::Result<()> {
    println!("sometimes_hangs: {}", sometimes_hangs().await?);
    println!("patient finished on attempt {}", patient().await?);
    let error = never_answers().await.expect_err("times out");
    println!("never_answers: {error} (timeout: {})", error.is_timeout());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flowkit::init();
    timeouts_demo().await?;
    Ok(())
}
