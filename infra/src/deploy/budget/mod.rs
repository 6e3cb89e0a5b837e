//! The invariants `kit check` enforces on a [`KitConfig`].
//!
//! The five contract invariants (docs/capacity.md, the connection budget) come
//! first; AWS and PostgreSQL limits that are cheap to know follow. Each
//! violation carries the numbers involved and the smallest single change that
//! fixes it.

use super::model::KitConfig;
use super::worst_case;

mod fields;
mod security;

use fields::{check_choices, check_queue_shape, check_ranges, check_rotation};
use security::{check_api_auth, check_queue_access, check_tls};

/// API Gateway gives up on an integration after this many seconds.
pub const API_GATEWAY_TIMEOUT_S: u32 = 29;
/// Lambda's maximum function timeout.
pub const LAMBDA_MAX_TIMEOUT_S: u32 = 900;
/// Lambda keeps this much of the account's concurrency unreserved.
pub const LAMBDA_MIN_UNRESERVED: u32 = 100;

/// Which invariant a [`Violation`] breaks; `code()` is stable for scripts and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// (1) functions' client connections ≤ what the PgBouncer tier accepts.
    ClientConnections,
    /// (2) PgBouncer's server connections ≤ what PostgreSQL allows.
    ServerConnections,
    /// (3) SQS maximum concurrency ≤ ingest's reserved concurrency.
    SqsConcurrency,
    /// (4) visibility timeout ≥ 6 × ingest timeout + batching window.
    VisibilityTimeout,
    /// (5) PgBouncer's query_wait_timeout < every caller's timeout.
    QueryWaitTimeout,
    ProvisionedConcurrency,
    AccountConcurrency,
    ClientTimeout,
    Range,
    BatchingWindow,
    Choice,
    RoleName,
    ScheduleExpression,
    DeadLetterRetention,
    /// Who may call the search API, and where its namespace comes from.
    ApiAuth,
    /// Who may send to the ingest queue, and which namespaces its records may write.
    QueueAccess,
    /// Neither hop may fall back to plaintext; PgBouncer's name must be a DNS name.
    Tls,
    /// The secrets' rotation schedule (kit.toml `[rotation]`).
    Rotation,
    /// A function's worst case (attempts × (acquire + queue wait + statement) + reserve)
    /// fits its timeout, and API Gateway's for search (`worst_case.rs`).
    WorstCase,
    /// A warning: the queue absorbs a database outage at least `queue.outage_floor_minutes`
    /// long before it dead-letters valid messages (`worst_case.rs`).
    OutageFloor,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::ClientConnections => "client-connections",
            Rule::ServerConnections => "server-connections",
            Rule::SqsConcurrency => "sqs-concurrency",
            Rule::VisibilityTimeout => "visibility-timeout",
            Rule::QueryWaitTimeout => "query-wait-timeout",
            Rule::ProvisionedConcurrency => "provisioned-concurrency",
            Rule::AccountConcurrency => "account-concurrency",
            Rule::ClientTimeout => "client-timeout",
            Rule::Range => "range",
            Rule::BatchingWindow => "batching-window",
            Rule::Choice => "choice",
            Rule::RoleName => "role-name",
            Rule::ScheduleExpression => "schedule-expression",
            Rule::DeadLetterRetention => "dead-letter-retention",
            Rule::ApiAuth => "api-auth",
            Rule::QueueAccess => "queue-access",
            Rule::Tls => "tls",
            Rule::Rotation => "rotation",
            Rule::WorstCase => "worst-case",
            Rule::OutageFloor => "outage-floor",
        }
    }
}

/// One broken invariant: what is wrong (with the numbers) and the smallest fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{}] {problem}; fix: {fix}", rule.code())]
pub struct Violation {
    pub rule: Rule,
    pub problem: String,
    pub fix: String,
}

impl Violation {
    pub(super) fn new(rule: Rule, problem: impl Into<String>, fix: impl Into<String>) -> Violation {
        Violation {
            rule,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

fn div_ceil(a: u64, b: u64) -> u64 {
    if b == 0 {
        0
    } else {
        a.div_ceil(b)
    }
}

/// Every invariant `config` breaks, in a fixed order (empty when it is deployable).
pub fn check(config: &KitConfig) -> Vec<Violation> {
    let mut out = Vec::new();
    check_ranges(config, &mut out);
    check_client_connections(config, &mut out);
    check_server_connections(config, &mut out);
    check_sqs_concurrency(config, &mut out);
    check_visibility_timeout(config, &mut out);
    check_query_wait_timeout(config, &mut out);
    check_provisioned(config, &mut out);
    check_account_concurrency(config, &mut out);
    check_client_timeouts(config, &mut out);
    worst_case::check(config, &mut out);
    check_queue_shape(config, &mut out);
    check_choices(config, &mut out);
    check_api_auth(config, &mut out);
    check_queue_access(config, &mut out);
    check_tls(config, &mut out);
    check_rotation(config, &mut out);
    out
}

/// What `config` should not do but may (deployable, printed by `kit check` as warnings).
pub fn warnings(config: &KitConfig) -> Vec<Violation> {
    let mut out = Vec::new();
    worst_case::warnings(config, &mut out);
    out
}

/// Invariant (1): Σ reserved_concurrency × connections_per_environment ≤ instances × max_client_conn.
fn check_client_connections(config: &KitConfig, out: &mut Vec<Violation>) {
    let demand = config.client_connection_demand();
    let capacity = config.client_connection_capacity();
    if demand <= capacity {
        return;
    }
    let pgb = &config.pgbouncer;
    let breakdown = config
        .functions()
        .iter()
        .map(|(name, f)| {
            format!(
                "{name} {}×{}",
                f.reserved_concurrency, f.connections_per_environment
            )
        })
        .collect::<Vec<_>>()
        .join(" + ");
    let needed_max_client_conn = div_ceil(demand, u64::from(pgb.instances.max(1)));
    // The function with the largest share gives up the excess.
    let (big_name, big) = config
        .functions()
        .into_iter()
        .max_by_key(|(_, f)| {
            u64::from(f.reserved_concurrency) * u64::from(f.connections_per_environment)
        })
        .expect("three functions");
    let excess = demand - capacity;
    let per_env = u64::from(big.connections_per_environment.max(1));
    let lowered = u64::from(big.reserved_concurrency).saturating_sub(div_ceil(excess, per_env));
    out.push(Violation::new(
        Rule::ClientConnections,
        format!(
            "functions can hold {demand} client connections to PgBouncer ({breakdown}) \
             but the tier accepts {capacity} ({} instances × max_client_conn {})",
            pgb.instances, pgb.max_client_conn
        ),
        format!(
            "raise pgbouncer.max_client_conn to {needed_max_client_conn}, \
             or lower functions.{big_name}.reserved_concurrency to {lowered}"
        ),
    ));
}

/// Invariant (2): instances × pools × (default_pool_size + reserve_pool_size) ≤ max_connections − reserved.
fn check_server_connections(config: &KitConfig, out: &mut Vec<Violation>) {
    let demand = config.server_connection_demand();
    let db = &config.database;
    let budget = u64::from(db.pgbouncer_budget());
    if demand <= budget {
        return;
    }
    let pgb = &config.pgbouncer;
    let pools = config.pools();
    let per_pool = budget / u64::from((pgb.instances * pools).max(1));
    let pool_fix = if per_pool > u64::from(pgb.reserve_pool_size) {
        format!(
            "lower pgbouncer.default_pool_size to {}, or ",
            per_pool - u64::from(pgb.reserve_pool_size)
        )
    } else {
        String::new()
    };
    out.push(Violation::new(
        Rule::ServerConnections,
        format!(
            "PgBouncer can open {demand} server connections ({} instances × {pools} pools × \
             (default_pool_size {} + reserve_pool_size {})) but PostgreSQL allows {budget} \
             (max_connections {} − {} reserved: superuser {} + reserved {} + headroom {})",
            pgb.instances,
            pgb.default_pool_size,
            pgb.reserve_pool_size,
            db.max_connections,
            db.unavailable_to_pgbouncer(),
            db.superuser_reserved_connections,
            db.reserved_connections,
            db.headroom
        ),
        format!(
            "{pool_fix}raise database.max_connections to {}",
            demand + u64::from(db.unavailable_to_pgbouncer())
        ),
    ));
}

/// Invariant (3): SQS maximum concurrency ≤ ingest's reserved concurrency, within AWS's 2..=1000.
fn check_sqs_concurrency(config: &KitConfig, out: &mut Vec<Violation>) {
    let max = config.queue.maximum_concurrency;
    let reserved = config.functions.ingest.reserved_concurrency;
    if !(2..=1000).contains(&max) {
        out.push(Violation::new(
            Rule::SqsConcurrency,
            format!("queue.maximum_concurrency is {max} but AWS accepts 2 to 1000"),
            format!("set queue.maximum_concurrency to {}", max.clamp(2, 1000)),
        ));
    }
    if max > reserved {
        out.push(Violation::new(
            Rule::SqsConcurrency,
            format!(
                "the SQS event source may run {max} ingest batches at once (queue.maximum_concurrency) \
                 but ingest's reserved concurrency is {reserved}: throttled batches go back to the \
                 queue and can reach the DLQ without ever running"
            ),
            format!(
                "lower queue.maximum_concurrency to {reserved}, \
                 or raise functions.ingest.reserved_concurrency to {max}"
            ),
        ));
    }
}

/// Invariant (4): visibility timeout ≥ 6 × ingest timeout + batching window.
fn check_visibility_timeout(config: &KitConfig, out: &mut Vec<Violation>) {
    let required = config.required_visibility_timeout_s();
    let q = &config.queue;
    let visibility = u64::from(q.visibility_timeout_s);
    if visibility >= required {
        return;
    }
    let timeout = config.functions.ingest.timeout_s;
    let max_timeout = visibility.saturating_sub(u64::from(q.batching_window_s)) / 6;
    let timeout_fix = if max_timeout >= 1 {
        format!(", or lower functions.ingest.timeout_s to {max_timeout}")
    } else {
        String::new()
    };
    out.push(Violation::new(
        Rule::VisibilityTimeout,
        format!(
            "queue.visibility_timeout_s is {visibility} but must be at least {required} \
             (6 × ingest timeout {timeout} s + batching window {} s), or messages reappear \
             while a batch is still being written",
            q.batching_window_s
        ),
        format!("raise queue.visibility_timeout_s to {required}{timeout_fix}"),
    ));
}

/// Invariant (5): query_wait_timeout < API Gateway's 29 s for search and every function's timeout.
fn check_query_wait_timeout(config: &KitConfig, out: &mut Vec<Violation>) {
    let wait = config.pgbouncer.query_wait_timeout_s;
    if wait >= API_GATEWAY_TIMEOUT_S {
        out.push(Violation::new(
            Rule::QueryWaitTimeout,
            format!(
                "pgbouncer.query_wait_timeout_s is {wait} but API Gateway gives up on search after \
                 {API_GATEWAY_TIMEOUT_S} s: a queued search would time out at the gateway instead of \
                 failing fast with 503"
            ),
            format!("lower pgbouncer.query_wait_timeout_s to {}", API_GATEWAY_TIMEOUT_S - 1),
        ));
    }
    for (name, f) in config.functions() {
        if wait >= f.timeout_s {
            out.push(Violation::new(
                Rule::QueryWaitTimeout,
                format!(
                    "pgbouncer.query_wait_timeout_s is {wait} but functions.{name}.timeout_s is {}: \
                     the function would be killed while still queued in PgBouncer",
                    f.timeout_s
                ),
                format!(
                    "lower pgbouncer.query_wait_timeout_s to {}, or raise functions.{name}.timeout_s to {}",
                    f.timeout_s.saturating_sub(1),
                    wait + 1
                ),
            ));
        }
    }
}

fn check_provisioned(config: &KitConfig, out: &mut Vec<Violation>) {
    for (name, f) in config.functions() {
        if f.provisioned_concurrency > f.reserved_concurrency {
            out.push(Violation::new(
                Rule::ProvisionedConcurrency,
                format!(
                    "functions.{name}.provisioned_concurrency is {} but its reserved_concurrency is {}: \
                     Lambda cannot provision more environments than it may run",
                    f.provisioned_concurrency, f.reserved_concurrency
                ),
                format!(
                    "lower functions.{name}.provisioned_concurrency to {}, \
                     or raise functions.{name}.reserved_concurrency to {}",
                    f.reserved_concurrency, f.provisioned_concurrency
                ),
            ));
        }
    }
}

fn check_account_concurrency(config: &KitConfig, out: &mut Vec<Violation>) {
    let total: u64 = config
        .functions()
        .iter()
        .map(|(_, f)| u64::from(f.reserved_concurrency))
        .sum();
    let limit = config.aws.account_concurrency_limit;
    let allowed = u64::from(limit.saturating_sub(LAMBDA_MIN_UNRESERVED));
    if total > allowed {
        out.push(Violation::new(
            Rule::AccountConcurrency,
            format!(
                "the functions reserve {total} concurrent executions but an account limit of {limit} \
                 leaves {allowed} reservable (Lambda keeps {LAMBDA_MIN_UNRESERVED} unreserved)"
            ),
            format!(
                "request a Lambda concurrency quota of at least {} and set aws.account_concurrency_limit to it, \
                 or lower the reserved concurrency by {}",
                total + u64::from(LAMBDA_MIN_UNRESERVED),
                total - allowed
            ),
        ));
    }
}

/// A connection acquire or a statement that outlives the invocation is a timeout nobody sees.
fn check_client_timeouts(config: &KitConfig, out: &mut Vec<Violation>) {
    for (name, f) in config.functions() {
        let timeout_ms = u64::from(f.timeout_s) * 1000;
        for (setting, value) in [
            ("acquire_timeout_ms", f.acquire_timeout_ms),
            ("statement_timeout_ms", f.statement_timeout_ms),
        ] {
            if value == 0 || u64::from(value) >= timeout_ms {
                out.push(Violation::new(
                    Rule::ClientTimeout,
                    format!(
                        "functions.{name}.{setting} is {value} but must be between 1 and the \
                         function's timeout ({timeout_ms} ms), exclusive"
                    ),
                    format!(
                        "set functions.{name}.{setting} to {}",
                        if value == 0 {
                            1000.min(timeout_ms / 2)
                        } else {
                            timeout_ms / 2
                        }
                    ),
                ));
            }
        }
    }
    let search = &config.functions.search;
    if search.timeout_s > API_GATEWAY_TIMEOUT_S {
        out.push(Violation::new(
            Rule::ClientTimeout,
            format!(
                "functions.search.timeout_s is {} but API Gateway answers 503 after {API_GATEWAY_TIMEOUT_S} s",
                search.timeout_s
            ),
            format!("lower functions.search.timeout_s to {API_GATEWAY_TIMEOUT_S}"),
        ));
    }
}
