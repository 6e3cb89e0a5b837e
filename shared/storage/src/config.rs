//! Database settings, read once from the environment at cold start.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::tls::Tls;

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
    /// `DATABASE_SSLMODE` and the CA (`DATABASE_SSLROOTCERT_PEM` / `DATABASE_SSLROOTCERT`):
    /// never plaintext (see [`crate::tls`]).
    pub tls: Tls,
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
    /// A TLS setting that would not verify or not encrypt; the message names the fix.
    #[error("{0}")]
    Tls(String),
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
            tls: Tls::from_lookup(&lookup, &database_url)?,
            database_url,
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
            .field("tls", &self.tls)
            .finish()
    }
}

/// A database URL as it may be shown in logs: `postgres://user:secret@host/db` →
/// `postgres://user:***@host/db`, and the value of every query parameter that can carry
/// a secret (`password`, `sslpassword`, anything naming a password, secret or token) is
/// `***` too, whatever its case or percent-encoding.
///
/// The URL is read by the parser sqlx connects with (`url::Url`), so what is hidden is
/// exactly what would be used as a password, including a `password` given as a query
/// parameter (which sqlx accepts). A text that does not parse as a URL is shown as `***`
/// as a whole: it cannot be connected with either, and where its secret sits is unknown.
/// The fragment, which sqlx ignores, is dropped.
pub fn redact(url: &str) -> String {
    const HIDDEN: &str = "***";
    let Ok(mut parsed) = url::Url::parse(url) else {
        return HIDDEN.into();
    };
    if parsed.password().is_some() && parsed.set_password(Some(HIDDEN)).is_err() {
        return HIDDEN.into();
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if is_secret_parameter(&key) {
                    HIDDEN.to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.set_fragment(None);
    parsed.into()
}

/// Whether a (percent-decoded) query parameter name can hold a secret.
fn is_secret_parameter(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "secret", "token"]
        .iter()
        .any(|word| key.contains(word))
}

/// The query parameters sqlx 0.8's `PgConnectOptions` reads from a URL. It logs any
/// other one at WARN *with its value* (`ignoring unrecognized connect parameter`), so
/// `?sslpassword=…`, which it does not support, would put a secret in the logs:
/// [`connect_url`] drops the others first and logs only their names.
const SQLX_URL_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// `url` parsed as sqlx parses it, without the query parameters sqlx would ignore
/// (each named in one WARN line, its value never shown). The error never contains the
/// URL.
pub(crate) fn connect_url(url: &str) -> Result<url::Url, ConfigError> {
    let mut parsed = url::Url::parse(url).map_err(ConfigError::invalid_url)?;
    if parsed.query().is_none() {
        return Ok(parsed);
    }
    let (kept, ignored): (Vec<_>, Vec<_>) = parsed
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .partition(|(key, _)| {
            SQLX_URL_PARAMETERS.contains(&key.as_str())
                || (key.starts_with("options[") && key.ends_with(']'))
        });
    for (key, _) in &ignored {
        tracing::warn!(
            parameter = %key,
            "ignoring a database URL parameter the driver does not support (its value is not logged)"
        );
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok(parsed)
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
mod tests;
