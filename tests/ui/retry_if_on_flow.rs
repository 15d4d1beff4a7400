fn transient(_: &String) -> bool {
    true
}

#[flowkit::flow(retries = 1, retry_if = transient)]
async fn etl() {}

fn main() {}
