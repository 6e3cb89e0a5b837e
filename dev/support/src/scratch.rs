//! Scratch databases: created from the migrated template (the current migrations,
//! applied once per machine), reached and dropped over the admin connection. A
//! [`TestDb`](crate::TestDb) is one; the benchmarks make their own.

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

/// Creates database `name`, holding the current migrations (an empty schema).
pub async fn create_database(admin: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let template = crate::ensure_template(admin).await?;
    let mut conn = admin
        .connect()
        .await
        .context("connecting to DATABASE_ADMIN_URL")?;
    crate::create_from_template(&mut conn, name, &template)
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.close().await.ok();
    Ok(())
}

/// Drops database `name` if it exists, closing any session on it.
pub async fn drop_database(admin: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut conn = admin
        .connect()
        .await
        .context("connecting to DATABASE_ADMIN_URL")?;
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
        .with_context(|| format!("dropping database {name}"))?;
    conn.close().await.ok();
    Ok(())
}
