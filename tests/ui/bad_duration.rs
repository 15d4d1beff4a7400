#[flowkit::task(retries = 3, retry_delay = "5 minutes please")]
async fn extract() {}

fn main() {}
