//! `flowkit keys` and `flowkit audit`: a key made with a scope, used, refused where its scope
//! does not reach (exit 1, naming the scope), listed without its secret, revoked; and the audit
//! trail names the key that acted.

use serde_json::json;

use crate::common::{flowkit, flowkit_env, server};

#[test]
fn keys_are_made_scoped_listed_revoked_and_the_audit_names_them() {
    let url = server().url.clone();
    let out = flowkit(&[
        "keys",
        "create",
        "--name",
        "cli-operator",
        "--scope",
        "read,operate",
    ])
    .ok();
    let key = out.stdout.trim().to_string();
    assert!(
        key.starts_with("fk_") && key.len() > 40,
        "the key alone on stdout:\n{out}"
    );
    assert!(out.stderr.contains("only time"), "{out}");
    let as_operator = |args: &[&str]| {
        flowkit_env(
            &[("FLOWKIT_API_URL", &url), ("FLOWKIT_API_KEY", &key)],
            args,
        )
    };

    // It reads and operates, but may not make keys: exit 1, naming the scope.
    server().put_deployment(json!({"name": "cli-keys", "flow": "cli-etl"}));
    as_operator(&["deployments"]).ok();
    as_operator(&["pause", "cli-keys"]).ok();
    as_operator(&["resume", "cli-keys"]).ok();
    let refused = as_operator(&["keys", "list"]).expect_code(1);
    assert!(refused.stderr.contains("`admin`"), "{refused}");

    // Listed without its secret.
    let list = flowkit(&["keys", "list"]).ok();
    assert_eq!(list.cell("cli-operator", "SCOPES"), "read,operate");
    assert!(!list.stdout.contains(&key), "{list}");

    // The audit trail names it.
    let audit = flowkit(&["audit", "--deployment", "cli-keys", "--json"])
        .ok()
        .json();
    let actions: Vec<(String, String)> = audit
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("").into(),
                e["action"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("cli-operator".to_string(), "resume".to_string()),
            ("cli-operator".to_string(), "pause".to_string()),
            ("api-key".to_string(), "deployment_register".to_string()),
        ]
    );
    let table = flowkit(&["audit", "--actor", "cli-operator"]).ok();
    assert!(
        table
            .stdout
            .lines()
            .next()
            .unwrap_or("")
            .starts_with("WHEN"),
        "{table}"
    );
    assert!(table.stdout.contains("pause"), "{table}");

    // Revoked: it stops working.
    flowkit(&["keys", "revoke", "cli-operator"]).ok();
    let gone = as_operator(&["deployments"]).expect_code(1);
    assert!(gone.stderr.contains("revoked"), "{gone}");
    let again = flowkit(&["keys", "revoke", "cli-operator"]).expect_code(1);
    assert!(again.stderr.contains("not found"), "{again}");
    // A wrong scope is a usage error.
    flowkit(&["keys", "create", "--name", "x", "--scope", "everything"]).expect_code(2);
}
