//! `flowkit workers`: the programs that run the server's runs.

use chrono::Utc;
use flowkit_api::work::WorkerView;

use crate::client::Client;
use crate::table::Table;
use crate::{output, time};

pub async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let answer = client.get(&["api", "workers"], &[]).await?;
    if json {
        output::json(&answer.value);
        return Ok(());
    }
    let workers: Vec<WorkerView> = answer.parse()?;
    if workers.is_empty() {
        output::line(
            "No workers. A program calling flowkit::serve with FLOWKIT_API_URL set works for the \
             server.",
        );
        return Ok(());
    }
    let now = Utc::now();
    let mut table = Table::new(&["NAME", "HOST", "QUEUES", "RUNS", "LAST SEEN", "STATE"]).right(3);
    for w in &workers {
        let queues = if w.queues.is_empty() {
            "all".to_string()
        } else {
            w.queues.join(", ")
        };
        table.row(vec![
            w.name.clone(),
            w.host.clone(),
            queues,
            w.runs.len().to_string(),
            time::relative(w.last_seen, now),
            w.state.clone(),
        ]);
    }
    output::text(table.render());
    Ok(())
}
