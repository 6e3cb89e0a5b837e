//! `pgbouncer/pgbouncer.ini`: the `[pgbouncer]` base config both environments wrap.
//!
//! Nothing environment-specific belongs here (no listen address, no auth, no
//! `[databases]`): the local stack (`scripts/stack.sh`, in the cluster directory)
//! and the container (`pgbouncer/entrypoint.sh`) each write a small ini that
//! `%include`s this file and adds those.

use std::fmt::Write as _;

use super::GENERATED_MARKER;
use crate::deploy::model::KitConfig;

/// The rendered `pgbouncer/pgbouncer.ini`.
pub fn render_pgbouncer_ini(config: &KitConfig) -> String {
    let p = &config.pgbouncer;
    let per_instance =
        u64::from(config.pools()) * u64::from(p.default_pool_size + p.reserve_pool_size);
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&format!("; {GENERATED_MARKER}"));
    line("; (edit kit.toml, then run `kit render`; `kit check` fails while this file is stale)");
    line(";");
    line("; The PgBouncer tier's base config, the same in production and in the local stack:");
    line("; each wraps it in a small ini that %includes this file and then adds its own");
    line("; listen_addr/listen_port, auth and [databases] (pgbouncer/entrypoint.sh for the");
    line("; ECS tasks, scripts/stack.sh for the local stack). Put the %include under a");
    line("; [pgbouncer] header: PgBouncer silently ignores an %include above the first section.");
    line(";");
    let mut budget = String::new();
    let _ = write!(
        budget,
        "; Budget: {} pools (one per database role) × (default_pool_size {} + reserve_pool_size {}) \
         = {per_instance} server connections per instance; × {} instances = {} \
         ≤ {} available in PostgreSQL.",
        config.pools(),
        p.default_pool_size,
        p.reserve_pool_size,
        p.instances,
        config.server_connection_demand(),
        config.database.pgbouncer_budget()
    );
    line(&budget);
    line("");
    line("[pgbouncer]");
    line("; Transaction pooling: a server connection serves a client for one transaction only.");
    line("; Per-request settings must be transaction-local (set_config(..., true)).");
    line(&format!("pool_mode = {}", p.pool_mode));
    line("; sqlx prepares every statement: PgBouncer >= 1.21 keeps them working across");
    line("; server connections in transaction mode when this is > 0.");
    line(&format!(
        "max_prepared_statements = {}",
        p.max_prepared_statements
    ));
    line("; One buffer per active connection. A search's Bind message (4 bytes per vector");
    line("; dimension, plus about 250) that fits is relayed to PostgreSQL in two writes.");
    line(&format!("pkt_buf = {}", p.pkt_buf));
    line("; sqlx sends extra_float_digits at startup.");
    line("ignore_startup_parameters = extra_float_digits");
    line("");
    line("; Clients: idle Lambda execution environments keep their connection open.");
    line(&format!("max_client_conn = {}", p.max_client_conn));
    line("; Server connections per (database, role) pool.");
    line(&format!("default_pool_size = {}", p.default_pool_size));
    line(&format!("min_pool_size = {}", p.min_pool_size));
    line(&format!("reserve_pool_size = {}", p.reserve_pool_size));
    line(&format!(
        "reserve_pool_timeout = {}",
        p.reserve_pool_timeout_s
    ));
    line("");
    line("; Timeouts, in seconds. query_wait_timeout stays below every caller's timeout");
    line("; (API Gateway's 29 s, each function's own), so a saturated pool fails fast.");
    line(&format!("query_wait_timeout = {}", p.query_wait_timeout_s));
    line(&format!("query_timeout = {}", p.query_timeout_s));
    line(&format!(
        "idle_transaction_timeout = {}",
        p.idle_transaction_timeout_s
    ));
    line(&format!(
        "client_idle_timeout = {}",
        p.client_idle_timeout_s
    ));
    line(&format!(
        "client_login_timeout = {}",
        p.client_login_timeout_s
    ));
    line(&format!(
        "server_idle_timeout = {}",
        p.server_idle_timeout_s
    ));
    line(&format!("server_lifetime = {}", p.server_lifetime_s));
    line(&format!(
        "server_connect_timeout = {}",
        p.server_connect_timeout_s
    ));
    line(&format!("server_login_retry = {}", p.server_login_retry_s));
    line("tcp_keepalive = 1");
    line("");
    line("; Lambda environments come and go all day: log errors, not every connection.");
    line("log_connections = 0");
    line("log_disconnections = 0");
    line("log_pooler_errors = 1");
    line("stats_period = 60");
    out
}
