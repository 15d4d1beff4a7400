//! The server's scheduler and claims in this process, at explicit times (no clock waited on):
//! catchup after an outage, ticks racing on one database, and `max_active_runs` across a mix
//! of scheduled, triggered and backfill runs. On SQLite and PostgreSQL alike.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{BACKENDS, Backend, TempDir, run_created};
use flowkit::State;
use flowkit::events::{Event, EventKind, RunType, StateChanged};
use flowkit_server::orchestrate::{Orchestra, tick};
use flowkit_server::store::work::{ClaimRequest, WorkRow};
use flowkit_server::{AppState, Store};
use serde_json::{Value, json};
use uuid::Uuid;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a time")
}

fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().expect("a time in range")
}

fn time(nanos: i64) -> String {
    DateTime::from_timestamp_nanos(nanos)
        .format("%H:%M")
        .to_string()
}

/// A server's state over `database`, with none of its loops running: the test ticks.
async fn state(database: &str) -> AppState {
    let store = Store::open(database).await.expect("the database opens");
    AppState::new(store, None).with_orchestra(Orchestra::new(
        Duration::from_secs(30),
        Duration::from_secs(3600),
    ))
}

async fn database(backend: Backend, dir: &TempDir) -> String {
    backend.database_url(dir.path()).await
}

/// Registers a deployment as `PUT /api/deployments/{name}` stores it (without its first tick,
/// which would be at the real time).
async fn register(state: &AppState, spec: Value) {
    let name = spec["name"].as_str().expect("a name").to_string();
    let flow = spec["flow"].as_str().unwrap_or("etl").to_string();
    state
        .store
        .put_deployment(&name, &flow, &spec.to_string(), 0)
        .await
        .expect("registered");
}

/// One poll's claims of `worker` for `deployment` (allowing `max_active` at once), at `now`.
async fn claim(
    state: &AppState,
    worker: &str,
    deployment: &str,
    max_active: i64,
    now: DateTime<Utc>,
) -> Vec<WorkRow> {
    let deployments = HashMap::from([(deployment.to_string(), max_active)]);
    state
        .store
        .claim(&ClaimRequest {
            worker,
            deployments: &deployments,
            queues: &[],
            capacity: 10,
            now: nanos(now),
        })
        .await
        .expect("a claim")
}

fn event(run: Uuid, kind: EventKind) -> Event {
    Event {
        id: Uuid::now_v7(),
        timestamp: Utc::now(),
        flow_run_id: Some(run),
        task_run_id: None,
        kind,
    }
}

/// The events of a run that ran and ended `Completed`, as its program sends them.
async fn complete(state: &AppState, run: Uuid) {
    let states = [State::Running, State::Completed].map(|state| {
        event(
            run,
            EventKind::StateChanged(StateChanged {
                state,
                attempt: 1,
                message: None,
                next_attempt_at: None,
                result: None,
            }),
        )
    });
    let mut events = vec![event(run, run_created(RunType::Flow, "etl", 0))];
    events.extend(states);
    state.store.ingest(&events).await.expect("ingested");
}

/// The deployment's runs, oldest first.
async fn runs(state: &AppState, deployment: &str) -> Vec<WorkRow> {
    let mut runs = state
        .store
        .work_list(Some(deployment), None, 10_000)
        .await
        .expect("the runs");
    runs.sort_by_key(|r| r.scheduled_ts);
    runs
}

/// Scheduled times (`HH:MM`) and data intervals of the deployment's runs due by `now` and not
/// yet run.
async fn waiting(state: &AppState, deployment: &str, now: DateTime<Utc>) -> Vec<String> {
    runs(state, deployment)
        .await
        .iter()
        .filter(|r| r.status == "scheduled" && r.scheduled_ts <= nanos(now))
        .map(|r| {
            format!(
                "{} [{}, {})",
                time(r.scheduled_ts),
                r.interval_start_ts.map(time).unwrap_or_default(),
                r.interval_end_ts.map(time).unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn after_an_outage_the_server_makes_the_missed_times_oldest_first_within_max_active_runs() {
    for backend in BACKENDS {
        let dir = TempDir::new("sched-catchup");
        let state = state(&database(backend, &dir).await).await;
        for (name, catchup) in [("hourly", true), ("latest", false)] {
            register(
                &state,
                json!({"name": name, "flow": "etl", "schedules": [{"cron": "0 * * * *"}],
                       "catchup": catchup, "max_active_runs": 2}),
            )
            .await;
        }
        // Up at 00:00:30: the next time of each (01:00) made ahead, nothing of the past.
        let up = at("2026-01-01T00:00:30Z");
        assert_eq!(tick(&state, up).await.unwrap(), 2, "{backend:?}");
        // 01:00 runs; then the server is down until 04:30: 02:00, 03:00 and 04:00 are missed.
        let one = at("2026-01-01T01:00:00.100Z");
        for name in ["hourly", "latest"] {
            let got = claim(&state, "w", name, 2, one).await;
            assert_eq!(got.len(), 1, "{backend:?}");
            complete(&state, got[0].id).await;
        }
        let back = at("2026-01-01T04:30:00Z");
        // Three missed and the next (05:00) with catchup; the latest missed and the next without.
        assert_eq!(tick(&state, back).await.unwrap(), 4 + 2, "{backend:?}");
        assert_eq!(
            waiting(&state, "hourly", back).await,
            [
                "02:00 [01:00, 02:00)",
                "03:00 [02:00, 03:00)",
                "04:00 [03:00, 04:00)"
            ],
            "{backend:?}"
        );
        assert_eq!(
            waiting(&state, "latest", back).await,
            ["04:00 [03:00, 04:00)"],
            "{backend:?}"
        );
        // A tick again makes nothing more.
        assert_eq!(tick(&state, back).await.unwrap(), 0, "{backend:?}");

        // Handed out oldest first, two at a time (its max_active_runs), whoever asks.
        let first = claim(&state, "a", "hourly", 2, back).await;
        let times = |rows: &[WorkRow]| {
            rows.iter()
                .map(|r| time(r.scheduled_ts))
                .collect::<Vec<_>>()
        };
        assert_eq!(times(&first), ["02:00", "03:00"], "{backend:?}");
        assert!(claim(&state, "b", "hourly", 2, back).await.is_empty());
        complete(&state, first[0].id).await;
        let next = claim(&state, "b", "hourly", 2, back).await;
        assert_eq!(times(&next), ["04:00"], "{backend:?}");
        complete(&state, first[1].id).await;
        complete(&state, next[0].id).await;
        // 05:00 is not due yet; at 05:00 it is.
        assert!(claim(&state, "a", "hourly", 2, back).await.is_empty());
        let five = claim(&state, "a", "hourly", 2, at("2026-01-01T05:00:00Z")).await;
        assert_eq!(times(&five), ["05:00"], "{backend:?}");

        // Every time from 01:00 to 05:00 has exactly one run, with catchup.
        let all: Vec<String> = runs(&state, "hourly")
            .await
            .iter()
            .map(|r| time(r.scheduled_ts))
            .collect();
        assert_eq!(
            all,
            ["01:00", "02:00", "03:00", "04:00", "05:00"],
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn ticks_racing_on_one_database_make_one_run_per_deployment_and_time() {
    for backend in BACKENDS {
        let dir = TempDir::new("sched-race");
        let database = database(backend, &dir).await;
        // PostgreSQL: two servers on the database. SQLite (one server per file): one server
        // whose loop ticks while a registration or a resume ticks too.
        let first = state(&database).await;
        let second = match backend {
            Backend::Postgres => state(&database).await,
            Backend::Sqlite => first.clone(),
        };
        let servers = [first, second];
        for d in 0..20 {
            register(
                &servers[0],
                json!({"name": format!("d{d:02}"), "flow": "etl", "schedules": [{"every": "1m"}],
                       "catchup": true}),
            )
            .await;
        }
        let start = at("2026-01-01T00:00:30Z");
        // Eight ticks at once at each of a few times, on both servers: the first times, then
        // a catchup after five minutes down, then a tick a minute later.
        let mut made = 0;
        for now in [
            start,
            start + chrono::TimeDelta::minutes(15),
            start + chrono::TimeDelta::minutes(16),
        ] {
            let mut ticks = tokio::task::JoinSet::new();
            for i in 0..8 {
                let state = servers[i % 2].clone();
                // Some a few milliseconds apart, as servers' clocks are.
                let now = now + chrono::TimeDelta::milliseconds(i as i64 % 3);
                ticks.spawn(async move { tick(&state, now).await });
            }
            for result in ticks.join_all().await {
                made += result.unwrap_or_else(|e| panic!("a tick failed ({backend:?}): {e}"));
            }
        }
        // Each deployment: every minute from 00:01 to 00:26 (16 minutes on, 10 ahead), once.
        let mut total = 0;
        for d in 0..20 {
            let name = format!("d{d:02}");
            let rows = runs(&servers[1], &name).await;
            let times: Vec<i64> = rows.iter().map(|r| r.scheduled_ts).collect();
            let distinct: HashSet<i64> = times.iter().copied().collect();
            assert_eq!(
                distinct.len(),
                times.len(),
                "{name}: a time twice ({backend:?})"
            );
            let expected: Vec<i64> = (1..=26)
                .map(|m| nanos(at("2026-01-01T00:00:00Z") + chrono::TimeDelta::minutes(m)))
                .collect();
            assert_eq!(times, expected, "{name}: every minute once ({backend:?})");
            total += rows.len();
        }
        assert_eq!(
            made, total,
            "each run counted by the tick that made it ({backend:?})"
        );
    }
}

#[tokio::test]
async fn max_active_runs_holds_across_backfill_triggered_and_scheduled_runs() {
    for backend in BACKENDS {
        let dir = TempDir::new("sched-mix");
        let database = database(backend, &dir).await;
        // A server on a real port for the API (backfills, triggers), and the test's hand on
        // its store for claims at explicit times.
        let state = state(&database).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = flowkit_server::app(state.clone());
        let served = tokio::spawn(async move {
            let limits = flowkit_server::Limits::default();
            let _ =
                flowkit_server::serve(listener, router, &limits, flowkit_server::Shutdown::new())
                    .await;
        });
        let client = reqwest::Client::new();
        let call = |method: reqwest::Method, path: &str, body: Value| {
            let request = client.request(method, format!("{url}{path}")).json(&body);
            async move {
                let response = request.send().await.expect("the server answers");
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                assert!((200..300).contains(&status), "{status} {body}");
                body
            }
        };
        call(
            reqwest::Method::PUT,
            "/api/deployments/mix",
            json!({"name": "mix", "flow": "etl", "schedules": [{"every": "1m"}],
                   "max_active_runs": 2}),
        )
        .await;
        // A backfill of six minutes allowing five at once, above the deployment's two.
        let backfill = call(
            reqwest::Method::POST,
            "/api/deployments/mix/backfills",
            json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-01T00:06:00Z", "max_active": 5}),
        )
        .await;
        assert_eq!(backfill["intervals"].as_array().map(Vec::len), Some(6));
        for _ in 0..4 {
            call(
                reqwest::Method::POST,
                "/api/deployments/mix/runs",
                json!({}),
            )
            .await;
        }
        let made = runs(&state, "mix").await;
        let origins: BTreeMap<&str, usize> = made.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.origin.as_str()).or_default() += 1;
            m
        });
        assert_eq!(origins["backfill"], 6, "{origins:?}");
        assert_eq!(origins["trigger"], 4, "{origins:?}");
        assert!(origins["schedule"] >= 10, "{origins:?}");
        let total = made.len();

        // An hour from now everything is due. Three workers take turns: each poll claims what
        // the limit allows; a run in hand ends at a pseudo-random later turn.
        let later = Utc::now() + chrono::TimeDelta::hours(1);
        let mut active: Vec<(Uuid, String)> = Vec::new();
        let (mut ran, mut peak) = (HashSet::new(), 0);
        let mut rng = fastrand::Rng::with_seed(9);
        let mut turns = 0;
        while ran.len() < total {
            turns += 1;
            assert!(
                turns < 1_000,
                "stuck with {} of {total} run ({backend:?})",
                ran.len()
            );
            let worker = format!("w{}", turns % 3);
            for row in claim(&state, &worker, "mix", 2, later).await {
                assert!(ran.insert(row.id), "a run handed out twice ({backend:?})");
                active.push((row.id, row.origin));
            }
            peak = peak.max(active.len());
            assert!(
                active.len() <= 2,
                "{} running at once: {active:?} ({backend:?})",
                active.len()
            );
            if !active.is_empty() && rng.bool() {
                let (id, _) = active.remove(rng.usize(..active.len()));
                complete(&state, id).await;
            }
        }
        assert_eq!(peak, 2, "the limit was reached ({backend:?})");
        for (id, _) in active.drain(..) {
            complete(&state, id).await;
        }
        served.abort();
    }
}
