//! The daily sales ETL, shared by the `daily_etl` and `nightly_etl` examples.
//!
//! Extracts a day's orders from a flaky source (a deterministic generator that fails its first
//! two attempts), validates them while the tables are transformed concurrently with `map`, and
//! loads each table idempotently: re-running a day replaces its files, never duplicates rows.

use std::path::PathBuf;

use chrono::NaiveDate;
use flowkit::{flow, task};

#[derive(Clone, Debug)]
struct Order {
    id: u64,
    customer: u32,
    sku: &'static str,
    quantity: u32,
    unit_cents: u64,
}

#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error("orders API answered HTTP {0}")]
    Http(u16),
    #[error("orders API timed out")]
    Timeout,
}

/// Retry server errors and timeouts, never client errors.
fn is_transient(error: &SourceError) -> bool {
    match error {
        SourceError::Http(status) => *status >= 500,
        SourceError::Timeout => true,
    }
}

const SKUS: [(&str, u64); 5] = [
    ("kettle", 3_499),
    ("teapot", 2_250),
    ("mug", 899),
    ("tea-sampler", 1_575),
    ("filter-pack", 420),
];

/// Fetches the orders of a day from the orders API.
#[task(retries = 3, retry_delay = "500ms", backoff = "exponential", max_retry_delay = "5s",
       retry_if = is_transient, timeout = "30s", tags = ["api"])]
async fn extract_orders(day: NaiveDate) -> Result<Vec<Order>, SourceError> {
    let attempt = flowkit::context().map_or(1, |c| c.attempt());
    // The source is flaky: its first two calls fail, as real APIs do on a bad morning.
    match attempt {
        1 => return Err(SourceError::Http(503)),
        2 => return Err(SourceError::Timeout),
        _ => {}
    }
    let mut seed = u64::from(
        day.to_string()
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))),
    );
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let count = 200 + next() % 100;
    let orders: Vec<Order> = (0..count)
        .map(|i| {
            let (sku, unit_cents) = SKUS[(next() % SKUS.len() as u64) as usize];
            Order {
                id: day.to_string().replace('-', "").parse::<u64>().unwrap_or(0) * 1_000 + i,
                customer: (next() % 120) as u32 + 1,
                sku,
                quantity: (next() % 4) as u32 + 1,
                unit_cents,
            }
        })
        .collect();
    tracing::info!(orders = orders.len(), %day, "fetched orders");
    Ok(orders)
}

/// Checks the orders: positive quantities and unique ids.
#[task]
async fn validate(orders: Vec<Order>) -> Result<usize, String> {
    let mut ids: Vec<u64> = orders.iter().map(|o| o.id).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != orders.len() {
        return Err(format!("{} duplicate order ids", orders.len() - ids.len()));
    }
    if let Some(bad) = orders.iter().find(|o| o.quantity == 0) {
        return Err(format!("order {} has no quantity", bad.id));
    }
    Ok(orders.len())
}

const TABLES: [&str; 4] = ["orders", "order_items", "customers", "daily_revenue"];

/// Builds one warehouse table (as CSV rows) from the day's orders.
#[task(tags = ["transform"])]
async fn transform(
    table: &'static str,
    day: NaiveDate,
    orders: Vec<Order>,
) -> Result<(String, Vec<String>), String> {
    let rows: Vec<String> = match table {
        "orders" => orders
            .iter()
            .map(|o| format!("{},{},{day}", o.id, o.customer))
            .collect(),
        "order_items" => orders
            .iter()
            .map(|o| format!("{},{},{},{}", o.id, o.sku, o.quantity, o.unit_cents))
            .collect(),
        "customers" => {
            let mut customers: Vec<u32> = orders.iter().map(|o| o.customer).collect();
            customers.sort_unstable();
            customers.dedup();
            customers.iter().map(|c| format!("{c},{day}")).collect()
        }
        "daily_revenue" => {
            let cents: u64 = orders
                .iter()
                .map(|o| u64::from(o.quantity) * o.unit_cents)
                .sum();
            vec![format!(
                "{day},{},{}.{:02}",
                orders.len(),
                cents / 100,
                cents % 100
            )]
        }
        other => return Err(format!("unknown table {other}")),
    };
    Ok((table.to_string(), rows))
}

/// Writes one table's rows for the day, replacing that day's file: idempotent by date.
#[task(retries = 2, retry_delay = "1s")]
async fn load(
    warehouse: PathBuf,
    day: NaiveDate,
    table: String,
    rows: Vec<String>,
) -> anyhow::Result<usize> {
    let dir = warehouse.join(&table);
    tokio::fs::create_dir_all(&dir).await?;
    let path = dir.join(format!("{day}.csv"));
    let partial = dir.join(format!(".{day}.csv.partial"));
    let mut body = rows.join("\n");
    body.push('\n');
    tokio::fs::write(&partial, body).await?;
    // Atomic replace: a re-run of the day never leaves both old and new rows.
    tokio::fs::rename(&partial, &path).await?;
    Ok(rows.len())
}

/// Extracts, validates, transforms and loads one day of sales.
#[flow(name = "ecommerce-daily-etl", timeout = "10m")]
pub async fn daily_etl(day: NaiveDate, warehouse: PathBuf) -> anyhow::Result<String> {
    let orders = extract_orders(day).await?;
    // Validation runs while the tables are transformed.
    let checked = validate(orders.clone()).submit();
    let tables = flowkit::map(TABLES, |table| transform(table, day, orders.clone())).await;
    let validated = checked.await?;

    let mut loads = Vec::new();
    for table in tables {
        let (name, rows) = table?;
        loads.push(load(warehouse.clone(), day, name, rows).submit());
    }
    let mut written = 0;
    for loaded in loads {
        written += loaded.await?;
    }
    let revenue =
        std::fs::read_to_string(warehouse.join("daily_revenue").join(format!("{day}.csv")))?;
    Ok(format!(
        "{validated} orders validated, {written} rows loaded; revenue {}",
        revenue.trim()
    ))
}
