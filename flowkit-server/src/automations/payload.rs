//! What a notification says: the JSON of a generic webhook ([`Notification`]) and Slack's
//! incoming-webhook format (`text` for the notification itself, `blocks` for the message).

use chrono::{DateTime, Utc};
use flowkit_api::automation::{Notification, NotificationKind, RunSummary};
use serde_json::{Value, json};

use crate::store::Run;

/// The longest error message a notification carries.
const MESSAGE_CHARS: usize = 1000;

/// A notification of `kind` by rule `automation` about `run` (and `deployment`), saying
/// `summary`, linking to `url`.
pub fn notification(
    automation: &str,
    kind: NotificationKind,
    summary: String,
    run: Option<&Run>,
    deployment: Option<String>,
    url: Option<String>,
    at: DateTime<Utc>,
) -> Notification {
    Notification {
        automation: automation.to_string(),
        kind,
        summary,
        at,
        flow_run: run.map(|run| RunSummary {
            id: run.id,
            flow: run.name.clone().unwrap_or_default(),
            run_name: run.run_name.clone(),
            state: run.state.clone(),
            message: run.message.as_deref().map(|m| snippet(m, MESSAGE_CHARS)),
            deployment: run.deployment.clone(),
            tags: run.tags.clone(),
            scheduled: run.scheduled,
            start: run.start,
            end: run.end,
        }),
        deployment: deployment.or_else(|| run.and_then(|r| r.deployment.clone())),
        url,
    }
}

/// `text` cut to at most `chars` characters (with `…` when cut).
fn snippet(text: &str, chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A run's name as people know it: `etl brave-otter`, or the flow and the id's start.
pub fn run_label(run: &Run) -> String {
    let flow = run.name.as_deref().unwrap_or("flow");
    match &run.run_name {
        Some(name) => format!("{flow} run {name}"),
        // The id's end: its start is the time (UUID v7), the same for runs made together.
        None => {
            let id = run.id.simple().to_string();
            format!("{flow} run {}", &id[id.len() - 8..])
        }
    }
}

/// Slack's mrkdwn escapes: `&`, `<` and `>` (links are written `<url|text>`).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The body posted to a Slack incoming webhook: `text` (the notification's fallback) and
/// `blocks`: a header line, the state and deployment as fields, the error in a code block,
/// and a link to the run's page.
///
/// ```
/// use flowkit_api::automation::{Notification, NotificationKind};
/// let n = Notification {
///     automation: "etl-failures".into(),
///     kind: NotificationKind::Breaker,
///     summary: "Paused nightly after 3 failures".into(),
///     at: chrono::Utc::now(),
///     flow_run: None,
///     deployment: Some("nightly".into()),
///     url: None,
/// };
/// let body = flowkit_server::automations::slack_body(&n);
/// assert_eq!(body["text"], "Paused nightly after 3 failures");
/// assert_eq!(body["blocks"][0]["type"], "section");
/// ```
pub fn slack_body(n: &Notification) -> Value {
    let icon = match n.kind {
        NotificationKind::State => ":red_circle:",
        NotificationKind::Late => ":hourglass:",
        NotificationKind::Sla => ":alarm_clock:",
        NotificationKind::Breaker => ":no_entry:",
    };
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("{icon} *{}*", escape(&n.summary))},
    })];
    let mut fields = Vec::new();
    if let Some(run) = &n.flow_run {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Flow*\n{}", escape(&run.flow))}));
        let name = run.run_name.clone().unwrap_or_else(|| run.id.to_string());
        fields.push(json!({"type": "mrkdwn", "text": format!("*Run*\n{}", escape(&name))}));
        fields.push(json!({"type": "mrkdwn", "text": format!("*State*\n{}", escape(&run.state))}));
    }
    if let Some(deployment) = &n.deployment {
        fields.push(
            json!({"type": "mrkdwn", "text": format!("*Deployment*\n{}", escape(deployment))}),
        );
    }
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if let Some(message) = n.flow_run.as_ref().and_then(|r| r.message.as_deref()) {
        // A code block may not hold three backticks; Slack caps a text at 3,000 characters.
        let message = snippet(&message.replace("```", "'''"), 2800);
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("```{}```", escape(&message))},
        }));
    }
    let mut context =
        vec![json!({"type": "mrkdwn", "text": format!("automation *{}*", escape(&n.automation))})];
    if let Some(url) = &n.url {
        context.push(json!({"type": "mrkdwn", "text": format!("<{url}|Open in flowkit>")}));
    }
    blocks.push(json!({"type": "context", "elements": context}));
    json!({"text": n.summary, "blocks": blocks})
}

/// The body a target receives: the notification itself (webhook) or Slack's format.
pub fn body(format: &str, n: &Notification) -> Value {
    match format {
        "slack" => slack_body(n),
        _ => serde_json::to_value(n).unwrap_or(Value::Null),
    }
}
