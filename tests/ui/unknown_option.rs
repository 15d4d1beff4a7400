#[flowkit::task(retrys = 3)]
async fn extract() {}

fn main() {}
