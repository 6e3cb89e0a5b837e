//! Client-side deadlines: every step of a database operation is answered in time or
//! abandoned, and an abandoned connection is closed, never used again.
//!
//! PostgreSQL's `statement_timeout` only helps when the statement reaches the server and
//! its answer comes back. A network path that goes silent (a black-holed flow, a load
//! balancer that forgot the connection, PgBouncer stopped with `SIGSTOP`) answers
//! nothing, so the kit bounds each step itself with a Tokio timer:
//!
//! | step | bound |
//! | --- | --- |
//! | lease: the kept connection's ping, the pool's acquire, connect, TLS, login | `DB_ACQUIRE_TIMEOUT_MS` (the ping at most half of it, so a dead kept connection can still be replaced in time) |
//! | each round trip: `BEGIN`, a statement, `COMMIT` | `DB_STATEMENT_TIMEOUT_MS` + [`STATEMENT_GRACE`] (the server's own timeout answers first when it can) |
//!
//! and, inside [`within_deadline`], never past the invocation's deadline minus
//! [`DEADLINE_RESERVE`] (the time kept to answer: a 503, a `batchItemFailures` list, a
//! purge report). The deadline is any [`Instant`]: the handlers pass their invocation's,
//! tests and tools whatever they need; outside a scope only the steps' own bounds apply.
//!
//! A step that runs out of time fails with [`StorageError::Timeout`] (transient, so
//! search answers 503 and ingest retries or reports the batch). The future it cut was
//! mid-protocol, so its connection is closed when the operation's lease is dropped
//! (`kept_connection.rs`): only a connection whose operation finished cleanly is kept.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::StorageError;

/// Kept free before the invocation's deadline for answering after the database gave up.
pub const DEADLINE_RESERVE: Duration = Duration::from_millis(500);

/// How much longer than its statement timeout a round trip may take before the client
/// gives up on it: the server cancels the statement at the timeout, and its answer
/// (`57014`, on a connection still fit for use) needs a moment to come back.
pub const STATEMENT_GRACE: Duration = Duration::from_millis(500);

tokio::task_local! {
    /// When database work of the current invocation must have ended.
    static CUTOFF: Instant;
}

/// Runs `work` with every database operation inside it (on this task) bounded by
/// `deadline` minus [`DEADLINE_RESERVE`], besides each step's own timeout. Handlers wrap
/// each invocation in it with the invocation's deadline.
pub async fn within_deadline<F: Future>(deadline: Instant, work: F) -> F::Output {
    let cutoff = deadline.checked_sub(DEADLINE_RESERVE).unwrap_or(deadline);
    // Boxed: a whole handler's future nested in the scope's went past rustc's query depth
    // limit when the function binaries laid out their `main` futures.
    CUTOFF.scope(cutoff, Box::pin(work)).await
}

/// The instant database work must end by in the current [`within_deadline`] scope.
pub fn cutoff() -> Option<Instant> {
    CUTOFF.try_with(|cutoff| *cutoff).ok()
}

/// Which step of an operation ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Getting a connection: the pool's acquire (connect, TLS, login) or the kept one.
    Acquire,
    /// The check of a kept connection that sat idle.
    Ping,
    /// One request and its answer: `BEGIN`, a statement or `COMMIT`.
    RoundTrip,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Acquire => "acquiring a connection",
            Step::Ping => "checking the kept connection",
            Step::RoundTrip => "a round trip to the database",
        })
    }
}

/// Which bound cut a step: its own timeout, or the invocation's deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The step's own limit (`DB_ACQUIRE_TIMEOUT_MS`, `DB_STATEMENT_TIMEOUT_MS` + grace).
    Own(Duration),
    /// The invocation's deadline minus [`DEADLINE_RESERVE`], which came first.
    Deadline(Duration),
}

impl Bound {
    /// How long the step was given.
    pub fn limit(self) -> Duration {
        match self {
            Bound::Own(limit) | Bound::Deadline(limit) => limit,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Own(limit) => write!(f, "its own limit of {} ms", limit.as_millis()),
            Bound::Deadline(limit) => write!(
                f,
                "the {} ms left before the invocation's deadline (minus a {} ms reserve)",
                limit.as_millis(),
                DEADLINE_RESERVE.as_millis()
            ),
        }
    }
}

/// Runs one step within `own` and the current scope's cutoff, whichever ends first.
pub(crate) async fn bounded<T, E, F>(step: Step, own: Duration, work: F) -> Result<T, StorageError>
where
    F: Future<Output = Result<T, E>>,
    E: Into<StorageError>,
{
    let now = Instant::now();
    let own_end = now + own;
    let (end, bound) = match cutoff() {
        Some(cutoff) if cutoff < own_end => (
            cutoff,
            Bound::Deadline(cutoff.saturating_duration_since(now)),
        ),
        _ => (own_end, Bound::Own(own)),
    };
    match tokio::time::timeout_at(end, work).await {
        Ok(outcome) => outcome.map_err(Into::into),
        Err(_) => Err(StorageError::Timeout { step, bound }),
    }
}

/// Runs one round trip (`BEGIN`, a statement, `COMMIT`) within `statement_timeout` plus
/// [`STATEMENT_GRACE`] and the current scope's cutoff.
pub(crate) async fn round_trip<T, E, F>(
    statement_timeout: Duration,
    work: F,
) -> Result<T, StorageError>
where
    F: Future<Output = Result<T, E>>,
    E: Into<StorageError>,
{
    bounded(Step::RoundTrip, statement_timeout + STATEMENT_GRACE, work).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn never() -> Result<(), StorageError> {
        std::future::pending().await
    }

    /// Whether `elapsed` is `expected`, give or take a busy machine's scheduling.
    fn about(elapsed: Duration, expected: Duration) -> bool {
        elapsed >= expected && elapsed < expected + Duration::from_millis(250)
    }

    #[tokio::test]
    async fn a_step_ends_at_its_own_limit_outside_a_scope() {
        let started = Instant::now();
        let own = Duration::from_millis(200);
        let error = bounded(Step::RoundTrip, own, never()).await.unwrap_err();
        assert!(about(started.elapsed(), own), "{:?}", started.elapsed());
        assert!(
            matches!(error, StorageError::Timeout { step: Step::RoundTrip, bound: Bound::Own(d) } if d == own),
            "{error:?}"
        );
        assert!(error.is_transient() && !error.is_deadline(), "{error}");
    }

    /// A step that never answers, with `own` as its limit, in a scope whose deadline is
    /// `deadline_in` away: how long it took to fail, and the error.
    async fn cut(deadline_in: Duration, own: Duration) -> (Duration, StorageError) {
        let started = Instant::now();
        let error = within_deadline(started + deadline_in, async {
            bounded(Step::Acquire, own, never()).await
        })
        .await
        .unwrap_err();
        (started.elapsed(), error)
    }

    #[tokio::test]
    async fn the_invocation_deadline_wins_when_it_comes_first() {
        let short = Duration::from_millis(200);
        let (took, error) = cut(DEADLINE_RESERVE + short, Duration::from_secs(10)).await;
        assert!(about(took, short), "{took:?}");
        assert!(error.is_deadline(), "{error:?}");
        assert!(error.to_string().contains("deadline"), "{error}");

        // A later deadline leaves the step's own limit in force.
        let (took, error) = cut(Duration::from_secs(60), short).await;
        assert!(about(took, short), "{took:?}");
        assert!(!error.is_deadline(), "{error:?}");
    }

    #[tokio::test]
    async fn a_deadline_within_the_reserve_gives_no_time_at_all() {
        let (took, error) = cut(DEADLINE_RESERVE / 2, Duration::from_secs(5)).await;
        assert!(took < Duration::from_millis(100), "{took:?}");
        assert!(error.is_deadline(), "{error:?}");
    }

    #[tokio::test]
    async fn answers_in_time_pass_through() {
        let value = bounded(Step::RoundTrip, Duration::from_secs(1), async {
            Ok::<_, sqlx::Error>(7)
        })
        .await
        .unwrap();
        assert_eq!(value, 7);
        assert!(cutoff().is_none());
    }
}
