//! `kit`: the one command-line entry point of pgvector-lambda-kit.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kit::deploy::cli as deploy;

mod bench;
mod demo;
mod migrate;
mod retention;
mod roles;
mod scratch;

#[derive(Debug, Parser)]
#[command(
    name = "kit",
    version,
    about = "pgvector-lambda-kit: migrations, deployment model, benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply, revert or list the schema migrations (embedded in this binary).
    Migrate(migrate::MigrateArgs),
    /// Validate kit.toml's invariants and that the rendered files are up to date.
    Check(deploy::CheckArgs),
    /// Write infra/template.yaml and pgbouncer/pgbouncer.ini from kit.toml.
    Render(deploy::RenderArgs),
    /// Derive concurrency and pool sizes from a target load.
    Plan(deploy::PlanArgs),
    /// TLS for the functions' hop: `kit tls issue` makes PgBouncer's certificate and CA.
    Tls(kit::deploy::tls::TlsArgs),
    /// Build the deployable Lambda artifacts.
    Build(deploy::BuildArgs),
    /// Per-namespace retention overrides used by the purge function.
    Retention(retention::RetentionArgs),
    /// The functions' login roles and row-level security (`kit roles apply`).
    Roles(roles::RolesArgs),
    /// Benchmarks: the handler path against raw PostgreSQL, measured in one run.
    Bench(bench::BenchArgs),
    /// Drive the running local functions end to end (used by `make demo`).
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// Prints an error and its causes, one per line. Never a backtrace: `anyhow`'s `Debug`
/// (what returning `Err` from `main` prints) appends one whenever `RUST_BACKTRACE` is set,
/// as it is in many development shells, and a refused configuration is no crash.
fn report(error: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(err, "  caused by: {cause}");
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(args) => runtime()?.block_on(migrate::run(args)),
        Command::Check(args) => deploy::check(args),
        Command::Render(args) => deploy::render(args),
        Command::Plan(args) => deploy::plan(args),
        Command::Tls(args) => kit::deploy::tls::run(args),
        Command::Build(args) => deploy::build(args),
        Command::Retention(args) => runtime()?.block_on(retention::run(args)),
        Command::Roles(args) => runtime()?.block_on(roles::run(args)),
        Command::Bench(args) => runtime()?.block_on(bench::run(args)),
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
