//! `kit bench search` (placeholder until the benchmark lands).

use clap::Args;

#[derive(Debug, Args)]
pub struct SearchBenchArgs {}

pub async fn run(_args: SearchBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("kit bench search is not implemented yet")
}
