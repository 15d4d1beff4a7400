//! What the benches share: a server in this process, on a free port.

use std::time::Duration;

use flowkit_server::orchestrate::Orchestra;
use flowkit_server::{AppState, Limits, Shutdown, Store, app};

/// A server on the database at `database`, with orchestration (a 30 s heartbeat timeout, a
/// scheduler that does not tick during a bench): its URL and its state.
pub async fn start_server(database: &str) -> (String, AppState) {
    let store = Store::open(database).await.expect("the database opens");
    let state = AppState::new(store, None).with_orchestra(Orchestra::new(
        Duration::from_secs(30),
        Duration::from_secs(3600),
    ));
    flowkit_server::orchestrate::spawn(&state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let router = app(state.clone());
    tokio::spawn(async move {
        let _ = flowkit_server::serve(listener, router, &Limits::default(), Shutdown::new()).await;
    });
    (url, state)
}
