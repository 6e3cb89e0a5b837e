//! The ingest message contract: one SQS body, parsed once into a [`WriteOp`] or
//! rejected with a stable reason code.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use storage::{jsonb, parse_setting, ConfigError, JsonVector, Namespace, Upsert, Vector, WriteOp};
use uuid::Uuid;

/// Bounds on what one message may carry. Defaults keep a 10,000-record batch in memory
/// comfortably; all are configurable.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `MAX_CONTENT_BYTES` (default 65536).
    pub max_content_bytes: usize,
    /// `MAX_METADATA_BYTES` (default 16384), measured as compact JSON.
    pub max_metadata_bytes: usize,
    /// `MAX_METADATA_DEPTH` (default 8): nesting of objects and arrays inside metadata.
    pub max_metadata_depth: usize,
    /// `MAX_CLOCK_SKEW_S` (default 300): how far ahead of the ingest clock a `created_at`
    /// may be. Retention counts from `created_at`: a row dated in the future would
    /// outlive every retention window.
    pub max_clock_skew: TimeDelta,
    /// `MIN_CREATED_AT` (default `2000-01-01T00:00:00Z`): the earliest `created_at`
    /// accepted. An earlier one is a producer bug (an epoch zero, a seconds/milliseconds
    /// mix-up), and the row would be deleted by the next purge as soon as written.
    pub min_created_at: DateTime<Utc>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_content_bytes: 64 * 1024,
            max_metadata_bytes: 16 * 1024,
            max_metadata_depth: 8,
            max_clock_skew: TimeDelta::seconds(300),
            min_created_at: DateTime::from_timestamp(946_684_800, 0)
                .expect("2000-01-01T00:00:00Z is representable"),
        }
    }
}

impl Limits {
    /// The largest byte limit accepted: an SQS message is at most 1 MiB.
    pub const MAX_BYTES: usize = 1024 * 1024;
    /// The deepest metadata accepted; serde_json refuses nesting beyond 128 anyway.
    pub const MAX_DEPTH: usize = 64;
    /// The largest `MAX_CLOCK_SKEW_S`: one day.
    pub const MAX_CLOCK_SKEW_S: i64 = 86_400;

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads `MAX_CONTENT_BYTES`, `MAX_METADATA_BYTES`, `MAX_METADATA_DEPTH`,
    /// `MAX_CLOCK_SKEW_S` and `MIN_CREATED_AT` through `lookup` (the environment in production, a map in tests). Absent or blank
    /// variables keep their defaults; a value that does not parse or is out of range is
    /// an error naming the variable, the value and the accepted range.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let bytes = |n: &usize| (1..=Self::MAX_BYTES).contains(n);
        Ok(Self {
            max_content_bytes: parse_setting(
                &lookup,
                "MAX_CONTENT_BYTES",
                defaults.max_content_bytes,
                "a whole number of bytes from 1 to 1048576",
                bytes,
            )?,
            max_metadata_bytes: parse_setting(
                &lookup,
                "MAX_METADATA_BYTES",
                defaults.max_metadata_bytes,
                "a whole number of bytes from 1 to 1048576",
                bytes,
            )?,
            max_metadata_depth: parse_setting(
                &lookup,
                "MAX_METADATA_DEPTH",
                defaults.max_metadata_depth,
                "a whole number of nesting levels from 1 to 64",
                |n| (1..=Self::MAX_DEPTH).contains(n),
            )?,
            max_clock_skew: TimeDelta::seconds(parse_setting(
                &lookup,
                "MAX_CLOCK_SKEW_S",
                defaults.max_clock_skew.num_seconds(),
                "a whole number of seconds from 0 to 86400",
                |n| (0..=Self::MAX_CLOCK_SKEW_S).contains(n),
            )?),
            min_created_at: parse_setting(
                &lookup,
                "MIN_CREATED_AT",
                defaults.min_created_at,
                "an RFC 3339 time from 1970-01-01T00:00:00Z to now, e.g. 2000-01-01T00:00:00Z",
                |t: &DateTime<Utc>| t.timestamp() >= 0 && *t <= Utc::now(),
            )?,
        })
    }
}

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

fn reject(reason: Reason, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
    }
}

/// Every field of the contract, each kept as raw JSON so that each can fail with its
/// own reason, except the embedding: nearly all of the body, it is read once, by
/// storage's vector reader ([`storage::json_vector::from_json_object`]), into a form
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
    let body = body.ok_or_else(|| reject(Reason::MissingBody, "the SQS message has no body"))?;
    let mut rest = Vec::new();
    let raw = storage::json_vector::from_json_object(
        body.as_bytes(),
        "embedding",
        &mut rest,
        |raw: &mut RawMessage| &mut raw.embedding,
    )
    .map_err(|e| {
        if e.to_string().starts_with("unknown field") {
            reject(Reason::UnknownField, first_line(&e))
        } else {
            reject(Reason::InvalidJson, first_line(&e))
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

/// `ALLOWED_NAMESPACES` (kit.toml `[queue] namespaces`): the namespaces this queue's
/// records may write, comma-separated; unset or blank allows every namespace. Whoever
/// may send to the queue may otherwise write any namespace (docs/security.md, "ingest").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedNamespaces(Option<Vec<Namespace>>);

impl AllowedNamespaces {
    /// Only `namespaces` (each must be a valid namespace).
    pub fn only(namespaces: &[&str]) -> Result<Self, storage::NamespaceError> {
        let parsed = namespaces
            .iter()
            .map(|n| Namespace::parse(n))
            .collect::<Result<_, _>>()?;
        Ok(Self(Some(parsed)))
    }

    /// Reads `ALLOWED_NAMESPACES` through `lookup`; a name that is not a namespace is an
    /// error naming the variable, so the function refuses to start.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let Some(raw) = lookup("ALLOWED_NAMESPACES").filter(|v| !v.trim().is_empty()) else {
            return Ok(Self(None));
        };
        let names: Vec<&str> = raw.split(',').map(str::trim).collect();
        Self::only(&names).map_err(|_| ConfigError::Invalid {
            name: "ALLOWED_NAMESPACES",
            value: raw.clone(),
            expected: "comma-separated namespaces of 1 to 64 characters from a-z, 0-9, '_' and '-'",
        })
    }

    /// `op` when its namespace is allowed, else a `namespace_not_allowed` rejection.
    pub fn check(&self, op: WriteOp) -> Result<WriteOp, Rejection> {
        match &self.0 {
            Some(allowed) if !allowed.contains(op.key().0) => Err(reject(
                Reason::NamespaceNotAllowed,
                format!(
                    "namespace {:?} is not in this queue's ALLOWED_NAMESPACES ({}); send it to \
                     its own queue or add it to kit.toml [queue] namespaces",
                    op.key().0.as_str(),
                    allowed
                        .iter()
                        .map(Namespace::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            )),
            _ => Ok(op),
        }
    }
}

fn is_null(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

fn parse_op(raw: Option<&RawValue>) -> Result<Op, Rejection> {
    let Some(raw) = is_null(raw) else {
        return Ok(Op::Upsert);
    };
    match serde_json::from_str::<&str>(raw.get()) {
        Ok("upsert") => Ok(Op::Upsert),
        Ok("delete") => Ok(Op::Delete),
        _ => Err(reject(
            Reason::UnknownOp,
            format!(
                "op must be \"upsert\" or \"delete\", got {}",
                truncate(raw.get())
            ),
        )),
    }
}

fn parse_id(raw: Option<&RawValue>) -> Result<Uuid, Rejection> {
    let raw = is_null(raw).ok_or_else(|| reject(Reason::MissingId, "id is required"))?;
    let text: String = serde_json::from_str(raw.get()).map_err(|_| {
        reject(
            Reason::InvalidId,
            format!("id must be a UUID string, got {}", truncate(raw.get())),
        )
    })?;
    Uuid::parse_str(&text).map_err(|_| {
        reject(
            Reason::InvalidId,
            format!("id must be a UUID, got {}", truncate(raw.get())),
        )
    })
}

fn parse_namespace(raw: Option<&RawValue>) -> Result<Namespace, Rejection> {
    let Some(raw) = is_null(raw) else {
        return Ok(Namespace::default());
    };
    let text: String = serde_json::from_str(raw.get()).map_err(|_| {
        reject(
            Reason::InvalidNamespace,
            format!("namespace must be a string, got {}", truncate(raw.get())),
        )
    })?;
    Namespace::parse(&text).map_err(|e| reject(Reason::InvalidNamespace, e.to_string()))
}

fn parse_version(raw: Option<&RawValue>) -> Result<i64, Rejection> {
    let Some(raw) = is_null(raw) else {
        return Ok(0);
    };
    serde_json::from_str::<u64>(raw.get())
        .ok()
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| {
            reject(
                Reason::InvalidVersion,
                format!(
                    "version must be an integer from 0 to {}, got {}",
                    i64::MAX,
                    truncate(raw.get())
                ),
            )
        })
}

fn parse_embedding(field: JsonVector, dimensions: usize) -> Result<Vector, Rejection> {
    let values = match field {
        JsonVector::Missing => {
            return Err(reject(
                Reason::MissingEmbedding,
                "embedding is required for upsert",
            ))
        }
        JsonVector::NotAnArray(found) => {
            return Err(reject(
                Reason::InvalidEmbedding,
                format!("embedding must be an array of numbers, got {found}"),
            ))
        }
        JsonVector::NotANumber { position, found } => {
            return Err(reject(
                Reason::InvalidEmbedding,
                format!("embedding must be an array of numbers: embedding[{position}] is {found}"),
            ))
        }
        JsonVector::Values(values) => values,
    };
    if values.len() != dimensions {
        return Err(reject(
            Reason::WrongDimensions,
            format!("expected {dimensions} dimensions, got {}", values.len()),
        ));
    }
    if let Some(position) = values.iter().position(|v| !v.is_finite()) {
        return Err(reject(
            Reason::NonFiniteValue,
            format!("embedding[{position}] is not a finite 32-bit float"),
        ));
    }
    Ok(Vector::from(values))
}

fn parse_content(raw: Option<&RawValue>, limits: &Limits) -> Result<Option<String>, Rejection> {
    let Some(raw) = is_null(raw) else {
        return Ok(None);
    };
    let text: String = serde_json::from_str(raw.get())
        .map_err(|_| reject(Reason::InvalidContent, "content must be a string"))?;
    if text.len() > limits.max_content_bytes {
        return Err(reject(
            Reason::ContentTooLarge,
            format!(
                "content is {} bytes, the limit is {} (MAX_CONTENT_BYTES)",
                text.len(),
                limits.max_content_bytes
            ),
        ));
    }
    if text.contains('\0') {
        return Err(reject(
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
    let Some(raw) = is_null(raw) else {
        return Ok(Map::new());
    };
    // Depth first, on the raw text, so a hostile nesting never reaches the recursive parser.
    let depth = json_depth(raw.get());
    if depth > limits.max_metadata_depth {
        return Err(reject(
            Reason::MetadataTooDeep,
            format!(
                "metadata nests {depth} levels, the limit is {} (MAX_METADATA_DEPTH)",
                limits.max_metadata_depth
            ),
        ));
    }
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|e| reject(Reason::InvalidMetadata, first_line(&e)))?;
    let Value::Object(map) = value else {
        return Err(reject(
            Reason::InvalidMetadata,
            format!(
                "metadata must be a JSON object, got {}",
                jsonb::kind(&value)
            ),
        ));
    };
    let size = serde_json::to_string(&map)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > limits.max_metadata_bytes {
        return Err(reject(
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
        return Err(reject(
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
    let Some(raw) = is_null(raw) else {
        return Ok(None);
    };
    let text: String = serde_json::from_str(raw.get()).map_err(|_| {
        reject(
            Reason::InvalidCreatedAt,
            "created_at must be an RFC 3339 string such as 2026-11-01T08:00:00Z",
        )
    })?;
    let created_at = DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            reject(
                Reason::InvalidCreatedAt,
                format!("created_at {}: {e}", truncate(&text)),
            )
        })?;
    let latest = now + limits.max_clock_skew;
    if created_at > latest {
        return Err(reject(
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
        return Err(reject(
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

fn first_line(error: &serde_json::Error) -> String {
    truncate(&error.to_string())
}

fn truncate(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DIMS: usize = 3;

    fn try_parse(body: Value) -> Result<WriteOp, Rejection> {
        parse(
            Some(&body.to_string()),
            DIMS,
            &Limits::default(),
            Utc::now(),
        )
    }

    fn reason(body: Value) -> Reason {
        try_parse(body).unwrap_err().reason
    }

    fn good() -> Value {
        json!({"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "embedding": [0.1, 0.2, 0.3]})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut body = good();
        body[key] = value;
        body
    }

    #[test]
    fn a_minimal_message_is_an_upsert_in_the_default_namespace() {
        let WriteOp::Upsert(u) = try_parse(good()).unwrap() else {
            panic!("expected an upsert")
        };
        assert_eq!(u.namespace.as_str(), "default");
        assert_eq!(u.version, 0);
        assert_eq!(u.embedding.as_slice(), &[0.1, 0.2, 0.3]);
    }

    #[test]
    fn a_delete_needs_no_embedding() {
        let body = json!({"op": "delete", "id": "0f8fad5b-d9cb-469f-a165-70867728950e", "namespace": "acme", "version": 4});
        assert!(matches!(
            try_parse(body).unwrap(),
            WriteOp::Delete { version: 4, .. }
        ));
    }

    #[test]
    fn each_contract_violation_has_its_reason() {
        assert_eq!(
            parse(None, DIMS, &Limits::default(), Utc::now())
                .unwrap_err()
                .reason,
            Reason::MissingBody
        );
        assert_eq!(
            parse(Some("{not json"), DIMS, &Limits::default(), Utc::now())
                .unwrap_err()
                .reason,
            Reason::InvalidJson
        );
        assert_eq!(
            reason(json!({"embedding": [0.1, 0.2, 0.3]})),
            Reason::MissingId
        );
        assert_eq!(reason(with("id", json!("not-a-uuid"))), Reason::InvalidId);
        assert_eq!(reason(with("id", json!(42))), Reason::InvalidId);
        assert_eq!(
            reason(with("namespace", json!("Bad Space"))),
            Reason::InvalidNamespace
        );
        assert_eq!(
            reason(with("embedding", json!([0.1, 0.2]))),
            Reason::WrongDimensions
        );
        assert_eq!(
            reason(with("embedding", json!([0.1, "x", 0.3]))),
            Reason::InvalidEmbedding
        );
        assert_eq!(
            reason(with("embedding", json!(null))),
            Reason::MissingEmbedding
        );
        assert_eq!(
            reason(with("embedding", json!([0.1, 1e39, 0.3]))),
            Reason::NonFiniteValue
        );
        assert_eq!(
            reason(with("metadata", json!([1, 2]))),
            Reason::InvalidMetadata
        );
        assert_eq!(
            reason(with("metadata", json!("text"))),
            Reason::InvalidMetadata
        );
        assert_eq!(
            reason(with(
                "metadata",
                json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}})
            )),
            Reason::MetadataTooDeep
        );
        assert_eq!(
            reason(with("metadata", json!({"big": "x".repeat(20_000)}))),
            Reason::MetadataTooLarge
        );
        assert_eq!(
            reason(with("content", json!("x".repeat(70_000)))),
            Reason::ContentTooLarge
        );
        assert_eq!(reason(with("op", json!("merge"))), Reason::UnknownOp);
        assert_eq!(reason(with("version", json!(-1))), Reason::InvalidVersion);
        assert_eq!(reason(with("version", json!(1.5))), Reason::InvalidVersion);
        assert_eq!(
            reason(with("created_at", json!("yesterday"))),
            Reason::InvalidCreatedAt
        );
        assert_eq!(reason(with("metdata", json!({}))), Reason::UnknownField);
    }

    #[test]
    fn every_malformed_embedding_is_invalid_embedding() {
        for bad in [
            json!("0.1,0.2,0.3"),
            json!(7),
            json!(true),
            json!({"0": 0.1}),
            json!([0.1, null, 0.3]),
            json!([[0.1], 0.2, 0.3]),
            json!([0.1, {"x": 1}, 0.3]),
            json!([0.1, 0.2, false]),
        ] {
            let err = try_parse(with("embedding", bad.clone())).unwrap_err();
            assert_eq!(err.reason, Reason::InvalidEmbedding, "{bad}: {err}");
        }
        let err = try_parse(with("embedding", json!([0.1, "x", 0.3]))).unwrap_err();
        assert!(err.detail.contains("embedding[1] is a string"), "{err}");
    }

    #[test]
    fn embedding_values_round_as_serde_rounds_f32() {
        let text = "[0.1, -0.025513947, 1e-40, 3.4028235e38, 16777217, -0, 0.333333343267]";
        let expected: Vec<f32> = serde_json::from_str(text).unwrap();
        let body =
            format!(r#"{{"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "embedding": {text}}}"#);
        let WriteOp::Upsert(u) = parse(Some(&body), 7, &Limits::default(), Utc::now()).unwrap()
        else {
            panic!("expected an upsert")
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(u.embedding.as_slice()), bits(&expected));
    }

    #[test]
    fn nan_literals_are_not_json() {
        let body = r#"{"id":"0f8fad5b-d9cb-469f-a165-70867728950e","embedding":[NaN,0,0]}"#;
        assert_eq!(
            parse(Some(body), DIMS, &Limits::default(), Utc::now())
                .unwrap_err()
                .reason,
            Reason::InvalidJson
        );
    }

    #[test]
    fn depth_counts_structure_not_brackets_in_strings() {
        assert_eq!(json_depth(r#"{"a": "[[[{{{"}"#), 1);
        assert_eq!(json_depth(r#"{"a": [{"b": []}]}"#), 4);
        assert_eq!(json_depth(r#""\"[""#), 0);
    }

    fn limits(pairs: &[(&str, &str)]) -> Result<Limits, ConfigError> {
        let map: std::collections::HashMap<&str, &str> = pairs.iter().copied().collect();
        Limits::from_lookup(|k| map.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn limits_default_when_unset_or_blank() {
        let l = limits(&[("MAX_CONTENT_BYTES", "  ")]).unwrap();
        let d = Limits::default();
        assert_eq!(
            (
                l.max_content_bytes,
                l.max_metadata_bytes,
                l.max_metadata_depth
            ),
            (
                d.max_content_bytes,
                d.max_metadata_bytes,
                d.max_metadata_depth
            )
        );
    }

    #[test]
    fn limits_read_each_variable() {
        let l = limits(&[
            ("MAX_CONTENT_BYTES", "1000"),
            ("MAX_METADATA_BYTES", " 2000 "),
            ("MAX_METADATA_DEPTH", "3"),
        ])
        .unwrap();
        assert_eq!(
            (
                l.max_content_bytes,
                l.max_metadata_bytes,
                l.max_metadata_depth
            ),
            (1000, 2000, 3)
        );
        let body = with("metadata", json!({"a": {"b": {"c": {"d": 1}}}}));
        let err = parse(Some(&body.to_string()), DIMS, &l, Utc::now()).unwrap_err();
        assert_eq!(err.reason, Reason::MetadataTooDeep);
        assert!(err.detail.contains("MAX_METADATA_DEPTH"), "{err}");
    }

    #[test]
    fn bad_limits_name_the_variable_the_value_and_the_range() {
        for (name, value, range) in [
            ("MAX_CONTENT_BYTES", "64k", "1 to 1048576"),
            ("MAX_CONTENT_BYTES", "0", "1 to 1048576"),
            ("MAX_METADATA_BYTES", "-5", "1 to 1048576"),
            ("MAX_METADATA_BYTES", "2000000", "1 to 1048576"),
            ("MAX_METADATA_DEPTH", "1.5", "1 to 64"),
            ("MAX_METADATA_DEPTH", "65", "1 to 64"),
            ("MAX_CLOCK_SKEW_S", "-1", "0 to 86400"),
            ("MAX_CLOCK_SKEW_S", "86401", "0 to 86400"),
            ("MIN_CREATED_AT", "2000-01-01", "RFC 3339"),
            ("MIN_CREATED_AT", "1969-12-31T23:59:59Z", "RFC 3339"),
            ("MIN_CREATED_AT", "9999-01-01T00:00:00Z", "RFC 3339"),
        ] {
            let err = limits(&[(name, value)]).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains(value) && err.contains(range),
                "{name}={value}: {err}"
            );
        }
    }

    #[test]
    fn the_allow_list_rejects_other_namespaces_and_reads_its_variable() {
        let op = try_parse(good()).unwrap();
        let namespace = op.key().0.as_str().to_owned();
        assert!(AllowedNamespaces::default().check(op.clone()).is_ok());
        let allowed = AllowedNamespaces::only(&[&namespace, "b"]).unwrap();
        assert!(allowed.check(op.clone()).is_ok());
        let err = AllowedNamespaces::only(&["a", "b"])
            .unwrap()
            .check(op)
            .unwrap_err();
        assert_eq!(err.reason.code(), "namespace_not_allowed");
        assert!(err.detail.contains("ALLOWED_NAMESPACES"), "{err}");
        let read = |v: &str| {
            let v = v.to_owned();
            AllowedNamespaces::from_lookup(move |_| Some(v.clone()))
        };
        assert_eq!(read(" ").unwrap(), AllowedNamespaces::default());
        assert_eq!(
            read("a, b").unwrap(),
            AllowedNamespaces::only(&["a", "b"]).unwrap()
        );
        let err = read("a,Not Valid").unwrap_err().to_string();
        assert!(err.contains("ALLOWED_NAMESPACES"), "{err}");
    }

    #[test]
    fn created_at_is_bounded_by_the_clock_and_the_floor() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |created_at: &str, limits: &Limits| {
            let body = with("created_at", json!(created_at)).to_string();
            parse(Some(&body), DIMS, limits, now).map(|op| match op {
                WriteOp::Upsert(u) => u.created_at,
                WriteOp::Delete { .. } => panic!("an upsert"),
            })
        };
        let d = Limits::default();
        // Within the skew and from the floor on: stored as sent.
        for ok in [
            "2026-12-01T02:05:00Z",
            "2026-12-01T03:04:59+01:00",
            "2000-01-01T00:00:00Z",
            "2026-11-30T23:00:00Z",
        ] {
            assert_eq!(
                at(ok, &d).unwrap(),
                DateTime::parse_from_rfc3339(ok).unwrap()
            );
        }
        for (bad, reason, says) in [
            (
                "2026-12-01T02:05:01Z",
                Reason::CreatedAtInFuture,
                "301 s ahead",
            ),
            (
                "9999-12-31T23:59:59Z",
                Reason::CreatedAtInFuture,
                "MAX_CLOCK_SKEW_S",
            ),
            (
                "1999-12-31T23:59:59Z",
                Reason::CreatedAtTooOld,
                "MIN_CREATED_AT",
            ),
            (
                "1970-01-01T00:00:00Z",
                Reason::CreatedAtTooOld,
                "2000-01-01T00:00:00",
            ),
            (
                "0001-01-01T00:00:00Z",
                Reason::CreatedAtTooOld,
                "MIN_CREATED_AT",
            ),
        ] {
            let err = at(bad, &d).unwrap_err();
            assert_eq!(err.reason, reason, "{bad}: {err}");
            assert!(err.detail.contains(says), "{bad}: {err}");
        }
        // Both bounds are configurable.
        let l = limits(&[
            ("MAX_CLOCK_SKEW_S", "0"),
            ("MIN_CREATED_AT", "2020-01-01T00:00:00Z"),
        ])
        .unwrap();
        assert_eq!(
            at("2026-12-01T02:00:01Z", &l).unwrap_err().reason,
            Reason::CreatedAtInFuture
        );
        assert!(at("2026-12-01T02:00:00Z", &l).is_ok());
        assert_eq!(
            at("2019-12-31T23:59:59Z", &l).unwrap_err().reason,
            Reason::CreatedAtTooOld
        );
        // A delete carries no created_at that matters: nothing to bound.
        let delete = json!({"op": "delete", "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "created_at": "9999-12-31T23:59:59Z"});
        assert!(parse(Some(&delete.to_string()), DIMS, &d, now).is_ok());
    }

    #[test]
    fn reason_codes_are_unique() {
        let mut codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
    }
}
