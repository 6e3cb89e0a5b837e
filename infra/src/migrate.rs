//! `kit migrate up|down [N]|status`: the embedded migrations, applied over a direct
//! (admin) connection, never through PgBouncer. `status` prints the list on stdout
//! (`--json`: one array); everything else reports on stderr.

use std::io::Write as _;

use anyhow::Context;
use clap::{Args, Subcommand};
use sqlx::postgres::PgPoolOptions;
use storage::migrate;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    action: Action,
    /// Direct connection to PostgreSQL with a role that may create tables and roles.
    #[arg(
        long,
        env = "DATABASE_ADMIN_URL",
        hide_env_values = true,
        global = true
    )]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Apply every pending migration.
    Up,
    /// Revert the N most recent migrations (default 1; `all` for every one).
    Down {
        #[arg(default_value = "1")]
        steps: Steps,
    },
    /// List migrations and whether each is applied.
    Status {
        /// One JSON array on stdout: `[{"version", "description", "applied"}]`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug)]
struct Steps(usize);

impl std::str::FromStr for Steps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Steps(usize::MAX)),
            n => n
                .parse()
                .map(Steps)
                .map_err(|_| format!("expected a number of migrations or `all`, got {n:?}")),
        }
    }
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let url = args.database_url.context(
        "DATABASE_ADMIN_URL is not set: run `make up` and `source .kit/env`, or pass --database-url",
    )?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .context("connecting to PostgreSQL with DATABASE_ADMIN_URL")?;
    match args.action {
        Action::Up => {
            let before = pending(&pool).await?;
            migrate::up(&pool).await.context("applying migrations")?;
            eprintln!("migrations: {before} applied, schema up to date");
        }
        Action::Down { steps } => {
            let reverted = migrate::down(&pool, steps.0)
                .await
                .context("reverting migrations")?;
            eprintln!("migrations: {reverted} reverted");
        }
        Action::Status { json } => {
            let migrations = migrate::status(&pool).await?;
            let mut out = std::io::stdout().lock();
            if json {
                let list: Vec<serde_json::Value> = migrations
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "version": m.version,
                            "description": m.description,
                            "applied": m.applied,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::from(list))?;
            } else {
                for m in migrations {
                    let state = if m.applied { "applied" } else { "pending" };
                    writeln!(out, "{:04} {:<24} {state}", m.version, m.description)?;
                }
            }
        }
    }
    Ok(())
}

async fn pending(pool: &sqlx::PgPool) -> anyhow::Result<usize> {
    Ok(migrate::status(pool)
        .await?
        .iter()
        .filter(|m| !m.applied)
        .count())
}
