//! `kit roles apply`: the functions' login roles (kit.toml's `[functions.*] db_role`),
//! each a member of its function's group only, with its password, the search role's
//! defaults, and `embeddings`' row-level security per `[database] row_level_security`.
//!
//! Passwords never come from the command line (it shows in `ps` and shell history):
//! `--local` reads the stack's `.kit/secrets/<role>.password`; on AWS each role's
//! password comes from its Secrets Manager secret (`--secret ROLE=ARN`, the same RDS-style
//! secret the function reads, whose `username` must be the role).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kit::deploy::cli::{self as deploy, ConfigArg};
use kit::deploy::model::FunctionName;
use sqlx::postgres::PgConnectOptions;
use storage::roles::{self, LoginRole, Password, RolesPlan};
use storage::Function;

#[derive(Debug, Args)]
pub struct RolesArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Create or update the login roles and row-level security; idempotent.
    Apply(ApplyArgs),
}

#[derive(Debug, Args)]
struct ApplyArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Straight to PostgreSQL as a role with CREATEROLE that owns the tables (the one
    /// `kit migrate` uses).
    #[arg(long, env = "DATABASE_ADMIN_URL", hide_env_values = true)]
    admin_url: Option<String>,
    /// The local stack: passwords from SECRETS_DIR/<role>.password.
    #[arg(long, conflicts_with = "secret")]
    local: bool,
    /// Where --local finds the password files.
    #[arg(long, default_value = ".kit/secrets", value_name = "SECRETS_DIR")]
    secrets_dir: PathBuf,
    /// On AWS, one per role: ROLE=ARN of the Secrets Manager secret holding its password
    /// (RDS-style JSON; its `username` must be ROLE).
    #[arg(long, value_name = "ROLE=ARN")]
    secret: Vec<String>,
}

pub async fn run(args: RolesArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Apply(args) => apply(args).await,
    }
}

async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let (config, path, _root) = deploy::load(&args.config)?;
    let admin_url = args.admin_url.context(
        "DATABASE_ADMIN_URL is not set: run `make up` and `. .kit/env`, or pass --admin-url",
    )?;
    let admin: PgConnectOptions = admin_url
        .parse()
        .context("DATABASE_ADMIN_URL does not parse")?;
    if !args.local && args.secret.is_empty() {
        bail!(
            "no passwords: pass --local (the stack's .kit/secrets) or one --secret ROLE=ARN per role \
             ({}); passwords are never taken on the command line",
            FunctionName::ALL
                .iter()
                .map(|f| config.function(*f).db_role.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let secrets = parse_secrets(&args.secret)?;
    let client = if secrets.is_empty() {
        None
    } else {
        let aws = credentials::aws_config_loader().load().await;
        Some(credentials::aws_sdk_secretsmanager::Client::new(&aws))
    };

    let mut plan = RolesPlan {
        roles: Vec::new(),
        row_level_security: config.database.row_level_security,
    };
    for name in FunctionName::ALL {
        let function = match name {
            FunctionName::Ingest => Function::Ingest,
            FunctionName::Search => Function::Search,
            FunctionName::Purge => Function::Purge,
        };
        let lambda = config.function(name);
        let role = lambda.db_role.clone();
        let password = if args.local {
            let file = args.secrets_dir.join(format!("{role}.password"));
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "reading {}: the stack writes one password file per role (scripts/stack.sh up)",
                    file.display()
                )
            })?;
            text.trim().to_owned()
        } else {
            let arn = secrets
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, arn)| arn)
                .with_context(|| {
                    format!(
                        "no --secret {role}=ARN: functions.{name}.db_role in {} is {role}",
                        path.display()
                    )
                })?;
            let client = client.as_ref().expect("a client when secrets are given");
            let secret = credentials::fetch_database_secret(client, arn).await?;
            if secret.username != role {
                bail!(
                    "the secret {arn} is for {:?}, not {role}: pass the secret of functions.{name}.db_role",
                    secret.username
                );
            }
            secret.password
        };
        if password.is_empty() {
            bail!("the password of {role} is empty");
        }
        let settings = match function {
            Function::Search => LoginRole::search_settings(lambda.statement_timeout_ms),
            Function::Ingest | Function::Purge => Vec::new(),
        };
        plan.roles.push(LoginRole {
            function,
            name: role,
            password: Password::new(password),
            settings,
        });
    }
    if let Some((role, _)) = secrets
        .iter()
        .find(|(r, _)| !plan.roles.iter().any(|l| l.name == *r))
    {
        bail!(
            "--secret names {role}, which is no function's db_role in {}",
            path.display()
        );
    }

    let changes = roles::apply(&admin, &plan).await?;
    let names: Vec<&str> = plan.roles.iter().map(|r| r.name.as_str()).collect();
    if changes.is_empty() {
        eprintln!(
            "roles: {} and row-level security ({}) already as kit.toml says: nothing changed",
            names.join(", "),
            if plan.row_level_security { "on" } else { "off" }
        );
    } else {
        for change in &changes {
            eprintln!("roles: {change}");
        }
        eprintln!("roles: {} change(s) applied", changes.len());
    }
    Ok(())
}

fn parse_secrets(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    raw.iter()
        .map(|pair| {
            pair.split_once('=')
                .filter(|(role, arn)| !role.is_empty() && !arn.is_empty())
                .map(|(role, arn)| (role.to_owned(), arn.to_owned()))
                .with_context(|| format!("--secret {pair:?}: expected ROLE=ARN"))
        })
        .collect()
}
