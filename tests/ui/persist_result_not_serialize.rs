struct Connection;

#[flowkit::task(persist_result = true)]
async fn connect() -> Connection {
    Connection
}

fn main() {}
