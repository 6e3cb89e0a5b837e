//! `kit retention set|unset|list`: the per-namespace retention overrides the purge
//! function applies (namespaces without one use `RETENTION_DAYS`, default 30). `list`
//! prints the overrides on stdout (`--json`: one array); messages go to stderr.

use std::io::Write as _;

use anyhow::Context;
use clap::{Args, Subcommand};
use storage::{Config, Database, Namespace};

#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(subcommand)]
    action: Action,
    /// Where the policies live: straight to PostgreSQL as the admin role (the functions'
    /// roles may only read them; writes need kit_retention_admin or the table owner).
    #[arg(
        long,
        env = "DATABASE_ADMIN_URL",
        hide_env_values = true,
        global = true
    )]
    admin_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Keep NAMESPACE's embeddings for DAYS days.
    Set {
        namespace: String,
        #[arg(value_parser = clap::value_parser!(u32).range(1..=36_500))]
        days: u32,
    },
    /// Remove NAMESPACE's override (it falls back to RETENTION_DAYS).
    Unset { namespace: String },
    /// List every override.
    List {
        /// One JSON array on stdout: `[{"namespace", "retention_days", "updated_at"}]`.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: RetentionArgs) -> anyhow::Result<()> {
    let url = args.admin_url.context(
        "DATABASE_ADMIN_URL is not set: run `make up` and `. .kit/env`, or pass --admin-url",
    )?;
    let config = Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.clone()))?;
    let db = Database::connect_lazy(&config)?;
    let parse = |raw: &str| Namespace::parse(raw).map_err(anyhow::Error::from);
    match args.action {
        Action::Set { namespace, days } => {
            let namespace = parse(&namespace)?;
            db.set_retention(&namespace, days).await?;
            eprintln!("retention: {namespace} keeps embeddings for {days} days");
        }
        Action::Unset { namespace } => {
            let namespace = parse(&namespace)?;
            if db.unset_retention(&namespace).await? {
                eprintln!("retention: {namespace} now uses the default (RETENTION_DAYS)");
            } else {
                eprintln!("retention: {namespace} had no override");
            }
        }
        Action::List { json } => {
            let policies = db.list_retention().await?;
            let mut out = std::io::stdout().lock();
            if json {
                let list: Vec<serde_json::Value> = policies
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "namespace": p.namespace,
                            "retention_days": p.retention_days,
                            "updated_at": p.updated_at.to_rfc3339(),
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::Value::from(list))?;
                return Ok(());
            }
            if policies.is_empty() {
                eprintln!(
                    "retention: no overrides; every namespace uses RETENTION_DAYS (default 30)"
                );
            }
            for p in policies {
                writeln!(
                    out,
                    "{:<64} {:>6} days  (set {})",
                    p.namespace,
                    p.retention_days,
                    p.updated_at.format("%Y-%m-%d %H:%M UTC")
                )?;
            }
        }
    }
    Ok(())
}
