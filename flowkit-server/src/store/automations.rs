//! The tables of automations: the rules, the outbox of their notifications (`deliveries`) with
//! each try, and who paused a deployment. Written once for both databases by
//! `automation_store!`, like the rest of the store.

use uuid::Uuid;

use super::{Run, Store, StoreError};

/// A rule as stored.
#[derive(Clone, Debug)]
pub struct AutomationRow {
    /// Its id (UUID v7).
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// The rule as JSON (`flowkit_api::automation::AutomationSpec`).
    pub spec: String,
    /// When it was made (Unix nanoseconds) …
    pub created_ts: i64,
    /// … and by which key.
    pub created_by: String,
}

/// A notification to queue.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub id: Uuid,
    pub automation_id: Uuid,
    /// What it is about, unique per rule: the same key is queued once.
    pub event_key: String,
    /// Which of the rule's targets.
    pub target_index: i64,
    pub format: String,
    pub url: String,
    pub payload: String,
    pub summary: String,
    pub flow_run_id: Option<Uuid>,
    pub deployment: Option<String>,
    pub created_ts: i64,
}

/// A notification as stored.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub automation_id: Uuid,
    pub format: String,
    pub url: String,
    pub payload: String,
    pub summary: String,
    pub flow_run_id: Option<Uuid>,
    pub deployment: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub created_ts: i64,
    pub done_ts: Option<i64>,
}

/// One try of a delivery.
#[derive(Clone, Debug)]
pub struct AttemptRow {
    pub delivery_id: Uuid,
    pub attempt: i64,
    pub ts: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub millis: i64,
}

/// What became of a delivery after a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target took it.
    Delivered,
    /// Try again at this time (Unix nanoseconds).
    Retry(i64),
    /// No more tries.
    GaveUp,
}

/// Defines the automation methods of `$name`, a store over database `$db`:
/// - `skip_locked`: how the deliverer's claim locks the rows it takes, skipping those another
///   server holds (PostgreSQL's `FOR UPDATE SKIP LOCKED`; nothing for SQLite's one writer);
/// - `begin`: how a write transaction starts.
macro_rules! automation_store {
    ($name:ident, $db:ty, $row:ty, skip_locked: $skip_locked:expr, begin: $begin:expr $(,)?) => {
        impl $name {
            fn delivery_from_row(row: &$row) -> Result<$crate::store::automations::DeliveryRow, $crate::store::StoreError> {
                use sqlx::Row;
                Ok($crate::store::automations::DeliveryRow {
                    id: row.try_get("id")?,
                    automation_id: row.try_get("automation_id")?,
                    format: row.try_get("format")?,
                    url: row.try_get("url")?,
                    payload: row.try_get("payload")?,
                    summary: row.try_get("summary")?,
                    flow_run_id: row.try_get("flow_run_id")?,
                    deployment: row.try_get("deployment")?,
                    status: row.try_get("status")?,
                    attempts: row.try_get("attempts")?,
                    created_ts: row.try_get("created_ts")?,
                    done_ts: row.try_get("done_ts")?,
                })
            }

            /// Stores a rule; false if its name is taken.
            pub(crate) async fn insert_automation(
                &self,
                rule: $crate::store::automations::AutomationRow,
            ) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query(
                    "INSERT INTO automations (id, name, spec, created_ts, created_by) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(rule.id)
                .bind(rule.name)
                .bind(rule.spec)
                .bind(rule.created_ts)
                .bind(rule.created_by)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            /// Every rule, by name (read from the writer: a rule just made applies at once).
            pub(crate) async fn automations(
                &self,
            ) -> Result<Vec<$crate::store::automations::AutomationRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT * FROM automations ORDER BY name")
                    .fetch_all(&self.writer)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::automations::AutomationRow {
                            id: row.try_get("id")?,
                            name: row.try_get("name")?,
                            spec: row.try_get("spec")?,
                            created_ts: row.try_get("created_ts")?,
                            created_by: row.try_get("created_by")?,
                        })
                    })
                    .collect()
            }

            /// Deletes the rule named `name` and its notifications; whether there was one.
            pub(crate) async fn delete_automation(
                &self,
                name: String,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                let id: Option<uuid::Uuid> = sqlx::query_scalar("DELETE FROM automations WHERE name = $1 RETURNING id")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(id) = id {
                    sqlx::query("DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE automation_id = $1)")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM deliveries WHERE automation_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(id.is_some())
            }

            /// Queues notifications, skipping those already queued (same rule, event and
            /// target); how many were queued.
            pub(crate) async fn enqueue(
                &self,
                items: Vec<$crate::store::automations::NewDelivery>,
            ) -> Result<usize, $crate::store::StoreError> {
                let mut queued = 0;
                for chunk in items.chunks(100) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO deliveries (id, automation_id, event_key, target_index, format, url,
                             payload, summary, flow_run_id, deployment, status, attempts, next_ts, created_ts) ",
                    );
                    insert.push_values(chunk, |mut row, d| {
                        row.push_bind(d.id)
                            .push_bind(d.automation_id)
                            .push_bind(d.event_key.clone())
                            .push_bind(d.target_index)
                            .push_bind(d.format.clone())
                            .push_bind(d.url.clone())
                            .push_bind(d.payload.clone())
                            .push_bind(d.summary.clone())
                            .push_bind(d.flow_run_id)
                            .push_bind(d.deployment.clone())
                            .push_bind("pending")
                            .push_bind(0i64)
                            .push_bind(d.created_ts)
                            .push_bind(d.created_ts);
                    });
                    insert.push(" ON CONFLICT DO NOTHING");
                    queued += insert.build().execute(&self.writer).await?.rows_affected() as usize;
                }
                Ok(queued)
            }

            /// Takes up to `limit` notifications due at `now` for this server to send: each is
            /// leased until `lease_until` (another server takes it only after that, if this one
            /// died sending it).
            pub(crate) async fn claim_deliveries(
                &self,
                now: i64,
                lease_until: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::automations::DeliveryRow>, $crate::store::StoreError> {
                let mut conn = self.writer.acquire().await?;
                let mut tx = sqlx::Connection::begin_with(&mut *conn, $begin).await?;
                let ids: Vec<uuid::Uuid> = sqlx::query_scalar(concat!(
                    "SELECT id FROM deliveries WHERE status = 'pending' AND next_ts <= $1 ORDER BY next_ts LIMIT $2",
                    $skip_locked
                ))
                .bind(now)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                let mut rows = Vec::with_capacity(ids.len());
                for id in ids {
                    let row = sqlx::query("UPDATE deliveries SET next_ts = $1, attempts = attempts + 1 WHERE id = $2 RETURNING *")
                        .bind(lease_until)
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    rows.push(Self::delivery_from_row(&row)?);
                }
                tx.commit().await?;
                Ok(rows)
            }

            /// Records a try and what became of the delivery.
            pub(crate) async fn record_attempt(
                &self,
                attempt: $crate::store::automations::AttemptRow,
                outcome: $crate::store::automations::Outcome,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::automations::Outcome;
                let mut tx = self.writer.begin().await?;
                sqlx::query(
                    "INSERT INTO delivery_attempts (delivery_id, attempt, ts, status_code, error, millis) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(attempt.delivery_id)
                .bind(attempt.attempt)
                .bind(attempt.ts)
                .bind(attempt.status_code)
                .bind(attempt.error.clone())
                .bind(attempt.millis)
                .execute(&mut *tx)
                .await?;
                let (status, next, done) = match outcome {
                    Outcome::Delivered => ("delivered", attempt.ts, Some(attempt.ts)),
                    Outcome::Retry(at) => ("pending", at, None),
                    Outcome::GaveUp => ("failed", attempt.ts, Some(attempt.ts)),
                };
                sqlx::query("UPDATE deliveries SET status = $1, next_ts = $2, done_ts = $3, last_error = $4 WHERE id = $5")
                    .bind(status)
                    .bind(next)
                    .bind(done)
                    .bind(attempt.error)
                    .bind(attempt.delivery_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            /// The latest notifications (of one rule), newest first, with their tries.
            pub(crate) async fn deliveries(
                &self,
                automation_id: Option<uuid::Uuid>,
                limit: i64,
            ) -> Result<Vec<($crate::store::automations::DeliveryRow, Vec<$crate::store::automations::AttemptRow>)>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT * FROM deliveries");
                if let Some(id) = automation_id {
                    query.push(" WHERE automation_id = ").push_bind(id);
                }
                query.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
                let rows = query.build().fetch_all(&self.reader).await?;
                let deliveries: Vec<$crate::store::automations::DeliveryRow> =
                    rows.iter().map(Self::delivery_from_row).collect::<Result<_, _>>()?;
                let mut attempts: std::collections::HashMap<uuid::Uuid, Vec<$crate::store::automations::AttemptRow>> =
                    Default::default();
                for chunk in deliveries.chunks(500) {
                    let mut query = sqlx::QueryBuilder::<$db>::new("SELECT * FROM delivery_attempts WHERE delivery_id IN (");
                    let mut ids = query.separated(", ");
                    for d in chunk {
                        ids.push_bind(d.id);
                    }
                    query.push(") ORDER BY attempt");
                    for row in query.build().fetch_all(&self.reader).await? {
                        let a = $crate::store::automations::AttemptRow {
                            delivery_id: row.try_get("delivery_id")?,
                            attempt: row.try_get("attempt")?,
                            ts: row.try_get("ts")?,
                            status_code: row.try_get("status_code")?,
                            error: row.try_get("error")?,
                            millis: row.try_get("millis")?,
                        };
                        attempts.entry(a.delivery_id).or_default().push(a);
                    }
                }
                Ok(deliveries
                    .into_iter()
                    .map(|d| {
                        let tries = attempts.remove(&d.id).unwrap_or_default();
                        (d, tries)
                    })
                    .collect())
            }

            /// Pauses a deployment for an automation (`by`) unless an operator or an
            /// automation already did; whether this paused it.
            pub(crate) async fn pause_by(
                &self,
                name: String,
                by: String,
            ) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE deployments SET paused = 1, paused_by = $1 WHERE name = $2 AND (paused IS NULL OR paused = 0)",
                )
                .bind(by)
                .bind(name)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            /// The automation that paused a deployment, while it stays paused.
            pub(crate) async fn paused_by(
                &self,
                name: String,
            ) -> Result<Option<String>, $crate::store::StoreError> {
                let by: Option<Option<String>> = sqlx::query_scalar("SELECT paused_by FROM deployments WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.reader)
                    .await?;
                Ok(by.flatten())
            }

            /// The states of a deployment's latest `n` flow runs that ended, latest first.
            pub(crate) async fn last_ended(
                &self,
                deployment: String,
                n: i64,
            ) -> Result<Vec<String>, $crate::store::StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT state FROM runs WHERE deployment = $1 AND run_type = 'flow' AND state_final >= 1 \
                     ORDER BY end_ts DESC LIMIT $2",
                )
                .bind(deployment)
                .bind(n)
                .fetch_all(&self.writer)
                .await?)
            }

            /// The flow runs created since `since` (Unix nanoseconds) that have started and run
            /// (or ran) longer than `max` nanoseconds at `now`.
            pub(crate) async fn too_long(
                &self,
                since: i64,
                max: i64,
                now: i64,
            ) -> Result<Vec<$crate::store::Run>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT * FROM runs WHERE run_type = 'flow' AND created_ts >= $1 AND start_ts IS NOT NULL \
                     AND ((end_ts IS NULL AND state_final = 0 AND start_ts < $2) OR (end_ts IS NOT NULL AND end_ts - start_ts > $3))",
                )
                .bind(since)
                .bind(now - max)
                .bind(max)
                .fetch_all(&self.reader)
                .await?;
                rows.iter().map(Self::run_from_row).collect()
            }

            /// Deployments' flow runs created since `since` whose logical date (interval start,
            /// else due time) plus `deadline` is in `[from, now)` and that had not completed by
            /// then.
            pub(crate) async fn past_deadline(
                &self,
                since: i64,
                deadline: i64,
                from: i64,
                now: i64,
            ) -> Result<Vec<$crate::store::Run>, $crate::store::StoreError> {
                let rows = sqlx::query(
                    "SELECT * FROM runs WHERE run_type = 'flow' AND deployment IS NOT NULL AND created_ts >= $1 \
                     AND COALESCE(interval_start_ts, scheduled_ts) + $2 < $3 \
                     AND COALESCE(interval_start_ts, scheduled_ts) + $2 >= $4 \
                     AND (state NOT IN ('Completed', 'Cached') OR end_ts > COALESCE(interval_start_ts, scheduled_ts) + $2)",
                )
                .bind(since)
                .bind(deadline)
                .bind(now)
                .bind(from)
                .fetch_all(&self.reader)
                .await?;
                rows.iter().map(Self::run_from_row).collect()
            }

            /// Deployments' runs still waiting for a worker that were due in `[from, cutoff)`.
            pub(crate) async fn waiting_since(
                &self,
                from: i64,
                cutoff: i64,
            ) -> Result<Vec<uuid::Uuid>, $crate::store::StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT id FROM work WHERE status = 'scheduled' AND scheduled_ts >= $1 AND scheduled_ts < $2 \
                     ORDER BY scheduled_ts LIMIT 1000",
                )
                .bind(from)
                .bind(cutoff)
                .fetch_all(&self.reader)
                .await?)
            }
        }
    };
}

impl Store {
    /// Stores a rule; false if its name is taken.
    pub async fn insert_automation(&self, rule: AutomationRow) -> Result<bool, StoreError> {
        dispatch!(self.insert_automation(rule))
    }

    /// Every rule, by name.
    pub async fn automations(&self) -> Result<Vec<AutomationRow>, StoreError> {
        dispatch!(self.automations())
    }

    /// Deletes the rule named `name` with its notifications; whether there was one.
    pub async fn delete_automation(&self, name: &str) -> Result<bool, StoreError> {
        dispatch!(self.delete_automation(name.to_string()))
    }

    /// Queues notifications (once per rule, event and target); how many were new.
    pub async fn enqueue(&self, items: Vec<NewDelivery>) -> Result<usize, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        dispatch!(self.enqueue(items))
    }

    /// Takes up to `limit` due notifications, leased until `lease_until`.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        dispatch!(self.claim_deliveries(now, lease_until, limit))
    }

    /// Records a try of a delivery and what became of it.
    pub async fn record_attempt(
        &self,
        attempt: AttemptRow,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        dispatch!(self.record_attempt(attempt, outcome))
    }

    /// The latest notifications (of one rule), newest first, with their tries.
    pub async fn deliveries(
        &self,
        automation_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<(DeliveryRow, Vec<AttemptRow>)>, StoreError> {
        dispatch!(self.deliveries(automation_id, limit))
    }

    /// Pauses a deployment for automation `by`, unless it is paused; whether this paused it.
    pub async fn pause_by(&self, name: &str, by: &str) -> Result<bool, StoreError> {
        dispatch!(self.pause_by(name.to_string(), by.to_string()))
    }

    /// The automation that paused a deployment, while it stays paused.
    pub async fn paused_by(&self, name: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self.paused_by(name.to_string()))
    }

    /// The states of a deployment's latest `n` ended flow runs, latest first.
    pub async fn last_ended(&self, deployment: &str, n: i64) -> Result<Vec<String>, StoreError> {
        dispatch!(self.last_ended(deployment.to_string(), n))
    }

    /// Flow runs created since `since` that ran longer than `max` (nanoseconds) by `now`.
    pub async fn too_long(&self, since: i64, max: i64, now: i64) -> Result<Vec<Run>, StoreError> {
        dispatch!(self.too_long(since, max, now))
    }

    /// Deployments' flow runs whose deadline passed in `[from, now)` without their completing.
    pub async fn past_deadline(
        &self,
        since: i64,
        deadline: i64,
        from: i64,
        now: i64,
    ) -> Result<Vec<Run>, StoreError> {
        dispatch!(self.past_deadline(since, deadline, from, now))
    }

    /// Runs still waiting for a worker that were due in `[from, cutoff)`.
    pub async fn waiting_since(&self, from: i64, cutoff: i64) -> Result<Vec<Uuid>, StoreError> {
        dispatch!(self.waiting_since(from, cutoff))
    }
}
