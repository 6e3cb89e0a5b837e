//! The `kit check|render|plan|build` commands as a user runs them: exit codes and output
//! (data on stdout, messages on stderr).

mod support;

use std::process::Command;

use support::{assert_mentions, text, Scratch};

#[test]
fn check_passes_on_a_fresh_render() {
    let s = Scratch::new("ok");
    let out = s.kit(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_mentions(
        &text(&out),
        &[
            "client connections: 221 of 2000",
            "server connections: 300 of 370",
            "ok:",
        ],
    );
}

#[test]
fn check_fails_with_the_numbers_and_the_fix() {
    let s = Scratch::new("violation");
    s.edit_config("maximum_concurrency = 10", "maximum_concurrency = 30");
    let out = s.kit(&["check"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_mentions(
        &text(&out),
        &[
            "✗ [sqs-concurrency] the SQS event source may run 30 ingest batches at once",
            "fix: lower queue.maximum_concurrency to 20, or raise functions.ingest.reserved_concurrency to 30",
            // The template still says 10: drift is reported too, naming the file.
            "✗ [drift] infra/template.yaml differs from kit.toml",
            "1 invariant violation(s), 1 stale rendered file(s)",
        ],
    );
}

#[test]
fn check_names_a_hand_edited_rendered_file() {
    let s = Scratch::new("drift");
    let ini = s.path().join("pgbouncer/pgbouncer.ini");
    let text_before = std::fs::read_to_string(&ini).unwrap();
    std::fs::write(
        &ini,
        text_before.replace("default_pool_size = 40", "default_pool_size = 400"),
    )
    .unwrap();
    let out = s.kit(&["check"]);
    assert!(!out.status.success());
    assert_mentions(
        &text(&out),
        &[
            "✗ [drift] pgbouncer/pgbouncer.ini differs from kit.toml",
            "run `kit render`",
        ],
    );
    assert!(s.kit(&["render"]).status.success());
    assert!(s.kit(&["check"]).status.success());
}

#[test]
fn render_refuses_a_broken_config_unless_told() {
    let s = Scratch::new("render");
    s.edit_config("visibility_timeout_s = 240", "visibility_timeout_s = 60");
    let out = s.kit(&["render"]);
    assert!(!out.status.success());
    assert_mentions(&text(&out), &["[visibility-timeout]", "--allow-violations"]);
    let out = s.kit(&["render", "--allow-violations"]);
    assert!(out.status.success(), "{}", text(&out));
    let template = std::fs::read_to_string(s.path().join("infra/template.yaml")).unwrap();
    assert!(template.contains("VisibilityTimeout: 60"));
}

#[test]
fn a_misspelt_key_is_an_error_naming_it() {
    let s = Scratch::new("typo");
    s.edit_config("max_receive_count = 9", "max_recieve_count = 9");
    let out = s.kit(&["check"]);
    assert!(!out.status.success());
    assert_mentions(
        &text(&out),
        &["kit.toml is not a valid kit.toml", "max_recieve_count"],
    );
}

/// 5,000 searches/s at p50 15 ms, p99 60 ms, 8 ms of it in the database.
const PLAN: [&str; 9] = [
    "plan",
    "--search-rps",
    "5000",
    "--p50-ms",
    "15",
    "--p99-ms",
    "60",
    "--search-db-ms",
    "8",
];

#[test]
fn plan_prints_a_checked_fragment() {
    let s = Scratch::new("plan");
    let out = s.kit(&PLAN);
    assert!(out.status.success(), "{}", text(&out));
    assert_mentions(
        &text(&out),
        &[
            "[functions.search]",
            "reserved_concurrency = 450",
            "every invariant holds",
        ],
    );
}

#[test]
fn plan_json_is_one_object_with_typed_values() {
    let s = Scratch::new("plan-json");
    let out = s.kit(&[&PLAN[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", text(&out)));
    let derived = plan["derived"].as_array().expect("derived");
    let reserved = derived
        .iter()
        .find(|d| d["table"] == "functions.search" && d["key"] == "reserved_concurrency")
        .unwrap_or_else(|| panic!("no functions.search.reserved_concurrency in {plan}"));
    assert_eq!(
        reserved["value"], 450,
        "a number, not TOML text: {reserved}"
    );
    assert!(reserved["why"].as_str().is_some_and(|w| !w.is_empty()));
    assert_eq!(plan["violations"], serde_json::json!([]));
}

/// The benchmarks and the demo moved to kit-dev: an old script fails with the command
/// that replaces its call, and `kit --help` no longer offers them.
#[test]
fn bench_and_demo_name_the_kit_dev_command_that_replaces_them() {
    let s = Scratch::new("moved");
    for (args, expected) in [
        (
            vec!["bench", "search", "--n", "500", "--json"],
            "cargo run --locked --release -p kit-dev -- bench search --n 500 --json",
        ),
        (
            vec!["demo", "--records", "10"],
            "cargo run --locked -p kit-dev -- demo --records 10",
        ),
    ] {
        let out = s.kit(&args);
        assert_eq!(out.status.code(), Some(2), "kit {args:?}: {}", text(&out));
        assert!(out.stdout.is_empty(), "kit {args:?}: {}", text(&out));
        assert_mentions(&String::from_utf8_lossy(&out.stderr), &[expected]);
    }
    let help = s.kit(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("migrate"), "{help}");
    assert!(
        !help.contains("bench") && !help.contains("demo"),
        "kit --help still offers the tooling:\n{help}"
    );
}

#[test]
fn build_runs_cargo_lambda_for_the_three_functions() {
    let s = Scratch::new("build");
    let out = s.kit(&["build", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "cargo lambda build --locked --release --arm64 --package ingest --package search --package purge"
    );
}

/// Many development shells export RUST_BACKTRACE=1; a refused configuration is still an
/// error message with its causes, not a stack trace.
#[test]
fn errors_print_their_causes_and_never_a_backtrace() {
    let s = Scratch::new("causes");
    s.edit_config("maximum_concurrency = 10", "maximum_concurrency = 30");
    let missing = s.path().join("missing.toml");
    for (args, expected) in [
        (vec!["check"], "error: kit check: 2 problem(s)"),
        (
            vec!["check", "--config", missing.to_str().unwrap()],
            "caused by: No such file or directory",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kit"))
            .args(&args)
            .current_dir(s.path())
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .expect("kit runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "kit {args:?}: {}", text(&out));
        assert!(stderr.contains(expected), "kit {args:?}: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("backtrace"),
            "kit {args:?} printed a backtrace:\n{stderr}"
        );
    }
}

#[test]
fn check_refuses_an_unauthenticated_api_unless_written_out() {
    let s = Scratch::new("auth-none");
    s.edit_config("auth = \"jwt\"", "auth = \"none\"");
    let out = s.kit(&["check"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_mentions(
        &text(&out),
        &[
            "✗ [api-auth] api.auth is \"none\"",
            "write api.allow_unauthenticated = true",
            // The JWT settings no longer apply: named too, not silently ignored.
            "✗ [api-auth] api.jwt_issuer is set but api.auth is \"none\"",
        ],
    );
    s.edit_config(
        "auth = \"none\"",
        "auth = \"none\"\nallow_unauthenticated = true",
    );
    for key in [
        "jwt_issuer = ",
        "jwt_audience = ",
        "authorization_scopes = ",
    ] {
        let path = s.path().join("kit.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with(key)).collect();
        std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    }
    let out = s.kit(&["render"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = s.kit(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let template = std::fs::read_to_string(s.path().join("infra/template.yaml")).unwrap();
    assert!(template.contains("AUTH_MODE: \"none\""), "{template}");
}
