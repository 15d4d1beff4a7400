//! Automations against a real HTTP receiver on a loopback port, on both databases: a failed run
//! notifies each target exactly once (a webhook's JSON and a valid Slack message), nothing is
//! sent for runs the rule does not watch, a receiver answering 500 is retried until it takes the
//! notification, one that never answers is given up without slowing ingestion, late runs and
//! missed SLAs are noticed on time and once, and the circuit breaker pauses a deployment after
//! N failures (no scheduled run starts) until it is resumed. It also measures the latency from
//! a failing run's ingest to the webhook's receipt.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::api::{eventually, get, patch, post, put};
use common::{BACKENDS, Backend, Server, TempDir, event_now};
use flowkit::State;
use flowkit::events::{EventKind, RunCreated, RunType, StateChanged};
use serde_json::{Value, json};
use uuid::Uuid;

/// A notification the receiver took.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    body: Value,
    at: Instant,
}

/// A webhook receiver on a loopback port: records what it takes; answers 500 to the first
/// `fail_first` requests.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let fail_first: Arc<Mutex<u32>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let (g, f) = (got.clone(), fail_first.clone());
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
                let (got, fail_first) = (g.clone(), f.clone());
                async move {
                    let at = Instant::now();
                    {
                        let mut left = fail_first.lock().unwrap();
                        if *left > 0 {
                            *left -= 1;
                            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down");
                        }
                    }
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    got.lock().unwrap().push(Received {
                        path: uri.path().to_string(),
                        body,
                        at,
                    });
                    (axum::http::StatusCode::OK, "ok")
                }
            });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url,
            got,
            fail_first,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    async fn wait_for(&self, path: &str, n: usize, limit: Duration) -> Duration {
        eventually(limit, &format!("{n} notification(s) on {path}"), || async {
            self.on(path).len() >= n
        })
        .await
    }
}

/// A server with short timers, and the public address links use.
async fn server(backend: Backend, dir: &TempDir, extra: &[&str]) -> Server {
    let database = backend.database_url(dir.path()).await;
    let mut args = vec![
        "--automations-tick",
        "100ms",
        "--notify-retry",
        "200ms",
        "--public-url",
        "https://flowkit.example.com/ops/",
        "--heartbeat-timeout",
        "3s",
        "--scheduler-tick",
        "200ms",
    ];
    args.extend_from_slice(extra);
    Server::start_with(&database, 0, &args).await
}

async fn automation(server: &Server, rule: Value) -> Value {
    let (status, body) = post(server, "/api/automations", rule).await;
    assert_eq!(status, 201, "{body}");
    body
}

fn change(run: Uuid, state: State, message: Option<&str>) -> flowkit::events::Event {
    event_now(
        run,
        None,
        EventKind::StateChanged(StateChanged {
            state,
            attempt: 1,
            message: message.map(str::to_string),
            next_attempt_at: None,
            result: None,
        }),
    )
}

fn created(run: Uuid, flow: &str, tags: &[&str]) -> flowkit::events::Event {
    event_now(
        run,
        None,
        EventKind::RunCreated(Arc::new(RunCreated {
            run_type: RunType::Flow,
            name: flow.to_string().into(),
            run_name: Some(format!("{flow}-run")),
            description: None,
            parameters: None,
            tags: tags
                .iter()
                .map(|t| std::borrow::Cow::Owned(t.to_string()))
                .collect(),
            parent_flow_run_id: None,
            parent_task_run_id: None,
            upstream: vec![],
            map_index: None,
            retries: 0,
            scheduled: None,
        })),
    )
}

async fn ingest(server: &Server, events: Vec<flowkit::events::Event>) {
    let (status, body) = post(server, "/api/events", json!(events)).await;
    assert_eq!(status, 200, "{body}");
}

/// The deliveries the API lists.
async fn deliveries(server: &Server, automation: &str) -> Vec<Value> {
    get(server, &format!("/api/deliveries?automation={automation}"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_failed_run_is_notified_once_per_target_and_other_runs_not_at_all() {
    for backend in BACKENDS {
        let dir = TempDir::new("automations-once");
        let server = server(backend, &dir, &[]).await;
        let receiver = Receiver::start().await;
        automation(
            &server,
            json!({
                "name": "etl-failures",
                "on": {"state": ["Failed", "Crashed", "TimedOut"]},
                "flow": "etl",
                "tags": ["prod"],
                "notify": [
                    {"webhook": format!("{}/hook", receiver.url)},
                    {"slack": format!("{}/slack", receiver.url)}
                ]
            }),
        )
        .await;

        let failed = Uuid::now_v7();
        let batch = vec![
            created(failed, "etl", &["prod", "eu"]),
            change(failed, State::Running, None),
            change(
                failed,
                State::Failed,
                Some("ValueError: <bad> row 7 & more\n  at load()"),
            ),
        ];
        ingest(&server, batch.clone()).await;
        // The same events again (a retried batch): no second notification.
        ingest(&server, batch).await;
        // Runs the rule does not watch: another flow, a missing tag, a success.
        for (flow, tags, state) in [
            ("other", vec!["prod"], State::Failed),
            ("etl", vec!["dev"], State::Failed),
            ("etl", vec!["prod"], State::Completed),
        ] {
            let run = Uuid::now_v7();
            ingest(
                &server,
                vec![created(run, flow, &tags), change(run, state, Some("x"))],
            )
            .await;
        }

        receiver.wait_for("/hook", 1, Duration::from_secs(10)).await;
        receiver
            .wait_for("/slack", 1, Duration::from_secs(10))
            .await;
        // Time for anything extra to arrive.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let all = receiver.received();
        assert_eq!(all.len(), 2, "{backend:?}: exactly one per target: {all:?}");

        // The webhook: the documented JSON.
        let hook = &receiver.on("/hook")[0].body;
        let notification: flowkit_api::automation::Notification =
            serde_json::from_value(hook.clone()).expect("a Notification");
        assert_eq!(notification.automation, "etl-failures");
        assert_eq!(
            notification.kind,
            flowkit_api::automation::NotificationKind::State
        );
        let run = notification.flow_run.as_ref().expect("its run");
        assert_eq!(
            (run.id, run.flow.as_str(), run.state.as_str()),
            (failed, "etl", "Failed")
        );
        assert_eq!(run.run_name.as_deref(), Some("etl-run"));
        assert!(run.message.as_deref().unwrap().starts_with("ValueError"));
        assert_eq!(
            notification.url.as_deref(),
            Some(format!("https://flowkit.example.com/ops/#/runs/{failed}").as_str())
        );
        assert!(
            notification
                .summary
                .contains("etl run etl-run is Failed: ValueError"),
            "{}",
            notification.summary
        );

        // Slack: text, and blocks of known types whose texts are mrkdwn, escaped, with a link.
        let slack = &receiver.on("/slack")[0].body;
        check_slack(slack);
        let text = slack.to_string();
        assert!(
            text.contains("&lt;bad&gt; row 7 &amp; more"),
            "escaped: {text}"
        );
        assert!(
            text.contains(&format!(
                "<https://flowkit.example.com/ops/#/runs/{failed}|Open in flowkit>"
            )),
            "{text}"
        );
        assert!(text.contains("*State*\\nFailed"), "{text}");

        // The API lists both, delivered at the first try.
        let listed = deliveries(&server, "etl-failures").await;
        assert_eq!(listed.len(), 2, "{listed:?}");
        for d in &listed {
            assert_eq!(d["status"], "delivered", "{d}");
            assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
            assert_eq!(d["attempts"][0]["status_code"], 200);
            assert_eq!(d["flow_run_id"], json!(failed));
        }
        // Targets' paths are not shown to readers.
        let rules = get(&server, "/api/automations").await;
        assert_eq!(
            rules[0]["notify"][0]["webhook"],
            format!("{}/…", receiver.url)
        );
        assert_eq!(
            rules[0]["notify"][1]["slack"],
            format!("{}/…", receiver.url)
        );

        // Deleted, it notifies of nothing.
        let (status, _) = common::api::send(
            &server,
            reqwest::Method::DELETE,
            "/api/automations/etl-failures",
            None,
        )
        .await;
        assert_eq!(status, 200);
        let run = Uuid::now_v7();
        ingest(
            &server,
            vec![
                created(run, "etl", &["prod"]),
                change(run, State::Failed, None),
            ],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(receiver.received().len(), 2, "{backend:?}");
    }
}

/// A Slack incoming-webhook body: `text`, and `blocks` each of a type Slack knows, with mrkdwn
/// texts under 3,000 characters and at most 10 fields per section.
fn check_slack(body: &Value) {
    assert!(
        body["text"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    let blocks = body["blocks"].as_array().expect("blocks");
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    for block in blocks {
        match block["type"].as_str() {
            Some("section") => {
                if let Some(text) = block.get("text") {
                    assert_eq!(text["type"], "mrkdwn");
                    assert!(text["text"].as_str().unwrap().len() <= 3000);
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().unwrap();
                    assert!(!fields.is_empty() && fields.len() <= 10);
                    for f in fields {
                        assert_eq!(f["type"], "mrkdwn");
                        assert!(f["text"].as_str().unwrap().len() <= 2000);
                    }
                }
                assert!(block.get("text").is_some() || block.get("fields").is_some());
            }
            Some("context") => {
                let elements = block["elements"].as_array().unwrap();
                assert!(!elements.is_empty() && elements.len() <= 10);
                for e in elements {
                    assert_eq!(e["type"], "mrkdwn");
                }
            }
            other => panic!("a block of type {other:?}: {block}"),
        }
    }
}

#[tokio::test]
async fn a_receiver_that_fails_is_retried_and_one_that_never_answers_is_given_up() {
    for backend in BACKENDS {
        let dir = TempDir::new("automations-retry");
        let server = server(
            backend,
            &dir,
            &["--notify-attempts", "3", "--notify-timeout", "2s"],
        )
        .await;
        let receiver = Receiver::start().await;
        *receiver.fail_first.lock().unwrap() = 2;
        // Always 500.
        let broken = Receiver::start().await;
        *broken.fail_first.lock().unwrap() = u32::MAX;
        // Takes connections and never answers: each try waits out the timeout.
        let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hanging_url = format!("http://{}/hang", hanging.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = hanging.accept().await {
                open.push(socket);
            }
        });
        automation(
            &server,
            json!({"name": "flaky", "on": {"state": ["Failed"]},
                   "notify": [{"webhook": format!("{}/hook", receiver.url)},
                              {"webhook": format!("{}/broken", broken.url)},
                              {"webhook": hanging_url}]}),
        )
        .await;
        let run = Uuid::now_v7();
        let sent = Instant::now();
        ingest(
            &server,
            vec![created(run, "etl", &[]), change(run, State::Failed, None)],
        )
        .await;
        // 500, 500, then 200: taken at the third try (after 200 ms and 400 ms), while the
        // hanging target's first try still waits for its 2 s timeout.
        let took = receiver.wait_for("/hook", 1, Duration::from_secs(10)).await;
        assert!(
            sent.elapsed() < Duration::from_millis(1900),
            "{backend:?}: the hanging target delayed another: {took:?}"
        );
        // Ingestion never waits on a target: more failures go in fast meanwhile.
        for _ in 0..5 {
            let started = Instant::now();
            let other = Uuid::now_v7();
            ingest(
                &server,
                vec![
                    created(other, "etl", &[]),
                    change(other, State::Failed, None),
                ],
            )
            .await;
            assert!(started.elapsed() < Duration::from_secs(1));
        }
        eventually(
            Duration::from_secs(20),
            "both bad targets given up",
            || async {
                deliveries(&server, "flaky")
                    .await
                    .iter()
                    .filter(|d| d["flow_run_id"] == json!(run) && d["status"] == "failed")
                    .count()
                    == 2
            },
        )
        .await;
        let all = deliveries(&server, "flaky").await;
        let of_run: Vec<&Value> = all
            .iter()
            .filter(|d| d["flow_run_id"] == json!(run))
            .collect();
        assert_eq!(of_run.len(), 3, "{backend:?}: {all:?}");
        for d in of_run {
            let codes: Vec<Value> = d["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["status_code"].clone())
                .collect();
            let target = d["target"].as_str().unwrap();
            if target.starts_with(&receiver.url) {
                assert_eq!(d["status"], "delivered");
                assert_eq!(codes, [json!(500), json!(500), json!(200)], "{d}");
                let first = d["attempts"][0]["error"].as_str().unwrap();
                assert!(first.contains("500"), "{first}");
            } else if target.starts_with(&broken.url) {
                assert_eq!(d["status"], "failed", "{d}");
                assert_eq!(codes, [json!(500), json!(500), json!(500)], "{d}");
            } else {
                assert_eq!(d["status"], "failed", "{d}");
                assert_eq!(codes, [Value::Null, Value::Null, Value::Null], "{d}");
                for attempt in d["attempts"].as_array().unwrap() {
                    assert!(
                        attempt["error"].as_str().unwrap().contains("timed out"),
                        "{d}"
                    );
                    assert!(attempt["millis"].as_u64().unwrap() >= 1900, "{d}");
                }
            }
        }
        // The run's notification reached the receiver once (its two 500s were not taken).
        let of_first = receiver
            .on("/hook")
            .iter()
            .filter(|r| r.body["flow_run"]["id"] == json!(run))
            .count();
        assert_eq!(of_first, 1);
        held.abort();
    }
}

#[tokio::test]
async fn late_runs_and_missed_slas_are_notified_on_time_and_once() {
    for backend in BACKENDS {
        let dir = TempDir::new("automations-time");
        let server = server(backend, &dir, &[]).await;
        let receiver = Receiver::start().await;
        automation(
            &server,
            json!({"name": "late", "on": {"late": "1s"}, "deployment": "nightly",
                   "notify": [{"webhook": format!("{}/late", receiver.url)}]}),
        )
        .await;
        automation(
            &server,
            json!({"name": "slow", "on": {"sla": {"max_duration": "1s"}}, "flow": "slow",
                   "notify": [{"slack": format!("{}/sla", receiver.url)}]}),
        )
        .await;
        let (status, body) = put(
            &server,
            "/api/deployments/nightly",
            json!({"name": "nightly", "flow": "etl"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");

        // A run due now that no worker takes: late one second after it was due.
        let due = Instant::now();
        let (status, triggered) = post(&server, "/api/deployments/nightly/runs", json!({})).await;
        assert_eq!(status, 201, "{triggered}");
        // A run that runs too long, and one that ends in time.
        let slow = Uuid::now_v7();
        let quick = Uuid::now_v7();
        let started = Instant::now();
        ingest(
            &server,
            vec![
                created(slow, "slow", &[]),
                change(slow, State::Running, None),
                created(quick, "slow", &[]),
                change(quick, State::Running, None),
            ],
        )
        .await;
        ingest(&server, vec![change(quick, State::Completed, None)]).await;

        receiver.wait_for("/late", 1, Duration::from_secs(10)).await;
        let late_after = receiver.on("/late")[0].at - due;
        receiver.wait_for("/sla", 1, Duration::from_secs(10)).await;
        let sla_after = receiver.on("/sla")[0].at - started;
        println!(
            "{backend:?}: late run notified {late_after:?} after it was due (grace 1 s); SLA miss {sla_after:?} after the start (max 1 s)"
        );
        // On time: not before the grace or the maximum, within a tick and a delivery after.
        for (what, after) in [("late", late_after), ("sla", sla_after)] {
            assert!(
                after >= Duration::from_secs(1) && after < Duration::from_millis(2500),
                "{backend:?} {what}: {after:?}"
            );
        }
        // Many ticks later: still once each.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(receiver.on("/late").len(), 1);
        assert_eq!(receiver.on("/sla").len(), 1);
        let late = &receiver.on("/late")[0].body;
        assert_eq!(late["kind"], "late");
        assert_eq!(late["flow_run"]["id"], triggered["id"]);
        assert_eq!(late["deployment"], "nightly");
        let sla = &receiver.on("/sla")[0].body;
        check_slack(sla);
        assert!(
            sla["text"].as_str().unwrap().contains("missed its SLA"),
            "{sla}"
        );
        assert!(
            sla.to_string().contains(&slow.to_string()),
            "the slow run, not the quick one: {sla}"
        );
    }
}

#[tokio::test]
async fn the_circuit_breaker_pauses_a_deployment_after_n_failures_until_resumed() {
    for backend in BACKENDS {
        let dir = TempDir::new("automations-breaker");
        let server = server(backend, &dir, &[]).await;
        let receiver = Receiver::start().await;
        automation(
            &server,
            json!({"name": "breaker", "on": {"state": ["Failed", "Crashed", "TimedOut"]},
                   "deployment": "flaky", "pause_after": 3,
                   "notify": [{"webhook": format!("{}/hook", receiver.url)}]}),
        )
        .await;
        let (status, body) = put(
            &server,
            "/api/deployments/flaky",
            json!({"name": "flaky", "flow": "etl", "schedules": [{"every": "1s"}]}),
        )
        .await;
        assert_eq!(status, 200, "{body}");

        // A worker runs each scheduled run as it comes due; each fails.
        let poll = |capacity: u32| {
            let server = &server;
            async move {
                let (status, answer) = post(
                    server,
                    "/api/workers/w/poll",
                    json!({"host": "test", "deployments": ["flaky"], "capacity": capacity}),
                )
                .await;
                assert_eq!(status, 200, "{answer}");
                answer["runs"]
                    .as_array()
                    .map(|runs| {
                        runs.iter()
                            .filter_map(|r| r["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            }
        };
        let mut failures = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while failures < 3 {
            assert!(
                Instant::now() < deadline,
                "{backend:?}: three runs came due"
            );
            for run in poll(1).await {
                ingest(
                    &server,
                    vec![
                        change(run, State::Running, None),
                        change(run, State::Failed, Some("the partner API is down")),
                    ],
                )
                .await;
                failures += 1;
            }
        }
        // Paused by the breaker at the third failure, before the next poll.
        let view = get(&server, "/api/deployments/flaky").await;
        assert_eq!(view["paused"], true, "{backend:?}: {view}");
        assert_eq!(view["paused_by"], "automation:breaker");
        // No scheduled run starts while it is paused.
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            assert_eq!(poll(1).await, Vec::<Uuid>::new(), "{backend:?}: paused");
        }
        // The audit trail says who paused it, and the breaker's notification came.
        let audit = get(&server, "/api/audit?deployment=flaky").await;
        let pause = audit
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "pause")
            .expect("the pause is in the audit trail")
            .clone();
        assert_eq!(pause["actor"], "automation:breaker", "{pause}");
        assert!(
            pause["detail"]
                .as_str()
                .unwrap()
                .contains("last 3 runs failed")
        );
        receiver.wait_for("/hook", 4, Duration::from_secs(10)).await;
        let breaker: Vec<Received> = receiver
            .on("/hook")
            .into_iter()
            .filter(|r| r.body["kind"] == "breaker")
            .collect();
        assert_eq!(breaker.len(), 1, "{backend:?}");
        assert_eq!(breaker[0].body["deployment"], "flaky");
        assert_eq!(
            breaker[0].body["url"],
            "https://flowkit.example.com/ops/#/deployments"
        );

        // Resumed (the existing resume), it runs again; a success closes the breaker.
        let (status, view) =
            patch(&server, "/api/deployments/flaky", json!({"paused": false})).await;
        assert_eq!(status, 200);
        assert_eq!(view["paused"], false);
        assert!(view.get("paused_by").is_none(), "{view}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let run = loop {
            assert!(
                Instant::now() < deadline,
                "{backend:?}: a run after resuming"
            );
            if let Some(run) = poll(1).await.first() {
                break *run;
            }
        };
        ingest(
            &server,
            vec![
                change(run, State::Running, None),
                change(run, State::Completed, None),
            ],
        )
        .await;
        assert_eq!(common::api::run_state(&server, run).await, "Completed");
        assert_eq!(
            get(&server, "/api/deployments/flaky").await["paused"],
            false
        );
    }
}

/// Latency from a failing run's ingest (the request sent) to the webhook's receipt, over 40
/// runs one after another: p50 and p95 (printed; in the README).
#[tokio::test]
async fn notification_latency_from_ingest_to_receipt() {
    for backend in BACKENDS {
        let dir = TempDir::new("automations-latency");
        let server = server(backend, &dir, &[]).await;
        let receiver = Receiver::start().await;
        automation(
            &server,
            json!({"name": "failures", "on": {"state": ["Failed"]},
                   "notify": [{"webhook": format!("{}/hook", receiver.url)}]}),
        )
        .await;
        let mut latencies = Vec::new();
        for i in 0..40 {
            let run = Uuid::now_v7();
            let events = vec![
                created(run, "etl", &[]),
                change(run, State::Failed, Some("boom")),
            ];
            let sent = Instant::now();
            ingest(&server, events).await;
            receiver
                .wait_for("/hook", i + 1, Duration::from_secs(10))
                .await;
            latencies.push(receiver.on("/hook")[i].at - sent);
        }
        latencies.sort();
        let p = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
        println!(
            "{backend:?}: notification latency, ingest to receipt, 40 runs: p50 {:?}, p95 {:?}, max {:?}",
            p(50),
            p(95),
            latencies[latencies.len() - 1]
        );
        // Woken at once, not at the deliverer's one-second look.
        assert!(p(50) < Duration::from_millis(500), "{:?}", p(50));
    }
}
