//! `kit retention set|unset|list` (placeholder).

use clap::Args;

#[derive(Debug, Args)]
pub struct RetentionArgs {}

pub async fn run(_args: RetentionArgs) -> anyhow::Result<()> {
    anyhow::bail!("kit retention is not implemented yet")
}
