//! `kit-dev bench ingest|search`: each compares the kit's real handler path (through
//! PgBouncer) with raw PostgreSQL over a direct connection, in the same run, on scratch
//! databases of its own, and prints the figures and their ratio (`--json`: one JSON
//! object as the last line). Percentiles and medians are nearest rank
//! (`kit_support::stats`).

use anyhow::Context;
use clap::{Args, Subcommand};
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

mod copy;
mod ingest;
mod search;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, Subcommand)]
enum Which {
    /// SQS batches through the ingest handler vs `COPY … (FORMAT BINARY)`.
    Ingest(ingest::IngestBenchArgs),
    /// Queries through the search handler vs the same statement as raw SQL.
    Search(search::SearchBenchArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.which {
        Which::Ingest(args) => ingest::run(args).await,
        Which::Search(args) => search::run(args).await,
    }
}

/// The stack a benchmark runs on: the application URL (through PgBouncer), the admin
/// URL and its parsed options (direct), from `--database-url` and `--admin-url` (or
/// their environment variables).
struct Stack {
    app_url: String,
    admin_url: String,
    admin: PgConnectOptions,
}

impl Stack {
    fn from_args(database_url: Option<String>, admin_url: Option<String>) -> anyhow::Result<Self> {
        let app_url = database_url.context(
            "DATABASE_URL is not set: run `make up` and `. .kit/env`, or pass --database-url",
        )?;
        let admin_url = admin_url.context(
            "DATABASE_ADMIN_URL is not set: run `make up` and `. .kit/env`, or pass --admin-url",
        )?;
        let admin: PgConnectOptions = admin_url
            .parse()
            .context("DATABASE_ADMIN_URL does not parse")?;
        Ok(Self {
            app_url,
            admin_url,
            admin: admin.disable_statement_logging(),
        })
    }
}
