//! `flowkit gaps NAME --from --to`: the intervals of a range with no successful run.

use chrono::{DateTime, SecondsFormat, Utc};
use flowkit_api::work::IntervalView;

use crate::client::{Client, Failure};
use crate::range::RangeArgs;
use crate::table::Table;
use crate::{output, states, time};

#[derive(Debug, clap::Args)]
pub struct GapsArgs {
    /// The deployment's name.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub name: String,
    #[command(flatten)]
    pub range: RangeArgs,
}

pub async fn run(client: &Client, args: GapsArgs, json: bool) -> anyhow::Result<()> {
    args.range.check()?;
    let answer = fetch(
        client,
        &args.name,
        args.range.from,
        args.range.to,
        args.range.chunk.as_deref(),
    )
    .await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let intervals: Vec<IntervalView> = answer.parse()?;
    output::text(report(&intervals));
    Ok(())
}

/// `GET /api/deployments/{name}/gaps` for `[start, end)`, cut by the schedules or `chunk`.
pub async fn fetch(
    client: &Client,
    name: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    chunk: Option<&str>,
) -> Result<crate::client::Answer, Failure> {
    let mut query = vec![
        ("start", start.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        ("end", end.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    ];
    if let Some(chunk) = chunk {
        query.push(("chunk", chunk.to_string()));
    }
    client
        .get(&["api", "deployments", name, "gaps"], &query)
        .await
        .map_err(|f| f.with_options(&[("start", "--from"), ("end", "--to"), ("chunk", "--chunk")]))
}

/// The gap report: a line per interval without a successful run, then the counts.
pub fn report(intervals: &[IntervalView]) -> String {
    if intervals.is_empty() {
        return "No scheduled intervals in that range.\n".into();
    }
    let summary = states::summary(intervals.iter().map(|i| i.state.as_deref()));
    let mut table = Table::new(&["INTERVAL", "STATE", "RUN"]);
    for gap in intervals.iter().filter(|i| !i.succeeded()) {
        table.row(vec![
            time::interval(gap.start, gap.end),
            gap.state.clone().unwrap_or_else(|| "missing".into()),
            gap.run.map(|id| id.to_string()).unwrap_or_default(),
        ]);
    }
    if table.is_empty() {
        return format!("No gaps. {summary}\n");
    }
    format!("{}{summary}\n", table.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(day: u32, state: Option<&str>) -> IntervalView {
        let at = |d: u32| format!("2024-01-{d:02}T00:00:00Z");
        serde_json::from_value(serde_json::json!({
            "start": at(day),
            "end": at(day + 1),
            "run": state.map(|_| uuid::Uuid::nil()),
            "state": state,
        }))
        .expect("an interval")
    }

    #[test]
    fn a_report_lists_each_gap_and_counts_every_outcome() {
        let intervals = [
            interval(1, Some("Completed")),
            interval(2, Some("Failed")),
            interval(3, None),
            interval(4, Some("Cached")),
        ];
        let text = report(&intervals);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].starts_with("2024-01-02  Failed"), "{text}");
        assert!(lines[2].starts_with("2024-01-03  missing"), "{text}");
        assert_eq!(lines[3], "4 intervals: 2 completed, 1 failed, 1 missing");
        assert_eq!(
            report(&intervals[..1]),
            "No gaps. 1 interval: 1 completed\n"
        );
    }
}
