//! The event bus: a non-blocking queue from the runs to the sinks.
//!
//! Emitting an event is a push onto a lock-free queue; it never waits and never fails. A
//! dispatcher thread of the bus's own drains the queue in batches and hands each batch, in
//! emission order, to every sink. Because the dispatcher runs on its own thread with its own
//! small runtime, events keep flowing while the program's runtime is busy, and a bus outlives
//! the runtime that made it (one per `#[tokio::test]`, say).
//!
//! **Slow sinks.** Sinks are called synchronously and must not block: a sink that does I/O keeps
//! its own buffer (the console writes to a terminal; the HTTP sink spools to disk). The queue is
//! therefore only long while the dispatcher is starved of CPU; it is unbounded so that no event
//! is ever dropped and no task ever waits, and [`EventBus::stats`] reports its high-water mark.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::events::{Event, EventKind};
use crate::ids::new_id;
use crate::sink::EventSink;

enum Message {
    Event(Event),
    /// Deliver everything before this, flush the sinks (within the deadline, if any), answer
    /// whether that finished in time.
    Flush {
        done: oneshot::Sender<bool>,
        deadline: Option<std::time::Instant>,
    },
}

/// Where events go. Cheap to clone; a disabled bus (no sink) costs one branch per event.
///
/// ```
/// use flowkit::{EventBus, MemorySink, task};
///
/// #[task]
/// async fn double(x: u32) -> u32 { x * 2 }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let memory = MemorySink::new();
/// let bus = EventBus::builder().sink(memory.clone()).build();
/// assert_eq!(double(21).on(&bus).await.unwrap(), 42);
/// bus.flush().await;
/// assert_eq!(memory.events().len(), 3); // created, running, completed
/// # }
/// ```
#[derive(Clone, Default)]
pub struct EventBus {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: mpsc::UnboundedSender<Message>,
    stats: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    high_water: AtomicUsize,
}

/// What a bus has carried so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Events handed to the sinks.
    pub delivered: u64,
    /// The longest the queue has been.
    pub high_water: usize,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// Builds an [`EventBus`] from its sinks.
#[derive(Default)]
pub struct EventBusBuilder {
    sinks: Vec<Box<dyn EventSink>>,
}

impl EventBusBuilder {
    /// Adds a sink.
    pub fn sink(mut self, sink: impl EventSink) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Adds a boxed sink.
    pub fn boxed_sink(mut self, sink: Box<dyn EventSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Starts the dispatcher thread. With no sink, the bus is disabled and starts nothing.
    pub fn build(self) -> EventBus {
        if self.sinks.is_empty() {
            return EventBus::disabled();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Counters::default());
        let thread_stats = stats.clone();
        let sinks = self.sinks;
        let spawned = std::thread::Builder::new()
            .name("flowkit-events".into())
            .spawn(move || dispatch(rx, sinks, thread_stats));
        match spawned {
            Ok(_) => EventBus {
                inner: Some(Arc::new(Inner { tx, stats })),
            },
            Err(error) => {
                tracing::error!(%error, "flowkit: could not start the event dispatcher; events are off");
                EventBus::disabled()
            }
        }
    }
}

impl EventBus {
    /// A builder to add sinks to.
    pub fn builder() -> EventBusBuilder {
        EventBusBuilder::default()
    }

    /// A bus that carries nothing.
    pub fn disabled() -> Self {
        EventBus { inner: None }
    }

    /// True if events emitted here reach a sink.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Emits an event built from its parts; the id and timestamp are made here.
    #[inline]
    pub(crate) fn emit_with(
        &self,
        flow_run_id: Option<Uuid>,
        task_run_id: Option<Uuid>,
        kind: impl FnOnce() -> EventKind,
    ) {
        if self.inner.is_some() {
            self.emit_at(Utc::now(), flow_run_id, task_run_id, kind);
        }
    }

    /// Emits an event that happened at `timestamp`.
    #[inline]
    pub(crate) fn emit_at(
        &self,
        timestamp: DateTime<Utc>,
        flow_run_id: Option<Uuid>,
        task_run_id: Option<Uuid>,
        kind: impl FnOnce() -> EventKind,
    ) {
        if let Some(inner) = &self.inner {
            inner.send(Event {
                id: new_id(timestamp),
                timestamp,
                flow_run_id,
                task_run_id,
                kind: kind(),
            });
        }
    }

    /// Emits a ready-made event.
    pub fn emit(&self, event: Event) {
        if let Some(inner) = &self.inner {
            inner.send(event);
        }
    }

    /// Waits until every event emitted before this call has been handed to every sink and each
    /// sink has flushed.
    pub async fn flush(&self) {
        self.flush_until(None).await;
    }

    /// [`flush`](Self::flush) with a bounded wait for the sinks; true if it finished in time.
    ///
    /// The limit is kept by the dispatcher thread in real time, so a paused tokio clock (in
    /// tests) does not cut it short.
    pub async fn flush_timeout(&self, limit: Duration) -> bool {
        self.flush_until(Some(std::time::Instant::now() + limit))
            .await
    }

    async fn flush_until(&self, deadline: Option<std::time::Instant>) -> bool {
        let Some(inner) = &self.inner else {
            return true;
        };
        let (done, wait) = oneshot::channel();
        if inner.tx.send(Message::Flush { done, deadline }).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }

    /// Counters of what the bus has carried.
    pub fn stats(&self) -> BusStats {
        match &self.inner {
            Some(inner) => BusStats {
                delivered: inner.stats.delivered.load(Ordering::Relaxed),
                high_water: inner.stats.high_water.load(Ordering::Relaxed),
            },
            None => BusStats::default(),
        }
    }
}

impl Inner {
    #[inline]
    fn send(&self, event: Event) {
        // Fails only once the dispatcher thread has ended, which happens only if a sink
        // panicked; that panic was already reported.
        let _ = self.tx.send(Message::Event(event));
    }
}

const BATCH: usize = 4096;

fn dispatch(
    mut rx: mpsc::UnboundedReceiver<Message>,
    mut sinks: Vec<Box<dyn EventSink>>,
    stats: Arc<Counters>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "flowkit: could not start the event dispatcher runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let mut messages = Vec::with_capacity(BATCH);
        let mut events = Vec::with_capacity(BATCH);
        let mut idle_ticks = 0u32;
        loop {
            // While events flow, collect them on a short tick instead of being woken for each
            // one: a wake-up costs the emitting task a system call. After a quiet spell, wait
            // to be woken, so an idle process does not tick.
            let received = if idle_ticks >= IDLE_TICKS {
                let n = rx.recv_many(&mut messages, BATCH).await;
                if n == 0 {
                    break;
                }
                n
            } else {
                loop {
                    match rx.try_recv() {
                        Ok(message) => {
                            messages.push(message);
                            if messages.len() == BATCH {
                                break;
                            }
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            if messages.is_empty() {
                                return finish(&mut sinks).await;
                            }
                            break;
                        }
                    }
                }
                messages.len()
            };
            if received == 0 {
                idle_ticks += 1;
                tokio::time::sleep(TICK).await;
                continue;
            }
            idle_ticks = 0;
            let backlog = rx.len() + messages.len();
            stats.high_water.fetch_max(backlog, Ordering::Relaxed);
            for message in messages.drain(..) {
                match message {
                    Message::Event(event) => events.push(event),
                    Message::Flush { done, deadline } => {
                        deliver(&mut sinks, &mut events, &stats);
                        let mut in_time = true;
                        for sink in sinks.iter_mut() {
                            match deadline {
                                Some(deadline) => {
                                    let left = deadline
                                        .saturating_duration_since(std::time::Instant::now());
                                    in_time &=
                                        tokio::time::timeout(left, sink.flush()).await.is_ok();
                                }
                                None => sink.flush().await,
                            }
                        }
                        let _ = done.send(in_time);
                    }
                }
            }
            deliver(&mut sinks, &mut events, &stats);
            if received < BATCH {
                tokio::time::sleep(TICK).await;
            }
        }
        finish(&mut sinks).await;
    });
}

/// How often the dispatcher collects events while they flow.
const TICK: Duration = Duration::from_millis(1);
/// Empty ticks after which the dispatcher waits to be woken instead.
const IDLE_TICKS: u32 = 50;

async fn finish(sinks: &mut [Box<dyn EventSink>]) {
    for sink in sinks.iter_mut() {
        sink.flush().await;
    }
}

fn deliver(sinks: &mut [Box<dyn EventSink>], events: &mut Vec<Event>, stats: &Counters) {
    if events.is_empty() {
        return;
    }
    for sink in sinks.iter_mut() {
        sink.handle(events);
    }
    stats
        .delivered
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    events.clear();
}
