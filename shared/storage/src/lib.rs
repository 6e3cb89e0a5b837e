//! Storage for pgvector-lambda-kit: the only crate that speaks SQL.
//!
//! Everything a function needs from PostgreSQL goes through here: the Lambda-tuned
//! pool ([`Database`]), the domain types it stores ([`Namespace`], [`WriteOp`]), the
//! set-based batch writer ([`Database::write_batch`]), nearest-neighbour search with
//! metadata filters ([`Database::search_nearest`]), item reads, batched retention
//! purges, the embedded migrations, and the classification of database errors into
//! transient, refused logins and permanent ([`StorageError::class`]). A handle given a
//! [`CredentialSource`] re-reads its credentials when the login is refused (a rotated
//! password) and runs the operation once more.
//!
//! Every statement runs inside a transaction whose settings (statement timeout,
//! `hnsw.ef_search`, ...) are applied with `set_config(..., true)`: the kit runs
//! behind PgBouncer in transaction pooling, where a session-level `SET` would leak
//! to whichever client gets the server connection next.

mod config;
mod credentials;
pub mod deadline;
mod error;
pub mod filter;
pub mod jsonb;
mod kept_connection;
pub mod migrate;
mod purge;
mod records;
mod retry;
pub mod roles;
mod search;
pub mod tls;
mod writes;

pub use config::{parse_setting, Config, ConfigError, Function};
pub use credentials::{CredentialSource, SourceFuture};
pub use deadline::{within_deadline, DEADLINE_RESERVE, STATEMENT_GRACE};
pub use error::{ErrorClass, StorageError};
pub use filter::{Comparison, Filter, FilterTooLarge, Scalar, MAX_FILTER_SQL_BYTES};
pub use migrate::{MigrationState, MIGRATOR};
pub use purge::RetentionPolicy;
pub use purge::{PurgeBatch, PurgeScope};
pub use records::{Namespace, NamespaceError, Upsert, WriteOp};
pub use retry::{retry_transient, Backoff};
pub use search::{search_statement, Hit, Include, Item, SearchQuery, SearchStatement};
pub use writes::WriteOutcome;

pub use pgvector::Vector;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Postgres, Transaction};
use tokio::sync::OnceCell;

use kept_connection::{Acquired, Source, PING_AFTER_IDLE};

/// A handle on the database: a primary pool, an optional read pool for searches,
/// and what was learned about the schema (the vector column's dimensions).
///
/// Cheap to share by reference; built once per Lambda execution environment. Pools are
/// lazy: no connection is opened until the first query, and the connection is then
/// reused across invocations, kept out of the pool between them (see `kept_connection.rs`).
///
/// Every operation whose login is refused ([`ErrorClass::Credentials`]: a rotated
/// password) asks the handle's [`CredentialSource`], if it has one, for the current
/// credentials, replaces the primary pool with one that logs in with them, and runs
/// once more (see `credentials.rs`).
#[derive(Debug)]
pub struct Database {
    primary: Source,
    read: Option<Source>,
    statement_timeout: Duration,
    dimensions: OnceCell<usize>,
    /// The pool settings, to build a replacement pool with re-read credentials.
    config: Config,
    credentials: Option<credentials::Renewal>,
}

impl Database {
    /// Builds lazy pools from `config`; never touches the network.
    pub fn connect_lazy(config: &Config) -> Result<Self, StorageError> {
        let primary = Source::new(lazy_pool(&config.database_url, config)?);
        let read = match &config.read_url {
            Some(url) => Some(Source::new(lazy_pool(url, config)?)),
            None => None,
        };
        Ok(Self {
            primary,
            read,
            statement_timeout: config.statement_timeout,
            dimensions: OnceCell::new(),
            config: config.clone(),
            credentials: None,
        })
    }

    /// Where to re-read the primary login's credentials when the database refuses them
    /// (`DATABASE_SECRET_ARN` on AWS). `None`, the default, fails such operations with
    /// the refusal, logged with what to fix (`DATABASE_URL` has nothing to re-read).
    /// `DATABASE_READ_URL`'s login is never re-read.
    pub fn set_credential_source(&mut self, source: Option<Arc<dyn CredentialSource>>) {
        self.credentials = source.map(credentials::Renewal::new);
    }

    /// The primary pool, for callers (tests, the CLI) that need to run their own checks.
    /// The handle's parked connection goes back to it first. After the credentials were
    /// re-read this is the new pool; a clone taken earlier is closed.
    pub fn pool(&self) -> PgPool {
        self.primary.pool()
    }

    /// How many times the primary pool was replaced after re-reading the credentials.
    pub fn credential_renewals(&self) -> u64 {
        self.primary.generation()
    }

    /// Runs `operation`; if the database refused the login, renews the credentials (see
    /// [`Database::set_credential_source`]) and runs it once more. A refused login means
    /// no statement of the operation ran, so writes are repeated as safely as reads.
    pub(crate) async fn relogin<T, F, Fut>(&self, operation: F) -> Result<T, StorageError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        let generation = self.primary.generation();
        match operation().await {
            Err(error) if error.class() == ErrorClass::Credentials => {
                if self.renew_login(generation, &error).await {
                    self.after_renewal(operation).await
                } else {
                    Err(error)
                }
            }
            outcome => outcome,
        }
    }

    /// Whether searches run as one statement (one round trip): the read connection's
    /// login role sets `plan_cache_mode = force_custom_plan` and a `statement_timeout` no
    /// longer than `DB_STATEMENT_TIMEOUT_MS`. Otherwise each search opens a read
    /// transaction that sets them first.
    pub async fn searches_run_alone(&self) -> Result<bool, StorageError> {
        let defaults = self
            .relogin(|| self.read_source().login_defaults(self.statement_timeout))
            .await?;
        Ok(defaults.bound_within(self.statement_timeout))
    }

    /// Hands every connection back and closes the pools.
    pub async fn close(&self) {
        for source in [Some(&self.primary), self.read.as_ref()]
            .into_iter()
            .flatten()
        {
            source.pool().close().await;
        }
    }

    /// Where searches and item reads go: the read replica when configured.
    fn read_source(&self) -> &Source {
        self.read.as_ref().unwrap_or(&self.primary)
    }

    /// The number of dimensions of the `embeddings.embedding` column, read from the
    /// database once and cached for the life of this handle.
    pub async fn dimensions(&self) -> Result<usize, StorageError> {
        self.relogin(|| self.dimensions_once()).await
    }

    async fn dimensions_once(&self) -> Result<usize, StorageError> {
        self.dimensions
            .get_or_try_init(|| async {
                let mut conn = self.primary.acquire().await?;
                let typmod: Option<i32> = self
                    .round_trip(
                        sqlx::query_scalar(sql::EMBEDDING_DIMENSIONS).fetch_optional(&mut *conn),
                    )
                    .await?;
                conn.park();
                match typmod {
                    Some(dims) if dims > 0 => Ok(dims as usize),
                    _ => Err(StorageError::Schema(
                        "embeddings.embedding is missing or has no fixed dimensions; run `kit migrate up`"
                            .into(),
                    )),
                }
            })
            .await
            .copied()
    }

    /// `SELECT 1` on the read connection, bounded by the acquire and statement timeouts
    /// and the invocation's deadline (once more on a new connection if the kept one was
    /// lost).
    pub async fn health(&self) -> Result<(), StorageError> {
        self.relogin(|| retry::reconnecting(|| self.health_once()))
            .await
    }

    async fn health_once(&self) -> Result<(), StorageError> {
        let mut conn = self.read_source().acquire().await?;
        let mut tx = self.begin(&mut conn, "BEGIN READ ONLY").await?;
        self.round_trip(sqlx::query(sql::HEALTH).execute(&mut *tx))
            .await?;
        self.round_trip(tx.commit()).await?;
        conn.park();
        Ok(())
    }

    /// Opens a transaction (`begin`: `BEGIN` or `BEGIN READ ONLY`) on an acquired connection
    /// with the statement timeout applied transaction-locally, in one round trip.
    async fn begin<'c>(
        &self,
        conn: &'c mut Acquired<'_>,
        begin: &str,
    ) -> Result<Transaction<'c, Postgres>, StorageError> {
        let statement = sql::begin_with_timeout(begin, self.statement_timeout);
        self.round_trip((**conn).begin_with(statement)).await
    }

    /// Runs one round trip of an operation (`BEGIN`, a statement, `COMMIT`) within the
    /// statement timeout, plus a grace for the server's own cancellation to arrive, and
    /// the invocation's deadline (`deadline.rs`).
    async fn round_trip<T, E, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, E>>,
        E: Into<StorageError>,
    {
        deadline::round_trip(self.statement_timeout, work).await
    }
}

fn lazy_pool(url: &str, config: &Config) -> Result<PgPool, StorageError> {
    let url = config::connect_url(url)?;
    let options = PgConnectOptions::from_url(&url)
        .map_err(|e| StorageError::Config(ConfigError::invalid_url(e)))?;
    Ok(PgPoolOptions::new()
        .min_connections(0)
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        // A Lambda environment can be frozen for minutes: a connection that sat idle is
        // pinged before it is handed out (a dead one is replaced, not failed), while one
        // reused back to back under load skips the extra round trip through PgBouncer.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(config.tls.apply(options).application_name(APPLICATION_NAME)))
}

/// The `application_name` of every connection the kit opens. PgBouncer sets a client's
/// `application_name` on the server connection it is given (one more round trip) when
/// the server's differs, so clients sharing a pool should share it.
pub const APPLICATION_NAME: &str = "pgvector-lambda-kit";

/// The statements that are not specific to one operation.
mod sql {
    pub const EMBEDDING_DIMENSIONS: &str = "SELECT atttypmod FROM pg_attribute \
         WHERE attrelid = to_regclass('embeddings') AND attname = 'embedding' AND NOT attisdropped";
    pub const HEALTH: &str = "SELECT 1";

    use std::time::Duration;

    /// `begin` and the statement timeout, transaction-local (`set_config(…, true)`), as
    /// one simple-query message. The protocol takes no parameters there; the value is an
    /// integer formatted by the kit, never text from a request. 0 would mean no limit.
    pub fn begin_with_timeout(begin: &str, timeout: Duration) -> String {
        format!(
            "{begin}; SELECT set_config('statement_timeout', '{}', true)",
            timeout.as_millis().max(1)
        )
    }
}
