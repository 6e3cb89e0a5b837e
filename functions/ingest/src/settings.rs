//! The ingest function's settings: everything it reads from its environment, once, at
//! cold start (`main.rs`), into [`Settings`]; an invalid value stops the cold start with
//! an error naming the variable, the value and the accepted range.

use chrono::{DateTime, TimeDelta, Utc};
use storage::{parse_setting, Config, ConfigError, Function, Namespace, WriteOp};

use crate::message::{Reason, Rejection};

/// What the function reads from its environment (docs/ingest.md, "Configuration").
#[derive(Clone, Debug)]
pub struct Settings {
    /// `INGEST_DATABASE_URL` or `DATABASE_URL`, the pool and its timeouts.
    pub database: Config,
    /// What one message may carry (`MAX_CONTENT_BYTES`, `MAX_CLOCK_SKEW_S`, …).
    pub limits: Limits,
    /// `ALLOWED_NAMESPACES`: records of other namespaces are rejected (default: all allowed).
    pub allowed_namespaces: AllowedNamespaces,
}

impl Settings {
    /// Reads every setting through `lookup` (the environment at cold start, a map in
    /// tests). Absent or blank variables keep their defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            database: Config::for_function(Function::Ingest, &lookup)?,
            limits: Limits::from_lookup(&lookup)?,
            allowed_namespaces: AllowedNamespaces::from_lookup(&lookup)?,
        })
    }

    /// `database`, and every other setting at its default (as if unset); tools and tests
    /// change what they need.
    pub fn new(database: Config) -> Self {
        Self {
            database,
            limits: Limits::default(),
            allowed_namespaces: AllowedNamespaces::default(),
        }
    }
}

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

    /// Reads `MAX_CONTENT_BYTES`, `MAX_METADATA_BYTES`, `MAX_METADATA_DEPTH`,
    /// `MAX_CLOCK_SKEW_S` and `MIN_CREATED_AT` through `lookup` (the environment in
    /// production, a map in tests). Absent or blank variables keep their defaults; a
    /// value that does not parse or is out of range is an error naming the variable,
    /// the value and the accepted range.
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
            Some(allowed) if !allowed.contains(op.key().0) => Err(Rejection::new(
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn limits(pairs: &[(&str, &str)]) -> Result<Limits, ConfigError> {
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
    fn every_setting_is_read_once_through_the_lookup() {
        let map: std::collections::HashMap<&str, &str> = [
            (
                "INGEST_DATABASE_URL",
                "postgres://ingest@localhost:6432/kit",
            ),
            ("DATABASE_URL", "postgres://other@localhost:6432/kit"),
            ("MAX_CONTENT_BYTES", "1000"),
            ("ALLOWED_NAMESPACES", "acme"),
        ]
        .into();
        let settings = Settings::from_lookup(|k| map.get(k).map(|v| v.to_string())).unwrap();
        assert!(settings.database.database_url.contains("ingest@"));
        assert_eq!(settings.limits.max_content_bytes, 1000);
        assert_eq!(
            settings.allowed_namespaces,
            AllowedNamespaces::only(&["acme"]).unwrap()
        );
    }
}
