// Each hook option's error names the option and shows how it is written.

async fn notify(_run: &flowkit::HookContext) {}

#[flowkit::task(on_failure = "notify")]
async fn hook_as_a_string() {}

#[flowkit::task(on_failure = [])]
async fn empty_hook_list() {}

#[flowkit::task(on_retry = [notify, 3])]
async fn hook_list_with_a_number() {}

#[flowkit::flow(on_cancel = |run| notify(run))]
async fn hook_as_a_closure() {}

#[flowkit::flow(on_completion)]
async fn hook_without_value() {}

#[flowkit::task(on_failure = notify, on_failure = notify)]
async fn duplicate_hook_option() {}

fn main() {}
