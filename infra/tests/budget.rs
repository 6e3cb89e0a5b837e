//! Every invariant of `kit check`: a configuration that breaks it, and the message
//! that names the numbers and the fix.

mod support;

use kit::deploy::budget::{self, Rule};
use kit::deploy::model::FunctionName;
use support::{assert_mentions, committed_config, only_violation, violations_after};

#[test]
fn the_committed_kit_toml_holds_every_invariant() {
    let violations = budget::check(&committed_config());
    assert!(violations.is_empty(), "{violations:#?}");
}

// (1) Σ reserved_concurrency × connections_per_environment ≤ instances × max_client_conn

#[test]
fn client_connections_above_what_pgbouncer_accepts_are_refused() {
    let v = only_violation(Rule::ClientConnections, |c| {
        c.functions.search.connections_per_environment = 10;
    });
    assert_mentions(
        &v.problem,
        &[
            "functions can hold 2021 client connections",
            "ingest 20×1 + search 200×10 + purge 1×1",
            "the tier accepts 2000 (2 instances × max_client_conn 1000)",
        ],
    );
    // 1011 × 2 ≥ 2021; 197 × 10 + 21 ≤ 2000.
    assert_eq!(
        v.fix,
        "raise pgbouncer.max_client_conn to 1011, or lower functions.search.reserved_concurrency to 197"
    );
}

#[test]
fn the_suggested_client_fixes_each_work() {
    for fix in [
        |c: &mut kit::deploy::model::KitConfig| c.pgbouncer.max_client_conn = 1011,
        |c: &mut kit::deploy::model::KitConfig| c.functions.search.reserved_concurrency = 197,
    ] {
        let violations = violations_after(|c| {
            c.functions.search.connections_per_environment = 10;
            fix(c);
        });
        assert!(
            !violations.iter().any(|v| v.rule == Rule::ClientConnections),
            "{violations:#?}"
        );
    }
}

#[test]
fn client_connections_exactly_at_capacity_are_fine() {
    let violations = violations_after(|c| {
        // 20 + 200 + 1 = 221 = 1 instance × 221.
        c.pgbouncer.instances = 1;
        c.pgbouncer.max_client_conn = 221;
    });
    assert!(
        !violations.iter().any(|v| v.rule == Rule::ClientConnections),
        "{violations:#?}"
    );
}

// (2) instances × pools × (default_pool_size + reserve_pool_size) ≤ max_connections − reserved

#[test]
fn server_connections_above_what_postgres_allows_are_refused() {
    let v = only_violation(Rule::ServerConnections, |c| {
        c.pgbouncer.default_pool_size = 60
    });
    assert_mentions(
        &v.problem,
        &[
            "PgBouncer can open 420 server connections",
            "2 instances × 3 pools × (default_pool_size 60 + reserve_pool_size 10)",
            "PostgreSQL allows 370",
            "max_connections 400 − 30 reserved: superuser 3 + reserved 0 + headroom 27",
        ],
    );
    // 2 × 3 × (51 + 10) = 366 ≤ 370; 420 + 30 = 450.
    assert_eq!(
        v.fix,
        "lower pgbouncer.default_pool_size to 51, or raise database.max_connections to 450"
    );
    assert!(budget::check(&{
        let mut c = committed_config();
        c.pgbouncer.default_pool_size = 51;
        c
    })
    .is_empty());
}

#[test]
fn reserved_connections_and_headroom_count_against_the_server_budget() {
    let v = only_violation(Rule::ServerConnections, |c| {
        c.database.reserved_connections = 100; // PostgreSQL 16+
    });
    assert_mentions(
        &v.problem,
        &["PostgreSQL allows 270", "− 130 reserved", "reserved 100"],
    );
}

#[test]
fn every_role_is_its_own_pool() {
    let config = committed_config();
    assert_eq!(config.pools(), 3);
    assert_eq!(config.server_connection_demand(), 2 * 3 * (40 + 10));
}

// (3) SQS maximum concurrency ≤ ingest reserved concurrency, and within AWS's 2..=1000

#[test]
fn sqs_maximum_concurrency_above_ingest_reserved_concurrency_is_refused() {
    let v = only_violation(Rule::SqsConcurrency, |c| c.queue.maximum_concurrency = 30);
    assert_mentions(
        &v.problem,
        &[
            "may run 30 ingest batches at once",
            "reserved concurrency is 20",
            "reach the DLQ",
        ],
    );
    assert_eq!(
        v.fix,
        "lower queue.maximum_concurrency to 20, or raise functions.ingest.reserved_concurrency to 30"
    );
}

#[test]
fn sqs_maximum_concurrency_below_two_is_refused() {
    let v = only_violation(Rule::SqsConcurrency, |c| c.queue.maximum_concurrency = 1);
    assert_eq!(
        v.problem,
        "queue.maximum_concurrency is 1 but AWS accepts 2 to 1000"
    );
    assert_eq!(v.fix, "set queue.maximum_concurrency to 2");
}

// (4) visibility timeout ≥ 6 × ingest timeout + batching window

#[test]
fn a_short_visibility_timeout_is_refused() {
    let v = only_violation(Rule::VisibilityTimeout, |c| {
        c.queue.visibility_timeout_s = 180
    });
    assert_mentions(
        &v.problem,
        &[
            "queue.visibility_timeout_s is 180 but must be at least 185",
            "6 × ingest timeout 30 s + batching window 5 s",
        ],
    );
    assert_eq!(
        v.fix,
        "raise queue.visibility_timeout_s to 185, or lower functions.ingest.timeout_s to 29"
    );
}

#[test]
fn the_batching_window_counts_towards_the_visibility_timeout() {
    let v = only_violation(Rule::VisibilityTimeout, |c| c.queue.batching_window_s = 61);
    assert_mentions(&v.problem, &["must be at least 241"]);
}

// (5) query_wait_timeout < API Gateway's 29 s and every function's timeout

#[test]
fn query_wait_timeout_not_below_a_function_timeout_is_refused() {
    let v = only_violation(Rule::QueryWaitTimeout, |c| {
        c.pgbouncer.query_wait_timeout_s = 20
    });
    assert_mentions(
        &v.problem,
        &["pgbouncer.query_wait_timeout_s is 20 but functions.search.timeout_s is 20"],
    );
    assert_eq!(
        v.fix,
        "lower pgbouncer.query_wait_timeout_s to 19, or raise functions.search.timeout_s to 21"
    );
}

#[test]
fn query_wait_timeout_not_below_api_gateway_is_refused() {
    let violations = violations_after(|c| {
        c.pgbouncer.query_wait_timeout_s = 29;
        c.functions.search.timeout_s = 29;
    });
    let gateway = violations
        .iter()
        .find(|v| v.rule == Rule::QueryWaitTimeout && v.problem.contains("API Gateway"))
        .unwrap_or_else(|| panic!("no API Gateway violation in {violations:#?}"));
    assert_mentions(
        &gateway.problem,
        &["query_wait_timeout_s is 29", "after 29 s"],
    );
    assert_eq!(gateway.fix, "lower pgbouncer.query_wait_timeout_s to 28");
}

// Sanity rules: AWS and PostgreSQL limits.

#[test]
fn provisioned_above_reserved_concurrency_is_refused() {
    let v = only_violation(Rule::ProvisionedConcurrency, |c| {
        c.functions.search.provisioned_concurrency = 250
    });
    assert_mentions(
        &v.problem,
        &[
            "functions.search.provisioned_concurrency is 250",
            "reserved_concurrency is 200",
        ],
    );
    assert_eq!(
        v.fix,
        "lower functions.search.provisioned_concurrency to 200, or raise functions.search.reserved_concurrency to 250"
    );
}

#[test]
fn reserving_more_than_the_account_allows_is_refused() {
    let v = only_violation(Rule::AccountConcurrency, |c| {
        c.functions.search.reserved_concurrency = 900
    });
    assert_mentions(
        &v.problem,
        &[
            "reserve 921 concurrent executions",
            "limit of 1000 leaves 900",
        ],
    );
    assert_mentions(
        &v.fix,
        &[
            "quota of at least 1021",
            "lower the reserved concurrency by 21",
        ],
    );
}

#[test]
fn lambda_limits_are_enforced() {
    let v = only_violation(Rule::Range, |c| c.functions.purge.timeout_s = 901);
    assert_eq!(
        v.problem,
        "functions.purge.timeout_s is 901 but Lambda accepts 1 to 900"
    );
    assert_eq!(v.fix, "set functions.purge.timeout_s to 900");
    let v = only_violation(Rule::Range, |c| c.functions.ingest.memory_mb = 64);
    assert_eq!(
        v.problem,
        "functions.ingest.memory_mb is 64 but Lambda accepts 128 to 10240"
    );
    let v = only_violation(Rule::Range, |c| c.functions.purge.reserved_concurrency = 0);
    assert_mentions(
        &v.problem,
        &["functions.purge.reserved_concurrency is 0", "0 disables it"],
    );
}

#[test]
fn sqs_limits_are_enforced() {
    let v = only_violation(Rule::Range, |c| c.queue.batch_size = 20_000);
    assert_eq!(
        v.problem,
        "queue.batch_size is 20000 but the SQS event source accepts 1 to 10000"
    );
    let v = only_violation(Rule::Range, |c| c.queue.max_receive_count = 0);
    assert_eq!(
        v.problem,
        "queue.max_receive_count is 0 but the SQS redrive policy accepts 1 to 1000"
    );
    let v = only_violation(Rule::Range, |c| c.queue.batching_window_s = 301);
    assert_mentions(&v.problem, &["queue.batching_window_s is 301", "0 to 300"]);
}

#[test]
fn batches_above_ten_need_a_batching_window() {
    let v = only_violation(Rule::BatchingWindow, |c| c.queue.batching_window_s = 0);
    assert_mentions(&v.problem, &["queue.batch_size is 100", "at least 1 s"]);
    assert_eq!(
        v.fix,
        "set queue.batching_window_s to 1, or lower queue.batch_size to 10"
    );
}

#[test]
fn fifo_queues_take_small_batches_and_no_window() {
    let violations = violations_after(|c| {
        c.queue.fifo = true;
    });
    let rules: Vec<Rule> = violations.iter().map(|v| v.rule).collect();
    assert!(rules.contains(&Rule::BatchingWindow), "{violations:#?}");
    assert!(
        violations.iter().any(
            |v| v.problem == "queue.batch_size is 100 but the SQS event source accepts 1 to 10"
        ),
        "{violations:#?}"
    );
}

#[test]
fn the_dlq_must_keep_messages_at_least_as_long_as_the_queue() {
    let v = only_violation(Rule::DeadLetterRetention, |c| {
        c.queue.dlq_message_retention_s = 3600
    });
    assert_mentions(
        &v.problem,
        &["dlq_message_retention_s is 3600", "keeps messages 345600 s"],
    );
    assert_eq!(v.fix, "raise queue.dlq_message_retention_s to 345600");
}

#[test]
fn client_timeouts_must_fit_inside_the_invocation() {
    let v = only_violation(Rule::ClientTimeout, |c| {
        c.functions.search.statement_timeout_ms = 20_000
    });
    assert_mentions(
        &v.problem,
        &[
            "functions.search.statement_timeout_ms is 20000",
            "(20000 ms)",
        ],
    );
    assert_eq!(v.fix, "set functions.search.statement_timeout_ms to 10000");
}

#[test]
fn search_cannot_outlive_api_gateway() {
    let v = only_violation(Rule::ClientTimeout, |c| c.functions.search.timeout_s = 30);
    assert_eq!(
        v.problem,
        "functions.search.timeout_s is 30 but API Gateway answers 503 after 29 s"
    );
}

#[test]
fn pool_mode_must_be_transaction_and_prepared_statements_on() {
    let v = only_violation(Rule::Choice, |c| c.pgbouncer.pool_mode = "session".into());
    assert_mentions(
        &v.problem,
        &["pool_mode is \"session\"", "pins a server connection"],
    );
    let v = only_violation(Rule::Range, |c| c.pgbouncer.max_prepared_statements = 0);
    assert_mentions(
        &v.problem,
        &[
            "max_prepared_statements is 0",
            "sqlx prepares every statement",
        ],
    );
    let v = only_violation(Rule::Range, |c| c.pgbouncer.pkt_buf = 2048);
    assert_mentions(&v.problem, &["pkt_buf is 2048", "Bind message"]);
    assert_eq!(v.fix, "set pgbouncer.pkt_buf to 4096");
}

#[test]
fn fargate_cpu_must_be_a_size_fargate_offers() {
    let v = only_violation(Rule::Choice, |c| c.pgbouncer.task_cpu = 300);
    assert_eq!(v.fix, "set pgbouncer.task_cpu to 512");
}

#[test]
fn roles_are_plain_identifiers_and_one_per_function() {
    let v = only_violation(Rule::RoleName, |c| {
        c.functions.ingest.db_role = "Kit-Ingest".into()
    });
    assert_mentions(&v.problem, &["functions.ingest.db_role is \"Kit-Ingest\""]);
    let v = only_violation(Rule::RoleName, |c| {
        c.functions.purge.db_role = "kit_ingest".into()
    });
    assert_mentions(
        &v.problem,
        &["functions.purge.db_role is \"kit_ingest\", the same as functions.ingest.db_role"],
    );
    assert_eq!(v.fix, "set functions.purge.db_role to \"kit_purge\"");
}

#[test]
fn schedule_expressions_are_eventbridge_syntax() {
    for bad in [
        "0 3 * * *",
        "cron(0 3 * * *)",
        "rate(1 days)",
        "rate(0 minutes)",
        "rate(5 minute)",
    ] {
        let v = only_violation(Rule::ScheduleExpression, |c| {
            c.schedule.expression = bad.into()
        });
        assert_mentions(&v.problem, &[bad]);
    }
    for good in ["cron(17 3 * * ? *)", "rate(1 day)", "rate(12 hours)"] {
        let violations = violations_after(|c| c.schedule.expression = good.into());
        assert!(violations.is_empty(), "{good}: {violations:#?}");
    }
}

#[test]
fn every_violation_names_its_fix_in_its_message() {
    let violations = violations_after(|c| {
        c.pgbouncer.max_client_conn = 10;
        c.pgbouncer.default_pool_size = 500;
        c.queue.visibility_timeout_s = 1;
        c.function_mut(FunctionName::Ingest).reserved_concurrency = 5;
    });
    assert!(violations.len() >= 4, "{violations:#?}");
    for v in violations {
        let message = v.to_string();
        assert!(
            message.starts_with(&format!("[{}] ", v.rule.code())),
            "{message}"
        );
        assert!(message.contains("; fix: "), "{message}");
    }
}

#[test]
fn an_unauthenticated_api_needs_allow_unauthenticated_written_out() {
    use kit::deploy::model::AuthMode;
    let v = only_violation(Rule::ApiAuth, |c| {
        c.api.auth = AuthMode::None;
        c.api.jwt_issuer = None;
        c.api.jwt_audience.clear();
    });
    assert_mentions(&v.problem, &["api.auth is \"none\"", "every namespace"]);
    assert_mentions(
        &v.fix,
        &["api.allow_unauthenticated = true", "api.auth = \"jwt\""],
    );
    let ok = violations_after(|c| {
        c.api.auth = AuthMode::None;
        c.api.jwt_issuer = None;
        c.api.jwt_audience.clear();
        c.api.allow_unauthenticated = true;
    });
    assert!(ok.is_empty(), "{ok:#?}");
    // The confirmation means nothing for another mode: refused, not silently ignored.
    let v = only_violation(Rule::ApiAuth, |c| c.api.allow_unauthenticated = true);
    assert_mentions(&v.problem, &["allow_unauthenticated", "\"jwt\""]);
}

#[test]
fn each_auth_mode_has_what_it_needs_and_nothing_for_another() {
    use kit::deploy::model::AuthMode;
    let v = only_violation(Rule::ApiAuth, |c| c.api.jwt_issuer = None);
    assert_mentions(&v.problem, &["api.jwt_issuer is not set"]);
    let v = only_violation(Rule::ApiAuth, |c| {
        c.api.jwt_issuer = Some("http://issuer".into())
    });
    assert_mentions(&v.problem, &["https://"]);
    let v = only_violation(Rule::ApiAuth, |c| c.api.jwt_audience.clear());
    assert_mentions(&v.problem, &["api.jwt_audience"]);
    let v = only_violation(Rule::ApiAuth, |c| {
        c.api.authorization_scopes = vec!["two words".into()]
    });
    assert_mentions(&v.problem, &["\"two words\""]);

    let lambda = |c: &mut kit::deploy::model::KitConfig| {
        c.api.auth = AuthMode::Lambda;
        c.api.jwt_issuer = None;
        c.api.jwt_audience.clear();
    };
    let v = only_violation(Rule::ApiAuth, lambda);
    assert_mentions(&v.problem, &["api.lambda_authorizer_arn is not set"]);
    let ok = violations_after(|c| {
        lambda(c);
        c.api.lambda_authorizer_arn =
            Some("arn:aws:lambda:eu-west-1:123456789012:function:authorizer".into());
    });
    assert!(ok.is_empty(), "{ok:#?}");
    let v = only_violation(Rule::ApiAuth, |c| {
        lambda(c);
        c.api.lambda_authorizer_arn = Some("authorizer".into());
    });
    assert_mentions(&v.problem, &["not a Lambda function ARN"]);

    // jwt settings left behind under iam are refused (a typo in auth must not pass).
    let violations = violations_after(|c| c.api.auth = AuthMode::Iam);
    let problems: Vec<&str> = violations.iter().map(|v| v.problem.as_str()).collect();
    assert_eq!(violations.len(), 2, "{problems:#?}");
    assert!(problems.iter().all(|p| p.contains("api.auth is \"iam\"")));

    let v = only_violation(Rule::ApiAuth, |c| c.api.namespace_claim = "a b".into());
    assert_mentions(&v.problem, &["api.namespace_claim is \"a b\""]);
}

#[test]
fn the_queue_needs_listed_producers_and_well_formed_namespaces() {
    let v = only_violation(Rule::QueueAccess, |c| c.queue.producers.clear());
    assert_mentions(&v.problem, &["queue.producers is empty", "any namespace"]);
    assert_mentions(&v.fix, &["queue.producers = ["]);
    for bad in [
        "arn:aws:iam::123456789012:role/*",
        "arn:aws:iam::123456789012:root",
        "arn:aws:iam::12345:role/writer",
        "arn:aws:sqs:us-east-1:123456789012:queue",
        "writer",
    ] {
        let v = only_violation(Rule::QueueAccess, |c| c.queue.producers = vec![bad.into()]);
        assert_mentions(&v.problem, &[bad]);
    }
    for good in [
        "arn:aws:iam::123456789012:role/writer",
        "arn:aws-us-gov:iam::123456789012:user/path/to/writer",
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/service-role/writer",
    ] {
        let ok = violations_after(|c| c.queue.producers = vec![good.into()]);
        assert!(ok.is_empty(), "{good}: {ok:#?}");
    }
    let v = only_violation(Rule::QueueAccess, |c| {
        c.queue.namespaces = vec!["acme".into(), "Acme Corp".into()]
    });
    assert_mentions(&v.problem, &["\"Acme Corp\""]);
    let v = only_violation(Rule::QueueAccess, |c| {
        c.queue.namespaces = vec!["acme".into(), "acme".into()]
    });
    assert_mentions(&v.problem, &["twice"]);
}

// [rotation]

#[test]
fn rotation_schedules_secrets_manager_cannot_run_are_refused() {
    for schedule in [
        "rate(1 hour)",
        "rate(3 hours)",
        "rate(10 minutes)",
        "rate(0 days)",
        "rate(1000 days)",
        "rate(30 day)",
        "rate(1 days)",
        "rate(thirty days)",
        "every 30 days",
        "cron(0 3 * * ?)",
    ] {
        let v = only_violation(Rule::Rotation, |c| c.rotation.schedule = schedule.into());
        assert_mentions(&v.problem, &["rotation.schedule", schedule]);
        assert_eq!(v.fix, "set rotation.schedule = \"rate(30 days)\"");
    }
}

#[test]
fn rotation_schedules_secrets_manager_accepts_pass() {
    for schedule in [
        "rate(4 hours)",
        "rate(1 day)",
        "rate(30 days)",
        "rate(999 days)",
        "cron(0 3 ? * SUN *)",
    ] {
        let violations = violations_after(|c| c.rotation.schedule = schedule.into());
        assert!(violations.is_empty(), "{schedule}: {violations:#?}");
    }
}
