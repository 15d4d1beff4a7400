//! The tables of access: API keys (their hashes) and the audit trail. Written once for both
//! databases by `access_store!`, like the rest of the store.

use uuid::Uuid;

use super::{Store, StoreError};

/// A key as stored: its hash, never the key.
#[derive(Clone, Debug)]
pub struct KeyRow {
    /// Its id (UUID v7).
    pub id: Uuid,
    /// Its unique name.
    pub name: String,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// The key's first characters.
    pub prefix: String,
    /// `read,operate`.
    pub scopes: String,
    /// When it was made (Unix nanoseconds) …
    pub created_ts: i64,
    /// … and by which key (its name).
    pub created_by: String,
}

/// One entry of the audit trail.
#[derive(Clone, Debug)]
pub struct AuditRow {
    /// Its id (UUID v7, so ids sort by time).
    pub id: Uuid,
    /// When (Unix nanoseconds).
    pub ts: i64,
    /// The name of the key that acted.
    pub actor: String,
    /// What it did (`flowkit_api::access::AuditAction::as_str`).
    pub action: String,
    /// The deployment it touched.
    pub deployment: Option<String>,
    /// The flow run it touched.
    pub flow_run_id: Option<Uuid>,
    /// The backfill it touched.
    pub backfill_id: Option<Uuid>,
    /// More, in words.
    pub detail: Option<String>,
}

/// Which audit entries to list (all given filters must hold), newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only entries touching this deployment.
    pub deployment: Option<String>,
    /// … this flow run.
    pub flow_run_id: Option<Uuid>,
    /// … this backfill.
    pub backfill_id: Option<Uuid>,
    /// Only what this key did.
    pub actor: Option<String>,
    /// Entries older than this one (a cursor).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: i64,
}

/// The PostgreSQL channel servers tell each other that keys changed on.
pub const KEYS_CHANNEL: &str = "flowkit_keys";

macro_rules! access_store {
    ($name:ident, $db:ty, $row:ty, notify: $notify:expr $(,)?) => {
        impl $name {
            fn key_from_row(row: &$row) -> Result<$crate::store::access::KeyRow, $crate::store::StoreError> {
                use sqlx::Row;
                Ok($crate::store::access::KeyRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    hash: row.try_get("hash")?,
                    prefix: row.try_get("prefix")?,
                    scopes: row.try_get("scopes")?,
                    created_ts: row.try_get("created_ts")?,
                    created_by: row.try_get("created_by")?,
                })
            }

            /// Stores a key; false if its name (or hash) is taken.
            pub(crate) async fn insert_key(
                &self,
                key: $crate::store::access::KeyRow,
            ) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query(
                    "INSERT INTO api_keys (id, name, hash, prefix, scopes, created_ts, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(key.id)
                .bind(key.name)
                .bind(key.hash)
                .bind(key.prefix)
                .bind(key.scopes)
                .bind(key.created_ts)
                .bind(key.created_by)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            /// The key whose hash is `hash`.
            pub(crate) async fn key_by_hash(
                &self,
                hash: String,
            ) -> Result<Option<$crate::store::access::KeyRow>, $crate::store::StoreError> {
                let row = sqlx::query("SELECT * FROM api_keys WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(&self.reader)
                    .await?;
                row.as_ref().map(Self::key_from_row).transpose()
            }

            /// Every key, by name.
            pub(crate) async fn keys(
                &self,
            ) -> Result<Vec<$crate::store::access::KeyRow>, $crate::store::StoreError> {
                let rows = sqlx::query("SELECT * FROM api_keys ORDER BY name")
                    .fetch_all(&self.reader)
                    .await?;
                rows.iter().map(Self::key_from_row).collect()
            }

            /// Deletes the key named `name` (and, on PostgreSQL, tells every server in the same
            /// transaction); the key deleted.
            pub(crate) async fn delete_key(
                &self,
                name: String,
            ) -> Result<Option<$crate::store::access::KeyRow>, $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                let row = sqlx::query("DELETE FROM api_keys WHERE name = $1 RETURNING *")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                let key = row.as_ref().map(Self::key_from_row).transpose()?;
                if key.is_some() && $notify {
                    sqlx::query("SELECT pg_notify($1, '')")
                        .bind($crate::store::access::KEYS_CHANNEL)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(key)
            }

            /// Adds an entry to the audit trail.
            pub(crate) async fn record_audit(
                &self,
                entry: $crate::store::access::AuditRow,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "INSERT INTO audit (id, ts, actor, action, deployment, flow_run_id, backfill_id, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(entry.id)
                .bind(entry.ts)
                .bind(entry.actor)
                .bind(entry.action)
                .bind(entry.deployment)
                .bind(entry.flow_run_id)
                .bind(entry.backfill_id)
                .bind(entry.detail)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            /// The audit entries `filter` picks, newest first.
            pub(crate) async fn audit(
                &self,
                filter: $crate::store::access::AuditFilter,
            ) -> Result<Vec<$crate::store::access::AuditRow>, $crate::store::StoreError> {
                use sqlx::Row;
                let mut query = sqlx::QueryBuilder::<$db>::new("SELECT * FROM audit WHERE 1 = 1");
                if let Some(deployment) = filter.deployment {
                    query.push(" AND deployment = ").push_bind(deployment);
                }
                if let Some(run) = filter.flow_run_id {
                    query.push(" AND flow_run_id = ").push_bind(run);
                }
                if let Some(backfill) = filter.backfill_id {
                    query.push(" AND backfill_id = ").push_bind(backfill);
                }
                if let Some(actor) = filter.actor {
                    query.push(" AND actor = ").push_bind(actor);
                }
                if let Some(before) = filter.before {
                    query.push(" AND id < ").push_bind(before);
                }
                query.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit);
                let rows = query.build().fetch_all(&self.reader).await?;
                rows.iter()
                    .map(|row| {
                        Ok($crate::store::access::AuditRow {
                            id: row.try_get("id")?,
                            ts: row.try_get("ts")?,
                            actor: row.try_get("actor")?,
                            action: row.try_get("action")?,
                            deployment: row.try_get("deployment")?,
                            flow_run_id: row.try_get("flow_run_id")?,
                            backfill_id: row.try_get("backfill_id")?,
                            detail: row.try_get("detail")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

impl Store {
    /// Stores a key; false if its name is taken.
    pub async fn insert_key(&self, key: KeyRow) -> Result<bool, StoreError> {
        dispatch!(self.insert_key(key))
    }

    /// The key whose hash is `hash` (hex SHA-256).
    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRow>, StoreError> {
        dispatch!(self.key_by_hash(hash.to_string()))
    }

    /// Every key, by name.
    pub async fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        dispatch!(self.keys())
    }

    /// Deletes the key named `name`; the key deleted, if there was one. On PostgreSQL, every
    /// server sharing the database hears of it (`NOTIFY flowkit_keys`) when it commits.
    pub async fn delete_key(&self, name: &str) -> Result<Option<KeyRow>, StoreError> {
        dispatch!(self.delete_key(name.to_string()))
    }

    /// Adds an entry to the audit trail.
    pub async fn record_audit(&self, entry: AuditRow) -> Result<(), StoreError> {
        dispatch!(self.record_audit(entry))
    }

    /// The audit entries `filter` picks, newest first.
    pub async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        dispatch!(self.audit(filter))
    }
}
