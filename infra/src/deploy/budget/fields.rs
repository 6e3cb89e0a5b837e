//! Field-level invariants: every number within its range, the queue's shape, the
//! names, schedules and choices `kit.toml` may hold.

use super::{Rule, Violation, API_GATEWAY_TIMEOUT_S, LAMBDA_MAX_TIMEOUT_S};
use crate::deploy::model::KitConfig;

fn range(out: &mut Vec<Violation>, field: &str, value: u64, min: u64, max: u64, why: &str) {
    if value < min || value > max {
        out.push(Violation::new(
            Rule::Range,
            format!("{field} is {value} but {why} accepts {min} to {max}"),
            format!("set {field} to {}", value.clamp(min, max)),
        ));
    }
}

pub(super) fn check_ranges(config: &KitConfig, out: &mut Vec<Violation>) {
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

pub(super) fn check_queue_shape(config: &KitConfig, out: &mut Vec<Violation>) {
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

pub(super) fn check_rotation(config: &KitConfig, out: &mut Vec<Violation>) {
    let rotation = &config.rotation;
    if let Some(why) = rotation_schedule_problem(&rotation.schedule) {
        out.push(Violation::new(
            Rule::Rotation,
            format!("rotation.schedule is {:?}: {why}", rotation.schedule),
            "set rotation.schedule = \"rate(30 days)\"",
        ));
    }
}

pub(super) fn check_choices(config: &KitConfig, out: &mut Vec<Violation>) {
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
