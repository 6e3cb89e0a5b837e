//! `POST /search` bodies, parsed once into storage's [`SearchQuery`].

use edge::JsonVector;
use serde::Deserialize;
use serde_json::Value;
use storage::{Include, SearchQuery, Vector};

use crate::auth::Grant;
use crate::error::{ApiError, ErrorCode};
use crate::filter::parse_filter;
use crate::settings::Limits;

/// A search body as sent. The vector, nearly all of it, is read by the edge's vector
/// reader ([`edge::from_json_object`]); unknown fields are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    namespace: Option<String>,
    #[serde(default)]
    vector: JsonVector,
    k: Option<Value>,
    filter: Option<Value>,
    max_distance: Option<Value>,
    include: Option<Value>,
    ef_search: Option<Value>,
}

/// Parses a search body. `grant` says whether the caller's claim fixes the namespace
/// (the body may then only repeat it) or the body chooses it.
pub fn parse_search(
    body: &[u8],
    dimensions: usize,
    limits: &Limits,
    grant: &Grant,
) -> Result<SearchQuery, ApiError> {
    let mut rest = Vec::new();
    let raw = edge::from_json_object(body, "vector", &mut rest, |raw: &mut RawSearch| {
        &mut raw.vector
    })
    .map_err(|e| {
        let text = e.to_string();
        let code = if text.starts_with("unknown field") {
            ErrorCode::UnknownField
        } else {
            ErrorCode::InvalidJson
        };
        ApiError::new(
            code,
            format!("the body is not a valid search request: {text}"),
        )
    })?;

    let namespace = grant.resolve(raw.namespace.as_deref())?;
    let vector = parse_vector(raw.vector, dimensions)?;
    let k = BoundedInteger {
        name: "k",
        code: ErrorCode::InvalidK,
        default: 10,
        min: 1,
        max: limits.max_k,
        setting: "MAX_K",
    }
    .read(raw.k.as_ref())?;
    let ef_search = BoundedInteger {
        name: "ef_search",
        code: ErrorCode::InvalidEfSearch,
        default: limits.default_ef_search,
        min: 1,
        max: limits.max_ef_search,
        setting: "MAX_EF_SEARCH",
    }
    .read(raw.ef_search.as_ref())?;
    let filter = match raw.filter.as_ref() {
        None | Some(Value::Null) => None,
        Some(value) => parse_filter(value, &limits.filter)?,
    };
    let max_distance = match raw.max_distance.as_ref() {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_f64().is_some_and(|d| (0.0..=2.0).contains(&d)) => {
            n.as_f64()
        }
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidMaxDistance,
                format!("max_distance is a cosine distance from 0 to 2, got {other}"),
            ))
        }
    };
    Ok(SearchQuery {
        namespace,
        vector,
        k,
        // Always on: the namespace is a filter too. In a table shared by tenants, a
        // small namespace's rows are rare among the index's nearest candidates, and a
        // plain HNSW scan would return fewer than k of them. The scan only continues
        // past ef_search candidates when too few rows passed, so an unfiltered query
        // over a single-tenant table pays nothing for it.
        iterative_scan: true,
        filter,
        max_distance,
        include: parse_include(raw.include.as_ref())?,
        // An index scan's first pass yields at most ef_search rows: start at k or more.
        ef_search: ef_search.max(k.min(limits.max_ef_search)),
        max_scan_tuples: limits.max_scan_tuples,
        timeout: None,
    })
}

fn parse_vector(vector: JsonVector, dimensions: usize) -> Result<Vector, ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidVector, message);
    let values = match vector {
        JsonVector::Values(values) => values,
        JsonVector::NotANumber { position, found } => {
            return Err(invalid(format!(
                "vector[{position}] must be a finite number, got {found}"
            )))
        }
        JsonVector::Missing | JsonVector::NotAnArray(_) => {
            return Err(invalid(format!(
                "vector is required: an array of {dimensions} numbers"
            )))
        }
    };
    if values.len() != dimensions {
        return Err(invalid(format!(
            "expected {dimensions} dimensions, got {}",
            values.len()
        )));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "vector[{i}] must be a finite number (32-bit float)"
        )));
    }
    if values.iter().all(|v| *v == 0.0) {
        return Err(invalid(
            "the zero vector has no cosine distance to anything".into(),
        ));
    }
    Ok(Vector::from(values))
}

/// A whole-number field of the body: absent or `null` reads as `default`; anything
/// else must be an integer from `min` to `max`, where `max` is the setting `setting`, or
/// the request is refused with `code`.
struct BoundedInteger {
    name: &'static str,
    code: ErrorCode,
    default: u32,
    min: u32,
    max: u32,
    setting: &'static str,
}

impl BoundedInteger {
    fn read(&self, value: Option<&Value>) -> Result<u32, ApiError> {
        let Self {
            name,
            code,
            default,
            min,
            max,
            setting,
        } = *self;
        match value {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::new(
                        code,
                        format!(
                            "{name} must be an integer from {min} to {max} ({setting}), got {v}"
                        ),
                    )
                }),
        }
    }
}

fn parse_include(value: Option<&Value>) -> Result<Include, ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidInclude, message);
    let mut include = Include::default();
    let items = match value {
        None | Some(Value::Null) => {
            include.metadata = true;
            return Ok(include);
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(invalid(format!(
                "include is an array of \"metadata\", \"content\", \"vector\"; got {other}"
            )))
        }
    };
    for item in items {
        match item.as_str() {
            Some("metadata") => include.metadata = true,
            Some("content") => include.content = true,
            Some("vector") => include.vector = true,
            _ => {
                return Err(invalid(format!(
                    "include accepts \"metadata\", \"content\", \"vector\"; got {item}"
                )))
            }
        }
    }
    Ok(include)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<SearchQuery, ApiError> {
        parse_search(
            body.to_string().as_bytes(),
            3,
            &Limits::default(),
            &Grant::Requested,
        )
    }

    #[test]
    fn defaults() {
        let q = parse(json!({"vector": [1, 0, 0]})).unwrap();
        assert_eq!(
            (q.k, q.ef_search, q.namespace.as_str()),
            (10, 100, "default")
        );
        assert!(q.include.metadata && !q.include.content && q.iterative_scan);
    }

    #[test]
    fn bad_inputs_have_codes() {
        for (body, code) in [
            (json!({"vector": [1, 0]}), "invalid_vector"),
            (json!({"vector": [0, 0, 0]}), "invalid_vector"),
            (json!({"vector": [1, "a", 0]}), "invalid_vector"),
            (json!({"vector": [1, [0], 0]}), "invalid_vector"),
            (json!({"vector": [1, 1e300, 0]}), "invalid_vector"),
            (json!({"vector": "1,0,0"}), "invalid_vector"),
            (json!({"vector": {"0": 1}}), "invalid_vector"),
            (json!({"vector": null}), "invalid_vector"),
            (json!({"vector": true}), "invalid_vector"),
            (json!({"vector": [1, 0, 0], "k": 0}), "invalid_k"),
            (json!({"vector": [1, 0, 0], "k": 1001}), "invalid_k"),
            (json!({"vector": [1, 0, 0], "k": 2.5}), "invalid_k"),
            (
                json!({"vector": [1, 0, 0], "ef_search": 5000}),
                "invalid_ef_search",
            ),
            (
                json!({"vector": [1, 0, 0], "max_distance": 3}),
                "invalid_max_distance",
            ),
            (
                json!({"vector": [1, 0, 0], "include": ["secrets"]}),
                "invalid_include",
            ),
            (
                json!({"vector": [1, 0, 0], "namespace": "NO"}),
                "invalid_namespace",
            ),
            (json!({"vector": [1, 0, 0], "vectr": 1}), "unknown_field"),
            (
                json!({"vector": [1, 0, 0], "filter": {"a": {"$bad": 1}}}),
                "invalid_filter",
            ),
        ] {
            assert_eq!(parse(body.clone()).unwrap_err().code, code, "{body}");
        }
        let err = parse(json!({"vector": [1, "a", 0]})).unwrap_err();
        assert!(err.message.contains("vector[1]"), "{}", err.message);
        let err = parse_search(b"{", 3, &Limits::default(), &Grant::Requested).unwrap_err();
        assert_eq!(err.code, "invalid_json");
    }

    #[test]
    fn the_authorizer_namespace_is_authoritative() {
        let acme = Grant::Claim {
            namespace: storage::Namespace::parse("acme").unwrap(),
            claim: "namespace".into(),
        };
        let q = parse_search(br#"{"vector":[1,0,0]}"#, 3, &Limits::default(), &acme).unwrap();
        assert_eq!(q.namespace.as_str(), "acme");
        let err = parse_search(
            br#"{"vector":[1,0,0],"namespace":"other"}"#,
            3,
            &Limits::default(),
            &acme,
        )
        .unwrap_err();
        assert_eq!(
            (err.status().as_u16(), err.code.as_str()),
            (403, "namespace_forbidden")
        );
    }
}
