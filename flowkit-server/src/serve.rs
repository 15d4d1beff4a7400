//! The accept loop: HTTP/1.1 connections served by hyper, with the limits that keep slow and
//! stalled clients from holding the server.
//!
//! - A request head must arrive within the header timeout (hyper's `header_read_timeout`; it
//!   also ends keep-alive connections that sit idle that long).
//! - A request body must arrive whole within the body timeout, counted from when the request
//!   reaches the app: a body dripped a few bytes at a time is cut off with a 408.
//! - At most `max_connections` connections are open; more wait in the kernel's accept queue
//!   until a slot frees, so timed-out clients make room for new ones (health checks included).
//! - Running out of file descriptors (EMFILE) neither kills nor spins the loop: it backs off.
//! - On [`Shutdown::trigger`] the listener closes, live streams end, and open connections get
//!   [`Limits::shutdown_grace`] to finish what they are doing.
//! - With TLS ([`serve_tls`]), each connection's handshake runs in its own task, within the
//!   header timeout, holding its connection slot: the limits above hold over TLS as over TCP.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
pub use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// The limits of the accept loop.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a client may take to send a request's head (also how long a keep-alive
    /// connection may sit idle).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's whole body.
    pub body_timeout: Duration,
    /// How many connections may be open at once.
    pub max_connections: usize,
    /// How long open connections get to finish after a shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A shutdown signal shared by the accept loop and long-lived responses (the live stream): once
/// triggered, it stays triggered.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            sender: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown: the server stops accepting and live streams end.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Completes once the shutdown has begun (at once if it has).
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut receiver = self.sender.subscribe();
        async move {
            // Fails only when the sender is gone, and `self` holds it.
            let _ = receiver.wait_for(|triggered| *triggered).await;
        }
    }
}

/// File descriptors kept for everything but client connections: the database pool and its
/// journal files, the listener, the standard streams, the runtime's own.
const RESERVED_FILES: u64 = 64;

/// How many of `wanted` connections the process can hold open: it raises its soft limit of open
/// files (`ulimit -n`) towards the hard limit if it needs to, and if that is still short, serves
/// fewer connections (with a warning) rather than running out of file descriptors, which would
/// leave no room for the database either.
#[cfg(unix)]
pub fn fit_connections_to_file_limit(wanted: usize) -> usize {
    let reserved: libc::rlim_t = RESERVED_FILES;
    let needed = libc::rlim_t::try_from(wanted)
        .unwrap_or(libc::rlim_t::MAX)
        .saturating_add(reserved);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into `limit`, which lives for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not read the limit of open files");
        return wanted;
    }
    if limit.rlim_cur < needed {
        let raised = libc::rlimit {
            rlim_cur: needed.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads `raised`, which lives for the whole call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::debug!(
                from = limit.rlim_cur,
                to = raised.rlim_cur,
                "raised the limit of open files"
            );
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    let fits = usize::try_from(limit.rlim_cur.saturating_sub(reserved)).unwrap_or(usize::MAX);
    if fits < wanted {
        let fits = fits.max(1);
        tracing::warn!(
            "serving at most {fits} connections, not {wanted}: this process may open only {} files \
             (ulimit -n); raise that limit to serve more",
            limit.rlim_cur
        );
        fits
    } else {
        wanted
    }
}

/// How many of `wanted` connections the process can hold open (all of them, on this platform).
#[cfg(not(unix))]
pub fn fit_connections_to_file_limit(wanted: usize) -> usize {
    wanted
}

/// Serves `app` on `listener` within `limits` until `shutdown` is triggered, then gives open
/// connections `limits.shutdown_grace` to finish and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    serve_tls(listener, app, limits, shutdown, None).await
}

/// Like [`serve`], over TLS when `tls` is given (see [`tls_acceptor`]).
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: Shutdown,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.body_timeout,
        crate::body_limits::body_deadline,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut failures = 0u64;
    loop {
        // A slot first: with every slot taken, new connections wait in the accept queue.
        let slot = tokio::select! {
            biased;
            () = shutdown.triggered() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = shutdown.triggered() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                drop(slot);
                if !accept_failed(&error, &mut failures, &shutdown).await {
                    break;
                }
                continue;
            }
        };
        if failures > 0 {
            tracing::info!(failures, "accepting connections again");
            failures = 0;
        }
        // Small answers and live events go out at once.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let http = http.clone();
        let Some(acceptor) = tls.clone() else {
            let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "connection closed with an error");
                }
                drop(slot);
            });
            continue;
        };
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // A client that never finishes its handshake is cut off like one that never
            // sends its request's head.
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let connection =
                        watcher.watch(http.serve_connection(TokioIo::new(stream), service));
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "connection closed with an error");
                    }
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
            drop(slot);
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open,
        "shutting down: no new connections; open ones may finish"
    );
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open after {:?}; closing them",
            limits.shutdown_grace
        );
    }
    Ok(())
}

/// Handles an error of `accept`: a connection that failed before it was accepted is skipped;
/// anything else (out of file descriptors, out of memory) is logged once per streak and waited
/// out, so the loop neither spins nor stops. False if the server is shutting down meanwhile.
async fn accept_failed(error: &std::io::Error, failures: &mut u64, shutdown: &Shutdown) -> bool {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
    ) {
        tracing::debug!(%error, "a connection failed before it was accepted");
        return true;
    }
    if *failures == 0 {
        tracing::warn!(
            %error,
            "cannot accept connections; retrying every 100 ms until open connections end"
        );
    }
    *failures += 1;
    tokio::select! {
        () = shutdown.triggered() => false,
        () = tokio::time::sleep(Duration::from_millis(100)) => true,
    }
}

/// What went wrong reading a certificate or key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read, or held no PEM of the kind needed.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// rustls refused the certificate and key together.
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS acceptor for the certificate chain in `cert` and the private key in `key` (PEM files;
/// the chain starts with the server's certificate). Speaks HTTP/1.1 (ALPN), TLS 1.2 and 1.3.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let file_error = |path: &std::path::Path, reason: String| TlsError::File {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(cert, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(file_error(cert, "holds no certificate".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error(key, format!("not a PEM private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
