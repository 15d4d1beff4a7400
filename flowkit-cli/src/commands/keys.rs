//! `flowkit keys create|list|revoke`: the server's scoped API keys (an admin key is needed), and
//! `flowkit audit`: who did what.

use chrono::Utc;
use flowkit_api::access::{AuditEntry, CreatedKey, KeyView, NewKey, Scope, Scopes};

use crate::client::Client;
use crate::table::Table;
use crate::{output, time};

/// `flowkit keys …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a key; prints it once (the server keeps only its hash).
    Create {
        /// Its name, shown in the audit trail for what it does.
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        name: String,
        /// What it may do: read, write, operate, admin; repeat it or separate with commas
        /// (`--scope read,operate` for an operator's dashboard).
        #[arg(long = "scope", required = true, value_parser = parse_scopes)]
        scopes: Vec<Scopes>,
    },
    /// List the keys (never the keys themselves).
    List,
    /// Revoke a key: it stops working at once.
    Revoke {
        /// The key's name.
        #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
        name: String,
    },
}

fn parse_scopes(text: &str) -> Result<Scopes, String> {
    Scopes::parse_list(text)
}

fn names(scopes: &[Scope]) -> String {
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    names.join(",")
}

pub async fn run(client: &Client, command: KeysCommand, json: bool) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, scopes } => {
            let scopes: Vec<Scope> = scopes.iter().flat_map(|s| s.list()).collect();
            let scopes = Scopes::of(&scopes).list();
            let request = NewKey { name, scopes };
            let answer = client
                .post(&["api", "keys"], &request)
                .await
                .map_err(|f| f.with_options(&[("name", "--name"), ("scopes", "--scope")]))?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            let created: CreatedKey = answer.parse()?;
            // The key alone on stdout, so `KEY=$(flowkit keys create …)` keeps it.
            output::line(&created.key);
            eprintln!(
                "Made key {:?} ({}). This is the only time it is shown: keep it now.",
                created.view.name,
                names(&created.view.scopes)
            );
            Ok(())
        }
        KeysCommand::List => {
            let answer = client.get(&["api", "keys"], &[]).await?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            let keys: Vec<KeyView> = answer.parse()?;
            if keys.is_empty() {
                output::line(
                    "No keys but the server's own --api-key. Make one with `flowkit keys create \
                     --name NAME --scope read`.",
                );
                return Ok(());
            }
            let now = Utc::now();
            let mut table = Table::new(&["NAME", "SCOPES", "KEY", "MADE", "BY"]);
            for key in &keys {
                table.row(vec![
                    key.name.clone(),
                    names(&key.scopes),
                    format!("{}…", key.prefix),
                    time::relative(key.created_at, now),
                    key.created_by.clone(),
                ]);
            }
            output::text(table.render());
            Ok(())
        }
        KeysCommand::Revoke { name } => {
            let answer = client.delete(&["api", "keys", &name]).await?;
            if json {
                output::json(&answer.value);
                return Ok(());
            }
            let key: KeyView = answer.parse()?;
            output::line(format!(
                "Revoked key {:?} ({}): it no longer works.",
                key.name,
                names(&key.scopes)
            ));
            Ok(())
        }
    }
}

/// `flowkit audit`'s filters.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only what touched this deployment.
    #[arg(long)]
    pub deployment: Option<String>,
    /// Only what touched this flow run.
    #[arg(long)]
    pub run: Option<uuid::Uuid>,
    /// Only what touched this backfill.
    #[arg(long)]
    pub backfill: Option<uuid::Uuid>,
    /// Only what this key (by name) did.
    #[arg(long)]
    pub actor: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

/// `flowkit audit`: operators' actions, newest first, with the key that did each.
pub async fn audit(client: &Client, args: AuditArgs, json: bool) -> anyhow::Result<()> {
    let mut query = vec![("limit", args.limit.to_string())];
    let filters = [
        ("deployment", args.deployment),
        ("run", args.run.map(|r| r.to_string())),
        ("backfill", args.backfill.map(|b| b.to_string())),
        ("actor", args.actor),
    ];
    for (name, value) in filters {
        if let Some(value) = value {
            query.push((name, value));
        }
    }
    let answer = client.get(&["api", "audit"], &query).await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let entries: Vec<AuditEntry> = answer.parse()?;
    if entries.is_empty() {
        output::line(
            "Nothing recorded: no operator has triggered, cancelled, paused, backfilled or changed keys.",
        );
        return Ok(());
    }
    let mut table = Table::new(&[
        "WHEN",
        "KEY",
        "ACTION",
        "DEPLOYMENT",
        "RUN / BACKFILL",
        "DETAIL",
    ]);
    for entry in &entries {
        let what = entry
            .flow_run_id
            .or(entry.backfill_id)
            .map(|id| id.to_string())
            .unwrap_or_default();
        table.row(vec![
            time::show(entry.at),
            entry.actor.clone(),
            entry.action.as_str().replace('_', " "),
            entry.deployment.clone().unwrap_or_default(),
            what,
            entry.detail.clone().unwrap_or_default(),
        ]);
    }
    output::text(table.render());
    Ok(())
}
