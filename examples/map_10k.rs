//! A 10,000-task `map` flow, as a user runs it: the wall time of the flow, and of the process.
//!
//! ```text
//! cargo build --release --example map_10k
//! FLOWKIT_CONSOLE=off target/release/examples/map_10k                 # no server
//! FLOWKIT_CONSOLE=off FLOWKIT_API_URL=http://127.0.0.1:4200 target/release/examples/map_10k
//! ```
//!
//! Prints `flow_ms=<the flow run, as its caller waits for it>`. With a server, the flow run ends
//! once its events are in the HTTP sink's spool; the process then waits (at most 5 s) at exit
//! until the server has taken them.

use flowkit::{flow, task};

#[task]
async fn noop(item: u32) -> u32 {
    item
}

#[flow]
async fn map_10k() -> usize {
    flowkit::map(0..10_000, noop).await.len()
}

#[tokio::main]
async fn main() {
    flowkit::init();
    let started = std::time::Instant::now();
    let done = map_10k().await.unwrap_or(0);
    let took = started.elapsed();
    println!("tasks={done} flow_ms={:.1}", took.as_secs_f64() * 1e3);
}
