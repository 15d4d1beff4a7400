//! The worker: a serving program with a server runs the runs the server hands it.
//!
//! One loop long-polls `POST /api/workers/{name}/poll` ([`PollRequest`]): it says how many more
//! runs it takes (`max_runs` minus those in hand) and which it holds (its heartbeat for them),
//! starts each run it is handed with its deployment's starter, and delivers the answer's
//! `cancel` and `lost` ids to the runs through the runtime's cancellation. A poll that fails
//! (server down, 5xx) moves to the next server URL and backs off (100 ms doubling to 5 s, with
//! jitter); runs in hand go on meanwhile.
//!
//! A poll in flight is not dropped while it may hand out runs: the runs the server put in its
//! answer would wait for the server's heartbeat timeout (then, never started, they are made
//! again for another worker). One that asked for nothing (capacity 0) is dropped and sent again
//! as soon as a slot frees, so a full worker takes new work the moment it can. The one exception
//! is stopping: the worker does not wait out a long poll (up to 10 s) to stop; a run the server
//! happened to hand out in that instant starts elsewhere after the heartbeat timeout.
//!
//! Stopping (SIGTERM, Ctrl-C): polls say `stopping` with capacity 0 and go on carrying
//! heartbeats and cancels; the runs in hand have the grace period to finish, then are cancelled
//! (recorded `Cancelled`) and handed back to the server (`POST /api/workers/{name}/stop`),
//! which schedules them again. A second signal cancels them at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::BackoffBuilder;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use flowkit_api::work::{ClaimedRun, PollRequest, PollResponse, StopRequest};

use super::client::{ApiClient, ApiError};
use super::deployment::{ScheduledRun, Starter};

/// How often to poll at least, until the server says otherwise.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// An empty answer that came faster than this (a server that does not long-poll) delays the
/// next poll until this long after the last one started, so the loop never spins.
const MIN_EMPTY_POLL: Duration = Duration::from_millis(250);
/// How long cancelled runs may take to record their end before the worker stops anyway.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// How long the worker tries to tell the server it stopped.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// The server's side of the worker's conversation (HTTP, or a fake in tests).
pub(crate) trait WorkApi: Send + Sync + 'static {
    /// Polls; the answer, or why there is none.
    fn poll(
        &self,
        request: PollRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<PollResponse, ApiError>>;
    /// Says the worker stopped, handing back the runs it cancelled.
    fn stop(&self, request: StopRequest) -> BoxFuture<'static, Result<(), ApiError>>;
    /// How many servers it may try in turn.
    fn servers(&self) -> usize {
        1
    }
}

/// The worker's endpoints on the server at [`ApiClient`]'s URLs.
pub(crate) struct HttpWork {
    client: ApiClient,
    /// `/api/workers/{name}`, the name escaped.
    path: String,
}

impl HttpWork {
    pub(crate) fn new(client: ApiClient, worker: &str) -> HttpWork {
        HttpWork {
            client,
            path: format!("/api/workers/{}", escape(worker)),
        }
    }
}

/// `name` as one URL path segment.
fn escape(name: &str) -> String {
    let mut escaped = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

impl WorkApi for HttpWork {
    fn poll(
        &self,
        request: PollRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<PollResponse, ApiError>> {
        let (client, path) = (self.client.clone(), format!("{}/poll", self.path));
        Box::pin(async move {
            client
                .send(reqwest::Method::POST, &path, &request, timeout)
                .await
        })
    }

    fn stop(&self, request: StopRequest) -> BoxFuture<'static, Result<(), ApiError>> {
        let (client, path) = (self.client.clone(), format!("{}/stop", self.path));
        Box::pin(async move {
            client
                .send::<_, serde_json::Value>(
                    reqwest::Method::POST,
                    &path,
                    &request,
                    Duration::from_secs(5),
                )
                .await
                .map(drop)
        })
    }

    fn servers(&self) -> usize {
        self.client.url_count()
    }
}

/// How a worker works.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) queues: Vec<String>,
    pub(crate) max_runs: usize,
    pub(crate) grace: Duration,
}

/// The runs the workers of this process hold: the HTTP sink leaves them out of its heartbeats
/// (the worker's polls are theirs).
static HELD: Mutex<Option<HashSet<Uuid>>> = Mutex::new(None);

/// Whether a worker of this process holds the flow run `id` (its polls are its heartbeats).
pub(crate) fn is_held(id: Uuid) -> bool {
    HELD.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .is_some_and(|held| held.contains(&id))
}

fn set_held(id: Uuid, held: bool) {
    let mut all = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    let all = all.get_or_insert_with(HashSet::new);
    if held {
        all.insert(id);
    } else {
        all.remove(&id);
    }
}

/// A run in hand.
struct Held {
    /// Asks the run to stop (once).
    cancel: Option<oneshot::Sender<()>>,
    /// The server no longer counts it as this worker's: not reported, not handed back.
    lost: bool,
}

impl Held {
    fn cancel(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            let _ = cancel.send(());
        }
    }
}

/// What the worker did, for its caller (and tests).
#[derive(Debug, Default)]
pub(crate) struct Stopped {
    /// The runs it cancelled at the end of the grace period and handed back.
    pub(crate) handed_back: Vec<Uuid>,
    /// Every run it started, in order.
    pub(crate) started: Vec<Uuid>,
}

/// Retry delays while polls fail: 100 ms doubling, with jitter (up to twice the delay), to at
/// most 5 s.
fn backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(2500))
        .with_jitter()
        .without_max_times()
        .build()
}

/// A poll in flight: what it asked for, and its answer to come.
struct InFlight {
    capacity: u32,
    stopping: bool,
    started: Instant,
    answer: BoxFuture<'static, Result<PollResponse, ApiError>>,
}

/// Works until stopped: each message on `signals` is one SIGTERM or Ctrl-C.
pub(crate) async fn work(
    api: Arc<dyn WorkApi>,
    starters: HashMap<String, Starter>,
    settings: Settings,
    mut signals: mpsc::UnboundedReceiver<()>,
) -> Stopped {
    let deployments: Vec<String> = {
        let mut names: Vec<String> = starters.keys().cloned().collect();
        names.sort();
        names
    };
    let max_runs = settings.max_runs.max(1);
    let mut held: HashMap<Uuid, Held> = HashMap::new();
    let mut runs: JoinSet<Uuid> = JoinSet::new();
    let mut in_flight: Option<InFlight> = None;
    let mut retry_at: Option<Instant> = None;
    let mut delays = backoff();
    let mut failures: usize = 0;
    let mut heartbeat = DEFAULT_HEARTBEAT;
    // When stopping: the end of the grace period.
    let mut stopping: Option<Instant> = None;
    // When the grace period is over and the runs left were cancelled: how long they have to end.
    let mut cancelled_at: Option<Instant> = None;
    let mut signals_open = true;
    let mut stopped = Stopped::default();
    tracing::info!(worker = %settings.name, deployments = ?deployments, queues = ?settings.queues,
        max_runs, "flowkit: worker started");

    let cancel_all = |held: &mut HashMap<Uuid, Held>, stopped: &mut Stopped| {
        for (id, run) in held.iter_mut() {
            if run.cancel.is_some() && !run.lost {
                stopped.handed_back.push(*id);
            }
            run.cancel();
        }
    };

    loop {
        let capacity = if stopping.is_some() {
            0
        } else {
            u32::try_from(max_runs.saturating_sub(held.len())).unwrap_or(u32::MAX)
        };
        // A poll that asked for nothing holds no run: replace it when it would ask otherwise.
        // Stopping, replace any: see the module's notes.
        if in_flight
            .as_ref()
            .is_some_and(|p| (p.capacity == 0 && capacity > 0) || p.stopping != stopping.is_some())
        {
            in_flight = None;
            retry_at = None;
        }
        if stopping.is_some() && held.is_empty() {
            break;
        }
        if cancelled_at.is_some_and(|at| at.elapsed() >= CANCEL_WAIT) {
            tracing::warn!(worker = %settings.name, runs = held.len(),
                "flowkit: cancelled runs did not end in time; stopping them now");
            break;
        }
        if in_flight.is_none() && retry_at.is_none_or(|at| Instant::now() >= at) {
            retry_at = None;
            let request = PollRequest {
                host: settings.host.clone(),
                deployments: deployments.clone(),
                queues: settings.queues.clone(),
                capacity,
                running: held
                    .iter()
                    .filter(|(_, run)| !run.lost)
                    .map(|(id, _)| *id)
                    .collect(),
                stopping: stopping.is_some(),
            };
            in_flight = Some(InFlight {
                capacity,
                stopping: stopping.is_some(),
                started: Instant::now(),
                answer: api.poll(request, heartbeat * 2 + Duration::from_secs(5)),
            });
        }
        let grace_end = stopping.filter(|_| cancelled_at.is_none());
        tokio::select! {
            answer = async { (&mut in_flight.as_mut().expect("guarded").answer).await },
                if in_flight.is_some() =>
            {
                let Some(poll) = in_flight.take() else { continue };
                match answer {
                    Ok(answer) => {
                        if failures > 0 {
                            tracing::info!(worker = %settings.name, "flowkit: the server answers again");
                        }
                        failures = 0;
                        delays = backoff();
                        if answer.heartbeat_ms > 0 {
                            heartbeat = Duration::from_millis(answer.heartbeat_ms)
                                .clamp(Duration::from_millis(100), Duration::from_secs(300));
                        }
                        let empty = answer.runs.is_empty()
                            && answer.cancel.is_empty()
                            && answer.lost.is_empty();
                        for id in &answer.lost {
                            if let Some(run) = held.get_mut(id) {
                                // A run that ended here (its end reached the server before
                                // this poll) is lost only in name.
                                if crate::cancel::is_running(*id) {
                                    tracing::warn!(worker = %settings.name, run = %id,
                                        "flowkit: the server no longer counts this run as ours; stopping it");
                                } else {
                                    tracing::debug!(worker = %settings.name, run = %id,
                                        "flowkit: the server has the run's end already");
                                }
                                run.lost = true;
                                run.cancel();
                            }
                        }
                        for id in &answer.cancel {
                            if let Some(run) = held.get_mut(id) {
                                tracing::info!(worker = %settings.name, run = %id, "flowkit: cancel from the server");
                                run.cancel();
                            }
                        }
                        for claimed in answer.runs {
                            start(&starters, claimed, &mut held, &mut runs, &mut stopped);
                        }
                        if empty && poll.started.elapsed() < MIN_EMPTY_POLL {
                            retry_at = Some(poll.started + MIN_EMPTY_POLL);
                        }
                    }
                    Err(error) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(worker = %settings.name, %error,
                                "flowkit: cannot poll the server; retrying (runs in hand go on)");
                        } else {
                            tracing::debug!(worker = %settings.name, %error, "flowkit: poll failed");
                        }
                        // Each server in the list once at once, then wait.
                        let unavailable = matches!(error, ApiError::Unavailable { .. });
                        if !unavailable || failures.is_multiple_of(api.servers().max(1)) {
                            retry_at = Some(Instant::now() + delays.next().unwrap_or(Duration::from_secs(5)));
                        }
                    }
                }
            }
            Some(joined) = runs.join_next(), if !runs.is_empty() => {
                if let Ok(id) = joined {
                    held.remove(&id);
                    set_held(id, false);
                }
            }
            signal = signals.recv(), if signals_open => match signal {
                None => signals_open = false,
                Some(()) if stopping.is_none() => {
                    tracing::info!(worker = %settings.name, runs = held.len(), grace = ?settings.grace,
                        "flowkit: stopping: no new runs; runs in hand may finish within the grace period (signal again to cancel them now)");
                    stopping = Some(Instant::now() + settings.grace);
                }
                Some(()) => {
                    if cancelled_at.is_none() {
                        tracing::warn!(worker = %settings.name, runs = held.len(), "flowkit: cancelling the runs in hand now");
                        cancel_all(&mut held, &mut stopped);
                        cancelled_at = Some(Instant::now());
                    }
                }
            },
            () = sleep_until(grace_end), if grace_end.is_some() => {
                tracing::warn!(worker = %settings.name, runs = held.len(),
                    "flowkit: grace period over; cancelling the runs in hand and handing them back");
                cancel_all(&mut held, &mut stopped);
                cancelled_at = Some(Instant::now());
            }
            () = sleep_until(retry_at), if in_flight.is_none() && retry_at.is_some() => {}
        }
    }
    // Cancelled runs that did not end in time: dropping them records them Cancelled.
    runs.shutdown().await;
    for id in held.keys() {
        set_held(*id, false);
    }
    let request = StopRequest {
        handed_back: stopped.handed_back.clone(),
    };
    let told = tokio::time::timeout(STOP_LIMIT, async {
        let mut delays = backoff();
        loop {
            match api.stop(request.clone()).await {
                Ok(()) => return true,
                Err(error @ ApiError::Refused { .. }) => {
                    tracing::warn!(worker = %settings.name, %error, "flowkit: the server refused the worker's stop");
                    return false;
                }
                Err(error) => {
                    tracing::debug!(worker = %settings.name, %error, "flowkit: could not say the worker stopped yet");
                    tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
                }
            }
        }
    })
    .await;
    if told.is_err() {
        tracing::warn!(worker = %settings.name, handed_back = stopped.handed_back.len(),
            "flowkit: could not tell the server the worker stopped; it will find out from the missing heartbeats");
    }
    tracing::info!(worker = %settings.name, handed_back = stopped.handed_back.len(), "flowkit: worker stopped");
    stopped
}

/// Starts a run the server handed out.
fn start(
    starters: &HashMap<String, Starter>,
    claimed: ClaimedRun,
    held: &mut HashMap<Uuid, Held>,
    runs: &mut JoinSet<Uuid>,
    stopped: &mut Stopped,
) {
    let id = claimed.id;
    if held.contains_key(&id) {
        tracing::debug!(run = %id, "flowkit: a run handed out twice; it runs once");
        return;
    }
    let Some(starter) = starters.get(&claimed.deployment) else {
        tracing::error!(run = %id, deployment = %claimed.deployment,
            "flowkit: the server handed out a run of a deployment this program does not serve");
        return;
    };
    tracing::debug!(run = %id, deployment = %claimed.deployment, attempt = claimed.attempt,
        "flowkit: starting a claimed run");
    let (cancel, cancelled) = oneshot::channel();
    held.insert(
        id,
        Held {
            cancel: Some(cancel),
            lost: false,
        },
    );
    set_held(id, true);
    stopped.started.push(id);
    let mut future = starter(ScheduledRun::claimed(&claimed));
    runs.spawn(async move {
        // The run is polled first: its first poll registers it, so a cancel finds it.
        tokio::select! {
            biased;
            _ended = &mut future => {}
            Ok(()) = cancelled => {
                crate::cancel::cancel_run(id);
                let _ = future.await;
            }
        }
        id
    });
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The machine's name: `/proc/sys/kernel/hostname`, `/etc/hostname` or `$HOSTNAME`.
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// Sends one message on `tx` per SIGTERM or Ctrl-C, until dropped.
pub(crate) fn listen_for_signals(tx: mpsc::UnboundedSender<()>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            #[cfg(unix)]
            let terminated = async {
                match term.as_mut() {
                    Some(term) => {
                        term.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let terminated = std::future::pending::<()>();
            tokio::select! {
                interrupted = tokio::signal::ctrl_c() => {
                    if interrupted.is_err() {
                        return;
                    }
                }
                () = terminated => {}
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use flowkit_api::work::ClaimedRun;

    use super::*;
    use crate::serve::Deployment;
    use crate::{EventBus, MemorySink, State, flow};

    /// Works `secs` seconds (tokio's time).
    #[flow]
    async fn work_for(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    /// What the fake server does with one poll.
    enum Step {
        /// Answers this, after this long.
        Answer(Duration, PollResponse),
        /// Cannot be reached.
        Fail,
    }

    /// A server scripted poll by poll; once the script is done, it long-polls: 10 s, then
    /// nothing.
    struct Fake {
        script: Mutex<VecDeque<Step>>,
        polls: Mutex<Vec<(Duration, PollRequest)>>,
        stops: Mutex<Vec<StopRequest>>,
        servers: usize,
        t0: Instant,
    }

    impl Fake {
        fn new(servers: usize, script: impl IntoIterator<Item = Step>) -> Arc<Fake> {
            Arc::new(Fake {
                script: Mutex::new(script.into_iter().collect()),
                polls: Mutex::default(),
                stops: Mutex::default(),
                servers,
                t0: Instant::now(),
            })
        }

        fn polls(&self) -> Vec<(Duration, PollRequest)> {
            self.polls.lock().unwrap().clone()
        }
    }

    impl WorkApi for Fake {
        fn poll(
            &self,
            request: PollRequest,
            _timeout: Duration,
        ) -> BoxFuture<'static, Result<PollResponse, ApiError>> {
            self.polls
                .lock()
                .unwrap()
                .push((self.t0.elapsed(), request));
            let step = self.script.lock().unwrap().pop_front();
            Box::pin(async move {
                match step {
                    Some(Step::Answer(after, answer)) => {
                        tokio::time::sleep(after).await;
                        Ok(answer)
                    }
                    Some(Step::Fail) => Err(ApiError::Unavailable {
                        url: "http://fake".into(),
                        why: "connection refused".into(),
                    }),
                    None => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        Ok(PollResponse::default())
                    }
                }
            })
        }

        fn stop(&self, request: StopRequest) -> BoxFuture<'static, Result<(), ApiError>> {
            self.stops.lock().unwrap().push(request);
            Box::pin(async { Ok(()) })
        }

        fn servers(&self) -> usize {
            self.servers
        }
    }

    fn claimed(deployment: &str) -> ClaimedRun {
        ClaimedRun {
            id: Uuid::now_v7(),
            deployment: deployment.into(),
            scheduled_at: chrono::Utc::now(),
            interval_start: None,
            interval_end: None,
            parameters: None,
            attempt: 1,
            resume: false,
        }
    }

    fn runs(runs: &[&ClaimedRun]) -> Step {
        Step::Answer(
            Duration::ZERO,
            PollResponse {
                runs: runs.iter().map(|r| (*r).clone()).collect(),
                ..PollResponse::default()
            },
        )
    }

    fn settings(max_runs: usize, grace_secs: u64) -> Settings {
        Settings {
            name: "test-worker".into(),
            host: "test-host".into(),
            queues: vec!["default".into()],
            max_runs,
            grace: Duration::from_secs(grace_secs),
        }
    }

    /// A deployment `name` whose runs work `secs` seconds, recorded in `memory`.
    fn deployment(name: &str, secs: u64) -> (HashMap<String, Starter>, EventBus, MemorySink) {
        let memory = MemorySink::new();
        let bus = EventBus::builder().sink(memory.clone()).build();
        let on = bus.clone();
        let deployment = Deployment::new(name, move |_| work_for(secs).on(&on));
        let starters = HashMap::from([(name.to_string(), deployment.start.clone())]);
        (starters, bus, memory)
    }

    fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
        ids.sort();
        ids
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_worker_asks_for_nothing_and_asks_again_the_moment_a_slot_frees() {
        let (a, b) = (claimed("etl"), claimed("etl"));
        let fake = Fake::new(1, [runs(&[&a, &b])]);
        let (starters, bus, memory) = deployment("etl", 60);
        let (signal, signals) = mpsc::unbounded_channel();
        let worker = tokio::spawn(work(fake.clone(), starters, settings(2, 30), signals));
        tokio::time::sleep(Duration::from_secs(65)).await;
        signal.send(()).unwrap();
        let stopped = worker.await.unwrap();
        let t0 = fake.t0;
        let polls = fake.polls();
        assert_eq!(polls[0].1.capacity, 2);
        assert!(polls[0].1.running.is_empty());
        assert_eq!(polls[0].1.deployments, ["etl"]);
        assert_eq!(polls[0].1.queues, ["default"]);
        assert_eq!(polls[0].1.host, "test-host");
        // Full: capacity 0, both runs reported.
        assert_eq!(polls[1].1.capacity, 0);
        assert_eq!(sorted(polls[1].1.running.clone()), sorted(vec![a.id, b.id]));
        // The runs end at 60 s: the worker asks for two at once, not at the end of the
        // long-poll it had in flight.
        // The first run ends at 60 s: the worker asks for one at once, not at the end of the
        // long-poll (asking for nothing) it had in flight.
        let freed = polls.iter().skip(1).find(|(_, p)| p.capacity > 0);
        assert!(
            freed.is_some_and(|(at, p)| *at == Duration::from_secs(60)
                && p.capacity == 1
                && p.running.len() == 1),
            "{polls:#?}"
        );
        // Nothing in hand at the signal (65 s): it stops at once, without waiting out its long
        // poll, and tells the server.
        assert_eq!(t0.elapsed(), Duration::from_secs(65));
        assert!(
            polls
                .iter()
                .all(|(at, p)| *at < Duration::from_secs(65) || p.capacity == 0)
        );
        // The runs ran with the server's ids, once each, and completed.
        bus.flush().await;
        assert_eq!(memory.states(a.id).last(), Some(&State::Completed));
        assert_eq!(memory.states(b.id).last(), Some(&State::Completed));
        assert_eq!(memory.runs_named("work_for").len(), 2);
        assert_eq!(stopped.started, [a.id, b.id]);
        assert!(stopped.handed_back.is_empty());
        assert_eq!(fake.stops.lock().unwrap().len(), 1);
    }

    /// The gaps between the starts of consecutive polls, from poll `from` on.
    fn gaps(polls: &[(Duration, PollRequest)], from: usize) -> Vec<Duration> {
        polls[from..].windows(2).map(|w| w[1].0 - w[0].0).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn failing_polls_back_off_from_100_ms_doubling_to_5_s_and_never_stop_runs_in_hand() {
        let a = claimed("etl");
        let mut script = vec![runs(&[&a])];
        script.extend((0..8).map(|_| Step::Fail));
        let fake = Fake::new(1, script);
        let (starters, bus, memory) = deployment("etl", 20);
        let (signal, signals) = mpsc::unbounded_channel();
        let worker = tokio::spawn(work(fake.clone(), starters, settings(4, 30), signals));
        tokio::time::sleep(Duration::from_secs(40)).await;
        signal.send(()).unwrap();
        worker.await.unwrap();
        let polls = fake.polls();
        // Polls 1 to 8 fail; the gaps after them grow: 100 ms doubling (each up to twice that,
        // with jitter), then at most 5 s.
        let gaps = gaps(&polls, 1);
        let floors = [100, 200, 400, 800, 1600, 2500, 2500, 2500];
        for (gap, floor) in gaps.iter().zip(floors) {
            let floor = Duration::from_millis(floor);
            assert!(
                *gap >= floor && *gap <= (floor * 2).min(Duration::from_secs(5)),
                "{gaps:?}"
            );
        }
        // Meanwhile every poll still carried the run in hand, which went on and completed.
        assert!(
            polls[1..=8]
                .iter()
                .all(|(_, p)| p.running == [a.id] && p.capacity == 3)
        );
        bus.flush().await;
        assert_eq!(memory.states(a.id).last(), Some(&State::Completed));
        // After the first answer, the delays start again from the beginning.
        assert_eq!(fake.stops.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn with_two_servers_a_failed_poll_tries_the_other_at_once_then_backs_off() {
        let fake = Fake::new(2, (0..4).map(|_| Step::Fail));
        let (starters, _bus, _memory) = deployment("etl", 1);
        let (signal, signals) = mpsc::unbounded_channel();
        let worker = tokio::spawn(work(fake.clone(), starters, settings(4, 30), signals));
        tokio::time::sleep(Duration::from_secs(2)).await;
        signal.send(()).unwrap();
        worker.await.unwrap();
        let gaps = gaps(&fake.polls(), 0);
        assert_eq!(gaps[0], Duration::ZERO, "{gaps:?}");
        assert!(gaps[1] >= Duration::from_millis(100) && gaps[1] <= Duration::from_millis(200));
        assert_eq!(gaps[2], Duration::ZERO, "{gaps:?}");
        assert!(gaps[3] >= Duration::from_millis(200) && gaps[3] <= Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn cancels_and_lost_runs_from_the_server_stop_the_runs_at_once() {
        let (a, b) = (claimed("etl"), claimed("etl"));
        let cancel = Step::Answer(
            Duration::from_secs(5),
            PollResponse {
                cancel: vec![a.id],
                lost: vec![b.id],
                ..PollResponse::default()
            },
        );
        let fake = Fake::new(1, [runs(&[&a, &b]), cancel]);
        let (starters, bus, memory) = deployment("etl", 3600);
        let (signal, signals) = mpsc::unbounded_channel();
        let worker = tokio::spawn(work(fake.clone(), starters, settings(2, 30), signals));
        tokio::time::sleep(Duration::from_secs(6)).await;
        bus.flush().await;
        // Both stopped through the runtime's cancellation, at 5 s.
        assert_eq!(memory.states(a.id).last(), Some(&State::Cancelled));
        assert_eq!(memory.states(b.id).last(), Some(&State::Cancelled));
        // The lost run is no longer reported, at once; as soon as a run ended (at 5 s too), the
        // worker asks for work.
        let polls = fake.polls();
        assert_eq!(polls[2].0, Duration::from_secs(5), "{polls:#?}");
        assert!(!polls[2].1.running.contains(&b.id), "{polls:#?}");
        assert!(
            polls
                .iter()
                .any(|(at, p)| *at == Duration::from_secs(5) && p.capacity > 0),
            "{polls:#?}"
        );
        signal.send(()).unwrap();
        let stopped = worker.await.unwrap();
        // Ended before the stop: nothing to hand back.
        assert!(stopped.handed_back.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_worker_claims_nothing_and_lets_its_runs_finish_within_the_grace_period() {
        let a = claimed("etl");
        let fake = Fake::new(1, [runs(&[&a])]);
        let (starters, bus, memory) = deployment("etl", 10);
        let (signal, signals) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let worker = tokio::spawn(work(fake.clone(), starters, settings(1, 30), signals));
        tokio::time::sleep(Duration::from_secs(1)).await;
        signal.send(()).unwrap();
        let stopped = worker.await.unwrap();
        // Returns when its run completed, at 10 s.
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        bus.flush().await;
        assert_eq!(memory.states(a.id).last(), Some(&State::Completed));
        let polls = fake.polls();
        let after: Vec<_> = polls
            .iter()
            .filter(|(at, _)| *at >= Duration::from_secs(1))
            .collect();
        assert!(!after.is_empty());
        assert!(
            after
                .iter()
                .all(|(_, p)| p.stopping && p.capacity == 0 && p.running == [a.id]),
            "{polls:#?}"
        );
        assert!(stopped.handed_back.is_empty());
        assert_eq!(*fake.stops.lock().unwrap(), [StopRequest::default()]);
    }

    #[tokio::test(start_paused = true)]
    async fn runs_left_at_the_end_of_the_grace_period_are_cancelled_and_handed_back() {
        let (a, b) = (claimed("etl"), claimed("etl"));
        let fake = Fake::new(1, [runs(&[&a, &b])]);
        let (starters, bus, memory) = deployment("etl", 100);
        let (signal, signals) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let worker = tokio::spawn(work(fake.clone(), starters, settings(2, 30), signals));
        tokio::time::sleep(Duration::from_secs(1)).await;
        signal.send(()).unwrap();
        let stopped = worker.await.unwrap();
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(31),
            "1 s, then the grace period"
        );
        bus.flush().await;
        assert_eq!(memory.states(a.id).last(), Some(&State::Cancelled));
        assert_eq!(memory.states(b.id).last(), Some(&State::Cancelled));
        assert_eq!(
            sorted(stopped.handed_back.clone()),
            sorted(vec![a.id, b.id])
        );
        let stops = fake.stops.lock().unwrap();
        assert_eq!(stops.len(), 1);
        assert_eq!(
            sorted(stops[0].handed_back.clone()),
            sorted(vec![a.id, b.id])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_signal_cancels_the_runs_at_once() {
        let a = claimed("etl");
        let fake = Fake::new(1, [runs(&[&a])]);
        let (starters, bus, memory) = deployment("etl", 100);
        let (signal, signals) = mpsc::unbounded_channel();
        let t0 = Instant::now();
        let worker = tokio::spawn(work(fake.clone(), starters, settings(1, 30), signals));
        tokio::time::sleep(Duration::from_secs(1)).await;
        signal.send(()).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        signal.send(()).unwrap();
        let stopped = worker.await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        bus.flush().await;
        assert_eq!(memory.states(a.id).last(), Some(&State::Cancelled));
        assert_eq!(stopped.handed_back, [a.id]);
    }
}
