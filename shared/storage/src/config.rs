//! Database settings, read once from the environment at cold start.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How to reach the database and how patient to be with it.
///
/// Defaults suit Lambda: one connection per execution environment, opened lazily and
/// reused across invocations; short acquire and statement timeouts so a sick database
/// turns into a quick, retryable error instead of a function timeout.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL`: where functions connect (through PgBouncer).
    pub database_url: String,
    /// `DATABASE_READ_URL`: optional read replica for searches and item reads.
    pub read_url: Option<String>,
    /// `DB_MAX_CONNECTIONS` (default 1): connections per execution environment.
    pub max_connections: u32,
    /// `DB_ACQUIRE_TIMEOUT_MS` (default 2000): wait for a connection at most this long.
    pub acquire_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT_MS` (default 5000): applied transaction-locally to every statement.
    pub statement_timeout: Duration,
    /// `DB_IDLE_TIMEOUT_MS` (default 300000): close a connection idle this long.
    pub idle_timeout: Duration,
}

/// A setting that is missing or does not parse; the message names the variable and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set: point it at PostgreSQL (through PgBouncer), e.g. postgres://user:password@host:6432/db")]
    Missing { name: &'static str },
    #[error("{name}={value:?} is not valid: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("the database URL does not parse: {0}")]
    InvalidUrl(String),
}

impl ConfigError {
    pub(crate) fn invalid_url(error: impl fmt::Display) -> Self {
        // sqlx's message never contains the password; the URL itself is not echoed.
        Self::InvalidUrl(error.to_string())
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(None, lookup)
    }

    /// Like [`Config::from_lookup`] for one function: its own variable
    /// ([`Function::url_variable`], e.g. `SEARCH_DATABASE_URL`) wins over `DATABASE_URL`.
    /// Locally every function runs in one environment (`cargo lambda watch` shares its
    /// own), and each still logs in as its own role; on AWS neither is usually set and
    /// `DATABASE_URL` comes from the function's secret.
    pub fn for_function(
        function: Function,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::read(Some(function), lookup)
    }

    fn read(
        function: Option<Function>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let database_url = function
            .and_then(|f| non_empty(f.url_variable()))
            .or_else(|| non_empty("DATABASE_URL"))
            .ok_or(ConfigError::Missing {
                name: "DATABASE_URL",
            })?;
        Ok(Self {
            database_url,
            read_url: non_empty("DATABASE_READ_URL"),
            max_connections: parse_setting(
                &lookup,
                "DB_MAX_CONNECTIONS",
                1,
                "an integer from 1 to 100",
                |n| (1..=100).contains(n),
            )?,
            acquire_timeout: millis_or(&lookup, "DB_ACQUIRE_TIMEOUT_MS", 2_000)?,
            statement_timeout: millis_or(&lookup, "DB_STATEMENT_TIMEOUT_MS", 5_000)?,
            idle_timeout: millis_or(&lookup, "DB_IDLE_TIMEOUT_MS", 300_000)?,
        })
    }

    /// The same settings pointing at another database URL (tests, the CLI).
    pub fn with_url(&self, url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            ..self.clone()
        }
    }
}

/// One of the kit's three functions, each logging in as its own role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    Ingest,
    Search,
    Purge,
}

impl Function {
    pub const ALL: [Function; 3] = [Function::Ingest, Function::Search, Function::Purge];

    /// `ingest`, `search`, `purge`: the crate and the `kit.toml` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Ingest => "ingest",
            Function::Search => "search",
            Function::Purge => "purge",
        }
    }

    /// The variable naming this function's own database URL; it wins over `DATABASE_URL`.
    pub fn url_variable(self) -> &'static str {
        match self {
            Function::Ingest => "INGEST_DATABASE_URL",
            Function::Search => "SEARCH_DATABASE_URL",
            Function::Purge => "PURGE_DATABASE_URL",
        }
    }
}

/// Secrets stay out of logs: URLs are shown without their password.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact(&self.database_url))
            .field("read_url", &self.read_url.as_deref().map(redact))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

/// Reads one optional setting through `lookup`: absent or blank gives `default`; a value
/// that does not parse or fails `valid` is an error naming the variable and `expected`.
/// Every function crate reads its own settings with this, so all report errors alike.
pub fn parse_setting<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    expected: &'static str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, ConfigError> {
    match lookup(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(raw) => {
            raw.trim()
                .parse::<T>()
                .ok()
                .filter(|v| valid(v))
                .ok_or(ConfigError::Invalid {
                    name,
                    value: raw,
                    expected,
                })
        }
    }
}

fn millis_or(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default_ms: u64,
) -> Result<Duration, ConfigError> {
    parse_setting(
        lookup,
        name,
        default_ms,
        "milliseconds from 1 to 900000",
        |ms| (1..=900_000).contains(ms),
    )
    .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_suit_lambda() {
        let c = config(&[("DATABASE_URL", "postgres://u:p@h/db")]).unwrap();
        assert_eq!(c.max_connections, 1);
        assert_eq!(c.acquire_timeout, Duration::from_secs(2));
        assert_eq!(c.statement_timeout, Duration::from_secs(5));
        assert!(c.read_url.is_none());
    }

    #[test]
    fn a_function_s_own_url_wins_over_database_url() {
        let map: HashMap<&str, &str> = [
            ("DATABASE_URL", "postgres://kit_ingest:p@h/db"),
            ("SEARCH_DATABASE_URL", "postgres://kit_search:p@h/db"),
            ("PURGE_DATABASE_URL", " "),
        ]
        .into();
        let lookup = |k: &str| map.get(k).map(|v| v.to_string());
        let url = |f| Config::for_function(f, lookup).unwrap().database_url;
        assert_eq!(url(Function::Search), "postgres://kit_search:p@h/db");
        assert_eq!(url(Function::Purge), "postgres://kit_ingest:p@h/db");
        assert_eq!(
            Config::from_lookup(lookup).unwrap().database_url,
            "postgres://kit_ingest:p@h/db"
        );
    }

    #[test]
    fn missing_url_names_the_variable() {
        let err = config(&[]).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn bad_numbers_name_the_variable_and_the_range() {
        let err = config(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("DB_MAX_CONNECTIONS", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("DB_MAX_CONNECTIONS") && err.contains("1 to 100"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_hides_passwords() {
        let c = config(&[("DATABASE_URL", "postgres://app:s3cret@h:6432/db")]).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("app:***@h:6432/db"),
            "{shown}"
        );
    }
}
