//! The states a task run or flow run moves through.

use serde::{Deserialize, Serialize};

/// The state of a task run or a flow run.
///
/// A run is created `Pending`, becomes `Running` for each attempt, may pass through `Retrying`
/// between attempts, and ends in exactly one terminal state.
///
/// ```
/// use flowkit::State;
/// assert!(State::Completed.is_terminal());
/// assert!(!State::Retrying.is_terminal());
/// assert_eq!(State::TimedOut.to_string(), "TimedOut");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    /// Waiting for a scheduled start time (deployments; not used by local runs).
    Scheduled,
    /// Created, waiting for upstream runs or a concurrency slot.
    Pending,
    /// An attempt is running.
    Running,
    /// An attempt failed and another one is scheduled.
    Retrying,
    /// Finished with a value.
    Completed,
    /// Finished with a value taken from a cache instead of running.
    Cached,
    /// Finished with an error after its last attempt.
    Failed,
    /// Ended by a panic in its code, or by the loss of the process running it.
    Crashed,
    /// Its last attempt ran out of time.
    TimedOut,
    /// Cancelled before it finished.
    Cancelled,
    /// Never ran, because an upstream run it waited for did not complete.
    Skipped,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 11] = [
        State::Scheduled,
        State::Pending,
        State::Running,
        State::Retrying,
        State::Completed,
        State::Cached,
        State::Failed,
        State::Crashed,
        State::TimedOut,
        State::Cancelled,
        State::Skipped,
    ];

    /// True for the states a run never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Completed
                | State::Cached
                | State::Failed
                | State::Crashed
                | State::TimedOut
                | State::Cancelled
                | State::Skipped
        )
    }

    /// True for the terminal states that produced a value.
    pub fn is_success(self) -> bool {
        matches!(self, State::Completed | State::Cached)
    }

    /// The state's name, as it is serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Scheduled => "Scheduled",
            State::Pending => "Pending",
            State::Running => "Running",
            State::Retrying => "Retrying",
            State::Completed => "Completed",
            State::Cached => "Cached",
            State::Failed => "Failed",
            State::Crashed => "Crashed",
            State::TimedOut => "TimedOut",
            State::Cancelled => "Cancelled",
            State::Skipped => "Skipped",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    /// The server and the command line name states from `flowkit_api::states`: it must list
    /// exactly the runtime's, in the same order, with the same ones final.
    #[test]
    fn the_api_lists_the_runtimes_states() {
        let names = State::ALL.map(State::as_str);
        assert_eq!(names, flowkit_api::states::STATES);
        for state in State::ALL {
            assert_eq!(
                state.is_terminal(),
                flowkit_api::states::is_final(state.as_str()),
                "{state}"
            );
            let failure = state.is_terminal() && !state.is_success() && state != State::Cancelled;
            let failure = failure && state != State::Skipped;
            assert_eq!(
                failure,
                flowkit_api::states::FAILURE_STATES.contains(&state.as_str()),
                "{state}"
            );
        }
    }
}
