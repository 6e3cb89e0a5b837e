//! Database credentials for the kit's Lambda functions.
//!
//! Locally a function gets `DATABASE_URL`. On AWS the SAM template gives it
//! `DATABASE_SECRET_ARN` instead: a Secrets Manager secret holding RDS-style JSON,
//! `{"engine":"postgres","username":…,"password":…,"host":…,"port":5432,"dbname":…}`,
//! whose host and port are the database's own (Secrets Manager's rotation function logs in
//! there). The template also sets `DATABASE_PROXY_HOST` and `DATABASE_PROXY_PORT`, the
//! PgBouncer tier's load balancer: when set, the URL connects there instead of to the
//! secret's host and port ([`ProxyEndpoint`]). [`resolve_database_url`] turns that
//! secret into a `postgres://` URL at cold start, so that `storage::Config` never has to
//! know where the URL came from (and [`SecretSource`] reads it again after a rotation, see
//! below):
//!
//! | environment | result |
//! | --- | --- |
//! | `DATABASE_URL` set (non-blank) | `Ok(None)`: nothing to do, storage reads it |
//! | else `DATABASE_SECRET_ARN` set | `Ok(Some(url))`, read with `aws-config` and `GetSecretValue` |
//! | neither | `Ok(None)`: storage then reports the missing `DATABASE_URL` |
//!
//! `DATABASE_CA_SECRET_ARN` is read the same way, at the same time (module `ca`): the CA
//! certificate(s) PgBouncer's certificate is verified against, handed to storage as
//! `DATABASE_SSLROOTCERT_PEM` by [`Environment::get`].
//!
//! The AWS side is configured the usual `aws-config` way: region from `AWS_REGION`,
//! credentials from the execution role (Lambda's `AWS_ACCESS_KEY_ID`, ...), and
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_SECRETS_MANAGER` for a local emulator.
//!
//! # Usage in a function's `main.rs`
//!
//! ```ignore
//! let env = credentials::Environment::load().await?;
//! let settings = search::Settings::from_lookup(|name| env.get(name))?;
//! tracing::info!(?settings, "cold start"); // storage::Config's Debug redacts the password
//! let mut state = search::State::new(settings)?;
//! // After a rotation the database refuses the old password: re-read the secret then.
//! state.db.set_credential_source(env.credential_source());
//! ```
//!
//! # Rotation
//!
//! When PostgreSQL or PgBouncer refuses the login (`storage::ErrorClass::Credentials`), the
//! database handle asks the [`SecretSource`] for the secret again, rebuilds its pool with
//! the credentials read and runs the operation once more. The secret is re-read at most
//! once per `DATABASE_SECRET_REREAD_INTERVAL_MS` (default 10 000) per execution
//! environment, so a wrong password in the secret does not hammer Secrets Manager.
//!
//! # Secrets stay secret
//!
//! The returned URL contains the password: pass it to `storage::Config` and do not log it.
//! Nothing in this crate logs it, [`DatabaseSecret`]'s `Debug` redacts it, and no
//! [`CredentialsError`] message contains any value read from the secret.

mod ca;
mod error;
mod reread;
mod secret;

pub use ca::{
    fetch_database_ca, resolve_database_ca, resolve_database_ca_with, DATABASE_CA_SECRET_ARN,
    DATABASE_SSLROOTCERT, DATABASE_SSLROOTCERT_PEM,
};

pub use error::CredentialsError;
pub use reread::{
    RereadError, SecretSource, DATABASE_LOGIN_WAIT_MS, DATABASE_SECRET_REREAD_INTERVAL_MS,
    DEFAULT_LOGIN_WAIT, DEFAULT_REREAD_INTERVAL,
};
pub use secret::{DatabaseSecret, ProxyEndpoint, DATABASE_PROXY_HOST, DATABASE_PROXY_PORT};

/// The SDK crates, re-exported so callers (and tests) configure the same versions.
pub use aws_config;
pub use aws_sdk_secretsmanager;

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::Client;
use aws_smithy_http_client::tls;
use reread::reread_settings;

/// The variable with the database URL (local runs); when set, no secret is read.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// The variable with the ARN (or name) of the Secrets Manager secret (AWS).
pub const DATABASE_SECRET_ARN: &str = "DATABASE_SECRET_ARN";

/// Connecting to Secrets Manager: a VPC endpoint or NAT answers in milliseconds; a subnet
/// without a route never does, and the function should fail with a clear error well within
/// Lambda's 10 s init phase rather than time out.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One `GetSecretValue` attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// All attempts together (the SDK retries transient errors).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(7);

/// The process environment as the functions read it: `DATABASE_URL` comes from the
/// secret named by `DATABASE_SECRET_ARN` when only the ARN is set; every other variable
/// is the process's own.
///
/// With a secret, the environment also holds a [`SecretSource`] (the same secret and
/// Secrets Manager client) for the database handle to re-read when its login is refused
/// after a rotation: `state.db.set_credential_source(env.credential_source())`.
pub struct Environment {
    database_url: Option<String>,
    source: Option<Arc<SecretSource>>,
    lookup: Box<Lookup>,
    /// `DATABASE_SSLROOTCERT_PEM`, read from `DATABASE_CA_SECRET_ARN` (see [`ca`]).
    database_ca: Option<String>,
}

/// How an [`Environment`] reads a variable (the process environment, or a test's map).
type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Environment {
    /// Reads the secret, if one is to be read; call once at cold start.
    pub async fn load() -> Result<Self, CredentialsError> {
        Self::load_with(|name| std::env::var(name).ok(), aws_config_loader()).await
    }

    /// [`Environment::load`] with the variables read through `lookup` and an explicit
    /// `aws-config` loader (tests point both at their own setup). The login secret and
    /// the CA secret (`DATABASE_CA_SECRET_ARN`) are read concurrently.
    pub async fn load_with(
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        loader: ConfigLoader,
    ) -> Result<Self, CredentialsError> {
        let login_arn = secret_to_fetch(&lookup);
        let ca_arn = ca::ca_secret_to_fetch(&lookup);
        let client = match (&login_arn, &ca_arn) {
            (None, None) => None,
            _ => Some(Client::new(&loader.load().await)),
        };
        let login = async {
            match (&login_arn, &client) {
                (Some(arn), Some(client)) => {
                    let (interval, login_wait) = reread_settings(&lookup, arn)?;
                    let proxy = ProxyEndpoint::from_lookup(&lookup, arn)?;
                    let url = fetch_database_url_via(client, arn, proxy.as_ref()).await?;
                    let source =
                        SecretSource::new(client.clone(), arn.clone(), interval, login_wait)
                            .with_proxy(proxy);
                    Ok((Some(url), Some(Arc::new(source))))
                }
                _ => Ok((None, None)),
            }
        };
        let ca = async {
            match (&ca_arn, &client) {
                (Some(arn), Some(client)) => fetch_database_ca(client, arn).await.map(Some),
                _ => Ok(None),
            }
        };
        let ((database_url, source), database_ca) = tokio::try_join!(login, ca)?;
        Ok(Self {
            database_url,
            database_ca,
            source,
            lookup: Box::new(lookup),
        })
    }

    /// One variable, with `DATABASE_URL` resolved.
    pub fn get(&self, name: &str) -> Option<String> {
        match (name, &self.database_url) {
            (DATABASE_URL, Some(url)) => Some(url.clone()),
            _ => match (name, &self.database_ca) {
                (DATABASE_SSLROOTCERT_PEM, Some(pem)) => Some(pem.clone()),
                _ => (self.lookup)(name),
            },
        }
    }

    /// The secret to re-read when the database refuses the login; `None` without
    /// `DATABASE_SECRET_ARN` (or when `DATABASE_URL` wins): nothing to re-read.
    pub fn credential_source(&self) -> Option<Arc<dyn storage::CredentialSource>> {
        self.source
            .clone()
            .map(|source| source as Arc<dyn storage::CredentialSource>)
    }

    /// The secret source itself (its ARN and re-read interval), when there is one.
    pub fn secret_source(&self) -> Option<&Arc<SecretSource>> {
        self.source.as_ref()
    }
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = if self.database_url.is_some() {
            "secret"
        } else {
            "environment"
        };
        f.debug_struct("Environment")
            .field("database_url_from", &source)
            .field("reread", &self.source)
            .field("database_ca_from_secret", &self.database_ca.is_some())
            .finish()
    }
}

/// The database URL to use instead of `DATABASE_URL`, if there is one to fetch.
///
/// `lookup` reads `DATABASE_URL` and `DATABASE_SECRET_ARN` (the process environment in
/// `main`, a map in tests). See the crate docs for the three cases and the usage in `main`.
/// The AWS configuration comes from [`aws_config_loader`], i.e. from the environment.
pub async fn resolve_database_url(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, CredentialsError> {
    resolve_database_url_with(lookup, aws_config_loader()).await
}

/// [`resolve_database_url`] with an explicit `aws-config` loader: tests point it at an
/// emulator with dummy credentials without touching the process environment. The loader is
/// only loaded when a secret is to be read.
pub async fn resolve_database_url_with(
    lookup: impl Fn(&str) -> Option<String>,
    loader: ConfigLoader,
) -> Result<Option<String>, CredentialsError> {
    let Some(secret_arn) = secret_to_fetch(&lookup) else {
        return Ok(None);
    };
    let proxy = ProxyEndpoint::from_lookup(&lookup, &secret_arn)?;
    let config = loader.load().await;
    let client = Client::new(&config);
    fetch_database_url_via(&client, &secret_arn, proxy.as_ref())
        .await
        .map(Some)
}

/// `aws_config::defaults(BehaviorVersion::latest())` with this crate's HTTPS client (rustls
/// with ring) and timeouts that fail fast when Secrets Manager is unreachable.
///
/// Everything else comes from the environment: `AWS_REGION`, credentials, and
/// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_SECRETS_MANAGER`. Settings made on the returned
/// loader (`.region(..)`, `.endpoint_url(..)`, `.credentials_provider(..)`) take precedence.
pub fn aws_config_loader() -> ConfigLoader {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
}

/// Reads the secret `secret_arn` with `client` and builds the database URL from it.
pub async fn fetch_database_url(
    client: &Client,
    secret_arn: &str,
) -> Result<String, CredentialsError> {
    fetch_database_url_via(client, secret_arn, None).await
}

/// [`fetch_database_url`], connecting to `proxy` (`DATABASE_PROXY_HOST`/`_PORT`, the
/// PgBouncer endpoint) instead of the secret's host and port when there is one.
pub async fn fetch_database_url_via(
    client: &Client,
    secret_arn: &str,
    proxy: Option<&ProxyEndpoint>,
) -> Result<String, CredentialsError> {
    let secret = fetch_database_secret(client, secret_arn).await?;
    if let Some(proxy) = proxy {
        tracing::info!(
            secret_arn,
            proxy_host = %proxy.host,
            proxy_port = proxy.port,
            "connecting through DATABASE_PROXY_HOST:DATABASE_PROXY_PORT instead of the secret's host"
        );
    }
    Ok(secret.database_url_via(proxy))
}

/// Reads and parses the secret `secret_arn` with `client`.
pub async fn fetch_database_secret(
    client: &Client,
    secret_arn: &str,
) -> Result<DatabaseSecret, CredentialsError> {
    let region = client
        .config()
        .region()
        .map(ToString::to_string)
        .ok_or_else(|| CredentialsError::NoRegion {
            arn: secret_arn.to_owned(),
        })?;
    let output = client
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|error| classify(secret_arn, &region, error))?;
    let text = match (output.secret_string(), output.secret_binary()) {
        (Some(text), _) => text,
        (None, Some(_)) => {
            return Err(CredentialsError::SecretBinary {
                arn: secret_arn.to_owned(),
            })
        }
        (None, None) => {
            return Err(CredentialsError::NoValue {
                arn: secret_arn.to_owned(),
            })
        }
    };
    let secret = DatabaseSecret::parse(secret_arn, text)?;
    tracing::info!(
        secret_arn,
        username = %secret.username,
        host = %secret.host,
        port = secret.port,
        dbname = %secret.dbname,
        "database credentials read from Secrets Manager"
    );
    Ok(secret)
}

/// `DATABASE_SECRET_ARN` when there is no `DATABASE_URL` (blank values count as unset).
fn secret_to_fetch(lookup: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let non_blank = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
    if non_blank(DATABASE_URL).is_some() {
        return None;
    }
    non_blank(DATABASE_SECRET_ARN).map(|arn| arn.trim().to_owned())
}

/// `error: its source: its source's source...`, without the Debug dump that the SDK's
/// `DisplayErrorContext` appends.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(crate) fn classify<E, R>(
    secret_arn: &str,
    region: &str,
    error: SdkError<E, R>,
) -> CredentialsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &error {
        SdkError::ServiceError(context) => {
            let service_error = context.err();
            CredentialsError::from_service(
                secret_arn,
                region,
                service_error.code(),
                service_error.message(),
            )
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => CredentialsError::Unreachable {
            arn: secret_arn.to_owned(),
            detail: error_chain(&error),
        },
        _ => CredentialsError::Sdk {
            arn: secret_arn.to_owned(),
            detail: error_chain(&error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kit/ingest-AbCdEf";

    #[test]
    fn database_url_wins_over_the_secret() {
        let env = lookup(&[(DATABASE_URL, "postgres://x"), (DATABASE_SECRET_ARN, ARN)]);
        assert_eq!(secret_to_fetch(&env), None);
    }

    #[test]
    fn the_secret_is_fetched_only_without_a_database_url() {
        let env = lookup(&[
            (DATABASE_URL, "  "),
            (DATABASE_SECRET_ARN, &format!(" {ARN}\n")),
        ]);
        assert_eq!(secret_to_fetch(&env).as_deref(), Some(ARN));
        assert_eq!(secret_to_fetch(&lookup(&[(DATABASE_SECRET_ARN, "")])), None);
        assert_eq!(secret_to_fetch(&lookup(&[])), None);
    }

    #[test]
    fn the_ca_read_from_its_secret_reaches_storage_as_pem() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let env = Environment {
            database_url: None,
            database_ca: Some(pem.to_owned()),
            source: None,
            lookup: Box::new(|_| None),
        };
        assert_eq!(env.get(DATABASE_SSLROOTCERT_PEM).as_deref(), Some(pem));
        assert!(format!("{env:?}").contains("database_ca_from_secret: true"));
    }

    /// A loader that must never be used: any request would go to a closed local port.
    fn unusable_loader() -> ConfigLoader {
        aws_config_loader()
            .endpoint_url("http://127.0.0.1:9")
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_secretsmanager::config::Credentials::for_tests())
    }

    #[tokio::test]
    async fn nothing_to_do_without_a_secret() {
        let with_url = lookup(&[
            (DATABASE_URL, "postgres://u:p@h/d"),
            (DATABASE_SECRET_ARN, ARN),
        ]);
        assert_eq!(
            resolve_database_url_with(with_url, unusable_loader())
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            resolve_database_url_with(lookup(&[]), unusable_loader())
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_reported_as_such() {
        let env = lookup(&[(DATABASE_SECRET_ARN, ARN)]);
        let error = resolve_database_url_with(env, unusable_loader())
            .await
            .unwrap_err();
        assert!(
            matches!(error, CredentialsError::Unreachable { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(ARN) && message.contains("VPC endpoint"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_missing_region_is_reported_before_any_request() {
        let loader = unusable_loader().region(None::<aws_config::Region>);
        let error = resolve_database_url_with(lookup(&[(DATABASE_SECRET_ARN, ARN)]), loader)
            .await
            .unwrap_err();
        assert!(
            matches!(error, CredentialsError::NoRegion { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("AWS_REGION"), "{error}");
    }
}
