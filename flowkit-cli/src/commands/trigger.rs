//! `flowkit trigger NAME`: start a run of a deployment, and with `--wait` follow it to its end.

use chrono::{DateTime, Utc};
use flowkit_api::work::{TriggerRequest, WorkRun};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::client::{Client, Failure};
use crate::params::{PARAMETER_OPTIONS, ParamArgs};
use crate::{output, states, time};

#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// The deployment's name.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub name: String,
    #[command(flatten)]
    pub params: ParamArgs,
    /// When it may start (default: now): 2024-01-01T06:00, +10m, …
    #[arg(long, value_name = "TIME", value_parser = time::parse, allow_hyphen_values = true)]
    pub at: Option<DateTime<Utc>>,
    /// An idempotency key: triggering with the same key again gives the same run.
    #[arg(long, value_name = "IDEMPOTENCY_KEY")]
    pub key: Option<String>,
    /// The data interval the run is for.
    #[arg(long, value_name = "START..END", value_parser = time::parse_range,
          allow_hyphen_values = true)]
    pub interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The work queue it waits in (default: the deployment's).
    #[arg(long)]
    pub queue: Option<String>,
    /// Follow the run until it ends; exit 4 if it did not complete.
    #[arg(long)]
    pub wait: bool,
}

/// The fields of a trigger the server may blame, and the options that set them.
const OPTIONS: [(&str, &str); 7] = [
    PARAMETER_OPTIONS,
    ("parameters", "--params/--param"),
    ("scheduled_at", "--at"),
    ("idempotency_key", "--key"),
    ("interval_start", "--interval"),
    ("interval_end", "--interval"),
    ("queue", "--queue"),
];

pub async fn run(client: &Client, args: TriggerArgs, json: bool) -> anyhow::Result<()> {
    // Field by field over the defaults: the contract may grow fields this command leaves unset.
    #[allow(clippy::field_reassign_with_default)]
    let request = {
        let mut request = TriggerRequest::default();
        request.parameters = args.params.object();
        request.scheduled_at = args.at;
        request.idempotency_key = args.key.clone();
        request.interval_start = args.interval.map(|(start, _)| start);
        request.interval_end = args.interval.map(|(_, end)| end);
        request.queue = args.queue.clone();
        request
    };
    let answer = client
        .post(&["api", "deployments", &args.name, "runs"], &request)
        .await
        .map_err(|f| f.with_options(&OPTIONS))?;
    let run: WorkRun = answer.parse()?;
    if json && !args.wait {
        output::json(&answer.value);
        return Ok(());
    }
    if !json {
        output::line(describe(&run, args.key.as_deref(), Utc::now()));
    }
    if args.wait {
        follow_to_completion(client, run.id, json).await?;
    }
    Ok(())
}

/// Follows run `id` until it ends (`--wait`): printed as JSON with `json`; a failure (exit 4)
/// unless it succeeded.
pub async fn follow_to_completion(client: &Client, id: Uuid, json: bool) -> anyhow::Result<()> {
    let detail = wait(client, id, json).await?;
    if json {
        output::json(&detail);
    }
    let ended: FlowRun = serde_json::from_value(detail).unwrap_or_default();
    if !states::succeeded(&ended.state) {
        let why = ended.message.map(|m| format!(": {m}")).unwrap_or_default();
        return Err(Failure::NotCompleted(format!("run {id} ended {}{why}", ended.state)).into());
    }
    Ok(())
}

/// What a trigger did, in a sentence.
fn describe(run: &WorkRun, key: Option<&str>, now: DateTime<Utc>) -> String {
    let status = run.status.as_str();
    if !run.created {
        let key = key.map(|k| format!(" for key {k:?}")).unwrap_or_default();
        return format!(
            "{} already has run {}{key} ({status}): not triggered again.",
            run.deployment, run.id
        );
    }
    let due = if run.scheduled_at <= now + chrono::TimeDelta::seconds(5) {
        "due now".to_string()
    } else {
        format!("due {}", time::show_relative(run.scheduled_at, now))
    };
    let interval = match (run.interval_start, run.interval_end) {
        (Some(start), Some(end)) => format!(", for {}", time::interval(start, end)),
        _ => String::new(),
    };
    format!(
        "Triggered {}: run {} is {status}, {due}{interval}.",
        run.deployment, run.id
    )
}

/// The fields of a flow run (`GET /api/flow_runs/{id}`) a wait reads.
#[derive(Debug, Default, Deserialize)]
struct FlowRun {
    #[serde(default)]
    state: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    duration_ms: Option<f64>,
}

/// Follows flow run `id` until it ends, saying each state it enters on stderr; its last
/// answer.
pub async fn wait(client: &Client, id: Uuid, quiet: bool) -> Result<Value, Failure> {
    let id_text = id.to_string();
    let mut last = String::new();
    let mut attempt = 0;
    loop {
        match client.get(&["api", "flow_runs", &id_text], &[]).await {
            Ok(answer) => {
                let run: FlowRun = answer.parse()?;
                if run.state != last {
                    if !quiet {
                        let took = match run.duration_ms {
                            Some(ms) if states::is_final(&run.state) => {
                                format!(" after {}", time::duration_ms(ms))
                            }
                            _ => String::new(),
                        };
                        eprintln!("  {}{took}", run.state);
                    }
                    last = run.state.clone();
                }
                if states::is_final(&run.state) {
                    return Ok(answer.value);
                }
            }
            // Not started yet: its worker has not said anything about it.
            Err(Failure::Refused { status, .. }) if status == reqwest::StatusCode::NOT_FOUND => {}
            Err(failure) => return Err(failure),
        }
        tokio::time::sleep(super::poll_delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}
