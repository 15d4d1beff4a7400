use std::rc::Rc;

#[flowkit::task]
async fn extract(rows: Rc<Vec<u32>>) -> usize {
    rows.len()
}

fn main() {}
