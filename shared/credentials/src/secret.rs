//! The RDS-style secret and the `postgres://` URL built from it.

use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use crate::CredentialsError;

/// Characters left as they are in the URL's user, password and database name: RFC 3986's
/// unreserved set. Everything else (`@ : / ? # % [ ]`, spaces, non-ASCII, ...) is
/// percent-encoded, which sqlx (through the `url` crate) decodes back.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A database login read from a Secrets Manager secret in the RDS style:
/// `{"engine":"postgres","username":...,"password":...,"host":...,"port":6432,"dbname":...}`.
///
/// `Debug` is written by hand: it never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSecret {
    pub username: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
}

impl fmt::Debug for DatabaseSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSecret")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .finish()
    }
}

impl DatabaseSecret {
    /// Parses the secret's string value; `arn` only goes into errors.
    ///
    /// Errors name keys, never values: the JSON is parsed into a generic value first, so a
    /// type mismatch cannot echo the password the way a typed deserializer's message would.
    pub fn parse(arn: &str, secret_string: &str) -> Result<Self, CredentialsError> {
        let object = match serde_json::from_str::<Value>(secret_string) {
            Ok(Value::Object(object)) => object,
            Ok(other) => {
                return Err(CredentialsError::NotJson {
                    arn: arn.to_owned(),
                    reason: format!("it is a JSON {}", json_kind(&other)),
                })
            }
            // serde_json's syntax errors give a category and a position, not the input.
            Err(error) => {
                return Err(CredentialsError::NotJson {
                    arn: arn.to_owned(),
                    reason: error.to_string(),
                })
            }
        };
        let fields = Fields {
            arn,
            object: &object,
        };
        if let Some(engine) = fields.optional_string("engine")? {
            if !engine.to_ascii_lowercase().contains("postgres") {
                return Err(CredentialsError::WrongEngine {
                    arn: arn.to_owned(),
                    engine: engine.to_owned(),
                });
            }
        }
        Ok(Self {
            username: fields.text("username")?.to_owned(),
            password: fields.text("password")?.to_owned(),
            host: fields.text("host")?.trim().to_owned(),
            port: fields.port("port")?,
            dbname: fields.text("dbname")?.to_owned(),
        })
    }

    /// `postgres://user:password@host:port/dbname`, with the user, password and database name
    /// percent-encoded (sqlx decodes them) and an IPv6 host in brackets.
    pub fn database_url(&self) -> String {
        self.database_url_via(None)
    }

    /// [`Self::database_url`], but connecting to `proxy` instead of the secret's host and
    /// port when there is one: the secret names the database (the rotation function logs
    /// in there), the function reaches it through PgBouncer.
    pub fn database_url_via(&self, proxy: Option<&ProxyEndpoint>) -> String {
        let (host, port) = match proxy {
            Some(proxy) => (proxy.host.as_str(), proxy.port),
            None => (self.host.as_str(), self.port),
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        format!(
            "postgres://{}:{}@{}:{}/{}",
            utf8_percent_encode(&self.username, COMPONENT),
            utf8_percent_encode(&self.password, COMPONENT),
            host,
            port,
            utf8_percent_encode(&self.dbname, COMPONENT),
        )
    }
}

/// The variable naming the host the functions connect to instead of the secret's (the
/// PgBouncer tier's load balancer).
pub const DATABASE_PROXY_HOST: &str = "DATABASE_PROXY_HOST";
/// The port that goes with [`DATABASE_PROXY_HOST`] (PgBouncer's).
pub const DATABASE_PROXY_PORT: &str = "DATABASE_PROXY_PORT";

/// Where to connect instead of the secret's `host` and `port`: the template sets
/// `DATABASE_PROXY_HOST` and `DATABASE_PROXY_PORT` to the PgBouncer endpoint, while the
/// secret keeps the database's own endpoint in the standard RDS shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyEndpoint {
    pub host: String,
    pub port: u16,
}

impl ProxyEndpoint {
    /// The override through `lookup`: `None` when neither variable is set (blank counts as
    /// unset); an error when only one is, or the port is not a port. `arn` only goes into
    /// errors.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        arn: &str,
    ) -> Result<Option<Self>, CredentialsError> {
        let read = |name| lookup(name).filter(|value| !value.trim().is_empty());
        let setting = |name, value: Option<String>, expected| CredentialsError::Setting {
            arn: arn.to_owned(),
            name,
            value: value.unwrap_or_default(),
            expected,
        };
        match (read(DATABASE_PROXY_HOST), read(DATABASE_PROXY_PORT)) {
            (None, None) => Ok(None),
            (Some(host), Some(port)) => {
                let parsed = port.trim().parse::<u16>().ok().filter(|&p| p != 0);
                let Some(port) = parsed else {
                    return Err(setting(
                        DATABASE_PROXY_PORT,
                        Some(port),
                        "a port number from 1 to 65535 (PgBouncer's, e.g. 6432)",
                    ));
                };
                Ok(Some(Self {
                    host: host.trim().to_owned(),
                    port,
                }))
            }
            (Some(_), None) => Err(setting(
                DATABASE_PROXY_PORT,
                None,
                "set together with DATABASE_PROXY_HOST: PgBouncer's port, e.g. 6432",
            )),
            (None, Some(port)) => Err(setting(
                DATABASE_PROXY_HOST,
                Some(port),
                "set together with DATABASE_PROXY_PORT: PgBouncer's host (the load balancer's DNS name)",
            )),
        }
    }
}

/// Typed access to the secret's keys, with errors that name the key and the secret.
struct Fields<'a> {
    arn: &'a str,
    object: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn missing(&self, key: &'static str) -> CredentialsError {
        CredentialsError::MissingKey {
            arn: self.arn.to_owned(),
            key,
        }
    }

    fn invalid(&self, key: &'static str, expected: &'static str) -> CredentialsError {
        CredentialsError::InvalidKey {
            arn: self.arn.to_owned(),
            key,
            expected,
        }
    }

    fn optional_string(&self, key: &'static str) -> Result<Option<&'a str>, CredentialsError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(value)),
            Some(_) => Err(self.invalid(key, "a string")),
        }
    }

    /// A required, non-blank string.
    fn text(&self, key: &'static str) -> Result<&'a str, CredentialsError> {
        let value = self
            .optional_string(key)?
            .ok_or_else(|| self.missing(key))?;
        if value.trim().is_empty() {
            return Err(self.invalid(key, "a non-empty string"));
        }
        Ok(value)
    }

    /// A port: RDS stores a number, hand-written secrets sometimes a string.
    fn port(&self, key: &'static str) -> Result<u16, CredentialsError> {
        const EXPECTED: &str = "a port number from 1 to 65535 (PgBouncer's, e.g. 6432)";
        let port = match self.object.get(key) {
            None | Some(Value::Null) => return Err(self.missing(key)),
            Some(Value::Number(number)) => number.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(Value::String(text)) => text.trim().parse::<u16>().ok(),
            Some(_) => None,
        };
        port.filter(|&port| port != 0)
            .ok_or_else(|| self.invalid(key, EXPECTED))
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests;
