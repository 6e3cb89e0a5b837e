//! The purge function: on an EventBridge schedule, delete embeddings past their
//! namespace's retention window in bounded batches, stopping before the deadline.
//!
//! One run at a time (a lease row in the database; the loser returns at once with
//! `skipped: true`); each batch is its own short transaction with `SKIP LOCKED`, so
//! ingest and search are never blocked for long. A run that stops early (the deadline
//! near, a batch cut by it, a batch that could not take the advisory lock) reports
//! `complete: false` and why (`stopped`), and the next run finishes the work.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage::{Database, Namespace, PurgeScope, StorageError};
use telemetry::Metrics;
use tokio::time::Instant;
use uuid::Uuid;

pub mod settings;

pub use settings::Settings;

/// Everything an invocation needs, built once per execution environment.
#[derive(Debug)]
pub struct State {
    pub db: Database,
    pub settings: Settings,
}

impl State {
    /// A lazy database handle for `settings.database`; nothing is opened yet.
    pub fn new(settings: Settings) -> Result<Self, StorageError> {
        Ok(Self {
            db: Database::connect_lazy(&settings.database)?,
            settings,
        })
    }
}

/// Options for a manual run, from the rule's input or the event's `detail`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub dry_run: bool,
    pub namespace: Option<Namespace>,
    pub older_than_days: Option<u32>,
}

/// What a run did; also the function's response.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PurgeReport {
    pub deleted: u64,
    pub batches: u32,
    pub complete: bool,
    /// The cutoff for namespaces without an override (overrides have their own).
    pub cutoff: DateTime<Utc>,
    pub per_namespace: BTreeMap<String, u64>,
    pub dry_run: bool,
    /// Another run held the lease; this one did nothing.
    pub skipped: bool,
    /// Why the run stopped before it was complete (absent when complete, skipped or a
    /// dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stop>,
}

/// Why a run stopped early (`complete: false`); the next run continues the work.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Too close to the invocation's deadline to start a batch (the safety margin), or a
    /// batch's database step was cut by the deadline: stopped rather than killed.
    Deadline,
    /// A batch could not take the purge's advisory lock: another batch holds it.
    LockBusy,
}

/// A request the function cannot act on; reported as the invocation's error so the
/// scheduler's retry and failure metrics see it.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("invalid purge request: {0}; expected {{\"dry_run\": bool, \"namespace\": \"acme\", \"older_than_days\": n}}")]
    InvalidRequest(String),
    #[error("older_than_days must be at least 1, got 0")]
    ZeroDays,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The error type Lambda reports: a stable `errorType` per kind of failure.
impl From<PurgeError> for lambda_runtime::Diagnostic {
    fn from(error: PurgeError) -> Self {
        let error_type = match &error {
            PurgeError::InvalidRequest(_) | PurgeError::ZeroDays => "InvalidRequest",
            PurgeError::Storage(e) if e.is_unavailable() => "DatabaseUnavailable",
            PurgeError::Storage(_) => "DatabaseError",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// The Lambda handler.
pub async fn handler(state: &State, event: LambdaEvent<Value>) -> Result<PurgeReport, PurgeError> {
    let request = parse_request(event.payload)?;
    let deadline = edge::deadline::of(&event.context);
    let report = run(state, &request, Utc::now(), deadline).await?;
    let mut metrics = Metrics::new("pgvector-lambda-kit", "purge");
    metrics
        .count("RowsDeleted", report.deleted)
        .count("Batches", u64::from(report.batches))
        .count("Complete", u64::from(report.complete))
        .count("Skipped", u64::from(report.skipped));
    metrics.flush();
    tracing::info!(?report, "purge done");
    Ok(report)
}

/// Reads the options from an EventBridge event (`detail`) or from a bare input object.
pub fn parse_request(payload: Value) -> Result<PurgeRequest, PurgeError> {
    let options = match payload {
        Value::Object(mut map) if map.contains_key("detail-type") => {
            map.remove("detail").unwrap_or(Value::Null)
        }
        other => other,
    };
    let request: PurgeRequest = match options {
        Value::Null => PurgeRequest::default(),
        value => {
            serde_json::from_value(value).map_err(|e| PurgeError::InvalidRequest(e.to_string()))?
        }
    };
    if request.older_than_days == Some(0) {
        return Err(PurgeError::ZeroDays);
    }
    Ok(request)
}

/// One purge run: take the lease, delete batch after batch until nothing is left or the
/// deadline (minus the safety margin) is near, give the lease back. Every database step
/// is bounded by `deadline` (minus [`storage::DEADLINE_RESERVE`]).
pub async fn run(
    state: &State,
    request: &PurgeRequest,
    now: DateTime<Utc>,
    deadline: Instant,
) -> Result<PurgeReport, StorageError> {
    storage::within_deadline(deadline, run_within(state, request, now, deadline)).await
}

async fn run_within(
    state: &State,
    request: &PurgeRequest,
    now: DateTime<Utc>,
    deadline: Instant,
) -> Result<PurgeReport, StorageError> {
    let scope = PurgeScope {
        now,
        default_days: state.settings.retention_days,
        namespace: request.namespace.clone(),
        older_than_days: request.older_than_days,
    };
    let mut report = PurgeReport {
        cutoff: scope.default_cutoff(),
        dry_run: request.dry_run,
        ..PurgeReport::default()
    };
    if request.dry_run {
        report.per_namespace = state.db.count_expired(&scope).await?.per_namespace;
        report.deleted = 0;
        report.complete = true;
        return Ok(report);
    }

    let holder = Uuid::new_v4();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let lease_until = Utc::now() + chrono::Duration::from_std(remaining).unwrap_or_default();
    let taken = match state.db.acquire_purge_lease(holder, lease_until).await {
        Ok(taken) => taken,
        Err(error) if error.is_deadline() => {
            tracing::warn!(%error, "taking the lease ran into the invocation's deadline");
            stop(&mut report, Stop::Deadline);
            return Ok(report);
        }
        Err(error) => return Err(error),
    };
    if !taken {
        tracing::info!("another purge run holds the lease; skipping");
        report.skipped = true;
        return Ok(report);
    }
    let result = delete_batches(state, &scope, deadline, &mut report).await;
    if let Err(error) = state.db.release_purge_lease(holder).await {
        tracing::warn!(%error, "could not release the purge lease; it expires at the run's deadline");
    }
    result.map(|()| report)
}

/// Deletes batch after batch. `Ok` with `complete: false` and [`PurgeReport::stopped`]
/// when the run stops early on purpose (the deadline, a busy lock); `Err` when the
/// database failed otherwise (the scheduler's retry or the next run continues).
async fn delete_batches(
    state: &State,
    scope: &PurgeScope,
    deadline: Instant,
    report: &mut PurgeReport,
) -> Result<(), StorageError> {
    loop {
        if Instant::now() + state.settings.safety_margin >= deadline {
            stop(report, Stop::Deadline);
            return Ok(());
        }
        let batch = match state.db.purge_batch(scope, state.settings.batch_size).await {
            Ok(batch) => batch,
            Err(error) if error.is_deadline() => {
                tracing::warn!(%error, "a batch ran into the invocation's deadline");
                stop(report, Stop::Deadline);
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        if batch.lock_busy {
            stop(report, Stop::LockBusy);
            return Ok(());
        }
        let deleted = batch.total();
        report.batches += 1;
        report.deleted += deleted;
        for (namespace, n) in batch.per_namespace {
            *report.per_namespace.entry(namespace).or_default() += n;
        }
        if batch.picked < u64::from(state.settings.batch_size) {
            report.complete = true;
            return Ok(());
        }
    }
}

/// Ends a run early: `complete` stays false, and the report says why.
fn stop(report: &mut PurgeReport, why: Stop) {
    tracing::info!(
        deleted = report.deleted,
        batches = report.batches,
        stopped = ?why,
        "stopping before the work is complete; the next run continues it"
    );
    report.stopped = Some(why);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_scheduled_event_with_empty_detail_is_a_default_run() {
        let event: Value = serde_json::from_str(include_str!(
            "../../../dev/support/fixtures/example-eventbridge-schedule.json"
        ))
        .unwrap();
        assert_eq!(parse_request(event).unwrap(), PurgeRequest::default());
    }

    #[test]
    fn manual_options_come_from_detail_or_the_bare_input() {
        let expected = PurgeRequest {
            dry_run: true,
            namespace: Some(Namespace::parse("acme").unwrap()),
            older_than_days: Some(7),
        };
        let options = json!({"dry_run": true, "namespace": "acme", "older_than_days": 7});
        assert_eq!(parse_request(options.clone()).unwrap(), expected);
        let event =
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": options});
        assert_eq!(parse_request(event).unwrap(), expected);
    }

    #[test]
    fn bad_options_are_refused_with_the_expected_shape() {
        let err = parse_request(json!({"dryrun": true}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dry_run"), "{err}");
        assert!(parse_request(json!({"namespace": "Bad NS"})).is_err());
        assert!(matches!(
            parse_request(json!({"older_than_days": 0})),
            Err(PurgeError::ZeroDays)
        ));
    }
}
