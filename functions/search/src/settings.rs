//! The search function's settings: everything it reads from its environment, once, at
//! cold start (`main.rs`), into [`Settings`]; an invalid value stops the cold start with
//! an error naming the variable, the value and what is accepted.

use storage::{parse_setting, Config, ConfigError, Function};

use crate::auth::Auth;
use crate::filter::FilterLimits;
use crate::response::DEFAULT_MAX_RESPONSE_BYTES;

/// What the function reads from its environment (docs/search.md, "Limits";
/// docs/security.md for `AUTH_MODE` and `NAMESPACE_CLAIM`).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `SEARCH_DATABASE_URL` or `DATABASE_URL`, the pool and its timeouts.
    pub database: Config,
    /// Request limits (`MAX_K`, `MAX_BODY_BYTES`, the filter bounds, …).
    pub limits: Limits,
    /// `AUTH_MODE` and `NAMESPACE_CLAIM`: where a request's namespace may come from.
    pub auth: Auth,
}

impl Settings {
    /// Reads every setting through `lookup` (the environment at cold start, a map in
    /// tests). Absent or blank variables keep their defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            database: Config::for_function(Function::Search, &lookup)?,
            limits: Limits::from_lookup(&lookup)?,
            auth: Auth::from_lookup(&lookup)?,
        })
    }

    /// `database`, and every other setting at its default (as if unset: `AUTH_MODE=jwt`);
    /// tools and tests change what they need.
    pub fn new(database: Config) -> Self {
        Self {
            database,
            limits: Limits::default(),
            auth: Auth::with_mode(crate::AuthMode::Jwt),
        }
    }
}

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
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
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
                |n| (65_536..=DEFAULT_MAX_RESPONSE_BYTES).contains(n),
            )?,
            filter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Grant;
    use crate::request::parse_search;
    use serde_json::json;

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
    fn every_setting_is_read_once_through_the_lookup() {
        let map: std::collections::HashMap<&str, &str> = [
            (
                "SEARCH_DATABASE_URL",
                "postgres://search@localhost:6432/kit",
            ),
            ("DATABASE_URL", "postgres://other@localhost:6432/kit"),
            ("MAX_K", "50"),
            ("AUTH_MODE", "iam"),
        ]
        .into();
        let settings = Settings::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap();
        assert!(settings.database.database_url.contains("search@"));
        assert_eq!(settings.limits.max_k, 50);
        assert_eq!(settings.auth.mode, crate::AuthMode::Iam);
        let defaults = Settings::new(settings.database.clone());
        assert_eq!(defaults.auth, Auth::from_lookup(|_| None).unwrap());
    }
}
