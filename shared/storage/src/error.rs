//! Database errors, classified once: transient (worth retrying), a refused login (worth
//! re-reading the credentials), or permanent.

use crate::config::ConfigError;
use crate::deadline::{Bound, Step};

/// Whether retrying the same work later can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The database or the path to it is unavailable or overloaded for now:
    /// connection refused or reset, pool or PgBouncer queue timeouts, admin
    /// shutdown, serialization failures, deadlocks, statement timeouts, and steps the
    /// client gave up on ([`StorageError::Timeout`]: a silent path).
    Transient,
    /// The login was refused: the password (or the user) is wrong or no longer valid,
    /// typically because the credentials were rotated. PostgreSQL's `28P01`
    /// (invalid_password) and `28000` (invalid_authorization_specification), and
    /// PgBouncer's own words for the same (`08P01` "password authentication failed",
    /// "no such user", "server login has been failing, cached error: password
    /// authentication failed ..."). Retrying with the same credentials gives the same
    /// answer; re-reading them can fix it (`Database::with_credential_source`).
    Credentials,
    /// Retrying the same statement gives the same answer: bad data, missing schema,
    /// permissions, bugs.
    Permanent,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database schema problem: {0}")]
    Schema(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The filter is too large to compile (caught before anything is sent): the
    /// caller's input, not a database fault.
    #[error(transparent)]
    Filter(#[from] crate::filter::FilterTooLarge),
    /// No answer came within the step's client-side bound (see `deadline.rs`): the path
    /// to the database may be silent. The connection was abandoned mid-protocol and is
    /// closed, never used again.
    #[error("no answer while {step} within {bound}; the connection was closed")]
    Timeout { step: Step, bound: Bound },
}

impl StorageError {
    /// The class callers match on: retry transient errors, report permanent ones.
    pub fn class(&self) -> ErrorClass {
        match self {
            StorageError::Database(e) => classify(e),
            StorageError::Timeout { .. } => ErrorClass::Transient,
            StorageError::Config(_)
            | StorageError::Schema(_)
            | StorageError::Migrate(_)
            | StorageError::Filter(_) => ErrorClass::Permanent,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// A step was cut by the invocation's deadline (not by its own timeout): there is no
    /// time left for another attempt in this invocation.
    pub fn is_deadline(&self) -> bool {
        matches!(
            self,
            StorageError::Timeout {
                bound: Bound::Deadline(_),
                ..
            }
        )
    }

    /// PgBouncer refused with the error it cached from its own failed login to PostgreSQL
    /// ("server login has been failing, cached error: …"): it has not tried any login for
    /// this role since, and tries again `server_login_retry` seconds after the failure.
    pub fn is_cached_login_refusal(&self) -> bool {
        match self {
            StorageError::Database(sqlx::Error::Database(db)) => {
                db.message().starts_with("server login has been failing")
            }
            _ => false,
        }
    }

    /// The database could not be used for now, for a reason other than the request:
    /// transient trouble or a refused login. Search answers 503 for these.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::Transient | ErrorClass::Credentials
        )
    }

    /// The connection itself was lost (closed, reset, or shut down by PgBouncer or
    /// PostgreSQL), rather than the statement failing: a read can run again at once on
    /// a new connection. A step that got no answer in time ([`StorageError::Timeout`]) is
    /// not: its time is spent, and the caller answers (503, a retry after backoff).
    pub fn connection_lost(&self) -> bool {
        match self {
            StorageError::Database(sqlx::Error::Io(_)) => true,
            StorageError::Database(sqlx::Error::Protocol(message)) => is_server_gone(message),
            StorageError::Database(sqlx::Error::Database(db)) => match db.code().as_deref() {
                Some("57P01" | "57P02") => true,
                Some(code) if code.starts_with("08") && code != "08P01" => true,
                Some("08P01") | None => is_server_gone(db.message()),
                Some(_) => false,
            },
            _ => false,
        }
    }

    /// The SQLSTATE, when the server sent one.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            StorageError::Database(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }
}

fn classify(error: &sqlx::Error) -> ErrorClass {
    use sqlx::Error as E;
    if is_login_refused(error) {
        return ErrorClass::Credentials;
    }
    match error {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
            ErrorClass::Transient
        }
        E::Protocol(message) if is_pgbouncer_unavailable(message) => ErrorClass::Transient,
        E::Database(db) => match db.code().as_deref() {
            // PgBouncer reports everything as a protocol violation, from "pool busy"
            // (transient) to "unsupported startup parameter" (a configuration error):
            // only its known availability messages are worth retrying.
            Some("08P01") | None if is_pgbouncer_unavailable(db.message()) => ErrorClass::Transient,
            Some("08P01") | None => ErrorClass::Permanent,
            Some(code) if is_transient_sqlstate(code) => ErrorClass::Transient,
            Some(_) => ErrorClass::Permanent,
        },
        _ => ErrorClass::Permanent,
    }
}

/// The login was refused, by PostgreSQL (forwarded by PgBouncer) or by PgBouncer itself.
fn is_login_refused(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    match db.code().as_deref() {
        // invalid_password, invalid_authorization_specification (a role that does not
        // exist or may not log in)
        Some("28P01" | "28000") => true,
        // PgBouncer sends its own refusals as protocol violations: a wrong password
        // ("password authentication failed"), a user it does not know ("no such user"),
        // and, for server_login_retry seconds after PostgreSQL refused its login, "server
        // login has been failing, cached error: password authentication failed for user …".
        Some("08P01") | None => {
            let message = db.message();
            message.contains("password authentication failed")
                || message.contains("no such user")
                || message.contains("SASL authentication failed")
        }
        Some(_) => false,
    }
}

/// SQLSTATEs after which the same statement can succeed later.
fn is_transient_sqlstate(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected
        "40001" | "40P01"
        // lock_not_available, query_canceled (statement timeout)
        | "55P03" | "57014"
        // admin_shutdown, crash_shutdown, cannot_connect_now
        | "57P01" | "57P02" | "57P03"
        // too_many_connections, insufficient_resources, out_of_memory
        | "53300" | "53000" | "53200"
    ) || (code.starts_with("08") && code != "08P01") // connection exceptions
}

/// PgBouncer reports pool exhaustion and lost servers as protocol errors (08P01)
/// with these words; the class covers most, the words catch the rest.
fn is_pgbouncer_unavailable(message: &str) -> bool {
    const WORDS: [&str; 9] = [
        "query_wait_timeout",
        "database removed",
        "server conn crashed",
        "no more connections allowed",
        "pgbouncer cannot connect to server",
        "server login has been failing",
        "client_login_timeout",
        "shutting down",
        "database is paused",
    ];
    WORDS.iter().any(|w| message.contains(w))
}

/// PgBouncer's words for a server connection that went away under a client ("database
/// removed": the admin's `KILL`, or the database dropped from its config, closes every
/// client of it).
fn is_server_gone(message: &str) -> bool {
    message.contains("server conn crashed")
        || message.contains("shutting down")
        || message.contains("database removed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_concurrency_states_are_transient() {
        for code in [
            "08006", "08001", "40001", "40P01", "57P01", "57014", "53300",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn data_errors_are_permanent() {
        for code in ["22P02", "23505", "42P01", "42501", "22000", "08P01"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    /// A database error as PostgreSQL or PgBouncer sends it: a SQLSTATE and a message.
    #[derive(Debug)]
    struct ServerError {
        code: Option<&'static str>,
        message: &'static str,
    }

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            self.code.map(std::borrow::Cow::Borrowed)
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn server(code: Option<&'static str>, message: &'static str) -> StorageError {
        StorageError::Database(sqlx::Error::Database(Box::new(ServerError {
            code,
            message,
        })))
    }

    /// What PostgreSQL and PgBouncer 1.24 send when they refuse a login (the PgBouncer
    /// messages are from its source and the rotation tests in tests/rotation.rs).
    #[test]
    fn refused_logins_are_credentials_errors() {
        let refused = [
            server(
                Some("28P01"),
                "password authentication failed for user \"kit_search\"",
            ),
            server(Some("28000"), "role \"kit_search_clone\" does not exist"),
            server(Some("08P01"), "password authentication failed"),
            server(Some("08P01"), "no such user"),
            server(
                Some("08P01"),
                "server login has been failing, cached error: password authentication failed \
                 for user \"kit_search\" (server_login_retry)",
            ),
        ];
        for error in refused {
            assert_eq!(error.class(), ErrorClass::Credentials, "{error}");
            assert!(error.is_unavailable() && !error.is_transient(), "{error}");
            assert!(!error.connection_lost(), "{error}");
        }
        // PgBouncer's other cached login failures stay transient (the server is down).
        let down = server(
            Some("08P01"),
            "server login has been failing, cached error: connect failed (server_login_retry)",
        );
        assert_eq!(down.class(), ErrorClass::Transient);
        assert_eq!(
            server(Some("42501"), "permission denied for table embeddings").class(),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn pool_timeouts_are_transient_and_decode_errors_are_not() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), ErrorClass::Transient);
        assert_eq!(
            classify(&sqlx::Error::ColumnNotFound("x".into())),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify(&sqlx::Error::Protocol("query_wait_timeout".into())),
            ErrorClass::Transient
        );
    }
}
