//! The domain types the storage layer accepts: already validated, so the SQL behind
//! them never sees a bad namespace, a non-object metadata or a non-finite vector.

use std::fmt;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tenant: `[a-z0-9_-]{1,64}`. Rows are keyed by `(namespace, id)`, so one tenant can
/// never overwrite another's row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Namespace(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("namespace {0:?} is not valid: use 1 to 64 characters from a-z, 0-9, '_' and '-'")]
pub struct NamespaceError(pub String);

impl Namespace {
    pub const DEFAULT: &'static str = "default";
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, NamespaceError> {
        let valid = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            // Echo at most a bounded prefix of hostile input.
            Err(NamespaceError(raw.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Namespace::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// One row to insert or update. Built by the ingest edge after validation: the
/// embedding has the column's dimensions and only finite values, metadata is an object.
#[derive(Clone, Debug)]
pub struct Upsert {
    pub namespace: Namespace,
    pub id: Uuid,
    pub embedding: Vector,
    pub content: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Missing versions are stored as 0: an unversioned writer is last-write-wins.
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

/// One change to apply; a batch of them is written together by
/// [`Database::write_batch`](crate::Database::write_batch).
#[derive(Clone, Debug)]
pub enum WriteOp {
    Upsert(Upsert),
    Delete {
        namespace: Namespace,
        id: Uuid,
        version: i64,
    },
}

impl WriteOp {
    pub fn key(&self) -> (&Namespace, Uuid) {
        match self {
            WriteOp::Upsert(u) => (&u.namespace, u.id),
            WriteOp::Delete { namespace, id, .. } => (namespace, *id),
        }
    }

    pub fn version(&self) -> i64 {
        match self {
            WriteOp::Upsert(u) => u.version,
            WriteOp::Delete { version, .. } => *version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_the_contract() {
        for ok in ["acme", "default", "a", "tenant_42-eu", &"x".repeat(64)] {
            assert!(Namespace::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Acme", "a b", "a;drop", "é", &"x".repeat(65), "a/b"] {
            assert!(Namespace::parse(bad).is_err(), "{bad}");
        }
    }
}
