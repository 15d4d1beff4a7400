//! `flowkit-server backup --to FILE`: a consistent copy of a SQLite store, taken while the
//! server runs and ingests.
//!
//! SQLite's `VACUUM INTO` writes the database as one read transaction sees it: in WAL mode the
//! server's writer goes on meanwhile, and the copy holds every transaction committed before the
//! backup began (every event acknowledged by then), none half. It is written next to the
//! destination under a temporary name and renamed into place once complete, so `FILE` is never
//! a partial copy. For PostgreSQL, use `pg_dump` (see [`BackupError::Postgres`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// Why a backup was not made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store is PostgreSQL: its own tool makes consistent copies.
    #[error(
        "this is a PostgreSQL store: back it up with pg_dump, which copies it consistently while \
         servers write, e.g. `pg_dump --format=custom --file flowkit.dump \"$FLOWKIT_DATABASE_URL\"` \
         (restore with pg_restore)"
    )]
    Postgres,
    /// The URL is not a database this server supports.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH")]
    UnsupportedUrl(String),
    /// The destination exists: a backup never overwrites one.
    #[error("{0} exists: give a new file (a backup never replaces one)")]
    Exists(PathBuf),
    /// The database is not there.
    #[error("no database at {0}")]
    Missing(PathBuf),
    /// SQLite failed.
    #[error("the backup failed: {0}")]
    Database(#[from] sqlx::Error),
    /// Renaming the finished copy into place failed.
    #[error("could not move the backup into place at {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Copies the SQLite store at `database_url` into the new file `to`; its size in bytes.
pub async fn backup(database_url: &str, to: &Path) -> Result<u64, BackupError> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        return Err(BackupError::Postgres);
    }
    if !database_url.starts_with("sqlite:") {
        return Err(BackupError::UnsupportedUrl(database_url.to_string()));
    }
    if to.exists() {
        return Err(BackupError::Exists(to.to_path_buf()));
    }
    let options = SqliteConnectOptions::from_str(database_url)?
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30));
    let source = options.get_filename().to_path_buf();
    if !source.exists() {
        return Err(BackupError::Missing(source));
    }
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flowkit-backup".into());
    let partial = to.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let mut connection = options.connect().await?;
    let copied = sqlx::query("VACUUM INTO ?")
        .bind(partial.to_string_lossy().into_owned())
        .execute(&mut connection)
        .await;
    drop(connection);
    if let Err(error) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(error.into());
    }
    let io = |error| BackupError::Io {
        path: to.to_path_buf(),
        error,
    };
    // Durable before it takes the final name.
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&partial, to).map_err(io)?;
    Ok(std::fs::metadata(to).map(|m| m.len()).unwrap_or(0))
}
