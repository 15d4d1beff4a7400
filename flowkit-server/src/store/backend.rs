//! The store's implementation, written once and stamped out for each database by `backend!`.
//!
//! The SQL is the common part of SQLite's and PostgreSQL's dialects (`CASE` instead of the
//! two-argument `max`/`GREATEST`, upserts with `excluded`, `RETURNING`); the few spellings that
//! differ come in as arguments.

/// Defines `$name`, a store over database `$db`:
/// - `tag_filter`: SQL testing that `runs.tags` (a JSON array) holds the bound value (the value
///   is bound right after it);
/// - `like`: the case-insensitive `LIKE` (SQLite's `LIKE` is; PostgreSQL's `ILIKE`);
/// - `id_hex`: `runs.id` as 32 lowercase hex digits, for searching by part of an id;
/// - `task_index`, `parent_index`: index hints for the detail page's queries (or nothing);
/// - `fresh_by_lookup`: whether the events a batch stores for the first time are found by looking
///   their ids up before the insert (one writer at a time) rather than by `RETURNING` (many);
/// - `begin`: how a write transaction starts (SQLite's `BEGIN IMMEDIATE` takes the write lock
///   first, so a transaction that reads before it writes never has to give up).
macro_rules! backend {
    (
        $name:ident, $db:ty, $row:ty,
        tag_filter: $tag_filter:expr,
        like: $like:expr,
        id_hex: $id_hex:expr,
        task_index: $task_index:expr,
        parent_index: $parent_index:expr,
        fresh_by_lookup: $fresh_by_lookup:expr,
        begin: $begin:expr $(,)?
    ) => {
        /// A store over one database.
        #[derive(Clone)]
        pub struct $name {
            /// Writes go through this pool (one connection for SQLite, so writers queue instead
            /// of meeting "database is locked").
            writer: sqlx::Pool<$db>,
            reader: sqlx::Pool<$db>,
            /// Whether it can store events now.
            health: std::sync::Arc<$crate::store::health::Health>,
        }

        impl $name {
            /// Stores a batch in one transaction. A connection whose write failed is closed, not
            /// reused: after a failed `COMMIT` (a full disk) SQLite may have ended the
            /// transaction itself, and the connection would refuse every later `BEGIN`. The batch
            /// is acknowledged only if the database file is still the one opened.
            pub(crate) async fn ingest(
                &self,
                events: &[flowkit::events::Event],
            ) -> Result<$crate::store::Ingested, $crate::store::StoreError> {
                let mut conn = self.writer.acquire().await?;
                let result = Self::ingest_on(&mut conn, events).await;
                if result.is_err() {
                    conn.close_on_drop();
                }
                let result = result.and_then(|done| self.health.check_file().map(|()| done));
                self.health.wrote(&result);
                result
            }

            async fn ingest_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                events: &[flowkit::events::Event],
            ) -> Result<$crate::store::Ingested, $crate::store::StoreError> {
                use std::collections::HashSet;
                use sqlx::QueryBuilder;
                use uuid::Uuid;
                use $crate::store::{merge_changes, waves, Change, Created, EventRow, Ingested, ROWS_PER_STATEMENT};

                let rows: Vec<EventRow<'_>> = events.iter().enumerate().filter_map(EventRow::new).collect();
                let mut tx = sqlx::Connection::begin_with(conn, $begin).await?;
                // Which rows (by position in `rows`) this batch stores for the first time.
                let mut fresh = vec![false; rows.len()];
                for (number, chunk) in rows.chunks(ROWS_PER_STATEMENT).enumerate() {
                    let fresh = &mut fresh[number * ROWS_PER_STATEMENT..][..chunk.len()];
                    let insert_of = || {
                        let mut insert = QueryBuilder::<$db>::new(
                            "INSERT INTO events (id, ts, flow_run_id, task_run_id, kind, level, body) ",
                        );
                        insert.push_values(chunk, |mut row, event| {
                            row.push_bind(event.event.id)
                                .push_bind(event.ts)
                                .push_bind(event.event.flow_run_id)
                                .push_bind(event.event.task_run_id)
                                .push_bind(event.kind)
                                .push_bind(event.level.as_deref())
                                .push_bind(event.body.clone());
                        });
                        insert.push(" ON CONFLICT (id) DO NOTHING");
                        insert
                    };
                    let mut insert = insert_of();
                    // The first row of each id not stored before is fresh (an event may come
                    // twice in one batch).
                    let mark = |fresh: &mut [bool], stored: &HashSet<Uuid>| {
                        let mut seen = HashSet::with_capacity(chunk.len());
                        for (event, fresh) in chunk.iter().zip(fresh.iter_mut()) {
                            *fresh = stored.contains(&event.event.id) && seen.insert(event.event.id);
                        }
                    };
                    if $fresh_by_lookup {
                        // One writer at a time. Usually every event is new: the insert, in a
                        // savepoint, says so by the rows it stored, and nothing is asked.
                        let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
                        let stored = insert.build().execute(&mut *attempt).await?.rows_affected();
                        if stored == chunk.len() as u64 {
                            attempt.commit().await?;
                            fresh.fill(true);
                            continue;
                        }
                        // Some were stored before (a batch sent again): undo, and find which.
                        // The ids absent just before the insert are exactly those it stores.
                        attempt.rollback().await?;
                        let mut insert = insert_of();
                        let mut lookup = QueryBuilder::<$db>::new("SELECT id FROM events WHERE id IN (");
                        let mut ids = lookup.separated(", ");
                        for event in chunk {
                            ids.push_bind(event.event.id);
                        }
                        lookup.push(")");
                        let present: HashSet<Uuid> = lookup
                            .build_query_scalar()
                            .fetch_all(&mut *tx)
                            .await?
                            .into_iter()
                            .collect();
                        insert.build().execute(&mut *tx).await?;
                        let absent: HashSet<Uuid> =
                            chunk.iter().map(|e| e.event.id).filter(|id| !present.contains(id)).collect();
                        mark(fresh, &absent);
                    } else {
                        // Several servers may write at once: the database says what it stored.
                        insert.push(" RETURNING id");
                        let stored: HashSet<Uuid> = insert
                            .build_query_scalar()
                            .fetch_all(&mut *tx)
                            .await?
                            .into_iter()
                            .collect();
                        mark(fresh, &stored);
                    }
                }
                let stored = fresh.iter().filter(|f| **f).count();
                let mut outcome = Ingested {
                    stored,
                    duplicates: rows.len() - stored,
                    ..Ingested::default()
                };
                // Only events stored just now update runs (each once, even if sent twice).
                let mut new_rows: Vec<&EventRow<'_>> = Vec::with_capacity(stored);
                for (row, fresh) in rows.iter().zip(&fresh) {
                    if *fresh {
                        outcome.fresh.push(row.index);
                        new_rows.push(row);
                    }
                }
                // Runs are written in the order of their ids, so concurrent writers take their
                // row locks in one order (PostgreSQL).
                let mut created: Vec<Created<'_>> = new_rows.iter().filter_map(|r| Created::new(r)).collect();
                created.sort_by_key(|c| c.id);
                let changes: Vec<Change<'_>> = new_rows.iter().filter_map(|r| Change::new(r)).collect();
                let mut merged = merge_changes(&changes);
                merged.sort_by_key(|c| c.id);
                // A run created and changed in this batch (most) is one row written once: its
                // creation and its state in one statement, as the two would leave it.
                for group in $crate::store::run_writes(&created, &merged) {
                    let (with_created, with_change) = match group.first() {
                        Some(first) => (first.created.is_some(), first.change.is_some()),
                        None => continue,
                    };
                    for wave in waves(&group, |w| w.id) {
                        let mut upsert = QueryBuilder::<$db>::new("INSERT INTO runs (id, run_type, flow_run_id");
                        if with_created {
                            upsert.push(
                                ", name, parent_flow_run_id, parent_task_run_id, created_ts, parameters, tags,
                                 upstream, map_index, retries, deployment, scheduled_ts, interval_start_ts,
                                 interval_end_ts, run_name",
                            );
                        }
                        if with_change {
                            upsert.push(", state, state_final, state_ts, message, attempts, start_ts, end_ts, result");
                        }
                        upsert.push(") ");
                        upsert.push_values(wave, |mut row, w| {
                            row.push_bind(w.id).push_bind(w.run_type).push_bind(w.flow_run_id);
                            if let Some(c) = w.created {
                                let created = c.created;
                                let scheduled = created.scheduled.as_deref();
                                row.push_bind(&*created.name)
                                    .push_bind(created.parent_flow_run_id)
                                    .push_bind(created.parent_task_run_id)
                                    .push_bind(c.ts)
                                    .push_bind(created.parameters.as_ref().map(|p| p.to_string()))
                                    .push_bind($crate::store::json_list(&created.tags))
                                    .push_bind($crate::store::json_list(&created.upstream))
                                    .push_bind(created.map_index.map(|i| i as i64))
                                    .push_bind(i64::from(created.retries))
                                    .push_bind(scheduled.map(|s| s.deployment.as_str()))
                                    .push_bind(scheduled.and_then(|s| $crate::store::nanos(s.scheduled_at)))
                                    .push_bind(scheduled.and_then(|s| s.interval_start.and_then($crate::store::nanos)))
                                    .push_bind(scheduled.and_then(|s| s.interval_end.and_then($crate::store::nanos)))
                                    .push_bind(created.run_name.as_deref());
                            }
                            if let Some(c) = w.change {
                                row.push_bind(c.state)
                                    .push_bind(c.state_final)
                                    .push_bind(c.state_ts)
                                    .push_bind(c.message.as_deref())
                                    .push_bind(c.attempts)
                                    .push_bind(c.start_ts)
                                    .push_bind(c.end_ts)
                                    .push_bind(c.result.as_deref());
                            }
                        });
                        upsert.push(" ON CONFLICT (id) DO UPDATE SET ");
                        // A run created again by a later attempt (a resume) keeps its first
                        // creation time: its state history starts there.
                        if with_created {
                            upsert.push(
                                "run_type = excluded.run_type, name = excluded.name,
                                 flow_run_id = excluded.flow_run_id,
                                 parent_flow_run_id = excluded.parent_flow_run_id,
                                 parent_task_run_id = excluded.parent_task_run_id,
                                 created_ts = CASE WHEN runs.attempts > 0 AND runs.created_ts < excluded.created_ts
                                     THEN runs.created_ts ELSE excluded.created_ts END,
                                 parameters = excluded.parameters,
                                 tags = excluded.tags, upstream = excluded.upstream,
                                 map_index = excluded.map_index, retries = excluded.retries,
                                 deployment = COALESCE(excluded.deployment, runs.deployment),
                                 scheduled_ts = COALESCE(excluded.scheduled_ts, runs.scheduled_ts),
                                 interval_start_ts = COALESCE(excluded.interval_start_ts, runs.interval_start_ts),
                                 interval_end_ts = COALESCE(excluded.interval_end_ts, runs.interval_end_ts),
                                 run_name = COALESCE(excluded.run_name, runs.run_name)",
                            );
                        }
                        if with_created && with_change {
                            upsert.push(", ");
                        }
                        // A later attempt's state replaces an earlier attempt's (a resumed run is
                        // `Running` again); within an attempt, nothing replaces a terminal state
                        // except a later terminal one: events may arrive late or out of order.
                        // The rule of `merge_changes`, against the stored row. (The creation's
                        // part reads no column this part writes, so one statement does both.)
                        macro_rules! wins {
                            () => {
                                "(excluded.attempts > runs.attempts
                                  OR (excluded.attempts = runs.attempts
                                      AND (excluded.state_final > runs.state_final
                                           OR (excluded.state_final = runs.state_final
                                               AND excluded.state_ts >= runs.state_ts))))"
                            };
                        }
                        if with_change {
                            upsert.push(concat!(
                                "state = CASE WHEN ", wins!(), " THEN excluded.state ELSE runs.state END,
                                 message = CASE WHEN ", wins!(), " THEN excluded.message ELSE runs.message END,
                                 state_ts = CASE WHEN ", wins!(), " THEN excluded.state_ts ELSE runs.state_ts END,
                                 state_final = CASE WHEN ", wins!(), " THEN excluded.state_final ELSE runs.state_final END,
                                 attempts = CASE WHEN excluded.attempts > runs.attempts
                                     THEN excluded.attempts ELSE runs.attempts END,
                                 start_ts = CASE WHEN runs.start_ts IS NULL THEN excluded.start_ts
                                     WHEN excluded.start_ts IS NULL THEN runs.start_ts
                                     WHEN excluded.start_ts < runs.start_ts THEN excluded.start_ts
                                     ELSE runs.start_ts END,
                                 end_ts = CASE WHEN excluded.attempts > runs.attempts THEN excluded.end_ts
                                     WHEN excluded.end_ts IS NOT NULL
                                     AND (runs.end_ts IS NULL OR excluded.end_ts > runs.end_ts)
                                     THEN excluded.end_ts ELSE runs.end_ts END,
                                 result = COALESCE(excluded.result, runs.result)"
                            ));
                        }
                        upsert.build().execute(&mut *tx).await?;
                    }
                }
                // Durations of the task runs that ended now, for the metrics.
                // Most runs start and end within one batch; ask the database only for the others.
                let mut ended: Vec<Uuid> = Vec::new();
                for c in merged.iter().filter(|c| c.run_type == "task" && c.state_final >= 1) {
                    match c.start_ts.zip(c.end_ts) {
                        Some((start, end)) => outcome.task_durations.push((end - start) as f64 / 1e9),
                        None => ended.push(c.id),
                    }
                }
                for chunk in ended.chunks(ROWS_PER_STATEMENT) {
                    let mut query = QueryBuilder::<$db>::new(
                        "SELECT end_ts - start_ts FROM runs
                         WHERE start_ts IS NOT NULL AND end_ts IS NOT NULL AND id IN (",
                    );
                    let mut ids = query.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    query.push(")");
                    let nanos: Vec<i64> = query.build_query_scalar().fetch_all(&mut *tx).await?;
                    outcome
                        .task_durations
                        .extend(nanos.into_iter().map(|n| n as f64 / 1e9));
                }
                // Flow runs that ended: their work is done, they are no longer kept alive.
                let ended: Vec<Uuid> = merged
                    .iter()
                    .filter(|c| c.run_type == "flow" && c.state_final >= 1)
                    .map(|c| c.id)
                    .collect();
                for chunk in ended.chunks(ROWS_PER_STATEMENT) {
                    let mut update = QueryBuilder::<$db>::new(
                        "UPDATE work SET status = 'done' WHERE status IN ('scheduled', 'claimed') AND id IN (",
                    );
                    let mut ids = update.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    update.push(")");
                    outcome.settled += update.build().execute(&mut *tx).await?.rows_affected();
                    let mut delete = QueryBuilder::<$db>::new("DELETE FROM live_runs WHERE run_id IN (");
                    let mut ids = delete.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    delete.push(")");
                    delete.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(outcome)
            }

            pub(crate) async fn flow_runs(
                &self,
                filter: &$crate::store::RunFilter,
            ) -> Result<Vec<$crate::store::Run>, $crate::store::StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT * FROM runs WHERE run_type = 'flow'");
                if let Some(flow) = &filter.flow {
                    query.push(" AND name = ").push_bind(flow.clone());
                }
                if !filter.states.is_empty() {
                    query.push(" AND state IN (");
                    let mut list = query.separated(", ");
                    for state in &filter.states {
                        list.push_bind(*state);
                    }
                    query.push(")");
                }
                if filter.failed_tasks {
                    // Written as the partial index `failed_task_runs` is, so it is used.
                    query.push(" AND EXISTS (SELECT 1 FROM runs AS t WHERE t.flow_run_id = runs.id
                         AND t.run_type = 'task' AND t.state IN ('Failed', 'Crashed', 'TimedOut'))");
                }
                if let Some(since) = filter.since {
                    query.push(" AND created_ts >= ").push_bind(since);
                }
                if let Some(until) = filter.until {
                    query.push(" AND created_ts < ").push_bind(until);
                }
                if let Some(tag) = &filter.tag {
                    query.push(" AND ").push($tag_filter).push_bind(tag.clone()).push(")");
                }
                if let Some(deployment) = &filter.deployment {
                    query.push(" AND deployment = ").push_bind(deployment.clone());
                }
                if let Some((from, to)) = filter.logical_day {
                    query
                        .push(" AND COALESCE(interval_start_ts, scheduled_ts) >= ")
                        .push_bind(from)
                        .push(" AND COALESCE(interval_start_ts, scheduled_ts) < ")
                        .push_bind(to);
                }
                if filter.started_only {
                    query.push(" AND state <> 'Scheduled'");
                }
                if let Some(parent) = filter.parent {
                    query.push(" AND parent_flow_run_id = ").push_bind(parent);
                }
                if let Some(text) = &filter.search {
                    let pattern = $crate::store::like_pattern(text);
                    query
                        .push(concat!(" AND (name ", $like, " "))
                        .push_bind(pattern.clone())
                        .push(concat!(" ESCAPE '\\' OR run_name ", $like, " "))
                        .push_bind(pattern.clone())
                        .push(concat!(" ESCAPE '\\' OR parameters ", $like, " "))
                        .push_bind(pattern.clone())
                        .push(concat!(" ESCAPE '\\' OR tags ", $like, " "))
                        .push_bind(pattern.clone())
                        .push(concat!(" ESCAPE '\\' OR deployment ", $like, " "))
                        .push_bind(pattern)
                        .push(" ESCAPE '\\'");
                    if let Ok(id) = uuid::Uuid::parse_str(text.trim()) {
                        query.push(" OR id = ").push_bind(id);
                    } else if let Some(hex) = $crate::store::id_fragment(text) {
                        query
                            .push(concat!(" OR ", $id_hex, " LIKE "))
                            .push_bind(format!("%{hex}%"));
                    }
                    query.push(")");
                }
                if let Some((ts, id)) = filter.before {
                    query
                        .push(" AND (created_ts < ")
                        .push_bind(ts)
                        .push(" OR (created_ts = ")
                        .push_bind(ts)
                        .push(" AND id < ")
                        .push_bind(id)
                        .push("))");
                }
                query.push(" ORDER BY created_ts DESC, id DESC LIMIT ").push_bind(filter.limit);
                let rows = query.build().fetch_all(&self.reader).await?;
                rows.iter().map(Self::run_from_row).collect()
            }

            pub(crate) async fn task_counts(
                &self,
                flow_run_ids: &[uuid::Uuid],
            ) -> Result<Vec<(uuid::Uuid, String, i64)>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut out = Vec::new();
                for chunk in flow_run_ids.chunks($crate::store::ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(concat!(
                        "SELECT flow_run_id, state, count(*) AS n FROM runs ",
                        $task_index,
                        " WHERE flow_run_id IN ("
                    ));
                    let mut ids = query.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    query.push(") AND run_type = 'task' GROUP BY flow_run_id, state");
                    for row in query.build().fetch_all(&self.reader).await? {
                        out.push((row.try_get("flow_run_id")?, row.try_get("state")?, row.try_get("n")?));
                    }
                }
                Ok(out)
            }

            pub(crate) async fn task_grid(
                &self,
                flow_run_ids: &[uuid::Uuid],
            ) -> Result<Vec<$crate::store::GridCell>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut out = Vec::new();
                for chunk in flow_run_ids.chunks($crate::store::ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(concat!(
                        "SELECT flow_run_id, name, state, count(*) AS n, min(created_ts) AS first FROM runs ",
                        $task_index,
                        " WHERE flow_run_id IN ("
                    ));
                    let mut ids = query.separated(", ");
                    for id in chunk {
                        ids.push_bind(*id);
                    }
                    query.push(") AND run_type = 'task' GROUP BY flow_run_id, name, state");
                    for row in query.build().fetch_all(&self.reader).await? {
                        out.push($crate::store::GridCell {
                            flow_run_id: row.try_get("flow_run_id")?,
                            task: row.try_get::<Option<String>, _>("name")?.unwrap_or_default(),
                            state: row.try_get("state")?,
                            count: row.try_get("n")?,
                            first_ts: row.try_get("first")?,
                        });
                    }
                }
                Ok(out)
            }

            pub(crate) async fn run(
                &self,
                id: uuid::Uuid,
            ) -> Result<Option<$crate::store::Run>, $crate::store::StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT * FROM runs WHERE id = ");
                query.push_bind(id);
                let row = query.build().fetch_optional(&self.reader).await?;
                row.as_ref().map(Self::run_from_row).transpose()
            }

            pub(crate) async fn task_runs(
                &self,
                flow_run_id: uuid::Uuid,
            ) -> Result<Vec<$crate::store::Run>, $crate::store::StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(concat!(
                    "SELECT * FROM runs ",
                    $task_index,
                    " WHERE run_type = 'task' AND flow_run_id = "
                ));
                query.push_bind(flow_run_id).push(" ORDER BY created_ts, map_index, id");
                let rows = query.build().fetch_all(&self.reader).await?;
                rows.iter().map(Self::run_from_row).collect()
            }

            pub(crate) async fn child_flow_runs(
                &self,
                flow_run_id: uuid::Uuid,
            ) -> Result<Vec<$crate::store::Run>, $crate::store::StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(concat!(
                    "SELECT * FROM runs ",
                    $parent_index,
                    " WHERE run_type = 'flow' AND parent_flow_run_id = "
                ));
                query.push_bind(flow_run_id).push(" ORDER BY created_ts, id");
                let rows = query.build().fetch_all(&self.reader).await?;
                rows.iter().map(Self::run_from_row).collect()
            }

            pub(crate) async fn logs(
                &self,
                flow_run_id: uuid::Uuid,
                filter: &$crate::store::LogFilter,
            ) -> Result<Vec<$crate::store::LogLine>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT id, ts, flow_run_id, task_run_id, level, body FROM events
                     WHERE kind = 'log' AND flow_run_id = ",
                );
                query.push_bind(flow_run_id);
                if let Some(level) = filter.level {
                    query.push(" AND level = ").push_bind(level);
                }
                if let Some(levels) = filter.at_least {
                    query.push(" AND level IN (");
                    let mut list = query.separated(", ");
                    for level in levels {
                        list.push_bind(*level);
                    }
                    query.push(")");
                }
                if let Some(task) = filter.task_run_id {
                    query.push(" AND task_run_id = ").push_bind(task);
                }
                if let Some((ts, id)) = filter.after {
                    query
                        .push(" AND (ts > ")
                        .push_bind(ts)
                        .push(" OR (ts = ")
                        .push_bind(ts)
                        .push(" AND id > ")
                        .push_bind(id)
                        .push("))");
                }
                query.push(" ORDER BY ts, id LIMIT ").push_bind(filter.limit);
                let rows = query.build().fetch_all(&self.reader).await?;
                let mut lines = Vec::with_capacity(rows.len());
                for row in rows {
                    let body: String = row.try_get("body")?;
                    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    lines.push($crate::store::LogLine {
                        id: row.try_get("id")?,
                        timestamp: $crate::store::time(row.try_get("ts")?),
                        flow_run_id: row.try_get("flow_run_id")?,
                        task_run_id: row.try_get("task_run_id")?,
                        level: row.try_get("level")?,
                        message: body["message"].as_str().unwrap_or_default().to_string(),
                        target: body["target"].as_str().map(String::from),
                        fields: body.get("fields").cloned().unwrap_or(serde_json::Value::Null),
                    });
                }
                Ok(lines)
            }

            pub(crate) async fn state_changes(
                &self,
                flow_run_id: uuid::Uuid,
                window: (uuid::Uuid, Option<uuid::Uuid>),
                retried_only: bool,
                task_run_id: Option<uuid::Uuid>,
            ) -> Result<Vec<$crate::store::StateChange>, $crate::store::StoreError> {
                use sqlx::Row;
                // Event ids are UUID v7, so the run's lifetime is a range of the primary key.
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT ts, task_run_id, body FROM events WHERE id >= ",
                );
                query.push_bind(window.0);
                if let Some(end) = window.1 {
                    query.push(" AND id < ").push_bind(end);
                }
                query.push(" AND kind = 'state_changed' AND flow_run_id = ").push_bind(flow_run_id);
                if let Some(task) = task_run_id {
                    query.push(" AND task_run_id = ").push_bind(task);
                }
                if retried_only {
                    query
                        .push(" AND (task_run_id IS NULL OR task_run_id IN (SELECT id FROM runs WHERE flow_run_id = ")
                        .push_bind(flow_run_id)
                        .push(" AND (attempts > 1 OR state = 'Retrying')))");
                }
                query.push(" ORDER BY ts, id");
                let rows = query.build().fetch_all(&self.reader).await?;
                let mut changes = Vec::with_capacity(rows.len());
                for row in rows {
                    let body: String = row.try_get("body")?;
                    let Ok(flowkit::events::EventKind::StateChanged(change)) = serde_json::from_str(&body) else {
                        continue;
                    };
                    let task_run_id: Option<uuid::Uuid> = row.try_get("task_run_id")?;
                    changes.push($crate::store::StateChange {
                        run_id: task_run_id.unwrap_or(flow_run_id),
                        state: change.state.as_str().to_string(),
                        attempt: i64::from(change.attempt),
                        timestamp: $crate::store::time(row.try_get("ts")?),
                        message: change.message,
                    });
                }
                Ok(changes)
            }

            pub(crate) async fn flow_activity(
                &self,
                since: i64,
                until: i64,
                width: i64,
            ) -> Result<Vec<(String, i64, String, i64)>, $crate::store::StoreError> {
                use sqlx::Row;
                // A run counts when it started (when it was made, until it starts): a backfill
                // queued at once lands where each run ran. A run starts after it is made, so the
                // time index bounds the scan; runs waiting longer than the slack are not counted.
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT name, (COALESCE(start_ts, created_ts) - ");
                query
                    .push_bind(since)
                    .push(") / ")
                    .push_bind(width)
                    .push(" AS bucket, state, count(*) AS n FROM runs
                         WHERE run_type = 'flow' AND name IS NOT NULL AND created_ts >= ")
                    .push_bind(since.saturating_sub($crate::store::ACTIVITY_START_SLACK_NANOS))
                    .push(" AND created_ts < ")
                    .push_bind(until)
                    .push(" AND COALESCE(start_ts, created_ts) >= ")
                    .push_bind(since)
                    .push(" AND COALESCE(start_ts, created_ts) < ")
                    .push_bind(until)
                    .push(" GROUP BY name, bucket, state");
                let rows = query.build().fetch_all(&self.reader).await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("name")?, r.try_get("bucket")?, r.try_get("state")?, r.try_get("n")?)))
                    .collect()
            }

            pub(crate) async fn counts(&self) -> Result<$crate::store::Counts, $crate::store::StoreError> {
                use sqlx::Row;
                let row = sqlx::query(
                    "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM runs) AS runs",
                )
                .fetch_one(&self.reader)
                .await?;
                Ok($crate::store::Counts {
                    events: row.try_get("events")?,
                    runs: row.try_get("runs")?,
                })
            }

            pub(crate) async fn flow_summaries(
                &self,
            ) -> Result<Vec<$crate::store::FlowSummary>, $crate::store::StoreError> {
                use sqlx::Row;
                let counts = sqlx::query(
                    "SELECT name, state, count(*) AS n, max(created_ts) AS last
                     FROM runs WHERE run_type = 'flow' AND name IS NOT NULL GROUP BY name, state",
                )
                .fetch_all(&self.reader)
                .await?;
                let mut flows: std::collections::BTreeMap<String, $crate::store::FlowSummary> = Default::default();
                for row in counts {
                    let name: String = row.try_get("name")?;
                    let state: String = row.try_get("state")?;
                    let n: i64 = row.try_get("n")?;
                    let last: Option<i64> = row.try_get("last")?;
                    let flow = flows.entry(name.clone()).or_insert_with(|| $crate::store::FlowSummary {
                        name,
                        ..Default::default()
                    });
                    flow.runs += n;
                    flow.by_state.insert(state, n);
                    if last > flow.last_run_ts {
                        flow.last_run_ts = last;
                    }
                }
                let rows = sqlx::query(
                    "SELECT name, dur FROM (
                         SELECT name, end_ts - start_ts AS dur,
                                row_number() OVER (PARTITION BY name ORDER BY created_ts DESC) AS recent
                         FROM runs WHERE run_type = 'flow' AND start_ts IS NOT NULL AND end_ts IS NOT NULL) AS r
                     WHERE recent <= 1000",
                )
                .fetch_all(&self.reader)
                .await?;
                let mut durations: std::collections::HashMap<String, Vec<i64>> = Default::default();
                for row in rows {
                    durations
                        .entry(row.try_get("name")?)
                        .or_default()
                        .push(row.try_get("dur")?);
                }
                Ok($crate::store::finish_summaries(flows, durations))
            }

            pub(crate) async fn runs_by_state(
                &self,
            ) -> Result<Vec<(String, String, i64)>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT run_type, state, count(*) AS n FROM runs GROUP BY run_type, state")
                    .fetch_all(&self.reader)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("run_type")?, r.try_get("state")?, r.try_get("n")?)))
                    .collect()
            }

            pub(crate) async fn delete_before(&self, cutoff: i64) -> Result<u64, $crate::store::StoreError> {
                let mut conn = self.writer.acquire().await?;
                let result = Self::delete_before_on(&mut conn, cutoff).await;
                if result.is_err() {
                    conn.close_on_drop();
                }
                result
            }

            async fn delete_before_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                cutoff: i64,
            ) -> Result<u64, $crate::store::StoreError> {
                let mut tx = sqlx::Connection::begin_with(conn, $begin).await?;
                // Event ids are UUID v7: every event made before the cutoff has a smaller id, so
                // the primary key finds them without an index on time.
                let first_kept = $crate::store::first_event_id_at(cutoff);
                let mut events = sqlx::QueryBuilder::<$db>::new("DELETE FROM events WHERE id < ");
                events.push_bind(first_kept);
                events.build().execute(&mut *tx).await?;
                // Through the indexes: the task runs of old flow runs, old task runs outside any
                // flow, then the old flow runs.
                let mut deleted = 0;
                for (sql, close) in [
                    ("DELETE FROM runs WHERE run_type = 'task' AND flow_run_id IN
                         (SELECT id FROM runs WHERE run_type = 'flow' AND created_ts < ", ")"),
                    ("DELETE FROM runs WHERE run_type = 'task' AND flow_run_id IS NULL AND created_ts < ", ""),
                    ("DELETE FROM runs WHERE run_type = 'flow' AND created_ts < ", ""),
                ] {
                    let mut runs = sqlx::QueryBuilder::<$db>::new(sql);
                    runs.push_bind(cutoff).push(close);
                    deleted += runs.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(deleted)
            }

            pub(crate) async fn put_deployment(
                &self,
                name: &str,
                flow: &str,
                spec: &str,
                updated_ts: i64,
            ) -> Result<(), $crate::store::StoreError> {
                let mut conn = self.writer.acquire().await?;
                let result = sqlx::query(
                    "INSERT INTO deployments (name, flow, spec, updated_ts) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (name) DO UPDATE SET flow = excluded.flow, spec = excluded.spec,
                         updated_ts = excluded.updated_ts",
                )
                .bind(name)
                .bind(flow)
                .bind(spec)
                .bind(updated_ts)
                .execute(&mut *conn)
                .await;
                if result.is_err() {
                    conn.close_on_drop();
                }
                let result = result.map(drop).map_err(Into::into);
                self.health.wrote(&result);
                result
            }

            pub(crate) async fn ready(&self) -> Result<(), String> {
                self.health.ready(self.probe()).await
            }

            /// A small real write: the one row of `server_health` records the time.
            pub(crate) async fn probe(&self) -> Result<(), $crate::store::StoreError> {
                let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
                let mut conn = self.writer.acquire().await?;
                let result = sqlx::query(
                    "INSERT INTO server_health (id, checked_ts) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET checked_ts = excluded.checked_ts",
                )
                .bind(now)
                .execute(&mut *conn)
                .await;
                if result.is_err() {
                    conn.close_on_drop();
                }
                result.map(drop).map_err(Into::into)
            }

            fn run_from_row(row: &$row) -> Result<$crate::store::Run, $crate::store::StoreError> {
                use sqlx::Row;
                let json = |column: &str| -> Result<Option<serde_json::Value>, $crate::store::StoreError> {
                    let text: Option<String> = row.try_get(column)?;
                    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
                };
                let created: Option<i64> = row.try_get("created_ts")?;
                let start: Option<i64> = row.try_get("start_ts")?;
                let end: Option<i64> = row.try_get("end_ts")?;
                let run_type: String = row.try_get("run_type")?;
                Ok($crate::store::Run {
                    id: row.try_get("id")?,
                    run_type: if run_type == "flow" { "flow" } else { "task" },
                    name: row.try_get("name")?,
                    run_name: row.try_get("run_name")?,
                    flow_run_id: row.try_get("flow_run_id")?,
                    parent_flow_run_id: row.try_get("parent_flow_run_id")?,
                    parent_task_run_id: row.try_get("parent_task_run_id")?,
                    state: row.try_get("state")?,
                    message: row.try_get("message")?,
                    attempts: row.try_get("attempts")?,
                    created: $crate::store::time(created),
                    start: $crate::store::time(start),
                    end: $crate::store::time(end),
                    duration_ms: start.zip(end).map(|(s, e)| (e - s) as f64 / 1e6),
                    parameters: json("parameters")?,
                    tags: json("tags")?
                        .and_then(|v| serde_json::from_value(v).ok())
                        .unwrap_or_default(),
                    upstream: json("upstream")?
                        .and_then(|v| serde_json::from_value(v).ok())
                        .unwrap_or_default(),
                    map_index: row.try_get("map_index")?,
                    retries: row.try_get("retries")?,
                    deployment: row.try_get("deployment")?,
                    scheduled: $crate::store::time(row.try_get("scheduled_ts")?),
                    interval_start: $crate::store::time(row.try_get("interval_start_ts")?),
                    interval_end: $crate::store::time(row.try_get("interval_end_ts")?),
                    result: row
                        .try_get::<Option<String>, _>("result")?
                        .and_then(|text| serde_json::from_str(&text).ok()),
                })
            }
        }
    };
}
