//! The event bus: a non-blocking queue from the runs to the sinks.
//!
//! Emitting an event is a push into a preallocated ring; it never waits, never fails and
//! allocates nothing. A dispatcher thread of the bus's own collects the ring every millisecond
//! while events flow (and sleeps until woken when they stop), and hands each batch, in emission
//! order, to every sink. Because the dispatcher runs on its own thread, events keep flowing
//! while the program's runtime is busy, and a bus outlives the runtime that made it (one per
//! `#[tokio::test]`, say).
//!
//! **When the ring is full.** Sinks are called synchronously and must not block: a sink that
//! does I/O keeps its own buffer (the console writes to a terminal; the HTTP sink spools to
//! disk). So the ring fills only while the dispatcher is starved of CPU. Then events queue, in
//! order, in an overflow list that the dispatcher empties next: no event is dropped and no task
//! waits. [`EventBus::stats`] reports the largest batch taken at once, a measure of how far the
//! dispatcher fell behind.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use std::sync::mpsc;

use futures::FutureExt;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::events::{Event, EventKind};
use crate::ids::Now;
use crate::sink::EventSink;

enum Message {
    Event(Event),
    /// Events sent together, in order (see [`Held`]).
    Batch(Vec<Event>),
    /// Deliver everything before this, flush the sinks (within the deadline, if any), answer
    /// whether that finished in time.
    Flush {
        done: mpsc::SyncSender<bool>,
        deadline: Option<std::time::Instant>,
        /// Until delivered ([`EventSink::flush`]), or only handed off ([`EventSink::hand_off`]).
        deliver: bool,
    },
}

impl Message {
    /// How many events it carries.
    fn events(&self) -> usize {
        match self {
            Message::Event(_) => 1,
            Message::Batch(events) => events.len(),
            Message::Flush { .. } => 0,
        }
    }
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
    /// Set by [`crate::testing::capture`]: the `tracing` lines of runs on this bus become their
    /// log events only, and are never printed.
    captures_logs: bool,
}

struct Inner {
    /// A preallocated ring: sending an event allocates nothing, so nothing is freed across
    /// threads (but a batch from [`Held`], one `Vec` per batch, which the dispatcher frees).
    tx: mpsc::SyncSender<Message>,
    /// Where events go, in order, while the ring is full (the dispatcher starved of CPU).
    overflow: Arc<Overflow>,
    stats: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    overflowed: AtomicU64,
    high_water: AtomicUsize,
}

/// What a bus has carried so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Events handed to the sinks.
    pub delivered: u64,
    /// Events that found the ring full and waited in the overflow.
    pub overflowed: u64,
    /// The largest batch the dispatcher has taken at once (how far it fell behind).
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
        let (tx, rx) = mpsc::sync_channel(RING);
        let overflow = Arc::new(Overflow::default());
        let thread_overflow = overflow.clone();
        let stats = Arc::new(Counters::default());
        let thread_stats = stats.clone();
        let sinks = self.sinks;
        let spawned = std::thread::Builder::new()
            .name("flowkit-events".into())
            .spawn(move || dispatch(rx, thread_overflow, sinks, thread_stats));
        match spawned {
            Ok(_) => EventBus {
                inner: Some(Arc::new(Inner {
                    tx,
                    overflow,
                    stats,
                })),
                captures_logs: false,
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
        EventBus {
            inner: None,
            captures_logs: false,
        }
    }

    /// This bus, with the `tracing` lines of its runs kept as log events only (never printed).
    pub(crate) fn capturing_logs(mut self) -> Self {
        self.captures_logs = true;
        self
    }

    /// True if the `tracing` lines of runs on this bus must not be printed.
    pub(crate) fn captures_logs(&self) -> bool {
        self.captures_logs
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
            self.emit_now(Now::read(), flow_run_id, task_run_id, kind);
        }
    }

    /// Emits an event that happens `now` (its id made from the same reading).
    #[inline]
    pub(crate) fn emit_now(
        &self,
        now: Now,
        flow_run_id: Option<Uuid>,
        task_run_id: Option<Uuid>,
        kind: impl FnOnce() -> EventKind,
    ) {
        if let Some(inner) = &self.inner {
            inner.send(Event {
                id: now.id(),
                timestamp: now.at,
                flow_run_id,
                task_run_id,
                kind: kind(),
            });
        }
    }

    /// [`emit_now`](Self::emit_now), into `held` when given: the event is sent with the others
    /// held there, in order, when `held` is sent (or dropped).
    #[inline]
    pub(crate) fn emit_now_into(
        &self,
        held: Option<&mut Held>,
        now: Now,
        flow_run_id: Option<Uuid>,
        task_run_id: Option<Uuid>,
        kind: impl FnOnce() -> EventKind,
    ) {
        let Some(held) = held else {
            return self.emit_now(now, flow_run_id, task_run_id, kind);
        };
        if let Some(inner) = &self.inner {
            held.hold(
                inner,
                Event {
                    id: now.id(),
                    timestamp: now.at,
                    flow_run_id,
                    task_run_id,
                    kind: kind(),
                },
            );
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
    ///
    /// The wait is in real time, on a blocking thread of the runtime: under tokio's paused clock
    /// (`#[tokio::test(start_paused = true)]`) a runtime that is waiting on a blocking thread
    /// does not advance virtual time, so a flush takes no virtual time and other timers do not
    /// fire early. With no sink, it returns at once.
    pub async fn flush(&self) {
        self.flush_until(None, true).await;
    }

    /// [`flush`](Self::flush) with a bounded wait for the sinks; true if it finished in time.
    ///
    /// The limit is in real time, so a paused tokio clock (in tests) neither cuts it short nor
    /// moves on while it runs.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let bus = flowkit::EventBus::builder().sink(flowkit::MemorySink::new()).build();
    /// assert!(bus.flush_timeout(std::time::Duration::from_secs(5)).await);
    /// # }
    /// ```
    pub async fn flush_timeout(&self, limit: Duration) -> bool {
        self.flush_until(Some(std::time::Instant::now() + limit), true)
            .await
    }

    /// Waits (at most `limit`) until every event emitted before this call has reached every
    /// sink and each has made it safe without waiting for its destination
    /// ([`EventSink::hand_off`]: the HTTP sink writes it to its spool and goes on delivering);
    /// true if that finished in time. What a top-level flow run waits for when it ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let bus = flowkit::EventBus::builder().sink(flowkit::MemorySink::new()).build();
    /// assert!(bus.hand_off_timeout(std::time::Duration::from_secs(5)).await);
    /// # }
    /// ```
    pub async fn hand_off_timeout(&self, limit: Duration) -> bool {
        self.flush_until(Some(std::time::Instant::now() + limit), false)
            .await
    }

    /// [`flush_timeout`](Self::flush_timeout) for code outside async (a process's exit):
    /// blocks the calling thread.
    pub(crate) fn flush_blocking(&self, limit: Duration) -> bool {
        let Some(inner) = &self.inner else {
            return true;
        };
        let (done, answer) = mpsc::sync_channel(1);
        let deadline = std::time::Instant::now() + limit;
        let flush = Message::Flush {
            done,
            deadline: Some(deadline),
            deliver: true,
        };
        if inner.push(flush).is_err() {
            return false;
        }
        answer.recv_timeout(limit).unwrap_or(false)
    }

    async fn flush_until(&self, deadline: Option<std::time::Instant>, deliver: bool) -> bool {
        let Some(inner) = &self.inner else {
            return true;
        };
        let (done, answer) = mpsc::sync_channel(1);
        let flush = Message::Flush {
            done,
            deadline,
            deliver,
        };
        if inner.push(flush).is_err() {
            return false;
        }
        // The limit is kept here too, in case the dispatcher itself is stuck (a sink that
        // blocks).
        let wait = move || match deadline {
            Some(deadline) => answer
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or(false),
            None => answer.recv().unwrap_or(false),
        };
        // Waiting on a blocking thread keeps a paused clock still: tokio does not auto-advance
        // time while a `spawn_blocking` task of a current-thread runtime runs, whereas awaiting
        // an answer from another thread would leave the runtime idle, and the clock would jump
        // to the next timer.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime.spawn_blocking(wait).await.unwrap_or(false),
            Err(_) => wait_on_a_thread(wait).await,
        }
    }

    /// Counters of what the bus has carried.
    pub fn stats(&self) -> BusStats {
        match &self.inner {
            Some(inner) => BusStats {
                delivered: inner.stats.delivered.load(Ordering::Relaxed),
                overflowed: inner.stats.overflowed.load(Ordering::Relaxed),
                high_water: inner.stats.high_water.load(Ordering::Relaxed),
            },
            None => BusStats::default(),
        }
    }
}

/// Outside any tokio runtime: waits on a thread of its own, without blocking the executor.
async fn wait_on_a_thread(wait: impl FnOnce() -> bool + Send + 'static) -> bool {
    let (done, answer) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("flowkit-flush".into())
        .spawn(move || {
            let _ = done.send(wait());
        });
    match spawned {
        Ok(_) => answer.await.unwrap_or(false),
        Err(error) => {
            tracing::debug!(%error, "flowkit: could not start a thread to wait for a flush");
            false
        }
    }
}

/// Events held back to go to their bus as one message, in order: `map` holds the `RunCreated`
/// events of a batch of runs and sends them before it starts the runs (one push into the ring
/// instead of one per run). Held events are sent when [`send`](Self::send) is called or when
/// this is dropped; an event for another bus first sends those held for the previous one.
#[derive(Default)]
pub(crate) struct Held {
    bus: Option<Arc<Inner>>,
    events: Vec<Event>,
}

impl Held {
    fn hold(&mut self, inner: &Arc<Inner>, event: Event) {
        if self
            .bus
            .as_ref()
            .is_some_and(|bus| !Arc::ptr_eq(bus, inner))
        {
            self.send();
        }
        if self.bus.is_none() {
            self.bus = Some(inner.clone());
        }
        self.events.push(event);
    }

    /// Sends the held events to their bus.
    pub(crate) fn send(&mut self) {
        if let Some(inner) = self.bus.take()
            && !self.events.is_empty()
        {
            let next = Vec::with_capacity(self.events.len());
            let _ = inner.push(Message::Batch(std::mem::replace(&mut self.events, next)));
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.send();
    }
}

/// Events that found the ring full, kept in order until the dispatcher catches up.
#[derive(Default)]
struct Overflow {
    /// True while `queue` may hold events: new events must then queue behind them.
    active: AtomicBool,
    queue: Mutex<VecDeque<Message>>,
}

impl Overflow {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    #[inline]
    fn send(&self, event: Event) {
        // Fails only once the dispatcher thread has ended, which happens only if a sink
        // panicked; that panic was already reported.
        let _ = self.push(Message::Event(event));
    }

    /// Queues a message without ever waiting: into the ring, or behind the overflow.
    #[inline]
    fn push(&self, message: Message) -> Result<(), ()> {
        let message = if self.overflow.active.load(Ordering::Acquire) {
            message
        } else {
            match self.tx.try_send(message) {
                Ok(()) => return Ok(()),
                Err(mpsc::TrySendError::Full(message)) => message,
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(()),
            }
        };
        let events = message.events() as u64;
        let mut queue = self.overflow.lock();
        self.overflow.active.store(true, Ordering::Release);
        queue.push_back(message);
        self.stats.overflowed.fetch_add(events, Ordering::Relaxed);
        Ok(())
    }
}

/// Events the ring holds before the overflow takes over.
const RING: usize = 8_192;

const BATCH: usize = 4096;

fn dispatch(
    rx: mpsc::Receiver<Message>,
    overflow: Arc<Overflow>,
    mut sinks: Vec<Box<dyn EventSink>>,
    stats: Arc<Counters>,
) {
    // A small runtime of the dispatcher's own, for the sinks' async `flush`.
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
    let mut events = Vec::with_capacity(BATCH);
    let mut idle_ticks = 0u32;
    let mut open = true;
    while open {
        // Messages received this round (a batch is one), and the events they carried.
        let mut received = 0usize;
        let mut taken = 0usize;
        // While events flow, collect them on a short tick instead of being woken for each one:
        // a wake-up costs the emitting thread a system call. After a quiet spell, block until
        // woken, so an idle process does not tick.
        if idle_ticks >= IDLE_TICKS {
            // Idle: sleep until woken by a new event, but look at the overflow now and then
            // (a producer that found the ring full may still be about to queue there).
            match rx.recv_timeout(IDLE_POLL) {
                Ok(message) => {
                    received += 1;
                    taken += message.events();
                    take(message, &mut events, &mut sinks, &stats, &runtime);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
        }
        let mut ring_empty = false;
        while received < BATCH {
            match rx.try_recv() {
                Ok(message) => {
                    received += 1;
                    taken += message.events();
                    take(message, &mut events, &mut sinks, &stats, &runtime);
                }
                Err(mpsc::TryRecvError::Empty) => {
                    ring_empty = true;
                    break;
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    ring_empty = true;
                    break;
                }
            }
        }
        if ring_empty && overflow.active.load(Ordering::Acquire) {
            // Everything in the ring was sent before the overflow began (or by producers that
            // raced with it, whose own order the ring keeps); the overflow comes next.
            let spilled = {
                let mut queue = overflow.lock();
                overflow.active.store(false, Ordering::Release);
                std::mem::take(&mut *queue)
            };
            received += spilled.len();
            for message in spilled {
                taken += message.events();
                take(message, &mut events, &mut sinks, &stats, &runtime);
            }
        }
        deliver(&mut sinks, &mut events, &stats);
        stats.high_water.fetch_max(taken, Ordering::Relaxed);
        if received == 0 {
            idle_ticks = idle_ticks.saturating_add(1);
        } else {
            idle_ticks = 0;
        }
        if open && ring_empty {
            std::thread::sleep(TICK);
        }
    }
    let spilled = std::mem::take(&mut *overflow.lock());
    for message in spilled {
        take(message, &mut events, &mut sinks, &stats, &runtime);
    }
    deliver(&mut sinks, &mut events, &stats);
    runtime.block_on(finish(&mut sinks));
}

/// Files one message: an event joins the batch; a flush delivers the batch, flushes the sinks
/// and answers.
fn take(
    message: Message,
    events: &mut Vec<Event>,
    sinks: &mut Vec<Box<dyn EventSink>>,
    stats: &Counters,
    runtime: &tokio::runtime::Runtime,
) {
    match message {
        Message::Event(event) => events.push(event),
        Message::Batch(batch) => events.extend(batch),
        Message::Flush {
            done,
            deadline,
            deliver: delivered,
        } => {
            deliver(sinks, events, stats);
            let in_time = runtime.block_on(async {
                let mut in_time = true;
                for sink in sinks.iter_mut() {
                    let wait = if delivered {
                        sink.flush()
                    } else {
                        sink.hand_off()
                    };
                    match deadline {
                        Some(deadline) => {
                            let left =
                                deadline.saturating_duration_since(std::time::Instant::now());
                            in_time &= tokio::time::timeout(left, wait).await.is_ok();
                        }
                        None => wait.await,
                    }
                }
                in_time
            });
            let _ = done.send(in_time);
        }
    }
}

/// How often the dispatcher collects events while they flow.
const TICK: Duration = Duration::from_millis(1);
/// Empty ticks after which the dispatcher waits to be woken instead.
const IDLE_TICKS: u32 = 50;
/// How often an idle dispatcher looks at the overflow anyway.
const IDLE_POLL: Duration = Duration::from_millis(100);

async fn finish(sinks: &mut [Box<dyn EventSink>]) {
    for sink in sinks.iter_mut() {
        let _ = AssertUnwindSafe(sink.flush()).catch_unwind().await;
    }
}

fn deliver(sinks: &mut Vec<Box<dyn EventSink>>, events: &mut Vec<Event>, stats: &Counters) {
    if events.is_empty() {
        return;
    }
    let count = events.len();
    let last = sinks.len().saturating_sub(1);
    let mut index = 0;
    // A sink that panics is dropped (and said so); the others go on. The last one may keep the
    // batch itself (a memory sink does): nothing is copied, and the events are not freed here.
    sinks.retain_mut(|sink| {
        let owned = index == last;
        index += 1;
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if owned {
                sink.handle_owned(events)
            } else {
                sink.handle(events)
            }
        }));
        if handled.is_err() {
            tracing::error!("flowkit: an event sink panicked and was removed");
        }
        handled.is_ok()
    });
    stats.delivered.fetch_add(count as u64, Ordering::Relaxed);
    events.clear();
    if events.capacity() == 0 {
        events.reserve(BATCH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::State;
    use crate::events::StateChanged;

    /// Records the attempt numbers it sees; stalls on its first batch until released, so
    /// the ring fills up behind it.
    struct Stalled {
        seen: Arc<Mutex<Vec<u32>>>,
        release: Arc<AtomicBool>,
    }

    impl EventSink for Stalled {
        fn handle(&mut self, events: &[Event]) {
            while !self.release.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut seen = self.seen.lock().unwrap();
            for event in events {
                if let EventKind::StateChanged(change) = &event.kind {
                    seen.push(change.attempt);
                }
            }
        }
    }

    #[tokio::test]
    async fn held_events_arrive_together_in_order_before_what_follows() {
        let memory = crate::MemorySink::new();
        let bus = EventBus::builder().sink(memory.clone()).build();
        let other_memory = crate::MemorySink::new();
        let other = EventBus::builder().sink(other_memory.clone()).build();
        let change = |attempt| {
            move || {
                EventKind::StateChanged(StateChanged {
                    state: State::Running,
                    attempt,
                    message: None,
                    next_attempt_at: None,
                    result: None,
                })
            }
        };
        let mut held = Held::default();
        bus.emit_now_into(Some(&mut held), Now::read(), None, None, change(1));
        bus.emit_now_into(Some(&mut held), Now::read(), None, None, change(2));
        // An event for another bus sends what was held for the first.
        other.emit_now_into(Some(&mut held), Now::read(), None, None, change(10));
        bus.emit_now_into(Some(&mut held), Now::read(), None, None, change(3));
        held.send();
        bus.emit_now(Now::read(), None, None, change(4));
        // A disabled bus holds nothing, and dropping `held` sends the rest.
        EventBus::disabled().emit_now_into(Some(&mut held), Now::read(), None, None, change(99));
        other.emit_now_into(Some(&mut held), Now::read(), None, None, change(11));
        drop(held);
        bus.flush().await;
        other.flush().await;
        let attempts = |memory: &crate::MemorySink| {
            memory
                .events()
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::StateChanged(change) => Some(change.attempt),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(attempts(&memory), [1, 2, 3, 4]);
        assert_eq!(attempts(&other_memory), [10, 11]);
        assert_eq!(bus.stats().delivered, 4);
    }

    #[tokio::test]
    async fn a_full_ring_overflows_in_order_and_loses_nothing() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(AtomicBool::new(false));
        let bus = EventBus::builder()
            .sink(Stalled {
                seen: seen.clone(),
                release: release.clone(),
            })
            .build();
        let total = (RING * 4) as u32;
        for attempt in 0..total {
            emit_numbered(&bus, attempt);
        }
        let stats = bus.stats();
        assert!(
            stats.overflowed >= u64::from(total) - (RING + BATCH) as u64,
            "{stats:?}"
        );
        release.store(true, Ordering::Release);
        bus.flush().await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), total as usize, "every event arrives");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in emission order");
        assert_eq!(bus.stats().delivered, u64::from(total));
    }

    /// Emits an event carrying `number` (as its attempt), to check order on arrival.
    fn emit_numbered(bus: &EventBus, number: u32) {
        bus.emit_with(None, None, || {
            EventKind::StateChanged(StateChanged {
                state: State::Running,
                attempt: number,
                message: None,
                next_attempt_at: None,
                result: None,
            })
        });
    }

    /// Hands off at once; never finishes delivering (a server that hangs).
    struct Hangs;

    impl EventSink for Hangs {
        fn handle(&mut self, _: &[Event]) {}
        fn flush(&mut self) -> futures::future::BoxFuture<'_, ()> {
            Box::pin(std::future::pending())
        }
        fn hand_off(&mut self) -> futures::future::BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn a_hand_off_does_not_wait_for_delivery() {
        let bus = EventBus::builder().sink(Hangs).build();
        emit_numbered(&bus, 1);
        let started = std::time::Instant::now();
        assert!(bus.hand_off_timeout(Duration::from_secs(5)).await);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!bus.flush_timeout(Duration::from_millis(50)).await);
        assert_eq!(bus.stats().delivered, 1);
    }

    #[tokio::test]
    async fn the_last_sink_keeps_the_batch_and_the_others_see_it_too() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let memory = crate::MemorySink::new();
        let bus = EventBus::builder()
            .sink(Stalled {
                seen: seen.clone(),
                release: Arc::new(AtomicBool::new(true)),
            })
            .sink(memory.clone())
            .build();
        for attempt in 0..100 {
            emit_numbered(&bus, attempt);
        }
        bus.flush().await;
        assert_eq!(seen.lock().unwrap().len(), 100);
        let kept: Vec<u32> = memory
            .events()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::StateChanged(change) => Some(change.attempt),
                _ => None,
            })
            .collect();
        assert_eq!(kept, (0..100).collect::<Vec<_>>());
    }

    struct Explodes;

    impl EventSink for Explodes {
        fn handle(&mut self, _: &[Event]) {
            panic!("sink exploded");
        }
    }

    #[tokio::test]
    async fn a_panicking_sink_is_removed_and_the_others_go_on() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let bus = EventBus::builder()
            .sink(Explodes)
            .sink(Stalled {
                seen: seen.clone(),
                release: Arc::new(AtomicBool::new(true)),
            })
            .build();
        for attempt in 0..10 {
            emit_numbered(&bus, attempt);
            bus.flush().await;
        }
        assert_eq!(seen.lock().unwrap().len(), 10);
    }
}
