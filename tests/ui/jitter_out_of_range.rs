#[flowkit::task(retries = 3, retry_jitter = 1.5)]
async fn extract() {}

fn main() {}
