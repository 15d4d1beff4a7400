#[flowkit::task(retries = 3, retry_delay = "1s", max_retry_delay = "1m")]
async fn extract() {}

fn main() {}
