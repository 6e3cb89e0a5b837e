//! TLS towards PgBouncer: the mode and the CA every connection verifies the server against.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `DATABASE_SSLMODE` | `require`, `verify-ca` or `verify-full`; default: the URL's `sslmode`, else `verify-full` |
//! | `DATABASE_SSLROOTCERT_PEM` | the CA certificate(s), PEM text (on AWS: read from `DATABASE_CA_SECRET_ARN` by the credentials crate) |
//! | `DATABASE_SSLROOTCERT` | the CA certificate(s), a file path (local use) |
//!
//! Without either CA variable the URL's `sslrootcert` is used, and without that the public
//! web PKI roots: a private CA's certificate is then refused, never accepted unverified.
//! `disable`, `allow` and `prefer` can end in plaintext and are refused at startup, whether
//! they come from `DATABASE_SSLMODE` or from the URL.

use std::fmt;
use std::path::PathBuf;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::ConfigError;

/// The variable with the TLS mode.
pub const DATABASE_SSLMODE: &str = "DATABASE_SSLMODE";
/// The variable with the CA certificate(s) as PEM text.
pub const DATABASE_SSLROOTCERT_PEM: &str = "DATABASE_SSLROOTCERT_PEM";
/// The variable with the path of a PEM file holding the CA certificate(s).
pub const DATABASE_SSLROOTCERT: &str = "DATABASE_SSLROOTCERT";

const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// The modes the kit connects with: each one encrypts; the `verify-*` ones check the
/// server's certificate against the CA, `verify-full` also its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn as_str(self) -> &'static str {
        match self {
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn pg(self) -> PgSslMode {
        match self {
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }

    /// `where_` names the source in errors: `DATABASE_SSLMODE`, or the URL's `sslmode`.
    fn parse(value: &str, where_: &str) -> Result<SslMode, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            insecure @ ("disable" | "allow" | "prefer") => Err(ConfigError::Tls(format!(
                "{where_}={insecure} lets the connection to PgBouncer run in plaintext, readable \
                 and downgradable on the network; set {DATABASE_SSLMODE}=verify-full (the CA from \
                 DATABASE_CA_SECRET_ARN or {DATABASE_SSLROOTCERT})"
            ))),
            _ => Err(ConfigError::Tls(format!(
                "{where_}={value:?} is not valid: expected require, verify-ca or verify-full \
                 (verify-full unless you know why not)"
            ))),
        }
    }
}

/// Where the CA certificate(s) come from (a CA certificate is public: Debug shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// PEM text (`DATABASE_SSLROOTCERT_PEM`).
    Pem(String),
    /// A PEM file (`DATABASE_SSLROOTCERT`).
    File(PathBuf),
}

/// How connections use TLS; part of [`crate::Config`].
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// `None`: the URL's `sslrootcert`, if any, else the public web PKI roots.
    pub root_cert: Option<RootCert>,
}

impl Tls {
    /// Reads the variables through `lookup`; `database_url` gives the default mode.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        database_url: &str,
    ) -> Result<Tls, ConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mode = match non_empty(DATABASE_SSLMODE) {
            Some(value) => SslMode::parse(&value, DATABASE_SSLMODE)?,
            None => match url_parameter(database_url, "sslmode") {
                Some(value) => SslMode::parse(&value, "the database URL's sslmode")?,
                None => SslMode::VerifyFull,
            },
        };
        let root_cert = if let Some(pem) = non_empty(DATABASE_SSLROOTCERT_PEM) {
            if !pem.contains(PEM_CERTIFICATE) {
                return Err(ConfigError::Tls(format!(
                    "{DATABASE_SSLROOTCERT_PEM} holds no PEM certificate (no \"{PEM_CERTIFICATE}\" \
                     line): put the CA certificate that signed PgBouncer's certificate there \
                     (on AWS, in the secret DATABASE_CA_SECRET_ARN names)"
                )));
            }
            Some(RootCert::Pem(pem))
        } else if let Some(path) = non_empty(DATABASE_SSLROOTCERT) {
            let path = PathBuf::from(path.trim());
            match std::fs::read_to_string(&path) {
                Ok(text) if text.contains(PEM_CERTIFICATE) => {}
                Ok(_) => {
                    return Err(ConfigError::Tls(format!(
                        "{DATABASE_SSLROOTCERT}={} holds no PEM certificate: point it at the CA \
                         certificate that signed PgBouncer's certificate",
                        path.display()
                    )))
                }
                Err(error) => {
                    return Err(ConfigError::Tls(format!(
                        "{DATABASE_SSLROOTCERT}={} cannot be read ({error}): point it at the CA \
                         certificate that signed PgBouncer's certificate",
                        path.display()
                    )))
                }
            }
            Some(RootCert::File(path))
        } else {
            None
        };
        Ok(Tls { mode, root_cert })
    }

    /// `options` with this mode and CA (a URL's own `sslrootcert` stays when there is none).
    pub fn apply(&self, options: PgConnectOptions) -> PgConnectOptions {
        let options = options.ssl_mode(self.mode.pg());
        match &self.root_cert {
            Some(RootCert::Pem(pem)) => options.ssl_root_cert_from_pem(pem.as_bytes().to_vec()),
            Some(RootCert::File(path)) => options.ssl_root_cert(path),
            None => options,
        }
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ca = match &self.root_cert {
            Some(RootCert::Pem(pem)) => format!(
                "{DATABASE_SSLROOTCERT_PEM} ({} certificate(s))",
                pem.matches(PEM_CERTIFICATE).count()
            ),
            Some(RootCert::File(path)) => path.display().to_string(),
            None => "the URL's sslrootcert, else the public roots".to_owned(),
        };
        f.debug_struct("Tls")
            .field("mode", &self.mode.as_str())
            .field("ca", &ca)
            .finish()
    }
}

/// The decoded value of `name` in the URL's query, if present.
fn url_parameter(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.replace("%2D", "-").replace("%2d", "-"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn tls(pairs: &[(&str, &str)], url: &str) -> Result<Tls, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Tls::from_lookup(&|k: &str| map.get(k).cloned(), url)
    }

    #[test]
    fn verify_full_by_default() {
        let t = tls(&[], "postgres://u:p@pgbouncer.kit.internal:6432/kit").unwrap();
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert!(t.root_cert.is_none());
    }

    #[test]
    fn the_variable_wins_over_the_url() {
        let t = tls(
            &[(DATABASE_SSLMODE, "verify-ca")],
            "postgres://h/db?sslmode=verify-full",
        )
        .unwrap();
        assert_eq!(t.mode, SslMode::VerifyCa);
        let t = tls(&[], "postgres://h/db?sslmode=require").unwrap();
        assert_eq!(t.mode, SslMode::Require);
    }

    #[test]
    fn plaintext_modes_are_refused_from_either_source() {
        for mode in ["disable", "allow", "prefer", "PREFER"] {
            let error = tls(&[(DATABASE_SSLMODE, mode)], "postgres://h/db")
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(&format!("DATABASE_SSLMODE={}", mode.to_lowercase()))
                    && error.contains("plaintext")
                    && error.contains("set DATABASE_SSLMODE=verify-full"),
                "{error}"
            );
            let error = tls(&[], &format!("postgres://h/db?sslmode={mode}"))
                .unwrap_err()
                .to_string();
            assert!(error.contains("the database URL's sslmode"), "{error}");
        }
        // A safe variable does not excuse an unsafe URL: the variable wins.
        assert!(tls(
            &[(DATABASE_SSLMODE, "verify-full")],
            "postgres://h/db?sslmode=disable"
        )
        .is_ok());
    }

    #[test]
    fn an_unknown_mode_names_the_choices() {
        let error = tls(&[(DATABASE_SSLMODE, "verify_full")], "postgres://h/db")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"verify_full\"")
                && error.contains("require, verify-ca or verify-full"),
            "{error}"
        );
    }

    #[test]
    fn the_ca_comes_as_pem_text_or_a_file() {
        let t = tls(&[(DATABASE_SSLROOTCERT_PEM, CA)], "postgres://h/db").unwrap();
        assert_eq!(t.root_cert, Some(RootCert::Pem(CA.to_owned())));
        assert!(format!("{t:?}").contains("1 certificate(s)"), "{t:?}");

        let file = std::env::temp_dir().join(format!("kit-tls-ca-{}.pem", std::process::id()));
        std::fs::write(&file, CA).unwrap();
        let t = tls(
            &[(DATABASE_SSLROOTCERT, file.to_str().unwrap())],
            "postgres://h/db",
        )
        .unwrap();
        assert_eq!(t.root_cert, Some(RootCert::File(file.clone())));
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn a_ca_that_is_no_certificate_is_refused_at_startup() {
        let error = tls(
            &[(DATABASE_SSLROOTCERT_PEM, "arn:aws:...")],
            "postgres://h/db",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        let error = tls(
            &[(DATABASE_SSLROOTCERT, "/nonexistent/ca.pem")],
            "postgres://h/db",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("/nonexistent/ca.pem cannot be read"),
            "{error}"
        );
    }

    #[test]
    fn applied_options_carry_the_mode() {
        let t = tls(&[(DATABASE_SSLROOTCERT_PEM, CA)], "postgres://h/db").unwrap();
        let options: PgConnectOptions = "postgres://u:p@h/db".parse().unwrap();
        assert!(matches!(
            t.apply(options).get_ssl_mode(),
            PgSslMode::VerifyFull
        ));
    }
}
