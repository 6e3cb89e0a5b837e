//! The ingest message contract: one SQS body, parsed once into a [`WriteOp`] or
//! rejected with a stable reason code.

use std::fmt;

use chrono::{DateTime, Utc};
use edge::JsonVector;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use storage::{jsonb, Namespace, Upsert, Vector, WriteOp};
use uuid::Uuid;

use crate::settings::Limits;

/// Why a message was rejected. The code ([`Reason::code`]) is stable: dashboards and
/// alarms key on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    MissingBody,
    InvalidJson,
    UnknownField,
    UnknownOp,
    MissingId,
    InvalidId,
    InvalidNamespace,
    MissingEmbedding,
    InvalidEmbedding,
    WrongDimensions,
    NonFiniteValue,
    InvalidContent,
    ContentTooLarge,
    InvalidMetadata,
    MetadataTooLarge,
    MetadataTooDeep,
    InvalidVersion,
    InvalidCreatedAt,
    NamespaceNotAllowed,
    CreatedAtInFuture,
    CreatedAtTooOld,
}

impl Reason {
    pub const ALL: [Reason; 21] = [
        Reason::MissingBody,
        Reason::InvalidJson,
        Reason::UnknownField,
        Reason::UnknownOp,
        Reason::MissingId,
        Reason::InvalidId,
        Reason::InvalidNamespace,
        Reason::MissingEmbedding,
        Reason::InvalidEmbedding,
        Reason::WrongDimensions,
        Reason::NonFiniteValue,
        Reason::InvalidContent,
        Reason::ContentTooLarge,
        Reason::InvalidMetadata,
        Reason::MetadataTooLarge,
        Reason::MetadataTooDeep,
        Reason::InvalidVersion,
        Reason::InvalidCreatedAt,
        Reason::NamespaceNotAllowed,
        Reason::CreatedAtInFuture,
        Reason::CreatedAtTooOld,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingBody => "missing_body",
            Reason::InvalidJson => "invalid_json",
            Reason::UnknownField => "unknown_field",
            Reason::UnknownOp => "unknown_op",
            Reason::MissingId => "missing_id",
            Reason::InvalidId => "invalid_id",
            Reason::InvalidNamespace => "invalid_namespace",
            Reason::MissingEmbedding => "missing_embedding",
            Reason::InvalidEmbedding => "invalid_embedding",
            Reason::WrongDimensions => "wrong_dimensions",
            Reason::NonFiniteValue => "non_finite_value",
            Reason::InvalidContent => "invalid_content",
            Reason::ContentTooLarge => "content_too_large",
            Reason::InvalidMetadata => "invalid_metadata",
            Reason::MetadataTooLarge => "metadata_too_large",
            Reason::MetadataTooDeep => "metadata_too_deep",
            Reason::InvalidVersion => "invalid_version",
            Reason::InvalidCreatedAt => "invalid_created_at",
            Reason::NamespaceNotAllowed => "namespace_not_allowed",
            Reason::CreatedAtInFuture => "created_at_in_future",
            Reason::CreatedAtTooOld => "created_at_too_old",
        }
    }
}

/// A rejected message: the reason code and a short human explanation (never the vector).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.code(), self.detail)
    }
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// Every field of the contract, each kept as raw JSON so that each can fail with its
/// own reason, except the embedding: nearly all of the body, it is read once, by
/// the edge's vector reader ([`edge::from_json_object`]), into a form
/// that still tells each of its reasons apart. Unknown fields are refused: a typo such
/// as `metdata` must not silently drop data.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage<'a> {
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    namespace: Option<&'a RawValue>,
    #[serde(default)]
    embedding: JsonVector,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow)]
    version: Option<&'a RawValue>,
    #[serde(borrow)]
    created_at: Option<&'a RawValue>,
}

/// Parses one SQS message body against the contract.
///
/// `dimensions` is the embedding column's (read from the database); `now` is the
/// ingestion time, used when `created_at` is absent and as the clock a `created_at` may
/// not run ahead of by more than `MAX_CLOCK_SKEW_S`.
pub fn parse(
    body: Option<&str>,
    dimensions: usize,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<WriteOp, Rejection> {
    let body =
        body.ok_or_else(|| Rejection::new(Reason::MissingBody, "the SQS message has no body"))?;
    let mut rest = Vec::new();
    let raw = edge::from_json_object(
        body.as_bytes(),
        "embedding",
        &mut rest,
        |raw: &mut RawMessage| &mut raw.embedding,
    )
    .map_err(|e| {
        if e.to_string().starts_with("unknown field") {
            Rejection::new(Reason::UnknownField, clipped(&e.to_string()))
        } else {
            Rejection::new(Reason::InvalidJson, clipped(&e.to_string()))
        }
    })?;

    let id = parse_id(raw.id)?;
    let namespace = parse_namespace(raw.namespace)?;
    let version = parse_version(raw.version)?;
    match parse_op(raw.op)? {
        Op::Delete => Ok(WriteOp::Delete {
            namespace,
            id,
            version,
        }),
        Op::Upsert => Ok(WriteOp::Upsert(Upsert {
            namespace,
            id,
            embedding: parse_embedding(raw.embedding, dimensions)?,
            content: parse_content(raw.content, limits)?,
            metadata: parse_metadata(raw.metadata, limits)?,
            version,
            created_at: parse_created_at(raw.created_at, limits, now)?.unwrap_or(now),
        })),
    }
}

enum Op {
    Upsert,
    Delete,
}

/// The field's raw JSON, unless it is absent or `null` (both mean "not given").
fn non_null(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

fn parse_op(raw: Option<&RawValue>) -> Result<Op, Rejection> {
    let Some(raw) = non_null(raw) else {
        return Ok(Op::Upsert);
    };
    match serde_json::from_str::<&str>(raw.get()) {
        Ok("upsert") => Ok(Op::Upsert),
        Ok("delete") => Ok(Op::Delete),
        _ => Err(Rejection::new(
            Reason::UnknownOp,
            format!(
                "op must be \"upsert\" or \"delete\", got {}",
                clipped(raw.get())
            ),
        )),
    }
}

fn parse_id(raw: Option<&RawValue>) -> Result<Uuid, Rejection> {
    let raw = non_null(raw).ok_or_else(|| Rejection::new(Reason::MissingId, "id is required"))?;
    let text: String = serde_json::from_str(raw.get()).map_err(|_| {
        Rejection::new(
            Reason::InvalidId,
            format!("id must be a UUID string, got {}", clipped(raw.get())),
        )
    })?;
    Uuid::parse_str(&text).map_err(|_| {
        Rejection::new(
            Reason::InvalidId,
            format!("id must be a UUID, got {}", clipped(raw.get())),
        )
    })
}

fn parse_namespace(raw: Option<&RawValue>) -> Result<Namespace, Rejection> {
    let Some(raw) = non_null(raw) else {
        return Ok(Namespace::default());
    };
    let text: String = serde_json::from_str(raw.get()).map_err(|_| {
        Rejection::new(
            Reason::InvalidNamespace,
            format!("namespace must be a string, got {}", clipped(raw.get())),
        )
    })?;
    Namespace::parse(&text).map_err(|e| Rejection::new(Reason::InvalidNamespace, e.to_string()))
}

fn parse_version(raw: Option<&RawValue>) -> Result<i64, Rejection> {
    let Some(raw) = non_null(raw) else {
        return Ok(0);
    };
    serde_json::from_str::<u64>(raw.get())
        .ok()
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| {
            Rejection::new(
                Reason::InvalidVersion,
                format!(
                    "version must be an integer from 0 to {}, got {}",
                    i64::MAX,
                    clipped(raw.get())
                ),
            )
        })
}

fn parse_embedding(field: JsonVector, dimensions: usize) -> Result<Vector, Rejection> {
    let values = match field {
        JsonVector::Missing => {
            return Err(Rejection::new(
                Reason::MissingEmbedding,
                "embedding is required for upsert",
            ))
        }
        JsonVector::NotAnArray(found) => {
            return Err(Rejection::new(
                Reason::InvalidEmbedding,
                format!("embedding must be an array of numbers, got {found}"),
            ))
        }
        JsonVector::NotANumber { position, found } => {
            return Err(Rejection::new(
                Reason::InvalidEmbedding,
                format!("embedding must be an array of numbers: embedding[{position}] is {found}"),
            ))
        }
        JsonVector::Values(values) => values,
    };
    if values.len() != dimensions {
        return Err(Rejection::new(
            Reason::WrongDimensions,
            format!("expected {dimensions} dimensions, got {}", values.len()),
        ));
    }
    if let Some(position) = values.iter().position(|v| !v.is_finite()) {
        return Err(Rejection::new(
            Reason::NonFiniteValue,
            format!("embedding[{position}] is not a finite 32-bit float"),
        ));
    }
    Ok(Vector::from(values))
}

fn parse_content(raw: Option<&RawValue>, limits: &Limits) -> Result<Option<String>, Rejection> {
    let Some(raw) = non_null(raw) else {
        return Ok(None);
    };
    let text: String = serde_json::from_str(raw.get())
        .map_err(|_| Rejection::new(Reason::InvalidContent, "content must be a string"))?;
    if text.len() > limits.max_content_bytes {
        return Err(Rejection::new(
            Reason::ContentTooLarge,
            format!(
                "content is {} bytes, the limit is {} (MAX_CONTENT_BYTES)",
                text.len(),
                limits.max_content_bytes
            ),
        ));
    }
    if text.contains('\0') {
        return Err(Rejection::new(
            Reason::InvalidContent,
            "content contains a NUL character, which PostgreSQL text cannot store",
        ));
    }
    Ok(Some(text))
}

fn parse_metadata(
    raw: Option<&RawValue>,
    limits: &Limits,
) -> Result<Map<String, Value>, Rejection> {
    let Some(raw) = non_null(raw) else {
        return Ok(Map::new());
    };
    // Depth first, on the raw text, so a hostile nesting never reaches the recursive parser.
    let depth = json_depth(raw.get());
    if depth > limits.max_metadata_depth {
        return Err(Rejection::new(
            Reason::MetadataTooDeep,
            format!(
                "metadata nests {depth} levels, the limit is {} (MAX_METADATA_DEPTH)",
                limits.max_metadata_depth
            ),
        ));
    }
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|e| Rejection::new(Reason::InvalidMetadata, clipped(&e.to_string())))?;
    let Value::Object(map) = value else {
        return Err(Rejection::new(
            Reason::InvalidMetadata,
            format!(
                "metadata must be a JSON object, got {}",
                edge::json_type(&value)
            ),
        ));
    };
    let size = serde_json::to_string(&map)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > limits.max_metadata_bytes {
        return Err(Rejection::new(
            Reason::MetadataTooLarge,
            format!(
                "metadata is {size} bytes, the limit is {} (MAX_METADATA_BYTES)",
                limits.max_metadata_bytes
            ),
        ));
    }
    if map
        .iter()
        .any(|(k, v)| k.contains('\0') || jsonb::contains_nul(v))
    {
        return Err(Rejection::new(
            Reason::InvalidMetadata,
            "metadata contains a NUL character, which jsonb cannot store",
        ));
    }
    Ok(map)
}

/// An RFC 3339 time within `[MIN_CREATED_AT, now + MAX_CLOCK_SKEW_S]`: retention counts
/// from it, so a producer must not be able to date a row out of the purge's reach.
fn parse_created_at(
    raw: Option<&RawValue>,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Rejection> {
    let Some(raw) = non_null(raw) else {
        return Ok(None);
    };
    let text: String = serde_json::from_str(raw.get()).map_err(|_| {
        Rejection::new(
            Reason::InvalidCreatedAt,
            "created_at must be an RFC 3339 string such as 2026-11-01T08:00:00Z",
        )
    })?;
    let created_at = DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Rejection::new(
                Reason::InvalidCreatedAt,
                format!("created_at {}: {e}", clipped(&text)),
            )
        })?;
    let latest = now + limits.max_clock_skew;
    if created_at > latest {
        return Err(Rejection::new(
            Reason::CreatedAtInFuture,
            format!(
                "created_at {} is {} s ahead of the ingest clock ({}), the limit is {} s \
                 (MAX_CLOCK_SKEW_S): send the time the record was created (retention counts \
                 from it), fix the producer's clock, or raise MAX_CLOCK_SKEW_S",
                created_at.to_rfc3339(),
                (created_at - now).num_seconds(),
                now.to_rfc3339(),
                limits.max_clock_skew.num_seconds()
            ),
        ));
    }
    if created_at < limits.min_created_at {
        return Err(Rejection::new(
            Reason::CreatedAtTooOld,
            format!(
                "created_at {} is before {} (MIN_CREATED_AT): send the time the record was \
                 created (an epoch-zero or placeholder date is a producer bug, and retention \
                 would delete the row at the next purge), or lower MIN_CREATED_AT",
                created_at.to_rfc3339(),
                limits.min_created_at.to_rfc3339()
            ),
        ));
    }
    Ok(Some(created_at))
}

/// The maximum nesting of arrays and objects in a JSON text (strings are skipped).
pub fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// What a rejection quotes of a value (or an error message): its first
/// [`edge::CLIP_CHARS`] characters, with `…` when there was more.
fn clipped(text: &str) -> String {
    let clip = edge::clip(text);
    if clip.len() == text.len() {
        text.to_owned()
    } else {
        format!("{clip}…")
    }
}

#[cfg(test)]
mod tests;
