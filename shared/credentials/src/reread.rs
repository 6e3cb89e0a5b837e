//! Re-reading the secret after a rotation: [`SecretSource`], the `storage::CredentialSource`
//! a function's database handle asks when PostgreSQL or PgBouncer refuses its login.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use tokio::time::Instant;

use crate::{fetch_database_url_via, CredentialsError, ProxyEndpoint};

/// The variable bounding how often a secret is re-read (milliseconds between two reads).
pub const DATABASE_SECRET_REREAD_INTERVAL_MS: &str = "DATABASE_SECRET_REREAD_INTERVAL_MS";
/// The default of [`DATABASE_SECRET_REREAD_INTERVAL_MS`]: a wrong password in the secret
/// costs each execution environment one `GetSecretValue` per 10 s, not one per request.
pub const DEFAULT_REREAD_INTERVAL: Duration = Duration::from_secs(10);
/// The largest accepted interval (one hour).
const MAX_REREAD_INTERVAL_MS: u64 = 3_600_000;
/// The variable bounding how long an operation waits, after a re-read, for PgBouncer to
/// try the new credentials (see `storage::CredentialSource::login_wait`).
pub const DATABASE_LOGIN_WAIT_MS: &str = "DATABASE_LOGIN_WAIT_MS";
/// The default of [`DATABASE_LOGIN_WAIT_MS`]: kit.toml's `server_login_retry_s` (5) plus
/// two seconds; the SAM template sets it from kit.toml.
pub const DEFAULT_LOGIN_WAIT: Duration = Duration::from_secs(7);
/// The largest accepted wait (a minute).
const MAX_LOGIN_WAIT_MS: u64 = 60_000;

/// The secret named by `DATABASE_SECRET_ARN`, read again on demand with the client made at
/// cold start, at most once per `interval`.
///
/// The read at cold start does not count: the first re-read is always allowed, so a
/// rotation right after a cold start is picked up at once.
pub struct SecretSource {
    client: Client,
    arn: String,
    interval: Duration,
    login_wait: Duration,
    last_reread: Mutex<Option<Instant>>,
    /// Re-reads made (`GetSecretValue` calls after cold start), for logs and tests.
    rereads: AtomicU64,
    proxy: Option<ProxyEndpoint>,
}

/// Why the secret was not re-read.
#[derive(Debug, thiserror::Error)]
pub enum RereadError {
    #[error(
        "secret {arn} (DATABASE_SECRET_ARN) was re-read {since_ms} ms ago; it is re-read at most \
         once every {interval_ms} ms ({DATABASE_SECRET_REREAD_INTERVAL_MS}): if the password in \
         the secret is the one refused, fix the role's password or the secret"
    )]
    TooSoon {
        arn: String,
        since_ms: u128,
        interval_ms: u128,
    },
    #[error(transparent)]
    Read(#[from] CredentialsError),
}

impl SecretSource {
    /// A source re-reading `arn` with `client` at most once per `interval`, letting an
    /// operation wait up to `login_wait` for PgBouncer to try the credentials read.
    pub fn new(
        client: Client,
        arn: impl Into<String>,
        interval: Duration,
        login_wait: Duration,
    ) -> Self {
        Self {
            client,
            arn: arn.into(),
            interval,
            login_wait,
            last_reread: Mutex::new(None),
            rereads: AtomicU64::new(0),
            proxy: None,
        }
    }

    /// Connects to `proxy` (the PgBouncer endpoint) instead of the secret's host and port.
    pub fn with_proxy(mut self, proxy: Option<ProxyEndpoint>) -> Self {
        self.proxy = proxy;
        self
    }

    /// The secret's ARN.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The shortest time between two re-reads.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many times the secret was re-read since cold start.
    pub fn rereads(&self) -> u64 {
        self.rereads.load(Ordering::Relaxed)
    }

    /// Reads the secret again and builds the database URL from it, unless the last re-read
    /// was less than the interval ago. A failed read counts as a re-read too (Secrets
    /// Manager down or the secret broken are no reason to call it more often).
    pub async fn reread(&self) -> Result<String, RereadError> {
        {
            let mut last = self
                .last_reread
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            if let Some(previous) = *last {
                let since = now.duration_since(previous);
                if since < self.interval {
                    return Err(RereadError::TooSoon {
                        arn: self.arn.clone(),
                        since_ms: since.as_millis(),
                        interval_ms: self.interval.as_millis(),
                    });
                }
            }
            *last = Some(now);
        }
        let rereads = self.rereads.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(secret_arn = %self.arn, rereads, "re-reading the database secret (the login was refused)");
        Ok(fetch_database_url_via(&self.client, &self.arn, self.proxy.as_ref()).await?)
    }
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("arn", &self.arn)
            .field("interval", &self.interval)
            .field("login_wait", &self.login_wait)
            .finish_non_exhaustive()
    }
}

impl storage::CredentialSource for SecretSource {
    fn database_url(&self) -> storage::SourceFuture<'_> {
        Box::pin(async move { self.reread().await.map_err(Into::into) })
    }

    fn login_wait(&self) -> Duration {
        self.login_wait
    }
}

/// The re-read settings through `lookup`: (interval, login wait); absent or blank is the
/// default.
pub(crate) fn reread_settings(
    lookup: &impl Fn(&str) -> Option<String>,
    arn: &str,
) -> Result<(Duration, Duration), CredentialsError> {
    let millis = |name: &'static str, default: Duration, max_ms: u64, expected: &'static str| {
        let Some(raw) = lookup(name).filter(|v| !v.trim().is_empty()) else {
            return Ok(default);
        };
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms <= max_ms)
            .map(Duration::from_millis)
            .ok_or_else(|| CredentialsError::Setting {
                arn: arn.to_owned(),
                name,
                value: raw,
                expected,
            })
    };
    Ok((
        millis(
            DATABASE_SECRET_REREAD_INTERVAL_MS,
            DEFAULT_REREAD_INTERVAL,
            MAX_REREAD_INTERVAL_MS,
            "milliseconds from 0 to 3600000 between two re-reads (default 10000)",
        )?,
        millis(
            DATABASE_LOGIN_WAIT_MS,
            DEFAULT_LOGIN_WAIT,
            MAX_LOGIN_WAIT_MS,
            "milliseconds from 0 to 60000 (default 7000: PgBouncer's server_login_retry plus 2 s)",
        )?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kit/ingest-AbCdEf";

    #[test]
    fn the_settings_default_and_are_bounded() {
        let none = |_: &str| None;
        assert_eq!(
            reread_settings(&none, ARN).unwrap(),
            (DEFAULT_REREAD_INTERVAL, DEFAULT_LOGIN_WAIT)
        );
        let set = |name: &'static str, value: &'static str| {
            move |key: &str| (key == name).then(|| value.to_owned())
        };
        let interval = |value| set(DATABASE_SECRET_REREAD_INTERVAL_MS, value);
        assert_eq!(
            reread_settings(&interval(" 2500 "), ARN).unwrap().0,
            Duration::from_millis(2500)
        );
        assert_eq!(
            reread_settings(&interval("0"), ARN).unwrap().0,
            Duration::ZERO
        );
        assert_eq!(
            reread_settings(&set(DATABASE_LOGIN_WAIT_MS, "0"), ARN)
                .unwrap()
                .1,
            Duration::ZERO
        );
        for (name, bad, range) in [
            (DATABASE_SECRET_REREAD_INTERVAL_MS, "-1", "3600000"),
            (DATABASE_SECRET_REREAD_INTERVAL_MS, "1s", "3600000"),
            (DATABASE_SECRET_REREAD_INTERVAL_MS, "3600001", "3600000"),
            (DATABASE_LOGIN_WAIT_MS, "60001", "60000"),
        ] {
            let error = reread_settings(&set(name, bad), ARN).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains(name) && message.contains(ARN) && message.contains(range),
                "{message}"
            );
        }
    }
}
