//! Cancelling the top-level flow runs of the process: all of them (Ctrl-C), or one by id (a
//! cancel from the server).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use crate::run::FlowRun;

static ROOTS: Mutex<Vec<Arc<FlowRun>>> = Mutex::new(Vec::new());

/// Keeps a top-level flow run cancellable by Ctrl-C while it runs.
pub(crate) struct Registration(Arc<FlowRun>);

pub(crate) fn register(run: &Arc<FlowRun>) -> Registration {
    ROOTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(run.clone());
    Registration(run.clone())
}

impl Drop for Registration {
    fn drop(&mut self) {
        ROOTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|run| run.id != self.0.id);
    }
}

/// Cancels every top-level flow run in progress; how many there were.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(flowkit::cancel_all(), 0); // nothing running
/// # }
/// ```
pub fn cancel_all() -> usize {
    let roots = ROOTS.lock().unwrap_or_else(PoisonError::into_inner);
    for run in roots.iter() {
        run.cancel.cancel();
    }
    roots.len()
}

/// Cancels the top-level flow run `id`, if it runs in this process; whether it did.
pub(crate) fn cancel_run(id: Uuid) -> bool {
    let roots = ROOTS.lock().unwrap_or_else(PoisonError::into_inner);
    let found = roots.iter().find(|run| run.id == id);
    if let Some(run) = found {
        run.cancel.cancel();
    }
    found.is_some()
}

/// Whether the top-level flow run `id` runs in this process and has not recorded its terminal
/// state yet.
pub(crate) fn is_running(id: Uuid) -> bool {
    let roots = ROOTS.lock().unwrap_or_else(PoisonError::into_inner);
    roots
        .iter()
        .find(|run| run.id == id)
        .is_some_and(|run| run.done.get().is_none())
}

/// How many workers handle Ctrl-C themselves right now (a graceful stop, not an immediate
/// cancel).
static SIGNALS_TAKEN: AtomicUsize = AtomicUsize::new(0);

/// While it lives, Ctrl-C is left to its holder (a worker stopping gracefully): the listener
/// [`crate::init`] installs neither cancels the flow runs nor exits.
pub(crate) struct SignalsTaken(());

impl SignalsTaken {
    pub(crate) fn take() -> SignalsTaken {
        SIGNALS_TAKEN.fetch_add(1, Ordering::SeqCst);
        SignalsTaken(())
    }
}

impl Drop for SignalsTaken {
    fn drop(&mut self) {
        SIGNALS_TAKEN.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Listens for Ctrl-C: the first cancels the flow runs in progress (they record `Cancelled` and
/// return [`RunError::Cancelled`](crate::RunError::Cancelled)); a second one, or one while no
/// flow runs, exits the process with status 130 as Ctrl-C normally would. While a worker serves
/// (see [`Server::run`](crate::serve::Server::run)), the worker handles Ctrl-C instead.
pub(crate) fn listen_for_ctrl_c() {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("flowkit: no tokio runtime at init; Ctrl-C will not cancel flow runs");
        return;
    };
    handle.spawn(async {
        let mut cancelling = false;
        loop {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            if SIGNALS_TAKEN.load(Ordering::SeqCst) > 0 {
                continue;
            }
            let running = cancel_all();
            if running == 0 || cancelling {
                std::process::exit(130);
            }
            cancelling = true;
            tracing::warn!(
                "flowkit: Ctrl-C: cancelling {running} flow run(s); press Ctrl-C again to exit now"
            );
        }
    });
}
