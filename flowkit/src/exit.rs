//! Delivery at process exit: a top-level flow run ends once its events are handed off (the HTTP
//! sink's spool), so the process gives the global bus's sinks a last, bounded wait to deliver
//! them before it exits.

use std::time::Duration;

/// How long an exiting process waits for the global bus's sinks to deliver.
pub(crate) const EXIT_LIMIT: Duration = Duration::from_secs(5);

/// Makes the process, when it exits normally (`main` returns, or `std::process::exit`), wait up
/// to [`EXIT_LIMIT`] for the global bus's sinks to deliver what they hold. Registered once.
pub(crate) fn deliver_at_exit() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: `atexit` only records a function pointer; `at_exit` is a plain `extern "C"`
        // function that never unwinds (see below).
        let failed = unsafe { libc::atexit(at_exit) } != 0;
        if failed {
            tracing::debug!("flowkit: could not register the delivery at exit");
        }
    });
}

/// Runs after `main` has returned: no runtime, and the main thread's thread-locals are gone.
/// Blocks on the bus's own channel (the dispatcher and the sinks run on threads of their own),
/// and catches any panic, which must not unwind into C.
extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(bus) = crate::config::GLOBAL.get() {
            bus.flush_blocking(EXIT_LIMIT);
        }
    });
}
