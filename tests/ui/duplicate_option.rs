#[flowkit::task(retries = 3, retries = 4)]
async fn extract() {}

fn main() {}
