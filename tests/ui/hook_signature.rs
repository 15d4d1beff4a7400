// A hook must be an async fn taking `&HookContext` and returning `()` or `Result<(), E: Display>`:
// the error points at the hook named in the option.

async fn takes_a_number(_attempt: u32) {}

struct NotDisplay;

async fn returns_a_bad_error(_run: &flowkit::HookContext) -> Result<(), NotDisplay> {
    Ok(())
}

#[flowkit::task(on_failure = takes_a_number)]
async fn wrong_argument() {}

#[flowkit::task(on_completion = returns_a_bad_error)]
async fn wrong_error() {}

fn main() {}
