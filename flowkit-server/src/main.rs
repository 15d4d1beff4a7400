//! `flowkit-server`: the flowkit API server; `flowkit-server backup --to FILE` copies its SQLite
//! store consistently while it runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use flowkit_server::{AppState, Limits, Shutdown, Store, app};

/// Stores the run events of flowkit programs and answers queries about their runs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FLOWKIT_BIND", default_value = "127.0.0.1:4200")]
    bind: SocketAddr,
    /// Database: `sqlite://PATH` (created if missing) or `postgres://…`.
    #[arg(long, env = "FLOWKIT_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// API key: when set, every route but /healthz needs `Authorization: Bearer <key>`, this
    /// key (which may do everything) or one made with `flowkit keys create`.
    #[arg(long, env = "FLOWKIT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM; the server's certificate first).
    #[arg(long, env = "FLOWKIT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "FLOWKIT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve the API and the dashboard under this path (`/flowkit`), for a reverse proxy that
    /// forwards the prefix as is.
    #[arg(long, env = "FLOWKIT_BASE_PATH", value_parser = base_path, default_value = "")]
    base_path: BasePath,
    /// Delete runs older than this many days (0: keep everything).
    #[arg(long, env = "FLOWKIT_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u32,
    /// Listen on a non-loopback address without an API key.
    #[arg(long)]
    allow_public_without_key: bool,
    /// How long a client may take to send a request's head ("10s", "500ms"); also how long an
    /// idle keep-alive connection stays open.
    #[arg(long, env = "FLOWKIT_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    header_timeout: Duration,
    /// How long a client may take to send a request's whole body (408 after that).
    #[arg(long, env = "FLOWKIT_BODY_TIMEOUT", default_value = "30s", value_parser = duration)]
    body_timeout: Duration,
    /// How many connections may be open at once; more wait until one closes.
    #[arg(long, env = "FLOWKIT_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// A running flow run whose program stops sending heartbeats for this long is recorded
    /// Crashed (and made again for another worker when its flow has retries left).
    #[arg(long, env = "FLOWKIT_HEARTBEAT_TIMEOUT", default_value = "30s", value_parser = duration)]
    heartbeat_timeout: Duration,
    /// How often the scheduler creates deployments' scheduled runs (they are made ten minutes
    /// ahead; workers are handed each one the moment it is due, whatever the tick).
    #[arg(long, env = "FLOWKIT_SCHEDULER_TICK", default_value = "5s", value_parser = duration)]
    scheduler_tick: Duration,
    /// The address users reach the dashboard at (`https://flowkit.example.com/flowkit/`), for
    /// the links in notifications. Default: the address listened on, with --base-path.
    #[arg(long, env = "FLOWKIT_PUBLIC_URL")]
    public_url: Option<String>,
    /// How often automations look for late runs and missed SLAs.
    #[arg(long, env = "FLOWKIT_AUTOMATIONS_TICK", default_value = "1s", value_parser = duration)]
    automations_tick: Duration,
    /// How long a failed notification waits before its first retry (each next retry waits
    /// twice as long, at most 10 minutes).
    #[arg(long, env = "FLOWKIT_NOTIFY_RETRY", default_value = "2s", value_parser = duration)]
    notify_retry: Duration,
    /// A notification is given up after this many tries.
    #[arg(long, env = "FLOWKIT_NOTIFY_ATTEMPTS", default_value_t = 6,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    notify_attempts: u32,
    /// How long one try of a notification may take (a target that does not answer in time
    /// counts as failed, and is tried again later).
    #[arg(long, env = "FLOWKIT_NOTIFY_TIMEOUT", default_value = "10s", value_parser = duration)]
    notify_timeout: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy the SQLite store to a new file, consistently, while the server runs (for
    /// PostgreSQL, use pg_dump).
    Backup {
        /// The file to write (it must not exist).
        #[arg(long)]
        to: PathBuf,
    },
}

/// A parsed `--base-path`.
#[derive(Clone, Debug)]
struct BasePath(Option<String>);

fn base_path(text: &str) -> Result<BasePath, String> {
    flowkit_server::base_path(text).map(BasePath)
}

/// A positive duration: "10s", "500ms", "2m".
fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(error) => Err(format!("{error} (write it like 10s, 500ms or 2m)")),
    }
}

/// Handles SIGTERM and SIGINT (Ctrl-C) from now on: the future completes on the first one,
/// naming it. (Handlers are installed here, not when the future is first polled, so a signal
/// that comes right after the server says it listens is not missed.)
#[cfg(unix)]
fn stop_signal() -> impl Future<Output = &'static str> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let handle = |kind, name: &'static str| match signal(kind) {
        Ok(signal) => Some((signal, name)),
        Err(error) => {
            tracing::warn!(%error, "cannot handle {name}: it will stop the server at once");
            None
        }
    };
    let term = handle(SignalKind::terminate(), "SIGTERM");
    let int = handle(SignalKind::interrupt(), "SIGINT");
    let wait = |handled: Option<(Signal, &'static str)>| async move {
        match handled {
            Some((mut signal, name)) => {
                signal.recv().await;
                name
            }
            None => std::future::pending().await,
        }
    };
    async move {
        tokio::select! {
            name = wait(term) => name,
            name = wait(int) => name,
        }
    }
}

/// Completes on the first Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> impl Future<Output = &'static str> {
    async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(error) => {
                tracing::warn!(%error, "cannot handle Ctrl-C: it will stop the server at once");
                std::future::pending().await
            }
        }
    }
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
    if let Some(Command::Backup { to }) = &args.command {
        let database_url = match &args.database_url {
            Some(url) => url.clone(),
            None => default_database()?,
        };
        let bytes = flowkit_server::backup::backup(&database_url, to).await?;
        println!(
            "backed up {database_url} to {} ({bytes} bytes)",
            to.display()
        );
        return Ok(());
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(flowkit_server::tls_acceptor(cert, key)?),
        _ => None,
    };
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
    let stop = stop_signal();
    tracing::info!(%address, database = %database_url, "flowkit-server listening");
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(base) = &args.base_path.0 {
        tracing::info!("the API and the dashboard are under {scheme}://{address}{base}/");
    }
    println!("flowkit-server listening on {scheme}://{address}");
    flowkit_server::spawn_retention(store.clone(), args.retention_days);
    let public_url = args.public_url.clone().unwrap_or_else(|| {
        format!(
            "{scheme}://{address}{}/",
            args.base_path.0.as_deref().unwrap_or("")
        )
    });
    let state = AppState::new(store, api_key)
        .with_orchestra(flowkit_server::orchestrate::Orchestra::new(
            args.heartbeat_timeout,
            args.scheduler_tick,
        ))
        .with_automations(flowkit_server::automations::Settings {
            tick: args.automations_tick,
            retry_base: args.notify_retry,
            max_attempts: args.notify_attempts,
            timeout: args.notify_timeout,
            public_url: Some(public_url),
        });
    flowkit_server::orchestrate::spawn(&state);
    flowkit_server::automations::spawn(&state);
    let shutdown: Shutdown = state.shutdown.clone();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let signal = stop.await;
            tracing::info!(signal, "stopping: finishing open requests");
            shutdown.trigger();
        }
    });
    let limits = Limits {
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        max_connections: flowkit_server::serve::fit_connections_to_file_limit(
            args.max_connections as usize,
        ),
        ..Limits::default()
    };
    let app = flowkit_server::at_base_path(app(state), args.base_path.0);
    flowkit_server::serve_tls(listener, app, &limits, shutdown, tls).await?;
    tracing::info!("stopped");
    Ok(())
}
