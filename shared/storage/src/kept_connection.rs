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
//! - An operation that fails, or is dropped half-way (cut by a deadline), never parks
//!   its connection: it is closed. It may hold a half-read answer, and sqlx's release
//!   check would wait for it without a bound on a silent path.
//! - A connection parked for at least [`PING_AFTER_IDLE`] (a frozen Lambda environment,
//!   a quiet hour) is pinged before reuse, within half the acquire timeout; a dead one
//!   is closed and replaced within the other half.
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

use crate::deadline::{self, Step};
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

    /// The login's defaults, read on first use (one round trip, bounded by
    /// `statement_timeout` as every round trip is) and cached until the pool is replaced.
    pub async fn login_defaults(
        &self,
        statement_timeout: Duration,
    ) -> Result<LoginDefaults, StorageError> {
        if let Some(defaults) = self.current().defaults.get() {
            return Ok(*defaults);
        }
        let mut conn = self.acquire().await?;
        let (timeout_ms, plan_cache_mode): (i64, String) = deadline::round_trip(
            statement_timeout,
            sqlx::query_as(LOGIN_DEFAULTS).fetch_one(&mut *conn),
        )
        .await?;
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
    /// otherwise one from the pool. Bounded as a whole by the pool's acquire timeout and
    /// the invocation's deadline (`deadline.rs`), the parked connection's check included.
    pub async fn acquire(&self) -> Result<Acquired<'_>, StorageError> {
        let login = self.current();
        let acquire = login.pool.options().get_acquire_timeout();
        deadline::bounded(Step::Acquire, acquire, self.acquire_within(login, acquire)).await
    }

    async fn acquire_within(
        &self,
        login: Arc<Login>,
        acquire: Duration,
    ) -> Result<Acquired<'_>, StorageError> {
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
            match self.revive(&login, parked, slot, acquire / 2).await? {
                Ok(acquired) => return Ok(acquired),
                Err(released) => slot = released,
            }
        }
        let conn = login.pool.acquire().await?;
        Ok(Acquired::new(self, login, conn, Instant::now(), Some(slot)))
    }

    /// The parked connection as an acquired connection if it may still be used; otherwise it is closed
    /// (idle too long, or dead: its check got no answer within `ping_limit`, half the
    /// acquire timeout, leaving the other half to connect anew) or handed back to the
    /// pool (at the end of its lifetime), and the slot comes back empty.
    async fn revive<'s>(
        &'s self,
        login: &Arc<Login>,
        parked: Parked,
        slot: Slot<'s>,
        ping_limit: Duration,
    ) -> Result<Result<Acquired<'s>, Slot<'s>>, StorageError> {
        let options = login.pool.options();
        let Parked {
            conn,
            since,
            first_acquired,
        } = parked;
        if options
            .get_max_lifetime()
            .is_some_and(|max| first_acquired.elapsed() >= max)
        {
            drop(conn); // back to the pool, which closes it: it is past its lifetime
            return Ok(Err(slot));
        }
        // From here the connection is acquired: dropped unparked (dead, or this future
        // cancelled mid-check), it is closed.
        let mut acquired = Acquired::new(self, Arc::clone(login), conn, first_acquired, Some(slot));
        let idle = since.elapsed();
        let stale = options.get_idle_timeout().is_some_and(|max| idle >= max);
        if !stale && idle >= PING_AFTER_IDLE {
            match deadline::bounded(Step::Ping, ping_limit, acquired.ping()).await {
                Ok(()) => return Ok(Ok(acquired)),
                Err(error) if error.is_deadline() => return Err(error),
                Err(error) => {
                    tracing::info!(%error, idle_ms = idle.as_millis() as u64, "the kept connection is dead; replacing it")
                }
            }
        } else if !stale {
            return Ok(Ok(acquired));
        }
        Ok(Err(acquired.release_slot()))
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

/// The parked connection's place, held while it is in use.
type Slot<'a> = MutexGuard<'a, Option<Parked>>;

/// A connection borrowed for one operation. [`Acquired::park`] keeps it for the next
/// operation; dropping it instead closes it.
pub(crate) struct Acquired<'a> {
    source: &'a Source,
    /// The login (pool) the connection came from.
    login: Arc<Login>,
    conn: Option<PoolConnection<Postgres>>,
    first_acquired: Instant,
    /// Held while the parked connection is in use, so nobody else parks one meanwhile.
    slot: Option<Slot<'a>>,
}

impl<'a> Acquired<'a> {
    fn new(
        source: &'a Source,
        login: Arc<Login>,
        conn: PoolConnection<Postgres>,
        first_acquired: Instant,
        slot: Option<Slot<'a>>,
    ) -> Self {
        Self {
            source,
            login,
            conn: Some(conn),
            first_acquired,
            slot,
        }
    }

    /// Gives up the connection (closed, as by drop) and hands back the parked slot, empty.
    fn release_slot(mut self) -> Slot<'a> {
        self.slot
            .take()
            .expect("a connection acquired from the parked connection holds its slot")
    }

    /// The operation finished cleanly (committed, nothing pending on the connection):
    /// keep the connection for the next one, unless another is parked already (then it
    /// goes back to the pool) or the pool it came from was replaced meanwhile (then it
    /// goes back to that pool, which closes it).
    pub fn park(mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.login.generation != self.source.generation() {
            return; // `conn` goes back to its replaced pool, which closes it
        }
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

/// An acquired connection dropped without [`Acquired::park`]: its operation failed, or its future was
/// dropped mid-protocol (cut by a deadline), so the connection may hold a half-read
/// answer or a statement still running. It is closed, never used again: handed back to
/// the pool instead, sqlx's release check would wait for that answer, unbounded, on a
/// silent path, holding the pool's only slot.
impl Drop for Acquired<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
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
