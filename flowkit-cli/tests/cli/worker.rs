//! A worker played by the test: it long-polls the server for a deployment's runs and reports
//! their states as events, like a program serving the deployment would.

use std::time::{Duration, Instant};

use chrono::Utc;
use flowkit::State;
use flowkit::events::{Event, EventKind, StateChanged};
use flowkit_api::work::{ClaimedRun, PollRequest, PollResponse};
use uuid::Uuid;

use crate::common::{API_KEY, block_on, server};

pub struct Worker {
    pub name: String,
    deployment: String,
    http: reqwest::Client,
}

impl Worker {
    pub fn new(name: &str, deployment: &str) -> Worker {
        Worker {
            name: name.into(),
            deployment: deployment.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Polls until the server hands it a run of its deployment (failing the test after 30 s).
    pub fn claim(&self, holding: &[Uuid]) -> ClaimedRun {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let poll = PollRequest {
                host: "test-host".into(),
                deployments: vec![self.deployment.clone()],
                queues: vec![],
                capacity: 1,
                running: holding.to_vec(),
                stopping: false,
            };
            let url = format!("{}/api/workers/{}/poll", server().url, self.name);
            let answer: PollResponse = block_on(async {
                let response = self
                    .http
                    .post(url)
                    .bearer_auth(API_KEY)
                    .json(&poll)
                    .send()
                    .await
                    .expect("the server answers a poll");
                assert!(
                    response.status().is_success(),
                    "poll: {}",
                    response.status()
                );
                response.json().await.expect("a poll answer")
            });
            if let Some(run) = answer.runs.into_iter().next() {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "no run of {} handed out within 30 s",
                self.deployment
            );
        }
    }

    /// Reports flow run `id` in `state`, as the program running it would.
    pub fn report(&self, id: Uuid, state: State, message: Option<&str>) {
        self.report_attempt(id, state, 1, message);
    }

    /// Reports attempt `attempt` of flow run `id` in `state`.
    pub fn report_attempt(&self, id: Uuid, state: State, attempt: u32, message: Option<&str>) {
        let event = Event {
            id: Uuid::now_v7(),
            timestamp: Utc::now(),
            flow_run_id: Some(id),
            task_run_id: None,
            kind: EventKind::StateChanged(StateChanged {
                state,
                attempt,
                message: message.map(str::to_string),
                next_attempt_at: None,
                result: None,
            }),
        };
        let url = format!("{}/api/events", server().url);
        block_on(async {
            let response = self
                .http
                .post(url)
                .bearer_auth(API_KEY)
                .json(&[event])
                .send()
                .await
                .expect("the server answers");
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            assert!(status.is_success(), "events: {status} {text}");
            assert!(text.contains(r#""stored":1"#), "events: {text}");
        });
    }
}
