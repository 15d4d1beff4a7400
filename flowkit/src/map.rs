//! `map`: one task run per item, all at once, results in input order.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use uuid::Uuid;

use crate::bus::Held;
use crate::context::with_current;
use crate::error::RunError;
use crate::task::{Outcome, TaskBody, TaskCall, TaskHandle};
use crate::upstream::Upstream;

/// How many runs `map` creates before starting them.
const BATCH: usize = 64;

/// Starts one task run per item, concurrently, and returns a handle that resolves to their
/// results in input order (Prefect's `task.map`).
///
/// Every run starts right away (within the flow's `concurrency_limit`, if any), the calls made
/// and their runs recorded 64 at a time, then started back to back; a failed item does not stop
/// the others. Each run records its position as `map_index`. `items` is read up to 64 items
/// ahead of the runs started: an iterator that waits for the mapped runs' own output (a
/// channel they feed) would wait for runs not started yet — collect such items first.
///
/// ```
/// use flowkit::{flow, task};
///
/// #[task]
/// async fn row_count(table: &'static str) -> usize { table.len() }
///
/// #[flow]
/// async fn count_all() -> Result<Vec<usize>, flowkit::RunError<std::convert::Infallible>> {
///     flowkit::map(["orders", "customers"], row_count).await.into_iter().collect()
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # flowkit::Config::new().console(false).init().ok();
/// assert_eq!(count_all().await.unwrap(), [6, 9]);
/// # }
/// ```
pub fn map<I, F, B>(
    items: I,
    mut task: F,
) -> MapHandle<<B::Output as Outcome>::Ok, <B::Output as Outcome>::Err>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> TaskCall<'static, B>,
    B: TaskBody + 'static,
    B::Output: 'static,
    <B::Output as Outcome>::Ok: Send + 'static,
    <B::Output as Outcome>::Err: std::fmt::Display + Send + 'static,
{
    // The calls of one map are one occurrence of the task in the flow run (for resume), told
    // apart by their map index.
    let mut occurrence = None;
    let mut items = items.into_iter().enumerate();
    let mut handles = Vec::with_capacity(items.size_hint().0);
    let mut calls = Vec::with_capacity(BATCH);
    let mut prepared = Vec::with_capacity(BATCH);
    let mut held = Held::default();
    loop {
        for (index, item) in items.by_ref().take(BATCH) {
            let call = task(item);
            if index == 0 {
                occurrence = call.reserve_occurrence();
            }
            calls.push(
                call.with_map_index(index as u64)
                    .with_occurrence(occurrence),
            );
        }
        if calls.is_empty() {
            break;
        }
        // A batch of runs is created, then started back to back: a worker that takes them
        // stays busy through the batch instead of parking (and being woken, a system call on
        // each side) between two runs.
        // Their `RunCreated` events go to the bus together, before any of them starts.
        with_current(|scope| {
            prepared.extend(
                calls
                    .drain(..)
                    .map(|call| call.prepare_in(scope, &mut held)),
            );
        });
        held.send();
        handles.extend(prepared.drain(..).map(|mut run| {
            run.warn();
            Some(run.start())
        }));
    }
    MapHandle {
        results: Vec::with_capacity(handles.len()),
        handles,
    }
}

/// The runs started by [`map`]; await it for their results in input order.
///
/// Dropping it cancels the runs that have not ended.
#[must_use = "dropping a map handle cancels its runs"]
pub struct MapHandle<T, E> {
    handles: Vec<Option<TaskHandle<T, E>>>,
    results: Vec<Result<T, RunError<E>>>,
}

impl<T, E> MapHandle<T, E> {
    /// How many runs were started.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True if no item was given.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The ids of the runs not yet collected, in input order.
    pub fn ids(&self) -> Vec<Uuid> {
        self.handles.iter().flatten().map(TaskHandle::id).collect()
    }

    /// Every run, as upstreams for `wait_for`.
    pub fn upstream(&self) -> Vec<Upstream> {
        self.handles.iter().flatten().map(Upstream::from).collect()
    }
}

// Never pinned structurally: the handles and results are moved freely.
impl<T, E> Unpin for MapHandle<T, E> {}

impl<T, E> Future for MapHandle<T, E> {
    type Output = Vec<Result<T, RunError<E>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        while this.results.len() < this.handles.len() {
            let next = this.results.len();
            let Some(handle) = this.handles[next].as_mut() else {
                break;
            };
            match Pin::new(handle).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    // Free the run's record as soon as its result is in.
                    this.handles[next] = None;
                    this.results.push(result);
                }
            }
        }
        Poll::Ready(std::mem::take(&mut this.results))
    }
}
