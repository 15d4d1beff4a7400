#[flowkit::task]
fn extract() -> u32 {
    1
}

fn main() {}
