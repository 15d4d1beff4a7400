// Each option's error names the option and says what it expects.

#[flowkit::task(retries = -1)]
async fn negative_retries() {}

#[flowkit::task(retries = 1.5)]
async fn fractional_retries() {}

#[flowkit::task(retries = 99999999999)]
async fn too_many_retries() {}

#[flowkit::task(retries)]
async fn retries_without_value() {}

#[flowkit::task(name = daily)]
async fn name_not_a_string() {}

#[flowkit::task(name = " ")]
async fn empty_name() {}

#[flowkit::task(description = 3)]
async fn description_not_a_string() {}

#[flowkit::task(retries = 2, backoff = "linear")]
async fn unknown_backoff() {}

#[flowkit::task(retries = 2, retry_jitter = -0.1)]
async fn negative_jitter() {}

#[flowkit::task(retries = 2, retry_jitter = "a bit")]
async fn jitter_not_a_number() {}

#[flowkit::task(retries = 2, retry_if = true)]
async fn retry_if_not_a_function() {}

#[flowkit::task(tags = "api")]
async fn tags_not_a_list() {}

#[flowkit::task(tags = ["api", 7])]
async fn tag_not_a_string() {}

#[flowkit::task(retries = 2, retry_delay = [])]
async fn empty_delay_list() {}

#[flowkit::flow(concurrency_limit = 0)]
async fn zero_limit() {}

#[flowkit::flow(concurrency_limit = -4)]
async fn negative_limit() {}

fn main() {}
