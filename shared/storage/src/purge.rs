//! Retention: batched deletes of rows past their namespace's retention window.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::records::Namespace;
use crate::{Database, StorageError};

/// Which rows a purge run looks at, fixed for the whole run.
#[derive(Clone, Debug)]
pub struct PurgeScope {
    /// The instant retention windows are measured back from; fixed at the start of a
    /// run so every batch agrees on the cutoff, whatever ingest does meanwhile.
    pub now: DateTime<Utc>,
    /// Retention for namespaces without an override (`RETENTION_DAYS`, default 30).
    pub default_days: u32,
    /// Only this namespace (manual runs).
    pub namespace: Option<Namespace>,
    /// Ignore the stored policies and use this window for every namespace (manual runs).
    pub older_than_days: Option<u32>,
}

impl PurgeScope {
    /// The cutoff for namespaces without an override.
    pub fn default_cutoff(&self) -> DateTime<Utc> {
        self.now
            - chrono::Duration::days(i64::from(self.older_than_days.unwrap_or(self.default_days)))
    }
}

/// What one batch removed (or, in a dry run, would remove), per namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeBatch {
    pub per_namespace: BTreeMap<String, u64>,
    /// Expired rows the batch picked (at most its limit); a row an ingest batch made
    /// newer meanwhile is picked but not deleted. Fewer than the limit: nothing expired
    /// is left (unless `lock_busy`).
    pub picked: u64,
    /// The batch could not take the purge's advisory lock (another batch holds it) and
    /// did nothing: it says nothing about what is left.
    pub lock_busy: bool,
}

impl PurgeBatch {
    pub fn total(&self) -> u64 {
        self.per_namespace.values().sum()
    }
}

/// A namespace's retention override.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RetentionPolicy {
    pub namespace: String,
    pub retention_days: i32,
    pub updated_at: DateTime<Utc>,
}

impl Database {
    /// Takes the purge lease until `expires_at` if nobody else holds it. Returns `false`
    /// when another run holds an unexpired lease. A lease row (not a session advisory
    /// lock, which would not survive transaction pooling) marks the run as a whole; an
    /// expired lease is taken over, so a crashed run never blocks the next night's.
    pub async fn acquire_purge_lease(
        &self,
        holder: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        self.relogin(|| self.acquire_purge_lease_once(holder, expires_at))
            .await
    }

    async fn acquire_purge_lease_once(
        &self,
        holder: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let mut conn = self.primary.acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN").await?;
        let taken = self
            .round_trip(
                sqlx::query(sql::ACQUIRE_LEASE)
                    .bind(holder)
                    .bind(expires_at)
                    .fetch_optional(&mut *tx),
            )
            .await?
            .is_some();
        self.round_trip(tx.commit()).await?;
        conn.park();
        Ok(taken)
    }

    /// Gives the lease back early (end of a run).
    pub async fn release_purge_lease(&self, holder: Uuid) -> Result<(), StorageError> {
        self.relogin(|| self.release_purge_lease_once(holder)).await
    }

    async fn release_purge_lease_once(&self, holder: Uuid) -> Result<(), StorageError> {
        let mut conn = self.primary.acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN").await?;
        self.round_trip(
            sqlx::query(sql::RELEASE_LEASE)
                .bind(holder)
                .execute(&mut *tx),
        )
        .await?;
        self.round_trip(tx.commit()).await?;
        conn.park();
        Ok(())
    }

    /// Deletes at most `limit` expired rows, oldest first, in its own short transaction,
    /// or nothing when another batch holds the advisory lock ([`PurgeBatch::lock_busy`]).
    /// A row a concurrent ingest batch is writing is waited for (that batch is one short
    /// transaction), then re-checked: a row the upsert made newer than the cutoff is
    /// left alone.
    pub async fn purge_batch(
        &self,
        scope: &PurgeScope,
        limit: u32,
    ) -> Result<PurgeBatch, StorageError> {
        self.relogin(|| self.purge_batch_once(scope, limit)).await
    }

    async fn purge_batch_once(
        &self,
        scope: &PurgeScope,
        limit: u32,
    ) -> Result<PurgeBatch, StorageError> {
        let mut conn = self.primary.acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN").await?;
        // Belt and braces beside the lease: two batches never interleave.
        let locked: bool = self
            .round_trip(sqlx::query_scalar(sql::BATCH_LOCK).fetch_one(&mut *tx))
            .await?;
        if !locked {
            self.round_trip(tx.commit()).await?;
            conn.park();
            return Ok(PurgeBatch {
                lock_busy: true,
                ..PurgeBatch::default()
            });
        }
        let rows = self
            .round_trip(
                bind_scope(sqlx::query(sql::DELETE_EXPIRED), scope)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx),
            )
            .await?;
        self.round_trip(tx.commit()).await?;
        conn.park();
        counts(rows)
    }

    /// Counts what a purge with `scope` would delete now, deleting nothing.
    pub async fn count_expired(&self, scope: &PurgeScope) -> Result<PurgeBatch, StorageError> {
        self.relogin(|| self.count_expired_once(scope)).await
    }

    async fn count_expired_once(&self, scope: &PurgeScope) -> Result<PurgeBatch, StorageError> {
        let mut conn = self.primary.acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN").await?;
        let rows = self
            .round_trip(bind_scope(sqlx::query(sql::COUNT_EXPIRED), scope).fetch_all(&mut *tx))
            .await?;
        self.round_trip(tx.commit()).await?;
        conn.park();
        counts(rows)
    }

    pub async fn set_retention(
        &self,
        namespace: &Namespace,
        days: u32,
    ) -> Result<(), StorageError> {
        let days = i32::try_from(days)
            .map_err(|_| StorageError::Schema("retention days out of range".into()))?;
        let mut conn = self.primary.acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN").await?;
        self.round_trip(
            sqlx::query(sql::SET_RETENTION)
                .bind(namespace.as_str())
                .bind(days)
                .execute(&mut *tx),
        )
        .await?;
        self.round_trip(tx.commit()).await?;
        conn.park();
        Ok(())
    }

    /// Removes a namespace's override; returns whether there was one.
    pub async fn unset_retention(&self, namespace: &Namespace) -> Result<bool, StorageError> {
        let mut conn = self.primary.acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN").await?;
        let removed = self
            .round_trip(
                sqlx::query(sql::UNSET_RETENTION)
                    .bind(namespace.as_str())
                    .execute(&mut *tx),
            )
            .await?
            .rows_affected();
        self.round_trip(tx.commit()).await?;
        conn.park();
        Ok(removed > 0)
    }

    pub async fn list_retention(&self) -> Result<Vec<RetentionPolicy>, StorageError> {
        let mut conn = self.primary.acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN").await?;
        let rows = self
            .round_trip(sqlx::query(sql::LIST_RETENTION).fetch_all(&mut *tx))
            .await?;
        self.round_trip(tx.commit()).await?;
        conn.park();
        rows.iter()
            .map(|row| {
                Ok(RetentionPolicy {
                    namespace: row.try_get("namespace")?,
                    retention_days: row.try_get("retention_days")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }
}

fn bind_scope<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    scope: &'q PurgeScope,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(scope.now)
        .bind(i32::try_from(scope.default_days).unwrap_or(i32::MAX))
        .bind(scope.namespace.as_ref().map(Namespace::as_str))
        .bind(
            scope
                .older_than_days
                .map(|d| i32::try_from(d).unwrap_or(i32::MAX)),
        )
}

fn counts(rows: Vec<sqlx::postgres::PgRow>) -> Result<PurgeBatch, StorageError> {
    let mut batch = PurgeBatch::default();
    let mut picked = None;
    for row in rows {
        let namespace: Option<String> = row.try_get("namespace")?;
        let n: i64 = row.try_get("n")?;
        match namespace {
            Some(namespace) => {
                batch.per_namespace.insert(namespace, n as u64);
            }
            // DELETE_EXPIRED's count of the rows it picked.
            None => picked = Some(n as u64),
        }
    }
    batch.picked = picked.unwrap_or_else(|| batch.total());
    Ok(batch)
}

mod sql {
    /// Parameters: $1 now, $2 default days, $3 only this namespace (nullable), $4 window
    /// overriding every policy (nullable). A row is expired when it is older than its
    /// namespace's window.
    macro_rules! expired_rows {
        () => {
            "FROM embeddings e
             LEFT JOIN retention_policies p ON p.namespace = e.namespace
             WHERE ($3::text IS NULL OR e.namespace = $3::text)
               AND e.created_at < $1::timestamptz - make_interval(days => COALESCE($4::int, p.retention_days, $2::int))"
        };
    }

    /// No `FOR UPDATE`: locking rows for update needs the UPDATE privilege, which the
    /// purge role does not have. The DELETE locks each row itself and re-checks, on the
    /// row's newest version, that it is still older than its cutoff (PostgreSQL
    /// re-evaluates the row's `WHERE` after waiting for a concurrent writer), so a row
    /// an upsert refreshed meanwhile is left alone.
    pub const DELETE_EXPIRED: &str = concat!(
        "WITH doomed AS (
            SELECT e.namespace, e.id,
                   $1::timestamptz - make_interval(days => COALESCE($4::int, p.retention_days, $2::int)) AS cutoff ",
        expired_rows!(),
        " ORDER BY e.created_at
            LIMIT $5
        ), gone AS (
            DELETE FROM embeddings x USING doomed d
            WHERE x.namespace = d.namespace AND x.id = d.id AND x.created_at < d.cutoff
            RETURNING x.namespace
        )
        SELECT namespace, count(*) AS n FROM gone GROUP BY namespace
        UNION ALL
        SELECT NULL, count(*) FROM doomed"
    );

    pub const COUNT_EXPIRED: &str = concat!(
        "SELECT e.namespace, count(*) AS n ",
        expired_rows!(),
        " GROUP BY e.namespace"
    );

    /// Transaction-scoped: released at commit, so it cannot leak through PgBouncer.
    pub const BATCH_LOCK: &str =
        "SELECT pg_try_advisory_xact_lock(hashtext('pgvector-lambda-kit:purge'))";

    pub const ACQUIRE_LEASE: &str = "
        INSERT INTO purge_lease AS l (singleton, holder, expires_at) VALUES (TRUE, $1, $2)
        ON CONFLICT (singleton) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
        WHERE l.expires_at <= now() OR l.holder = EXCLUDED.holder
        RETURNING holder";

    pub const RELEASE_LEASE: &str = "UPDATE purge_lease SET expires_at = now() WHERE holder = $1";

    pub const SET_RETENTION: &str = "
        INSERT INTO retention_policies (namespace, retention_days) VALUES ($1, $2)
        ON CONFLICT (namespace) DO UPDATE SET retention_days = EXCLUDED.retention_days, updated_at = now()";

    pub const UNSET_RETENTION: &str = "DELETE FROM retention_policies WHERE namespace = $1";

    pub const LIST_RETENTION: &str =
        "SELECT namespace, retention_days, updated_at FROM retention_policies ORDER BY namespace";
}
