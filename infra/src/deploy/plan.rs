//! `kit plan`: deployment sizes derived from a target load.
//!
//! Little's law gives the concurrency a rate needs: `in flight = arrival rate ×
//! time in the system`. Applied three times:
//!
//! - Lambda environments for search = searches/s × p99 duration × headroom
//!   (sized for the tail: when the database slows down every request looks like p99);
//! - server connections for search = searches/s × time in the database × headroom
//!   (transaction pooling holds a server connection only for the transaction);
//! - ingest environments = batches/s × time per batch × headroom.
//!
//! The plan starts from the current `kit.toml`, replaces the derived numbers,
//! and runs the same invariants as `kit check`.

use std::fmt::Write as _;

use super::budget::{self, Violation, API_GATEWAY_TIMEOUT_S};
use super::model::KitConfig;

/// The load to plan for; durations in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadTarget {
    pub search_rps: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
    /// Time a search holds its database transaction (defaults to p50).
    pub search_db_ms: f64,
    pub ingest_msgs_per_s: f64,
    /// Time one full ingest batch takes, end to end.
    pub ingest_batch_ms: f64,
    /// Multiplier on every derived number (1.5 = 50 % spare).
    pub headroom: f64,
    /// Transactions per second one PgBouncer instance should carry at most.
    pub pgbouncer_tps: f64,
}

/// A load target that cannot be planned for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("{name} is {value} but must be {expected}")]
    Invalid {
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
}

/// One derived setting: where it goes in `kit.toml`, its value and how it was derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub table: &'static str,
    pub key: &'static str,
    pub value: String,
    pub why: String,
}

/// What `kit plan` found: the derived settings, the resulting config and its violations.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: LoadTarget,
    pub derived: Vec<Derived>,
    pub config: KitConfig,
    pub violations: Vec<Violation>,
}

fn ceil_u32(x: f64) -> u32 {
    x.ceil().clamp(0.0, f64::from(u32::MAX)) as u32
}

fn validate(t: &LoadTarget) -> Result<(), PlanError> {
    let positive = |name, value: f64| {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(PlanError::Invalid {
                name,
                value,
                expected: "a positive number",
            })
        }
    };
    positive("--search-rps", t.search_rps)?;
    positive("--p50-ms", t.search_p50_ms)?;
    positive("--p99-ms", t.search_p99_ms)?;
    positive("--search-db-ms", t.search_db_ms)?;
    positive("--ingest-batch-ms", t.ingest_batch_ms)?;
    positive("--pgbouncer-tps", t.pgbouncer_tps)?;
    if !(t.ingest_msgs_per_s.is_finite() && t.ingest_msgs_per_s >= 0.0) {
        return Err(PlanError::Invalid {
            name: "--ingest-msgs-per-s",
            value: t.ingest_msgs_per_s,
            expected: "zero or a positive number",
        });
    }
    if t.search_p99_ms < t.search_p50_ms {
        return Err(PlanError::Invalid {
            name: "--p99-ms",
            value: t.search_p99_ms,
            expected: "at least --p50-ms",
        });
    }
    if t.search_db_ms > t.search_p99_ms {
        return Err(PlanError::Invalid {
            name: "--search-db-ms",
            value: t.search_db_ms,
            expected: "at most --p99-ms (the database time is part of the function's duration)",
        });
    }
    if !(t.headroom.is_finite() && t.headroom >= 1.0) {
        return Err(PlanError::Invalid {
            name: "--headroom",
            value: t.headroom,
            expected: "at least 1.0",
        });
    }
    if t.search_p99_ms >= f64::from(API_GATEWAY_TIMEOUT_S) * 1000.0 {
        return Err(PlanError::Invalid {
            name: "--p99-ms",
            value: t.search_p99_ms,
            expected: "below API Gateway's 29 s",
        });
    }
    Ok(())
}

/// Derives sizes for `target` on top of `base` and checks the result.
pub fn plan(base: &KitConfig, target: &LoadTarget) -> Result<Plan, PlanError> {
    validate(target)?;
    let t = target;
    let h = t.headroom;
    let mut c = base.clone();
    let mut derived = Vec::new();
    let mut set = |table: &'static str, key: &'static str, value: String, why: String| {
        derived.push(Derived {
            table,
            key,
            value,
            why,
        });
    };

    // search: Lambda environments and server connections.
    let search_mean = t.search_rps * t.search_p50_ms / 1000.0;
    let search_reserved = ceil_u32(t.search_rps * t.search_p99_ms / 1000.0 * h).max(1);
    c.functions.search.reserved_concurrency = search_reserved;
    c.functions.search.provisioned_concurrency = c
        .functions
        .search
        .provisioned_concurrency
        .min(search_reserved);
    set(
        "functions.search",
        "reserved_concurrency",
        search_reserved.to_string(),
        format!(
            "{} searches/s × {} ms (p99) × {h} headroom; the mean is ≈ {:.0} in flight (× p50), \
             worth provisioning if cold starts show in p99",
            t.search_rps, t.search_p99_ms, search_mean
        ),
    );
    let search_servers = (t.search_rps * t.search_db_ms / 1000.0 * h).max(1.0);

    // ingest: batches in flight.
    let batch_size = f64::from(c.queue.batch_size.max(1));
    let batches_per_s = t.ingest_msgs_per_s / batch_size;
    let ingest_concurrency =
        ceil_u32(batches_per_s * t.ingest_batch_ms / 1000.0 * h).clamp(2, 1000);
    c.queue.maximum_concurrency = ingest_concurrency;
    c.functions.ingest.reserved_concurrency = ingest_concurrency;
    c.functions.ingest.provisioned_concurrency = c
        .functions
        .ingest
        .provisioned_concurrency
        .min(ingest_concurrency);
    set(
        "queue",
        "maximum_concurrency",
        ingest_concurrency.to_string(),
        format!(
            "{} messages/s ÷ batch_size {} = {batches_per_s:.1} batches/s × {} ms × {h} headroom (AWS minimum 2)",
            t.ingest_msgs_per_s, c.queue.batch_size, t.ingest_batch_ms
        ),
    );
    set(
        "functions.ingest",
        "reserved_concurrency",
        ingest_concurrency.to_string(),
        "equal to queue.maximum_concurrency, so the event source is never throttled".to_owned(),
    );
    let ingest_servers =
        f64::from(ingest_concurrency * c.functions.ingest.connections_per_environment.max(1));
    let purge_servers = f64::from(
        c.functions.purge.reserved_concurrency
            * c.functions.purge.connections_per_environment.max(1),
    );

    let required_visibility = u32::try_from(c.required_visibility_timeout_s()).unwrap_or(u32::MAX);
    if c.queue.visibility_timeout_s < required_visibility {
        c.queue.visibility_timeout_s = required_visibility;
        set(
            "queue",
            "visibility_timeout_s",
            required_visibility.to_string(),
            format!(
                "6 × ingest timeout {} s + batching window {} s",
                c.functions.ingest.timeout_s, c.queue.batching_window_s
            ),
        );
    }

    // PgBouncer instances: a process is single-threaded; spread transactions and keep two AZs.
    let tier_tps = t.search_rps + batches_per_s;
    let instances = ceil_u32(tier_tps * h / t.pgbouncer_tps).max(2);
    c.pgbouncer.instances = instances;
    set(
        "pgbouncer",
        "instances",
        instances.to_string(),
        format!(
            "{tier_tps:.0} transactions/s × {h} headroom ÷ {} per instance (at least 2, one per AZ)",
            t.pgbouncer_tps
        ),
    );

    // Pool sizes: every pool gets the size the busiest one needs, per instance.
    let per_instance = |servers: f64| ceil_u32(servers / f64::from(instances));
    let pool = per_instance(search_servers)
        .max(per_instance(ingest_servers))
        .max(per_instance(purge_servers))
        .max(1);
    let reserve = pool.div_ceil(4).max(2);
    c.pgbouncer.default_pool_size = pool;
    c.pgbouncer.reserve_pool_size = reserve;
    c.pgbouncer.min_pool_size = c.pgbouncer.min_pool_size.min(pool);
    set(
        "pgbouncer",
        "default_pool_size",
        pool.to_string(),
        format!(
            "busiest pool per instance: search {} searches/s × {} ms in the database × {h} headroom \
             = {search_servers:.0} server connections ÷ {instances} instances (ingest needs {ingest_servers:.0})",
            t.search_rps, t.search_db_ms
        ),
    );
    set(
        "pgbouncer",
        "reserve_pool_size",
        reserve.to_string(),
        "a quarter of default_pool_size (at least 2) for bursts".to_owned(),
    );

    // Client connections: every reserved environment may hold its connections.
    let clients = c.client_connection_demand() as f64;
    let max_client_conn = ceil_u32(clients * h / f64::from(instances)).max(100);
    c.pgbouncer.max_client_conn = max_client_conn;
    set(
        "pgbouncer",
        "max_client_conn",
        max_client_conn.to_string(),
        format!(
            "{clients:.0} client connections (Σ reserved_concurrency × connections_per_environment) \
             × {h} headroom for uneven balancing ÷ {instances} instances (at least 100)"
        ),
    );

    // PostgreSQL: what the tier can open, plus what it keeps for itself.
    let needed = c.server_connection_demand() + u64::from(c.database.unavailable_to_pgbouncer());
    let needed = u32::try_from(needed).unwrap_or(u32::MAX);
    if c.database.max_connections < needed {
        set(
            "database",
            "max_connections",
            needed.to_string(),
            format!(
                "raised from {}: {instances} instances × {} pools × ({pool} + {reserve}) + {} reserved \
                 (choose an instance class or parameter group that allows it)",
                c.database.max_connections,
                c.pools(),
                c.database.unavailable_to_pgbouncer()
            ),
        );
        c.database.max_connections = needed;
    }

    // query_wait_timeout stays below the shortest caller.
    let shortest = c
        .functions()
        .iter()
        .map(|(_, f)| f.timeout_s)
        .chain([API_GATEWAY_TIMEOUT_S])
        .min()
        .unwrap_or(API_GATEWAY_TIMEOUT_S);
    if c.pgbouncer.query_wait_timeout_s >= shortest {
        let wait = shortest.saturating_sub(1).max(1);
        c.pgbouncer.query_wait_timeout_s = wait;
        set(
            "pgbouncer",
            "query_wait_timeout_s",
            wait.to_string(),
            format!("below the shortest caller timeout ({shortest} s)"),
        );
    }

    let violations = budget::check(&c);
    Ok(Plan {
        target: target.clone(),
        derived,
        config: c,
        violations,
    })
}

impl Plan {
    /// The derived settings as a `kit.toml` fragment, grouped by table, each with its reason.
    pub fn fragment(&self) -> String {
        let t = &self.target;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# kit plan: {} searches/s (p50 {} ms, p99 {} ms, {} ms in the database), \
             {} ingest messages/s ({} ms per batch), headroom ×{}",
            t.search_rps,
            t.search_p50_ms,
            t.search_p99_ms,
            t.search_db_ms,
            t.ingest_msgs_per_s,
            t.ingest_batch_ms,
            t.headroom
        );
        let mut tables: Vec<&'static str> = Vec::new();
        for d in &self.derived {
            if !tables.contains(&d.table) {
                tables.push(d.table);
            }
        }
        for table in tables {
            let _ = writeln!(out, "\n[{table}]");
            for d in self.derived.iter().filter(|d| d.table == table) {
                let _ = writeln!(out, "# {}", d.why);
                let _ = writeln!(out, "{} = {}", d.key, d.value);
            }
        }
        out
    }
}
