use flowkit::{flow, task};

#[derive(Debug, thiserror::Error)]
#[error("source unavailable (HTTP {0})")]
struct ApiError(u16);

fn is_transient(e: &ApiError) -> bool {
    e.0 >= 500
}

/// Extracts.
#[task(retries = 3, retry_delay = "200ms", retry_if = is_transient, tags = ["api"])]
async fn extract(day: u32) -> Result<Vec<u32>, ApiError> {
    let attempt = flowkit::context().map(|c| c.attempt()).unwrap_or(0);
    tracing::info!(attempt, "fetching orders");
    if attempt < 2 {
        return Err(ApiError(503));
    }
    Ok((0..day).collect())
}

#[task]
async fn double(x: u32) -> u32 {
    tokio::time::sleep(std::time::Duration::from_millis(10 * x as u64)).await;
    x * 2
}

#[task]
async fn total(rows: &[u32]) -> u32 {
    rows.iter().sum()
}

#[flow(name = "smoke", timeout = "1m")]
async fn smoke(day: u32) -> anyhow::Result<u32> {
    let orders = extract(day).await?;
    let doubled: Vec<u32> = flowkit::map(orders, double).await.into_iter().collect::<Result<_, _>>()?;
    let t = total(&doubled).await?;
    Ok(t)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flowkit::init();
    let t = smoke(20).await?;
    println!("total = {t}");
    Ok(())
}
