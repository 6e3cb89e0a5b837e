//! The `kit` library: everything the CLI does that is worth testing without a shell.
//!
//! - [`deploy`]: the `kit.toml` model, the pool-budget invariants, the renderers for
//!   `infra/template.yaml` and `pgbouncer/pgbouncer.ini`, and capacity planning.

pub mod deploy;

use std::io::Write;

/// Prints an error and its causes, one per line, for `kit` and `kit-dev`. Never a
/// backtrace: `anyhow`'s `Debug` (what returning `Err` from `main` prints) appends one
/// whenever `RUST_BACKTRACE` is set, as it is in many development shells, and a refused
/// configuration is no crash.
pub fn report(error: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(err, "  caused by: {cause}");
    }
}
