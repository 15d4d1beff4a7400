//! `flowkit deployments`, `flowkit deployment NAME`, `flowkit pause` and `flowkit resume`.

use chrono::{DateTime, Utc};
use flowkit_api::work::{DeploymentPatch, DeploymentRun, DeploymentView, WorkRun, WorkStatus};
use serde_json::Value;

use crate::client::Client;
use crate::output;
use crate::states;
use crate::table::{self, Table};
use crate::time;

/// Every deployment, a line each.
pub async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let answer = client.get(&["api", "deployments"], &[]).await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let deployments: Vec<DeploymentView> = answer.parse()?;
    if deployments.is_empty() {
        output::line(
            "No deployments. A program serving them (flowkit::serve, with FLOWKIT_API_URL set) \
             registers them when it starts.",
        );
        return Ok(());
    }
    let now = Utc::now();
    let mut table = Table::new(&[
        "NAME",
        "FLOW",
        "SCHEDULE",
        "PAUSED",
        "NEXT RUN",
        "LAST RUNS",
    ]);
    let mut symbols = String::new();
    for d in &deployments {
        // Newest first from the server; a strip reads oldest to newest, left to right.
        let strip: String = past(&d.last_runs, now)
            .rev()
            .map(|r| states::symbol(&r.state))
            .collect();
        symbols.push_str(&strip);
        let next = match (d.paused, d.next_runs.first()) {
            (true, _) => "paused".to_string(),
            (false, Some(next)) => time::show_relative(*next, now),
            (false, None) => "-".to_string(),
        };
        table.row(vec![
            d.name.clone(),
            d.flow.clone(),
            schedules(d),
            paused(d),
            next,
            strip,
        ]);
    }
    output::text(table.render());
    let legend = states::legend(&symbols);
    if !legend.is_empty() {
        output::line(format!("last runs, oldest to newest: {legend}"));
    }
    Ok(())
}

/// One deployment in detail.
pub async fn show(client: &Client, name: &str, json: bool) -> anyhow::Result<()> {
    let answer = client.get(&["api", "deployments", name], &[]).await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let d: DeploymentView = answer.parse()?;
    let now = Utc::now();
    let next_runs = if d.paused {
        "none: paused".to_string()
    } else if d.next_runs.is_empty() {
        "none".to_string()
    } else {
        let lines: Vec<String> = d
            .next_runs
            .iter()
            .map(|t| time::show_relative(*t, now))
            .collect();
        lines.join("\n")
    };
    let mut rows = vec![
        ("flow", d.flow.clone()),
        ("schedules", schedules(&d).replace(", ", "\n")),
        ("time zone", d.time_zone.clone()),
        ("paused", paused(&d)),
        ("catchup", yes_no(d.catchup)),
        ("max active runs", d.max_active_runs.to_string()),
        ("queue", format!("{} (priority {})", d.queue, d.priority)),
        ("next runs", next_runs),
    ];
    if let Some(registered) = d.registered {
        rows.push(("registered", time::show_relative(registered, now)));
    }
    output::line(&d.name);
    output::text(table::pairs(&rows));
    output::line("");
    output::text(parameters(&d));
    output::line("");
    let owned = client
        .get(
            &["api", "deployments", name, "runs"],
            &[("limit", "50".to_string())],
        )
        .await?;
    let owned: Vec<WorkRun> = owned.parse()?;
    let mut upcoming: Vec<&WorkRun> = owned
        .iter()
        .filter(|r| r.status == WorkStatus::Scheduled)
        .collect();
    upcoming.sort_by_key(|r| r.scheduled_at);
    if !upcoming.is_empty() {
        output::line("Upcoming runs:");
        let mut table = Table::new(&["ID", "ORIGIN", "DUE", "INTERVAL"]);
        for run in upcoming {
            table.row(vec![
                run.id.to_string(),
                run.origin.as_str().to_string(),
                time::show_relative(run.scheduled_at, now),
                match (run.interval_start, run.interval_end) {
                    (Some(start), Some(end)) => time::interval(start, end),
                    _ => String::new(),
                },
            ]);
        }
        output::text(table.render());
        output::line("");
    }
    let mut runs = Table::new(&["ID", "STATE", "SCHEDULED", "INTERVAL START"]);
    for run in past(&d.last_runs, now) {
        runs.row(vec![
            run.id.to_string(),
            run.state.clone(),
            run.scheduled.map(time::show).unwrap_or_default(),
            run.interval_start
                .map(time::day_or_time)
                .unwrap_or_default(),
        ]);
    }
    if runs.is_empty() {
        output::line("No runs yet.");
    } else {
        output::line("Latest runs:");
        output::text(runs.render());
    }
    Ok(())
}

/// Pauses (`paused`) or resumes a deployment's schedules.
pub async fn pause(client: &Client, name: &str, paused: bool, json: bool) -> anyhow::Result<()> {
    let patch = DeploymentPatch {
        paused: Some(paused),
    };
    let answer = client.patch(&["api", "deployments", name], &patch).await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let d: DeploymentView = answer.parse()?;
    if paused {
        output::line(format!(
            "Paused {}: its schedules create no runs until `flowkit resume {}`.",
            d.name, d.name
        ));
    } else {
        match d.next_runs.first() {
            Some(next) => output::line(format!(
                "Resumed {}: next run {}.",
                d.name,
                time::show_relative(*next, Utc::now())
            )),
            None => output::line(format!("Resumed {} (it has no schedules).", d.name)),
        }
    }
    Ok(())
}

/// The runs of `runs` not waiting for a time still to come (those are upcoming, not last).
fn past(
    runs: &[DeploymentRun],
    now: DateTime<Utc>,
) -> impl DoubleEndedIterator<Item = &DeploymentRun> {
    runs.iter()
        .filter(move |r| !(r.state == "Scheduled" && r.scheduled.is_some_and(|at| at > now)))
}

fn schedules(d: &DeploymentView) -> String {
    if d.schedules.is_empty() {
        "none (triggered only)".into()
    } else {
        d.schedules.join(", ")
    }
}

/// `no`, `yes`, or `yes, by automation:NAME` for one the circuit breaker paused.
fn paused(d: &DeploymentView) -> String {
    match (d.paused, &d.paused_by) {
        (true, Some(by)) => format!("yes, by {by}"),
        (paused, _) => yes_no(paused),
    }
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.into()
}

/// The parameters a run gets: the fields of the schema, with the deployment's defaults.
fn parameters(d: &DeploymentView) -> String {
    let defaults = d.parameters.as_ref().and_then(Value::as_object);
    let properties = d
        .parameter_schema
        .as_ref()
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object);
    let Some(properties) = properties else {
        return match defaults {
            Some(defaults) if !defaults.is_empty() => format!(
                "Parameters (no schema; defaults): {}\n",
                Value::Object(defaults.clone())
            ),
            _ if d.parameter_schema.is_some() => "Parameters: none.\n".into(),
            _ => "Parameters: no schema (it takes none).\n".into(),
        };
    };
    let required: Vec<&str> = d
        .parameter_schema
        .as_ref()
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut table = Table::new(&["NAME", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"]);
    for (name, property) in properties {
        let default = defaults
            .and_then(|d| d.get(name))
            .or_else(|| property.get("default"))
            .map(Value::to_string)
            .unwrap_or_default();
        let description = property
            .get("description")
            .or_else(|| property.get("title"))
            .and_then(Value::as_str)
            .unwrap_or("");
        table.row(vec![
            name.clone(),
            type_of(property),
            yes_no(required.contains(&name.as_str())),
            table::cut(&default, 30),
            table::cut(description, 60),
        ]);
    }
    if table.is_empty() {
        return "Parameters: none.\n".into();
    }
    format!("Parameters:\n{}", table.render())
}

/// A schema property's type in words: `integer`, `string (date)`, `one of "a", "b"`.
fn type_of(property: &Value) -> String {
    if let Some(choices) = property.get("enum").and_then(Value::as_array) {
        let choices: Vec<String> = choices.iter().map(Value::to_string).collect();
        return format!("one of {}", choices.join(", "));
    }
    let kind = match property.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => {
            let choices = property
                .get("anyOf")
                .or_else(|| property.get("oneOf"))
                .and_then(Value::as_array);
            if let Some(choices) = choices {
                let kinds: Vec<String> = choices.iter().map(type_of).collect();
                kinds.join(" or ")
            } else if let Some(reference) = property.get("$ref").and_then(Value::as_str) {
                reference
                    .rsplit('/')
                    .next()
                    .unwrap_or(reference)
                    .to_string()
            } else {
                "any".into()
            }
        }
    };
    match property.get("format").and_then(Value::as_str) {
        Some(format) => format!("{kind} ({format})"),
        None => kind,
    }
}
