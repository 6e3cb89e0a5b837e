//! The purge function's settings: everything it reads from its environment, once, at
//! cold start (`main.rs`), into [`Settings`]; an invalid value stops the cold start with
//! an error naming the variable, the value and the accepted range.

use std::time::Duration;

use storage::{parse_setting, Config, ConfigError, Function};

/// What the function reads from its environment (docs/purge.md, "Settings").
#[derive(Clone, Debug)]
pub struct Settings {
    /// `PURGE_DATABASE_URL` or `DATABASE_URL`, the pool and its timeouts.
    pub database: Config,
    /// `RETENTION_DAYS` (default 30): retention for namespaces without an override.
    pub retention_days: u32,
    /// `PURGE_BATCH_SIZE` (default 1000): rows per delete transaction.
    pub batch_size: u32,
    /// `PURGE_SAFETY_MARGIN_MS` (default 5000): no batch starts closer than this to the deadline.
    pub safety_margin: Duration,
}

impl Settings {
    /// Reads every setting through `lookup` (the environment at cold start, a map in
    /// tests). Absent or blank variables keep their defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::new(Config::for_function(Function::Purge, &lookup)?);
        Ok(Self {
            retention_days: parse_setting(
                &lookup,
                "RETENTION_DAYS",
                defaults.retention_days,
                "whole days from 1 to 36500",
                |n| (1..=36_500).contains(n),
            )?,
            batch_size: parse_setting(
                &lookup,
                "PURGE_BATCH_SIZE",
                defaults.batch_size,
                "rows from 1 to 100000",
                |n| (1..=100_000).contains(n),
            )?,
            safety_margin: parse_setting(
                &lookup,
                "PURGE_SAFETY_MARGIN_MS",
                defaults.safety_margin.as_millis() as u64,
                "milliseconds from 0 to 600000",
                |n| *n <= 600_000,
            )
            .map(Duration::from_millis)?,
            database: defaults.database,
        })
    }

    /// `database`, and every other setting at its default (as if unset); tools and tests
    /// change what they need.
    pub fn new(database: Config) -> Self {
        Self {
            database,
            retention_days: 30,
            batch_size: 1000,
            safety_margin: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name=value`, and the database every function needs.
    fn only(name: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |k| match k {
            "DATABASE_URL" => Some("postgres://purge@localhost:6432/kit".to_owned()),
            _ => (k == name).then(|| value.to_owned()),
        }
    }

    #[test]
    fn settings_come_from_the_environment_with_named_errors() {
        let s = Settings::from_lookup(only("RETENTION_DAYS", "7")).unwrap();
        assert_eq!((s.retention_days, s.batch_size), (7, 1000));
        let err = Settings::from_lookup(only("PURGE_BATCH_SIZE", "0")).unwrap_err();
        assert!(err.to_string().contains("PURGE_BATCH_SIZE"), "{err}");
    }

    #[test]
    fn the_function_reads_its_own_database_url_first() {
        let s = Settings::from_lookup(only(
            "PURGE_DATABASE_URL",
            "postgres://own@localhost:6432/kit",
        ))
        .unwrap();
        assert!(s.database.database_url.contains("own@"));
    }
}
