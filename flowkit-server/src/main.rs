//! `flowkit-server`: the flowkit API server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use flowkit_server::{AppState, Store, app};

/// Stores the run events of flowkit programs and answers queries about their runs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FLOWKIT_BIND", default_value = "127.0.0.1:4200")]
    bind: SocketAddr,
    /// Database: `sqlite://PATH` (created if missing).
    #[arg(long, env = "FLOWKIT_DATABASE_URL")]
    database_url: Option<String>,
    /// API key: when set, every route but /healthz needs `Authorization: Bearer <key>`.
    #[arg(long, env = "FLOWKIT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Delete runs older than this many days (0: keep everything).
    #[arg(long, env = "FLOWKIT_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u32,
    /// Listen on a non-loopback address without an API key.
    #[arg(long)]
    allow_public_without_key: bool,
}

fn default_database() -> anyhow::Result<String> {
    let dir = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("flowkit");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("flowkit.db").display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let args = Args::parse();
    let api_key = args.api_key.filter(|k| !k.is_empty());
    if api_key.is_none() && !args.bind.ip().is_loopback() && !args.allow_public_without_key {
        anyhow::bail!(
            "refusing to listen on {} without an API key: set --api-key (or FLOWKIT_API_KEY), \
             or pass --allow-public-without-key",
            args.bind
        );
    }
    let database_url = match args.database_url {
        Some(url) => url,
        None => default_database()?,
    };
    let store = Store::open(&database_url)
        .await
        .with_context(|| format!("opening {database_url}"))?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    let address = listener.local_addr()?;
    if api_key.is_none() {
        tracing::warn!("no API key set: anyone who can reach {address} can read and write runs");
    }
    tracing::info!(%address, database = %database_url, "flowkit-server listening");
    println!("flowkit-server listening on http://{address}");
    flowkit_server::spawn_retention(store.clone(), args.retention_days);
    let state = AppState::new(store, api_key);
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
