//! `kit plan`: Little's law sizes for a target load, checked by the same invariants.

mod support;

use kit::deploy::budget;
use kit::deploy::plan::{plan, LoadTarget, PlanError};
use support::{assert_mentions, committed_config};

/// The worked example of docs/capacity.md.
fn internet_scale() -> LoadTarget {
    LoadTarget {
        search_rps: 5000.0,
        search_p50_ms: 15.0,
        search_p99_ms: 60.0,
        search_db_ms: 8.0,
        ingest_msgs_per_s: 2000.0,
        ingest_batch_ms: 800.0,
        headroom: 1.5,
        pgbouncer_tps: 2500.0,
    }
}

#[test]
fn five_thousand_searches_per_second() {
    let p = plan(&committed_config(), &internet_scale()).unwrap();
    let c = &p.config;
    // 5000/s × 0.060 s × 1.5 = 450 environments.
    assert_eq!(c.functions.search.reserved_concurrency, 450);
    // 2000 msg/s ÷ 100 = 20 batches/s × 0.8 s × 1.5 = 24.
    assert_eq!(c.queue.maximum_concurrency, 24);
    assert_eq!(c.functions.ingest.reserved_concurrency, 24);
    // (5000 + 20) tx/s × 1.5 ÷ 2500 = 3.01 → 4 instances.
    assert_eq!(c.pgbouncer.instances, 4);
    // search: 5000 × 0.008 × 1.5 = 60 server connections ÷ 4 = 15 per instance.
    assert_eq!(c.pgbouncer.default_pool_size, 15);
    assert_eq!(c.pgbouncer.reserve_pool_size, 4);
    // (450 + 24 + 1) × 1.5 ÷ 4 = 178.1 → 179.
    assert_eq!(c.pgbouncer.max_client_conn, 179);
    // 4 × 3 × (15 + 4) = 228 server connections fit the committed 400 − 30.
    assert_eq!(c.server_connection_demand(), 228);
    assert!(p.violations.is_empty(), "{:#?}", p.violations);
    assert!(budget::check(c).is_empty());

    let fragment = p.fragment();
    assert_mentions(
        &fragment,
        &[
            "[functions.search]\n# 5000 searches/s × 60 ms (p99) × 1.5 headroom",
            "reserved_concurrency = 450",
            "[pgbouncer]",
            "instances = 4",
            "default_pool_size = 15",
            "max_client_conn = 179",
            "[queue]",
            "maximum_concurrency = 24",
        ],
    );
    assert!(
        !fragment.contains("[database]"),
        "400 connections are enough:\n{fragment}"
    );
}

#[test]
fn a_load_beyond_the_database_raises_max_connections() {
    let mut target = internet_scale();
    target.search_db_ms = 40.0; // 5000 × 0.040 × 1.5 = 300 server connections
    let p = plan(&committed_config(), &target).unwrap();
    // 300 ÷ 4 = 75 per instance, reserve 19: 4 × 3 × 94 = 1128 + 30 reserved.
    assert_eq!(p.config.pgbouncer.default_pool_size, 75);
    assert_eq!(p.config.database.max_connections, 1158);
    assert_mentions(
        &p.fragment(),
        &["[database]", "max_connections = 1158", "raised from 400"],
    );
    assert!(p.violations.is_empty(), "{:#?}", p.violations);
}

#[test]
fn a_load_beyond_the_account_quota_is_reported_with_its_fix() {
    let mut target = internet_scale();
    target.search_rps = 20_000.0; // 20000 × 0.060 × 1.5 = 1800 environments
    let p = plan(&committed_config(), &target).unwrap();
    let account = p
        .violations
        .iter()
        .find(|v| v.rule == budget::Rule::AccountConcurrency)
        .unwrap_or_else(|| panic!("{:#?}", p.violations));
    assert_mentions(
        &account.fix,
        &["request a Lambda concurrency quota of at least"],
    );
}

#[test]
fn nonsense_targets_are_refused() {
    let mut t = internet_scale();
    t.search_p99_ms = 10.0;
    assert_eq!(
        plan(&committed_config(), &t).unwrap_err().to_string(),
        "--p99-ms is 10 but must be at least --p50-ms"
    );
    let mut t = internet_scale();
    t.search_rps = 0.0;
    assert!(matches!(
        plan(&committed_config(), &t),
        Err(PlanError::Invalid {
            name: "--search-rps",
            ..
        })
    ));
    let mut t = internet_scale();
    t.headroom = 0.5;
    assert!(plan(&committed_config(), &t).is_err());
}

#[test]
fn small_loads_keep_aws_minimums() {
    let t = LoadTarget {
        search_rps: 1.0,
        search_p50_ms: 10.0,
        search_p99_ms: 40.0,
        search_db_ms: 5.0,
        ingest_msgs_per_s: 0.0,
        ingest_batch_ms: 500.0,
        headroom: 1.5,
        pgbouncer_tps: 2500.0,
    };
    let p = plan(&committed_config(), &t).unwrap();
    assert_eq!(
        p.config.queue.maximum_concurrency, 2,
        "SQS event sources need at least 2"
    );
    assert_eq!(
        p.config.pgbouncer.instances, 2,
        "one PgBouncer per AZ at least"
    );
    assert_eq!(p.config.functions.search.reserved_concurrency, 1);
    assert!(p.violations.is_empty(), "{:#?}", p.violations);
}
