//! `kit migrate status` and `kit retention list` against the local stack's database
//! (`DATABASE_ADMIN_URL`, as `make test` sets it): their data on stdout, as text or one
//! JSON array (`--json`) a script can read, and nothing else there.

use std::process::{Command, Output};

use serde_json::Value;

fn kit(args: &[&str]) -> Output {
    let admin = std::env::var("DATABASE_ADMIN_URL").expect(
        "DATABASE_ADMIN_URL is not set: run the tests with `make test`, or `make up && . .kit/env` first",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kit"))
        .args(args)
        .env("DATABASE_ADMIN_URL", admin)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("kit runs");
    assert!(
        out.status.success(),
        "kit {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_stdout(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn migrate_status_lists_every_migration_on_stdout() {
    let out = kit(&["migrate", "status", "--json"]);
    let list = json_stdout(&out);
    let list = list.as_array().expect("an array");
    assert!(!list.is_empty());
    assert_eq!(list[0]["version"], 1, "{list:?}");
    for m in list {
        // stack.sh up applied them all.
        assert_eq!(m["applied"], true, "{m}");
        assert!(
            m["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{m}"
        );
    }
    let versions: Vec<i64> = list
        .iter()
        .map(|m| m["version"].as_i64().unwrap())
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");

    let text = kit(&["migrate", "status"]);
    let lines: Vec<String> = String::from_utf8_lossy(&text.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), list.len(), "one line per migration: {lines:?}");
    assert!(
        lines[0].starts_with("0001 ") && lines[0].ends_with(" applied"),
        "{lines:?}"
    );
}

#[test]
fn retention_list_shows_an_override_on_stdout() {
    let namespace = format!("kit-cli-{}", std::process::id());
    let set = kit(&["retention", "set", &namespace, "12"]);
    assert!(
        set.stdout.is_empty(),
        "a message, not data: it goes to stderr"
    );
    let listed = json_stdout(&kit(&["retention", "list", "--json"]));
    let text = kit(&["retention", "list"]);
    kit(&["retention", "unset", &namespace]);

    let ours: Vec<&Value> = listed
        .as_array()
        .expect("an array")
        .iter()
        .filter(|p| p["namespace"] == namespace.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{listed}");
    assert_eq!(ours[0]["retention_days"], 12);
    assert!(
        ours[0]["updated_at"].as_str().is_some_and(is_rfc3339),
        "{}",
        ours[0]
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&namespace) && l.contains("12 days")),
        "{text}"
    );
    let after = json_stdout(&kit(&["retention", "list", "--json"]));
    assert!(
        !after.to_string().contains(&namespace),
        "unset left {namespace}: {after}"
    );
}

/// `2026-01-02T03:04:05…`: an RFC 3339 timestamp.
fn is_rfc3339(at: &str) -> bool {
    let b = at.as_bytes();
    b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':'
}
