//! The orchestration tables: the runs the server owns (`work`), the runs kept alive by
//! heartbeats (`live_runs`), workers and backfills. Written once for both databases by
//! `work_store!`, like the rest of the store; what differs comes in as arguments.

use std::collections::HashMap;

use chrono::DateTime;
use flowkit_api::work::{ClaimedRun, Origin, WorkRun, WorkStatus};
use uuid::Uuid;

use super::{Store, StoreError, time};

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewWork {
    pub id: Uuid,
    pub deployment: String,
    /// The flow it runs (the name its run shows until its program reports).
    pub flow: String,
    pub queue: String,
    pub priority: i64,
    pub origin: Origin,
    pub scheduled_ts: i64,
    pub interval: Option<(i64, i64)>,
    /// A JSON object, merged over the deployment's defaults.
    pub parameters: Option<String>,
    pub idempotency_key: Option<String>,
    pub attempt: i64,
    pub backfill_id: Option<Uuid>,
}

/// A run the server owns, as stored.
#[derive(Clone, Debug)]
pub struct WorkRow {
    pub id: Uuid,
    pub deployment: String,
    pub queue: String,
    pub priority: i64,
    pub origin: String,
    pub status: String,
    pub scheduled_ts: i64,
    pub interval_start_ts: Option<i64>,
    pub interval_end_ts: Option<i64>,
    pub parameters: Option<String>,
    pub worker: Option<String>,
    pub attempt: i64,
    pub backfill_id: Option<Uuid>,
    /// When it was last asked to resume ("Retry from failure"), if ever.
    pub resumed_ts: Option<i64>,
}

impl WorkRow {
    fn origin(&self) -> Origin {
        match self.origin.as_str() {
            "schedule" => Origin::Schedule,
            "backfill" => Origin::Backfill,
            "retry" => Origin::Retry,
            _ => Origin::Trigger,
        }
    }

    fn parameters(&self) -> Option<serde_json::Value> {
        self.parameters
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
    }

    /// As the API shows it.
    pub fn view(&self, created: bool) -> WorkRun {
        WorkRun {
            id: self.id,
            deployment: self.deployment.clone(),
            origin: self.origin(),
            status: WorkStatus::parse(&self.status).unwrap_or(WorkStatus::Scheduled),
            scheduled_at: DateTime::from_timestamp_nanos(self.scheduled_ts),
            interval_start: time(self.interval_start_ts),
            interval_end: time(self.interval_end_ts),
            parameters: self.parameters(),
            worker: self.worker.clone(),
            created,
        }
    }

    /// As a worker receives it.
    pub fn claimed(&self) -> ClaimedRun {
        ClaimedRun {
            id: self.id,
            deployment: self.deployment.clone(),
            scheduled_at: DateTime::from_timestamp_nanos(self.scheduled_ts),
            interval_start: time(self.interval_start_ts),
            interval_end: time(self.interval_end_ts),
            parameters: self.parameters(),
            attempt: u32::try_from(self.attempt).unwrap_or(1),
            resume: self.resumed_ts.is_some(),
        }
    }

    /// The same run made again (after a crash, or handed back): a new id, scheduled now.
    pub fn again(&self, attempt: i64, flow: &str, now: i64) -> NewWork {
        NewWork {
            id: Uuid::now_v7(),
            deployment: self.deployment.clone(),
            flow: flow.to_string(),
            queue: self.queue.clone(),
            priority: self.priority,
            origin: Origin::Retry,
            scheduled_ts: now,
            interval: self.interval_start_ts.zip(self.interval_end_ts),
            parameters: self.parameters.clone(),
            idempotency_key: None,
            attempt,
            backfill_id: self.backfill_id,
        }
    }
}

/// What a worker asks for in one poll.
#[derive(Debug)]
pub struct ClaimRequest<'a> {
    pub worker: &'a str,
    /// The deployments it serves, with their `max_active_runs`.
    pub deployments: &'a HashMap<String, i64>,
    /// The queues it serves, first first (empty: every queue, equally).
    pub queues: &'a [String],
    pub capacity: usize,
    pub now: i64,
}

/// A worker as stored.
#[derive(Debug)]
pub struct WorkerRow {
    pub name: String,
    pub host: String,
    pub queues: String,
    pub deployments: String,
    pub last_seen_ts: i64,
    pub state: String,
}

/// A backfill as stored.
#[derive(Clone, Debug)]
pub struct BackfillRow {
    pub id: Uuid,
    pub deployment: String,
    pub start_ts: i64,
    pub end_ts: i64,
    pub chunk: Option<String>,
    pub max_active: i64,
    pub status: String,
    pub queue: String,
    pub created_ts: i64,
}

/// A flow run of a deployment by its data interval (for gap reports).
#[derive(Debug)]
pub struct IntervalRun {
    pub id: Uuid,
    pub state: String,
    pub interval_start_ts: i64,
    pub interval_end_ts: Option<i64>,
    pub created_ts: i64,
}

/// A run not yet ended, under a flow run that crashed (for recording it Crashed).
#[derive(Debug)]
pub struct Unfinished {
    pub id: Uuid,
    pub run_type: String,
    pub flow_run_id: Option<Uuid>,
    pub attempts: i64,
}

/// Defines the orchestration methods of `$name`, a store over database `$db`:
/// - `lock`: how a `SELECT` locks the rows it reads until the transaction ends (PostgreSQL's
///   `FOR UPDATE`; nothing for SQLite, whose one writer runs one transaction at a time);
/// - `skip_locked`: the same, skipping rows another transaction holds;
/// - `begin`: how a write transaction starts.
macro_rules! work_store {
    (
        $name:ident, $db:ty, $row:ty,
        lock: $lock:expr,
        skip_locked: $skip_locked:expr,
        begin: $begin:expr $(,)?
    ) => {
        impl $name {
            fn work_from_row(row: &$row) -> Result<$crate::store::work::WorkRow, $crate::store::StoreError> {
                use sqlx::Row;
                Ok($crate::store::work::WorkRow {
                    id: row.try_get("id")?,
                    deployment: row.try_get("deployment")?,
                    queue: row.try_get("queue")?,
                    priority: row.try_get("priority")?,
                    origin: row.try_get("origin")?,
                    status: row.try_get("status")?,
                    scheduled_ts: row.try_get("scheduled_ts")?,
                    interval_start_ts: row.try_get("interval_start_ts")?,
                    interval_end_ts: row.try_get("interval_end_ts")?,
                    parameters: row.try_get("parameters")?,
                    worker: row.try_get("worker")?,
                    attempt: row.try_get("attempt")?,
                    backfill_id: row.try_get("backfill_id")?,
                    resumed_ts: row.try_get("resumed_ts")?,
                })
            }

            /// Runs `work` in one write transaction; a connection whose write failed is closed.
            async fn write<T, F>(&self, work: F) -> Result<T, $crate::store::StoreError>
            where
                F: for<'c> FnOnce(
                    &'c mut sqlx::Transaction<'_, $db>,
                ) -> futures::future::BoxFuture<'c, Result<T, $crate::store::StoreError>>,
            {
                let mut conn = self.writer.acquire().await?;
                let result = async {
                    let mut tx = sqlx::Connection::begin_with(&mut *conn, $begin).await?;
                    let value = work(&mut tx).await?;
                    tx.commit().await?;
                    Ok(value)
                }
                .await;
                if result.is_err() {
                    conn.close_on_drop();
                }
                self.health.wrote(&result);
                result
            }

            /// Creates the runs that do not exist yet (a schedule's time, or an idempotency
            /// key, already taken is skipped) and their `Scheduled` flow runs; the ids created.
            pub(crate) async fn create_work(
                &self,
                items: Vec<$crate::store::work::NewWork>,
                now: i64,
            ) -> Result<Vec<uuid::Uuid>, $crate::store::StoreError> {
                use sqlx::QueryBuilder;
                self.write(move |tx| Box::pin(async move {
                    let mut created: Vec<uuid::Uuid> = Vec::new();
                    for chunk in items.chunks(200) {
                        let mut insert = QueryBuilder::<$db>::new(
                            "INSERT INTO work (id, deployment, queue, priority, origin, status,
                                 scheduled_ts, interval_start_ts, interval_end_ts, parameters,
                                 idempotency_key, attempt, backfill_id, created_ts) ",
                        );
                        insert.push_values(chunk, |mut row, w| {
                            row.push_bind(w.id)
                                .push_bind(w.deployment.clone())
                                .push_bind(w.queue.clone())
                                .push_bind(w.priority)
                                .push_bind(w.origin.as_str())
                                .push_bind("scheduled")
                                .push_bind(w.scheduled_ts)
                                .push_bind(w.interval.map(|i| i.0))
                                .push_bind(w.interval.map(|i| i.1))
                                .push_bind(w.parameters.clone())
                                .push_bind(w.idempotency_key.clone())
                                .push_bind(w.attempt)
                                .push_bind(w.backfill_id)
                                .push_bind(now);
                        });
                        insert.push(" ON CONFLICT DO NOTHING RETURNING id");
                        let ids: Vec<uuid::Uuid> = insert.build_query_scalar().fetch_all(&mut **tx).await?;
                        created.extend(ids);
                    }
                    let fresh: std::collections::HashSet<uuid::Uuid> = created.iter().copied().collect();
                    let runs: Vec<&$crate::store::work::NewWork> =
                        items.iter().filter(|w| fresh.contains(&w.id)).collect();
                    for chunk in runs.chunks(200) {
                        let mut insert = QueryBuilder::<$db>::new(
                            "INSERT INTO runs (id, run_type, name, state, state_final, state_ts,
                                 attempts, created_ts, parameters, tags, upstream, retries,
                                 deployment, scheduled_ts, interval_start_ts, interval_end_ts) ",
                        );
                        insert.push_values(chunk, |mut row, w| {
                            row.push_bind(w.id)
                                .push_bind("flow")
                                .push_bind(w.flow.clone())
                                .push_bind("Scheduled")
                                .push_bind(0i64)
                                .push_bind(now)
                                .push_bind(0i64)
                                .push_bind(now)
                                .push_bind(w.parameters.clone())
                                .push_bind("[]")
                                .push_bind("[]")
                                .push_bind(0i64)
                                .push_bind(w.deployment.clone())
                                .push_bind(w.scheduled_ts)
                                .push_bind(w.interval.map(|i| i.0))
                                .push_bind(w.interval.map(|i| i.1));
                        });
                        insert.push(" ON CONFLICT (id) DO NOTHING");
                        insert.build().execute(&mut **tx).await?;
                    }
                    Ok(created)
                })).await
            }

            /// Hands a run that ended back to its deployment's workers as attempt `attempt`
            /// of the same flow run, to resume; the row, or `None` if it had not ended (a
            /// worker holds it, or it is scheduled already).
            pub(crate) async fn resume_work(
                &self,
                id: uuid::Uuid,
                attempt: i64,
                now: i64,
            ) -> Result<Option<$crate::store::work::WorkRow>, $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    let row = sqlx::query(
                        "UPDATE work SET status = 'scheduled', worker = NULL, claimed_ts = NULL,
                             attempt = $1, resumed_ts = $2
                         WHERE id = $3 AND status IN ('done', 'crashed', 'cancelled') RETURNING *",
                    )
                    .bind(attempt)
                    .bind(now)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                    row.as_ref().map(Self::work_from_row).transpose()
                })).await
            }

            /// The run a deployment's idempotency key made, if any.
            pub(crate) async fn work_by_key(
                &self,
                deployment: &str,
                key: &str,
            ) -> Result<Option<$crate::store::work::WorkRow>, $crate::store::StoreError> {
                let row = sqlx::query("SELECT * FROM work WHERE deployment = $1 AND idempotency_key = $2")
                    .bind(deployment)
                    .bind(key)
                    .fetch_optional(&self.writer)
                    .await?;
                row.as_ref().map(Self::work_from_row).transpose()
            }

            /// One run the server owns.
            pub(crate) async fn work(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::store::work::WorkRow>, $crate::store::StoreError> {
                let row = sqlx::query("SELECT * FROM work WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.writer)
                    .await?;
                row.as_ref().map(Self::work_from_row).transpose()
            }

            /// A deployment's runs (or a backfill's), latest scheduled first.
            pub(crate) async fn work_list(
                &self,
                deployment: Option<&str>,
                backfill: Option<uuid::Uuid>,
                limit: i64,
            ) -> Result<Vec<$crate::store::work::WorkRow>, $crate::store::StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT * FROM work WHERE 1 = 1");
                if let Some(deployment) = deployment {
                    query.push(" AND deployment = ").push_bind(deployment.to_string());
                }
                if let Some(backfill) = backfill {
                    query.push(" AND backfill_id = ").push_bind(backfill);
                }
                query.push(" ORDER BY scheduled_ts DESC, id DESC LIMIT ").push_bind(limit);
                let rows = query.build().fetch_all(&self.reader).await?;
                rows.iter().map(Self::work_from_row).collect()
            }

            /// When the next run a worker could take becomes due after `after` (Unix
            /// nanoseconds). Runs already due but held back by a limit are not counted: a
            /// run ending wakes the polls waiting on those.
            pub(crate) async fn next_due(
                &self,
                deployments: &[String],
                queues: &[String],
                after: i64,
            ) -> Result<Option<i64>, $crate::store::StoreError> {
                if deployments.is_empty() {
                    return Ok(None);
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT MIN(scheduled_ts) FROM work WHERE status = 'scheduled' AND scheduled_ts > ",
                );
                query.push_bind(after).push(" AND deployment IN (");
                let mut list = query.separated(", ");
                for d in deployments {
                    list.push_bind(d.clone());
                }
                query.push(")");
                if !queues.is_empty() {
                    query.push(" AND queue IN (");
                    let mut list = query.separated(", ");
                    for q in queues {
                        list.push_bind(q.clone());
                    }
                    query.push(")");
                }
                let next: Option<i64> = query.build_query_scalar().fetch_one(&self.reader).await?;
                Ok(next)
            }

            /// Hands due runs to a worker: each to exactly one, at most `max_active_runs` of a
            /// deployment (and `max_active` of a backfill) at once, the worker's first queue
            /// first, then higher priority, then oldest.
            pub(crate) async fn claim(
                &self,
                request: &$crate::store::work::ClaimRequest<'_>,
            ) -> Result<Vec<$crate::store::work::WorkRow>, $crate::store::StoreError> {
                use sqlx::{QueryBuilder, Row};
                if request.capacity == 0 || request.deployments.is_empty() {
                    return Ok(Vec::new());
                }
                let filter = |query: &mut QueryBuilder<$db>| {
                    if !request.queues.is_empty() {
                        query.push(" AND queue IN (");
                        let mut list = query.separated(", ");
                        for q in request.queues {
                            list.push_bind(q.clone());
                        }
                        query.push(")");
                    }
                };
                // Which deployments have due runs, best first (by their best run). One row a
                // deployment: many due runs of one held back by its limit (a backfill) must not
                // hide the others'.
                let mut query = QueryBuilder::<$db>::new(
                    "SELECT deployment FROM work WHERE status = 'scheduled' AND scheduled_ts <= ",
                );
                query.push_bind(request.now).push(" AND deployment IN (");
                let mut list = query.separated(", ");
                for d in request.deployments.keys() {
                    list.push_bind(d.clone());
                }
                query.push(")");
                filter(&mut query);
                query.push(" GROUP BY deployment ORDER BY ");
                if !request.queues.is_empty() {
                    query.push("MIN(CASE queue");
                    for (rank, q) in request.queues.iter().enumerate() {
                        query.push(" WHEN ").push_bind(q.clone()).push(" THEN ").push_bind(rank as i64);
                    }
                    query.push(" END), ");
                }
                query.push("MAX(priority) DESC, MIN(scheduled_ts), deployment");
                let due: Vec<String> = query.build_query_scalar().fetch_all(&self.reader).await?;
                if due.is_empty() {
                    return Ok(Vec::new());
                }
                // Those at their `max_active_runs` are skipped here (the claim checks again,
                // under the deployment's lock).
                let mut query = QueryBuilder::<$db>::new(
                    "SELECT deployment, COUNT(*) AS active FROM work WHERE status = 'claimed' AND deployment IN (",
                );
                let mut list = query.separated(", ");
                for d in &due {
                    list.push_bind(d.clone());
                }
                query.push(") GROUP BY deployment");
                let mut active: std::collections::HashMap<String, i64> = Default::default();
                for row in query.build().fetch_all(&self.reader).await? {
                    active.insert(row.try_get("deployment")?, row.try_get("active")?);
                }
                let order_of: Vec<String> = due
                    .into_iter()
                    .filter(|d| {
                        let max = request.deployments.get(d).copied().unwrap_or(1);
                        active.get(d).copied().unwrap_or(0) < max
                    })
                    .collect();
                let mut claimed = Vec::new();
                for deployment in order_of {
                    let room = request.capacity - claimed.len();
                    if room == 0 {
                        break;
                    }
                    let max_active = request.deployments.get(&deployment).copied().unwrap_or(1);
                    let worker = request.worker.to_string();
                    let now = request.now;
                    let queues = request.queues.to_vec();
                    let got = self.write(move |tx| Box::pin(async move {
                        // Claims of one deployment take turns (its row is locked until the
                        // end of the transaction), so `max_active_runs` holds across servers.
                        sqlx::query(concat!("SELECT name FROM deployments WHERE name = $1", $lock))
                            .bind(&deployment)
                            .fetch_optional(&mut **tx)
                            .await?;
                        let active: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM work WHERE deployment = $1 AND status = 'claimed'",
                        )
                        .bind(&deployment)
                        .fetch_one(&mut **tx)
                        .await?;
                        let room = (max_active - active).clamp(0, room as i64);
                        if room == 0 {
                            return Ok(Vec::new());
                        }
                        let mut query = QueryBuilder::<$db>::new(
                            "SELECT id, backfill_id FROM work WHERE status = 'scheduled' AND deployment = ",
                        );
                        query.push_bind(deployment.clone()).push(" AND scheduled_ts <= ").push_bind(now);
                        if !queues.is_empty() {
                            query.push(" AND queue IN (");
                            let mut list = query.separated(", ");
                            for q in &queues {
                                list.push_bind(q.clone());
                            }
                            query.push(")");
                        }
                        query.push(" ORDER BY ");
                        if !queues.is_empty() {
                            query.push("CASE queue");
                            for (rank, q) in queues.iter().enumerate() {
                                query.push(" WHEN ").push_bind(q.clone()).push(" THEN ").push_bind(rank as i64);
                            }
                            query.push(" END, ");
                        }
                        query.push("priority DESC, scheduled_ts, id LIMIT ").push_bind(room * 4 + 8);
                        query.push($skip_locked);
                        let candidates: Vec<(uuid::Uuid, Option<uuid::Uuid>)> = query
                            .build()
                            .fetch_all(&mut **tx)
                            .await?
                            .iter()
                            .map(|r| Ok((r.try_get("id")?, r.try_get("backfill_id")?)))
                            .collect::<Result<_, sqlx::Error>>()?;
                        // A backfill's own limit.
                        let mut backfill_room: std::collections::HashMap<uuid::Uuid, i64> = Default::default();
                        for backfill in candidates.iter().filter_map(|c| c.1) {
                            if backfill_room.contains_key(&backfill) {
                                continue;
                            }
                            let max: Option<i64> = sqlx::query_scalar(concat!(
                                "SELECT max_active FROM backfills WHERE id = $1", $lock
                            ))
                            .bind(backfill)
                            .fetch_optional(&mut **tx)
                            .await?;
                            let active: i64 = sqlx::query_scalar(
                                "SELECT COUNT(*) FROM work WHERE backfill_id = $1 AND status = 'claimed'",
                            )
                            .bind(backfill)
                            .fetch_one(&mut **tx)
                            .await?;
                            backfill_room.insert(backfill, max.unwrap_or(1) - active);
                        }
                        let mut picked = Vec::new();
                        for (id, backfill) in candidates {
                            if picked.len() as i64 >= room {
                                break;
                            }
                            if let Some(b) = backfill {
                                let left = backfill_room.entry(b).or_insert(0);
                                if *left <= 0 {
                                    continue;
                                }
                                *left -= 1;
                            }
                            picked.push(id);
                        }
                        if picked.is_empty() {
                            return Ok(Vec::new());
                        }
                        let mut update = QueryBuilder::<$db>::new("UPDATE work SET status = 'claimed', worker = ");
                        update.push_bind(worker.clone()).push(", claimed_ts = ").push_bind(now);
                        update.push(" WHERE status = 'scheduled' AND id IN (");
                        let mut list = update.separated(", ");
                        for id in &picked {
                            list.push_bind(*id);
                        }
                        update.push(") RETURNING *");
                        let rows = update.build().fetch_all(&mut **tx).await?;
                        let rows = rows.iter().map(Self::work_from_row).collect::<Result<Vec<_>, _>>()?;
                        if !rows.is_empty() {
                            let mut live = QueryBuilder::<$db>::new(
                                "INSERT INTO live_runs (run_id, worker, heartbeat_ts, cancel_requested) ",
                            );
                            live.push_values(&rows, |mut row, w| {
                                row.push_bind(w.id).push_bind(worker.clone()).push_bind(now).push_bind(0i64);
                            });
                            live.push(
                                " ON CONFLICT (run_id) DO UPDATE SET worker = excluded.worker,
                                   heartbeat_ts = excluded.heartbeat_ts",
                            );
                            live.build().execute(&mut **tx).await?;
                        }
                        Ok(rows)
                    })).await?;
                    claimed.extend(got);
                }
                Ok(claimed)
            }

            /// Heartbeats for `runs`: of a worker's claimed runs (`worker`), or of any program's
            /// flow runs. The runs to cancel, and (for a worker) those no longer its own.
            pub(crate) async fn heartbeat(
                &self,
                worker: Option<String>,
                runs: Vec<uuid::Uuid>,
                now: i64,
            ) -> Result<(Vec<uuid::Uuid>, Vec<uuid::Uuid>), $crate::store::StoreError> {
                use sqlx::{QueryBuilder, Row};
                if runs.is_empty() {
                    return Ok((Vec::new(), Vec::new()));
                }
                self.write(move |tx| Box::pin(async move {
                    let ids = |query: &mut QueryBuilder<$db>| {
                        query.push(" run_id IN (");
                        let mut list = query.separated(", ");
                        for id in &runs {
                            list.push_bind(*id);
                        }
                        query.push(")");
                    };
                    let mut lost = Vec::new();
                    match &worker {
                        Some(worker) => {
                            let mut update = QueryBuilder::<$db>::new("UPDATE live_runs SET heartbeat_ts = ");
                            update.push_bind(now).push(" WHERE worker = ").push_bind(worker.clone()).push(" AND");
                            ids(&mut update);
                            update.push(" RETURNING run_id");
                            let kept: std::collections::HashSet<uuid::Uuid> =
                                update.build_query_scalar().fetch_all(&mut **tx).await?.into_iter().collect();
                            lost.extend(runs.iter().filter(|id| !kept.contains(id)));
                        }
                        None => {
                            // Runs already ended get no live row.
                            let mut ended = QueryBuilder::<$db>::new(
                                "SELECT id FROM runs WHERE state_final = 2 AND id IN (",
                            );
                            let mut list = ended.separated(", ");
                            for id in &runs {
                                list.push_bind(*id);
                            }
                            ended.push(")");
                            let ended: std::collections::HashSet<uuid::Uuid> =
                                ended.build_query_scalar().fetch_all(&mut **tx).await?.into_iter().collect();
                            let live: Vec<uuid::Uuid> = runs.iter().copied().filter(|id| !ended.contains(id)).collect();
                            if !live.is_empty() {
                                let mut upsert = QueryBuilder::<$db>::new(
                                    "INSERT INTO live_runs (run_id, worker, heartbeat_ts, cancel_requested) ",
                                );
                                upsert.push_values(&live, |mut row, id| {
                                    row.push_bind(*id).push_bind(None::<String>).push_bind(now).push_bind(0i64);
                                });
                                upsert.push(" ON CONFLICT (run_id) DO UPDATE SET heartbeat_ts = excluded.heartbeat_ts");
                                upsert.build().execute(&mut **tx).await?;
                            }
                        }
                    }
                    let mut cancel = QueryBuilder::<$db>::new("SELECT run_id FROM live_runs WHERE cancel_requested = 1 AND");
                    ids(&mut cancel);
                    let cancel: Vec<uuid::Uuid> = cancel
                        .build()
                        .fetch_all(&mut **tx)
                        .await?
                        .iter()
                        .map(|r| r.try_get("run_id"))
                        .collect::<Result<_, _>>()?;
                    Ok((cancel, lost))
                })).await
            }

            /// Which of `runs` a cancel was asked for (a read: nothing written).
            pub(crate) async fn cancels_asked(
                &self,
                runs: &[uuid::Uuid],
            ) -> Result<Vec<uuid::Uuid>, $crate::store::StoreError> {
                if runs.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT run_id FROM live_runs WHERE cancel_requested = 1 AND run_id IN (",
                );
                let mut list = query.separated(", ");
                for id in runs {
                    list.push_bind(*id);
                }
                query.push(")");
                Ok(query.build_query_scalar().fetch_all(&self.reader).await?)
            }

            /// Asks for a run to be cancelled: a run not yet claimed is cancelled at once
            /// (`Some(row)`); a live one is marked for its program's next heartbeat (`None`,
            /// `true`); `None, false` if neither.
            pub(crate) async fn request_cancel(
                &self,
                id: uuid::Uuid,
            ) -> Result<(Option<$crate::store::work::WorkRow>, bool), $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    let row = sqlx::query(
                        "UPDATE work SET status = 'cancelled' WHERE id = $1 AND status = 'scheduled' RETURNING *",
                    )
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if let Some(row) = row {
                        return Ok((Some(Self::work_from_row(&row)?), false));
                    }
                    let live = sqlx::query("UPDATE live_runs SET cancel_requested = 1 WHERE run_id = $1")
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                    Ok((None, live.rows_affected() > 0))
                })).await
            }

            /// Removes the live rows whose last heartbeat is before `cutoff` (each once, even
            /// with several servers sweeping): the runs and their workers.
            pub(crate) async fn sweep(
                &self,
                cutoff: i64,
            ) -> Result<Vec<(uuid::Uuid, Option<String>)>, $crate::store::StoreError> {
                use sqlx::Row;
                self.write(move |tx| Box::pin(async move {
                    let rows = sqlx::query(
                        "DELETE FROM live_runs WHERE heartbeat_ts < $1 RETURNING run_id, worker",
                    )
                    .bind(cutoff)
                    .fetch_all(&mut **tx)
                    .await?;
                    rows.iter()
                        .map(|r| Ok((r.try_get("run_id")?, r.try_get("worker")?)))
                        .collect()
                })).await
            }

            /// Records how a claimed run ended: `status` for the run `id` if it is still
            /// `scheduled` or `claimed`; the row as it was.
            pub(crate) async fn settle(
                &self,
                id: uuid::Uuid,
                status: &'static str,
                worker: Option<String>,
            ) -> Result<Option<$crate::store::work::WorkRow>, $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    let mut query = sqlx::QueryBuilder::<$db>::new("UPDATE work SET status = ");
                    query.push_bind(status).push(" WHERE id = ").push_bind(id);
                    match worker {
                        // A worker handing a run back: its Cancelled events may have settled
                        // it `done` already.
                        Some(worker) => query.push(" AND status IN ('claimed', 'done') AND worker = ").push_bind(worker),
                        None => query.push(" AND status IN ('scheduled', 'claimed')"),
                    };
                    query.push(" RETURNING *");
                    let row = query.build().fetch_optional(&mut **tx).await?;
                    sqlx::query("DELETE FROM live_runs WHERE run_id = $1").bind(id).execute(&mut **tx).await?;
                    row.as_ref().map(Self::work_from_row).transpose()
                })).await
            }

            /// The flow runs among `ids` that ended: their work is done and they are no
            /// longer live.
            pub(crate) async fn finished(
                &self,
                ids: Vec<uuid::Uuid>,
            ) -> Result<(), $crate::store::StoreError> {
                use sqlx::QueryBuilder;
                self.write(move |tx| Box::pin(async move {
                    let mut update = QueryBuilder::<$db>::new(
                        "UPDATE work SET status = 'done' WHERE status IN ('scheduled', 'claimed') AND id IN (",
                    );
                    let mut list = update.separated(", ");
                    for id in &ids {
                        list.push_bind(*id);
                    }
                    update.push(")");
                    update.build().execute(&mut **tx).await?;
                    let mut delete = QueryBuilder::<$db>::new("DELETE FROM live_runs WHERE run_id IN (");
                    let mut list = delete.separated(", ");
                    for id in &ids {
                        list.push_bind(*id);
                    }
                    delete.push(")");
                    delete.build().execute(&mut **tx).await?;
                    Ok(())
                })).await
            }

            /// The runs not yet ended under flow run `id`: itself, its task runs, its child
            /// flow runs and theirs.
            pub(crate) async fn unfinished_under(
                &self,
                id: uuid::Uuid,
            ) -> Result<Vec<$crate::store::work::Unfinished>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut found = Vec::new();
                let mut flows = vec![id];
                let mut seen = std::collections::HashSet::new();
                while let Some(flow) = flows.pop() {
                    if !seen.insert(flow) || seen.len() > 10_000 {
                        continue;
                    }
                    let rows = sqlx::query(
                        "SELECT id, run_type, flow_run_id, attempts, state_final FROM runs
                         WHERE id = $1 OR flow_run_id = $2 OR parent_flow_run_id = $3",
                    )
                    .bind(flow)
                    .bind(flow)
                    .bind(flow)
                    .fetch_all(&self.writer)
                    .await?;
                    for row in rows {
                        let run: uuid::Uuid = row.try_get("id")?;
                        let run_type: String = row.try_get("run_type")?;
                        if run_type == "flow" && run != flow {
                            flows.push(run);
                            continue;
                        }
                        let state_final: i64 = row.try_get("state_final")?;
                        if state_final == 0 {
                            found.push($crate::store::work::Unfinished {
                                id: run,
                                run_type,
                                flow_run_id: row.try_get("flow_run_id")?,
                                attempts: row.try_get("attempts")?,
                            });
                        }
                    }
                }
                Ok(found)
            }

            /// A flow run's state rank (0 in progress, 1 crashed, 2 ended) and its retries.
            pub(crate) async fn run_rank(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<(i64, i64, String)>, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query("SELECT state_final, retries, state FROM runs WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.writer)
                    .await?;
                row.map(|r| {
                    let retries: Option<i64> = r.try_get("retries")?;
                    Ok((r.try_get("state_final")?, retries.unwrap_or(0), r.try_get("state")?))
                })
                .transpose()
            }

            /// Records a worker's poll.
            pub(crate) async fn worker_seen(
                &self,
                worker: $crate::store::work::WorkerRow,
            ) -> Result<(), $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO workers (name, host, queues, deployments, last_seen_ts, state)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (name) DO UPDATE SET host = excluded.host, queues = excluded.queues,
                             deployments = excluded.deployments, last_seen_ts = excluded.last_seen_ts,
                             state = excluded.state",
                    )
                    .bind(worker.name)
                    .bind(worker.host)
                    .bind(worker.queues)
                    .bind(worker.deployments)
                    .bind(worker.last_seen_ts)
                    .bind(worker.state)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                })).await
            }

            /// Every worker, with the runs each holds.
            pub(crate) async fn workers(
                &self,
            ) -> Result<Vec<($crate::store::work::WorkerRow, Vec<uuid::Uuid>)>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT * FROM workers ORDER BY name").fetch_all(&self.reader).await?;
                let held = sqlx::query("SELECT run_id, worker FROM live_runs WHERE worker IS NOT NULL")
                    .fetch_all(&self.reader)
                    .await?;
                let mut by_worker: std::collections::HashMap<String, Vec<uuid::Uuid>> = Default::default();
                for row in held {
                    let worker: String = row.try_get("worker")?;
                    by_worker.entry(worker).or_default().push(row.try_get("run_id")?);
                }
                rows.iter()
                    .map(|r| {
                        let name: String = r.try_get("name")?;
                        let runs = by_worker.remove(&name).unwrap_or_default();
                        Ok((
                            $crate::store::work::WorkerRow {
                                name,
                                host: r.try_get("host")?,
                                queues: r.try_get("queues")?,
                                deployments: r.try_get("deployments")?,
                                last_seen_ts: r.try_get("last_seen_ts")?,
                                state: r.try_get("state")?,
                            },
                            runs,
                        ))
                    })
                    .collect()
            }

            /// Every deployment's spec, its paused flag set from the API (if any), and when a
            /// program last registered it.
            pub(crate) async fn deployment_rows(
                &self,
                only: Option<String>,
            ) -> Result<Vec<(String, Option<bool>, i64)>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT spec, paused, updated_ts FROM deployments");
                if let Some(only) = only {
                    query.push(" WHERE name = ").push_bind(only);
                }
                query.push(" ORDER BY name");
                let rows = query.build().fetch_all(&self.writer).await?;
                rows.iter()
                    .map(|r| {
                        let paused: Option<i64> = r.try_get("paused")?;
                        Ok((r.try_get("spec")?, paused.map(|p| p != 0), r.try_get("updated_ts")?))
                    })
                    .collect()
            }

            /// The latest time each deployment's schedules made a run for.
            pub(crate) async fn last_scheduled(
                &self,
                only: Option<String>,
            ) -> Result<std::collections::HashMap<String, i64>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT deployment, MAX(scheduled_ts) AS last FROM work WHERE origin = 'schedule'",
                );
                if let Some(only) = only {
                    query.push(" AND deployment = ").push_bind(only);
                }
                query.push(" GROUP BY deployment");
                let rows = query.build().fetch_all(&self.writer).await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("deployment")?, r.try_get("last")?)))
                    .collect()
            }

            /// Pauses or resumes a deployment from the API (an operator's pause is no longer an
            /// automation's); whether it exists.
            pub(crate) async fn set_paused(
                &self,
                name: String,
                paused: bool,
            ) -> Result<bool, $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    let done = sqlx::query("UPDATE deployments SET paused = $1, paused_by = NULL WHERE name = $2")
                        .bind(i64::from(paused))
                        .bind(name)
                        .execute(&mut **tx)
                        .await?;
                    Ok(done.rows_affected() > 0)
                })).await
            }

            /// Deletes a deployment's scheduled runs after `after` that no worker took (its
            /// schedule changed, or it was paused); the next tick makes them again if due.
            pub(crate) async fn drop_future_scheduled(
                &self,
                deployment: String,
                after: i64,
            ) -> Result<u64, $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
                        "DELETE FROM work WHERE deployment = $1 AND origin = 'schedule'
                             AND status = 'scheduled' AND scheduled_ts > $2 RETURNING id",
                    )
                    .bind(deployment)
                    .bind(after)
                    .fetch_all(&mut **tx)
                    .await?;
                    for chunk in ids.chunks(500) {
                        let mut delete = sqlx::QueryBuilder::<$db>::new("DELETE FROM runs WHERE state = 'Scheduled' AND id IN (");
                        let mut list = delete.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        delete.push(")");
                        delete.build().execute(&mut **tx).await?;
                    }
                    Ok(ids.len() as u64)
                })).await
            }

            /// Stores a backfill.
            pub(crate) async fn put_backfill(
                &self,
                b: $crate::store::work::BackfillRow,
            ) -> Result<(), $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO backfills (id, deployment, start_ts, end_ts, chunk, max_active, status, created_ts, queue)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(b.id)
                    .bind(b.deployment)
                    .bind(b.start_ts)
                    .bind(b.end_ts)
                    .bind(b.chunk)
                    .bind(b.max_active)
                    .bind(b.status)
                    .bind(b.created_ts)
                    .bind(b.queue)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                })).await
            }

            /// Backfills, newest first (one, with `id`).
            pub(crate) async fn backfills(
                &self,
                id: Option<uuid::Uuid>,
            ) -> Result<Vec<$crate::store::work::BackfillRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT * FROM backfills");
                if let Some(id) = id {
                    query.push(" WHERE id = ").push_bind(id);
                }
                query.push(" ORDER BY created_ts DESC LIMIT 200");
                let rows = query.build().fetch_all(&self.reader).await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::work::BackfillRow {
                            id: r.try_get("id")?,
                            deployment: r.try_get("deployment")?,
                            start_ts: r.try_get("start_ts")?,
                            end_ts: r.try_get("end_ts")?,
                            chunk: r.try_get("chunk")?,
                            max_active: r.try_get("max_active")?,
                            status: r.try_get("status")?,
                            queue: r.try_get("queue")?,
                            created_ts: r.try_get("created_ts")?,
                        })
                    })
                    .collect()
            }

            /// Cancels a backfill: its runs not yet claimed are cancelled (their ids).
            pub(crate) async fn cancel_backfill(
                &self,
                id: uuid::Uuid,
            ) -> Result<Vec<uuid::Uuid>, $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    sqlx::query("UPDATE backfills SET status = 'cancelled' WHERE id = $1")
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
                        "UPDATE work SET status = 'cancelled' WHERE backfill_id = $1 AND status = 'scheduled' RETURNING id",
                    )
                    .bind(id)
                    .fetch_all(&mut **tx)
                    .await?;
                    Ok(ids)
                })).await
            }

            /// A deployment's flow runs whose data interval starts in `[start, end)`.
            pub(crate) async fn interval_runs(
                &self,
                deployment: &str,
                start: i64,
                end: i64,
            ) -> Result<Vec<$crate::store::work::IntervalRun>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT id, state, interval_start_ts, interval_end_ts, created_ts FROM runs
                     WHERE deployment = $1 AND interval_start_ts >= $2 AND interval_start_ts < $3
                       AND run_type = 'flow'",
                )
                .bind(deployment)
                .bind(start)
                .bind(end)
                .fetch_all(&self.reader)
                .await?;
                rows.iter()
                    .map(|r| {
                        let created: Option<i64> = r.try_get("created_ts")?;
                        Ok($crate::store::work::IntervalRun {
                            id: r.try_get("id")?,
                            state: r.try_get("state")?,
                            interval_start_ts: r.try_get("interval_start_ts")?,
                            interval_end_ts: r.try_get("interval_end_ts")?,
                            created_ts: created.unwrap_or(0),
                        })
                    })
                    .collect()
            }
        }
    };
}

impl Store {
    /// Creates runs (skipping those whose schedule slot or idempotency key is taken); the ids
    /// created.
    pub async fn create_work(
        &self,
        items: Vec<NewWork>,
        now: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.create_work(items, now))
    }

    /// Schedules a run that ended again, to resume, as attempt `attempt`; `None` if it had
    /// not ended.
    pub async fn resume_work(
        &self,
        id: Uuid,
        attempt: i64,
        now: i64,
    ) -> Result<Option<WorkRow>, StoreError> {
        dispatch!(self.resume_work(id, attempt, now))
    }

    /// The run a deployment's idempotency key made.
    pub async fn work_by_key(
        &self,
        deployment: &str,
        key: &str,
    ) -> Result<Option<WorkRow>, StoreError> {
        dispatch!(self.work_by_key(deployment, key))
    }

    /// One run the server owns.
    pub async fn work(&self, id: Uuid) -> Result<Option<WorkRow>, StoreError> {
        dispatch!(self.work(id))
    }

    /// Runs the server owns, of a deployment or a backfill, latest scheduled first.
    pub async fn work_list(
        &self,
        deployment: Option<&str>,
        backfill: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<WorkRow>, StoreError> {
        dispatch!(self.work_list(deployment, backfill, limit))
    }

    /// When the next run a worker could take becomes due, after `after` (runs already due
    /// but held back by a limit wait for a run to end, which wakes the polls).
    pub async fn next_due(
        &self,
        deployments: &[String],
        queues: &[String],
        after: i64,
    ) -> Result<Option<i64>, StoreError> {
        dispatch!(self.next_due(deployments, queues, after))
    }

    /// Hands due runs to a worker.
    pub async fn claim(&self, request: &ClaimRequest<'_>) -> Result<Vec<WorkRow>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match dispatch!(self.claim(request)) {
                Err(error) if error.is_conflict() && attempt < 8 => {
                    tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..=10)))
                        .await;
                }
                result => return result,
            }
        }
    }

    /// Heartbeats; the runs to cancel and those lost.
    pub async fn heartbeat(
        &self,
        worker: Option<String>,
        runs: Vec<Uuid>,
        now: i64,
    ) -> Result<(Vec<Uuid>, Vec<Uuid>), StoreError> {
        dispatch!(self.heartbeat(worker, runs, now))
    }

    /// Which of `runs` a cancel was asked for (a read).
    pub async fn cancels_asked(&self, runs: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        dispatch!(self.cancels_asked(runs))
    }

    /// Asks for a run to be cancelled.
    pub async fn request_cancel(&self, id: Uuid) -> Result<(Option<WorkRow>, bool), StoreError> {
        dispatch!(self.request_cancel(id))
    }

    /// Removes the live runs whose heartbeats stopped before `cutoff`.
    pub async fn sweep(&self, cutoff: i64) -> Result<Vec<(Uuid, Option<String>)>, StoreError> {
        dispatch!(self.sweep(cutoff))
    }

    /// Records how a run the server owns ended.
    pub async fn settle(
        &self,
        id: Uuid,
        status: &'static str,
        worker: Option<String>,
    ) -> Result<Option<WorkRow>, StoreError> {
        dispatch!(self.settle(id, status, worker))
    }

    /// Flow runs that ended: their work is done, they are no longer live.
    pub async fn finished(&self, ids: Vec<Uuid>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        dispatch!(self.finished(ids))
    }

    /// The runs not yet ended under a flow run.
    pub async fn unfinished_under(&self, id: Uuid) -> Result<Vec<Unfinished>, StoreError> {
        dispatch!(self.unfinished_under(id))
    }

    /// A flow run's state rank, retries and state.
    pub async fn run_rank(&self, id: Uuid) -> Result<Option<(i64, i64, String)>, StoreError> {
        dispatch!(self.run_rank(id))
    }

    /// Records a worker's poll.
    pub async fn worker_seen(&self, worker: WorkerRow) -> Result<(), StoreError> {
        dispatch!(self.worker_seen(worker))
    }

    /// Every worker with the runs it holds.
    pub async fn workers(&self) -> Result<Vec<(WorkerRow, Vec<Uuid>)>, StoreError> {
        dispatch!(self.workers())
    }

    /// Every deployment's spec, paused flag from the API, and registration time.
    pub async fn deployment_rows(&self) -> Result<Vec<(String, Option<bool>, i64)>, StoreError> {
        dispatch!(self.deployment_rows(None))
    }

    /// One deployment's spec, paused flag from the API, and registration time.
    pub async fn deployment_row(
        &self,
        name: &str,
    ) -> Result<Option<(String, Option<bool>, i64)>, StoreError> {
        Ok(dispatch!(self.deployment_rows(Some(name.to_string())))?
            .into_iter()
            .next())
    }

    /// The latest scheduled time of each deployment's schedule-made runs.
    pub async fn last_scheduled(
        &self,
        only: Option<&str>,
    ) -> Result<HashMap<String, i64>, StoreError> {
        dispatch!(self.last_scheduled(only.map(str::to_string)))
    }

    /// Pauses or resumes a deployment; whether it exists.
    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        dispatch!(self.set_paused(name.to_string(), paused))
    }

    /// Deletes a deployment's unclaimed scheduled runs after `after`.
    pub async fn drop_future_scheduled(
        &self,
        deployment: &str,
        after: i64,
    ) -> Result<u64, StoreError> {
        dispatch!(self.drop_future_scheduled(deployment.to_string(), after))
    }

    /// Stores a backfill.
    pub async fn put_backfill(&self, backfill: BackfillRow) -> Result<(), StoreError> {
        dispatch!(self.put_backfill(backfill))
    }

    /// Backfills, newest first, or one.
    pub async fn backfills(&self, id: Option<Uuid>) -> Result<Vec<BackfillRow>, StoreError> {
        dispatch!(self.backfills(id))
    }

    /// Cancels a backfill; the ids of its runs cancelled.
    pub async fn cancel_backfill(&self, id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        dispatch!(self.cancel_backfill(id))
    }

    /// A deployment's flow runs by data interval start in `[start, end)`.
    pub async fn interval_runs(
        &self,
        deployment: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<IntervalRun>, StoreError> {
        dispatch!(self.interval_runs(deployment, start, end))
    }
}

/// For each interval, its latest run (by creation) and how many it had.
pub fn latest_by_interval<'a>(
    intervals: &[(i64, i64)],
    runs: &'a [IntervalRun],
) -> Vec<(Option<&'a IntervalRun>, u32)> {
    let mut by_start: HashMap<i64, (Option<&'a IntervalRun>, u32)> = HashMap::new();
    for run in runs {
        let entry = by_start.entry(run.interval_start_ts).or_insert((None, 0));
        entry.1 += 1;
        if entry.0.is_none_or(|r| r.created_ts <= run.created_ts) {
            entry.0 = Some(run);
        }
    }
    intervals
        .iter()
        .map(|(start, _)| by_start.get(start).copied().unwrap_or((None, 0)))
        .collect()
}
