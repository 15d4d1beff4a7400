use std::rc::Rc;

#[flowkit::task]
async fn extract() -> usize {
    let rows = Rc::new(vec![1, 2, 3]);
    tokio::task::yield_now().await;
    rows.len()
}

fn main() {}
