//! The `#[task]` and `#[flow]` attribute macros of flowkit. Use them through the `flowkit`
//! crate, which re-exports them and documents every option.
//!
//! The macros are thin: they parse and check the options at compile time (unknown, duplicate or
//! ill-typed options are errors pointing at the option), then turn the function into one that
//! returns a `flowkit::TaskCall` or `flowkit::FlowCall` wrapping the original body. Everything
//! else happens in the `flowkit` runtime.

use proc_macro::TokenStream;

mod duration;
mod expand;
mod options;
mod run_name;

/// Makes an async function a flowkit task: each call is a tracked task run that retries, times
/// out and reports its states. See the `flowkit` crate for the options.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(expand::Kind::Task, args.into(), item.into()).into()
}

/// Makes an async function a flowkit flow: each call is a tracked flow run, the parent of the
/// task runs and child flow runs made inside it. See the `flowkit` crate for the options.
#[proc_macro_attribute]
pub fn flow(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(expand::Kind::Flow, args.into(), item.into()).into()
}
