#[flowkit::task(retries = "3")]
async fn extract() {}

fn main() {}
