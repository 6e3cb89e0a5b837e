//! Step 4, purge: rows created `--old-age-days` ago go in through ingest, then a dry run
//! and a scheduled run of the purge function, both limited to the demo's namespace, and
//! the rows checked through the search function.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, Utc};
use hyper::{Method, StatusCode};
use kit_support::events::scheduled_event;
use kit_support::stats::millis;
use serde::Deserialize;
use serde_json::{json, Value};
use storage::Namespace;
use uuid::Uuid;

use super::corpus::{upsert_body, Corpus};
use super::emulator::Emulator;
use super::events::{batch_failures, sqs_event, Message, WorkDir};
use super::progress::Progress;
use super::{excerpt, DemoArgs};

/// The purge function's answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PurgeAnswer {
    pub deleted: u64,
    pub batches: u32,
    pub complete: bool,
    pub cutoff: String,
    pub per_namespace: BTreeMap<String, u64>,
    pub dry_run: bool,
    pub skipped: bool,
}

pub struct PurgeReport {
    pub seeded: usize,
    pub created_at: DateTime<Utc>,
    pub dry_run: PurgeAnswer,
    pub real: PurgeAnswer,
    pub real_ms: f64,
    pub old_status: StatusCode,
    pub fresh_status: StatusCode,
}

pub async fn seed_and_purge(
    args: &DemoArgs,
    emulator: &Emulator,
    work: &WorkDir,
    corpus: &Corpus,
    version: u64,
) -> anyhow::Result<PurgeReport> {
    let namespace = Namespace::parse(&args.namespace)?;
    let mut progress = Progress::new("purge");
    let created_at = Utc::now() - chrono::Duration::days(i64::from(args.old_age_days));
    let messages: Vec<Message> = corpus
        .old
        .iter()
        .map(|doc| {
            (
                Uuid::new_v4().to_string(),
                upsert_body(&namespace, doc, version, Some(created_at)),
            )
        })
        .collect();
    for (index, chunk) in messages.chunks(args.batch_size as usize).enumerate() {
        progress.update(&format!(
            "seeding {} rows created {} days ago, batch {}",
            args.old_records,
            args.old_age_days,
            index + 1
        ));
        let file = work.write(&format!("seed-{:03}.json", index + 1), &sqs_event(chunk))?;
        let failures = batch_failures(emulator.invoke("ingest", &file).await?, &file)?;
        ensure!(
            failures.is_empty(),
            "seeding old rows: ingest reported {failures:?} as failed"
        );
    }

    progress.update("dry run");
    let file = work.write(
        "purge-dry-run.json",
        &json!({"dry_run": true, "namespace": namespace}),
    )?;
    let dry_run = purge_answer(emulator.invoke("purge", &file).await?)?;
    let would = dry_run
        .per_namespace
        .get(namespace.as_str())
        .copied()
        .unwrap_or(0);
    ensure!(
        dry_run.dry_run && would >= args.old_records as u64,
        "the dry run should find at least the {} seeded rows of {namespace} past retention, found {would} \
         (cutoff {}); is RETENTION_DAYS below {} days, and does `kit retention list` show no longer override?",
        args.old_records,
        dry_run.cutoff,
        args.old_age_days
    );

    progress.update("scheduled run");
    let file = work.write(
        "purge-scheduled.json",
        &scheduled_event(json!({"namespace": namespace})),
    )?;
    let started = Instant::now();
    let real = purge_answer(emulator.invoke("purge", &file).await?)?;
    let real_ms = millis(started.elapsed());
    ensure!(
        !real.skipped,
        "the purge run was skipped: another run holds the purge lease (it expires at that run's deadline); try again"
    );
    if !real.complete && real.batches == 0 {
        bail!(
            "the purge stopped before its first batch (complete: false, batches: 0): the function \
             believed its deadline had passed. `cargo lambda watch` (1.9.x) sends \
             `Lambda-Runtime-Deadline-Ms: 600000`, a deadline in January 1970, with every \
             invocation; the purge function must treat a deadline that has already passed when \
             the invocation starts as unknown and fall back to a configured budget"
        );
    }
    let deleted = real
        .per_namespace
        .get(namespace.as_str())
        .copied()
        .unwrap_or(0);
    ensure!(
        real.complete && deleted == would,
        "the scheduled run should delete the {would} rows the dry run found, it deleted {deleted} \
         (complete: {}, batches: {})",
        real.complete,
        real.batches
    );

    progress.update("checking rows");
    let namespace = &namespace;
    let item_status = |id: Uuid| async move {
        let path = format!("/items/{id}?namespace={namespace}");
        anyhow::Ok(emulator.http(Method::GET, &path, None).await?.status)
    };
    let (old_status, fresh_status) = (
        item_status(corpus.old[0].id).await?,
        item_status(corpus.docs[0].id).await?,
    );
    ensure!(
        old_status == StatusCode::NOT_FOUND,
        "a purged row should be gone (404), got {old_status}"
    );
    ensure!(
        fresh_status == StatusCode::OK,
        "a row newer than the cutoff should still be there (200), got {fresh_status}"
    );
    progress.finish();
    Ok(PurgeReport {
        seeded: args.old_records,
        created_at,
        dry_run,
        real,
        real_ms,
        old_status,
        fresh_status,
    })
}

fn purge_answer(answer: Value) -> anyhow::Result<PurgeAnswer> {
    serde_json::from_value(answer.clone()).with_context(|| {
        format!(
            "the purge function's answer is not a purge report: {}",
            excerpt(&answer.to_string())
        )
    })
}
