//! The ingest function: SQS batches of embedding records in, an `SqsBatchResponse` out.
//!
//! The handler never returns `Err` because of what a record contains: invalid records
//! are reported in `batchItemFailures` (SQS redrives them to the DLQ) with one log line
//! each; valid ones are written together in one transaction, retried on transient
//! database errors while the invocation's deadline allows.

pub mod message;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use lambda_runtime::LambdaEvent;
use storage::{retry_transient, Backoff, Config, Database, StorageError, WriteOp};
use telemetry::{Metrics, Unit};
use tokio::time::Instant;

pub use message::{Limits, Reason, Rejection};

/// Everything an invocation needs, built once per execution environment.
#[derive(Debug)]
pub struct Ingest {
    pub db: Database,
    pub limits: Limits,
    pub backoff: Backoff,
    /// Time kept free before the deadline: no retry starts unless an attempt (bounded by
    /// the statement timeout) can finish within it.
    pub reserve: Duration,
}

impl Ingest {
    pub fn new(config: &Config, limits: Limits) -> Result<Self, StorageError> {
        Ok(Self {
            db: Database::connect_lazy(config)?,
            limits,
            backoff: Backoff::default(),
            reserve: config.statement_timeout.min(Duration::from_secs(5)),
        })
    }
}

/// The result of one batch, before it is turned into the SQS response.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub received: usize,
    pub written: usize,
    pub unchanged: usize,
    pub rejected: BTreeMap<&'static str, usize>,
    /// Valid records that could not be committed (database unavailable until the deadline).
    pub not_committed: usize,
    /// Valid records reported only to keep a FIFO queue's order behind a failure.
    pub held_back: usize,
    pub failures: Vec<String>,
}

/// The Lambda handler.
pub async fn handler(
    state: &Ingest,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let deadline = deadline_of(&event.context);
    let started = Instant::now();
    let report = process(state, &event.payload.records, deadline).await;

    let mut metrics = Metrics::new("pgvector-lambda-kit", "ingest");
    metrics
        .count("RecordsReceived", report.received as u64)
        .count("RecordsWritten", report.written as u64)
        .count("RecordsUnchanged", report.unchanged as u64)
        .count(
            "RecordsRejected",
            report.rejected.values().sum::<usize>() as u64,
        )
        .count("RecordsNotCommitted", report.not_committed as u64)
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
        unchanged = report.unchanged,
        rejected = report.rejected.values().sum::<usize>(),
        not_committed = report.not_committed,
        held_back = report.held_back,
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

/// Validates, writes and accounts for every record of a batch.
pub async fn process(state: &Ingest, records: &[SqsMessage], deadline: Instant) -> BatchReport {
    let mut report = BatchReport {
        received: records.len(),
        ..BatchReport::default()
    };
    if records.is_empty() {
        return report;
    }
    let ids: Vec<String> = records.iter().map(message_id).collect();

    let dimensions = match retry_transient(state.backoff, deadline, state.reserve, |_| {
        state.db.dimensions()
    })
    .await
    {
        Ok(d) => d,
        Err(error) => {
            tracing::error!(%error, class = ?error.class(), "cannot read the embedding dimensions; reporting the whole batch");
            report.not_committed = records.len();
            report.failures = ids;
            return report;
        }
    };

    let now = Utc::now();
    let fifo = records
        .first()
        .and_then(|r| r.event_source_arn.as_deref())
        .is_some_and(|arn| arn.ends_with(".fifo"));

    let mut ops: Vec<WriteOp> = Vec::with_capacity(records.len());
    let mut op_ids: Vec<usize> = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        match message::parse(record.body.as_deref(), dimensions, &state.limits, now) {
            Ok(op) => {
                ops.push(op);
                op_ids.push(index);
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
                    report.failures.extend(ids[index..].iter().cloned());
                    break;
                }
                report.failures.push(ids[index].clone());
            }
        }
    }
    if ops.is_empty() {
        return report;
    }

    match retry_transient(state.backoff, deadline, state.reserve, |_| {
        state.db.write_batch(&ops)
    })
    .await
    {
        Ok(outcome) => {
            report.written = outcome.upserted + outcome.deleted;
            report.unchanged = outcome.unchanged + outcome.superseded;
        }
        Err(error) => {
            tracing::error!(%error, class = ?error.class(), sqlstate = ?error.sqlstate(), records = ops.len(), "batch not committed; reporting its records");
            report.not_committed = ops.len();
            let mut failures: Vec<usize> = op_ids;
            failures.extend(
                report
                    .failures
                    .iter()
                    .filter_map(|id| ids.iter().position(|x| x == id)),
            );
            failures.sort_unstable();
            failures.dedup();
            report.failures = failures.into_iter().map(|i| ids[i].clone()).collect();
        }
    }
    report
}

fn message_id(record: &SqsMessage) -> String {
    record.message_id.clone().unwrap_or_default()
}

/// The invocation's deadline as a monotonic instant.
pub fn deadline_of(context: &lambda_runtime::Context) -> Instant {
    let now_ms = Utc::now().timestamp_millis().max(0) as u64;
    Instant::now() + Duration::from_millis(context.deadline.saturating_sub(now_ms))
}
