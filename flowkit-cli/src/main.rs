//! `flowkit`: the command line of a flowkit server, for what users script.
//!
//! It is a client of the server's HTTP API (the types of `flowkit-api`); it finds the server at
//! `--api-url` (`FLOWKIT_API_URL`, default `http://127.0.0.1:4200`) and sends `--api-key`
//! (`FLOWKIT_API_KEY`) as `Authorization: Bearer <key>`; over HTTPS it trusts the CA
//! certificates of `--ca-cert` (`FLOWKIT_CA_CERT`) besides the usual roots. Every command prints text (aligned
//! tables), or with `--json` the server's JSON as it came: with `--wait`, its last answer (the
//! flow run as it ended, the backfill with every interval ended), progress going to stderr.
//!
//! The commands:
//! - `flowkit deployments`: every deployment with its flow, its schedules in words, whether it
//!   is paused, its next run and its last runs as a strip of state symbols (oldest to newest).
//! - `flowkit deployment NAME`: one deployment in detail: schedules, policies, next runs, its
//!   parameters (defaults and the fields of its parameter schema), its latest runs.
//! - `flowkit pause NAME` / `flowkit resume NAME`: stop or restart a deployment's schedules.
//! - `flowkit trigger NAME [--param key=value]... [--params JSON] [--at TIME] [--key KEY]
//!   [--interval START..END] [--wait]`: start a run now or at a time; prints its id and status.
//!   A `--param` value is read as JSON when it is JSON (`3`, `true`, `null`, `"x"`, `{..}`),
//!   else as a string. The same `--key` twice gives the same run. `--wait` follows the run
//!   until it ends.
//! - `flowkit runs [--deployment D] [--state S] [--flow F] [--limit N]`: flow runs, newest first.
//! - `flowkit runs retry RUN_ID [--wait]`: retry a failed, crashed, timed-out or cancelled run
//!   from where it failed: a worker of its deployment runs it again as a new attempt of the
//!   same run, whose completed tasks return their stored results.
//! - `flowkit cancel RUN_ID`: cancel a run (before it starts, or ask its worker to stop it);
//!   `flowkit cancel --backfill ID`: cancel a backfill's runs that have not started.
//! - `flowkit backfill NAME --from DATE|TIME --to DATE|TIME [--chunk 7d] [--max-active N]
//!   [--rerun-failed] [--wait]`: run a deployment once per interval of a past range; `--wait`
//!   follows it until every interval ended, then prints the gap report.
//! - `flowkit backfills [ID]`: the backfills, or one with a grid of its intervals' states.
//! - `flowkit gaps NAME --from --to [--chunk 1d]`: the intervals of a range (by the deployment's
//!   schedules, or by chunk) without a successful run, and a count by outcome.
//! - `flowkit workers`: the workers, their queues, the runs they hold and when they were seen.
//! - `flowkit keys create --name NAME --scope read[,operate…]`: make a scoped API key (printed
//!   once, alone on stdout); `flowkit keys list`; `flowkit keys revoke NAME`. Needs an admin key.
//! - `flowkit automations create --name N (--on-state Failed,Crashed | --late 5m |
//!   --max-duration 1h | --deadline 30h) [--flow F] [--deployment D] [--tag T]... [--webhook URL]...
//!   [--slack URL]... [--pause-after N]`: a rule that notifies (and, with `--pause-after`, pauses
//!   the deployment after N failures in a row); `flowkit automations ls`, `rm NAME`,
//!   `deliveries [--automation N]` (what was sent, each try's status).
//! - `flowkit audit [--deployment D] [--run ID] [--backfill ID] [--actor KEY]`: who triggered,
//!   cancelled, paused, backfilled or changed keys, and when.
//! - `flowkit limits set TAG SLOTS`: at most SLOTS task runs tagged TAG at once, across every
//!   program; `flowkit limits set NAME --rate 10/s [--burst 5]`: pace `flowkit::rate_limit(NAME)`;
//!   `flowkit limits ls`: each limit, its slots in use, who holds them, how many wait;
//!   `flowkit limits rm NAME`.
//!
//! Times: `2024-01-01` (midnight UTC), `2024-01-01T06:00` (UTC), RFC 3339 with an offset,
//! `now`, `today`, or relative to now: `+2h`, `-7d`.
//!
//! Exit codes: 0 done; 1 the server said no (its message names the field to blame) or failed;
//! 2 usage (a wrong argument); 3 the server cannot be reached; 4 a run or backfill followed
//! with `--wait` did not complete.

mod client;
mod commands;
mod output;
mod params;
mod range;
mod states;
mod table;
mod time;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use client::{Client, Failure};

/// The command line of a flowkit server: deployments, runs, triggers, backfills and workers.
#[derive(Debug, Parser)]
#[command(name = "flowkit", version)]
struct Cli {
    /// The flowkit server's address.
    #[arg(long, env = "FLOWKIT_API_URL", default_value = "http://127.0.0.1:4200",
          value_parser = client::parse_api_url, global = true, help_heading = "Global options")]
    api_url: reqwest::Url,
    /// The server's API key, sent as `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "FLOWKIT_API_KEY",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    api_key: Option<String>,
    /// Trust the CA certificates in this PEM file, for a server on a self-signed or private
    /// certificate (https://).
    #[arg(
        long,
        env = "FLOWKIT_CA_CERT",
        global = true,
        help_heading = "Global options"
    )]
    ca_cert: Option<std::path::PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true, help_heading = "Global options")]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the deployments: schedules, next run, last runs.
    Deployments,
    /// Show one deployment in detail, with its parameters.
    Deployment {
        /// The deployment's name.
        #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
        name: String,
    },
    /// Pause a deployment's schedules: they create no runs until it is resumed.
    Pause {
        /// The deployment's name.
        #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
        name: String,
    },
    /// Resume a paused deployment's schedules.
    Resume {
        /// The deployment's name.
        #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
        name: String,
    },
    /// Start a run of a deployment, now or at a time.
    Trigger(commands::trigger::TriggerArgs),
    /// List flow runs, newest first.
    Runs(commands::runs::RunsArgs),
    /// Cancel a run, or with --backfill a backfill's runs that have not started.
    #[command(group = clap::ArgGroup::new("what").required(true))]
    Cancel {
        /// The flow run's id.
        #[arg(group = "what")]
        run_id: Option<uuid::Uuid>,
        /// Cancel this backfill instead: its runs no worker took yet (those running finish).
        #[arg(long, value_name = "ID", group = "what")]
        backfill: Option<uuid::Uuid>,
    },
    /// Run a deployment once per interval of a past range.
    Backfill(commands::backfill::BackfillArgs),
    /// List the backfills, or show one with its intervals.
    Backfills {
        /// A backfill's id: show it in detail.
        id: Option<uuid::Uuid>,
    },
    /// Report the intervals of a range that have no successful run.
    Gaps(commands::gaps::GapsArgs),
    /// List the workers.
    Workers,
    /// Make, list and revoke the server's API keys (needs an admin key).
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// Who did what: operators' actions, newest first, with the key that did each.
    Audit(commands::keys::AuditArgs),
    /// Concurrency limits by tag and rate limits, across every program using the server.
    #[command(subcommand)]
    Limits(commands::limits::LimitsCommand),
    /// Rules that notify (webhook, Slack) on failures, late runs and missed SLAs, and pause a
    /// deployment after N failures; what they sent.
    #[command(subcommand)]
    Automations(commands::automations::AutomationsCommand),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let ca_cert = cli.ca_cert.filter(|p| !p.as_os_str().is_empty());
    let client = Client::new(
        cli.api_url,
        cli.api_key.filter(|k| !k.is_empty()),
        ca_cert.as_deref(),
    )?;
    let json = cli.json;
    match cli.command {
        Command::Deployments => commands::deployments::list(&client, json).await,
        Command::Deployment { name } => commands::deployments::show(&client, &name, json).await,
        Command::Pause { name } => commands::deployments::pause(&client, &name, true, json).await,
        Command::Resume { name } => commands::deployments::pause(&client, &name, false, json).await,
        Command::Trigger(args) => commands::trigger::run(&client, args, json).await,
        Command::Runs(commands::runs::RunsArgs {
            command: Some(commands::runs::RunsCommand::Retry { run_id, wait }),
            ..
        }) => commands::runs::retry(&client, run_id, wait, json).await,
        Command::Runs(args) => commands::runs::list(&client, args, json).await,
        Command::Cancel {
            run_id: Some(run_id),
            ..
        } => commands::runs::cancel(&client, run_id, json).await,
        Command::Cancel {
            backfill: Some(id), ..
        } => commands::backfill::cancel(&client, id, json).await,
        Command::Cancel { .. } => {
            Err(Failure::Usage("give a RUN_ID or --backfill ID".into()).into())
        }
        Command::Backfill(args) => commands::backfill::start(&client, args, json).await,
        Command::Backfills { id: None } => commands::backfill::list(&client, json).await,
        Command::Backfills { id: Some(id) } => commands::backfill::show(&client, id, json).await,
        Command::Gaps(args) => commands::gaps::run(&client, args, json).await,
        Command::Workers => commands::workers::list(&client, json).await,
        Command::Keys(command) => commands::keys::run(&client, command, json).await,
        Command::Audit(args) => commands::keys::audit(&client, args, json).await,
        Command::Limits(command) => commands::limits::run(&client, command, json).await,
        Command::Automations(command) => commands::automations::run(&client, command, json).await,
    }
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let subcommand = matches.subcommand_name().unwrap_or_default().to_string();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            std::process::exit(1);
        }
    };
    let outcome = runtime.block_on(run(cli));
    let Err(error) = outcome else {
        return;
    };
    match error.downcast_ref::<Failure>() {
        // A wrong argument found after parsing: said the way clap says its own (exit 2).
        Some(Failure::Usage(message)) => usage_error(&subcommand, message),
        Some(failure) => {
            eprintln!("error: {failure}");
            std::process::exit(failure.exit_code());
        }
        None => {
            eprintln!("error: {error:#}");
            std::process::exit(1);
        }
    }
}

/// Exits with clap's usage error (exit code 2) for `message`, showing the usage of `subcommand`.
fn usage_error(subcommand: &str, message: &str) -> ! {
    let mut command = Cli::command();
    command.build();
    let command = match command.find_subcommand(subcommand) {
        Some(sub) => sub.clone().bin_name(format!("flowkit {subcommand}")),
        None => command,
    };
    let mut command = command;
    command
        .error(clap::error::ErrorKind::ValueValidation, message)
        .exit()
}
