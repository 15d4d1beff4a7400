//! Which flow runs the sink keeps alive on the server with heartbeats.
//!
//! A flow run is alive from its `RunCreated` until the server has acknowledged the batch that
//! holds its terminal state: a run whose end waits in the spool (server down) is still
//! heartbeated, so it is never marked `Crashed` for an end the server has not seen yet. Batches
//! leave the spool in order, so "acknowledged" is a count: the end is acknowledged once as many
//! events have gone from the spool as had been shipped into it with that end.

use std::collections::{HashSet, VecDeque};

use uuid::Uuid;

use crate::events::{Event, EventKind, RunType};

/// The flow runs to heartbeat.
#[derive(Default)]
pub(super) struct Beats {
    /// Flow runs seen created whose end the server has not acknowledged.
    live: HashSet<Uuid>,
    /// Flow runs whose terminal state is in the buffer, not shipped yet.
    ending: Vec<Uuid>,
    /// Ends shipped: acknowledged once the spool's `gone` count reaches the mark.
    shipped_ends: VecDeque<(u64, Vec<Uuid>)>,
    /// Events shipped into the spool (with those an earlier program left there).
    shipped: u64,
}

impl Beats {
    /// Starts counting after the `waiting` events already in the spool.
    pub(super) fn new(waiting: usize) -> Beats {
        Beats {
            shipped: waiting as u64,
            ..Beats::default()
        }
    }

    /// Notes the flow runs that start and end in `events` (in the buffer, in order); whether a
    /// run started.
    pub(super) fn seen(&mut self, events: &[Event]) -> bool {
        let mut started = false;
        for event in events {
            let (Some(flow_run), None) = (event.flow_run_id, event.task_run_id) else {
                continue;
            };
            match &event.kind {
                EventKind::RunCreated(created) if created.run_type == RunType::Flow => {
                    started |= self.live.insert(flow_run);
                }
                EventKind::StateChanged(change) if change.state.is_terminal() => {
                    self.ending.push(flow_run);
                }
                _ => {}
            }
        }
        started
    }

    /// The buffer was shipped into the spool as `events` events.
    pub(super) fn shipped(&mut self, events: usize) {
        self.shipped += events as u64;
        if !self.ending.is_empty() {
            let ending = std::mem::take(&mut self.ending);
            self.shipped_ends.push_back((self.shipped, ending));
        }
    }

    /// `gone` events have left the spool: the ends among them are acknowledged.
    pub(super) fn acknowledged(&mut self, gone: u64) {
        while let Some((mark, _)) = self.shipped_ends.front() {
            if *mark > gone {
                break;
            }
            if let Some((_, runs)) = self.shipped_ends.pop_front() {
                for run in runs {
                    self.live.remove(&run);
                }
            }
        }
    }

    /// Whether any run is alive.
    pub(super) fn any(&self) -> bool {
        !self.live.is_empty()
    }

    /// The runs to heartbeat: the live ones no worker of this process holds (a worker's polls
    /// are its runs' heartbeats).
    pub(super) fn runs(&self) -> Vec<Uuid> {
        self.live
            .iter()
            .copied()
            .filter(|id| !crate::serve::is_held(*id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::State;
    use crate::events::{RunCreated, StateChanged};

    fn event(flow: Uuid, task: Option<Uuid>, kind: EventKind) -> Event {
        Event {
            id: Uuid::now_v7(),
            timestamp: chrono::Utc::now(),
            flow_run_id: Some(flow),
            task_run_id: task,
            kind,
        }
    }

    fn created(run_type: RunType) -> EventKind {
        EventKind::RunCreated(Arc::new(RunCreated {
            run_type,
            name: "x".into(),
            run_name: None,
            description: None,
            parameters: None,
            tags: Default::default(),
            parent_flow_run_id: None,
            parent_task_run_id: None,
            upstream: vec![],
            map_index: None,
            retries: 0,
            scheduled: None,
        }))
    }

    fn state(state: State) -> EventKind {
        EventKind::StateChanged(StateChanged {
            state,
            attempt: 1,
            message: None,
            next_attempt_at: None,
            result: None,
        })
    }

    #[test]
    fn a_flow_run_is_alive_until_the_batch_with_its_end_is_acknowledged() {
        let (flow, task) = (Uuid::now_v7(), Uuid::now_v7());
        // Three events an earlier program left in the spool.
        let mut beats = Beats::new(3);
        let started = beats.seen(&[
            event(flow, None, created(RunType::Flow)),
            event(flow, Some(task), created(RunType::Task)),
            event(flow, Some(task), state(State::Completed)),
        ]);
        assert!(started);
        assert_eq!(beats.runs(), [flow], "task runs are not heartbeated");
        beats.shipped(3);
        let started = beats.seen(&[
            event(flow, None, state(State::Running)),
            event(flow, None, state(State::Completed)),
        ]);
        assert!(!started);
        assert!(beats.any(), "its end is not even shipped");
        beats.shipped(2);
        // The old events and the first batch are delivered: the end is not yet.
        beats.acknowledged(6);
        assert_eq!(beats.runs(), [flow]);
        beats.acknowledged(8);
        assert!(!beats.any(), "its end was acknowledged");
        assert!(beats.runs().is_empty());
    }
}
