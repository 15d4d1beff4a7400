#[flowkit::task(cache_key = arguments)]
async fn a() {}

#[flowkit::task(cache_expiration = "1d")]
async fn b() {}

#[flowkit::task(refresh_cache = true)]
async fn c() {}

#[flowkit::task(persist_result = "yes")]
async fn d() {}

#[flowkit::task(cache_key = inputs, persist_result = false)]
async fn e() {}

#[flowkit::flow(cache_key = inputs)]
async fn f() {}

fn main() {}
