//! Database errors, classified once: transient (worth retrying) or permanent.

use crate::config::ConfigError;

/// Whether retrying the same work later can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The database or the path to it is unavailable or overloaded for now:
    /// connection refused or reset, pool or PgBouncer queue timeouts, admin
    /// shutdown, serialization failures, deadlocks, statement timeouts.
    Transient,
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
}

impl StorageError {
    /// The class callers match on: retry transient errors, report permanent ones.
    pub fn class(&self) -> ErrorClass {
        match self {
            StorageError::Database(e) => classify(e),
            StorageError::Config(_)
            | StorageError::Schema(_)
            | StorageError::Migrate(_)
            | StorageError::Filter(_) => ErrorClass::Permanent,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// The connection itself was lost (closed, reset, or shut down by PgBouncer or
    /// PostgreSQL), rather than the statement failing: a read can run again at once on
    /// a new connection.
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
    const WORDS: [&str; 8] = [
        "query_wait_timeout",
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

/// PgBouncer's words for a server connection that went away under a client.
fn is_server_gone(message: &str) -> bool {
    message.contains("server conn crashed") || message.contains("shutting down")
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
