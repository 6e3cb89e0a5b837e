//! Set-based batch writes: one batch is a constant number of statements, whatever its size.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::types::Json;
use uuid::Uuid;

use crate::records::{Namespace, Upsert, WriteOp};
use crate::{Database, StorageError};

/// What a batch did. Every op is accounted for in exactly one counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Rows inserted or changed by an upsert.
    pub upserted: usize,
    /// Rows removed by a delete.
    pub deleted: usize,
    /// Ops not applied because the stored row has a higher version (upserts and
    /// deletes alike): acknowledged, counted, not applied.
    pub stale: usize,
    /// Ops that changed nothing although they were not stale: an upsert identical to
    /// the stored row at the same version (a redelivery), or a delete with no row to
    /// delete.
    pub unchanged: usize,
    /// Ops replaced by a later op for the same key in the same batch (higher version,
    /// then later position wins).
    pub superseded: usize,
}

impl WriteOutcome {
    /// How many ops the outcome accounts for: the length of the batch it describes.
    pub fn total(&self) -> usize {
        self.upserted + self.deleted + self.stale + self.unchanged + self.superseded
    }
}

impl Database {
    /// Applies `ops` in one transaction with at most two set-based statements (one
    /// upsert over `UNNEST` arrays, one delete), honouring versions: an op whose version
    /// is below the stored row's is stale and not applied; equal or higher wins.
    ///
    /// Several ops for the same key resolve here first (highest version, then last in
    /// order), so PostgreSQL never sees a key twice in one `INSERT … ON CONFLICT`. The
    /// winners are then sorted by key, so concurrent batches lock shared rows in the
    /// same order and cannot deadlock on them. Either the whole batch commits or nothing
    /// does.
    ///
    /// Each statement counts its own stale ops against the snapshot it writes with, so
    /// the counters always add up to `ops.len()`. The one approximation: when a
    /// concurrent writer commits a newer row for a key after that snapshot was taken,
    /// the op that loses to it counts as `unchanged` rather than `stale`.
    pub async fn write_batch(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StorageError> {
        self.relogin(|| self.write_batch_once(ops)).await
    }

    async fn write_batch_once(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StorageError> {
        let mut winners = last_writer_per_key(ops);
        winners.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
        let mut outcome = WriteOutcome {
            superseded: ops.len() - winners.len(),
            ..WriteOutcome::default()
        };
        let (upserts, deletes) = UpsertColumns::split(&winners);

        let mut conn = self.primary.acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN").await?;
        if !upserts.ids.is_empty() {
            let (written, stale): (i64, i64) = self
                .round_trip(
                    sqlx::query_as(sql::UPSERT)
                        .bind(&upserts.namespaces)
                        .bind(&upserts.ids)
                        .bind(&upserts.embeddings)
                        .bind(&upserts.contents)
                        .bind(&upserts.metadata)
                        .bind(&upserts.versions)
                        .bind(&upserts.created_at)
                        .fetch_one(&mut *tx),
                )
                .await?;
            outcome.upserted = written as usize;
            outcome.stale += stale as usize;
            outcome.unchanged += upserts.ids.len().saturating_sub((written + stale) as usize);
        }
        if !deletes.ids.is_empty() {
            let (removed, stale): (i64, i64) = self
                .round_trip(
                    sqlx::query_as(sql::DELETE)
                        .bind(&deletes.namespaces)
                        .bind(&deletes.ids)
                        .bind(&deletes.versions)
                        .fetch_one(&mut *tx),
                )
                .await?;
            outcome.deleted = removed as usize;
            outcome.stale += stale as usize;
            outcome.unchanged += deletes.ids.len().saturating_sub((removed + stale) as usize);
        }
        self.round_trip(tx.commit()).await?;
        conn.park();
        Ok(outcome)
    }
}

/// The op that wins for each key, in the order the winners first appeared.
fn last_writer_per_key(ops: &[WriteOp]) -> Vec<&WriteOp> {
    let mut slot_of: HashMap<(&Namespace, Uuid), usize> = HashMap::with_capacity(ops.len());
    let mut winners: Vec<&WriteOp> = Vec::with_capacity(ops.len());
    for op in ops {
        match slot_of.get(&op.key()) {
            Some(&slot) if winners[slot].version() <= op.version() => winners[slot] = op,
            Some(_) => {}
            None => {
                slot_of.insert(op.key(), winners.len());
                winners.push(op);
            }
        }
    }
    winners
}

/// Column arrays bound to `UNNEST`: one parameter per column, not per row.
#[derive(Default)]
struct UpsertColumns<'a> {
    namespaces: Vec<&'a str>,
    ids: Vec<Uuid>,
    embeddings: Vec<&'a Vector>,
    contents: Vec<Option<&'a str>>,
    metadata: Vec<Json<&'a serde_json::Map<String, serde_json::Value>>>,
    versions: Vec<i64>,
    created_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct DeleteColumns<'a> {
    namespaces: Vec<&'a str>,
    ids: Vec<Uuid>,
    versions: Vec<i64>,
}

impl<'a> UpsertColumns<'a> {
    fn split(winners: &[&'a WriteOp]) -> (Self, DeleteColumns<'a>) {
        let mut upserts = Self::default();
        let mut deletes = DeleteColumns::default();
        for op in winners {
            match op {
                WriteOp::Upsert(u) => upserts.push(u),
                WriteOp::Delete {
                    namespace,
                    id,
                    version,
                } => {
                    deletes.namespaces.push(namespace.as_str());
                    deletes.ids.push(*id);
                    deletes.versions.push(*version);
                }
            }
        }
        (upserts, deletes)
    }

    fn push(&mut self, u: &'a Upsert) {
        self.namespaces.push(u.namespace.as_str());
        self.ids.push(u.id);
        self.embeddings.push(&u.embedding);
        self.contents.push(u.content.as_deref());
        self.metadata.push(Json(&u.metadata));
        self.versions.push(u.version);
        self.created_at.push(u.created_at);
    }
}

mod sql {
    /// Equal or higher versions win; an equal version whose payload is identical (a
    /// redelivery) is left alone, so repeats do not churn the row or the HNSW index.
    ///
    /// Returns `(written, stale)`: rows inserted or changed, and ops refused because the
    /// stored row has a higher version. Every part of the statement reads the same
    /// snapshot, taken before the insert: `stale` counts the keys whose snapshot row is
    /// newer than the op, minus those written anyway (possible only when a concurrent
    /// transaction deleted the row after the snapshot), so no op is counted twice. Both
    /// counts are index lookups driven by the batch (no anti-join whose cost could grow
    /// with the square of the batch); the key and version arrays are unnested again,
    /// never the vectors.
    pub const UPSERT: &str = "
        WITH written AS (
            INSERT INTO embeddings AS e (namespace, id, embedding, content, metadata, version, created_at, updated_at)
            SELECT r.namespace, r.id, r.embedding, r.content, r.metadata, r.version, r.created_at, now()
            FROM UNNEST($1::text[], $2::uuid[], $3::vector[], $4::text[], $5::jsonb[], $6::int8[], $7::timestamptz[])
                 AS r(namespace, id, embedding, content, metadata, version, created_at)
            ON CONFLICT (namespace, id) DO UPDATE SET
                embedding = EXCLUDED.embedding,
                content = EXCLUDED.content,
                metadata = EXCLUDED.metadata,
                version = EXCLUDED.version,
                created_at = EXCLUDED.created_at,
                updated_at = EXCLUDED.updated_at
            WHERE e.version < EXCLUDED.version
               OR (e.version = EXCLUDED.version
                   AND (e.embedding, e.content, e.metadata)
                       IS DISTINCT FROM (EXCLUDED.embedding, EXCLUDED.content, EXCLUDED.metadata))
            RETURNING e.namespace, e.id, e.version
        )
        SELECT
            (SELECT count(*) FROM written) AS written,
            (SELECT count(*)
               FROM UNNEST($1::text[], $2::uuid[], $6::int8[]) AS k(namespace, id, version)
               JOIN embeddings AS s ON s.namespace = k.namespace AND s.id = k.id
              WHERE s.version > k.version)
          - (SELECT count(*)
               FROM written AS w
               JOIN embeddings AS s ON s.namespace = w.namespace AND s.id = w.id
              WHERE s.version > w.version) AS stale";

    /// A delete older than the stored row does not remove it: it is stale. Returns
    /// `(removed, stale)`; a delete of a row that does not exist is neither. The two
    /// never overlap: the DELETE only removes rows that matched `version <= d.version`
    /// in the same snapshot the stale count reads.
    pub const DELETE: &str = "
        WITH removed AS (
            DELETE FROM embeddings AS e
            USING UNNEST($1::text[], $2::uuid[], $3::int8[]) AS d(namespace, id, version)
            WHERE e.namespace = d.namespace AND e.id = d.id AND e.version <= d.version
            RETURNING 1
        )
        SELECT
            (SELECT count(*) FROM removed) AS removed,
            (SELECT count(*)
               FROM UNNEST($1::text[], $2::uuid[], $3::int8[]) AS k(namespace, id, version)
               JOIN embeddings AS s ON s.namespace = k.namespace AND s.id = k.id
              WHERE s.version > k.version) AS stale";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(id: Uuid, version: i64, content: &str) -> WriteOp {
        WriteOp::Upsert(Upsert {
            namespace: Namespace::default(),
            id,
            embedding: Vector::from(vec![1.0, 0.0]),
            content: Some(content.into()),
            metadata: Default::default(),
            version,
            created_at: Utc::now(),
        })
    }

    fn content(op: &WriteOp) -> &str {
        match op {
            WriteOp::Upsert(u) => u.content.as_deref().unwrap(),
            WriteOp::Delete { .. } => "<delete>",
        }
    }

    #[test]
    fn highest_version_then_last_position_wins() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let ops = vec![
            upsert(a, 2, "a2"),
            upsert(b, 1, "b1"),
            upsert(a, 1, "a1-older"),
            upsert(a, 2, "a2-later"),
            WriteOp::Delete {
                namespace: Namespace::default(),
                id: b,
                version: 1,
            },
        ];
        let winners = last_writer_per_key(&ops);
        let shown: Vec<&str> = winners.iter().map(|op| content(op)).collect();
        assert_eq!(shown, ["a2-later", "<delete>"]);
    }

    #[test]
    fn same_id_in_two_namespaces_is_two_keys() {
        let id = Uuid::new_v4();
        let mut other = upsert(id, 0, "other");
        if let WriteOp::Upsert(u) = &mut other {
            u.namespace = Namespace::parse("other").unwrap();
        }
        let ops = vec![upsert(id, 0, "default"), other];
        assert_eq!(last_writer_per_key(&ops).len(), 2);
    }
}
