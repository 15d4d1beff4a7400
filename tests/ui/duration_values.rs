// Duration errors name the option and the units flowkit documents (never months or years).

#[flowkit::task(timeout = "soon")]
async fn not_a_duration() {}

#[flowkit::task(timeout = "5")]
async fn string_without_unit() {}

#[flowkit::task(timeout = -5)]
async fn negative_seconds() {}

#[flowkit::task(timeout = -0.5)]
async fn negative_fraction() {}

#[flowkit::task(timeout = true)]
async fn not_a_number_or_string() {}

#[flowkit::task(retries = 2, retry_delay = ["1s", "5 parsecs"])]
async fn bad_delay_in_list() {}

#[flowkit::task(retries = 2, backoff = "exponential", retry_delay = "1s", max_retry_delay = "1 fortnight")]
async fn bad_max_retry_delay() {}

#[flowkit::flow(timeout = "4 hours and a bit")]
async fn bad_flow_timeout() {}

// Units humantime reads but flowkit does not document: "5M" is five months to it.
#[flowkit::task(retries = 1, retry_delay = "5M")]
async fn months_by_mistake() {}

// Accepted: days, as humantime reads them.
#[flowkit::task(timeout = "1d")]
async fn one_day() {}

fn main() {}
