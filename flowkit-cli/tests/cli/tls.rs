//! The `flowkit` command line against a server on HTTPS with a private CA (made by
//! scripts/test-certs.sh) and under a base path: it connects with `FLOWKIT_CA_CERT`, and
//! without it says the server cannot be reached (exit 3) rather than talking in plain text.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use flowkit_server::{AppState, Limits, Store, app};

use crate::common::{TempDir, block_on, flowkit_env};

const KEY: &str = "cli-tls-key";

/// A CA and a server certificate it signed for 127.0.0.1 and localhost, made in `dir` by
/// `scripts/test-certs.sh`: (CA certificate, server certificate, server key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-certs.sh");
    let made = std::process::Command::new("bash")
        .arg(script)
        .arg(dir)
        .output();
    let made = made.expect("bash runs");
    let why = String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "{script}: {why}");
    let file = |name: &str| dir.join(name);
    (file("ca.pem"), file("server.pem"), file("server.key"))
}

#[test]
fn the_cli_reaches_an_https_server_under_a_base_path_with_the_ca() {
    let dir = TempDir::new("tls");
    let (ca, cert, key) = certificates(dir.path());
    let database = format!("sqlite://{}", dir.path().join("flowkit.db").display());
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        block_on(async move {
            let store = Store::open(&database).await.expect("the database opens");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port");
            let state = AppState::new(store, Some(KEY.into()));
            let shutdown = state.shutdown.clone();
            let _ = sender.send((
                listener.local_addr().expect("its address"),
                shutdown.clone(),
            ));
            let tls = flowkit_server::tls_acceptor(&cert, &key).expect("the certificate loads");
            let app = flowkit_server::at_base_path(app(state), Some("/flowkit".into()));
            flowkit_server::serve_tls(listener, app, &Limits::default(), shutdown, Some(tls))
                .await
                .expect("it serves");
        });
    });
    let (address, shutdown) = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the server listens");
    let url = format!("https://{address}/flowkit");
    let ca = ca.display().to_string();

    let out = flowkit_env(
        &[
            ("FLOWKIT_API_URL", &url),
            ("FLOWKIT_API_KEY", KEY),
            ("FLOWKIT_CA_CERT", &ca),
        ],
        &["keys", "create", "--name", "over-tls", "--scope", "read"],
    )
    .ok();
    assert!(out.stdout.trim().starts_with("fk_"), "{out}");
    let list = flowkit_env(
        &[("FLOWKIT_API_URL", &url), ("FLOWKIT_API_KEY", KEY)],
        &["--ca-cert", &ca, "keys", "list"],
    )
    .ok();
    assert_eq!(list.cell("over-tls", "SCOPES"), "read");

    // Without the CA: not reachable (exit 3), saying why.
    let refused = flowkit_env(
        &[("FLOWKIT_API_URL", &url), ("FLOWKIT_API_KEY", KEY)],
        &["deployments"],
    )
    .expect_code(3);
    assert!(
        refused.stderr.to_lowercase().contains("certificate"),
        "{refused}"
    );
    // A CA file that is not one: a usage error.
    flowkit_env(
        &[
            ("FLOWKIT_API_URL", &url),
            ("FLOWKIT_API_KEY", KEY),
            ("FLOWKIT_CA_CERT", &url),
        ],
        &["deployments"],
    )
    .expect_code(2);
    shutdown.trigger();
}
