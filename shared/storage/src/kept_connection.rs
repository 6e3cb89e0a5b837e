//! A pool plus the one connection kept out of it between operations ("parked").
//!
//! sqlx checks every connection handed back to its pool with a round trip (a `Sync`
//! answered by `ReadyForQuery`), whatever the pool's options say: sqlx-core 0.8.6 pings
//! in `Floating::return_to_pool` after the `after_release` hook, which can close a
//! connection but not skip the ping
//! (<https://github.com/launchbadge/sqlx/blob/v0.8.6/sqlx-core/src/pool/connection.rs#L289-L326>).
//! `test_before_acquire(false)` turns off only the check on the way out of the pool
//! (launchbadge/sqlx#1743, closed by #1901); none turns off this one. Behind PgBouncer
//! that round trip needs a server connection, so each search cost PgBouncer and
//! PostgreSQL two server assignments instead of one, and the next operation could wait
//! for the check to finish. A Lambda execution environment runs one invocation at a
//! time, so the handle keeps the connection its last operation finished cleanly on and
//! the next operation takes it straight back, without the check. The connection still
//! counts against the pool's size. When upgrading sqlx, check whether the release ping
//! can be skipped; this module exists only because it cannot.
//!
//! - An operation that fails, or is dropped half-way, never parks its connection: it
//!   goes back to the pool, whose check flushes a pending `ROLLBACK` or finds the
//!   connection broken and closes it.
//! - A connection parked for at least [`PING_AFTER_IDLE`] (a frozen Lambda environment,
//!   a quiet hour) is pinged before reuse; a dead one is closed and replaced.
//! - Parked past the pool's idle timeout, it is closed; parked connections go back to
//!   the pool once they reach its maximum lifetime, so the pool can rotate them.
//! - Operations that run at the same time on one handle (tests, the CLI) get the parked
//!   connection or a pool connection, whichever is free first.
//! - When the login is refused and the credentials are re-read, [`Source::replace`] puts a
//!   new pool (a new "login generation") in place: the parked connection and the old pool
//!   are closed, and a connection of the old generation is never parked again.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::sync::{Mutex, MutexGuard, OnceCell};

use crate::StorageError;

/// A connection idle at least this long is checked before reuse (parked or pooled).
pub(crate) const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A pool (replaced when the credentials are re-read), its parked connection, and what
/// its login brings to every statement.
#[derive(Debug)]
pub(crate) struct Source {
    current: RwLock<Arc<Login>>,
    parked: Mutex<Option<Parked>>,
}

/// One set of credentials: the pool that logs in with them and what that login brings.
#[derive(Debug)]
struct Login {
    pool: PgPool,
    defaults: OnceCell<LoginDefaults>,
    /// 0 for the pool built at cold start, +1 for each replacement.
    generation: u64,
}

#[derive(Debug)]
struct Parked {
    conn: PoolConnection<Postgres>,
    since: Instant,
    /// When this connection was first taken from the pool (for the lifetime limit).
    first_acquired: Instant,
}

/// The settings a pool's login role starts every server connection with, read once per
/// login (again after the credentials were renewed: another role may set others):
/// when they already bound each statement, a search needs no transaction to set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoginDefaults {
    /// `statement_timeout` (`None` when 0: no limit).
    pub statement_timeout: Option<Duration>,
    /// `plan_cache_mode = force_custom_plan`.
    pub custom_plans: bool,
}

impl LoginDefaults {
    /// Whether a statement run without a transaction of its own is planned for its
    /// values and stopped within `timeout` (by the login's own, possibly stricter, limit).
    pub fn bound_within(&self, timeout: Duration) -> bool {
        self.custom_plans && self.statement_timeout.is_some_and(|t| t <= timeout)
    }
}

impl Source {
    pub fn new(pool: PgPool) -> Self {
        Self {
            current: RwLock::new(Arc::new(Login {
                pool,
                defaults: OnceCell::new(),
                generation: 0,
            })),
            parked: Mutex::new(None),
        }
    }

    fn current(&self) -> Arc<Login> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Which pool is in use: 0 at first, +1 each time [`Source::replace`] swaps it.
    pub fn generation(&self) -> u64 {
        self.current().generation
    }

    /// The pool, with the parked connection handed back to it first, for callers that
    /// use the pool directly (its size counts the parked connection).
    pub fn pool(&self) -> PgPool {
        if let Ok(mut slot) = self.parked.try_lock() {
            slot.take();
        }
        self.current().pool.clone()
    }

    /// Puts `pool` (logging in with re-read credentials) in place of the current one:
    /// later operations use it; the parked connection and the old pool's connections are
    /// closed (those in use when their operation ends). The login defaults are read
    /// again: another login role may bring other settings.
    pub async fn replace(&self, pool: PgPool) {
        let old = {
            let mut current = self
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let next = Arc::new(Login {
                pool,
                defaults: OnceCell::new(),
                generation: current.generation + 1,
            });
            std::mem::replace(&mut *current, next)
        };
        if let Some(parked) = self.parked.lock().await.take() {
            drop(parked.conn); // back to the old pool, which closes it
        }
        tokio::spawn(async move { old.pool.close().await });
    }

    /// The login's defaults, read on first use and cached until the pool is replaced.
    pub async fn login_defaults(&self) -> Result<LoginDefaults, StorageError> {
        if let Some(defaults) = self.current().defaults.get() {
            return Ok(*defaults);
        }
        let mut conn = self.acquire().await?;
        let (timeout_ms, plan_cache_mode): (i64, String) =
            sqlx::query_as(LOGIN_DEFAULTS).fetch_one(&mut *conn).await?;
        let defaults = LoginDefaults {
            statement_timeout: u64::try_from(timeout_ms)
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            custom_plans: plan_cache_mode == "force_custom_plan",
        };
        if conn.login.defaults.set(defaults).is_ok() {
            tracing::info!(
                statement_timeout_ms = timeout_ms,
                plan_cache_mode,
                "database login defaults (searches run as one statement when they bound it)"
            );
        }
        conn.park();
        Ok(defaults)
    }

    /// A connection for one operation: the parked one when it is free and alive,
    /// otherwise one from the pool (bounded by the pool's acquire timeout).
    pub async fn acquire(&self) -> Result<Acquired<'_>, StorageError> {
        let login = self.current();
        let mut slot = match self.parked.try_lock() {
            Ok(slot) => slot,
            Err(_) => tokio::select! {
                slot = self.parked.lock() => slot,
                conn = login.pool.acquire() => {
                    let conn = conn?;
                    return Ok(Acquired::new(self, login, conn, Instant::now(), None));
                }
            },
        };
        if let Some(parked) = slot.take() {
            let first_acquired = parked.first_acquired;
            if let Some(conn) = Self::revive(&login.pool, parked).await {
                return Ok(Acquired::new(self, login, conn, first_acquired, Some(slot)));
            }
        }
        let conn = login.pool.acquire().await?;
        Ok(Acquired::new(self, login, conn, Instant::now(), Some(slot)))
    }

    /// The parked connection if it may still be used; otherwise it is closed (idle too
    /// long, or dead) or handed back to the pool (at the end of its lifetime).
    async fn revive(pool: &PgPool, parked: Parked) -> Option<PoolConnection<Postgres>> {
        let options = pool.options();
        let Parked {
            mut conn,
            since,
            first_acquired,
        } = parked;
        if options
            .get_max_lifetime()
            .is_some_and(|max| first_acquired.elapsed() >= max)
        {
            return None; // dropped: the pool closes it if it is past its lifetime
        }
        let idle = since.elapsed();
        let stale = options.get_idle_timeout().is_some_and(|max| idle >= max);
        if stale || (idle >= PING_AFTER_IDLE && conn.ping().await.is_err()) {
            conn.close_on_drop();
            return None;
        }
        Some(conn)
    }
}

impl Drop for Source {
    /// Handing a connection back to the pool spawns a task; dropped outside a Tokio
    /// runtime (a handle kept past its runtime), the parked connection is closed
    /// directly instead.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err() {
            if let Some(parked) = self.parked.get_mut().take() {
                drop(parked.conn.detach());
            }
        }
    }
}

/// A connection acquired for one operation (the parked one or one from the pool).
/// [`Acquired::park`] keeps it for the next operation; dropping it instead hands it back
/// to the pool.
pub(crate) struct Acquired<'a> {
    source: &'a Source,
    /// The login (pool) the connection came from.
    login: Arc<Login>,
    conn: Option<PoolConnection<Postgres>>,
    first_acquired: Instant,
    /// Held while the parked connection is in use, so nobody else parks one meanwhile.
    slot: Option<MutexGuard<'a, Option<Parked>>>,
}

impl<'a> Acquired<'a> {
    fn new(
        source: &'a Source,
        login: Arc<Login>,
        conn: PoolConnection<Postgres>,
        first_acquired: Instant,
        slot: Option<MutexGuard<'a, Option<Parked>>>,
    ) -> Self {
        Self {
            source,
            login,
            conn: Some(conn),
            first_acquired,
            slot,
        }
    }

    /// The operation finished cleanly (committed, nothing pending on the connection):
    /// keep the connection for the next one, unless another is parked already or the
    /// pool it came from was replaced meanwhile (then it goes back to that pool, which
    /// closes it).
    pub fn park(mut self) {
        if self.login.generation != self.source.generation() {
            return;
        }
        let Some(conn) = self.conn.take() else { return };
        let parked = Parked {
            conn,
            since: Instant::now(),
            first_acquired: self.first_acquired,
        };
        if let Some(slot) = self.slot.as_mut() {
            **slot = Some(parked);
        } else if let Ok(mut slot) = self.source.parked.try_lock() {
            if slot.is_none() {
                *slot = Some(parked);
            }
        }
    }
}

impl Deref for Acquired<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
            .as_ref()
            .expect("an acquired connection is held until dropped")
    }
}

impl DerefMut for Acquired<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .expect("an acquired connection is held until dropped")
    }
}

/// The login's own `statement_timeout` (in milliseconds) and `plan_cache_mode`.
const LOGIN_DEFAULTS: &str = "SELECT setting::bigint, current_setting('plan_cache_mode') \
     FROM pg_settings WHERE name = 'statement_timeout'";
