//! The SQLite store: one file, created on first start, in WAL mode.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;

backend!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    tag_filter: "EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = ",
    like: "LIKE",
    id_hex: "lower(hex(runs.id))",
    task_index: "INDEXED BY runs_by_flow_run",
    parent_index: "INDEXED BY runs_by_parent",
    fresh_by_lookup: true,
    begin: "BEGIN IMMEDIATE",
);

work_store!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    lock: "",
    skip_locked: "",
    begin: "BEGIN IMMEDIATE",
);
access_store!(SqliteStore, sqlx::Sqlite, sqlx::sqlite::SqliteRow, notify: false);
limits_store!(SqliteStore, sqlx::Sqlite, sqlx::sqlite::SqliteRow, lock: "");
automation_store!(
    SqliteStore,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    skip_locked: "",
    begin: "BEGIN IMMEDIATE",
);

impl SqliteStore {
    /// One server per SQLite file: nobody else to tell.
    pub(crate) async fn notify_work(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Opens (creating if needed) the database at `url` and applies the migrations.
    pub(crate) async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            // A large page cache keeps the indexes' hot pages in memory as the file grows
            // (the default, about 8 MB, makes ingest slow down past a few million events).
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        // One writer: concurrent ingest requests queue here instead of meeting "database is
        // locked"; readers run beside it (WAL).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await?;
        let file = options.get_filename();
        let file = (file != std::path::Path::new(":memory:")).then(|| file.to_path_buf());
        let store = SqliteStore {
            writer,
            reader,
            health: std::sync::Arc::new(super::health::Health::new(file)),
        };
        // A read-only file or directory opens and reads fine, then fails every write.
        store
            .probe()
            .await
            .map_err(|error| StoreError::NotWritable(error.to_string()))?;
        Ok(store)
    }
}
