//! `kit demo` (placeholder until the demo driver lands).

use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {}

pub async fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("kit demo is not implemented yet")
}
