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
//! ```

mod etl;

use std::path::PathBuf;

use etl::daily_etl;
use flowkit::serve::{Deployment, serve};

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
    let deployment = match std::env::args().nth(1) {
        Some(cron) => deployment.cron(cron).time_zone("Europe/Madrid"),
        None => deployment.every("20s"),
    };
    tokio::select! {
        served = serve([deployment]) => served?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
