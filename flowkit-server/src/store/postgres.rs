//! The PostgreSQL store, for teams and for several servers sharing one database.

use sqlx::postgres::PgPoolOptions;

use super::StoreError;

backend!(
    PgStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    tag_filter: "EXISTS (SELECT 1 FROM jsonb_array_elements_text(runs.tags::jsonb) AS t(value) WHERE t.value = ",
    like: "ILIKE",
    id_hex: "replace(runs.id::text, '-', '')",
    task_index: "",
    parent_index: "",
    fresh_by_lookup: false,
    begin: "BEGIN",
);

work_store!(
    PgStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    lock: " FOR UPDATE",
    skip_locked: " FOR UPDATE SKIP LOCKED",
    begin: "BEGIN",
);
access_store!(PgStore, sqlx::Postgres, sqlx::postgres::PgRow, notify: true);
limits_store!(PgStore, sqlx::Postgres, sqlx::postgres::PgRow, lock: " FOR UPDATE");
automation_store!(
    PgStore,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    skip_locked: " FOR UPDATE SKIP LOCKED",
    begin: "BEGIN",
);

impl PgStore {
    /// The connection pool (for listening to other servers' notifications).
    pub(crate) fn pool(&self) -> &sqlx::PgPool {
        &self.writer
    }

    /// Tells every server listening on the database that work changed.
    pub(crate) async fn notify_work(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(crate::orchestrate::CHANNEL)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Connects to the database at `url` and applies the migrations.
    pub(crate) async fn open(url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let store = PgStore {
            writer: pool.clone(),
            reader: pool,
            health: std::sync::Arc::new(super::health::Health::new(None)),
        };
        store
            .probe()
            .await
            .map_err(|error| StoreError::NotWritable(error.to_string()))?;
        Ok(store)
    }
}
