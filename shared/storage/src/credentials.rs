//! Renewing the login when the database refuses it (rotated credentials).
//!
//! A warm Lambda execution environment keeps its connection, and its credentials, for
//! hours. When the password is rotated, the next login it makes (a new connection to
//! PgBouncer, or PgBouncer's login to PostgreSQL for it) is refused. Every [`Database`]
//! operation runs inside [`Database::relogin`]: on a refused login
//! ([`ErrorClass::Credentials`](crate::ErrorClass::Credentials)) it asks the handle's
//! [`CredentialSource`] for the current database URL, puts a new primary pool that logs in
//! with it in place of the old one ([`Source::replace`](crate::kept_connection::Source::replace)),
//! and runs the operation once more. One renewal at a time: operations that failed with
//! the old pool while another renewed it just run again on the new one.
//!
//! The source decides how often it may really be read (the Secrets Manager source in the
//! `credentials` crate re-reads at most once per `DATABASE_SECRET_REREAD_INTERVAL_MS`), so
//! a wrong password in the secret costs one read per interval, not one per request.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::{lazy_pool, Database, StorageError};

/// The longest pause between two attempts while PgBouncer refuses with its cached error.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// The future a [`CredentialSource`] returns.
pub type SourceFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, Box<dyn Error + Send + Sync>>> + Send + 'a>>;

/// Where a [`Database`] gets the current credentials when its login is refused.
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The database URL (`postgres://user:password@host:port/db`) with the credentials
    /// as they are now. May refuse, e.g. when asked again too soon; the error says why
    /// (it is logged, so it must not contain the password).
    fn database_url(&self) -> SourceFuture<'_>;

    /// How long an operation may wait, after the credentials were re-read, for PgBouncer to
    /// try them. When PostgreSQL refused PgBouncer's login for a role (it logged in with the
    /// keys of the last client that authenticated, the old password), PgBouncer refuses
    /// every client of that role with its cached error for `server_login_retry` seconds,
    /// whatever their credentials; the operation runs again until PgBouncer logs in with the
    /// new ones or this time is up. Zero (the default): run once more, no waiting.
    fn login_wait(&self) -> Duration {
        Duration::ZERO
    }
}

/// A source, and the lock that makes renewals one at a time.
pub(crate) struct Renewal {
    source: Arc<dyn CredentialSource>,
    lock: Mutex<()>,
}

impl Renewal {
    pub fn new(source: Arc<dyn CredentialSource>) -> Self {
        Self {
            source,
            lock: Mutex::new(()),
        }
    }
}

impl fmt::Debug for Renewal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renewal")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Runs `operation` on the renewed pool: once, or, while PgBouncer answers with its
    /// cached refusal of an earlier login, again with short pauses until the source's
    /// [`CredentialSource::login_wait`] is up.
    pub(crate) async fn after_renewal<T, F, Fut>(&self, operation: F) -> Result<T, StorageError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let wait = self
            .credentials
            .as_ref()
            .map_or(Duration::ZERO, |renewal| renewal.source.login_wait());
        let until = Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        loop {
            match operation().await {
                // The refused attempt that comes after server_login_retry makes PgBouncer
                // log in again; the next one, a pause later, finds the server connection.
                Err(error) if error.is_cached_login_refusal() && Instant::now() < until => {
                    let pause_for = pause.min(until - Instant::now());
                    tracing::info!(%error, pause_ms = pause_for.as_millis() as u64, "PgBouncer still refuses the role's logins with its cached error; waiting for its next login");
                    tokio::time::sleep(pause_for).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                outcome => return outcome,
            }
        }
    }

    /// After `error` (a refused login) on the primary pool of generation `seen`: whether
    /// the operation should run again, on a pool built from re-read credentials.
    pub(crate) async fn renew_login(&self, seen: u64, error: &StorageError) -> bool {
        let Some(renewal) = &self.credentials else {
            tracing::error!(
                %error,
                sqlstate = ?error.sqlstate(),
                "the database refused the login in DATABASE_URL and there is nothing to re-read \
                 (DATABASE_SECRET_ARN is not in use): fix the password in DATABASE_URL or the \
                 role's password, then restart the function"
            );
            return false;
        };
        let _one_at_a_time = renewal.lock.lock().await;
        if self.primary.generation() != seen {
            // Another operation renewed the login while this one was failing on the old pool.
            return true;
        }
        let url = match renewal.source.database_url().await {
            Ok(url) => url,
            Err(reason) => {
                tracing::error!(
                    %error,
                    sqlstate = ?error.sqlstate(),
                    %reason,
                    "the database refused the login and the credentials were not re-read"
                );
                return false;
            }
        };
        match lazy_pool(&url, &self.config) {
            Ok(pool) => {
                self.primary.replace(pool).await;
                tracing::warn!(
                    %error,
                    sqlstate = ?error.sqlstate(),
                    renewals = self.primary.generation(),
                    "the database refused the login: credentials re-read, reconnecting with them"
                );
                true
            }
            Err(invalid) => {
                tracing::error!(%error, %invalid, "the database refused the login and the re-read credentials do not make a valid URL");
                false
            }
        }
    }
}
