//! A tree of runs at every depth, for the ordering tests: flow → child flow → task, a task
//! calling a flow, a task with a sub-task, detached task runs and a detached child flow.

use std::time::Duration;

use flowkit::{flow, task};

#[task]
pub async fn nap(seconds: u64) -> u64 {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    seconds
}

/// A task run with a task run under it.
#[task]
pub async fn waits_on_a_subtask(seconds: u64) -> u64 {
    nap(seconds).submit().await.unwrap_or(0)
}

#[flow]
pub async fn leaf(seconds: u64) -> u64 {
    nap(seconds).await.unwrap_or(0)
}

/// A task run with a flow run under it.
#[task]
pub async fn calls_a_flow(seconds: u64) -> u64 {
    leaf(seconds).await.unwrap_or(0)
}

/// A child flow: a detached task run, a task run with a sub-task, an inline task run.
#[flow]
pub async fn branch(seconds: u64) -> u64 {
    nap(seconds).submit().detach();
    let sub = waits_on_a_subtask(seconds).submit();
    let inline = nap(seconds).await.unwrap_or(0);
    inline + sub.await.unwrap_or(0)
}

/// The body of the top-level flows of the ordering tests: a detached child flow, a task run calling a flow, an
/// inline child flow. 13 runs under the top-level one.
pub async fn tree(seconds: u64) -> u64 {
    branch(seconds).submit().detach();
    let via_task = calls_a_flow(seconds).submit();
    let inline = branch(seconds).await.unwrap_or(0);
    inline + via_task.await.unwrap_or(0)
}

/// Runs under the top-level flow run in `tree`.
pub const UNDER_TREE: usize = 13;

/// A top-level flow running [`tree`].
#[flow]
pub async fn root(seconds: u64) -> u64 {
    tree(seconds).await
}
