//! The ingest function: SQS batches of embedding records in, an `SqsBatchResponse` out.
//!
//! The handler never returns `Err` because of what a record contains: invalid records
//! are reported in `batchItemFailures` (SQS redrives them to the DLQ) with one log line
//! each; valid ones are written together in one transaction, retried on transient
//! database errors while the invocation's deadline allows.

pub mod message;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use storage::{retry_transient, Backoff, Database, StorageError, WriteOp};
use telemetry::{Metrics, Unit};
use tokio::time::Instant;

pub use message::{Reason, Rejection};
pub use settings::{AllowedNamespaces, Limits, Settings};

/// Everything an invocation needs, built once per execution environment.
#[derive(Debug)]
pub struct State {
    pub db: Database,
    pub settings: Settings,
    pub backoff: Backoff,
    /// Time kept free before the deadline: no retry starts unless an attempt (bounded by
    /// the statement timeout) can finish within it.
    pub reserve: Duration,
}

impl State {
    /// A lazy database handle for `settings.database`; nothing is opened yet.
    pub fn new(settings: Settings) -> Result<Self, StorageError> {
        Ok(Self {
            db: Database::connect_lazy(&settings.database)?,
            backoff: Backoff::default(),
            reserve: settings
                .database
                .statement_timeout
                .min(Duration::from_secs(5)),
            settings,
        })
    }
}

/// The result of one batch, before it is turned into the SQS response.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub received: usize,
    /// Rows inserted, changed or deleted.
    pub written: usize,
    /// Valid records not applied because the stored row has a higher version.
    pub stale: usize,
    /// Valid records that changed nothing: identical redeliveries, deletes of absent
    /// rows, and records superseded by another record for the same key in the batch.
    pub unchanged: usize,
    /// The part of `unchanged` superseded within the batch (kept for the log line).
    pub superseded: usize,
    /// Invalid records by reason code.
    pub rejected: BTreeMap<&'static str, usize>,
    /// Valid records that could not be committed (database unavailable until the deadline).
    pub not_committed: usize,
    /// Valid records reported only to keep a FIFO queue's order behind a failure.
    pub held_back: usize,
    /// Each transient database error met, in order: its SQLSTATE (`40P01` for a
    /// deadlock) or `connection` (I/O, TLS, pool timeouts, PgBouncer availability).
    /// When the batch still failed, the last one was not retried.
    pub transient_errors: Vec<String>,
    /// The message ids for `batchItemFailures`, in batch order.
    pub failures: Vec<String>,
}

/// The Lambda handler.
pub async fn handler(
    state: &State,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let deadline = edge::deadline::of(&event.context);
    let started = Instant::now();
    let report = process(state, &event.payload.records, deadline).await;

    let mut metrics = Metrics::new("pgvector-lambda-kit", "ingest");
    metrics
        .count("RecordsReceived", report.received as u64)
        .count("RecordsWritten", report.written as u64)
        .count("RecordsStale", report.stale as u64)
        .count("RecordsUnchanged", report.unchanged as u64)
        .count(
            "RecordsRejected",
            report.rejected.values().sum::<usize>() as u64,
        )
        .count("RecordsNotCommitted", report.not_committed as u64)
        .count("TransientErrors", report.transient_errors.len() as u64)
        .put(
            "BatchLatency",
            Unit::Milliseconds,
            started.elapsed().as_secs_f64() * 1e3,
        );
    for (code, n) in &report.rejected {
        metrics.count(format!("Rejected.{code}"), *n as u64);
    }
    metrics.flush();
    tracing::info!(
        received = report.received,
        written = report.written,
        stale = report.stale,
        unchanged = report.unchanged,
        superseded = report.superseded,
        rejected = report.rejected.values().sum::<usize>(),
        not_committed = report.not_committed,
        held_back = report.held_back,
        transient_errors = ?report.transient_errors,
        "batch done"
    );

    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failures
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    Ok(response)
}

/// Validates, writes and accounts for every record of a batch, before `deadline`: every
/// database step inside is bounded by it (minus [`storage::DEADLINE_RESERVE`]), so a
/// batch that cannot be committed in time is reported in full, not cut off by Lambda.
pub async fn process(state: &State, records: &[SqsMessage], deadline: Instant) -> BatchReport {
    storage::within_deadline(deadline, process_within(state, records, deadline)).await
}

async fn process_within(state: &State, records: &[SqsMessage], deadline: Instant) -> BatchReport {
    let mut report = BatchReport {
        received: records.len(),
        ..BatchReport::default()
    };
    if records.is_empty() {
        return report;
    }
    let ids: Vec<String> = records.iter().map(message_id).collect();
    let transient_errors = Mutex::new(Vec::new());

    let dimensions = match retry_transient(state.backoff, deadline, state.reserve, |_| async {
        note_transient(&transient_errors, state.db.dimensions().await)
    })
    .await
    {
        Ok(d) => d,
        Err(error) => {
            tracing::error!(%error, class = ?error.class(), "cannot read the embedding dimensions; reporting the whole batch");
            report.not_committed = records.len();
            report.failures = ids;
            report.transient_errors = transient_errors.into_inner().unwrap_or_default();
            return report;
        }
    };

    let now = Utc::now();
    let fifo = records
        .first()
        .and_then(|r| r.event_source_arn.as_deref())
        .is_some_and(|arn| arn.ends_with(".fifo"));

    let mut ops: Vec<WriteOp> = Vec::with_capacity(records.len());
    // Positions (in the batch) of the records behind `ops`, and of those already failed.
    let mut op_positions: Vec<usize> = Vec::with_capacity(records.len());
    let mut failed_positions: Vec<usize> = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let settings = &state.settings;
        let parsed = message::parse(record.body.as_deref(), dimensions, &settings.limits, now)
            .and_then(|op| settings.allowed_namespaces.check(op));
        match parsed {
            Ok(op) => {
                ops.push(op);
                op_positions.push(index);
            }
            Err(rejection) => {
                tracing::warn!(
                    message_id = %ids[index],
                    reason = rejection.reason.code(),
                    detail = %rejection.detail,
                    "record rejected"
                );
                *report.rejected.entry(rejection.reason.code()).or_default() += 1;
                if fifo {
                    // Order matters: this record and every later one go back to the queue.
                    report.held_back = records.len() - index - 1;
                    failed_positions.extend(index..records.len());
                    break;
                }
                failed_positions.push(index);
            }
        }
    }
    if ops.is_empty() {
        report.failures = failed_positions.iter().map(|&i| ids[i].clone()).collect();
        report.transient_errors = transient_errors.into_inner().unwrap_or_default();
        return report;
    }

    let written = retry_transient(state.backoff, deadline, state.reserve, |_| async {
        note_transient(&transient_errors, state.db.write_batch(&ops).await)
    })
    .await;
    report.transient_errors = transient_errors.into_inner().unwrap_or_default();
    match written {
        Ok(outcome) => {
            report.written = outcome.upserted + outcome.deleted;
            report.stale = outcome.stale;
            report.unchanged = outcome.unchanged + outcome.superseded;
            report.superseded = outcome.superseded;
        }
        Err(error) => {
            tracing::error!(%error, class = ?error.class(), sqlstate = ?error.sqlstate(), records = ops.len(), "batch not committed; reporting its records");
            report.not_committed = ops.len();
            // Both lists are ascending: merge them, in batch order, in linear time.
            failed_positions = merge_ascending(&failed_positions, &op_positions);
        }
    }
    report.failures = failed_positions.iter().map(|&i| ids[i].clone()).collect();
    report
}

/// The union of two ascending, disjoint position lists, ascending.
fn merge_ascending(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            merged.push(a[i]);
            i += 1;
        } else {
            merged.push(b[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&a[i..]);
    merged.extend_from_slice(&b[j..]);
    merged
}

/// Passes `result` through, noting a transient error's label in `seen`.
fn note_transient<T>(
    seen: &Mutex<Vec<String>>,
    result: Result<T, StorageError>,
) -> Result<T, StorageError> {
    if let Err(error) = &result {
        if error.is_transient() {
            let label = error.sqlstate().unwrap_or_else(|| "connection".to_owned());
            seen.lock().unwrap_or_else(|e| e.into_inner()).push(label);
        }
    }
    result
}

fn message_id(record: &SqsMessage) -> String {
    record.message_id.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_positions_keeps_batch_order() {
        assert_eq!(
            merge_ascending(&[1, 4, 9], &[0, 2, 3, 10]),
            [0, 1, 2, 3, 4, 9, 10]
        );
        assert_eq!(merge_ascending(&[], &[5]), [5]);
        assert_eq!(merge_ascending(&[7], &[]), [7]);
    }
}
