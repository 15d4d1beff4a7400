//! Run states as the CLI shows them: one symbol each (for strips and grids), an outcome they
//! count under, whether they are final.

pub use flowkit_api::states::is_final;

/// One column-wide symbol for `state`.
pub fn symbol(state: &str) -> char {
    match state {
        "Completed" | "Cached" => '✓',
        "Failed" => '✗',
        "Crashed" => '!',
        "TimedOut" => 'T',
        "Cancelled" | "Cancelling" => '⊘',
        "Running" => '▸',
        "Retrying" => '↻',
        "Scheduled" | "Pending" => '·',
        "Skipped" => '-',
        _ => '?',
    }
}

/// The symbol of an interval with no run.
pub const MISSING: char = '_';

/// A line explaining the symbols used in `strip`, in a fixed order; empty if none are.
pub fn legend(strip: &str) -> String {
    const WORDS: [(char, &str); 11] = [
        ('✓', "completed"),
        ('✗', "failed"),
        ('!', "crashed"),
        ('T', "timed out"),
        ('⊘', "cancelled"),
        ('▸', "running"),
        ('↻', "retrying"),
        ('·', "scheduled"),
        ('-', "skipped"),
        ('?', "other"),
        (MISSING, "no run"),
    ];
    WORDS
        .iter()
        .filter(|(symbol, _)| strip.contains(*symbol))
        .map(|(symbol, word)| format!("{symbol} {word}"))
        .collect::<Vec<_>>()
        .join("  ")
}

/// Whether a run in `state` did its work.
pub fn succeeded(state: &str) -> bool {
    matches!(state, "Completed" | "Cached")
}

/// What an interval in `state` (None: no run) counts as in a summary, in the order summaries
/// list them.
pub const OUTCOMES: [&str; 7] = [
    "completed",
    "failed",
    "cancelled",
    "skipped",
    "running",
    "scheduled",
    "missing",
];

/// The outcome `state` counts under (one of [`OUTCOMES`]).
pub fn outcome(state: Option<&str>) -> &'static str {
    match state {
        None => "missing",
        Some("Completed" | "Cached") => "completed",
        Some("Failed" | "Crashed" | "TimedOut") => "failed",
        Some("Cancelled") => "cancelled",
        Some("Skipped") => "skipped",
        Some("Scheduled" | "Pending") => "scheduled",
        Some(_) => "running",
    }
}

/// `"365 intervals: 362 completed, 2 failed, 1 missing"`: how many of `states` count under each
/// outcome (completed always, the others when some do).
pub fn summary<'a>(states: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let mut counts = [0usize; OUTCOMES.len()];
    let mut total = 0;
    for state in states {
        let outcome = outcome(state);
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            counts[i] += 1;
        }
        total += 1;
    }
    let parts: Vec<String> = OUTCOMES
        .iter()
        .zip(counts)
        .enumerate()
        .filter(|(i, (_, n))| *i == 0 || *n > 0)
        .map(|(_, (outcome, n))| format!("{n} {outcome}"))
        .collect();
    let noun = if total == 1 { "interval" } else { "intervals" };
    format!("{total} {noun}: {}", parts.join(", "))
}

/// The server's spelling of a state typed in any case (`failed` → `Failed`), or the text as
/// typed if it names none (the server then says which states there are).
pub fn canonical(text: &str) -> String {
    flowkit_api::states::find(text).map_or_else(|| text.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_counts_each_outcome_and_always_the_completed() {
        let states = [Some("Completed"), Some("Cached"), Some("Failed"), None];
        assert_eq!(
            summary(states),
            "4 intervals: 2 completed, 1 failed, 1 missing"
        );
        assert_eq!(
            summary([Some("Failed")]),
            "1 interval: 0 completed, 1 failed"
        );
    }

    #[test]
    fn states_are_read_in_any_case() {
        assert_eq!(canonical("timedout"), "TimedOut");
        assert_eq!(canonical("nope"), "nope");
    }

    #[test]
    fn every_state_has_its_own_symbol_or_shares_it_with_a_synonym() {
        for state in flowkit_api::states::STATES
            .into_iter()
            .chain(["Cancelling"])
        {
            assert_ne!(symbol(state), '?', "{state}");
        }
        assert_eq!(legend("✓✗✓"), "✓ completed  ✗ failed");
    }
}
