//! Retries: a fixed delay, exponential backoff with a cap and jitter, and `retry_if` that
//! retries server errors but never client errors.
//!
//! `cargo run --example retries`

use flowkit::{flow, task};

#[derive(Debug, thiserror::Error)]
#[error("HTTP {0}")]
struct HttpError(u16);

fn is_transient(error: &HttpError) -> bool {
    error.0 >= 500
}

/// Fails twice with 503, then answers.
#[task(retries = 3, retry_delay = "300ms")]
async fn fixed_delay() -> Result<&'static str, HttpError> {
    match flowkit::context().map_or(1, |c| c.attempt()) {
        1 | 2 => Err(HttpError(503)),
        _ => Ok("fresh data"),
    }
}

/// Waits 100 ms, 200 ms, 400 ms… (capped at 1 s, ±20%) between attempts.
#[task(retries = 4, retry_delay = "100ms", backoff = "exponential", max_retry_delay = "1s",
       retry_jitter = 0.2, retry_if = is_transient)]
async fn backoff() -> Result<u32, HttpError> {
    let attempt = flowkit::context().map_or(1, |c| c.attempt());
    if attempt < 4 {
        Err(HttpError(502))
    } else {
        Ok(attempt)
    }
}

/// A 404 is not worth retrying: `retry_if` stops at once.
#[task(retries = 5, retry_delay = 1, retry_if = is_transient)]
async fn not_found() -> Result<(), HttpError> {
    Err(HttpError(404))
}

#[flow]
async fn retries_demo() -> anyhow::Result<()> {
    println!("fixed delay gave {:?}", fixed_delay().await?);
    println!("backoff succeeded on attempt {}", backoff().await?);
    let error = not_found().await.expect_err("a 404 fails");
    println!("not_found: {error}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flowkit::init();
    retries_demo().await?;
    Ok(())
}
