//! `flowkit limits set|ls|rm`: concurrency limits by tag and rate limits, shared by every
//! program using the server.

use flowkit_api::limits::{LimitSpec, LimitView, Rate};

use crate::client::Client;
use crate::output;
use crate::table::Table;

/// `flowkit limits …`.
#[derive(Debug, clap::Subcommand)]
pub enum LimitsCommand {
    /// Set a limit: `set api 5` lets at most 5 task runs tagged `api` run at once across every
    /// program; `set orders-api --rate 10/s --burst 5` paces `flowkit::rate_limit("orders-api")`.
    Set {
        /// The tag (concurrency) or name (rate).
        #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
        name: String,
        /// At most this many task runs with the tag at once.
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        slots: Option<u32>,
        /// At most this many calls per period: 10/s, 600/m, 5/h, 3/500ms.
        #[arg(long, value_parser = parse_rate)]
        rate: Option<Rate>,
        /// With `--rate`: up to this many calls at once after a quiet spell (default 1).
        #[arg(long, requires = "rate", value_parser = clap::value_parser!(u32).range(1..))]
        burst: Option<u32>,
    },
    /// List the limits, their slots in use, who holds them and how many wait.
    #[command(alias = "list")]
    Ls,
    /// Remove a limit: its waiters go on at once.
    #[command(alias = "remove")]
    Rm {
        /// The tag or name.
        #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
        name: String,
    },
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    text.parse()
        .map_err(|e: flowkit_api::limits::RateError| e.to_string())
}

/// A limit's rate in words: `10/s (burst 5)`.
fn rate_words(view: &LimitView) -> String {
    match view.rate {
        Some(rate) => match view.burst {
            Some(burst) if burst > 1 => format!("{rate} (burst {burst})"),
            _ => rate.to_string(),
        },
        None => "-".into(),
    }
}

pub async fn run(client: &Client, command: LimitsCommand, json: bool) -> anyhow::Result<()> {
    match command {
        LimitsCommand::Set {
            name,
            slots,
            rate,
            burst,
        } => {
            if slots.is_none() && rate.is_none() {
                anyhow::bail!(
                    "say how many slots (`flowkit limits set {name} 5`), a --rate, or both"
                );
            }
            let spec = LimitSpec {
                concurrency: slots,
                rate,
                burst,
            };
            let answer = client
                .put(&["api", "limits", &name], &spec)
                .await
                .map_err(|f| {
                    f.with_options(&[
                        ("concurrency", "SLOTS"),
                        ("rate", "--rate"),
                        ("burst", "--burst"),
                    ])
                })?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            let mut said = Vec::new();
            if let Some(slots) = slots {
                said.push(format!(
                    "at most {slots} task run{} tagged {name:?} at once",
                    if slots == 1 { "" } else { "s" }
                ));
            }
            if let Some(rate) = rate {
                said.push(format!(
                    "rate_limit({name:?}) paced to {rate}, burst {}",
                    burst.unwrap_or(1)
                ));
            }
            output::line(format!("Limit {name:?} set: {}.", said.join("; ")));
            Ok(())
        }
        LimitsCommand::Ls => {
            let answer = client.get(&["api", "limits"], &[]).await?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            let limits: Vec<LimitView> = answer.parse()?;
            if limits.is_empty() {
                output::line("No limits. Set one with `flowkit limits set TAG SLOTS`.");
                return Ok(());
            }
            let mut table =
                Table::new(&["NAME", "SLOTS", "WAITING", "RATE", "HELD BY (TASK RUNS)"]);
            for view in &limits {
                let slots = match view.concurrency {
                    Some(limit) => format!("{}/{limit}", view.holders.len()),
                    None => "-".into(),
                };
                let holders: Vec<String> = view
                    .holders
                    .iter()
                    .map(|h| h.task_run_id.to_string())
                    .collect();
                table.row(vec![
                    view.name.clone(),
                    slots,
                    view.waiting.to_string(),
                    rate_words(view),
                    if holders.is_empty() {
                        "-".into()
                    } else {
                        holders.join(", ")
                    },
                ]);
            }
            output::text(table.render());
            Ok(())
        }
        LimitsCommand::Rm { name } => {
            let answer = client.delete(&["api", "limits", &name]).await?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            output::line(format!("Limit {name:?} removed."));
            Ok(())
        }
    }
}
