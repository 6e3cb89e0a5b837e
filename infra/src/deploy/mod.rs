//! The deployment model: `kit.toml`, its invariants, and what is rendered from it.
//!
//! - [`model`]: the typed `kit.toml`;
//! - [`budget`]: the invariants `kit check` enforces (connection budget, queue and timeout rules);
//! - [`worst_case`]: each function's worst-case wait on the database, and the outage the queue absorbs;
//! - [`render`]: `infra/template.yaml` and `pgbouncer/pgbouncer.ini`, and the drift check;
//! - [`plan`]: sizes derived from a target load (`kit plan`);
//! - [`cli`]: the `kit check|render|plan|build` commands;
//! - [`tls`]: `kit tls issue`, the deployment's CA and PgBouncer's certificate.

pub mod budget;
pub mod cli;
pub mod model;
pub mod plan;
pub mod render;
pub mod tls;
pub mod worst_case;
