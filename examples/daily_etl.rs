//! The daily sales ETL flowkit exists for, run once for a day.
//!
//! The flow and its tasks are in `etl/mod.rs` (shared with `nightly_etl`, which serves it on a
//! schedule).
//!
//! ```text
//! cargo run --example daily_etl                # yesterday
//! cargo run --example daily_etl -- 2026-11-26  # a given day (backfill)
//! ```

mod etl;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{Days, NaiveDate, Utc};
use etl::daily_etl;

fn count_rows(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flowkit::init();
    let day = match std::env::args().nth(1) {
        Some(arg) => NaiveDate::parse_from_str(&arg, "%Y-%m-%d")
            .with_context(|| format!("expected a day like 2026-11-26, got {arg:?}"))?,
        None => Utc::now()
            .date_naive()
            .checked_sub_days(Days::new(1))
            .context("no yesterday")?,
    };
    let warehouse = PathBuf::from("target/flowkit-demo/warehouse");
    let summary = daily_etl(day, warehouse.clone()).await?;
    println!("{summary}");
    let orders_file = warehouse.join("orders").join(format!("{day}.csv"));
    println!(
        "{} holds {} rows",
        orders_file.display(),
        count_rows(&orders_file)
    );
    Ok(())
}
