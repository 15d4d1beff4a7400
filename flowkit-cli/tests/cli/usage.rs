//! Wrong arguments (exit 2, found before any request), an unreachable server (exit 3, naming
//! it) and a missing or wrong API key (exit 1, saying which).

use crate::common::{API_KEY, closed_port, flowkit_env, server};

#[test]
fn wrong_arguments_are_exit_2_naming_the_option_before_any_request() {
    // Nothing listens there: an exit 2 means the command never tried to reach it.
    let url = format!("http://127.0.0.1:{}", closed_port());
    let env = [("FLOWKIT_API_URL", url.as_str())];
    let cases: [(&[&str], &str); 14] = [
        (&[], "Usage: flowkit"),
        (&["deployment", ""], "<NAME>"),
        (&["nope"], "nope"),
        (&["trigger", "nightly", "--param", "days"], "--param"),
        (&["trigger", "nightly", "--param", "=3"], "--param"),
        (&["trigger", "nightly", "--params", "[1, 2]"], "--params"),
        (&["trigger", "nightly", "--at", "yesterday"], "--at"),
        (
            &["trigger", "nightly", "--interval", "2024-01-02..2024-01-01"],
            "--interval",
        ),
        (
            &[
                "backfill",
                "nightly",
                "--from",
                "2024-01-02",
                "--to",
                "2024-01-01",
            ],
            "--from",
        ),
        (&["backfill", "nightly", "--from", "2024-01-01"], "--to"),
        (
            &[
                "backfill",
                "nightly",
                "--from",
                "2024-01-01",
                "--to",
                "2024-02-01",
                "--max-active",
                "0",
            ],
            "--max-active",
        ),
        (
            &[
                "gaps",
                "nightly",
                "--from",
                "2024-01-01",
                "--to",
                "2024-01-01",
            ],
            "--from",
        ),
        (&["cancel", "not-a-run-id"], "RUN_ID"),
        (
            &["--api-url", "ftp://example.com", "deployments"],
            "--api-url",
        ),
    ];
    for (args, names) in cases {
        let out = flowkit_env(&env, args).expect_code(2);
        assert!(
            out.stderr.contains(names),
            "{args:?} should name {names}:\n{out}"
        );
        assert!(out.stdout.is_empty(), "{args:?}:\n{out}");
    }
}

#[test]
fn an_unreachable_server_is_exit_3_naming_its_url_and_what_to_do() {
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    // By option, and by environment for a command that writes.
    let by_option = flowkit_env(&[], &["--api-url", &url, "deployments"]);
    let by_env = flowkit_env(
        &[("FLOWKIT_API_URL", &url)],
        &["trigger", "nightly", "--param", "days=3"],
    );
    for out in [by_option, by_env] {
        let out = out.expect_code(3);
        assert!(out.stderr.contains(&format!("127.0.0.1:{port}")), "{out}");
        assert!(out.stderr.contains("flowkit-server"), "{out}");
        assert!(out.stderr.contains("FLOWKIT_API_URL"), "{out}");
    }
}

#[test]
fn a_missing_or_wrong_key_is_exit_1_saying_which() {
    let url = server().url.as_str();
    let none = flowkit_env(&[("FLOWKIT_API_URL", url)], &["deployments"]).expect_code(1);
    assert!(none.stderr.contains("API key"), "{none}");
    assert!(none.stderr.contains("no key was given"), "{none}");
    assert!(none.stderr.contains("FLOWKIT_API_KEY"), "{none}");
    let wrong = flowkit_env(
        &[("FLOWKIT_API_URL", url), ("FLOWKIT_API_KEY", "not-the-key")],
        &["deployments"],
    )
    .expect_code(1);
    assert!(wrong.stderr.contains("is not the server's"), "{wrong}");
    // The option gives it as well as the environment.
    flowkit_env(
        &[("FLOWKIT_API_URL", url)],
        &["--api-key", API_KEY, "deployments"],
    )
    .ok();
}
