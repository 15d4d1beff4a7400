//! Compile errors of the macros: each points at the offending option or token.
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test --test ui` and review them.

#[test]
fn macro_errors_point_at_the_problem() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
