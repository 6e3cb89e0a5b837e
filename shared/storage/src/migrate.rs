//! The schema migrations, embedded in every binary that links this crate.

use sqlx::migrate::Migrator;
use sqlx::PgPool;

use crate::StorageError;

/// `migrations/` at the workspace root: sqlx reversible migrations, the same folder the
/// stock `sqlx migrate run` / `sqlx migrate revert` work on.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// One migration and whether it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// Applies every pending migration.
pub async fn up(pool: &PgPool) -> Result<(), StorageError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Reverts the `steps` most recent applied migrations.
pub async fn down(pool: &PgPool, steps: usize) -> Result<usize, StorageError> {
    let applied = applied_versions(pool).await?;
    let mut reverted = 0;
    for version in applied.iter().rev().take(steps) {
        // `undo(target)` reverts every migration above `target`.
        let target = applied
            .iter()
            .copied()
            .filter(|v| v < version)
            .max()
            .unwrap_or(0);
        MIGRATOR.undo(pool, target).await?;
        reverted += 1;
    }
    Ok(reverted)
}

/// Every known migration with its state.
pub async fn status(pool: &PgPool) -> Result<Vec<MigrationState>, StorageError> {
    let applied = applied_versions(pool).await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationState {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains(&m.version),
        })
        .collect())
}

async fn applied_versions(pool: &PgPool) -> Result<Vec<i64>, StorageError> {
    let exists: bool = sqlx::query_scalar(sql::LEDGER_EXISTS)
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar(sql::APPLIED).fetch_all(pool).await?)
}

mod sql {
    pub const LEDGER_EXISTS: &str = "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";
    pub const APPLIED: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
}
