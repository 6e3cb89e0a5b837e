//! `kit demo`: drives the three functions, running under `cargo lambda watch`, end to end
//! with real event JSON, then prints a summary a person can read.
//!
//! `scripts/demo.sh` (what `make demo` runs) builds the functions, starts the emulator and
//! calls this. The steps, each of which fails the demo under its own name:
//!
//! 1. **corpus**: clustered unit vectors with metadata, reproducible from `--seed`;
//! 2. **ingest**: `SqsEvent` JSON files of at most `--batch-size` records under
//!    `--work-dir`, each sent with `cargo lambda invoke ingest`. Three planted invalid
//!    records must come back in `batchItemFailures` (by `messageId`), nothing else may;
//! 3. **search**: HTTP requests to the Function URL the emulator serves (no filter, a
//!    filter, `$or` with `$in`, `max_distance`, two bad requests, an item, health), each
//!    answer checked against the contract, then repeated queries for latencies;
//! 4. **purge**: rows created `--old-age-days` ago are upserted through ingest, then
//!    `cargo lambda invoke purge` runs a dry run and a real run (an EventBridge scheduled
//!    event), both scoped to the demo namespace so no other data is touched.
//!
//! Re-runnable: ids derive from the seed and every run writes with a higher `version`, so
//! a second run overwrites the first one's rows instead of failing or duplicating them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Value};
use storage::Namespace;
use uuid::Uuid;

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
        ingest_corpus(&args, &emulator, &work, &corpus, version),
    )
    .await;
    let searches = step(
        "search",
        &mut failed,
        run_searches(&args, &emulator, &corpus),
    )
    .await;
    let purge = step(
        "purge",
        &mut failed,
        seed_and_purge(&args, &emulator, &work, &corpus, version),
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

// --- the corpus -------------------------------------------------------------------------

/// One synthetic document.
#[derive(Debug)]
struct Doc {
    id: Uuid,
    embedding: Vec<f32>,
    metadata: Value,
    content: String,
}

struct Corpus {
    centres: Vec<Vec<f32>>,
    docs: Vec<Doc>,
    /// Rows the purge step seeds with an old `created_at`.
    old: Vec<Doc>,
}

const LANGS: [&str; 2] = ["en", "de"];
const SOURCES: [&str; 3] = ["faq", "kb", "docs"];

impl Corpus {
    /// Documents drawn around random centres, each with its own noise scale, so a query
    /// at a centre sees distances spread from about 0.02 to 0.2 within its cluster.
    fn generate(args: &DemoArgs) -> Self {
        let dims = args.dimensions;
        let mut rng = StdRng::seed_from_u64(args.seed);
        let centres: Vec<Vec<f32>> = (0..args.clusters)
            .map(|_| random_unit(&mut rng, dims))
            .collect();
        let draw = |rng: &mut StdRng, i: usize| {
            let cluster = i % centres.len();
            let spread = rng.gen_range(0.01f32..0.035);
            let embedding = crate::scratch::normalize(
                centres[cluster]
                    .iter()
                    .map(|c| c + spread * rng.gen_range(-1.0f32..1.0))
                    .collect(),
            );
            let lang = LANGS[usize::from(rng.gen_bool(0.4))];
            let source = SOURCES[rng.gen_range(0..SOURCES.len())];
            let year: u32 = rng.gen_range(2020..=2026);
            Doc {
                id: uuid::Builder::from_random_bytes(rng.gen()).into_uuid(),
                embedding,
                metadata: json!({"lang": lang, "source": source, "year": year}),
                content: format!("Demo document {i}: topic {cluster}, {source} ({lang}, {year})"),
            }
        };
        let docs = (0..args.records).map(|i| draw(&mut rng, i)).collect();
        // A separate stream, so --old-records does not change the corpus.
        let mut old_rng = StdRng::seed_from_u64(args.seed ^ 0x01d_01d_01d);
        let old = (0..args.old_records)
            .map(|i| {
                let mut doc = draw(&mut old_rng, i);
                doc.metadata["source"] = json!("archive");
                doc.content = format!("Archived demo document {i}");
                doc
            })
            .collect();
        Self { centres, docs, old }
    }
}

fn random_unit(rng: &mut impl Rng, dims: usize) -> Vec<f32> {
    crate::scratch::normalize((0..dims).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
}

/// `vector` moved a little, still a unit vector.
fn perturbed(vector: &[f32], scale: f32, rng: &mut impl Rng) -> Vec<f32> {
    crate::scratch::normalize(
        vector
            .iter()
            .map(|x| x + scale * rng.gen_range(-1.0f32..1.0))
            .collect(),
    )
}

// --- events -----------------------------------------------------------------------------

const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:kit-demo-ingest";

/// The ingest contract's upsert message.
fn upsert_body(
    namespace: &Namespace,
    doc: &Doc,
    version: u64,
    created_at: Option<DateTime<Utc>>,
) -> String {
    let mut body = json!({
        "op": "upsert",
        "id": doc.id,
        "namespace": namespace,
        "embedding": doc.embedding,
        "content": doc.content,
        "metadata": doc.metadata,
        "version": version,
    });
    if let Some(at) = created_at {
        body["created_at"] = json!(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    }
    body.to_string()
}

/// A record the ingest function must refuse (and report in `batchItemFailures`).
struct Planted {
    message_id: &'static str,
    defect: &'static str,
    body: String,
}

/// One planted record per kind of defect.
fn planted_invalid(namespace: &Namespace, doc: &Doc) -> Vec<Planted> {
    let (embedding, metadata) = (&doc.embedding, &doc.metadata);
    vec![
        Planted {
            message_id: "demo-planted-wrong-dimensions",
            defect: "a 3-d embedding",
            body: json!({"id": Uuid::new_v4(), "namespace": namespace, "embedding": [0.6, 0.8, 0.0], "metadata": metadata})
                .to_string(),
        },
        Planted {
            message_id: "demo-planted-invalid-id",
            defect: "id \"not-a-uuid\"",
            body: json!({"id": "not-a-uuid", "namespace": namespace, "embedding": embedding})
                .to_string(),
        },
        Planted {
            message_id: "demo-planted-unknown-op",
            defect: "op \"merge\"",
            body: json!({"op": "merge", "id": Uuid::new_v4(), "namespace": namespace}).to_string(),
        },
    ]
}

/// One SQS message as Lambda delivers it (the shape of the `aws_lambda_events` fixture).
fn sqs_message(message_id: String, body: String, sent: DateTime<Utc>) -> SqsMessage {
    let sent_ms = sent.timestamp_millis().to_string();
    let mut message = SqsMessage::default();
    message.receipt_handle = Some(format!("demo-receipt-{message_id}"));
    message.message_id = Some(message_id);
    message.body = Some(body);
    message.attributes = HashMap::from([
        ("ApproximateReceiveCount".to_owned(), "1".to_owned()),
        ("SentTimestamp".to_owned(), sent_ms.clone()),
        ("SenderId".to_owned(), "AROAEXAMPLE:kit-demo".to_owned()),
        ("ApproximateFirstReceiveTimestamp".to_owned(), sent_ms),
    ]);
    message.event_source_arn = Some(QUEUE_ARN.to_owned());
    message.event_source = Some("aws:sqs".to_owned());
    message.aws_region = Some("us-east-1".to_owned());
    message
}

fn sqs_event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// An EventBridge "Scheduled Event", with the manual-run options in `detail`.
fn scheduled_event(detail: Value) -> CloudWatchEvent<Value> {
    let mut event = CloudWatchEvent::<Value>::default();
    event.version = Some("0".into());
    event.id = Some(Uuid::new_v4().to_string());
    event.detail_type = Some("Scheduled Event".into());
    event.source = Some("aws.events".into());
    event.account_id = Some("123456789012".into());
    event.time = Utc::now();
    event.region = Some("us-east-1".into());
    event.resources = vec!["arn:aws:events:us-east-1:123456789012:rule/kit-demo-purge".into()];
    event.detail = Some(detail);
    event
}

/// The demo's own folder of event files; only files it wrote before are removed.
struct WorkDir(PathBuf);

impl WorkDir {
    fn prepare(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = ["ingest-", "seed-", "purge-"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            if ours && name.ends_with(".json") {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Self(path.to_owned()))
    }

    fn write(&self, name: &str, value: &impl serde::Serialize) -> anyhow::Result<PathBuf> {
        let path = self.0.join(name);
        let bytes = serde_json::to_vec(value)?;
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

// --- the emulator: `cargo lambda invoke` and the Function URL -------------------------

struct Emulator {
    address: String,
    port: u16,
    timeout: Duration,
}

/// An HTTP answer from the search function.
struct Reply {
    status: StatusCode,
    body: Value,
    client_ms: f64,
}

impl Emulator {
    /// `cargo lambda invoke <function> --data-file <payload>`; the function's JSON answer.
    async fn invoke(&self, function: &str, payload: &Path) -> anyhow::Result<Value> {
        let port = self.port.to_string();
        let mut command = tokio::process::Command::new("cargo");
        command
            .args(["lambda", "invoke", function])
            .args(["--invoke-address", &self.address, "--invoke-port", &port])
            .args(["--output-format", "json", "--color", "never", "--data-file"])
            .arg(payload)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(self.timeout, command.output())
            .await
            .with_context(|| {
                format!(
                    "`cargo lambda invoke {function}` did not answer within {}s",
                    self.timeout.as_secs()
                )
            })?
            .context("could not run `cargo lambda invoke`: is cargo-lambda on PATH? (make deps, then . .kit/env)")?;
        if !output.status.success() {
            bail!(
                "`cargo lambda invoke {function} --data-file {}` failed ({}): {}",
                payload.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "`cargo lambda invoke {function}` printed something that is not JSON: {}",
                excerpt(&String::from_utf8_lossy(&output.stdout))
            )
        })
    }

    /// One request to the search function's Function URL (`/lambda-url/search/...`).
    async fn http(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let uri = format!("/lambda-url/search{path}");
        let started = Instant::now();
        let exchange = async {
            let stream = tokio::net::TcpStream::connect((self.address.as_str(), self.port))
                .await
                .with_context(|| {
                    format!(
                        "connecting to cargo lambda watch on {}:{}",
                        self.address, self.port
                    )
                })?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            let driver = tokio::spawn(connection);
            let mut request = Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header(header::HOST, format!("{}:{}", self.address, self.port));
            if body.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let payload = body.map(Value::to_string).unwrap_or_default();
            let response = sender
                .send_request(request.body(Full::new(Bytes::from(payload)))?)
                .await?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            driver.abort();
            anyhow::Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .with_context(|| {
                format!(
                    "{method} {uri}: no answer within {}s",
                    self.timeout.as_secs()
                )
            })?
            .with_context(|| format!("{method} {uri}"))?;
        let client_ms = millis(started.elapsed());
        let body = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{method} {uri} answered {status} with a body that is not JSON: {}",
                excerpt(&String::from_utf8_lossy(&bytes))
            )
        })?;
        Ok(Reply {
            status,
            body,
            client_ms,
        })
    }
}

// --- step 2: ingest ---------------------------------------------------------------------

struct IngestReport {
    sent: usize,
    batches: usize,
    accepted: usize,
    /// The planted records, as reported back: message id, what is wrong with it.
    rejected: Vec<(&'static str, &'static str)>,
    elapsed: Duration,
    batch_ms: Vec<f64>,
}

async fn ingest_corpus(
    args: &DemoArgs,
    emulator: &Emulator,
    work: &WorkDir,
    corpus: &Corpus,
    version: u64,
) -> anyhow::Result<IngestReport> {
    let namespace = Namespace::parse(&args.namespace)?;
    let now = Utc::now();
    let mut messages: Vec<SqsMessage> = corpus
        .docs
        .iter()
        .map(|doc| {
            sqs_message(
                Uuid::new_v4().to_string(),
                upsert_body(&namespace, doc, version, None),
                now,
            )
        })
        .collect();
    // The planted records go into the first batch, between valid ones.
    let planted = planted_invalid(&namespace, &corpus.docs[0]);
    let batch_size = args.batch_size as usize;
    for (n, record) in planted.iter().enumerate() {
        let at = ((n + 1) * batch_size / (planted.len() + 1)).min(messages.len());
        let message = sqs_message(record.message_id.into(), record.body.clone(), now);
        messages.insert(at, message);
    }

    let total = messages.len();
    let chunks: Vec<&[SqsMessage]> = messages.chunks(batch_size).collect();
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
        let file = work.write(&name, &sqs_event(chunk.to_vec()))?;
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

/// The message ids of an `SqsBatchResponse`.
fn batch_failures(answer: Value, file: &Path) -> anyhow::Result<Vec<String>> {
    let response: SqsBatchResponse = serde_json::from_value(answer.clone()).with_context(|| {
        format!(
            "the answer to {} is not an SqsBatchResponse: {}",
            file.display(),
            excerpt(&answer.to_string())
        )
    })?;
    Ok(response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect())
}

// --- step 3: search ---------------------------------------------------------------------

#[derive(Clone, Debug, Deserialize)]
struct Hit {
    id: String,
    distance: f64,
    #[serde(default)]
    metadata: Value,
}

/// One request of the search step and what came back.
struct Probe {
    title: String,
    request: String,
    status: StatusCode,
    client_ms: f64,
    took_ms: Option<f64>,
    hits: Vec<Hit>,
    /// The id the first hit must have, when there is one.
    expected_first: Option<String>,
    /// What was checked, or the error/body shown.
    outcome: String,
}

struct Latency {
    title: String,
    client_ms: Vec<f64>,
    took_ms: Vec<f64>,
}

struct SearchReport {
    probes: Vec<Probe>,
    latencies: Vec<Latency>,
}

async fn run_searches(
    args: &DemoArgs,
    emulator: &Emulator,
    corpus: &Corpus,
) -> anyhow::Result<SearchReport> {
    let ns = args.namespace.as_str();
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(1));
    let source = &corpus.docs[(args.records / 3).min(corpus.docs.len() - 1)];
    let near_source = perturbed(&source.embedding, 0.005, &mut rng);
    let centre = |n: usize| corpus.centres[n % corpus.centres.len()].clone();
    let mut probes = Vec::new();
    let mut progress = Progress::new("search");

    let plain = json!({"namespace": ns, "vector": near_source, "k": 5, "include": ["metadata"]});
    progress.update("nearest neighbours, no filter");
    let probe = search(
        emulator,
        "nearest to a slightly moved copy of one document, no filter",
        "k=5".into(),
        &plain,
    )
    .await?;
    ensure!(
        probe.hits.first().map(|h| h.id.as_str()) == Some(&source.id.to_string()),
        "the nearest hit should be the document the query vector was made from ({}), got {:?}",
        source.id,
        probe.hits.first().map(|h| &h.id)
    );
    probes.push(Probe {
        expected_first: Some(source.id.to_string()),
        outcome: format!(
            "{} hits; the first is the source document",
            probe.hits.len()
        ),
        ..probe
    });

    let filter = json!({"lang": "en", "year": {"$gte": 2024}});
    let filtered = json!({"namespace": ns, "vector": centre(1), "k": 5, "filter": filter, "include": ["metadata"]});
    progress.update("filtered: lang en, year >= 2024");
    let probe = search(
        emulator,
        "filtered, at a cluster centre",
        format!("k=5 filter={filter}"),
        &filtered,
    )
    .await?;
    probes.push(check_filter(probe, 5, |m| {
        m["lang"] == "en" && m["year"].as_u64().is_some_and(|y| y >= 2024)
    })?);

    let filter = json!({"$or": [
        {"source": "faq", "lang": "de"},
        {"source": {"$in": ["kb", "docs"]}, "year": {"$lt": 2022}}
    ]});
    let body = json!({"namespace": ns, "vector": centre(2), "k": 5, "filter": filter, "include": ["metadata"]});
    progress.update("filtered: $or with $in");
    let probe = search(
        emulator,
        "$or with $in",
        format!("k=5 filter={filter}"),
        &body,
    )
    .await?;
    probes.push(check_filter(probe, 5, |m| {
        (m["source"] == "faq" && m["lang"] == "de")
            || ((m["source"] == "kb" || m["source"] == "docs")
                && m["year"].as_u64().is_some_and(|y| y < 2022))
    })?);

    let max_distance = 0.05;
    let body = json!({"namespace": ns, "vector": centre(3), "k": 50, "max_distance": max_distance, "include": ["metadata"]});
    progress.update("max_distance");
    let mut probe = search(
        emulator,
        "distance ceiling, at a cluster centre",
        format!("k=50 max_distance={max_distance}"),
        &body,
    )
    .await?;
    let worst = probe.hits.iter().map(|h| h.distance).fold(0.0, f64::max);
    ensure!(
        worst <= max_distance,
        "max_distance {max_distance} returned a hit at distance {worst}"
    );
    probe.outcome = format!(
        "{} of k=50 hits are within {max_distance}; farther neighbours are left out",
        probe.hits.len()
    );
    probes.push(probe);

    progress.update("bad requests");
    let bad = json!({"namespace": ns, "vector": [0.6, 0.8, 0.0], "k": 5});
    probes.push(
        expect_error(
            emulator,
            "bad request: a 3-d vector",
            &bad,
            StatusCode::BAD_REQUEST,
            "invalid_vector",
        )
        .await?,
    );
    let bad =
        json!({"namespace": ns, "vector": near_source, "filter": {"year": {"$regex": "^20"}}});
    probes.push(
        expect_error(
            emulator,
            "bad request: an unknown operator",
            &bad,
            StatusCode::BAD_REQUEST,
            "invalid_filter",
        )
        .await?,
    );

    progress.update("GET /items/{id}, GET /health");
    let path = format!("/items/{}?namespace={ns}", source.id);
    let reply = emulator.http(Method::GET, &path, None).await?;
    ensure!(
        reply.status == StatusCode::OK
            && reply.body["id"] == json!(source.id)
            && reply.body["metadata"] == source.metadata,
        "GET {path} should return the document with its metadata, got {} {}",
        reply.status,
        excerpt(&reply.body.to_string())
    );
    probes.push(Probe {
        title: "one item".into(),
        request: format!("GET {path}"),
        status: reply.status,
        client_ms: reply.client_ms,
        took_ms: None,
        hits: Vec::new(),
        expected_first: None,
        outcome: format!(
            "version {}, created_at {}, metadata {}",
            reply.body["version"], reply.body["created_at"], reply.body["metadata"]
        ),
    });
    let reply = emulator.http(Method::GET, "/health", None).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "GET /health answered {} {}",
        reply.status,
        reply.body
    );
    probes.push(Probe {
        title: "health".into(),
        request: "GET /health".into(),
        status: reply.status,
        client_ms: reply.client_ms,
        took_ms: None,
        hits: Vec::new(),
        expected_first: None,
        outcome: reply.body.to_string(),
    });

    let mut latencies = Vec::new();
    for (title, body) in [("no filter, k=5", &plain), ("filtered, k=5", &filtered)] {
        let mut latency = Latency {
            title: title.into(),
            client_ms: Vec::new(),
            took_ms: Vec::new(),
        };
        progress.update(&format!("latency, {title}, {} times", args.repeats));
        for n in 0..args.repeats {
            progress.live(&format!("latency, {title}: {}/{}", n + 1, args.repeats));
            let probe = search(emulator, title, String::new(), body).await?;
            latency.client_ms.push(probe.client_ms);
            latency.took_ms.extend(probe.took_ms);
        }
        latencies.push(latency);
    }
    progress.finish();
    Ok(SearchReport { probes, latencies })
}

/// `POST /search` that must answer 200 with results.
async fn search(
    emulator: &Emulator,
    title: &str,
    request: String,
    body: &Value,
) -> anyhow::Result<Probe> {
    let reply = emulator.http(Method::POST, "/search", Some(body)).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "POST /search ({title}) answered {} {}",
        reply.status,
        excerpt(&reply.body.to_string())
    );
    let hits: Vec<Hit> =
        serde_json::from_value(reply.body["results"].clone()).with_context(|| {
            format!(
                "POST /search ({title}): no results list in {}",
                excerpt(&reply.body.to_string())
            )
        })?;
    let sorted = hits.windows(2).all(|w| w[0].distance <= w[1].distance);
    ensure!(
        sorted,
        "POST /search ({title}): results are not ordered by distance"
    );
    Ok(Probe {
        title: title.into(),
        request,
        status: reply.status,
        client_ms: reply.client_ms,
        took_ms: reply.body["took_ms"].as_f64(),
        hits,
        expected_first: None,
        outcome: String::new(),
    })
}

/// Every hit passes the filter, and there are `k` of them (the corpus has enough matches).
fn check_filter(
    mut probe: Probe,
    k: usize,
    matches: impl Fn(&Value) -> bool,
) -> anyhow::Result<Probe> {
    if let Some(hit) = probe.hits.iter().find(|h| !matches(&h.metadata)) {
        bail!(
            "{}: hit {} has metadata {} that does not pass the filter",
            probe.title,
            hit.id,
            hit.metadata
        );
    }
    ensure!(
        probe.hits.len() == k,
        "{}: expected {k} hits (the corpus has more matching rows), got {}",
        probe.title,
        probe.hits.len()
    );
    probe.outcome = format!("{k} of {k} hits pass the filter");
    Ok(probe)
}

/// `POST /search` with a body the API must refuse with `status` and `code`.
async fn expect_error(
    emulator: &Emulator,
    title: &str,
    body: &Value,
    status: StatusCode,
    code: &str,
) -> anyhow::Result<Probe> {
    let reply = emulator.http(Method::POST, "/search", Some(body)).await?;
    let error = &reply.body["error"];
    ensure!(
        reply.status == status && error["code"] == code && error["message"].is_string(),
        "{title}: expected {status} with error code {code:?}, got {} {}",
        reply.status,
        excerpt(&reply.body.to_string())
    );
    let mut shown = body.clone();
    if shown["vector"].as_array().is_some_and(|v| v.len() > 8) {
        shown["vector"] = json!(format!(
            "<{} numbers>",
            shown["vector"].as_array().map_or(0, Vec::len)
        ));
    }
    Ok(Probe {
        title: title.into(),
        request: format!("POST /search {shown}"),
        status: reply.status,
        client_ms: reply.client_ms,
        took_ms: None,
        hits: Vec::new(),
        expected_first: None,
        outcome: reply.body.to_string(),
    })
}

// --- step 4: purge ----------------------------------------------------------------------

/// The purge function's answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct PurgeAnswer {
    deleted: u64,
    batches: u32,
    complete: bool,
    cutoff: String,
    per_namespace: BTreeMap<String, u64>,
    dry_run: bool,
    skipped: bool,
}

struct PurgeReport {
    seeded: usize,
    created_at: DateTime<Utc>,
    dry_run: PurgeAnswer,
    real: PurgeAnswer,
    real_ms: f64,
    old_status: StatusCode,
    fresh_status: StatusCode,
}

async fn seed_and_purge(
    args: &DemoArgs,
    emulator: &Emulator,
    work: &WorkDir,
    corpus: &Corpus,
    version: u64,
) -> anyhow::Result<PurgeReport> {
    let namespace = Namespace::parse(&args.namespace)?;
    let mut progress = Progress::new("purge");
    let created_at = Utc::now() - chrono::Duration::days(i64::from(args.old_age_days));
    let now = Utc::now();
    let messages: Vec<SqsMessage> = corpus
        .old
        .iter()
        .map(|doc| {
            sqs_message(
                Uuid::new_v4().to_string(),
                upsert_body(&namespace, doc, version, Some(created_at)),
                now,
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
        let file = work.write(
            &format!("seed-{:03}.json", index + 1),
            &sqs_event(chunk.to_vec()),
        )?;
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
    let old = emulator
        .http(
            Method::GET,
            &format!("/items/{}?namespace={namespace}", corpus.old[0].id),
            None,
        )
        .await?;
    ensure!(
        old.status == StatusCode::NOT_FOUND,
        "a purged row should be gone (404), got {}",
        old.status
    );
    let fresh = emulator
        .http(
            Method::GET,
            &format!("/items/{}?namespace={namespace}", corpus.docs[0].id),
            None,
        )
        .await?;
    ensure!(
        fresh.status == StatusCode::OK,
        "a row newer than the cutoff should still be there (200), got {}",
        fresh.status
    );
    progress.finish();
    Ok(PurgeReport {
        seeded: args.old_records,
        created_at,
        dry_run,
        real,
        real_ms,
        old_status: old.status,
        fresh_status: fresh.status,
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

// --- the functions' own accounting, from the emulator's log ---------------------------

/// The part of the emulator's log written since the demo started.
struct FunctionLog {
    path: PathBuf,
    offset: u64,
}

/// What the ingest function itself reported: its EMF metrics and rejection log lines.
#[derive(Debug, Default)]
struct FunctionMetrics {
    /// Per ingest invocation, in order.
    batches: Vec<BatchMetrics>,
    /// message id → reason code, from the "record rejected" log lines.
    reasons: HashMap<String, String>,
}

/// One ingest invocation's EMF metrics.
#[derive(Debug)]
struct BatchMetrics {
    written: u64,
    unchanged: u64,
    latency_ms: f64,
}

impl FunctionLog {
    fn at_end(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self {
            path: path.to_owned(),
            offset,
        }
    }

    fn read(&self) -> anyhow::Result<FunctionMetrics> {
        let bytes = std::fs::read(&self.path)
            .with_context(|| format!("reading the emulator's log {}", self.path.display()))?;
        let start = usize::try_from(self.offset).unwrap_or(0).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes[start..]);
        let mut metrics = FunctionMetrics::default();
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let Ok(value) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let count = |name: &str| value[name].as_f64().unwrap_or(0.0) as u64;
            if value["Function"] == "ingest" && value.get("_aws").is_some() {
                metrics.batches.push(BatchMetrics {
                    written: count("RecordsWritten"),
                    unchanged: count("RecordsUnchanged"),
                    latency_ms: value["BatchLatency"].as_f64().unwrap_or(0.0),
                });
            }
            let fields = value.get("fields").unwrap_or(&value);
            if fields["message"] == "record rejected" {
                if let (Some(id), Some(reason)) =
                    (fields["message_id"].as_str(), fields["reason"].as_str())
                {
                    metrics.reasons.insert(id.to_owned(), reason.to_owned());
                }
            }
        }
        Ok(metrics)
    }
}

// --- the summary ------------------------------------------------------------------------

struct Summary<'a> {
    args: &'a DemoArgs,
    ingest: Option<&'a IngestReport>,
    searches: Option<&'a SearchReport>,
    purge: Option<&'a PurgeReport>,
    metrics: Option<&'a FunctionMetrics>,
    failed: Option<&'a anyhow::Error>,
    total: Duration,
}

impl Summary<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out)
            .expect("writing to a String cannot fail");
        out
    }

    fn write(&self, out: &mut String) -> std::fmt::Result {
        let a = self.args;
        let rule = "=".repeat(78);
        writeln!(out, "\n{rule}")?;
        writeln!(out, "pgvector-lambda-kit demo: summary")?;
        writeln!(
            out,
            "namespace {:?} | {}-d unit vectors in {} clusters (seed {}) | cargo lambda watch on {}:{}",
            a.namespace, a.dimensions, a.clusters, a.seed, a.address, a.port
        )?;
        writeln!(out, "{rule}")?;
        if let Some(ingest) = self.ingest {
            self.write_ingest(out, ingest)?;
        }
        if let Some(searches) = self.searches {
            self.write_searches(out, searches)?;
        }
        if let Some(purge) = self.purge {
            self.write_purge(out, purge)?;
        }
        match self.failed {
            None => writeln!(
                out,
                "\nAll steps passed in {:.1} s.",
                self.total.as_secs_f64()
            ),
            Some(error) => writeln!(
                out,
                "\nFAILED after {:.1} s: {error:#}",
                self.total.as_secs_f64()
            ),
        }
    }

    fn write_ingest(&self, out: &mut String, i: &IngestReport) -> std::fmt::Result {
        let a = self.args;
        writeln!(out, "\nINGEST  SqsEvent JSON -> cargo lambda invoke ingest")?;
        writeln!(
            out,
            "  sent        {} records in {} batches of <= {} ({}/ingest-*.json)",
            thousands(i.sent),
            i.batches,
            a.batch_size,
            a.work_dir.display()
        )?;
        // The first invocations logged are this step's (the purge step's seeding comes later).
        let batches = self
            .metrics
            .map(|m| &m.batches[..i.batches.min(m.batches.len())])
            .filter(|b| b.len() == i.batches);
        match batches {
            Some(batches) => {
                let written: u64 = batches.iter().map(|b| b.written).sum();
                let unchanged: u64 = batches.iter().map(|b| b.unchanged).sum();
                writeln!(
                    out,
                    "  accepted    {} (the function's metrics: {} written, {} unchanged)",
                    thousands(i.accepted),
                    thousands(written as usize),
                    thousands(unchanged as usize)
                )?;
            }
            None => writeln!(out, "  accepted    {}", thousands(i.accepted))?,
        }
        writeln!(
            out,
            "  rejected    {}, returned in batchItemFailures as planted:",
            i.rejected.len()
        )?;
        for (id, why) in &i.rejected {
            let reason = self
                .metrics
                .and_then(|m| m.reasons.get(*id))
                .map_or("(reason not in the log)", String::as_str);
            writeln!(out, "      {id:<32} {reason:<18} planted: {why}")?;
        }
        let secs = i.elapsed.as_secs_f64();
        writeln!(
            out,
            "  time        {:.1} s, {:.0} records/s; per batch p50 {:.0} ms, max {:.0} ms (with the invoke CLI)",
            secs,
            i.sent as f64 / secs.max(1e-9),
            percentile(&i.batch_ms, 0.5),
            percentile(&i.batch_ms, 1.0)
        )?;
        if let Some(batches) = batches {
            let inside: Vec<f64> = batches.iter().map(|b| b.latency_ms).collect();
            writeln!(
                out,
                "              inside the function: p50 {:.0} ms, max {:.0} ms per batch",
                percentile(&inside, 0.5),
                percentile(&inside, 1.0)
            )?;
        }
        Ok(())
    }

    fn write_searches(&self, out: &mut String, searches: &SearchReport) -> std::fmt::Result {
        let a = self.args;
        writeln!(
            out,
            "\nSEARCH  HTTP -> http://{}:{}/lambda-url/search/...  [status | client ms | API took_ms]",
            a.address, a.port
        )?;
        for (n, p) in searches.probes.iter().enumerate() {
            let took = p.took_ms.map_or(String::new(), |t| format!(" | {t:.2} ms"));
            writeln!(
                out,
                "  {}. {}  [{} | {:.1} ms{took}]",
                n + 1,
                p.title,
                p.status.as_u16(),
                p.client_ms
            )?;
            if !p.request.is_empty() {
                writeln!(out, "     {}", clip(&p.request, 110))?;
            }
            for (rank, hit) in p.hits.iter().take(3).enumerate() {
                let mark = if p.expected_first.as_deref() == Some(hit.id.as_str()) {
                    "  <- source"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "       #{} {:.4}  {}  {}{mark}",
                    rank + 1,
                    hit.distance,
                    hit.id,
                    hit.metadata
                )?;
            }
            writeln!(out, "     -> {}", clip(&p.outcome, 110))?;
        }
        for l in &searches.latencies {
            writeln!(
                out,
                "  latency, {} x {}: client p50 {:.1} ms, p95 {:.1} ms | took_ms p50 {:.2}, p95 {:.2}",
                l.title,
                l.client_ms.len(),
                percentile(&l.client_ms, 0.5),
                percentile(&l.client_ms, 0.95),
                percentile(&l.took_ms, 0.5),
                percentile(&l.took_ms, 0.95)
            )?;
        }
        Ok(())
    }

    fn write_purge(&self, out: &mut String, p: &PurgeReport) -> std::fmt::Result {
        writeln!(
            out,
            "\nPURGE   cargo lambda invoke purge (namespace {:?} only)",
            self.args.namespace
        )?;
        writeln!(
            out,
            "  seeded      {} rows with created_at {} (through ingest)",
            p.seeded,
            p.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )?;
        writeln!(
            out,
            "  dry run     would delete {} (cutoff {})",
            p.dry_run.per_namespace.values().sum::<u64>(),
            p.dry_run.cutoff
        )?;
        writeln!(
            out,
            "  scheduled   deleted {} in {} batch(es), complete: {}, skipped: {}  [{:.0} ms]",
            p.real.deleted, p.real.batches, p.real.complete, p.real.skipped, p.real_ms
        )?;
        writeln!(
            out,
            "  afterwards  a purged row answers {}, a fresh row {}",
            p.old_status.as_u16(),
            p.fresh_status.as_u16()
        )
    }
}

// --- small helpers ----------------------------------------------------------------------

/// Progress on stderr: one line rewritten in place on a terminal, a line per update otherwise.
struct Progress {
    step: &'static str,
    terminal: bool,
    shown: bool,
}

impl Progress {
    fn new(step: &'static str) -> Self {
        Self {
            step,
            terminal: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn update(&mut self, message: &str) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{}: {message}", self.step);
        } else {
            let _ = writeln!(err, "{}: {message}", self.step);
        }
        let _ = err.flush();
        self.shown = true;
    }

    /// Like [`Progress::update`], on a terminal only (for updates too frequent for a log).
    fn live(&mut self, message: &str) {
        if self.terminal {
            self.update(message);
        }
    }

    fn finish(&mut self) {
        if self.terminal && self.shown {
            let _ = writeln!(std::io::stderr(), " ... done");
        }
        self.shown = false;
    }
}

fn status(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The `p` quantile (nearest rank) of `values`; 0 for none.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// 12345 → "12,345".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let (head, tail) = digits.split_at(digits.len() % 3);
    let groups = tail
        .as_bytes()
        .chunks(3)
        .map(|group| String::from_utf8_lossy(group));
    let mut parts: Vec<_> = (!head.is_empty())
        .then(|| head.into())
        .into_iter()
        .collect();
    parts.extend(groups);
    parts.join(",")
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut clipped: String = text.chars().take(max - 1).collect();
        clipped.push('…');
        clipped
    }
}

fn excerpt(text: &str) -> String {
    clip(text.trim(), 400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2_003), "2,003");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 0.5), 2.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0, 4.0], 1.0), 4.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn events_have_the_lambda_shapes() {
        let ns = Namespace::parse("demo").unwrap();
        let doc = Doc {
            id: Uuid::nil(),
            embedding: vec![0.6, 0.8],
            metadata: json!({"lang": "en"}),
            content: "c".into(),
        };
        let event = sqs_event(vec![sqs_message(
            "m1".into(),
            upsert_body(&ns, &doc, 3, None),
            Utc::now(),
        )]);
        let value = serde_json::to_value(&event).unwrap();
        let record = &value["Records"][0];
        assert_eq!(record["messageId"], "m1");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], QUEUE_ARN);
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
        let body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["namespace"], "demo");
        assert_eq!(body["version"], 3);
        let back: SqsEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back.records.len(), 1);

        let scheduled =
            serde_json::to_value(scheduled_event(json!({"namespace": "demo"}))).unwrap();
        assert_eq!(scheduled["detail-type"], "Scheduled Event");
        assert_eq!(scheduled["source"], "aws.events");
        assert_eq!(scheduled["detail"]["namespace"], "demo");
    }

    #[test]
    fn the_corpus_is_reproducible_and_normalised() {
        let args = DemoArgs {
            records: 40,
            batch_size: 10,
            clusters: 4,
            dimensions: 16,
            seed: 9,
            namespace: "demo".into(),
            old_records: 3,
            old_age_days: 90,
            repeats: 1,
            address: "127.0.0.1".into(),
            port: 9753,
            timeout_secs: 1,
            work_dir: PathBuf::from("unused"),
            watch_log: None,
        };
        let (a, b) = (Corpus::generate(&args), Corpus::generate(&args));
        assert_eq!(a.docs.len(), 40);
        assert_eq!(a.old.len(), 3);
        assert_eq!(a.docs[7].id, b.docs[7].id);
        assert_eq!(a.docs[7].embedding, b.docs[7].embedding);
        assert!(a.old.iter().all(|o| a.docs.iter().all(|d| d.id != o.id)));
        let norm: f32 = a.docs[5]
            .embedding
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
}
