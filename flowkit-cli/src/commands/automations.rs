//! `flowkit automations create|ls|rm|deliveries`: rules that notify (a webhook, Slack) when
//! flow runs fail, are late or miss their SLA, and the circuit breaker that pauses a
//! deployment after N failures; what they sent and how each try went.

use chrono::Utc;
use flowkit_api::automation::{AutomationSpec, AutomationView, DeliveryView, Sla, Target, Trigger};

use crate::client::{Client, Failure};
use crate::table::{Table, cut};
use crate::{output, time};

/// `flowkit automations …`.
#[derive(Debug, clap::Subcommand)]
pub enum AutomationsCommand {
    /// Make a rule: when (--on-state, --late, --max-duration/--deadline), for which runs
    /// (--flow, --deployment, --tag), whom to tell (--webhook, --slack), and whether to pause
    /// the deployment after N failures (--pause-after).
    Create(Box<CreateArgs>),
    /// List the rules.
    #[command(alias = "list")]
    Ls,
    /// Delete a rule (its notifications not yet sent are dropped).
    #[command(alias = "delete")]
    Rm {
        /// The rule's name.
        #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
        name: String,
    },
    /// The latest notifications, newest first, and how their tries went.
    Deliveries {
        /// Only those of this rule.
        #[arg(long)]
        automation: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// `flowkit automations create`'s options.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("when").required(true).multiple(true))]
pub struct CreateArgs {
    /// Its name.
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub name: String,
    /// Fire when a flow run enters one of these states (commas): Failed,Crashed,TimedOut.
    #[arg(long, value_delimiter = ',', group = "when")]
    pub on_state: Vec<String>,
    /// Fire when a deployment's run waits for a worker this long past its due time ("5m").
    #[arg(long, group = "when")]
    pub late: Option<String>,
    /// Fire when a run takes longer than this from its start ("1h").
    #[arg(long, group = "when")]
    pub max_duration: Option<String>,
    /// Fire when a deployment's run has not completed this long after its logical date ("30h").
    #[arg(long, group = "when")]
    pub deadline: Option<String>,
    /// Only runs of this flow.
    #[arg(long)]
    pub flow: Option<String>,
    /// Only runs of this deployment.
    #[arg(long)]
    pub deployment: Option<String>,
    /// Only runs with this tag (repeat: every one).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// POST a JSON notification here (repeatable).
    #[arg(long = "webhook")]
    pub webhooks: Vec<String>,
    /// POST a Slack message to this incoming-webhook URL (repeatable).
    #[arg(long = "slack")]
    pub slacks: Vec<String>,
    /// Pause the deployment when its last N ended runs all failed (the circuit breaker).
    #[arg(long, value_name = "N")]
    pub pause_after: Option<u32>,
}

impl CreateArgs {
    fn spec(self) -> Result<AutomationSpec, Failure> {
        let sla = self.max_duration.is_some() || self.deadline.is_some();
        let kinds = usize::from(!self.on_state.is_empty())
            + usize::from(self.late.is_some())
            + usize::from(sla);
        if kinds != 1 {
            return Err(Failure::Usage(
                "give one of --on-state, --late, or --max-duration/--deadline".into(),
            ));
        }
        let on = if !self.on_state.is_empty() {
            Trigger::State(self.on_state)
        } else if let Some(late) = self.late {
            Trigger::Late(late)
        } else {
            Trigger::Sla(Sla {
                max_duration: self.max_duration,
                deadline: self.deadline,
            })
        };
        let notify = self
            .webhooks
            .into_iter()
            .map(Target::Webhook)
            .chain(self.slacks.into_iter().map(Target::Slack))
            .collect();
        Ok(AutomationSpec {
            name: self.name,
            on,
            flow: self.flow,
            deployment: self.deployment,
            tags: self.tags,
            notify,
            pause_after: self.pause_after,
        })
    }
}

fn targets(notify: &[Target]) -> String {
    let names: Vec<String> = notify
        .iter()
        .map(|t| format!("{} {}", t.format(), t.url()))
        .collect();
    names.join(", ")
}

fn watching(spec: &AutomationSpec) -> String {
    let mut parts = Vec::new();
    if let Some(flow) = &spec.flow {
        parts.push(format!("flow {flow}"));
    }
    if let Some(deployment) = &spec.deployment {
        parts.push(format!("deployment {deployment}"));
    }
    for tag in &spec.tags {
        parts.push(format!("#{tag}"));
    }
    if parts.is_empty() {
        "every run".into()
    } else {
        parts.join(" ")
    }
}

pub async fn run(client: &Client, command: AutomationsCommand, json: bool) -> anyhow::Result<()> {
    match command {
        AutomationsCommand::Create(args) => {
            let spec = (*args).spec()?;
            let answer = client
                .post(&["api", "automations"], &spec)
                .await
                .map_err(|f| {
                    f.with_options(&[
                        ("name", "--name"),
                        ("on.state", "--on-state"),
                        ("on.late", "--late"),
                        ("on.sla.max_duration", "--max-duration"),
                        ("on.sla.deadline", "--deadline"),
                        ("notify", "--webhook/--slack"),
                        ("pause_after", "--pause-after"),
                    ])
                })?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            let made: AutomationView = answer.parse()?;
            let mut line = format!(
                "Made automation {:?}: when {} ({}), notify {}",
                made.spec.name,
                made.spec.on.describe(),
                watching(&made.spec),
                if made.spec.notify.is_empty() {
                    "nobody".into()
                } else {
                    targets(&made.spec.notify)
                }
            );
            if let Some(n) = made.spec.pause_after {
                line.push_str(&format!(
                    "; pause the deployment after {n} failures in a row"
                ));
            }
            output::line(line);
            Ok(())
        }
        AutomationsCommand::Ls => {
            let answer = client.get(&["api", "automations"], &[]).await?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            let rules: Vec<AutomationView> = answer.parse()?;
            if rules.is_empty() {
                output::line(
                    "No automations. Make one with `flowkit automations create --name NAME \
                     --on-state Failed --slack URL`.",
                );
                return Ok(());
            }
            let now = Utc::now();
            let mut table = Table::new(&["NAME", "WHEN", "RUNS", "NOTIFY", "BREAKER", "MADE"]);
            for rule in &rules {
                table.row(vec![
                    rule.spec.name.clone(),
                    rule.spec.on.describe(),
                    watching(&rule.spec),
                    cut(&targets(&rule.spec.notify), 60),
                    rule.spec
                        .pause_after
                        .map(|n| format!("pause after {n}"))
                        .unwrap_or_else(|| "-".into()),
                    time::relative(rule.created_at, now),
                ]);
            }
            output::text(table.render());
            Ok(())
        }
        AutomationsCommand::Rm { name } => {
            let answer = client.delete(&["api", "automations", &name]).await?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            output::line(format!("Deleted automation {name:?}."));
            Ok(())
        }
        AutomationsCommand::Deliveries { automation, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(a) = automation {
                query.push(("automation", a));
            }
            let answer = client.get(&["api", "deliveries"], &query).await?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            let deliveries: Vec<DeliveryView> = answer.parse()?;
            if deliveries.is_empty() {
                output::line("No notifications yet.");
                return Ok(());
            }
            let now = Utc::now();
            let mut table = Table::new(&["WHEN", "AUTOMATION", "TO", "STATUS", "TRIES", "SAYS"]);
            for d in &deliveries {
                let last = d.attempts.last().map(|a| match (a.status_code, &a.error) {
                    (Some(code), None) => format!("{code}"),
                    (Some(code), Some(_)) => format!("{code}"),
                    (None, Some(error)) => cut(error, 30),
                    (None, None) => String::new(),
                });
                let tries = match last {
                    Some(last) => format!("{} (last: {last})", d.attempts.len()),
                    None => "0".into(),
                };
                table.row(vec![
                    time::relative(d.created_at, now),
                    d.automation.clone(),
                    format!("{} {}", d.format, d.target),
                    d.status.clone(),
                    tries,
                    cut(&d.summary, 70),
                ]);
            }
            output::text(table.render());
            Ok(())
        }
    }
}
