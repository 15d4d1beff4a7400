//! The real `flowkit` binary against a real flowkit-server (a process on a free port, with a
//! SQLite database), one server for the whole test binary.

mod backfills;
mod common;
mod deployments;
mod orchestration;
mod runs;
mod usage;
mod worker;

/// Not a test: the server process the other tests start (this binary, run again with an
/// environment naming its directory). Without that environment it returns at once.
#[tokio::test]
#[ignore = "the server process of the other tests; they start it"]
async fn serve_process() {
    common::serve_process().await;
}
