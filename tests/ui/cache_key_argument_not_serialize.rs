struct Client;

#[flowkit::task(cache_key = inputs)]
async fn fetch(client: &Client, day: u32) -> u32 {
    let _ = client;
    day
}

fn main() {}
