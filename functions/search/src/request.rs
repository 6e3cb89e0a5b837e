//! `POST /search` bodies, parsed once into storage's [`SearchQuery`].

use serde::Deserialize;
use serde_json::Value;
use storage::{parse_setting, ConfigError, Include, JsonVector, SearchQuery, Vector};

use crate::auth::Grant;
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
    /// `MAX_SCAN_TUPLES` (default 20000): how many index tuples an iterative scan may visit
    /// looking for k rows that pass the namespace and the filter (`hnsw.max_scan_tuples`).
    pub max_scan_tuples: u32,
    /// `MAX_BODY_BYTES` (default 1 MiB).
    pub max_body_bytes: usize,
    /// `MAX_RESPONSE_BYTES` (default 6,000,000): the largest `POST /search` response,
    /// measured as Lambda returns it (the body JSON-escaped inside the API Gateway
    /// envelope); a larger one is refused with 400 `response_too_large`.
    pub max_response_bytes: usize,
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
            max_response_bytes: crate::response::DEFAULT_MAX_RESPONSE_BYTES,
            filter: FilterLimits::default(),
        }
    }
}

/// pgvector's ceiling for `hnsw.ef_search`; without an iterative scan an index scan
/// yields at most `ef_search` rows, so `k` shares the ceiling.
const EF_SEARCH_CEILING: u32 = 1000;

impl Limits {
    /// Reads every limit through `lookup` (the environment at cold start, a map in
    /// tests). Absent or blank variables keep the defaults; a value that does not parse
    /// or is out of range is an error naming the variable, the value and the range.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let max_ef_search = parse_setting(
            &lookup,
            "MAX_EF_SEARCH",
            defaults.max_ef_search,
            "an integer from 1 to 1000 (pgvector's hnsw.ef_search ceiling)",
            |n| (1..=EF_SEARCH_CEILING).contains(n),
        )?;
        let default_ef_search = parse_setting(
            &lookup,
            "DEFAULT_EF_SEARCH",
            defaults.default_ef_search.min(max_ef_search),
            "an integer from 1 to MAX_EF_SEARCH",
            |n| (1..=max_ef_search).contains(n),
        )?;
        let filter = FilterLimits {
            max_depth: parse_setting(
                &lookup,
                "MAX_FILTER_DEPTH",
                defaults.filter.max_depth,
                "an integer from 1 to 32",
                |n| (1..=32).contains(n),
            )?,
            max_conditions: parse_setting(
                &lookup,
                "MAX_FILTER_CONDITIONS",
                defaults.filter.max_conditions,
                "an integer from 1 to 1000",
                |n| (1..=1000).contains(n),
            )?,
            max_in_values: parse_setting(
                &lookup,
                "MAX_FILTER_IN_VALUES",
                defaults.filter.max_in_values,
                "an integer from 1 to 100000",
                |n| (1..=100_000).contains(n),
            )?,
            max_key_bytes: parse_setting(
                &lookup,
                "MAX_FILTER_KEY_BYTES",
                defaults.filter.max_key_bytes,
                "an integer from 1 to 65535",
                |n| (1..=65_535).contains(n),
            )?,
            max_nodes: parse_setting(
                &lookup,
                "MAX_FILTER_NODES",
                defaults.filter.max_nodes,
                "an integer from 1 to 100000",
                |n| (1..=100_000).contains(n),
            )?,
        };
        Ok(Self {
            max_k: parse_setting(
                &lookup,
                "MAX_K",
                defaults.max_k,
                "an integer from 1 to 1000 (pgvector's hnsw.ef_search ceiling)",
                |n| (1..=EF_SEARCH_CEILING).contains(n),
            )?,
            max_ef_search,
            default_ef_search,
            max_scan_tuples: parse_setting(
                &lookup,
                "MAX_SCAN_TUPLES",
                defaults.max_scan_tuples,
                "an integer from 1 to 100000000",
                |n| (1..=100_000_000).contains(n),
            )?,
            max_body_bytes: parse_setting(
                &lookup,
                "MAX_BODY_BYTES",
                defaults.max_body_bytes,
                "a number of bytes from 1024 to 6291456 (Lambda's 6 MiB payload limit)",
                |n| (1024..=6 * 1024 * 1024).contains(n),
            )?,
            max_response_bytes: parse_setting(
                &lookup,
                "MAX_RESPONSE_BYTES",
                defaults.max_response_bytes,
                "a number of bytes from 65536 to 6000000 (Lambda's 6 MB response payload \
                 limit less room for the API Gateway envelope)",
                |n| (65_536..=crate::response::DEFAULT_MAX_RESPONSE_BYTES).contains(n),
            )?,
            filter,
        })
    }

    /// [`Limits::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// A search body as sent. The vector, nearly all of it, is read by storage's vector
/// reader ([`storage::json_vector::from_json_object`]); unknown fields are refused.
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
    let raw =
        storage::json_vector::from_json_object(body, "vector", &mut rest, |raw: &mut RawSearch| {
            &mut raw.vector
        })
        .map_err(|e| {
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

    let namespace = grant.resolve(raw.namespace.as_deref())?;
    let vector = parse_vector(raw.vector, dimensions)?;
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
    let invalid = |message: String| ApiError::bad_request("invalid_vector", message);
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

    fn limits(pairs: &[(&str, &str)]) -> Result<Limits, ConfigError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Limits::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn limits_default_without_variables() {
        let l = limits(&[]).unwrap();
        let d = Limits::default();
        assert_eq!(
            (
                l.max_k,
                l.max_ef_search,
                l.default_ef_search,
                l.max_scan_tuples
            ),
            (
                d.max_k,
                d.max_ef_search,
                d.default_ef_search,
                d.max_scan_tuples
            )
        );
        assert_eq!(l.max_body_bytes, 1024 * 1024);
        assert_eq!(l.max_response_bytes, 6_000_000);
        assert_eq!(
            (
                l.filter.max_depth,
                l.filter.max_conditions,
                l.filter.max_in_values,
                l.filter.max_key_bytes,
                l.filter.max_nodes
            ),
            (6, 64, 1024, 256, 256)
        );
        // Blank counts as unset (CloudFormation renders empty parameters as "").
        assert_eq!(limits(&[("MAX_K", " ")]).unwrap().max_k, 1000);
    }

    #[test]
    fn every_limit_is_read_from_its_variable() {
        let l = limits(&[
            ("MAX_K", "50"),
            ("MAX_EF_SEARCH", "400"),
            ("DEFAULT_EF_SEARCH", "64"),
            ("MAX_SCAN_TUPLES", "5000"),
            ("MAX_BODY_BYTES", "65536"),
            ("MAX_RESPONSE_BYTES", "100000"),
            ("MAX_FILTER_DEPTH", "3"),
            ("MAX_FILTER_CONDITIONS", "8"),
            ("MAX_FILTER_IN_VALUES", "16"),
            ("MAX_FILTER_KEY_BYTES", " 32 "),
            ("MAX_FILTER_NODES", "40"),
        ])
        .unwrap();
        assert_eq!(
            (
                l.max_k,
                l.max_ef_search,
                l.default_ef_search,
                l.max_scan_tuples
            ),
            (50, 400, 64, 5000)
        );
        assert_eq!((l.max_body_bytes, l.max_response_bytes), (65536, 100_000));
        assert_eq!(
            (
                l.filter.max_depth,
                l.filter.max_conditions,
                l.filter.max_in_values,
                l.filter.max_key_bytes,
                l.filter.max_nodes
            ),
            (3, 8, 16, 32, 40)
        );
        // The configured limits are the ones requests meet.
        let body = json!({"vector": [1, 0, 0], "k": 51}).to_string();
        let err = parse_search(body.as_bytes(), 3, &l, &Grant::Requested).unwrap_err();
        assert!(err.message.contains("1 to 50 (MAX_K)"), "{}", err.message);
        let q = parse_search(br#"{"vector":[1,0,0]}"#, 3, &l, &Grant::Requested).unwrap();
        assert_eq!((q.ef_search, q.max_scan_tuples), (64, 5000));
    }

    #[test]
    fn a_lower_max_ef_search_lowers_the_default() {
        let l = limits(&[("MAX_EF_SEARCH", "40")]).unwrap();
        assert_eq!((l.max_ef_search, l.default_ef_search), (40, 40));
    }

    #[test]
    fn bad_limits_name_the_variable_the_value_and_the_range() {
        for (name, value, says) in [
            ("MAX_K", "0", "1 to 1000"),
            ("MAX_K", "1001", "1 to 1000"),
            ("MAX_K", "ten", "1 to 1000"),
            ("MAX_EF_SEARCH", "-1", "1 to 1000"),
            ("MAX_SCAN_TUPLES", "0", "1 to 100000000"),
            ("MAX_BODY_BYTES", "100", "1024 to 6291456"),
            ("MAX_BODY_BYTES", "1MiB", "1024 to 6291456"),
            ("MAX_FILTER_DEPTH", "0", "1 to 32"),
            ("MAX_FILTER_CONDITIONS", "2.5", "1 to 1000"),
            ("MAX_FILTER_IN_VALUES", "1000000", "1 to 100000"),
            ("MAX_FILTER_KEY_BYTES", "0", "1 to 65535"),
            ("MAX_FILTER_NODES", "0", "1 to 100000"),
            ("MAX_RESPONSE_BYTES", "6291456", "65536 to 6000000"),
            ("MAX_RESPONSE_BYTES", "1000", "65536 to 6000000"),
        ] {
            let err = limits(&[(name, value)]).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains(value) && err.contains(says),
                "{name}={value}: {err}"
            );
        }
        let err = limits(&[("MAX_EF_SEARCH", "200"), ("DEFAULT_EF_SEARCH", "300")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DEFAULT_EF_SEARCH") && err.contains("MAX_EF_SEARCH"),
            "{err}"
        );
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
            (err.status.as_u16(), err.code),
            (403, "namespace_forbidden")
        );
    }
}
