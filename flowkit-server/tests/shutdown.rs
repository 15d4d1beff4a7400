//! Graceful shutdown of a real server process: on SIGTERM or SIGINT it closes live streams,
//! finishes what it is doing and exits with status 0 within a couple of seconds, even with
//! Server-Sent-Events clients connected.

mod common;

use std::time::{Duration, Instant};

use common::{Server, TempDir};

#[tokio::test]
async fn sigterm_and_sigint_end_live_streams_and_exit_promptly() {
    for signal in ["TERM", "INT"] {
        let dir = TempDir::new("shutdown");
        let mut server = Server::start(dir.path(), 0, &[]).await;
        let client = reqwest::Client::new();
        let mut streams = Vec::new();
        for _ in 0..3 {
            let stream = client
                .get(format!("{}/api/events/stream", server.url))
                .send()
                .await
                .expect("the live stream answers");
            assert_eq!(stream.status(), 200);
            streams.push(stream);
        }
        // An idle keep-alive connection, too.
        let health = client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .expect("health");
        assert_eq!(health.status(), 200);

        let started = Instant::now();
        server.signal(signal);
        let status = server
            .exited_within(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("SIG{signal}: still running after 10 s"));
        let took = started.elapsed();
        eprintln!("SIG{signal} with 3 live-stream clients: exited {status} in {took:?}");
        assert!(status.success(), "SIG{signal}: {status}");
        assert!(took < Duration::from_secs(3), "SIG{signal}: took {took:?}");
        for mut stream in streams {
            // The stream ends cleanly: whatever was sent, then its end.
            let end = tokio::time::timeout(Duration::from_secs(2), async {
                loop {
                    match stream.chunk().await {
                        Ok(Some(_)) => continue,
                        other => return other.map(|_| ()),
                    }
                }
            })
            .await
            .expect("the stream ended");
            assert!(end.is_ok(), "SIG{signal}: the stream broke off: {end:?}");
        }
    }
}

#[tokio::test]
async fn a_signal_right_after_start_is_a_graceful_stop() {
    let dir = TempDir::new("shutdown-early");
    let mut server = Server::start(dir.path(), 0, &[]).await;
    server.signal("TERM");
    let status = server
        .exited_within(Duration::from_secs(10))
        .await
        .expect("stopped within 10 s");
    assert!(status.success(), "{status}");
}
