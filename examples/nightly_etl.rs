//! The daily sales ETL served as a deployment: flowkit runs it on a schedule, in this program,
//! each run loading the day of its data interval.
//!
//! The demo runs every 20 seconds, so runs show up within a minute; give a cron expression to
//! run it as production would (a run at 02:00 Madrid time loads the day before). Stop it with
//! Ctrl-C, start it again later: with `catchup`, the times it missed run first, oldest first.
//!
//! ```text
//! cargo run --example nightly_etl                  # every 20 s
//! cargo run --example nightly_etl -- "0 2 * * *"   # every night at 02:00, Europe/Madrid
//! cargo run --example nightly_etl -- backfill 2026-11-01 2026-11-08 [7d]   # past nights, then a report
//! FLOWKIT_API_URL=http://127.0.0.1:4200 cargo run --example nightly_etl  # a worker for the server
//! ```

mod etl;

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{NaiveDate, TimeZone as _};
use etl::daily_etl;
use flowkit::serve::{Backfill, Deployment, serve};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    flowkit::init();
    let warehouse = PathBuf::from("target/flowkit-demo/warehouse");
    let deployment = Deployment::new("nightly", move |run| {
        // The run due on the 27th at 02:00 is for the 26th (its interval's start).
        daily_etl(run.logical_date(), warehouse.clone())
    })
    .catchup(true)
    .max_active_runs(1);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("backfill") {
        // The nights from the first day to the last (exclusive), four at a time.
        let day = |i: usize| -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
            let text = args
                .get(i)
                .context("usage: backfill FIRST-DAY END-DAY [CHUNK]")?;
            let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .with_context(|| format!("expected a day like 2026-11-01, got {text:?}"))?;
            Ok(chrono::Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN)))
        };
        let mut backfill =
            Backfill::new(deployment.cron("0 0 * * *"), day(1)?, day(2)?).max_active(4);
        if let Some(chunk) = args.get(3) {
            backfill = backfill.chunk(chunk);
        }
        print!("{}", backfill.run().await?);
        return Ok(());
    }
    let deployment = match args.first() {
        Some(cron) => deployment.cron(cron).time_zone("Europe/Madrid"),
        None => deployment.every("20s"),
    };
    if std::env::var_os("FLOWKIT_API_URL").is_some() {
        // A worker for the server: it returns after a graceful stop (SIGTERM or Ctrl-C).
        return Ok(serve([deployment]).await?);
    }
    tokio::select! {
        served = serve([deployment]) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
