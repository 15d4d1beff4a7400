struct Client;

#[flowkit::task(record_arguments = true)]
async fn fetch(client: &Client, day: u32) -> u32 {
    let _ = client;
    day
}

#[flowkit::task(record_arguments = "yes")]
async fn quoted(day: u32) -> u32 {
    day
}

fn main() {}
