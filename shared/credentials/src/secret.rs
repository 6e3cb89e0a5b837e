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
mod tests {
    use super::*;
    use percent_encoding::percent_decode_str;
    use url::Url;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kit/ingest-AbCdEf";
    const PASSWORD: &str = "p@ss:w/o?r#d%20[]!$&'()*+,;= \"\\é🔑";

    fn rds_json(password: &str) -> String {
        serde_json::json!({
            "engine": "postgres",
            "username": "kit_ingest",
            "password": password,
            "host": "pgbouncer-nlb-0123.elb.eu-west-1.amazonaws.com",
            "port": 6432,
            "dbname": "kit",
        })
        .to_string()
    }

    /// Decodes a URL the way sqlx's `PgConnectOptions` does: `url::Url`, then percent-decoding
    /// of the user, password and path.
    fn decode_like_sqlx(database_url: &str) -> (String, String, String, u16, String) {
        let url = Url::parse(database_url).expect("the URL parses");
        let decode = |text: &str| percent_decode_str(text).decode_utf8().unwrap().into_owned();
        (
            decode(url.username()),
            decode(url.password().expect("a password")),
            url.host_str().expect("a host").to_owned(),
            url.port().expect("a port"),
            decode(url.path().trim_start_matches('/')),
        )
    }

    #[test]
    fn parses_the_rds_secret_and_builds_the_url() {
        let secret = DatabaseSecret::parse(ARN, &rds_json("s3cret")).unwrap();
        assert_eq!(
            secret,
            DatabaseSecret {
                username: "kit_ingest".into(),
                password: "s3cret".into(),
                host: "pgbouncer-nlb-0123.elb.eu-west-1.amazonaws.com".into(),
                port: 6432,
                dbname: "kit".into(),
            }
        );
        assert_eq!(
            secret.database_url(),
            "postgres://kit_ingest:s3cret@pgbouncer-nlb-0123.elb.eu-west-1.amazonaws.com:6432/kit"
        );
    }

    #[test]
    fn special_characters_round_trip_through_url_parsing() {
        let passwords = [
            PASSWORD,
            "@",
            ":",
            "/",
            "?",
            "#",
            "%",
            "%41",
            "a@b:c/d?e#f%g",
            "+plus space",
            "@@::",
        ];
        for password in passwords {
            let secret = DatabaseSecret {
                username: "user:with@odd/chars".into(),
                password: password.into(),
                host: "db.internal".into(),
                port: 6432,
                dbname: "kit db/1".into(),
            };
            let url = secret.database_url();
            // One '@' and no query or fragment: nothing in the user or password leaked into
            // the URL's structure (storage's redaction splits on the last '@', too).
            assert_eq!(url.matches('@').count(), 1, "{url}");
            let parsed = Url::parse(&url).unwrap();
            assert_eq!((parsed.query(), parsed.fragment()), (None, None), "{url}");
            let (user, pass, host, port, dbname) = decode_like_sqlx(&url);
            assert_eq!(user, secret.username, "{url}");
            assert_eq!(pass, password, "{url}");
            assert_eq!(host, "db.internal", "{url}");
            assert_eq!(port, 6432, "{url}");
            assert_eq!(dbname, "kit db/1", "{url}");
        }
    }

    #[test]
    fn the_proxy_override_wins_over_the_secrets_host_and_port() {
        let mut rds = DatabaseSecret::parse(ARN, &rds_json("s3cret")).unwrap();
        rds.host = "kit.cluster-abc.eu-west-1.rds.amazonaws.com".into();
        rds.port = 5432;
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let proxy = ProxyEndpoint::from_lookup(
            &env(&[
                (DATABASE_PROXY_HOST, " pgbouncer-nlb.elb.amazonaws.com "),
                (DATABASE_PROXY_PORT, "6432"),
            ]),
            ARN,
        )
        .unwrap();
        assert_eq!(
            rds.database_url_via(proxy.as_ref()),
            "postgres://kit_ingest:s3cret@pgbouncer-nlb.elb.amazonaws.com:6432/kit"
        );
        // Without it (blank counts as unset), the secret's own host and port.
        let none = ProxyEndpoint::from_lookup(&env(&[(DATABASE_PROXY_HOST, " ")]), ARN).unwrap();
        assert_eq!(none, None);
        assert_eq!(
            rds.database_url_via(none.as_ref()),
            "postgres://kit_ingest:s3cret@kit.cluster-abc.eu-west-1.rds.amazonaws.com:5432/kit"
        );
        assert_eq!(rds.database_url(), rds.database_url_via(None));
        // One without the other, or a port that is not one, is an error naming the variable.
        for (pairs, name) in [
            (&[(DATABASE_PROXY_HOST, "h")][..], DATABASE_PROXY_PORT),
            (&[(DATABASE_PROXY_PORT, "6432")][..], DATABASE_PROXY_HOST),
            (
                &[(DATABASE_PROXY_HOST, "h"), (DATABASE_PROXY_PORT, "0")][..],
                DATABASE_PROXY_PORT,
            ),
        ] {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let lookup = move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            };
            let error = ProxyEndpoint::from_lookup(&lookup, ARN).unwrap_err();
            assert!(
                matches!(&error, CredentialsError::Setting { name: named, .. } if *named == name),
                "{error:?}"
            );
        }
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        let secret = DatabaseSecret {
            username: "u".into(),
            password: "p".into(),
            host: "fd00::1".into(),
            port: 6432,
            dbname: "kit".into(),
        };
        let url = secret.database_url();
        assert_eq!(url, "postgres://u:p@[fd00::1]:6432/kit");
        assert_eq!(decode_like_sqlx(&url).2, "[fd00::1]");
    }

    #[test]
    fn port_may_be_a_string_and_engine_may_be_absent() {
        let json = r#"{"username":"u","password":"p","host":"h","port":"6432","dbname":"d"}"#;
        assert_eq!(DatabaseSecret::parse(ARN, json).unwrap().port, 6432);
        let aurora = r#"{"engine":"aurora-postgresql","username":"u","password":"p","host":"h","port":5432,"dbname":"d"}"#;
        assert!(DatabaseSecret::parse(ARN, aurora).is_ok());
    }

    #[test]
    fn each_missing_key_is_named() {
        for key in ["username", "password", "host", "port", "dbname"] {
            let mut object: Map<String, Value> = serde_json::from_str(&rds_json("pw")).unwrap();
            object.remove(key);
            let error = DatabaseSecret::parse(ARN, &Value::Object(object).to_string()).unwrap_err();
            match &error {
                CredentialsError::MissingKey { key: named, arn } => {
                    assert_eq!(*named, key);
                    assert_eq!(arn, ARN);
                }
                other => panic!("expected MissingKey for {key}, got {other:?}"),
            }
            let message = error.to_string();
            assert!(
                message.contains(&format!("\"{key}\"")) && message.contains(ARN),
                "{message}"
            );
        }
    }

    #[test]
    fn invalid_values_are_named_without_echoing_them() {
        let cases = [
            (
                r#"{"username":"u","password":17,"host":"h","port":1,"dbname":"d"}"#,
                "password",
            ),
            (
                r#"{"username":"u","password":"","host":"h","port":1,"dbname":"d"}"#,
                "password",
            ),
            (
                r#"{"username":"u","password":"p","host":"  ","port":1,"dbname":"d"}"#,
                "host",
            ),
            (
                r#"{"username":"u","password":"p","host":"h","port":70000,"dbname":"d"}"#,
                "port",
            ),
            (
                r#"{"username":"u","password":"p","host":"h","port":"SECRETVALUE","dbname":"d"}"#,
                "port",
            ),
            (
                r#"{"username":"u","password":"p","host":"h","port":0,"dbname":"d"}"#,
                "port",
            ),
            (
                r#"{"username":["u"],"password":"p","host":"h","port":1,"dbname":"d"}"#,
                "username",
            ),
        ];
        for (json, key) in cases {
            let error = DatabaseSecret::parse(ARN, json).unwrap_err();
            assert!(
                matches!(&error, CredentialsError::InvalidKey { key: named, .. } if *named == key),
                "{json}: {error:?}"
            );
            assert!(!error.to_string().contains("SECRETVALUE"), "{error}");
        }
    }

    #[test]
    fn not_json_and_wrong_engine() {
        for text in [
            "postgres://u:SECRETVALUE@h/d",
            "",
            "[1,2]",
            "\"SECRETVALUE\"",
            "{\"password\": \"SECRETVALUE",
        ] {
            let error = DatabaseSecret::parse(ARN, text).unwrap_err();
            assert!(
                matches!(error, CredentialsError::NotJson { .. }),
                "{text}: {error:?}"
            );
            let message = error.to_string();
            assert!(
                message.contains(ARN) && !message.contains("SECRETVALUE"),
                "{message}"
            );
        }
        let mysql = r#"{"engine":"mysql","username":"u","password":"p","host":"h","port":3306,"dbname":"d"}"#;
        let error = DatabaseSecret::parse(ARN, mysql).unwrap_err();
        assert!(
            matches!(error, CredentialsError::WrongEngine { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let secret = DatabaseSecret::parse(ARN, &rds_json("SECRETVALUE")).unwrap();
        let debug = format!("{secret:?} {secret:#?}");
        assert!(!debug.contains("SECRETVALUE"), "{debug}");
        assert!(
            debug.contains("<redacted>") && debug.contains("kit_ingest"),
            "{debug}"
        );
    }
}
