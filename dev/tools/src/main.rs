//! `kit-dev`: the developer tooling of pgvector-lambda-kit, apart from the operator CLI.
//!
//! `cargo run --locked --release -p kit-dev -- bench search|ingest` measures the real
//! handlers against raw PostgreSQL; `cargo run --locked -p kit-dev -- demo` (what
//! `make demo` runs) drives the three functions under `cargo lambda watch`. Figures and
//! the demo's summary go to stdout, progress to stderr.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod bench;
mod demo;

#[derive(Debug, Parser)]
#[command(
    name = "kit-dev",
    version,
    about = "pgvector-lambda-kit developer tooling: benchmarks and the end-to-end demo"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks: the handler path against raw PostgreSQL, measured in one run.
    Bench(bench::BenchArgs),
    /// Drive the running local functions end to end (used by `make demo`).
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            kit::report(&error);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
    }
}
