//! `kit-dev bench ingest`: the ingest handler path against raw `COPY … (FORMAT BINARY)`, in
//! one run, on two fresh identical databases (migrated, HNSW index present).
//!
//! - handler: real SQS event JSON, `--batch` records per event, deserialised into an
//!   `SqsEvent` (what the Lambda runtime does) and given to `ingest::handler` with a
//!   `Database` over `DATABASE_URL` (through PgBouncer). Timed per event: the event
//!   deserialisation and the handler call, which parses and validates every body and
//!   writes the batch in one transaction. Building the event JSON (the producer's work)
//!   is outside the timed region, and so are opening the connection and reading the
//!   column's dimensions (a warm execution environment).
//! - raw COPY: the same records, already in memory as rows, streamed by
//!   [`copy_binary`] over one direct connection (`DATABASE_ADMIN_URL`) in a
//!   single COPY. Timed: encoding, streaming and the COPY's completion.
//!
//! Both databases are dropped at the end of each round, also when it fails. With
//! `--rounds R` the comparison repeats on fresh databases, alternating which path goes
//! first, and the medians are reported.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::Utc;
use clap::Args;
use ingest::{handler, Limits, Settings, State};
use kit_support::database_url::with_database;
use kit_support::events::{context_with_deadline, sqs_event_with_ids, UpsertMessage};
use kit_support::{corpus, scratch, stats};
use lambda_runtime::LambdaEvent;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};
use storage::{Config, Namespace, Upsert, Vector};
use uuid::Uuid;

use super::copy::copy_binary;
use super::Stack;

/// The queue the synthetic events come from.
const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:kit-ingest";

#[derive(Debug, Args)]
pub struct IngestBenchArgs {
    /// Records to load (each a normalised vector with the schema's dimensions).
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Records per SQS event on the handler path (SQS allows 1 to 10,000).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Clusters the synthetic vectors are drawn around.
    #[arg(long, default_value_t = 64)]
    clusters: usize,
    /// Seed of the synthetic corpus.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Load with raw COPY first, then through the handler (default: handler first).
    /// With several rounds the order alternates, starting with this one.
    #[arg(long)]
    copy_first: bool,
    /// Repeat the whole comparison on fresh databases this many times and report the
    /// medians (a shared machine is noisy; the spread is printed too).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Drop the HNSW index from both databases before loading: shows what the two paths
    /// cost apart from the index insert (a diagnostic, not the comparison of record).
    #[arg(long)]
    without_hnsw: bool,
    /// Print the figures as one JSON object on the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Through PgBouncer, as the functions connect.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Straight to PostgreSQL, as a role that may create databases.
    #[arg(long, env = "DATABASE_ADMIN_URL", hide_env_values = true)]
    admin_url: Option<String>,
}

/// What one round measured.
#[derive(Debug)]
struct Figures {
    copy_first: bool,
    dims: usize,
    handler: Duration,
    /// Part of the handler path, measured in a separate untimed-for-the-handler pass:
    /// event deserialisation plus `ingest::message::parse` of every body, no database.
    parse: Duration,
    raw_copy: Duration,
    /// On-CPU time while each path ran (Linux, database on this host only): robust to a
    /// busy machine where wall-clock time is not.
    handler_cpu: Option<Cpu>,
    raw_copy_cpu: Option<Cpu>,
}

/// On-CPU time of this process (parsing, encoding) and of the PostgreSQL backends doing
/// the path's inserts. PgBouncer's share on the handler path is not included.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    own: Duration,
    postgres: Duration,
}

impl Cpu {
    fn total(&self) -> Duration {
        self.own + self.postgres
    }
}

pub async fn run(args: IngestBenchArgs) -> anyhow::Result<()> {
    ensure!(args.n > 0, "--n must be at least 1");
    ensure!(
        (1..=10_000).contains(&args.batch),
        "--batch must be from 1 to 10000 (the SQS event source's limit), got {}",
        args.batch
    );
    ensure!(args.clusters > 0, "--clusters must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let stack = Stack::from_args(args.database_url.clone(), args.admin_url.clone())?;

    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let copy_first = args.copy_first ^ (round % 2 == 1);
        if args.rounds > 1 {
            eprintln!(
                "bench: round {}/{} ({} first)",
                round + 1,
                args.rounds,
                if copy_first { "raw COPY" } else { "handler" }
            );
        }
        rounds.push(one_round(&args, &stack.app_url, &stack.admin, copy_first).await?);
    }
    report(&args, &rounds)
}

/// Creates the two databases, measures, and drops them whatever happened.
async fn one_round(
    args: &IngestBenchArgs,
    app_url: &str,
    admin: &PgConnectOptions,
    copy_first: bool,
) -> anyhow::Result<Figures> {
    let tag = Uuid::new_v4().simple().to_string();
    let names = [
        format!("kit_bench_ingest_{}_handler", &tag[..8]),
        format!("kit_bench_ingest_{}_copy", &tag[..8]),
    ];
    let outcome = async {
        for name in &names {
            create_database(admin, name, args.without_hnsw).await?;
        }
        measure(args, app_url, admin, &names[0], &names[1], copy_first).await
    }
    .await;
    for name in &names {
        if let Err(error) = scratch::drop_database(admin, name).await {
            eprintln!("bench: could not drop {name}: {error:#}");
        }
    }
    outcome
}

async fn measure(
    args: &IngestBenchArgs,
    app_url: &str,
    admin: &PgConnectOptions,
    handler_db: &str,
    copy_db: &str,
    copy_first: bool,
) -> anyhow::Result<Figures> {
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(app_url.to_owned()),
        _ => std::env::var(k).ok(),
    })?;
    let config = config.with_url(with_database(app_url, handler_db)?);
    let state = State::new(Settings {
        limits: Limits::from_lookup(|k| std::env::var(k).ok())?,
        ..Settings::new(config)
    })?;
    // stdout carries the figures: the handler's metric lines go nowhere.
    telemetry::set_metrics_sink(telemetry::MetricsSink::Discard);
    state.db.health().await.context("reaching DATABASE_URL")?;
    let dims = state.db.dimensions().await?;

    eprintln!(
        "bench: {} records of {dims} dimensions ({} clusters, seed {})",
        args.n, args.clusters, args.seed
    );
    let corpus = Corpus::generate(args.n, dims, args.clusters, args.seed);

    let mut copy_conn = admin
        .clone()
        .database(copy_db)
        .connect()
        .await
        .context("connecting to DATABASE_ADMIN_URL")?;
    let mut monitor = admin
        .connect()
        .await
        .context("connecting to DATABASE_ADMIN_URL")?;
    let ((handler, parse, handler_cpu), (raw_copy, raw_copy_cpu)) = if copy_first {
        let copy = copy_path(&mut copy_conn, &mut monitor, copy_db, &corpus).await?;
        let handler =
            handler_path(&state, &mut monitor, handler_db, &corpus, args.batch, dims).await?;
        (handler, copy)
    } else {
        let handler =
            handler_path(&state, &mut monitor, handler_db, &corpus, args.batch, dims).await?;
        let copy = copy_path(&mut copy_conn, &mut monitor, copy_db, &corpus).await?;
        (handler, copy)
    };
    copy_conn.close().await.ok();
    monitor.close().await.ok();
    state.db.close().await;

    for name in [handler_db, copy_db] {
        let rows = count_rows(admin, name).await?;
        ensure!(
            rows == args.n as i64,
            "{name} holds {rows} rows after the load, expected {}",
            args.n
        );
    }
    Ok(Figures {
        copy_first,
        dims,
        handler,
        parse,
        raw_copy,
        handler_cpu,
        raw_copy_cpu,
    })
}

/// Loads the corpus through `ingest::handler`, one SQS event of `batch` records at a time.
/// Returns the handler time, the parse-only time of the same events (measured apart), and
/// the CPU the timed part used.
async fn handler_path(
    state: &State,
    monitor: &mut PgConnection,
    database: &str,
    corpus: &Corpus,
    batch: usize,
    dims: usize,
) -> anyhow::Result<(Duration, Duration, Option<Cpu>)> {
    let (mut timed, mut parse) = (Duration::ZERO, Duration::ZERO);
    let mut own_cpu = on_cpu_ns("self").map(|_| 0u64);
    let backends_before = backends_on_cpu(monitor, database).await?;
    let progress_every = (corpus.len() / 10).max(batch);
    let mut next_progress = progress_every;
    let limits = Limits::default();
    for (number, start) in (0..corpus.len()).step_by(batch).enumerate() {
        let end = (start + batch).min(corpus.len());
        let event_json = corpus.sqs_event_json(start..end, number);

        // Parse-only pass (not part of the handler figure): where does time go?
        let started = Instant::now();
        let event: SqsEvent = serde_json::from_str(&event_json)?;
        let now = Utc::now();
        for record in &event.records {
            if let Err(rejection) =
                ingest::message::parse(record.body.as_deref(), dims, &limits, now)
            {
                bail!("the synthetic corpus was rejected: {rejection}");
            }
        }
        parse += started.elapsed();
        drop(event);

        let cpu_before = on_cpu_ns("self");
        let started = Instant::now();
        let event: SqsEvent = serde_json::from_str(&event_json)?;
        let response = handler(state, LambdaEvent::new(event, context_with_deadline(120.0))).await;
        timed += started.elapsed();
        if let (Some(total), Some(before), Some(after)) =
            (own_cpu.as_mut(), cpu_before, on_cpu_ns("self"))
        {
            *total += after.saturating_sub(before);
        }
        let response = response.map_err(|e| anyhow::anyhow!("the handler failed: {e}"))?;
        ensure!(
            response.batch_item_failures.is_empty(),
            "the handler reported {} failures in event {number} (see the log lines above)",
            response.batch_item_failures.len()
        );
        if end >= next_progress || end == corpus.len() {
            eprintln!(
                "bench: handler  {end:>7}/{} rows  {:>8.0} rows/s",
                corpus.len(),
                end as f64 / timed.as_secs_f64()
            );
            next_progress += progress_every;
        }
    }
    let backends_after = backends_on_cpu(monitor, database).await?;
    let cpu = match (own_cpu, backends_before, backends_after) {
        (Some(own), Some(before), Some(after)) => Some(Cpu {
            own: Duration::from_nanos(own),
            postgres: backends_delta(&before, &after),
        }),
        _ => None,
    };
    Ok((timed, parse, cpu))
}

/// Loads the corpus with one binary COPY; returns its time and the CPU it used.
async fn copy_path(
    conn: &mut PgConnection,
    monitor: &mut PgConnection,
    database: &str,
    corpus: &Corpus,
) -> anyhow::Result<(Duration, Option<Cpu>)> {
    let rows = corpus.rows();
    eprintln!(
        "bench: raw COPY {} rows in one stream (FORMAT BINARY)…",
        rows.len()
    );
    let backends_before = backends_on_cpu(monitor, database).await?;
    let own_before = on_cpu_ns("self");
    let started = Instant::now();
    let copied = copy_binary(conn, &rows).await?;
    let elapsed = started.elapsed();
    let own_after = on_cpu_ns("self");
    let backends_after = backends_on_cpu(monitor, database).await?;
    let cpu = match (own_before, own_after, backends_before, backends_after) {
        (Some(own_before), Some(own_after), Some(before), Some(after)) => Some(Cpu {
            own: Duration::from_nanos(own_after.saturating_sub(own_before)),
            postgres: backends_delta(&before, &after),
        }),
        _ => None,
    };
    ensure!(
        copied == rows.len() as u64,
        "COPY reported {copied} rows, expected {}",
        rows.len()
    );
    eprintln!(
        "bench: raw COPY {copied:>7}/{} rows  {:>8.0} rows/s",
        rows.len(),
        copied as f64 / elapsed.as_secs_f64()
    );
    Ok((elapsed, cpu))
}

/// On-CPU nanoseconds of a process's main thread, from Linux's `/proc/<pid>/schedstat`.
fn on_cpu_ns(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// On-CPU nanoseconds of every PostgreSQL backend connected to `database`, or `None`
/// when they cannot be read here (another OS, or PostgreSQL on another host: a pid
/// that is not a local `postgres` process is not trusted).
async fn backends_on_cpu(
    monitor: &mut PgConnection,
    database: &str,
) -> anyhow::Result<Option<HashMap<i32, u64>>> {
    let pids: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = $1")
        .bind(database)
        .fetch_all(&mut *monitor)
        .await?;
    let mut cpu = HashMap::with_capacity(pids.len());
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !cmdline.starts_with(b"postgres") {
            return Ok(None);
        }
        match on_cpu_ns(&pid.to_string()) {
            Some(ns) => cpu.insert(pid, ns),
            None => return Ok(None),
        };
    }
    Ok(Some(cpu))
}

/// CPU the backends used between two readings; a backend that appeared in between
/// counts from zero.
fn backends_delta(before: &HashMap<i32, u64>, after: &HashMap<i32, u64>) -> Duration {
    Duration::from_nanos(
        after
            .iter()
            .map(|(pid, ns)| ns.saturating_sub(before.get(pid).copied().unwrap_or(0)))
            .sum(),
    )
}

impl Figures {
    fn handler_rate(&self, n: usize) -> f64 {
        n as f64 / self.handler.as_secs_f64()
    }

    fn copy_rate(&self, n: usize) -> f64 {
        n as f64 / self.raw_copy.as_secs_f64()
    }

    fn ratio(&self, n: usize) -> f64 {
        self.handler_rate(n) / self.copy_rate(n)
    }

    /// Raw COPY's CPU ÷ the handler's CPU for the same rows: the handler's rows per
    /// CPU-second as a fraction of COPY's.
    fn cpu_ratio(&self) -> Option<f64> {
        let (handler, copy) = (self.handler_cpu?, self.raw_copy_cpu?);
        Some(copy.total().as_secs_f64() / handler.total().as_secs_f64())
    }
}

/// The median of one figure over the rounds (nearest rank: a round's own value).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    stats::median(&values.collect::<Vec<_>>())
}

fn report(args: &IngestBenchArgs, rounds: &[Figures]) -> anyhow::Result<()> {
    let n = args.n;
    let dims = rounds.first().map_or(0, |r| r.dims);
    let handler_rate = median(rounds.iter().map(|r| r.handler_rate(n)));
    let copy_rate = median(rounds.iter().map(|r| r.copy_rate(n)));
    let ratio = median(rounds.iter().map(|r| r.ratio(n)));
    let parse_seconds = median(rounds.iter().map(|r| r.parse.as_secs_f64()));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "ingest bench: {n} records × {dims} dims, handler batches of {}, {} round(s){}",
        args.batch,
        rounds.len(),
        if args.without_hnsw {
            ", WITHOUT the HNSW index"
        } else {
            ""
        }
    )?;
    for (i, r) in rounds.iter().enumerate() {
        writeln!(
            out,
            "  round {}: handler {:>7.0} rows/s ({:.2} s, parsing ≈ {:.2} s)  raw COPY {:>7.0} rows/s ({:.2} s)  ratio {:.3}  ({} first)",
            i + 1,
            r.handler_rate(n),
            r.handler.as_secs_f64(),
            r.parse.as_secs_f64(),
            r.copy_rate(n),
            r.raw_copy.as_secs_f64(),
            r.ratio(n),
            if r.copy_first { "raw COPY" } else { "handler" }
        )?;
        if let (Some(h), Some(c), Some(ratio)) = (r.handler_cpu, r.raw_copy_cpu, r.cpu_ratio()) {
            writeln!(
                out,
                "           CPU: handler {:.2} s (kit {:.2} + postgres {:.2})  raw COPY {:.2} s (kit {:.2} + postgres {:.2})  ratio {ratio:.3}",
                h.total().as_secs_f64(),
                h.own.as_secs_f64(),
                h.postgres.as_secs_f64(),
                c.total().as_secs_f64(),
                c.own.as_secs_f64(),
                c.postgres.as_secs_f64(),
            )?;
        }
    }
    writeln!(
        out,
        "  handler (SQS JSON → ingest::handler → PgBouncer): {handler_rate:>9.0} rows/s (median)"
    )?;
    writeln!(
        out,
        "  raw COPY (FORMAT BINARY, direct, one stream):     {copy_rate:>9.0} rows/s (median)"
    )?;
    writeln!(
        out,
        "  ratio handler ÷ raw COPY: {ratio:.3} (median of rounds; target ≥ 0.9)"
    )?;
    let cpu_ratios: Option<Vec<f64>> = rounds.iter().map(Figures::cpu_ratio).collect();
    let cpu_ratio = cpu_ratios.map(|ratios| median(ratios.into_iter()));
    if let Some(cpu_ratio) = cpu_ratio {
        writeln!(
            out,
            "  same, by CPU time (kit + postgres backends): {cpu_ratio:.3} (median of rounds)"
        )?;
    }
    if args.json {
        let per_round: Vec<Value> = rounds
            .iter()
            .map(|r| {
                json!({
                    "order": if r.copy_first { "copy_first" } else { "handler_first" },
                    "handler_seconds": r.handler.as_secs_f64(),
                    "handler_parse_seconds": r.parse.as_secs_f64(),
                    "raw_copy_seconds": r.raw_copy.as_secs_f64(),
                    "handler_rows_per_s": r.handler_rate(n),
                    "raw_copy_rows_per_s": r.copy_rate(n),
                    "ratio": r.ratio(n),
                    "handler_cpu_seconds": r.handler_cpu.map(|c| c.total().as_secs_f64()),
                    "handler_postgres_cpu_seconds": r.handler_cpu.map(|c| c.postgres.as_secs_f64()),
                    "raw_copy_cpu_seconds": r.raw_copy_cpu.map(|c| c.total().as_secs_f64()),
                    "raw_copy_postgres_cpu_seconds": r.raw_copy_cpu.map(|c| c.postgres.as_secs_f64()),
                    "cpu_ratio": r.cpu_ratio(),
                })
            })
            .collect();
        let line: Value = json!({
            "n": n,
            "batch": args.batch,
            "dims": dims,
            "hnsw_index": !args.without_hnsw,
            "rounds": per_round,
            "handler_rows_per_s": handler_rate,
            "handler_parse_seconds": parse_seconds,
            "raw_copy_rows_per_s": copy_rate,
            "ratio": ratio,
            "cpu_ratio": cpu_ratio,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Synthetic records: unit vectors around random centres, small metadata, no content.
struct Corpus {
    ids: Vec<Uuid>,
    vectors: Vec<Vec<f32>>,
    clusters: Vec<usize>,
    created_at: chrono::DateTime<Utc>,
}

impl Corpus {
    fn generate(n: usize, dims: usize, clusters: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| corpus::random_unit(&mut rng, dims))
            .collect();
        // Noise per dimension 0.3 / sqrt(dims): the offset's norm is about 0.17 whatever
        // the dimensions (uniform noise has variance 1/3).
        let spread = 0.3 / (dims as f32).sqrt();
        let mut ids = Vec::with_capacity(n);
        let mut vectors = Vec::with_capacity(n);
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let cluster = i % clusters;
            vectors.push(corpus::near(&centres[cluster], spread, &mut rng));
            ids.push(Uuid::from_u128(rng.gen()));
            members.push(cluster);
        }
        Self {
            ids,
            vectors,
            clusters: members,
            created_at: Utc::now(),
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn metadata(&self, i: usize) -> Value {
        json!({"cluster": self.clusters[i], "source": "bench"})
    }

    /// One SQS event (the shape Lambda delivers) carrying records `range` as message bodies.
    fn sqs_event_json(&self, range: std::ops::Range<usize>, event: usize) -> String {
        let created_at = self.created_at.to_rfc3339();
        let messages: Vec<(String, String)> = range
            .map(|i| {
                let body = UpsertMessage {
                    id: self.ids[i],
                    namespace: "bench",
                    embedding: &self.vectors[i],
                    content: None,
                    metadata: &self.metadata(i),
                    version: 1,
                    created_at: Some(&created_at),
                };
                (format!("{event}-{i}"), body.body())
            })
            .collect();
        sqs_event_with_ids(&messages, QUEUE_ARN).to_string()
    }

    /// The same records as the rows COPY takes.
    fn rows(&self) -> Vec<Upsert> {
        let namespace = Namespace::parse("bench").expect("a valid namespace");
        (0..self.len())
            .map(|i| Upsert {
                namespace: namespace.clone(),
                id: self.ids[i],
                embedding: Vector::from(self.vectors[i].clone()),
                content: None,
                metadata: match self.metadata(i) {
                    Value::Object(map) => map,
                    _ => unreachable!("metadata is an object"),
                },
                version: 1,
                created_at: self.created_at,
            })
            .collect()
    }
}

async fn create_database(
    admin: &PgConnectOptions,
    name: &str,
    without_hnsw: bool,
) -> anyhow::Result<()> {
    eprintln!("bench: creating database {name} (the migrated schema)");
    scratch::create_database(admin, name).await?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(admin.clone().database(name))
        .await?;
    let hnsw: Option<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'embeddings' AND indexdef LIKE '%USING hnsw%'",
    )
    .fetch_optional(&pool)
    .await?;
    let Some(hnsw) = hnsw else {
        bail!("{name}: the migrations created no HNSW index");
    };
    if without_hnsw {
        pool.execute(format!("DROP INDEX \"{hnsw}\"").as_str())
            .await?;
    }
    pool.close().await;
    Ok(())
}

async fn count_rows(admin: &PgConnectOptions, name: &str) -> anyhow::Result<i64> {
    let mut conn = admin.clone().database(name).connect().await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM embeddings")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await.ok();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_corpus_is_reproducible_and_normalised() {
        let a = Corpus::generate(5, 8, 2, 7);
        let b = Corpus::generate(5, 8, 2, 7);
        assert_eq!(a.ids, b.ids);
        for v in &a.vectors {
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        }
        let event: SqsEvent = serde_json::from_str(&a.sqs_event_json(0..5, 0)).unwrap();
        assert_eq!(event.records.len(), 5);
        let op = ingest::message::parse(
            event.records[0].body.as_deref(),
            8,
            &Limits::default(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(op.key().1, a.ids[0]);
    }
}
