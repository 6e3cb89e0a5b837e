//! The invocation's deadline, as the Lambda runtime gives it and as an emulator fakes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// The time an invocation gets when the runtime sent no real deadline (emulators).
pub const EMULATOR_BUDGET: Duration = Duration::from_secs(60);

/// The invocation's deadline (`Context::deadline`) as a monotonic instant; see
/// [`from_epoch_ms`].
pub fn of(context: &lambda_runtime::Context) -> Instant {
    from_epoch_ms(context.deadline)
}

/// A wall-clock deadline in milliseconds since the Unix epoch (what the Lambda runtime
/// gives as `Context::deadline`) as a monotonic [`Instant`]; a past deadline is now.
///
/// Local emulators do not all send a real deadline: `cargo lambda watch` sends a fixed
/// `600000` (ten minutes after the epoch). A value before the year 2000 cannot come from
/// Lambda, and is read as [`EMULATOR_BUDGET`] from now.
pub fn from_epoch_ms(deadline_ms: u64) -> Instant {
    const YEAR_2000_MS: u64 = 946_684_800_000;
    if deadline_ms < YEAR_2000_MS {
        return Instant::now() + EMULATOR_BUDGET;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_deadlines_get_a_budget_and_real_ones_are_kept() {
        let budget = from_epoch_ms(600_000) - Instant::now();
        assert!(
            budget > Duration::from_secs(55) && budget <= EMULATOR_BUDGET,
            "{budget:?}"
        );
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let real = from_epoch_ms(now_ms + 3_000) - Instant::now();
        assert!(
            real > Duration::from_millis(2_500) && real <= Duration::from_secs(3),
            "{real:?}"
        );
        assert!(from_epoch_ms(now_ms - 5_000) <= Instant::now());
    }

    #[test]
    fn the_context_deadline_is_read() {
        let mut context = lambda_runtime::Context::default();
        context.deadline = 600_000;
        let budget = of(&context) - Instant::now();
        assert!(budget > Duration::from_secs(55), "{budget:?}");
    }
}
