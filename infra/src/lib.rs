//! The `kit` library: everything the CLI does that is worth testing without a shell.
//!
//! - [`deploy`]: the `kit.toml` model, the pool-budget invariants, the renderers for
//!   `infra/template.yaml` and `pgbouncer/pgbouncer.ini`, and capacity planning.

pub mod deploy;
