//! What the benchmarks and the demo share: unit vectors, and scratch databases created
//! from the embedded migrations and dropped afterwards.

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};

/// `v` scaled to unit length (cosine distance ignores length; pgvector's tests expect it).
pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// `url` pointing at database `name` (query parameters kept).
pub fn url_with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (prefix, _) = base
        .rsplit_once('/')
        .filter(|(prefix, _)| prefix.contains("://") && !prefix.ends_with('/'))
        .context("DATABASE_URL has no /database part")?;
    Ok(match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    })
}

/// The application URL (through PgBouncer), the admin URL and its parsed options (direct), from
/// `--database-url`/`DATABASE_URL` and `--admin-url`/`DATABASE_ADMIN_URL`.
pub fn stack_connections(
    database_url: Option<String>,
    admin_url: Option<String>,
) -> anyhow::Result<(String, String, PgConnectOptions)> {
    let app_url = database_url.context(
        "DATABASE_URL is not set: run `make up` and `. .kit/env`, or pass --database-url",
    )?;
    let admin_url = admin_url.context(
        "DATABASE_ADMIN_URL is not set: run `make up` and `. .kit/env`, or pass --admin-url",
    )?;
    let admin: PgConnectOptions = admin_url
        .parse()
        .context("DATABASE_ADMIN_URL does not parse")?;
    Ok((app_url, admin_url, admin.disable_statement_logging()))
}

/// Creates database `name` and applies every migration to it.
pub async fn create_migrated_database(admin: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = admin
        .connect()
        .await
        .context("connecting to DATABASE_ADMIN_URL")?;
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.close().await.ok();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin.clone().database(name))
        .await?;
    storage::migrate::up(&pool)
        .await
        .with_context(|| format!("migrating {name}"))?;
    pool.close().await;
    Ok(())
}

/// Drops database `name`, closing any session on it.
pub async fn drop_database(admin: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = admin.connect().await?;
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await?;
    conn.close().await.ok();
    Ok(())
}
