//! `kit-dev demo`: drives the three functions, running under `cargo lambda watch`, end
//! to end with real event JSON, then prints a summary a person can read.
//!
//! `scripts/demo.sh` (what `make demo` runs) builds the functions, starts the emulator and
//! calls this. The steps, each of which fails the demo under its own name:
//!
//! 1. **corpus** (`corpus.rs`): clustered unit vectors with metadata, reproducible from
//!    `--seed`;
//! 2. **ingest** (`ingest.rs`): `SqsEvent` JSON files (`events.rs`) of at most
//!    `--batch-size` records under `--work-dir`, each sent with `cargo lambda invoke
//!    ingest` (`emulator.rs`). Three planted invalid records must come back in
//!    `batchItemFailures` (by `messageId`), nothing else may;
//! 3. **search** (`search.rs`): HTTP requests to the Function URL the emulator serves (no
//!    filter, a filter, `$or` with `$in`, `max_distance`, two bad requests, an item,
//!    health), each answer checked against the contract, then repeated queries for
//!    latencies;
//! 4. **purge** (`purge.rs`): rows created `--old-age-days` ago are upserted through
//!    ingest, then `cargo lambda invoke purge` runs a dry run and a real run (an
//!    EventBridge scheduled event), both scoped to the demo namespace so no other data is
//!    touched.
//!
//! The summary (`summary.rs`) adds what the ingest function itself reported, read from
//! the emulator's log (`log.rs`). Progress goes to stderr (`progress.rs`), the summary to
//! stdout.
//!
//! Re-runnable: ids derive from the seed and every run writes with a higher `version`, so
//! a second run overwrites the first one's rows instead of failing or duplicating them.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use chrono::Utc;
use clap::Args;
use storage::Namespace;

mod corpus;
mod emulator;
mod events;
mod ingest;
mod log;
mod progress;
mod purge;
mod search;
mod summary;

use corpus::Corpus;
use emulator::Emulator;
use events::WorkDir;
use log::FunctionLog;
use progress::status;
use summary::{thousands, Summary};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Valid records to ingest (the planted invalid ones come on top).
    #[arg(long, default_value_t = 2000)]
    records: usize,
    /// Records per SQS event (SQS allows up to 10,000 with a batching window).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,
    /// Clusters the corpus is drawn around.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    clusters: u32,
    /// The embedding column's dimensions.
    #[arg(long, default_value_t = 1536)]
    dimensions: usize,
    /// Seed of the corpus (same seed, same ids and vectors).
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// The namespace the demo writes, searches and purges; nothing else is touched.
    #[arg(long, default_value = "demo")]
    namespace: String,
    /// Rows seeded with an old `created_at` for the purge to delete.
    #[arg(long, default_value_t = 50)]
    old_records: usize,
    /// How old the seeded rows are, in days (the functions' RETENTION_DAYS must be lower).
    #[arg(long, default_value_t = 90)]
    old_age_days: u32,
    /// How many times the latency queries are repeated.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Where `cargo lambda watch` listens.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// The port `cargo lambda watch` serves invocations and the Function URL on.
    #[arg(long, env = "KIT_DEMO_PORT", default_value_t = 9753)]
    port: u16,
    /// Bound on each invocation and HTTP request, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Where the event files go.
    #[arg(long, default_value = ".kit/demo")]
    work_dir: PathBuf,
    /// The emulator's log: the functions' metrics and rejection reasons are read from it.
    #[arg(long)]
    watch_log: Option<PathBuf>,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let namespace = Namespace::parse(&args.namespace)?;
    ensure!(args.records >= 1, "--records must be at least 1");
    ensure!(args.old_records >= 1, "--old-records must be at least 1");
    let emulator = Emulator {
        address: args.address.clone(),
        port: args.port,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    let log = args.watch_log.as_deref().map(FunctionLog::at_end);
    let work = WorkDir::prepare(&args.work_dir)
        .with_context(|| format!("step 'prepare' failed: {}", args.work_dir.display()))?;
    // Every run writes with a higher version than the last, so re-runs overwrite.
    let version = Utc::now().timestamp_millis().max(0) as u64;

    status(&format!(
        "demo: namespace {namespace}, {} records of {} dimensions, functions on {}:{}",
        thousands(args.records),
        args.dimensions,
        args.address,
        args.port
    ));
    let corpus = Corpus::generate(&args);
    // Steps run in order until one fails; the summary shows what was done either way.
    let mut failed: Option<anyhow::Error> = None;
    let ingest = step(
        "ingest",
        &mut failed,
        ingest::ingest_corpus(&args, &emulator, &work, &corpus, version),
    )
    .await;
    let searches = step(
        "search",
        &mut failed,
        search::run_searches(&args, &emulator, &corpus),
    )
    .await;
    let purge = step(
        "purge",
        &mut failed,
        purge::seed_and_purge(&args, &emulator, &work, &corpus, version),
    )
    .await;
    // The functions' own accounting is a bonus: a log that cannot be read leaves it out.
    let metrics = log.as_ref().and_then(|log| log.read().ok());

    let summary = Summary {
        args: &args,
        ingest: ingest.as_ref(),
        searches: searches.as_ref(),
        purge: purge.as_ref(),
        metrics: metrics.as_ref(),
        failed: failed.as_ref(),
        total: started.elapsed(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(summary.render().as_bytes())?;
    out.flush()?;
    failed.map_or(Ok(()), Err)
}

/// Runs one step unless an earlier one failed; a failure is kept, named after the step.
async fn step<T>(
    name: &str,
    failed: &mut Option<anyhow::Error>,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Option<T> {
    if failed.is_some() {
        return None;
    }
    match work.await {
        Ok(report) => Some(report),
        Err(error) => {
            *failed = Some(error.context(format!("step '{name}' failed")));
            None
        }
    }
}

/// A long answer or output, cut for an error message.
fn excerpt(text: &str) -> String {
    kit_support::text::clip(text.trim(), 400)
}
