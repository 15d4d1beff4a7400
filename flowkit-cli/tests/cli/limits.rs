//! `flowkit limits`: set a concurrency limit and a rate limit, list them, remove one; a bad
//! rate is a usage error (exit 2) naming the forms it takes; the audit trail records both.

use crate::common::flowkit;

#[test]
fn limits_are_set_listed_removed_and_audited() {
    let set = flowkit(&["limits", "set", "cli-api", "5"]).ok();
    assert!(
        set.stdout
            .contains("at most 5 task runs tagged \"cli-api\" at once"),
        "{set}"
    );
    flowkit(&[
        "limits",
        "set",
        "cli-orders",
        "--rate",
        "10/s",
        "--burst",
        "5",
    ])
    .ok();

    let list = flowkit(&["limits", "ls"]).ok();
    assert_eq!(list.cell("cli-api", "SLOTS"), "0/5", "{list}");
    assert_eq!(list.cell("cli-api", "RATE"), "-", "{list}");
    assert_eq!(list.cell("cli-orders", "RATE"), "10/s (burst 5)", "{list}");
    assert_eq!(list.cell("cli-orders", "SLOTS"), "-", "{list}");

    let json = flowkit(&["limits", "ls", "--json"]).ok().json();
    let api = json
        .as_array()
        .and_then(|all| all.iter().find(|l| l["name"] == "cli-api"))
        .cloned()
        .expect("cli-api listed");
    assert_eq!(api["concurrency"], 5);

    let bad = flowkit(&["limits", "set", "cli-orders", "--rate", "ten"]).expect_code(2);
    assert!(bad.stderr.contains("N/s"), "{bad}");
    let neither = flowkit(&["limits", "set", "cli-x"]).expect_code(1);
    assert!(neither.stderr.contains("--rate"), "{neither}");

    flowkit(&["limits", "rm", "cli-api"]).ok();
    let list = flowkit(&["limits", "ls"]).ok();
    assert!(!list.stdout.contains("cli-api"), "{list}");
    let missing = flowkit(&["limits", "rm", "cli-api"]).expect_code(1);
    assert!(missing.stderr.contains("not found"), "{missing}");

    let audit = flowkit(&["audit", "--json"]).ok().json();
    let actions: Vec<String> = audit
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["detail"].as_str().is_some_and(|d| d.starts_with("cli-")))
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap_or(""),
                e["detail"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        actions.contains(&"limit_set cli-api: concurrency 5".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"limit_set cli-orders: rate 10/s burst 5".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"limit_remove cli-api".to_string()),
        "{actions:?}"
    );
}
