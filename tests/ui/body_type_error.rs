#[flowkit::task]
async fn extract() -> Result<u32, String> {
    Ok("not a number")
}

fn main() {}
