struct Source;

impl Source {
    #[flowkit::task]
    async fn extract(&self) -> u32 {
        1
    }
}

fn main() {}
