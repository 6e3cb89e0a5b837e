//! Jittered exponential backoff for transient database errors, bounded by a deadline;
//! and one immediate repeat for reads that lost their connection.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::StorageError;

/// Full-jitter exponential backoff: attempt n sleeps a random time in
/// `[0, min(cap, base × 2ⁿ)]`, which spreads a thundering herd of Lambda
/// environments hitting a recovering database.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.cap);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }
}

/// Runs `operation` until it succeeds, fails permanently, or the next attempt could not
/// finish before `deadline` (a retry is only started while `reserve` remains after its
/// backoff sleep). Returns the last error otherwise.
pub async fn retry_transient<T, F, Fut>(
    backoff: Backoff,
    deadline: Instant,
    reserve: Duration,
    mut operation: F,
) -> Result<T, StorageError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let mut attempt = 0;
    loop {
        match operation(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() => {
                let sleep = backoff.delay(attempt);
                let resume = Instant::now() + sleep;
                if resume + reserve >= deadline {
                    return Err(error);
                }
                tracing::warn!(attempt, sleep_ms = sleep.as_millis() as u64, %error, "transient database error, retrying");
                tokio::time::sleep_until(resume).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Runs a read, and runs it once more if it lost its connection: the failed
/// connection went back to the pool (which closes it), so the second attempt gets a
/// new one. Anything else, or a second loss, is returned as is.
pub(crate) async fn reconnecting<T, F, Fut>(read: F) -> Result<T, StorageError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    match read().await {
        Err(error) if error.connection_lost() => {
            tracing::info!(%error, "a read lost its connection; running it once more on a new one");
            read().await
        }
        outcome => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_but_stay_under_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
        };
        for attempt in 0..40 {
            let d = b.delay(attempt);
            assert!(d <= Duration::from_millis(100), "{attempt}: {d:?}");
            assert!(
                d <= Duration::from_millis(10 << attempt.min(10)),
                "{attempt}: {d:?}"
            );
        }
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        let result: Result<(), _> =
            retry_transient(Backoff::default(), deadline, Duration::ZERO, |_| {
                calls += 1;
                async { Err(StorageError::Schema("missing".into())) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_the_deadline() {
        let mut calls = 0;
        let deadline = Instant::now() + Duration::from_millis(300);
        let result: Result<(), _> = retry_transient(
            Backoff {
                base: Duration::from_millis(5),
                cap: Duration::from_millis(20),
            },
            deadline,
            Duration::from_millis(10),
            |_| {
                calls += 1;
                async { Err(StorageError::Database(sqlx::Error::PoolTimedOut)) }
            },
        )
        .await;
        assert!(result.unwrap_err().is_transient());
        assert!(calls > 2, "retried only {calls} times");
        assert!(Instant::now() < deadline + Duration::from_millis(50));
    }
}
