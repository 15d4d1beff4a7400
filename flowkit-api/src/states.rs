//! The names of the states a run can be in, as the server stores and the API spells them: one
//! list for the server (filters, automations) and the command line. They match the runtime's
//! `flowkit::State` (a test there checks it).
//!
//! `Cancelling` is not among them: it is what `POST /api/flow_runs/{id}/cancel` answers while
//! the program running a run stops it; the run stays in its state until that program reports.
//!
//! ```
//! use flowkit_api::states;
//! assert_eq!(states::find(" timedout"), Some("TimedOut"));
//! assert_eq!(states::find("Cancelling"), None);
//! assert!(states::is_final("Skipped"));
//! assert!(!states::is_final("Retrying"));
//! ```

/// Every state a run can be in, in lifecycle order.
pub const STATES: [&str; 11] = [
    "Scheduled",
    "Pending",
    "Running",
    "Retrying",
    "Completed",
    "Cached",
    "Failed",
    "Crashed",
    "TimedOut",
    "Cancelled",
    "Skipped",
];

/// The states a run can end in (it never leaves them): the last seven of [`STATES`].
pub const END_STATES: &[&str] = STATES.split_at(4).1;

/// The end states that count as failures (for the circuit breaker and summaries).
pub const FAILURE_STATES: [&str; 3] = ["Failed", "Crashed", "TimedOut"];

/// The state named `name`, in any case and with spaces around it ignored.
///
/// ```
/// assert_eq!(flowkit_api::states::find("failed"), Some("Failed"));
/// ```
pub fn find(name: &str) -> Option<&'static str> {
    let name = name.trim();
    STATES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(name))
        .copied()
}

/// Whether a run in `state` has ended.
///
/// ```
/// assert!(flowkit_api::states::is_final("Cancelled"));
/// ```
pub fn is_final(state: &str) -> bool {
    END_STATES.contains(&state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_and_failure_states_are_states() {
        assert_eq!(END_STATES.first(), Some(&"Completed"));
        for state in END_STATES.iter().chain(&FAILURE_STATES) {
            assert!(STATES.contains(state), "{state}");
        }
        for state in FAILURE_STATES {
            assert!(is_final(state), "{state}");
        }
        assert!(!is_final("Running"));
        assert_eq!(find("CACHED"), Some("Cached"));
        assert_eq!(find("nope"), None);
    }
}
