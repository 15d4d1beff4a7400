//! The real `flowkit` binary against a real flowkit-server (a process on a free port, with a
//! SQLite database), one server for the whole test binary.

mod backfills;
mod common;
mod deployments;
mod keys;
mod limits;
mod orchestration;
mod real_worker;
mod runs;
mod tls;
mod usage;
mod worker;

/// Not a test: the server process the other tests start (this binary, run again with an
/// environment naming its directory). Without that environment it returns at once.
#[tokio::test]
#[ignore = "the server process of the other tests; they start it"]
async fn serve_process() {
    common::serve_process().await;
}

/// Not a test: the worker process of `real_worker` (this binary, run again with an environment
/// saying so). Without that environment it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the worker process of real_worker; it starts it"]
async fn worker_process() {
    real_worker::serve().await;
}
