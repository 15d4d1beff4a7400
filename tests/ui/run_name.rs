#![allow(unused_variables)]
#[flowkit::flow(run_name = "etl-{dya}")]
async fn misspelled(day: String) {}

#[flowkit::flow(run_name = "etl-{day")]
async fn unclosed(day: String) {}

#[flowkit::flow(run_name = "etl-{day}")]
async fn no_parameters() {}

#[flowkit::flow(run_name = 42)]
async fn not_a_string(day: String) {}

#[flowkit::flow(run_name = "{{literal}}-{day}-{ shard }")]
async fn fine(day: String, shard: u32) {}

fn main() {}
