//! `kit bench ingest` (placeholder until the benchmark lands).

use clap::Args;

#[derive(Debug, Args)]
pub struct IngestBenchArgs {}

pub async fn run(_args: IngestBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("kit bench ingest is not implemented yet")
}
