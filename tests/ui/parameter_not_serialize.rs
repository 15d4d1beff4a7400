struct Connection;

#[flowkit::flow]
async fn etl(conn: Connection) {
    let _ = conn;
}

fn main() {}
