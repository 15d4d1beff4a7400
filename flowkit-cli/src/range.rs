//! `--from`, `--to` and `--chunk`: the range of a backfill or a gap report.

use chrono::{DateTime, Utc};

use crate::client::Failure;
use crate::time;

/// A range of time, cut by a deployment's schedules or in chunks.
#[derive(Debug, clap::Args)]
pub struct RangeArgs {
    /// The range's start (included): 2024-01-01 (midnight UTC), 2024-01-01T06:00, -30d, …
    #[arg(long, value_name = "DATE|TIME", value_parser = time::parse, allow_hyphen_values = true)]
    pub from: DateTime<Utc>,
    /// The range's end (excluded).
    #[arg(long, value_name = "DATE|TIME", value_parser = time::parse, allow_hyphen_values = true)]
    pub to: DateTime<Utc>,
    /// Cut the range in chunks of this length (7d, 12h) instead of by the deployment's
    /// schedules (a deployment without schedules needs it).
    #[arg(long, value_name = "PERIOD")]
    pub chunk: Option<String>,
}

impl RangeArgs {
    /// A usage error unless `--from` comes before `--to`.
    pub fn check(&self) -> Result<(), Failure> {
        if self.from >= self.to {
            return Err(Failure::Usage(format!(
                "--from ({}) must be before --to ({})",
                time::show(self.from),
                time::show(self.to)
            )));
        }
        Ok(())
    }
}
