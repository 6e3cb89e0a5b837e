//! How long a function can wait on the database in the worst case, and how long a
//! database outage the queue absorbs: the sums `kit check` prints and holds to
//! (docs/capacity.md, "Worst cases"; docs/reliability.md, "Deadlines").
//!
//! One attempt at a database operation waits at most for a connection
//! (`acquire_timeout_ms`), then in PgBouncer's queue for a server connection
//! (`query_wait_timeout_s`), then for the statement (`statement_timeout_ms`). The
//! function's retry policy makes some number of attempts, and the handler keeps
//! [`storage::DEADLINE_RESERVE`] to answer. The sum must fit the function's timeout, and
//! search's API Gateway's 29 s, or the function is killed (the gateway answers 504)
//! instead of answering.

use std::fmt;

use super::budget::{Rule, Violation, API_GATEWAY_TIMEOUT_S, LAMBDA_MAX_TIMEOUT_S};
use super::model::{FunctionName, KitConfig};

/// The floor of [`outage_absorbed_ms`] when `queue.outage_floor_minutes` is not set.
pub const DEFAULT_OUTAGE_FLOOR_MINUTES: u32 = 30;

/// How many attempts a function's retry policy makes at one database operation within
/// an invocation, and the policy in words.
pub fn attempts(function: FunctionName) -> (u32, &'static str) {
    match function {
        // storage's `reconnecting`: a read whose connection was lost runs once more.
        FunctionName::Search => (
            2,
            "a read that lost its connection runs once more on a new one",
        ),
        // ingest retries with backoff until its deadline: every retry takes what is left,
        // the first attempt must fit whole.
        FunctionName::Ingest => (
            1,
            "a batch is retried with backoff while time is left; the first attempt must fit",
        ),
        FunctionName::Purge => (1, "a failed batch ends the run; the next run continues"),
    }
}

/// One function's worst case in one invocation, in milliseconds:
/// `attempts × (acquire + query_wait + statement) + reserve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorstCase {
    pub function: FunctionName,
    pub acquire_ms: u64,
    pub query_wait_ms: u64,
    pub statement_ms: u64,
    pub attempts: u32,
    pub reserve_ms: u64,
    /// What it must fit: the function's timeout, or API Gateway's for search if shorter.
    pub limit_ms: u64,
    /// The limit is API Gateway's, not the function's timeout.
    pub gateway_limited: bool,
}

impl WorstCase {
    pub fn of(config: &KitConfig, function: FunctionName) -> WorstCase {
        let f = config.function(function);
        let timeout_ms = u64::from(f.timeout_s) * 1000;
        let gateway_ms = u64::from(API_GATEWAY_TIMEOUT_S) * 1000;
        let gateway_limited = function == FunctionName::Search && gateway_ms < timeout_ms;
        WorstCase {
            function,
            acquire_ms: u64::from(f.acquire_timeout_ms),
            query_wait_ms: u64::from(config.pgbouncer.query_wait_timeout_s) * 1000,
            statement_ms: u64::from(f.statement_timeout_ms),
            attempts: attempts(function).0,
            reserve_ms: storage::DEADLINE_RESERVE.as_millis() as u64,
            limit_ms: if gateway_limited {
                gateway_ms
            } else {
                timeout_ms
            },
            gateway_limited,
        }
    }

    /// One attempt: a connection, PgBouncer's queue, the statement.
    pub fn attempt_ms(&self) -> u64 {
        self.acquire_ms + self.query_wait_ms + self.statement_ms
    }

    pub fn total_ms(&self) -> u64 {
        u64::from(self.attempts) * self.attempt_ms() + self.reserve_ms
    }

    pub fn fits(&self) -> bool {
        self.total_ms() <= self.limit_ms
    }

    /// The largest statement timeout that fits, if any does.
    fn fitting_statement_ms(&self) -> Option<u64> {
        let per_attempt = self.limit_ms.checked_sub(self.reserve_ms)? / u64::from(self.attempts);
        per_attempt
            .checked_sub(self.acquire_ms + self.query_wait_ms)
            .filter(|ms| *ms >= 1)
    }

    fn limit_name(&self) -> String {
        if self.gateway_limited {
            format!("API Gateway's {API_GATEWAY_TIMEOUT_S} s")
        } else {
            format!("functions.{}.timeout_s", self.function)
        }
    }
}

/// `ingest 1 × (3000 + 5000 + 15000) + 500 = 23500 ms ≤ 30000 ms (functions.ingest.timeout_s)`.
impl fmt::Display for WorstCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} × ({} + {} + {}) + {} = {} ms {} {} ms ({})",
            self.function,
            self.attempts,
            self.acquire_ms,
            self.query_wait_ms,
            self.statement_ms,
            self.reserve_ms,
            self.total_ms(),
            if self.fits() { "≤" } else { ">" },
            self.limit_ms,
            self.limit_name()
        )
    }
}

/// Every function's worst case must fit its limit.
pub(super) fn check(config: &KitConfig, out: &mut Vec<Violation>) {
    for function in FunctionName::ALL {
        let case = WorstCase::of(config, function);
        if case.fits() {
            continue;
        }
        let name = function.as_str();
        let (attempts, policy) = attempts(function);
        let needed_s = case.total_ms().div_ceil(1000);
        let mut fixes = Vec::new();
        let timeout_cap = if function == FunctionName::Search {
            API_GATEWAY_TIMEOUT_S
        } else {
            LAMBDA_MAX_TIMEOUT_S
        };
        if needed_s <= u64::from(timeout_cap) && !case.gateway_limited {
            fixes.push(format!("raise functions.{name}.timeout_s to {needed_s}"));
        }
        match case.fitting_statement_ms() {
            Some(statement) => fixes.push(format!(
                "lower functions.{name}.statement_timeout_ms to {statement}"
            )),
            None => fixes.push(format!(
                "lower pgbouncer.query_wait_timeout_s and functions.{name}.acquire_timeout_ms"
            )),
        }
        out.push(Violation::new(
            Rule::WorstCase,
            format!(
                "{name} can wait {} ms on the database in one invocation but has {} ms ({}): \
                 {attempts} attempt(s) ({policy}) × (acquire_timeout_ms {} + query_wait_timeout {} \
                 + statement_timeout_ms {}) + {} ms reserved to answer",
                case.total_ms(),
                case.limit_ms,
                case.limit_name(),
                case.acquire_ms,
                case.query_wait_ms,
                case.statement_ms,
                case.reserve_ms,
            ),
            fixes.join(", or "),
        ));
    }
}

/// How long a database outage can last before a valid ingest message reaches the DLQ.
///
/// The message is dead-lettered when all its `max_receive_count` deliveries fail. The
/// first comes when the outage starts (the worst case); each failed delivery comes back
/// when its visibility timeout ends, so the last one starts `(max_receive_count − 1) ×
/// visibility_timeout` later, and retries with backoff until its own deadline
/// (`functions.ingest.timeout_s` minus the reserve). An outage shorter than that loses
/// nothing.
pub fn outage_absorbed_ms(config: &KitConfig) -> u64 {
    let q = &config.queue;
    let last_delivery_ms = (u64::from(config.functions.ingest.timeout_s) * 1000)
        .saturating_sub(storage::DEADLINE_RESERVE.as_millis() as u64);
    u64::from(q.max_receive_count.saturating_sub(1)) * u64::from(q.visibility_timeout_s) * 1000
        + last_delivery_ms
}

/// The floor the absorbed outage is held to (`queue.outage_floor_minutes`), in ms.
pub fn outage_floor_ms(config: &KitConfig) -> u64 {
    u64::from(config.queue.outage_floor_minutes) * 60_000
}

/// What `kit check` prints about the outage window, e.g. `32 min 29 s ((max_receive_count
/// 9 − 1) × visibility 240 s + the last delivery retrying 29.5 s) ≥ floor 30 min`.
pub fn outage_line(config: &KitConfig) -> String {
    let q = &config.queue;
    let absorbed = outage_absorbed_ms(config);
    let last = absorbed
        - u64::from(q.max_receive_count.saturating_sub(1))
            * u64::from(q.visibility_timeout_s)
            * 1000;
    format!(
        "{} ((max_receive_count {} − 1) × visibility {} s + the last delivery retrying {:.1} s) {} floor {} min",
        minutes_and_seconds(absorbed),
        q.max_receive_count,
        q.visibility_timeout_s,
        last as f64 / 1000.0,
        if absorbed >= outage_floor_ms(config) { "≥" } else { "<" },
        q.outage_floor_minutes
    )
}

/// Warnings: a queue that dead-letters valid messages during an outage shorter than the
/// floor. Deployable, but an operator should know.
pub(super) fn warnings(config: &KitConfig, out: &mut Vec<Violation>) {
    let absorbed = outage_absorbed_ms(config);
    let floor = outage_floor_ms(config);
    if absorbed >= floor {
        return;
    }
    let q = &config.queue;
    let visibility_ms = u64::from(q.visibility_timeout_s).max(1) * 1000;
    let last_ms = absorbed
        - u64::from(q.max_receive_count.saturating_sub(1))
            * u64::from(q.visibility_timeout_s)
            * 1000;
    let cycles = (floor - last_ms).div_ceil(visibility_ms);
    let mut fixes = vec![format!("raise queue.max_receive_count to {}", cycles + 1)];
    if q.max_receive_count > 1 {
        let visibility = (floor - last_ms).div_ceil(u64::from(q.max_receive_count - 1) * 1000);
        fixes.push(format!("raise queue.visibility_timeout_s to {visibility}"));
    }
    fixes.push(format!(
        "lower queue.outage_floor_minutes to {}",
        absorbed / 60_000
    ));
    out.push(Violation::new(
        Rule::OutageFloor,
        format!(
            "a database outage of {} dead-letters valid ingest messages, under the floor of {} min \
             (queue.outage_floor_minutes): (max_receive_count {} − 1) × visibility {} s + the last \
             delivery retrying {:.1} s",
            minutes_and_seconds(absorbed),
            q.outage_floor_minutes,
            q.max_receive_count,
            q.visibility_timeout_s,
            last_ms as f64 / 1000.0
        ),
        fixes.join(", or "),
    ));
}

/// `32 min 29 s`, `45 s`.
fn minutes_and_seconds(ms: u64) -> String {
    let seconds = ms / 1000;
    match (seconds / 60, seconds % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}
