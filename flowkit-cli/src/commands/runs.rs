//! `flowkit runs` (flow runs, newest first), `flowkit runs retry RUN_ID` (resume a run that
//! failed) and `flowkit cancel RUN_ID`.

use chrono::{DateTime, Utc};
use flowkit_api::work::{CancelResponse, RetryResponse};
use serde::Deserialize;
use uuid::Uuid;

use crate::client::Client;
use crate::table::Table;
use crate::{output, states, time};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// Only runs of this deployment.
    #[arg(long)]
    pub deployment: Option<String>,
    /// Only runs in this state (Completed, Failed, Running, …; any case).
    #[arg(long)]
    pub state: Option<String>,
    /// Only runs of this flow.
    #[arg(long)]
    pub flow: Option<String>,
    /// At most this many runs (the server allows 1 to 1,000; default 50).
    #[arg(long)]
    pub limit: Option<i64>,
}

#[derive(Debug, clap::Subcommand)]
pub enum RunsCommand {
    /// Retry a failed, crashed, timed-out or cancelled run from where it failed: a worker of its
    /// deployment runs it again as a new attempt, reusing the results of the tasks that
    /// completed.
    Retry {
        /// The flow run's id.
        run_id: Uuid,
        /// Follow the run until it ends (exit 4 if it does not complete).
        #[arg(long)]
        wait: bool,
    },
}

/// A page of flow runs, as `GET /api/flow_runs` answers.
#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<Run>,
    #[serde(default)]
    next_cursor: Option<String>,
}

/// The fields of a flow run this table shows.
#[derive(Debug, Deserialize)]
struct Run {
    id: Uuid,
    name: Option<String>,
    state: String,
    deployment: Option<String>,
    scheduled: Option<DateTime<Utc>>,
    interval_start: Option<DateTime<Utc>>,
    interval_end: Option<DateTime<Utc>>,
    start: Option<DateTime<Utc>>,
    duration_ms: Option<f64>,
}

pub async fn list(client: &Client, args: RunsArgs, json: bool) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(deployment) = args.deployment {
        query.push(("deployment", deployment));
    }
    if let Some(state) = args.state {
        query.push(("state", states::canonical(&state)));
    }
    if let Some(flow) = args.flow {
        query.push(("flow", flow));
    }
    if let Some(limit) = args.limit {
        query.push(("limit", limit.to_string()));
    }
    let answer = client
        .get(&["api", "flow_runs"], &query)
        .await
        .map_err(|f| {
            f.with_options(&[
                ("deployment", "--deployment"),
                ("state", "--state"),
                ("flow", "--flow"),
                ("limit", "--limit"),
            ])
        })?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let page: Page = answer.parse()?;
    if page.items.is_empty() {
        output::line("No runs.");
        return Ok(());
    }
    let now = Utc::now();
    let mut table = Table::new(&[
        "ID",
        "FLOW",
        "DEPLOYMENT",
        "STATE",
        "INTERVAL",
        "STARTED",
        "DURATION",
    ])
    .right(6);
    for run in &page.items {
        let interval = match (run.interval_start, run.interval_end) {
            (Some(start), Some(end)) => time::interval(start, end),
            (Some(start), None) => time::show(start),
            _ => String::new(),
        };
        let started = match (run.start, run.scheduled) {
            (Some(start), _) => time::show_relative(start, now),
            (None, Some(due)) => format!("due {}", time::show_relative(due, now)),
            (None, None) => String::new(),
        };
        table.row(vec![
            run.id.to_string(),
            run.name.clone().unwrap_or_default(),
            run.deployment.clone().unwrap_or_default(),
            run.state.clone(),
            interval,
            started,
            run.duration_ms.map(time::duration_ms).unwrap_or_default(),
        ]);
    }
    output::text(table.render());
    if page.next_cursor.is_some() {
        output::line(format!(
            "(the {} newest; --limit shows more)",
            page.items.len()
        ));
    }
    Ok(())
}

pub async fn cancel(client: &Client, id: Uuid, json: bool) -> anyhow::Result<()> {
    let answer = client
        .post(
            &["api", "flow_runs", &id.to_string(), "cancel"],
            &serde_json::json!({}),
        )
        .await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let cancel: CancelResponse = answer.parse()?;
    let line = match cancel.state.as_str() {
        // Also the answer for a run cancelled before: the server does not tell them apart.
        "Cancelled" => format!("Cancelled run {}.", cancel.id),
        "Cancelling" => format!(
            "Cancelling run {}: the program running it was asked to stop it.",
            cancel.id
        ),
        state => format!(
            "Run {} had already ended ({state}): nothing to cancel.",
            cancel.id
        ),
    };
    output::line(line);
    Ok(())
}

/// `flowkit runs retry RUN_ID [--wait]`.
pub async fn retry(client: &Client, id: Uuid, wait: bool, json: bool) -> anyhow::Result<()> {
    let answer = client
        .post(
            &["api", "flow_runs", &id.to_string(), "retry"],
            &serde_json::json!({}),
        )
        .await?;
    let retry: RetryResponse = answer.parse()?;
    if json && !wait {
        output::json(&answer.value);
        return Ok(());
    }
    if !json {
        output::line(format!(
            "Retrying run {} from where it failed: attempt {}, {} for a worker of {}.",
            retry.id, retry.attempt, retry.state, retry.deployment
        ));
    }
    if wait {
        super::trigger::follow_to_completion(client, id, json).await?;
    }
    Ok(())
}
