//! The tables of limits: each limit (`limits`), the slots task runs hold (`limit_slots`) and
//! the task runs waiting for one, in arrival order (`limit_waiters`). Written once for both
//! databases by `limits_store!`, like the rest of the store.
//!
//! Every change of a tag's slots or line locks its `limits` row first (PostgreSQL's
//! `FOR UPDATE`; SQLite has one writer), so the count of slots and the order of the line hold
//! across every server sharing the database.

use uuid::Uuid;

use super::{Store, StoreError};

/// A limit as stored.
#[derive(Clone, Debug)]
pub struct LimitRow {
    pub name: String,
    pub concurrency: Option<i64>,
    pub rate_count: Option<i64>,
    pub rate_per_ms: Option<i64>,
    pub burst: Option<i64>,
    pub updated_ts: i64,
}

/// A slot as stored.
#[derive(Clone, Debug)]
pub struct SlotRow {
    pub tag: String,
    pub task_run_id: Uuid,
    pub flow_run_id: Option<Uuid>,
    pub acquired_ts: i64,
}

/// Who asks for a slot.
#[derive(Clone, Debug)]
pub struct SlotRequest {
    pub tag: String,
    pub ticket: Uuid,
    pub task_run_id: Uuid,
    pub flow_run_id: Option<Uuid>,
    pub now: i64,
    /// Waiters not seen since then have left the line.
    pub stale_before: i64,
}

/// What asking for a slot gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The slot is the ticket's.
    Granted,
    /// In line, with this many before it.
    Waiting(u32),
    /// The tag has no concurrency limit.
    NotLimited,
}

/// Defines the limits methods of `$name`, a store over database `$db`; `lock` is how a
/// `SELECT` locks the rows it reads until the transaction ends.
macro_rules! limits_store {
    ($name:ident, $db:ty, $row:ty, lock: $lock:expr $(,)?) => {
        impl $name {
            /// Sets (or replaces) a limit; a changed rate starts with a full burst.
            pub(crate) async fn put_limit(
                &self,
                row: $crate::store::limits::LimitRow,
            ) -> Result<(), $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO limits (name, concurrency, rate_count, rate_per_ms, burst, tat_ts, updated_ts)
                         VALUES ($1, $2, $3, $4, $5, NULL, $6)
                         ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
                             rate_count = excluded.rate_count, rate_per_ms = excluded.rate_per_ms,
                             burst = excluded.burst, tat_ts = NULL, updated_ts = excluded.updated_ts",
                    )
                    .bind(row.name)
                    .bind(row.concurrency)
                    .bind(row.rate_count)
                    .bind(row.rate_per_ms)
                    .bind(row.burst)
                    .bind(row.updated_ts)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                })).await
            }

            /// Removes a limit, its slots and its line; whether it existed.
            pub(crate) async fn remove_limit(&self, name: String) -> Result<bool, $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    let done = sqlx::query("DELETE FROM limits WHERE name = $1")
                        .bind(&name)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query("DELETE FROM limit_slots WHERE tag = $1").bind(&name).execute(&mut **tx).await?;
                    sqlx::query("DELETE FROM limit_waiters WHERE tag = $1").bind(&name).execute(&mut **tx).await?;
                    Ok(done.rows_affected() > 0)
                })).await
            }

            /// Every limit, by name.
            pub(crate) async fn limits(&self) -> Result<Vec<$crate::store::limits::LimitRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT * FROM limits ORDER BY name").fetch_all(&self.writer).await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::limits::LimitRow {
                            name: r.try_get("name")?,
                            concurrency: r.try_get("concurrency")?,
                            rate_count: r.try_get("rate_count")?,
                            rate_per_ms: r.try_get("rate_per_ms")?,
                            burst: r.try_get("burst")?,
                            updated_ts: r.try_get("updated_ts")?,
                        })
                    })
                    .collect()
            }

            /// Every slot held, oldest first, and how many wait for each tag.
            pub(crate) async fn slots(
                &self,
            ) -> Result<(Vec<$crate::store::limits::SlotRow>, Vec<(String, i64)>), $crate::store::StoreError> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT tag, task_run_id, flow_run_id, acquired_ts FROM limit_slots ORDER BY acquired_ts, id",
                )
                .fetch_all(&self.writer)
                .await?;
                let slots = rows
                    .iter()
                    .map(|r| {
                        Ok($crate::store::limits::SlotRow {
                            tag: r.try_get("tag")?,
                            task_run_id: r.try_get("task_run_id")?,
                            flow_run_id: r.try_get("flow_run_id")?,
                            acquired_ts: r.try_get("acquired_ts")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                let rows = sqlx::query("SELECT tag, COUNT(*) AS n FROM limit_waiters GROUP BY tag")
                    .fetch_all(&self.writer)
                    .await?;
                let waiting = rows
                    .iter()
                    .map(|r| Ok((r.try_get("tag")?, r.try_get("n")?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
                Ok((slots, waiting))
            }

            /// Takes a slot for a ticket if one is free and nobody came before it; else puts
            /// (or keeps) the ticket in line.
            pub(crate) async fn acquire_slot(
                &self,
                request: $crate::store::limits::SlotRequest,
            ) -> Result<$crate::store::limits::Acquired, $crate::store::StoreError> {
                use $crate::store::limits::Acquired;
                self.write(move |tx| Box::pin(async move {
                    let r = request;
                    let limit: Option<Option<i64>> = sqlx::query_scalar(concat!(
                        "SELECT concurrency FROM limits WHERE name = $1", $lock
                    ))
                    .bind(&r.tag)
                    .fetch_optional(&mut **tx)
                    .await?;
                    let Some(Some(limit)) = limit else {
                        sqlx::query("DELETE FROM limit_waiters WHERE id = $1").bind(r.ticket).execute(&mut **tx).await?;
                        return Ok(Acquired::NotLimited);
                    };
                    let held: Option<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM limit_slots WHERE id = $1")
                        .bind(r.ticket)
                        .fetch_optional(&mut **tx)
                        .await?;
                    if held.is_some() {
                        return Ok(Acquired::Granted);
                    }
                    sqlx::query("DELETE FROM limit_waiters WHERE tag = $1 AND seen_ts < $2")
                        .bind(&r.tag)
                        .bind(r.stale_before)
                        .execute(&mut **tx)
                        .await?;
                    let seq: i64 = sqlx::query_scalar(
                        "INSERT INTO limit_waiters (id, tag, seen_ts) VALUES ($1, $2, $3)
                         ON CONFLICT (id) DO UPDATE SET seen_ts = excluded.seen_ts RETURNING seq",
                    )
                    .bind(r.ticket)
                    .bind(&r.tag)
                    .bind(r.now)
                    .fetch_one(&mut **tx)
                    .await?;
                    let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM limit_slots WHERE tag = $1")
                        .bind(&r.tag)
                        .fetch_one(&mut **tx)
                        .await?;
                    let ahead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM limit_waiters WHERE tag = $1 AND seq < $2")
                        .bind(&r.tag)
                        .bind(seq)
                        .fetch_one(&mut **tx)
                        .await?;
                    if ahead >= limit - used {
                        return Ok(Acquired::Waiting(u32::try_from(ahead).unwrap_or(u32::MAX)));
                    }
                    sqlx::query("DELETE FROM limit_waiters WHERE id = $1").bind(r.ticket).execute(&mut **tx).await?;
                    let live = r.flow_run_id.unwrap_or(r.task_run_id);
                    sqlx::query(
                        "INSERT INTO limit_slots (id, tag, task_run_id, flow_run_id, live_id, acquired_ts)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(r.ticket)
                    .bind(&r.tag)
                    .bind(r.task_run_id)
                    .bind(r.flow_run_id)
                    .bind(live)
                    .bind(r.now)
                    .execute(&mut **tx)
                    .await?;
                    // The holder's run is alive from now: if its program dies before its first
                    // heartbeat, the sweep still finds it, and frees the slot.
                    sqlx::query(
                        "INSERT INTO live_runs (run_id, worker, heartbeat_ts, cancel_requested)
                         VALUES ($1, NULL, $2, 0)
                         ON CONFLICT (run_id) DO UPDATE SET heartbeat_ts = excluded.heartbeat_ts",
                    )
                    .bind(live)
                    .bind(r.now)
                    .execute(&mut **tx)
                    .await?;
                    Ok(Acquired::Granted)
                })).await
            }

            /// Gives back a ticket's slot, or its place in line; whether a slot was freed.
            pub(crate) async fn release_slot(&self, ticket: uuid::Uuid) -> Result<bool, $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    let done = sqlx::query("DELETE FROM limit_slots WHERE id = $1").bind(ticket).execute(&mut **tx).await?;
                    sqlx::query("DELETE FROM limit_waiters WHERE id = $1").bind(ticket).execute(&mut **tx).await?;
                    Ok(done.rows_affected() > 0)
                })).await
            }

            /// Frees the slots whose run is no longer alive (no live row) and that were taken
            /// before `cutoff`, and drops waiters not seen since `stale_before`; how many.
            pub(crate) async fn sweep_slots(
                &self,
                cutoff: i64,
                stale_before: i64,
            ) -> Result<u64, $crate::store::StoreError> {
                self.write(move |tx| Box::pin(async move {
                    let freed = sqlx::query(
                        "DELETE FROM limit_slots WHERE acquired_ts < $1
                         AND NOT EXISTS (SELECT 1 FROM live_runs WHERE live_runs.run_id = limit_slots.live_id)",
                    )
                    .bind(cutoff)
                    .execute(&mut **tx)
                    .await?;
                    let left = sqlx::query("DELETE FROM limit_waiters WHERE seen_ts < $1")
                        .bind(stale_before)
                        .execute(&mut **tx)
                        .await?;
                    Ok(freed.rows_affected() + left.rows_affected())
                })).await
            }

            /// Takes a token of a rate limit (GCRA): how long the caller waits for it, in
            /// nanoseconds; `None` if the name has no rate limit.
            pub(crate) async fn take_token(
                &self,
                name: String,
                now: i64,
            ) -> Result<Option<i64>, $crate::store::StoreError> {
                use sqlx::Row;
                self.write(move |tx| Box::pin(async move {
                    let row = sqlx::query(concat!(
                        "SELECT rate_count, rate_per_ms, burst, tat_ts FROM limits WHERE name = $1", $lock
                    ))
                    .bind(&name)
                    .fetch_optional(&mut **tx)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    let count: Option<i64> = row.try_get("rate_count")?;
                    let per_ms: Option<i64> = row.try_get("rate_per_ms")?;
                    let (Some(count), Some(per_ms)) = (count, per_ms) else { return Ok(None) };
                    let burst: Option<i64> = row.try_get("burst")?;
                    let tat: Option<i64> = row.try_get("tat_ts")?;
                    let (wait, tat) = $crate::store::limits::gcra(
                        now,
                        tat,
                        per_ms.saturating_mul(1_000_000) / count.max(1),
                        burst.unwrap_or(1),
                    );
                    sqlx::query("UPDATE limits SET tat_ts = $1 WHERE name = $2")
                        .bind(tat)
                        .bind(&name)
                        .execute(&mut **tx)
                        .await?;
                    Ok(Some(wait))
                })).await
            }
        }
    };
}

/// One reservation of the generic cell rate algorithm: at `now`, with the theoretical arrival
/// time `tat` (none yet: a full burst), an emission interval of `interval` and a burst of
/// `burst`, the wait before the caller's turn and the new `tat`. A caller always gets a turn
/// (no refusal): waiting callers line up one interval apart.
///
/// ```
/// use flowkit_server::store::limits::gcra;
/// // 10/s with burst 2: two at once, then one every 100 ms.
/// let (w1, tat) = gcra(0, None, 100, 2);
/// let (w2, tat) = gcra(0, Some(tat), 100, 2);
/// let (w3, _) = gcra(0, Some(tat), 100, 2);
/// assert_eq!((w1, w2, w3), (0, 0, 100));
/// ```
pub fn gcra(now: i64, tat: Option<i64>, interval: i64, burst: i64) -> (i64, i64) {
    let tat = tat.unwrap_or(now).max(now);
    let tolerance = interval.saturating_mul(burst.max(1) - 1);
    let at = (tat - tolerance).max(now);
    (at - now, tat.saturating_add(interval))
}

impl Store {
    /// Sets a limit.
    pub async fn put_limit(&self, row: LimitRow) -> Result<(), StoreError> {
        dispatch!(self.put_limit(row))
    }

    /// Removes a limit; whether it existed.
    pub async fn remove_limit(&self, name: &str) -> Result<bool, StoreError> {
        dispatch!(self.remove_limit(name.to_string()))
    }

    /// Every limit.
    pub async fn limits(&self) -> Result<Vec<LimitRow>, StoreError> {
        dispatch!(self.limits())
    }

    /// Every slot held, and how many wait for each tag.
    pub async fn slots(&self) -> Result<(Vec<SlotRow>, Vec<(String, i64)>), StoreError> {
        dispatch!(self.slots())
    }

    /// Takes a slot, or a place in line.
    pub async fn acquire_slot(&self, request: SlotRequest) -> Result<Acquired, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match dispatch!(self.acquire_slot(request.clone())) {
                Err(error) if error.is_conflict() && attempt < 8 => {
                    tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..=10)))
                        .await;
                }
                result => return result,
            }
        }
    }

    /// Gives back a slot or a place in line; whether a slot was freed.
    pub async fn release_slot(&self, ticket: Uuid) -> Result<bool, StoreError> {
        dispatch!(self.release_slot(ticket))
    }

    /// Frees slots of runs no longer alive, and drops waiters gone.
    pub async fn sweep_slots(&self, cutoff: i64, stale_before: i64) -> Result<u64, StoreError> {
        dispatch!(self.sweep_slots(cutoff, stale_before))
    }

    /// Takes a rate token: the wait (ns), or `None` without a rate limit.
    pub async fn take_token(&self, name: &str, now: i64) -> Result<Option<i64>, StoreError> {
        dispatch!(self.take_token(name.to_string(), now))
    }

    /// Tells every server listening on the database that slots were freed.
    pub async fn notify_limits(&self) -> Result<(), StoreError> {
        if let Store::Postgres(store) = self {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(crate::limits::CHANNEL)
                .execute(store.pool())
                .await?;
        }
        Ok(())
    }
}
