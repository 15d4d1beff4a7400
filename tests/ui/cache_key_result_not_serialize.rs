struct Rows;

#[flowkit::task(cache_key = inputs, cache_expiration = "1h")]
async fn rows(day: u32) -> Result<Rows, String> {
    let _ = day;
    Ok(Rows)
}

fn main() {}
