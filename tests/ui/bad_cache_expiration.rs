#[flowkit::task(cache_key = inputs, cache_expiration = "a day")]
async fn price(item: u32) -> u32 {
    item
}

fn main() {}
