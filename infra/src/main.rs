//! `kit`: the operator CLI of pgvector-lambda-kit. Data goes to stdout (`--json` where a
//! script reads it), messages to stderr. The developer tooling (benchmarks, the demo) is
//! `kit-dev` (`dev/tools`), which this binary does not link.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kit::deploy::cli as deploy;

mod migrate;
mod retention;
mod roles;

#[derive(Debug, Parser)]
#[command(
    name = "kit",
    version,
    about = "pgvector-lambda-kit: migrations, login roles, the deployment model (kit.toml)"
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
    /// Moved to `kit-dev bench` (developer tooling).
    #[command(hide = true)]
    Bench(Moved),
    /// Moved to `kit-dev demo` (developer tooling).
    #[command(hide = true)]
    Demo(Moved),
}

/// The arguments of a command that moved, whatever they are.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct Moved {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(error) => {
            kit::report(&error);
            ExitCode::FAILURE
        }
    }
}

impl Moved {
    /// `kit bench …` and `kit demo …` were developer tooling inside the operator CLI; an
    /// old script that still calls them fails (exit code 2) with the command that
    /// replaces them.
    fn to_kit_dev(&self, command: &str, profile: &str) -> ExitCode {
        let args: String = self.args.iter().map(|a| format!(" {a}")).collect();
        let _ = writeln!(
            std::io::stderr().lock(),
            "error: `kit {command}` moved to the developer tooling crate: \
             cargo run --locked {profile}-p kit-dev -- {command}{args}"
        );
        ExitCode::from(2)
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate(args) => runtime()?.block_on(migrate::run(args)),
        Command::Check(args) => deploy::check(args),
        Command::Render(args) => deploy::render(args),
        Command::Plan(args) => deploy::plan(args),
        Command::Tls(args) => kit::deploy::tls::run(args),
        Command::Build(args) => deploy::build(args),
        Command::Retention(args) => runtime()?.block_on(retention::run(args)),
        Command::Roles(args) => runtime()?.block_on(roles::run(args)),
        Command::Bench(moved) => return Ok(moved.to_kit_dev("bench", "--release ")),
        Command::Demo(moved) => return Ok(moved.to_kit_dev("demo", "")),
    }?;
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
