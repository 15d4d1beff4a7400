//! Automations: rules that notify (a JSON webhook, Slack) when a flow run ends in a state they
//! name, when a deployment's run is late, or when a run misses its SLA, and that can pause a
//! deployment after consecutive failures (the circuit breaker).
//!
//! Nothing is sent where events are ingested. Ingest (and the crash sweeper) hands the flow
//! runs that ended to [`runs_ended`], which matches the rules and writes one row per
//! notification and target to the `deliveries` outbox (unique per rule, event and target, so
//! an event seen twice or by two servers is queued once). A timer ([`tick`]) does the same for
//! late runs and missed SLAs. The deliverer ([`deliver`]) sends the outbox with retries and
//! backoff, recording every try; on PostgreSQL each server claims rows with `FOR UPDATE SKIP
//! LOCKED`, so each notification goes out once. A target that fails or hangs delays only its
//! own notifications.

mod deliver;
mod evaluate;
mod payload;
mod rules;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use deliver::deliver_once;
pub use evaluate::{runs_ended, tick};
pub use payload::{notification, slack_body};
pub use rules::{Rule, matches, sla_missed_at};

use crate::AppState;
use crate::store::StoreError;

/// How automations behave.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often late runs and SLAs are checked.
    pub tick: Duration,
    /// The first retry of a failed delivery waits this long; each next one twice as long
    /// (at most ten minutes).
    pub retry_base: Duration,
    /// A delivery is given up after this many tries.
    pub max_attempts: u32,
    /// How long one try may take.
    pub timeout: Duration,
    /// The dashboard's address as users reach it (`https://flowkit.example.com/`), for links
    /// in notifications; none: no links.
    pub public_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            tick: Duration::from_secs(1),
            retry_base: Duration::from_secs(2),
            max_attempts: 6,
            timeout: Duration::from_secs(10),
            public_url: None,
        }
    }
}

/// Automations' settings, shared parts and cache.
/// Rules as read: when, in which generation, and the rules.
type CachedRules = (Instant, u64, Arc<Vec<Rule>>);

#[derive(Debug)]
pub struct Automations {
    /// How they behave.
    pub settings: Settings,
    /// Wakes the deliverer when notifications are queued.
    pub wake: tokio::sync::Notify,
    client: reqwest::Client,
    /// The rules, read at most once a second (a rule made or deleted on this server empties
    /// it; on another server's, it shows within a second), with the generation they were read
    /// in.
    cache: Mutex<Option<CachedRules>>,
    /// Bumped when a rule is made or deleted here: a read that began before is not cached (it
    /// may have missed the change, and would hide it for a second).
    generation: AtomicU64,
}

impl Default for Automations {
    fn default() -> Automations {
        Automations::new(Settings::default())
    }
}

impl Automations {
    /// Automations with these settings.
    pub fn new(settings: Settings) -> Automations {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("flowkit-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Automations {
            settings,
            wake: tokio::sync::Notify::new(),
            client,
            cache: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// Forgets the cached rules (one was made or deleted).
    pub fn forget_rules(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        *cache = None;
    }

    /// The link to a dashboard page (`#/runs/<id>`), if the public address is known.
    pub fn link(&self, page: &str) -> Option<String> {
        self.settings
            .public_url
            .as_ref()
            .map(|base| format!("{}/{page}", base.trim_end_matches('/')))
    }
}

/// The rules (cached for a second).
pub async fn rules(state: &AppState) -> Result<Arc<Vec<Rule>>, StoreError> {
    let automations = &state.automations;
    let generation = automations.generation.load(Ordering::SeqCst);
    if let Some((at, read_in, rules)) = automations
        .cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        && *read_in == generation
        && at.elapsed() < Duration::from_secs(1)
    {
        return Ok(rules.clone());
    }
    let rows = state.store.automations().await?;
    let rules: Arc<Vec<Rule>> = Arc::new(rows.iter().filter_map(Rule::from_row).collect());
    let mut cache = automations.cache.lock().unwrap_or_else(|e| e.into_inner());
    // A rule made or deleted while reading: this read may predate it; let the next one cache.
    if automations.generation.load(Ordering::SeqCst) == generation {
        *cache = Some((Instant::now(), generation, rules.clone()));
    }
    Ok(rules)
}

/// Starts the deliverer and the timer of late runs and SLAs.
pub fn spawn(state: &AppState) {
    tokio::spawn(deliver::run(state.clone()));
    tokio::spawn(evaluate::run(state.clone()));
}
