//! `flowkit backfill NAME --from --to` (with `--wait`, followed to its end) and
//! `flowkit backfills [ID]`.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Utc};
use flowkit_api::work::{BackfillRequest, BackfillView, IntervalView};
use uuid::Uuid;

use crate::client::{Client, Failure};
use crate::params::{PARAMETER_OPTIONS, ParamArgs};
use crate::range::RangeArgs;
use crate::table::{self, Table};
use crate::{output, states, time};

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The deployment's name.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub name: String,
    #[command(flatten)]
    pub range: RangeArgs,
    /// At most this many of its runs at once (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_active: Option<u32>,
    /// Only the intervals without a successful run.
    #[arg(long)]
    pub rerun_failed: bool,
    #[command(flatten)]
    pub params: ParamArgs,
    /// The work queue its runs wait in (the server's default: `backfill`).
    #[arg(long)]
    pub queue: Option<String>,
    /// Follow it until every interval ended, then print the gap report; exit 4 if some
    /// interval has no successful run.
    #[arg(long)]
    pub wait: bool,
}

/// The fields of a backfill request the server may blame, and the options that set them.
const OPTIONS: [(&str, &str); 7] = [
    PARAMETER_OPTIONS,
    ("parameters", "--params/--param"),
    ("start", "--from"),
    ("end", "--to"),
    ("chunk", "--chunk"),
    ("max_active", "--max-active"),
    ("queue", "--queue"),
];

pub async fn start(client: &Client, args: BackfillArgs, json: bool) -> anyhow::Result<()> {
    args.range.check()?;
    // Field by field over the defaults: the contract may grow fields this command leaves unset.
    #[allow(clippy::field_reassign_with_default)]
    let request = {
        let mut request = BackfillRequest::default();
        request.start = args.range.from;
        request.end = args.range.to;
        request.chunk = args.range.chunk.clone();
        request.max_active = args.max_active;
        request.rerun_failed = args.rerun_failed;
        request.parameters = args.params.object();
        request.queue = args.queue.clone();
        request
    };
    let answer = client
        .post(&["api", "deployments", &args.name, "backfills"], &request)
        .await
        .map_err(|f| f.with_options(&OPTIONS))?;
    let backfill: BackfillView = answer.parse()?;
    if json && !args.wait {
        output::json(&answer.value);
        return Ok(());
    }
    if !json {
        output::line(headline(&backfill));
        output::line(summary(&backfill.intervals));
    }
    if !args.wait {
        return Ok(());
    }
    let (ended, value) = follow(client, backfill.id, json).await?;
    if json {
        output::json(&value);
    } else {
        output::line("");
        let gaps = super::gaps::fetch(
            client,
            &ended.deployment,
            ended.start,
            ended.end,
            ended.chunk.as_deref(),
        )
        .await?;
        let intervals: Vec<IntervalView> = gaps.parse()?;
        output::text(super::gaps::report(&intervals));
    }
    let failed = ended.intervals.iter().filter(|i| !i.succeeded()).count();
    if failed > 0 {
        return Err(Failure::NotCompleted(format!(
            "backfill {}: {failed} of {} intervals have no successful run",
            ended.id,
            ended.intervals.len()
        ))
        .into());
    }
    Ok(())
}

/// Whether every interval of `backfill` ended: its run ended, or it has none and never will.
fn ended(backfill: &BackfillView) -> bool {
    backfill.intervals.iter().all(|i| match &i.state {
        Some(state) => states::is_final(state),
        None => backfill.status != "running",
    })
}

/// Follows a backfill until every interval ended, printing its progress on stderr when it
/// changes (unless `quiet`); its last view, as read and as sent.
async fn follow(
    client: &Client,
    id: Uuid,
    quiet: bool,
) -> Result<(BackfillView, serde_json::Value), Failure> {
    let id_text = id.to_string();
    let mut last = String::new();
    let mut attempt = 0;
    loop {
        let answer = client.get(&["api", "backfills", &id_text], &[]).await?;
        let backfill: BackfillView = answer.parse()?;
        let progress = progress(&backfill);
        if progress != last && !quiet {
            eprintln!("  {} {progress}", Utc::now().format("%H:%M:%S"));
        }
        last = progress;
        if ended(&backfill) {
            return Ok((backfill, answer.value));
        }
        tokio::time::sleep(super::poll_delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// `120 of 365 ended: 118 completed, 2 failed, ...` (the counts of every outcome).
fn progress(backfill: &BackfillView) -> String {
    let total = backfill.intervals.len();
    let done = backfill
        .intervals
        .iter()
        .filter(|i| i.state.as_deref().is_some_and(states::is_final))
        .count();
    let counts = summary(&backfill.intervals);
    let counts = counts.split_once(": ").map_or(counts.as_str(), |(_, c)| c);
    format!("{done} of {total} ended ({}): {counts}", backfill.status)
}

fn summary(intervals: &[IntervalView]) -> String {
    states::summary(intervals.iter().map(|i| i.state.as_deref()))
}

/// `Backfill 0193… of nightly: 2024-01-01 → 2025-01-01, 366 intervals, at most 2 at once.`
fn headline(b: &BackfillView) -> String {
    let chunk = b
        .chunk
        .as_ref()
        .map(|c| format!(" in chunks of {c}"))
        .unwrap_or_default();
    let n = b.intervals.len();
    let intervals = if n == 1 { "interval" } else { "intervals" };
    format!(
        "Backfill {} of {}: {}{chunk}, {n} {intervals}, at most {} at once ({}).",
        b.id,
        b.deployment,
        range(b),
        b.max_active,
        b.status
    )
}

fn range(b: &BackfillView) -> String {
    format!(
        "{} → {}",
        time::day_or_time(b.start),
        time::day_or_time(b.end)
    )
}

pub async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let answer = client.get(&["api", "backfills"], &[]).await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let backfills: Vec<BackfillView> = answer.parse()?;
    if backfills.is_empty() {
        output::line("No backfills.");
        return Ok(());
    }
    let now = Utc::now();
    let mut table = Table::new(&[
        "ID",
        "DEPLOYMENT",
        "RANGE",
        "CHUNK",
        "STATUS",
        "PROGRESS",
        "CREATED",
    ]);
    for b in &backfills {
        let total = b.intervals.len();
        let completed = b.intervals.iter().filter(|i| i.succeeded()).count();
        let failed = b
            .intervals
            .iter()
            .filter(|i| states::outcome(i.state.as_deref()) == "failed")
            .count();
        let mut progress = format!("{completed}/{total} completed");
        if failed > 0 {
            progress.push_str(&format!(", {failed} failed"));
        }
        table.row(vec![
            b.id.to_string(),
            b.deployment.clone(),
            range(b),
            b.chunk.clone().unwrap_or_else(|| "-".into()),
            b.status.clone(),
            progress,
            time::show_relative(b.created_at, now),
        ]);
    }
    output::text(table.render());
    Ok(())
}

pub async fn show(client: &Client, id: Uuid, json: bool) -> anyhow::Result<()> {
    let answer = client
        .get(&["api", "backfills", &id.to_string()], &[])
        .await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let b: BackfillView = answer.parse()?;
    output::line(format!("Backfill {}", b.id));
    output::text(table::pairs(&[
        ("deployment", b.deployment.clone()),
        ("range", range(&b)),
        ("chunk", b.chunk.clone().unwrap_or_else(|| "-".into())),
        ("max active", b.max_active.to_string()),
        ("queue", b.queue.clone()),
        ("status", b.status.clone()),
        ("created", time::show_relative(b.created_at, Utc::now())),
        ("intervals", summary(&b.intervals)),
    ]));
    if b.intervals.is_empty() {
        return Ok(());
    }
    output::line("");
    output::text(grid(&b.intervals));
    let symbols: String = b.intervals.iter().map(symbol).collect();
    output::line(states::legend(&symbols));
    let unfinished: Vec<&IntervalView> = b.intervals.iter().filter(|i| !i.succeeded()).collect();
    if !unfinished.is_empty() {
        output::line("");
        let mut table = Table::new(&["INTERVAL", "STATE", "RUNS", "LATEST RUN"]).right(2);
        for i in unfinished {
            table.row(vec![
                time::interval(i.start, i.end),
                i.state.clone().unwrap_or_else(|| "no run".into()),
                i.runs.to_string(),
                i.run.map(|r| r.to_string()).unwrap_or_default(),
            ]);
        }
        output::text(table.render());
    }
    Ok(())
}

/// `flowkit cancel --backfill ID`.
pub async fn cancel(client: &Client, id: Uuid, json: bool) -> anyhow::Result<()> {
    let answer = client
        .post(
            &["api", "backfills", &id.to_string(), "cancel"],
            &serde_json::json!({}),
        )
        .await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let b: BackfillView = answer.parse()?;
    output::line(format!(
        "Cancelled backfill {} of {}: its runs that had not started will not; those running \
         finish.",
        b.id, b.deployment
    ));
    output::line(summary(&b.intervals));
    Ok(())
}

fn symbol(interval: &IntervalView) -> char {
    interval
        .state
        .as_deref()
        .map_or(states::MISSING, states::symbol)
}

/// The intervals' states as a grid: for intervals of a day or more (at most one starting on
/// each UTC date: daily schedules in any time zone, weekly chunks), a calendar with a line per
/// month and a column per day of the month; else a line per day, its intervals in order.
pub fn grid(intervals: &[IntervalView]) -> String {
    // 23 hours: a day in a time zone that springs forward.
    let long = intervals
        .iter()
        .all(|i| i.end - i.start >= chrono::TimeDelta::hours(23));
    let dates: std::collections::BTreeSet<NaiveDate> =
        intervals.iter().map(|i| i.start.date_naive()).collect();
    let whole_days = long && dates.len() == intervals.len();
    let mut out = String::new();
    if whole_days {
        let mut months: BTreeMap<(i32, u32), [char; 31]> = BTreeMap::new();
        for i in intervals {
            let date = i.start.date_naive();
            let row = months
                .entry((date.year(), date.month()))
                .or_insert([' '; 31]);
            row[date.day0() as usize] = symbol(i);
        }
        let days: String = (1..=31)
            .map(|d| char::from(b'0' + (d % 10) as u8))
            .collect();
        out.push_str(&format!("         {days}\n"));
        for ((year, month), row) in months {
            let row: String = row.iter().collect();
            out.push_str(format!("{year}-{month:02}  {row}").trim_end());
            out.push('\n');
        }
    } else {
        let mut days: BTreeMap<NaiveDate, String> = BTreeMap::new();
        for i in intervals {
            days.entry(i.start.date_naive())
                .or_default()
                .push(symbol(i));
        }
        for (day, row) in days {
            out.push_str(&format!("{day}  {row}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(start: &str, end: &str, state: Option<&str>) -> IntervalView {
        serde_json::from_value(serde_json::json!({
            "start": start, "end": end, "run": null, "state": state,
        }))
        .expect("an interval")
    }

    #[test]
    fn daily_intervals_make_a_calendar_by_month() {
        let intervals = [
            interval(
                "2024-01-30T00:00:00Z",
                "2024-01-31T00:00:00Z",
                Some("Completed"),
            ),
            interval(
                "2024-01-31T00:00:00Z",
                "2024-02-01T00:00:00Z",
                Some("Failed"),
            ),
            interval("2024-02-01T00:00:00Z", "2024-02-02T00:00:00Z", None),
            interval(
                "2024-02-02T00:00:00Z",
                "2024-02-03T00:00:00Z",
                Some("Running"),
            ),
        ];
        let text = grid(&intervals);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "         1234567890123456789012345678901");
        assert_eq!(lines[1], format!("2024-01  {}✓✗", " ".repeat(29)));
        assert_eq!(lines[2], "2024-02  _▸");
    }

    #[test]
    fn days_of_a_time_zone_make_a_calendar_across_its_clock_change() {
        // 02:00 in Madrid: 00:00 UTC in summer, 01:00 UTC in winter; the change day is 25 h.
        let intervals = [
            interval(
                "2026-10-24T00:00:00Z",
                "2026-10-25T00:00:00Z",
                Some("Completed"),
            ),
            interval(
                "2026-10-25T00:00:00Z",
                "2026-10-26T01:00:00Z",
                Some("Completed"),
            ),
            interval(
                "2026-10-26T01:00:00Z",
                "2026-10-27T01:00:00Z",
                Some("Failed"),
            ),
        ];
        let text = grid(&intervals);
        assert_eq!(
            text.lines().nth(1),
            Some(format!("2026-10  {}✓✓✗", " ".repeat(23)).as_str())
        );
    }

    #[test]
    fn hourly_intervals_make_a_line_per_day() {
        let intervals = [
            interval(
                "2024-01-01T22:00:00Z",
                "2024-01-01T23:00:00Z",
                Some("Completed"),
            ),
            interval(
                "2024-01-01T23:00:00Z",
                "2024-01-02T00:00:00Z",
                Some("Completed"),
            ),
            interval(
                "2024-01-02T00:00:00Z",
                "2024-01-02T01:00:00Z",
                Some("Failed"),
            ),
        ];
        assert_eq!(grid(&intervals), "2024-01-01  ✓✓\n2024-01-02  ✗\n");
    }
}
