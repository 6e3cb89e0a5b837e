//! `kit check`'s sums: each function's worst case on the database against its timeout
//! (and API Gateway's 29 s for search), and the database outage the queue absorbs
//! before a valid message reaches the DLQ, against `queue.outage_floor_minutes`.

mod support;

use kit::deploy::budget::{self, Rule};
use kit::deploy::model::{FunctionName, KitConfig};
use kit::deploy::worst_case::{outage_absorbed_ms, WorstCase};
use support::{assert_mentions, committed_config, only_violation, text, violations_after, Scratch};

fn worst(config: &KitConfig, function: FunctionName) -> WorstCase {
    WorstCase::of(config, function)
}

#[test]
fn the_committed_sums_fit_and_name_their_terms() {
    let config = committed_config();
    let shown: Vec<String> = FunctionName::ALL
        .iter()
        .map(|f| worst(&config, *f).to_string())
        .collect();
    assert_eq!(
        shown,
        [
            "ingest 1 × (3000 + 5000 + 15000) + 500 = 23500 ms ≤ 30000 ms (functions.ingest.timeout_s)",
            "search 2 × (1000 + 5000 + 3000) + 500 = 18500 ms ≤ 20000 ms (functions.search.timeout_s)",
            "purge 1 × (5000 + 5000 + 60000) + 500 = 70500 ms ≤ 300000 ms (functions.purge.timeout_s)",
        ]
    );
    // The reserve is the one the handlers keep before their deadline.
    assert_eq!(
        worst(&config, FunctionName::Search).reserve_ms,
        storage::DEADLINE_RESERVE.as_millis() as u64
    );
    assert!(budget::warnings(&config).is_empty());
}

#[test]
fn a_search_whose_worst_case_outlasts_its_timeout_is_refused_with_the_sum_and_the_fix() {
    let v = only_violation(Rule::WorstCase, |c| c.functions.search.timeout_s = 15);
    assert_mentions(
        &v.problem,
        &[
            "search can wait 18500 ms on the database in one invocation but has 15000 ms (functions.search.timeout_s)",
            "2 attempt(s) (a read that lost its connection runs once more on a new one)",
            "(acquire_timeout_ms 1000 + query_wait_timeout 5000 + statement_timeout_ms 3000) + 500 ms reserved",
        ],
    );
    // 2 × (1000 + 5000 + 750) + 500 = 14000 ≤ 15000.
    assert_eq!(
        v.fix,
        "raise functions.search.timeout_s to 19, or lower functions.search.statement_timeout_ms to 1250"
    );
    for fix in [
        |c: &mut KitConfig| c.functions.search.timeout_s = 19,
        |c: &mut KitConfig| c.functions.search.statement_timeout_ms = 1250,
    ] {
        let violations = violations_after(|c| {
            c.functions.search.timeout_s = 15;
            fix(c);
        });
        assert!(
            !violations.iter().any(|v| v.rule == Rule::WorstCase),
            "{violations:#?}"
        );
    }
    // One millisecond more does not fit.
    let violations = violations_after(|c| {
        c.functions.search.timeout_s = 15;
        c.functions.search.statement_timeout_ms = 1251;
    });
    assert!(violations.iter().any(|v| v.rule == Rule::WorstCase));
}

#[test]
fn search_is_held_to_api_gateway_s_29_seconds_whatever_its_own_timeout() {
    let v = only_violation(Rule::WorstCase, |c| {
        c.functions.search.timeout_s = 60; // itself refused: [client-timeout]
        c.functions.search.statement_timeout_ms = 12_000;
    });
    assert_mentions(
        &v.problem,
        &[
            "search can wait 36500 ms",
            "has 29000 ms (API Gateway's 29 s)",
        ],
    );
    // No timeout can help past the gateway: the statement must shrink.
    // (29000 − 500) ÷ 2 − 1000 − 5000 = 8250.
    assert_eq!(v.fix, "lower functions.search.statement_timeout_ms to 8250");
}

#[test]
fn ingest_and_purge_are_held_to_their_own_timeouts() {
    let v = only_violation(Rule::WorstCase, |c| c.functions.ingest.timeout_s = 20);
    assert_mentions(
        &v.problem,
        &[
            "ingest can wait 23500 ms on the database in one invocation but has 20000 ms",
            "1 attempt(s) (a batch is retried with backoff while time is left; the first attempt must fit)",
        ],
    );
    assert_eq!(
        v.fix,
        "raise functions.ingest.timeout_s to 24, or lower functions.ingest.statement_timeout_ms to 11500"
    );
    let v = only_violation(Rule::WorstCase, |c| {
        c.functions.purge.statement_timeout_ms = 299_000
    });
    assert_mentions(&v.problem, &["purge can wait 309500 ms", "has 300000 ms"]);
    assert_eq!(
        v.fix,
        "raise functions.purge.timeout_s to 310, or lower functions.purge.statement_timeout_ms to 289500"
    );
}

#[test]
fn a_queue_wait_that_leaves_no_room_for_a_statement_names_the_waits() {
    let v = only_violation(Rule::WorstCase, |c| {
        c.functions.search.timeout_s = 12;
        c.pgbouncer.query_wait_timeout_s = 6;
    });
    // 2 × (1000 + 6000 + s) + 500 ≤ 12000 has no s ≥ 1.
    assert_eq!(
        v.fix,
        "raise functions.search.timeout_s to 21, or lower pgbouncer.query_wait_timeout_s and functions.search.acquire_timeout_ms"
    );
}

#[test]
fn the_outage_the_queue_absorbs_counts_every_delivery_and_the_last_one_s_retries() {
    let config = committed_config();
    // (9 − 1) × 240 s + (30 s − 0.5 s).
    assert_eq!(outage_absorbed_ms(&config), 8 * 240_000 + 29_500);

    let warnings = budget::warnings(&{
        let mut c = committed_config();
        c.queue.max_receive_count = 5;
        c
    });
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let w = &warnings[0];
    assert_eq!(w.rule, Rule::OutageFloor);
    assert_mentions(
        &w.problem,
        &[
            "a database outage of 16 min 29 s dead-letters valid ingest messages",
            "under the floor of 30 min (queue.outage_floor_minutes)",
            "(max_receive_count 5 − 1) × visibility 240 s + the last delivery retrying 29.5 s",
        ],
    );
    // 8 × 240 + 29.5 ≥ 1800; 4 × 443 + 29.5 ≥ 1800.
    assert_eq!(
        w.fix,
        "raise queue.max_receive_count to 9, or raise queue.visibility_timeout_s to 443, or lower queue.outage_floor_minutes to 16"
    );
    for fix in [
        |c: &mut KitConfig| c.queue.max_receive_count = 9,
        |c: &mut KitConfig| c.queue.visibility_timeout_s = 443,
        |c: &mut KitConfig| c.queue.outage_floor_minutes = 16,
    ] {
        let mut c = committed_config();
        c.queue.max_receive_count = 5;
        fix(&mut c);
        assert!(
            budget::warnings(&c).is_empty(),
            "{:#?}",
            budget::warnings(&c)
        );
    }
    // A warning, not a violation: the configuration stays deployable.
    assert!(!violations_after(|c| c.queue.max_receive_count = 5)
        .iter()
        .any(|v| v.rule == Rule::OutageFloor));
}

#[test]
fn the_floor_defaults_to_thirty_minutes() {
    let text = std::fs::read_to_string(support::repo_root().join("kit.toml")).unwrap();
    let without: String = text
        .lines()
        .filter(|line| !line.starts_with("outage_floor_minutes"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(without, text, "kit.toml sets outage_floor_minutes");
    let config = KitConfig::parse(&without, std::path::Path::new("kit.toml")).unwrap();
    assert_eq!(config.queue.outage_floor_minutes, 30);
}

#[test]
fn kit_check_prints_the_sums_warns_below_the_floor_and_refuses_a_sum_too_long() {
    let s = Scratch::new("worst-case");
    let out = s.kit(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_mentions(
        &text(&out),
        &[
            "worst case: attempts × (acquire + query_wait_timeout + statement) + reserve ≤ timeout",
            "search 2 × (1000 + 5000 + 3000) + 500 = 18500 ms ≤ 20000 ms",
            "outage absorbed before a valid message reaches the DLQ: 32 min 29 s",
        ],
    );

    // Below the floor: a warning with the fix, and the check still passes.
    s.edit_config("max_receive_count = 9", "max_receive_count = 5");
    assert!(s.kit(&["render"]).status.success());
    let out = s.kit(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_mentions(
        &text(&out),
        &[
            "⚠ [outage-floor] a database outage of 16 min 29 s dead-letters valid ingest messages",
            "fix: raise queue.max_receive_count to 9",
            "ok: every invariant holds and the rendered files match kit.toml (1 warning(s) above)",
        ],
    );

    // A search that cannot answer in time: refused, with the sum and the fix.
    s.edit_config("timeout_s = 20", "timeout_s = 15");
    assert!(!s.kit(&["render"]).status.success());
    let out = s.kit(&["check"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_mentions(
        &text(&out),
        &[
            "search 2 × (1000 + 5000 + 3000) + 500 = 18500 ms > 15000 ms",
            "✗ [worst-case] search can wait 18500 ms on the database in one invocation but has 15000 ms",
            "fix: raise functions.search.timeout_s to 19",
        ],
    );
}
