//! `POST /search` bodies, parsed once into storage's [`SearchQuery`].

use serde::Deserialize;
use serde_json::Value;
use storage::{Include, Namespace, SearchQuery, Vector};

use crate::error::ApiError;
use crate::filter::{parse_filter, FilterLimits};

/// Request limits, all configurable; defaults are safe for a public API.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `MAX_K` (default 1000).
    pub max_k: u32,
    /// `MAX_EF_SEARCH` (default 1000).
    pub max_ef_search: u32,
    /// `DEFAULT_EF_SEARCH` (default 100): recall ≥ 0.95 at k = 10 on the benchmark corpus.
    pub default_ef_search: u32,
    /// `MAX_SCAN_TUPLES` (default 20000): how far an iterative scan may go for filtered queries.
    pub max_scan_tuples: u32,
    /// `MAX_BODY_BYTES` (default 1 MiB).
    pub max_body_bytes: usize,
    pub filter: FilterLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_k: 1000,
            max_ef_search: 1000,
            default_ef_search: 100,
            max_scan_tuples: 20_000,
            max_body_bytes: 1024 * 1024,
            filter: FilterLimits::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    namespace: Option<String>,
    vector: Option<Value>,
    k: Option<Value>,
    filter: Option<Value>,
    max_distance: Option<Value>,
    include: Option<Value>,
    ef_search: Option<Value>,
}

/// Parses a search body. `authorized` is the namespace an authorizer granted, which
/// wins over (and must match) the body's.
pub fn parse_search(
    body: &[u8],
    dimensions: usize,
    limits: &Limits,
    authorized: Option<&str>,
) -> Result<SearchQuery, ApiError> {
    let raw: RawSearch = serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let code = if text.starts_with("unknown field") {
            "unknown_field"
        } else {
            "invalid_json"
        };
        ApiError::bad_request(
            code,
            format!("the body is not a valid search request: {text}"),
        )
    })?;

    let namespace = resolve_namespace(raw.namespace.as_deref(), authorized)?;
    let vector = parse_vector(raw.vector.as_ref(), dimensions)?;
    let k = bounded_u32(
        raw.k.as_ref(),
        "k",
        "invalid_k",
        10,
        1,
        limits.max_k,
        "MAX_K",
    )?;
    let ef_search = bounded_u32(
        raw.ef_search.as_ref(),
        "ef_search",
        "invalid_ef_search",
        limits.default_ef_search,
        1,
        limits.max_ef_search,
        "MAX_EF_SEARCH",
    )?;
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
            return Err(ApiError::bad_request(
                "invalid_max_distance",
                format!("max_distance is a cosine distance from 0 to 2, got {other}"),
            ))
        }
    };
    Ok(SearchQuery {
        namespace,
        vector,
        k,
        iterative_scan: filter.is_some(),
        filter,
        max_distance,
        include: parse_include(raw.include.as_ref())?,
        // Without an iterative scan the index yields at most ef_search rows.
        ef_search: ef_search.max(k.min(limits.max_ef_search)),
        max_scan_tuples: limits.max_scan_tuples,
        timeout: None,
    })
}

/// The namespace the request may use: the authorizer's, if any; a body naming another is 403.
pub fn resolve_namespace(
    requested: Option<&str>,
    authorized: Option<&str>,
) -> Result<Namespace, ApiError> {
    let parse = |raw: &str| {
        Namespace::parse(raw).map_err(|e| ApiError::bad_request("invalid_namespace", e.to_string()))
    };
    match (authorized, requested) {
        (Some(granted), Some(asked)) if granted != asked => Err(ApiError::forbidden(format!(
            "the caller is authorized for namespace {granted:?}, not {:?}",
            asked.chars().take(80).collect::<String>()
        ))),
        (Some(granted), _) => parse(granted),
        (None, Some(asked)) => parse(asked),
        (None, None) => Ok(Namespace::default()),
    }
}

fn parse_vector(value: Option<&Value>, dimensions: usize) -> Result<Vector, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_vector", message);
    let Some(Value::Array(items)) = value else {
        return Err(invalid(format!(
            "vector is required: an array of {dimensions} numbers"
        )));
    };
    if items.len() != dimensions {
        return Err(invalid(format!(
            "expected {dimensions} dimensions, got {}",
            items.len()
        )));
    }
    let mut values = Vec::with_capacity(dimensions);
    for (i, item) in items.iter().enumerate() {
        match item.as_f64().map(|v| v as f32) {
            Some(v) if v.is_finite() => values.push(v),
            _ => {
                return Err(invalid(format!(
                    "vector[{i}] must be a finite number, got {item}"
                )))
            }
        }
    }
    if values.iter().all(|v| *v == 0.0) {
        return Err(invalid(
            "the zero vector has no cosine distance to anything".into(),
        ));
    }
    Ok(Vector::from(values))
}

fn bounded_u32(
    value: Option<&Value>,
    name: &str,
    code: &'static str,
    default: u32,
    min: u32,
    max: u32,
    setting: &str,
) -> Result<u32, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    code,
                    format!("{name} must be an integer from {min} to {max} ({setting}), got {v}"),
                )
            }),
    }
}

fn parse_include(value: Option<&Value>) -> Result<Include, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_include", message);
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
        parse_search(body.to_string().as_bytes(), 3, &Limits::default(), None)
    }

    #[test]
    fn defaults() {
        let q = parse(json!({"vector": [1, 0, 0]})).unwrap();
        assert_eq!(
            (q.k, q.ef_search, q.namespace.as_str()),
            (10, 100, "default")
        );
        assert!(q.include.metadata && !q.include.content && !q.iterative_scan);
    }

    #[test]
    fn bad_inputs_have_codes() {
        for (body, code) in [
            (json!({"vector": [1, 0]}), "invalid_vector"),
            (json!({"vector": [0, 0, 0]}), "invalid_vector"),
            (json!({"vector": [1, "a", 0]}), "invalid_vector"),
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
        let err = parse_search(b"{", 3, &Limits::default(), None).unwrap_err();
        assert_eq!(err.code, "invalid_json");
    }

    #[test]
    fn the_authorizer_namespace_is_authoritative() {
        let q = parse_search(
            br#"{"vector":[1,0,0]}"#,
            3,
            &Limits::default(),
            Some("acme"),
        )
        .unwrap();
        assert_eq!(q.namespace.as_str(), "acme");
        let err = parse_search(
            br#"{"vector":[1,0,0],"namespace":"other"}"#,
            3,
            &Limits::default(),
            Some("acme"),
        )
        .unwrap_err();
        assert_eq!(
            (err.status.as_u16(), err.code),
            (403, "namespace_forbidden")
        );
    }
}
