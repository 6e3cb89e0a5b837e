//! The invariants `kit check` enforces on a [`KitConfig`].
//!
//! The five contract invariants (docs/capacity.md, the connection budget) come
//! first; AWS and PostgreSQL limits that are cheap to know follow. Each
//! violation carries the numbers involved and the smallest single change that
//! fixes it.

use super::model::{AuthMode, KitConfig};
use super::worst_case;

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

fn range(out: &mut Vec<Violation>, field: &str, value: u64, min: u64, max: u64, why: &str) {
    if value < min || value > max {
        out.push(Violation::new(
            Rule::Range,
            format!("{field} is {value} but {why} accepts {min} to {max}"),
            format!("set {field} to {}", value.clamp(min, max)),
        ));
    }
}

fn check_ranges(config: &KitConfig, out: &mut Vec<Violation>) {
    for (name, f) in config.functions() {
        let key = |k: &str| format!("functions.{name}.{k}");
        range(
            out,
            &key("timeout_s"),
            f.timeout_s.into(),
            1,
            LAMBDA_MAX_TIMEOUT_S.into(),
            "Lambda",
        );
        range(
            out,
            &key("memory_mb"),
            f.memory_mb.into(),
            128,
            10240,
            "Lambda",
        );
        range(
            out,
            &key("reserved_concurrency"),
            f.reserved_concurrency.into(),
            1,
            config.aws.account_concurrency_limit.into(),
            "a function that must run (0 disables it)",
        );
        range(
            out,
            &key("connections_per_environment"),
            f.connections_per_environment.into(),
            1,
            16,
            "the kit (one invocation per environment needs one connection)",
        );
    }
    let pgb = &config.pgbouncer;
    range(
        out,
        "pgbouncer.instances",
        pgb.instances.into(),
        1,
        64,
        "the kit",
    );
    range(
        out,
        "pgbouncer.default_pool_size",
        pgb.default_pool_size.into(),
        1,
        10_000,
        "PgBouncer",
    );
    range(
        out,
        "pgbouncer.min_pool_size",
        pgb.min_pool_size.into(),
        0,
        pgb.default_pool_size.into(),
        "default_pool_size",
    );
    range(
        out,
        "pgbouncer.max_prepared_statements",
        pgb.max_prepared_statements.into(),
        1,
        10_000,
        "the kit (sqlx prepares every statement; 0 breaks it under transaction pooling)",
    );
    range(
        out,
        "pgbouncer.pkt_buf",
        pgb.pkt_buf.into(),
        4096,
        262_144,
        "the kit (PgBouncer's default is the least; a search's Bind message, 4 bytes per \
         vector dimension, should fit in one buffer)",
    );
    range(
        out,
        "pgbouncer.max_client_conn",
        pgb.max_client_conn.into(),
        1,
        100_000,
        "PgBouncer",
    );
    range(
        out,
        "pgbouncer.query_wait_timeout_s",
        pgb.query_wait_timeout_s.into(),
        1,
        3600,
        "the kit (0 waits forever)",
    );
    let q = &config.queue;
    let max_batch = if q.fifo { 10 } else { 10_000 };
    range(
        out,
        "queue.batch_size",
        q.batch_size.into(),
        1,
        max_batch,
        "the SQS event source",
    );
    range(
        out,
        "queue.batching_window_s",
        q.batching_window_s.into(),
        0,
        300,
        "the SQS event source",
    );
    range(
        out,
        "queue.max_receive_count",
        q.max_receive_count.into(),
        1,
        1000,
        "the SQS redrive policy",
    );
    range(
        out,
        "queue.visibility_timeout_s",
        q.visibility_timeout_s.into(),
        0,
        43_200,
        "SQS",
    );
    range(
        out,
        "queue.message_retention_s",
        q.message_retention_s.into(),
        60,
        1_209_600,
        "SQS",
    );
    range(
        out,
        "queue.dlq_message_retention_s",
        q.dlq_message_retention_s.into(),
        60,
        1_209_600,
        "SQS",
    );
    range(
        out,
        "schedule.retention_days",
        config.schedule.retention_days.into(),
        1,
        36_500,
        "the kit",
    );
    range(
        out,
        "api.throttling_rate_limit",
        config.api.throttling_rate_limit.into(),
        1,
        1_000_000,
        "API Gateway",
    );
    range(
        out,
        "api.throttling_burst_limit",
        config.api.throttling_burst_limit.into(),
        1,
        1_000_000,
        "API Gateway",
    );
    range(
        out,
        "api.p99_alarm_ms",
        config.api.p99_alarm_ms.into(),
        1,
        u64::from(API_GATEWAY_TIMEOUT_S) * 1000,
        "the alarm",
    );
    range(
        out,
        "database.max_connections",
        config.database.max_connections.into(),
        1,
        262_143,
        "PostgreSQL",
    );
    range(
        out,
        "aws.log_retention_days",
        config.aws.log_retention_days.into(),
        1,
        3653,
        "CloudWatch Logs",
    );
}

fn check_queue_shape(config: &KitConfig, out: &mut Vec<Violation>) {
    let q = &config.queue;
    if q.fifo && q.batching_window_s > 0 {
        out.push(Violation::new(
            Rule::BatchingWindow,
            format!(
                "queue.batching_window_s is {} but FIFO event sources accept no batching window",
                q.batching_window_s
            ),
            "set queue.batching_window_s to 0",
        ));
    }
    if !q.fifo && q.batch_size > 10 && q.batching_window_s == 0 {
        out.push(Violation::new(
            Rule::BatchingWindow,
            format!(
                "queue.batch_size is {} but SQS needs a batching window of at least 1 s for batches above 10",
                q.batch_size
            ),
            "set queue.batching_window_s to 1, or lower queue.batch_size to 10",
        ));
    }
    if q.dlq_message_retention_s < q.message_retention_s {
        out.push(Violation::new(
            Rule::DeadLetterRetention,
            format!(
                "queue.dlq_message_retention_s is {} but the source queue keeps messages {} s: a message \
                 keeps its original enqueue time in the DLQ and would expire there before anyone looks",
                q.dlq_message_retention_s, q.message_retention_s
            ),
            format!("raise queue.dlq_message_retention_s to {}", q.message_retention_s),
        ));
    }
}

fn is_valid_role(role: &str) -> bool {
    let mut chars = role.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && role.len() <= 63
}

fn is_valid_schedule(expr: &str) -> bool {
    let inner = |prefix: &str| {
        expr.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(cron) = inner("cron(") {
        return cron.split_whitespace().count() == 6;
    }
    if let Some(rate) = inner("rate(") {
        let mut parts = rate.split_whitespace();
        let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let Ok(n) = n.parse::<u32>() else {
            return false;
        };
        let singular = matches!(unit, "minute" | "hour" | "day");
        let plural = matches!(unit, "minutes" | "hours" | "days");
        return n >= 1 && ((n == 1 && singular) || (n > 1 && plural));
    }
    false
}

/// Secrets Manager's shortest rotation interval: `rate(4 hours)`.
pub const ROTATION_MIN_HOURS: u32 = 4;
/// Secrets Manager's longest `rate(N days)`.
pub const ROTATION_MAX_DAYS: u32 = 999;

/// `[rotation] schedule`: a `rate(N hours)` (N ≥ 4), `rate(N days)` (N ≤ 999) or
/// `cron(...)` with six fields. Shorter than four hours Secrets Manager refuses it; and a
/// rotation must not start before the previous one finished and every warm function had a
/// chance to re-read (each re-reads at most once per 10 s, PgBouncer's auth file every 15 s).
fn rotation_schedule_problem(expr: &str) -> Option<String> {
    let inner = |prefix: &str| {
        expr.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(cron) = inner("cron(") {
        return (cron.split_whitespace().count() != 6).then(|| {
            "a cron expression has six fields (min hour day-of-month month day-of-week year)"
                .to_owned()
        });
    }
    let Some(rate) = inner("rate(") else {
        return Some("it is neither rate(...) nor cron(...)".to_owned());
    };
    let mut parts = rate.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Some("a rate is rate(N hours) or rate(N days)".to_owned());
    };
    let Ok(n) = n.parse::<u32>() else {
        return Some(format!("{n:?} is not a whole number"));
    };
    let (min, max) = match unit {
        "hour" | "hours" => (ROTATION_MIN_HOURS, u32::MAX),
        "day" | "days" => (1, ROTATION_MAX_DAYS),
        _ => {
            return Some(format!(
                "{unit:?} is not a unit Secrets Manager rotates in (hours or days)"
            ))
        }
    };
    if n < min || n > max {
        return Some(format!(
            "Secrets Manager rotates every {ROTATION_MIN_HOURS} hours at the most often and every \
             {ROTATION_MAX_DAYS} days at the least"
        ));
    }
    if (n == 1) == unit.ends_with('s') {
        return Some("write rate(1 day), or the plural for N > 1 (rate(30 days))".to_owned());
    }
    None
}

fn check_rotation(config: &KitConfig, out: &mut Vec<Violation>) {
    let rotation = &config.rotation;
    if let Some(why) = rotation_schedule_problem(&rotation.schedule) {
        out.push(Violation::new(
            Rule::Rotation,
            format!("rotation.schedule is {:?}: {why}", rotation.schedule),
            "set rotation.schedule = \"rate(30 days)\"",
        ));
    }
}

fn check_choices(config: &KitConfig, out: &mut Vec<Violation>) {
    let pgb = &config.pgbouncer;
    if pgb.pool_mode != "transaction" {
        out.push(Violation::new(
            Rule::Choice,
            format!(
                "pgbouncer.pool_mode is {:?} but the budget assumes \"transaction\": in session mode \
                 every idle Lambda environment pins a server connection",
                pgb.pool_mode
            ),
            "set pgbouncer.pool_mode = \"transaction\"",
        ));
    }
    const FARGATE_CPU: [u32; 5] = [256, 512, 1024, 2048, 4096];
    if !FARGATE_CPU.contains(&pgb.task_cpu) {
        let nearest = FARGATE_CPU
            .iter()
            .copied()
            .find(|c| *c >= pgb.task_cpu)
            .unwrap_or(4096);
        out.push(Violation::new(
            Rule::Choice,
            format!(
                "pgbouncer.task_cpu is {} but Fargate offers 256, 512, 1024, 2048 or 4096",
                pgb.task_cpu
            ),
            format!("set pgbouncer.task_cpu to {nearest}"),
        ));
    }
    for (name, f) in config.functions() {
        if !is_valid_role(&f.db_role) {
            out.push(Violation::new(
                Rule::RoleName,
                format!(
                    "functions.{name}.db_role is {:?}: a role name here is 1 to 63 characters of a-z, 0-9 and _, \
                     not starting with a digit",
                    f.db_role
                ),
                format!("set functions.{name}.db_role to \"kit_{name}\""),
            ));
        }
    }
    let functions = config.functions();
    for (i, (name, f)) in functions.iter().enumerate() {
        if let Some((first, _)) = functions[..i].iter().find(|(_, g)| g.db_role == f.db_role) {
            out.push(Violation::new(
                Rule::RoleName,
                format!(
                    "functions.{name}.db_role is {:?}, the same as functions.{first}.db_role: each function \
                     logs in as its own role (its own secret, PgBouncer pool and grants)",
                    f.db_role
                ),
                format!("set functions.{name}.db_role to \"kit_{name}\""),
            ));
        }
    }
    if !is_valid_schedule(&config.schedule.expression) {
        out.push(Violation::new(
            Rule::ScheduleExpression,
            format!(
                "schedule.expression is {:?} but EventBridge expects cron(min hour day-of-month month \
                 day-of-week year) or rate(N unit)",
                config.schedule.expression
            ),
            "set schedule.expression to \"cron(17 3 * * ? *)\" (03:17 UTC nightly)",
        ));
    }
}

/// The search API's authentication (docs/security.md, "Tenant isolation"): each mode has
/// what it needs and nothing meant for another, and an open API is written on purpose.
fn check_api_auth(config: &KitConfig, out: &mut Vec<Violation>) {
    let api = &config.api;
    let mut refuse = |problem: String, fix: &str| {
        out.push(Violation::new(Rule::ApiAuth, problem, fix));
    };
    let mode = api.auth.as_str();
    match api.auth {
        AuthMode::None if !api.allow_unauthenticated => refuse(
            "api.auth is \"none\": anyone who can reach the search API could read every namespace \
             (each request's body or query names its own)"
                .into(),
            "set api.auth = \"jwt\" (with api.jwt_issuer and api.jwt_audience), \"lambda\" or \"iam\"; \
             or, to deploy an open API on purpose, write api.allow_unauthenticated = true",
        ),
        AuthMode::None => {}
        _ if api.allow_unauthenticated => refuse(
            format!("api.allow_unauthenticated = true but api.auth is \"{mode}\", which it does not apply to"),
            "remove api.allow_unauthenticated (it only confirms api.auth = \"none\")",
        ),
        _ => {}
    }
    if api.auth == AuthMode::Jwt {
        match api.jwt_issuer.as_deref() {
            Some(issuer) if issuer.starts_with("https://") && issuer.len() > "https://".len() => {}
            Some(issuer) => refuse(
                format!("api.jwt_issuer is {issuer:?} but a JWT authorizer's issuer is an https:// URL"),
                "set api.jwt_issuer to your issuer, e.g. \"https://cognito-idp.REGION.amazonaws.com/POOL_ID\"",
            ),
            None => refuse(
                "api.auth is \"jwt\" but api.jwt_issuer is not set".into(),
                "set api.jwt_issuer to your issuer, e.g. \"https://cognito-idp.REGION.amazonaws.com/POOL_ID\"",
            ),
        }
        if api.jwt_audience.is_empty() || api.jwt_audience.iter().any(|a| a.trim().is_empty()) {
            refuse(
                format!("api.jwt_audience is {:?}: a JWT authorizer needs at least one non-empty audience", api.jwt_audience),
                "set api.jwt_audience = [\"YOUR_APP_CLIENT_ID\"] (the tokens' aud, or client_id for access tokens)",
            );
        }
    } else {
        for (set, key) in [
            (api.jwt_issuer.is_some(), "jwt_issuer"),
            (!api.jwt_audience.is_empty(), "jwt_audience"),
            (!api.authorization_scopes.is_empty(), "authorization_scopes"),
        ] {
            if set {
                refuse(
                    format!("api.{key} is set but api.auth is \"{mode}\", which does not use it"),
                    "remove it, or set api.auth = \"jwt\"",
                );
            }
        }
    }
    if let Some(scope) = api
        .authorization_scopes
        .iter()
        .find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic()))
    {
        refuse(
            format!("api.authorization_scopes holds {scope:?}: a scope is printable ASCII without spaces"),
            "list scopes as [\"resource-server/scope\", …]",
        );
    }
    match (api.auth, api.lambda_authorizer_arn.as_deref()) {
        (AuthMode::Lambda, Some(arn)) if is_lambda_arn(arn) => {}
        (AuthMode::Lambda, Some(arn)) => refuse(
            format!("api.lambda_authorizer_arn is {arn:?}, not a Lambda function ARN"),
            "set api.lambda_authorizer_arn = \"arn:aws:lambda:REGION:ACCOUNT:function:NAME\"",
        ),
        (AuthMode::Lambda, None) => refuse(
            "api.auth is \"lambda\" but api.lambda_authorizer_arn is not set".into(),
            "set api.lambda_authorizer_arn = \"arn:aws:lambda:REGION:ACCOUNT:function:NAME\"",
        ),
        (_, Some(_)) => refuse(
            format!("api.lambda_authorizer_arn is set but api.auth is \"{mode}\", which does not use it"),
            "remove it, or set api.auth = \"lambda\"",
        ),
        (_, None) => {}
    }
    let claim = &api.namespace_claim;
    if claim.is_empty() || claim.len() > 256 || !claim.chars().all(|c| c.is_ascii_graphic()) {
        refuse(
            format!("api.namespace_claim is {claim:?}: a claim name is 1 to 256 printable ASCII characters without spaces"),
            "set api.namespace_claim = \"namespace\" (or the claim your issuer uses, e.g. \"custom:tenant\")",
        );
    }
}

/// The ingest queue's trust boundary (docs/security.md, "ingest"): only listed producers
/// may send, and an optional allow-list of namespaces is well formed.
fn check_queue_access(config: &KitConfig, out: &mut Vec<Violation>) {
    let q = &config.queue;
    if q.producers.is_empty() {
        out.push(Violation::new(
            Rule::QueueAccess,
            "queue.producers is empty: the queue policy would let no one send, and whoever may \
             send may write any namespace, so the producers are listed explicitly",
            "list the IAM roles or users that send ingest messages, e.g. queue.producers = \
             [\"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/kit-ingest-producer\"]",
        ));
    }
    for producer in &q.producers {
        if !is_principal_arn(producer) {
            out.push(Violation::new(
                Rule::QueueAccess,
                format!(
                    "queue.producers holds {producer:?}: a producer is an IAM role or user ARN \
                     (arn:PARTITION:iam::ACCOUNT:role/NAME or :user/NAME), without wildcards"
                ),
                "use the role's ARN, e.g. \"arn:aws:iam::123456789012:role/ingest-writer\"; \
                 ${AWS::AccountId} and ${AWS::Partition} are substituted at deploy time",
            ));
        }
    }
    for (i, namespace) in q.namespaces.iter().enumerate() {
        if storage::Namespace::parse(namespace).is_err() {
            out.push(Violation::new(
                Rule::QueueAccess,
                format!(
                    "queue.namespaces holds {namespace:?}, which is not a namespace (1 to 64 of a-z, 0-9, _ and -)"
                ),
                "list namespaces as ingest messages name them, e.g. [\"acme\", \"globex\"]",
            ));
        } else if q.namespaces[..i].contains(namespace) {
            out.push(Violation::new(
                Rule::QueueAccess,
                format!("queue.namespaces lists {namespace:?} twice"),
                "remove the duplicate",
            ));
        }
    }
}

/// `arn:PARTITION:iam::ACCOUNT:role/…` or `:user/…`, where PARTITION and ACCOUNT may be
/// `${AWS::Partition}` and `${AWS::AccountId}`.
fn is_principal_arn(arn: &str) -> bool {
    // The substitutions hold colons themselves: check the ARN they stand for.
    let arn = arn
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::AccountId}", "000000000000");
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    let partition_ok = partition.starts_with("aws")
        && partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-');
    let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
    let resource_ok = resource
        .strip_prefix("role/")
        .or_else(|| resource.strip_prefix("user/"))
        .is_some_and(|name| {
            !name.is_empty()
                && !name.ends_with('/')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
        });
    prefix == "arn"
        && partition_ok
        && service == "iam"
        && region.is_empty()
        && account_ok
        && resource_ok
}

/// `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
fn is_lambda_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    matches!(
        parts[..],
        ["arn", partition, "lambda", region, account, "function", name, ..]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && !name.is_empty()
    ) && parts.len() <= 8
}

/// `[tls]`: both hops verify their server (or at least encrypt); none may fall back to
/// plaintext, which `disable`, `allow` and `prefer` all do.
fn check_tls(config: &KitConfig, out: &mut Vec<Violation>) {
    let tls = &config.tls;
    for (key, mode, hop, against) in [
        (
            "client_sslmode",
            tls.client_sslmode,
            "the functions' connections to PgBouncer",
            "the deployment's CA (kit tls issue)",
        ),
        (
            "server_sslmode",
            tls.server_sslmode,
            "PgBouncer's connections to PostgreSQL",
            "the RDS CA bundle in the PgBouncer image",
        ),
    ] {
        if mode.allows_plaintext() {
            out.push(Violation::new(
                Rule::Tls,
                format!(
                    "tls.{key} is \"{mode}\": {hop} could run in plaintext, readable and \
                     downgradable by anyone on the network path"
                ),
                format!(
                    "set tls.{key} = \"verify-full\" (verifies the server's certificate and name \
                     against {against})"
                ),
            ));
        }
    }
    if !is_valid_hostname(&tls.pgbouncer_hostname) {
        out.push(Violation::new(
            Rule::Tls,
            format!(
                "tls.pgbouncer_hostname is {:?}: it must be a lower-case DNS name of at least three \
                 labels (the first is the record, the rest the private hosted zone the stack creates)",
                tls.pgbouncer_hostname
            ),
            "set tls.pgbouncer_hostname = \"pgbouncer.kit.internal\"",
        ));
    }
}

fn is_valid_hostname(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 3
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}
