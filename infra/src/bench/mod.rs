//! `kit bench ingest|search`: each compares the kit's real handler path (through
//! PgBouncer) with raw PostgreSQL over a direct connection, in the same run, and prints
//! the figures and their ratio (`--json`: one JSON object as the last line).

use clap::{Args, Subcommand};

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
