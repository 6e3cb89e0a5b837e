//! Step 2, ingest: the corpus as SQS events through `cargo lambda invoke ingest`; the
//! planted invalid records, and only they, must come back in `batchItemFailures`.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use kit_support::stats::millis;
use storage::Namespace;
use uuid::Uuid;

use super::corpus::{planted_invalid, upsert_body, Corpus};
use super::emulator::Emulator;
use super::events::{batch_failures, sqs_event, Message, WorkDir};
use super::progress::Progress;
use super::{thousands, DemoArgs};

pub struct IngestReport {
    pub sent: usize,
    pub batches: usize,
    pub accepted: usize,
    /// The planted records, as reported back: message id, what is wrong with it.
    pub rejected: Vec<(&'static str, &'static str)>,
    pub elapsed: Duration,
    pub batch_ms: Vec<f64>,
}

pub async fn ingest_corpus(
    args: &DemoArgs,
    emulator: &Emulator,
    work: &WorkDir,
    corpus: &Corpus,
    version: u64,
) -> anyhow::Result<IngestReport> {
    let namespace = Namespace::parse(&args.namespace)?;
    let mut messages: Vec<Message> = corpus
        .docs
        .iter()
        .map(|doc| {
            (
                Uuid::new_v4().to_string(),
                upsert_body(&namespace, doc, version, None),
            )
        })
        .collect();
    // The planted records go into the first batch, between valid ones.
    let planted = planted_invalid(&namespace, &corpus.docs[0]);
    let batch_size = args.batch_size as usize;
    for (n, record) in planted.iter().enumerate() {
        let at = ((n + 1) * batch_size / (planted.len() + 1)).min(messages.len());
        messages.insert(at, (record.message_id.into(), record.body.clone()));
    }

    let total = messages.len();
    let chunks: Vec<&[Message]> = messages.chunks(batch_size).collect();
    let mut progress = Progress::new("ingest");
    let mut report = IngestReport {
        sent: 0,
        batches: chunks.len(),
        accepted: 0,
        rejected: Vec::new(),
        elapsed: Duration::ZERO,
        batch_ms: Vec::with_capacity(chunks.len()),
    };
    let started = Instant::now();
    for (index, chunk) in chunks.iter().enumerate() {
        let name = format!("ingest-{:03}.json", index + 1);
        let file = work.write(&name, &sqs_event(chunk))?;
        let batch_started = Instant::now();
        let answer = emulator.invoke("ingest", &file).await?;
        report.batch_ms.push(millis(batch_started.elapsed()));
        let failures = batch_failures(answer, &file)?;
        for failure in &failures {
            match planted.iter().find(|p| p.message_id == failure) {
                Some(p) => report.rejected.push((p.message_id, p.defect)),
                None => bail!(
                    "batch {} ({}) reported message {failure} as failed, which is a valid record; \
                     see the function's log line for that messageId",
                    index + 1,
                    file.display()
                ),
            }
        }
        report.sent += chunk.len();
        report.accepted += chunk.len() - failures.len();
        progress.update(&format!(
            "batch {}/{} ({}/{} records), {:.0} ms",
            index + 1,
            chunks.len(),
            thousands(report.sent),
            thousands(total),
            report.batch_ms[index]
        ));
    }
    report.elapsed = started.elapsed();
    progress.finish();
    let missing: Vec<&str> = planted
        .iter()
        .map(|p| p.message_id)
        .filter(|id| !report.rejected.iter().any(|(r, _)| r == id))
        .collect();
    ensure!(
        missing.is_empty(),
        "the planted invalid records {missing:?} were not reported in batchItemFailures: \
         they would have been acknowledged and dropped"
    );
    Ok(report)
}
