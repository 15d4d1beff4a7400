//! Slow and stalled clients against a real server process: dripped request heads and bodies are
//! cut off at their timeouts, an announced oversized body is refused before it is sent, and with
//! every connection slot (or every file descriptor) taken, `/healthz` still answers once the slow
//! clients are timed out.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, TempDir};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short timeouts, so that these tests take seconds.
const SHORT: &[&str] = &["--header-timeout", "1s", "--body-timeout", "1s"];

/// Counts the clients whose connection is established.
static CONNECTED: AtomicUsize = AtomicUsize::new(0);

/// Connects and sends a request head that never ends: its first line, then one header line every
/// `every` (none at all when `every` is None). How long the connection lived, from its
/// establishment until the server closed it (zero if it could not connect), or None if it was
/// still open `limit` after it began connecting.
async fn drip_headers(port: u16, every: Option<Duration>, limit: Duration) -> Option<Duration> {
    let deadline = tokio::time::Instant::now() + limit;
    let Ok(Ok(stream)) =
        tokio::time::timeout_at(deadline, TcpStream::connect(("127.0.0.1", port))).await
    else {
        return Some(Duration::ZERO);
    };
    let started = Instant::now();
    CONNECTED.fetch_add(1, Ordering::SeqCst);
    let (mut reader, mut writer) = stream.into_split();
    let reading = async {
        let mut buffer = [0u8; 1024];
        while let Ok(n) = reader.read(&mut buffer).await {
            if n == 0 {
                break;
            }
        }
    };
    let writing = async {
        let Some(every) = every else {
            return std::future::pending().await;
        };
        if writer
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: flowkit\r\n")
            .await
            .is_err()
        {
            return;
        }
        loop {
            tokio::time::sleep(every).await;
            if writer.write_all(b"X-Drip: 1\r\n").await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = reading => Some(started.elapsed()),
        _ = writing => Some(started.elapsed()),
        _ = tokio::time::sleep_until(deadline) => None,
    }
}

/// Reads one HTTP/1.1 answer (head and a `Content-Length` body): its status and body.
async fn read_answer(reader: &mut (impl AsyncRead + Unpin)) -> Option<(u16, String)> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = reader.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&data);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let length = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if body.len() >= length {
            return Some((status, body.to_string()));
        }
    }
}

/// `GET /healthz` on a new connection: its status, and how long the answer took (None if none
/// came within `limit`).
async fn health(port: u16, limit: Duration) -> Option<(u16, Duration)> {
    let started = Instant::now();
    tokio::time::timeout(limit, async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: flowkit\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let (status, _) = read_answer(&mut stream).await?;
        Some((status, started.elapsed()))
    })
    .await
    .ok()
    .flatten()
}

/// Asks for health every `every` during `span`, each on a new connection given `limit` to answer:
/// the slowest answer, or a panic naming a probe that got none or not a 200.
async fn probe_health(port: u16, span: Duration, every: Duration, limit: Duration) -> Duration {
    let mut probes = Vec::new();
    let started = Instant::now();
    while started.elapsed() < span {
        probes.push(tokio::spawn(health(port, limit)));
        tokio::time::sleep(every).await;
    }
    let mut slowest = Duration::ZERO;
    for (i, probe) in probes.into_iter().enumerate() {
        match probe.await.expect("the probe task") {
            Some((200, took)) => slowest = slowest.max(took),
            Some((status, _)) => panic!("health probe {i} answered {status}"),
            None => panic!("health probe {i} got no answer within {limit:?}"),
        }
    }
    slowest
}

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's stat");
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // 12th, stime the 13th.
    let after = stat.rsplit_once(')').expect("a stat line").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / hz)
}

#[tokio::test]
async fn dripped_and_silent_request_heads_are_cut_off_at_the_header_timeout() {
    let dir = TempDir::new("drip-heads");
    let server = Server::start(dir.path(), 0, SHORT).await;
    let port = server.port;
    let limit = Duration::from_secs(10);
    let dripping: Vec<_> = (0..200)
        .map(|_| tokio::spawn(drip_headers(port, Some(Duration::from_millis(200)), limit)))
        .collect();
    let silent: Vec<_> = (0..50)
        .map(|_| tokio::spawn(drip_headers(port, None, limit)))
        .collect();
    let mut longest = Duration::ZERO;
    for (i, task) in dripping.into_iter().chain(silent).enumerate() {
        let lived = task
            .await
            .expect("the client task")
            .unwrap_or_else(|| panic!("connection {i} was still open after {limit:?}"));
        longest = longest.max(lived);
    }
    eprintln!("250 slow request heads: the longest lived {longest:?} (header timeout 1 s)");
    assert!(longest < Duration::from_secs(4), "longest {longest:?}");
    let (status, _) = health(port, Duration::from_secs(5))
        .await
        .expect("health answers");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_announced_oversized_body_is_refused_before_it_is_sent() {
    let dir = TempDir::new("announced-413");
    let server = Server::start(dir.path(), 0, SHORT).await;
    let mut stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /api/events HTTP/1.1\r\nHost: flowkit\r\nContent-Type: application/json\r\n\
              Content-Length: 17000000\r\n\r\n",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(2), read_answer(&mut stream))
        .await
        .expect("an answer before any of the body is sent")
        .expect("an HTTP answer");
    eprintln!(
        "Content-Length: 17000000 answered in {:?}",
        started.elapsed()
    );
    assert_eq!(status, 413, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("17000000")),
        "{body}"
    );
}

#[tokio::test]
async fn a_dripped_body_is_cut_off_at_the_body_timeout() {
    let dir = TempDir::new("drip-body");
    let server = Server::start(dir.path(), 0, SHORT).await;
    let stream = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /api/events HTTP/1.1\r\nHost: flowkit\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\n\r\n[",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let dripping = tokio::spawn(async move {
        // 10 bytes every 100 ms: each read is quick, the whole body would take 100 s.
        for _ in 0..1000 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b"          ").await.is_err() {
                break;
            }
        }
    });
    let answer = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut reader))
        .await
        .expect("an answer within 10 s while the body still drips");
    let took = started.elapsed();
    dripping.abort();
    let (status, body) = answer.expect("an HTTP answer");
    eprintln!("a dripped body answered {status} after {took:?} (body timeout 1 s)");
    assert_eq!(status, 408, "{body}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert!(body["error"].is_string(), "{body}");
}

/// The server is given 1,024 files (a common default for `ulimit -n`), and 2,000 clients drip
/// request heads: health still answers within about two header timeouts.
#[tokio::test]
async fn health_answers_with_2000_dripping_clients_and_1024_files() {
    let dir = TempDir::new("drip-2000");
    let database = common::Backend::Sqlite.database_url(dir.path()).await;
    let server = Server::start_under(
        &["prlimit", "--nofile=1024:1024", "--"],
        &database,
        0,
        SHORT,
    )
    .await;
    let port = server.port;
    assert_eq!(
        health(port, Duration::from_secs(5)).await.map(|h| h.0),
        Some(200)
    );
    let limit = Duration::from_secs(30);
    let before = CONNECTED.load(Ordering::SeqCst);
    let dripping: Vec<_> = (0..2000)
        .map(|_| tokio::spawn(drip_headers(port, Some(Duration::from_millis(300)), limit)))
        .collect();
    // Most are connected (accepted, or queued by the kernel) before health asks.
    let deadline = Instant::now() + Duration::from_secs(5);
    while CONNECTED.load(Ordering::SeqCst) - before < 1900 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A probe every 250 ms for 3 s, each on a new connection.
    let slowest = probe_health(
        port,
        Duration::from_secs(3),
        Duration::from_millis(250),
        Duration::from_secs(10),
    )
    .await;
    eprintln!(
        "health under 2,000 dripping clients (1,024 files, header timeout 1 s): slowest {slowest:?}"
    );
    assert!(slowest < Duration::from_secs(3), "health took {slowest:?}");
    let mut still_open = 0;
    for task in dripping {
        if task.await.expect("the client task").is_none() {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open, 0,
        "dripping connections left open after {limit:?}"
    );
}

/// The server's file limit is cut below what its connection cap needs while it runs: accepting
/// fails with EMFILE, and the accept loop neither spins nor stops.
#[tokio::test]
async fn running_out_of_files_neither_spins_nor_stops_the_accept_loop() {
    let dir = TempDir::new("emfile");
    let server = Server::start(dir.path(), 0, SHORT).await;
    let port = server.port;
    assert_eq!(
        health(port, Duration::from_secs(5)).await.map(|h| h.0),
        Some(200)
    );
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &server.pid().to_string(), "--nofile=200:200"])
        .status()
        .expect("prlimit runs");
    assert!(status.success(), "prlimit");
    let limit = Duration::from_secs(30);
    let dripping: Vec<_> = (0..600)
        .map(|_| tokio::spawn(drip_headers(port, Some(Duration::from_millis(300)), limit)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_time(server.pid());
    let slowest = probe_health(
        port,
        Duration::from_secs(2),
        Duration::from_millis(250),
        Duration::from_secs(10),
    )
    .await;
    let used = cpu_time(server.pid()) - before;
    eprintln!(
        "600 dripping clients, 200 files: server CPU {used:?} while health probes took at most \
         {slowest:?}"
    );
    // A spinning loop would burn a core: 2 s or more.
    assert!(
        used < Duration::from_secs(1),
        "the server used {used:?} of CPU"
    );
    assert!(slowest < Duration::from_secs(4), "health took {slowest:?}");
    for task in dripping {
        assert!(
            task.await.expect("the client task").is_some(),
            "a connection left open"
        );
    }
    assert_eq!(
        health(port, Duration::from_secs(5)).await.map(|h| h.0),
        Some(200)
    );
}
