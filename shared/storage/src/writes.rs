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
    /// Ops not applied because the stored row is newer, the row was already identical
    /// (a redelivery), or (for deletes) there was no row to delete.
    pub unchanged: usize,
    /// Ops replaced by a later op for the same key in the same batch (higher version,
    /// then later position wins).
    pub superseded: usize,
}

impl Database {
    /// Applies `ops` in one transaction with two set-based statements (one upsert over
    /// `UNNEST` arrays, one delete), honouring versions: an op whose version is below
    /// the stored row's is not applied; equal or higher wins.
    ///
    /// Several ops for the same key resolve here first (highest version, then last in
    /// order), so PostgreSQL never sees a key twice in one `INSERT … ON CONFLICT`.
    /// Either the whole batch commits or nothing does.
    pub async fn write_batch(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StorageError> {
        let winners = last_writer_per_key(ops);
        let mut outcome = WriteOutcome {
            superseded: ops.len() - winners.len(),
            ..WriteOutcome::default()
        };
        let (upserts, deletes) = UpsertColumns::split(&winners);

        let mut tx = self.begin(&self.primary).await?;
        if !upserts.ids.is_empty() {
            let written = sqlx::query(sql::UPSERT)
                .bind(&upserts.namespaces)
                .bind(&upserts.ids)
                .bind(&upserts.embeddings)
                .bind(&upserts.contents)
                .bind(&upserts.metadata)
                .bind(&upserts.versions)
                .bind(&upserts.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
            outcome.upserted = written;
            outcome.unchanged += upserts.ids.len() - written;
        }
        if !deletes.ids.is_empty() {
            let removed = sqlx::query(sql::DELETE)
                .bind(&deletes.namespaces)
                .bind(&deletes.ids)
                .bind(&deletes.versions)
                .execute(&mut *tx)
                .await?
                .rows_affected() as usize;
            outcome.deleted = removed;
            outcome.unchanged += deletes.ids.len() - removed;
        }
        tx.commit().await?;
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
    pub const UPSERT: &str = "
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
                   IS DISTINCT FROM (EXCLUDED.embedding, EXCLUDED.content, EXCLUDED.metadata))";

    /// A delete older than the stored row does not remove it.
    pub const DELETE: &str = "
        DELETE FROM embeddings AS e
        USING UNNEST($1::text[], $2::uuid[], $3::int8[]) AS d(namespace, id, version)
        WHERE e.namespace = d.namespace AND e.id = d.id AND e.version <= d.version";
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
