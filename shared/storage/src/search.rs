//! Nearest-neighbour search (cosine distance through the HNSW index) and item reads.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use serde::Serialize;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Connection, Postgres, Row};
use uuid::Uuid;

use crate::deadline::round_trip;
use crate::filter::{self, Bind, Filter, FilterTooLarge};
use crate::records::Namespace;
use crate::retry::reconnecting;
use crate::{Database, StorageError};

/// Which optional fields a hit carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Include {
    pub metadata: bool,
    pub content: bool,
    pub vector: bool,
}

/// A validated k-NN query.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    pub namespace: Namespace,
    pub vector: Vector,
    pub k: u32,
    pub filter: Option<Filter>,
    /// Cosine distance ceiling, in the same metric the results are ordered by.
    pub max_distance: Option<f64>,
    pub include: Include,
    /// `hnsw.ef_search` for this query (pgvector's default is 40).
    pub ef_search: u32,
    /// Keep scanning the index until `k` rows pass the filter (pgvector ≥ 0.8).
    pub iterative_scan: bool,
    /// Upper bound on tuples an iterative scan visits (`hnsw.max_scan_tuples`).
    pub max_scan_tuples: u32,
    /// Statement timeout for this query; `None` uses the database handle's default.
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Hit {
    pub id: Uuid,
    pub distance: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Item {
    pub id: Uuid,
    pub namespace: String,
    pub metadata: serde_json::Value,
    pub content: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

impl Database {
    /// The `k` rows of `query.namespace` nearest to `query.vector` by cosine distance,
    /// ascending, that pass the filter and the distance ceiling.
    ///
    /// Every per-request setting is transaction-local, so nothing outlives the request on
    /// a pooled server connection. The index settings (`hnsw.ef_search`,
    /// `hnsw.iterative_scan`, `hnsw.max_scan_tuples`) ride in the statement itself (see
    /// [`search_statement`]). `statement_timeout` and `plan_cache_mode` must be in place
    /// before a statement starts: when the login role already sets them (a timeout no
    /// longer than this query's, custom plans), the statement runs alone, in one round
    /// trip; otherwise it runs in a read transaction that sets them first (two more).
    ///
    /// A search that lost its connection (PgBouncer restarted, a load balancer dropped
    /// it) runs once more on a new one: reads are idempotent.
    pub async fn search_nearest(&self, query: &SearchQuery) -> Result<Vec<Hit>, StorageError> {
        self.relogin(|| reconnecting(|| self.search_once(query)))
            .await
    }

    async fn search_once(&self, query: &SearchQuery) -> Result<Vec<Hit>, StorageError> {
        let statement = search_statement(query.filter.as_ref())?;
        let source = self.read_source();
        let timeout = query.timeout.unwrap_or(self.statement_timeout);
        let alone = source
            .login_defaults(self.statement_timeout)
            .await?
            .bound_within(timeout);
        let mut conn = source.acquire().await?;
        let rows = if alone {
            round_trip(timeout, statement.bind(query).fetch_all(&mut *conn)).await?
        } else {
            let mut tx = round_trip(timeout, conn.begin_with(sql::begin_search(timeout))).await?;
            let rows = round_trip(timeout, statement.bind(query).fetch_all(&mut *tx)).await?;
            round_trip(timeout, tx.commit()).await?;
            rows
        };
        conn.park();
        rows.iter().map(hit_from_row).collect()
    }

    /// `EXPLAIN (FORMAT JSON)` of exactly the statement [`Database::search_nearest`] runs,
    /// with the same binds, planned for those values (`force_custom_plan`).
    pub async fn explain_search(
        &self,
        query: &SearchQuery,
    ) -> Result<serde_json::Value, StorageError> {
        let statement = search_statement(query.filter.as_ref())?;
        let explain = format!("EXPLAIN (FORMAT JSON) {}", statement.sql);
        let timeout = query.timeout.unwrap_or(self.statement_timeout);
        let mut conn = self.read_source().acquire().await?;
        let mut tx = round_trip(timeout, conn.begin_with(sql::begin_search(timeout))).await?;
        let row = round_trip(
            timeout,
            bind_search(sqlx::query(&explain), query, statement.binds.clone()).fetch_one(&mut *tx),
        )
        .await?;
        round_trip(timeout, tx.commit()).await?;
        conn.park();
        Ok(row.try_get::<Json<serde_json::Value>, _>(0)?.0)
    }

    /// One item by key, or `None`, in a read transaction (on the read connection) opened
    /// with its statement timeout in one round trip; run once more on a new connection
    /// if it lost its own.
    pub async fn get_item(
        &self,
        namespace: &Namespace,
        id: Uuid,
        include_vector: bool,
    ) -> Result<Option<Item>, StorageError> {
        self.relogin(|| reconnecting(|| self.get_item_once(namespace, id, include_vector)))
            .await
    }

    async fn get_item_once(
        &self,
        namespace: &Namespace,
        id: Uuid,
        include_vector: bool,
    ) -> Result<Option<Item>, StorageError> {
        let mut conn = self.read_source().acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN READ ONLY").await?;
        let row = self
            .round_trip(
                sqlx::query(sql::GET_ITEM)
                    .bind(namespace.as_str())
                    .bind(id)
                    .bind(include_vector)
                    .fetch_optional(&mut *tx),
            )
            .await?;
        self.round_trip(tx.commit()).await?;
        conn.park();
        row.map(|row| {
            Ok(Item {
                id: row.try_get("id")?,
                namespace: row.try_get("namespace")?,
                metadata: row.try_get::<Json<serde_json::Value>, _>("metadata")?.0,
                content: row.try_get("content")?,
                version: row.try_get("version")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
                vector: row
                    .try_get::<Option<Vector>, _>("embedding")?
                    .map(|v| v.to_vec()),
            })
        })
        .transpose()
    }
}

/// The search statement for a filter shape. Its text depends only on the filter's
/// structure, never on keys or values, so PostgreSQL sees few distinct statements.
pub struct SearchStatement {
    pub sql: String,
    binds: Vec<Bind>,
}

/// Parameters `$1..$10` are fixed (vector, namespace, k, max_distance, include
/// metadata, content, vector, then ef_search, iterative scan mode, max scan tuples);
/// filter binds follow. A filter too large to compile ([`FilterTooLarge`]) is refused
/// here, before anything reaches the database.
///
/// The index settings are applied by the statement itself: the operand of the index's
/// `ORDER BY` is a scalar subquery that calls `set_config(…, true)` and returns the
/// query vector. PostgreSQL runs it as an InitPlan when the index scan is (re)started,
/// before pgvector's first `hnswgettuple` reads the settings, and `true` makes them
/// transaction-local: they end with the statement's own (implicit or explicit)
/// transaction, so nothing reaches the next client of a pooled server connection.
///
/// The tenant for row-level security (`kit.tenant`, which the search role's policy
/// compares `namespace` with) is set the same way, by a second InitPlan, but in a
/// `WHERE` clause of its own: it has no column in it, so PostgreSQL evaluates it once,
/// as a one-time filter of a Result node above the table scan, before the scan reads
/// its first row and before any row is checked against the policy, whatever the plan
/// (HNSW index scan, exact scan through the primary key, bitmap or sequential scan).
/// A statement that does not set it sees no rows.
pub fn search_statement(filter: Option<&Filter>) -> Result<SearchStatement, FilterTooLarge> {
    const FIXED_PARAMS: usize = 10;
    let compiled = filter
        .map(|f| filter::compile(f, FIXED_PARAMS + 1))
        .transpose()?
        .unwrap_or_default();
    let condition = if compiled.sql.is_empty() {
        String::new()
    } else {
        format!(" AND {}", compiled.sql)
    };
    // Relaxed-order iterative scans may return rows slightly out of order: the inner
    // query takes the k nearest through the index, the outer one sorts them exactly
    // and applies the distance ceiling in the same metric.
    let sql = format!(
        "WITH nearest AS MATERIALIZED (
            SELECT id, embedding <=> $1 AS distance,
                   CASE WHEN $5 THEN metadata END AS metadata,
                   CASE WHEN $6 THEN content END AS content,
                   CASE WHEN $7 THEN embedding END AS embedding
            FROM embeddings
            WHERE namespace = $2
              AND (SELECT set_config('kit.tenant', $2, true)) = $2{condition}
            ORDER BY embedding <=> (
                SELECT $1 FROM (SELECT
                    set_config('hnsw.ef_search', $8::integer::text, true),
                    set_config('hnsw.iterative_scan', $9::text, true),
                    set_config('hnsw.max_scan_tuples', $10::integer::text, true)
                ) AS scan_settings
            )
            LIMIT $3
        )
        SELECT id, distance, metadata, content, embedding FROM nearest
        WHERE $4::float8 IS NULL OR distance <= $4::float8
        ORDER BY distance"
    );
    Ok(SearchStatement {
        sql,
        binds: compiled.binds,
    })
}

impl SearchStatement {
    /// The statement with every parameter bound, for `EXPLAIN` and benchmarks that must
    /// time exactly what production runs.
    pub fn bind<'q>(&'q self, query: &'q SearchQuery) -> Query<'q, Postgres, PgArguments> {
        bind_search(sqlx::query(&self.sql), query, self.binds.clone())
    }
}

fn bind_search<'q>(
    statement: Query<'q, Postgres, PgArguments>,
    query: &'q SearchQuery,
    binds: Vec<Bind>,
) -> Query<'q, Postgres, PgArguments> {
    let mut statement = statement
        .bind(&query.vector)
        .bind(query.namespace.as_str())
        .bind(i64::from(query.k))
        .bind(query.max_distance)
        .bind(query.include.metadata)
        .bind(query.include.content)
        .bind(query.include.vector)
        .bind(i32::try_from(query.ef_search).unwrap_or(i32::MAX))
        .bind(if query.iterative_scan {
            "relaxed_order"
        } else {
            "off"
        })
        .bind(i32::try_from(query.max_scan_tuples).unwrap_or(i32::MAX));
    for bind in binds {
        statement = match bind {
            Bind::Text(text) => statement.bind(text),
            Bind::Jsonb(value) => statement.bind(Json(value)),
            Bind::JsonbArray(values) => {
                statement.bind(values.into_iter().map(Json).collect::<Vec<_>>())
            }
        };
    }
    statement
}

/// A row of the search statement (`SELECT id, distance, metadata, content, embedding`),
/// read by position: by name, each column costs a hash lookup per row.
fn hit_from_row(row: &sqlx::postgres::PgRow) -> Result<Hit, StorageError> {
    Ok(Hit {
        id: row.try_get(0)?,
        distance: row.try_get(1)?,
        metadata: row
            .try_get::<Option<Json<serde_json::Value>>, _>(2)?
            .map(|j| j.0),
        content: row.try_get(3)?,
        vector: row.try_get::<Option<Vector>, _>(4)?.map(|v| v.to_vec()),
    })
}

mod sql {
    use std::time::Duration;

    /// A read transaction with the settings that must precede a search statement,
    /// transaction-local, in one round trip.
    ///
    /// `plan_cache_mode`: the best plan (HNSW index or an exact scan) depends on the
    /// values (k, the filter's selectivity); a cached generic plan would ignore them.
    pub fn begin_search(timeout: Duration) -> String {
        format!(
            "{}, set_config('plan_cache_mode', 'force_custom_plan', true)",
            crate::sql::begin_with_timeout("BEGIN READ ONLY", timeout)
        )
    }

    pub const GET_ITEM: &str =
        "SELECT id, namespace, metadata, content, version, created_at, updated_at,
                CASE WHEN $3 THEN embedding END AS embedding
         FROM embeddings
         WHERE namespace = $1 AND id = $2
           AND (SELECT set_config('kit.tenant', $1, true)) = $1";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_transaction_local_and_only_numbers() {
        let begin = sql::begin_search(Duration::from_millis(4321));
        assert!(begin.starts_with("BEGIN READ ONLY;"), "{begin}");
        assert_eq!(begin.matches("set_config(").count(), 2, "{begin}");
        assert_eq!(begin.matches(", true)").count(), 2, "{begin}");
        assert!(begin.contains("'statement_timeout', '4321'"), "{begin}");
        assert!(sql::begin_search(Duration::ZERO).contains("'statement_timeout', '1'"));
        let statement = search_statement(None).unwrap().sql;
        for setting in [
            "hnsw.ef_search",
            "hnsw.iterative_scan",
            "hnsw.max_scan_tuples",
        ] {
            assert!(
                statement.contains(&format!("set_config('{setting}', $")),
                "{setting} is bound, transaction-local: {statement}"
            );
        }
        assert_eq!(statement.matches(", true)").count(), 4, "{statement}");
        assert!(
            statement.contains("(SELECT set_config('kit.tenant', $2, true)) = $2"),
            "the tenant is the bound namespace, transaction-local: {statement}"
        );
    }

    #[test]
    fn the_statement_text_depends_on_the_filter_shape_only() {
        let filter = |value: &str| Filter::Field {
            key: value.into(),
            op: crate::Comparison::Eq(serde_json::json!(value)),
        };
        let a = search_statement(Some(&filter("a"))).unwrap();
        let b = search_statement(Some(&filter("b'; --"))).unwrap();
        assert_eq!(a.sql, b.sql);
        assert!(!b.sql.contains("--"));
        assert_ne!(a.sql, search_statement(None).unwrap().sql);
    }
}
