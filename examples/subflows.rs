//! Child flows: a flow called inside a flow is a child flow run linked to its parent; a
//! submitted flow can be cancelled from its handle.
//!
//! `cargo run --example subflows`

use std::time::Duration;

use flowkit::{flow, task};

#[task]
async fn copy_partition(region: &'static str, partition: u32) -> u32 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    tracing::debug!(region, partition, "copied");
    partition
}

/// Copies one region: its own flow run, child of the backfill.
#[flow]
async fn copy_region(region: &'static str) -> anyhow::Result<u32> {
    let copied = flowkit::map(0..8, |p| copy_partition(region, p)).await;
    Ok(copied.into_iter().collect::<Result<Vec<_>, _>>()?.len() as u32)
}

/// A long export, cancelled after a moment.
#[flow]
async fn slow_export() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[flow(name = "regional-backfill")]
pub async fn backfill(regions: Vec<&'static str>) -> anyhow::Result<u32> {
    let mut total = 0;
    for region in regions {
        total += copy_region(region).await?;
    }
    let export = slow_export().submit();
    tokio::time::sleep(Duration::from_millis(100)).await;
    export.cancel();
    println!("export: {}", export.await.expect_err("cancelled"));
    Ok(total)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flowkit::init();
    let total = backfill(vec!["eu", "us", "apac"]).await?;
    println!("{total} partitions copied");
    Ok(())
}
