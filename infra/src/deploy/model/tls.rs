//! `[tls]`: how each hop (functions → PgBouncer, PgBouncer → PostgreSQL) uses TLS.

use serde::{Deserialize, Serialize};

/// Where the PgBouncer image keeps the RDS CA bundle it verifies PostgreSQL against
/// (downloaded at image build and pinned by checksum in pgbouncer/Dockerfile).
pub const RDS_CA_BUNDLE_PATH: &str = "/etc/pgbouncer/kit/rds-ca-bundle.pem";

/// A libpq `sslmode`: how a client uses TLS towards its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling: `verify-full`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a client in this mode may end up talking in plaintext (`disable`, `allow`,
    /// `prefer`): anyone on the path can then downgrade or read the connection.
    pub fn allows_plaintext(self) -> bool {
        matches!(self, SslMode::Disable | SslMode::Allow | SslMode::Prefer)
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn verify_full() -> SslMode {
    SslMode::VerifyFull
}

fn default_pgbouncer_hostname() -> String {
    "pgbouncer.kit.internal".to_owned()
}

/// `[tls]`: TLS on the two hops and the name PgBouncer's certificate is issued for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The functions towards PgBouncer (`DATABASE_SSLMODE`), verified against the
    /// deployment's own CA (`kit tls issue`).
    #[serde(default = "verify_full")]
    pub client_sslmode: SslMode,
    /// PgBouncer towards PostgreSQL (`server_tls_sslmode`), verified against the RDS CA
    /// bundle in the image ([`RDS_CA_BUNDLE_PATH`]).
    #[serde(default = "verify_full")]
    pub server_sslmode: SslMode,
    /// The DNS name the functions reach PgBouncer by: a record in a private hosted zone
    /// (everything after the first label) the stack creates, pointing at the NLB.
    /// PgBouncer's certificate is issued for it.
    #[serde(default = "default_pgbouncer_hostname")]
    pub pgbouncer_hostname: String,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            client_sslmode: verify_full(),
            server_sslmode: verify_full(),
            pgbouncer_hostname: default_pgbouncer_hostname(),
        }
    }
}

impl Tls {
    /// The private hosted zone holding [`Tls::pgbouncer_hostname`]: its name without the
    /// first label (`pgbouncer.kit.internal` → `kit.internal`).
    pub fn hosted_zone(&self) -> &str {
        self.pgbouncer_hostname
            .split_once('.')
            .map(|(_, zone)| zone)
            .unwrap_or("")
    }
}
