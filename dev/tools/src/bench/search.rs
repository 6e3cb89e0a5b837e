//! `kit-dev bench search`: queries through the real search handler against the same
//! statement as raw SQL, in one run, on a fresh database (migrated, HNSW index present).
//!
//! - load: `--n` synthetic unit vectors (the schema's dimensions) around `--clusters`
//!   random centres, written with storage's batch writer over a direct connection, then
//!   `ANALYZE` (the planner needs statistics after a bulk load).
//! - handler: an API Gateway HTTP API (v2) event per query, turned into a request by
//!   `search::event::request_from_slice` (what the function's runtime does) and answered by
//!   `search::handler` over `SEARCH_DATABASE_URL` (the search role, through PgBouncer). Timed: the event
//!   deserialisation and the handler call (body parsing and validation, the search
//!   statement with its transaction-local settings, the response JSON). Building the
//!   event and reading the response are the client's work and are not timed. The run
//!   reports whether the statement ran alone (the login role sets its timeout and plan
//!   mode: one round trip) or inside a transaction that sets them (three).
//! - raw: the statement the handler runs (`storage::search_statement` bound by
//!   `SearchStatement::bind` to the query the handler's own parser builds from the same
//!   body, so it sets the same `hnsw.*` parameters), alone, on one direct connection
//!   whose session plans it the same way. Timed: the statement's round trip.
//! - recall@k against exact search computed in Rust over the loaded vectors, and the
//!   same for a selective filter (`--selectivity`), with and without iterative scans.
//!
//! Queries alternate between the two paths, so drift (caches, other load) hits both.
//! The database is dropped at the end, also when the run fails.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Args;
use kit_support::database_url::with_database;
use kit_support::stats::{all_millis, percentile};
use kit_support::{corpus, events, scratch};
use lambda_http::Body;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use search::{Limits, Settings, State};
use serde_json::{json, Map, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, Row};
use storage::{
    search_statement, Config, Database, Namespace, SearchQuery, Upsert, Vector, WriteOp,
};
use uuid::Uuid;

use super::Stack;

#[derive(Debug, Args)]
pub struct SearchBenchArgs {
    /// Vectors to load.
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Timed queries per path (after the warm-up).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Results per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// `ef_search` sent with every query (default: the handler's `DEFAULT_EF_SEARCH`).
    #[arg(long)]
    ef_search: Option<u32>,
    /// Clusters the synthetic vectors are drawn around.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Noise around the cluster centres: a point's offset from its centre has a norm
    /// near `spread / sqrt(3)` (larger is harder for the index).
    #[arg(long, default_value_t = 1.0)]
    spread: f32,
    /// Share of rows the selective filter matches.
    #[arg(long, default_value_t = 0.01)]
    selectivity: f64,
    /// Filtered queries (each run with and without iterative scans).
    #[arg(long, default_value_t = 50)]
    filtered_queries: usize,
    /// Untimed queries per path first (connections, caches, plans).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Seed of the synthetic corpus and queries.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the figures as one JSON object on the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Through PgBouncer, as the search function connects (its own role;
    /// `DATABASE_URL` when `SEARCH_DATABASE_URL` is not set).
    #[arg(long, env = "SEARCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Row-level security on the scratch database's `embeddings` (`on` as migrated, or
    /// `off`), to measure what it costs.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    row_level_security: String,
    /// Straight to PostgreSQL, as a role that may create databases.
    #[arg(long, env = "DATABASE_ADMIN_URL", hide_env_values = true)]
    admin_url: Option<String>,
}

mod sql {
    pub const ANALYZE: &str = "ANALYZE embeddings";
    pub const ROUND_TRIP: &str = "SELECT 1";
    /// The statement sets its own `hnsw.*` parameters; the raw connection's session gets
    /// the planner setting the handler's login (or transaction) has, so both paths run
    /// the same plan.
    pub const SESSION_SETTINGS: &str = "SET plan_cache_mode = force_custom_plan";
}

pub async fn run(args: SearchBenchArgs) -> anyhow::Result<()> {
    ensure!(
        args.n >= args.k && args.k > 0,
        "--n must be at least --k (≥ 1)"
    );
    ensure!(args.queries > 0, "--queries must be at least 1");
    ensure!(args.clusters > 0, "--clusters must be at least 1");
    ensure!(
        args.selectivity > 0.0 && args.selectivity <= 1.0,
        "--selectivity is a share of rows, from 0 (exclusive) to 1"
    );
    let database_url = args
        .database_url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok());
    let Stack {
        app_url,
        admin_url,
        admin,
    } = Stack::from_args(database_url, args.admin_url.clone())?;
    let name = format!(
        "kit_bench_search_{}",
        &Uuid::new_v4().simple().to_string()[..8]
    );

    let outcome = async {
        scratch::create_database(&admin, &name).await?;
        measure(&args, &app_url, &admin_url, &admin, &name).await
    }
    .await;
    if let Err(error) = scratch::drop_database(&admin, &name).await {
        eprintln!("bench: could not drop {name}: {error:#}");
    }
    report(&args, &outcome?)
}

/// What one run measured.
#[derive(Debug)]
struct Figures {
    dims: usize,
    ef_search: u32,
    /// Searches ran as one statement (the login role bounds them), not in a transaction.
    alone: bool,
    handler: Vec<Duration>,
    raw: Vec<Duration>,
    breakdown: Breakdown,
    recall_handler: f64,
    recall_raw: f64,
    filtered: Filtered,
}

/// Where the handler's time goes, measured on the same queries in a separate pass.
#[derive(Debug, Default)]
struct Breakdown {
    /// Reading the event into a request, and the handler's body parser; no database.
    parse: Vec<Duration>,
    /// `Database::search_nearest`: the storage call through PgBouncer.
    storage: Vec<Duration>,
    /// One `SELECT 1` round trip through PgBouncer, and straight to PostgreSQL.
    round_trip_pgbouncer: Vec<Duration>,
    round_trip_direct: Vec<Duration>,
}

#[derive(Debug)]
struct Filtered {
    filter: Value,
    matching_rows: usize,
    queries: usize,
    iterative_recall: f64,
    iterative_fill: f64,
    iterative_latency: Vec<Duration>,
    plain_recall: f64,
    plain_fill: f64,
}

async fn measure(
    args: &SearchBenchArgs,
    app_url: &str,
    admin_url: &str,
    admin: &PgConnectOptions,
    name: &str,
) -> anyhow::Result<Figures> {
    let direct = admin.clone().database(name);
    let direct_url = with_database(admin_url, name)?;
    let loader = Database::connect_lazy(&Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(direct_url.clone()),
        "DB_STATEMENT_TIMEOUT_MS" => Some("900000".into()),
        _ => None,
    })?)?;
    let dims = loader.dimensions().await.context("reading the schema")?;
    let groups = (1.0 / args.selectivity).round().max(1.0) as u32;
    eprintln!(
        "bench: {} vectors of {dims} dimensions ({} clusters, spread {}, seed {}), filter share 1/{groups}",
        args.n, args.clusters, args.spread, args.seed
    );
    let corpus = Corpus::generate(args, dims, groups);
    load(&loader, &corpus).await?;
    loader.close().await;

    let mut conn = direct
        .connect()
        .await
        .context("connecting to DATABASE_ADMIN_URL")?;
    conn.execute(sql::ANALYZE).await?;
    let row_level_security = args.row_level_security == "on";
    storage::roles::set_row_level_security(&mut conn, row_level_security).await?;
    eprintln!(
        "bench: row-level security {}",
        if row_level_security { "on" } else { "off" }
    );

    let limits = Limits::from_lookup(|k| std::env::var(k).ok())?;
    let config = Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(with_database(app_url, name).ok()?),
        _ => std::env::var(k).ok(),
    })?;
    // The bench names its namespace in each body, as a local (AUTH_MODE=none) caller.
    let state = State::new(Settings {
        limits,
        auth: search::Auth::none(),
        ..Settings::new(config)
    })?;
    // stdout carries the figures: the handler's metric lines go nowhere.
    telemetry::set_metrics_sink(telemetry::MetricsSink::Discard);
    state.db.health().await.context("reaching DATABASE_URL")?;
    let alone = state.db.searches_run_alone().await?;
    if !alone {
        eprintln!(
            "bench: DATABASE_URL's role does not set statement_timeout (≤ DB_STATEMENT_TIMEOUT_MS) \
             and plan_cache_mode = force_custom_plan: each search opens a transaction to set them \
             (two more round trips; docs/search.md)"
        );
    }

    // Unfiltered: handler and raw, alternating.
    let queries = corpus.queries(args.warmup + args.queries, args.seed ^ 0x5eed);
    let bodies: Vec<String> = queries
        .iter()
        .map(|q| search_body(q, args.k, args.ef_search, None))
        .collect();
    let parsed: Vec<SearchQuery> = bodies
        .iter()
        .map(|b| {
            search::request::parse_search(b.as_bytes(), dims, &limits, &search::Grant::Requested)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("the handler's parser refused a query: {}", e.message))?;
    let ef_search = parsed[0].ef_search;
    conn.execute(sql::SESSION_SETTINGS).await?;
    let events: Vec<String> = bodies.iter().map(|b| search_event(b)).collect();

    eprintln!(
        "bench: {} warm-up + {} timed queries per path, k = {}, ef_search = {ef_search}",
        args.warmup, args.queries, args.k
    );
    let (mut handler, mut raw) = (Vec::new(), Vec::new());
    let (mut found_handler, mut found_raw) = (0usize, 0usize);
    let mut next_progress = 50;
    // Exact answers first: a 10 ms burst of CPU between timed queries would cool both
    // paths' processes down, and time would measure the wake-up rather than the query.
    let exact: Vec<Vec<Uuid>> = queries
        .iter()
        .map(|v| corpus.exact(v, args.k, |_| true))
        .collect();
    for (i, ((event, query), exact)) in events.iter().zip(&parsed).zip(&exact).enumerate() {
        let timed = i >= args.warmup;
        // Alternate which path goes first.
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for through_handler in order {
            if through_handler {
                let (elapsed, ids) = call_handler(&state, event).await?;
                if timed {
                    handler.push(elapsed);
                    found_handler += overlap(&ids, exact);
                }
            } else {
                let (elapsed, ids) = call_raw(&mut conn, query).await?;
                if timed {
                    raw.push(elapsed);
                    found_raw += overlap(&ids, exact);
                }
            }
        }
        let done = (i + 1).saturating_sub(args.warmup);
        if timed && (done == args.queries || done == next_progress) {
            eprintln!("bench: {done}/{} queries", args.queries);
            next_progress += 50;
        }
    }
    let denominator = (args.queries * args.k) as f64;

    // Breakdown pass over the timed queries.
    let mut breakdown = Breakdown::default();
    // The handler's application_name: with another, PgBouncer would set it on the server
    // connection before every statement, and time that instead of the hop.
    let mut bouncer = with_database(app_url, name)?
        .parse::<PgConnectOptions>()?
        .application_name(storage::APPLICATION_NAME)
        .connect()
        .await
        .context("connecting to DATABASE_URL")?;
    for (event, body) in events.iter().zip(&bodies).skip(args.warmup) {
        let started = Instant::now();
        let request = search::event::request_from_slice(event.as_bytes())?;
        let query = search::request::parse_search(
            lambda_body(request.body()),
            dims,
            &limits,
            &search::Grant::Requested,
        )
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        breakdown.parse.push(started.elapsed());
        debug_assert_eq!(body.len(), lambda_body(request.body()).len());
        let started = Instant::now();
        state.db.search_nearest(&query).await?;
        breakdown.storage.push(started.elapsed());
        for (conn, samples) in [
            (&mut bouncer, &mut breakdown.round_trip_pgbouncer),
            (&mut conn, &mut breakdown.round_trip_direct),
        ] {
            let started = Instant::now();
            sqlx::query(sql::ROUND_TRIP).execute(&mut *conn).await?;
            samples.push(started.elapsed());
        }
    }
    bouncer.close().await.ok();

    // Filtered: a selective filter (a range, which GIN cannot serve, so the planner
    // takes the HNSW index), with iterative scans (the handler) and without (storage).
    let filter = json!({"group": {"$lt": 1}});
    let filtered_queries = corpus.queries(args.filtered_queries, args.seed ^ 0xf11e);
    let mut filtered = Filtered {
        matching_rows: corpus.groups.iter().filter(|g| **g == 0).count(),
        filter: filter.clone(),
        queries: filtered_queries.len(),
        iterative_recall: 0.0,
        iterative_fill: 0.0,
        iterative_latency: Vec::new(),
        plain_recall: 0.0,
        plain_fill: 0.0,
    };
    for vector in &filtered_queries {
        let exact = corpus.exact(vector, args.k, |i| corpus.groups[i] == 0);
        let body = search_body(vector, args.k, args.ef_search, Some(&filter));
        let (elapsed, ids) = call_handler(&state, &search_event(&body)).await?;
        filtered.iterative_latency.push(elapsed);
        filtered.iterative_recall += overlap(&ids, &exact) as f64;
        filtered.iterative_fill += ids.len() as f64;
        let mut plain = search::request::parse_search(
            body.as_bytes(),
            dims,
            &limits,
            &search::Grant::Requested,
        )
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        plain.iterative_scan = false;
        let hits = state.db.search_nearest(&plain).await?;
        let ids: Vec<Uuid> = hits.iter().map(|h| h.id).collect();
        filtered.plain_recall += overlap(&ids, &exact) as f64;
        filtered.plain_fill += ids.len() as f64;
    }
    let expected = (filtered.queries * args.k.min(filtered.matching_rows)).max(1) as f64;
    let slots = (filtered.queries * args.k).max(1) as f64;
    filtered.iterative_recall /= expected;
    filtered.plain_recall /= expected;
    filtered.iterative_fill /= slots;
    filtered.plain_fill /= slots;

    conn.close().await.ok();
    state.db.close().await;
    Ok(Figures {
        dims,
        ef_search,
        alone,
        handler,
        raw,
        breakdown,
        recall_handler: found_handler as f64 / denominator,
        recall_raw: found_raw as f64 / denominator,
        filtered,
    })
}

/// One query through the real handler; returns the timed part and the result ids.
async fn call_handler(state: &State, event: &str) -> anyhow::Result<(Duration, Vec<Uuid>)> {
    let started = Instant::now();
    let request = search::event::request_from_slice(event.as_bytes())
        .context("the v2 event does not parse")?;
    let response = search::handler(state, request)
        .await
        .map_err(|e| anyhow::anyhow!("the handler failed: {e}"))?;
    let elapsed = started.elapsed();
    let body: Value = match response.body() {
        Body::Text(text) => serde_json::from_str(text)?,
        other => anyhow::bail!("unexpected body {other:?}"),
    };
    ensure!(
        response.status().is_success(),
        "the handler answered {}: {body}",
        response.status()
    );
    let ids = body["results"]
        .as_array()
        .context("no results")?
        .iter()
        .map(|r| serde_json::from_value(r["id"].clone()))
        .collect::<Result<_, _>>()?;
    Ok((elapsed, ids))
}

/// The same statement, alone, on the direct connection.
async fn call_raw(
    conn: &mut PgConnection,
    query: &SearchQuery,
) -> anyhow::Result<(Duration, Vec<Uuid>)> {
    let statement = search_statement(query.filter.as_ref())?;
    let started = Instant::now();
    let rows = statement.bind(query).fetch_all(&mut *conn).await?;
    let elapsed = started.elapsed();
    let ids = rows
        .iter()
        .map(|row| row.try_get::<Uuid, _>("id"))
        .collect::<Result<_, _>>()?;
    Ok((elapsed, ids))
}

fn lambda_body(body: &Body) -> &[u8] {
    match body {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    }
}

fn overlap(got: &[Uuid], exact: &[Uuid]) -> usize {
    let exact: HashSet<&Uuid> = exact.iter().collect();
    got.iter().filter(|id| exact.contains(id)).count()
}

fn search_body(vector: &[f32], k: usize, ef_search: Option<u32>, filter: Option<&Value>) -> String {
    let mut body = json!({"namespace": "bench", "vector": vector, "k": k, "include": ["metadata"]});
    if let Some(ef) = ef_search {
        body["ef_search"] = json!(ef);
    }
    if let Some(filter) = filter {
        body["filter"] = filter.clone();
    }
    body.to_string()
}

/// `POST /search` with `body` as an API Gateway HTTP API (payload 2.0) event without an
/// authorizer: the fixture's shape, as the function's runtime receives it.
fn search_event(body: &str) -> String {
    events::http_v2_request("POST", "/search", "", Some(body), None).to_string()
}

async fn load(db: &Database, corpus: &Corpus) -> anyhow::Result<()> {
    let namespace = Namespace::parse("bench")?;
    let started = Instant::now();
    let chunk = 500;
    for start in (0..corpus.vectors.len()).step_by(chunk) {
        let end = (start + chunk).min(corpus.vectors.len());
        let ops: Vec<WriteOp> = (start..end)
            .map(|i| {
                let mut metadata = Map::new();
                metadata.insert("i".into(), json!(i));
                metadata.insert("group".into(), json!(corpus.groups[i]));
                WriteOp::Upsert(Upsert {
                    namespace: namespace.clone(),
                    id: corpus.ids[i],
                    embedding: Vector::from(corpus.vectors[i].clone()),
                    content: None,
                    metadata,
                    version: 0,
                    created_at: chrono::Utc::now(),
                })
            })
            .collect();
        db.write_batch(&ops).await.context("loading the corpus")?;
        eprintln!(
            "bench: loaded {end:>7}/{} vectors  {:>6.0} rows/s",
            corpus.vectors.len(),
            end as f64 / started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn report(args: &SearchBenchArgs, f: &Figures) -> anyhow::Result<()> {
    let p = |samples: &[Duration], p: f64| percentile(&all_millis(samples), p);
    let (h50, h99) = (p(&f.handler, 50.0), p(&f.handler, 99.0));
    let (r50, r99) = (p(&f.raw, 50.0), p(&f.raw, 99.0));
    let ratio = h50 / r50;
    let filtered_p50 = p(&f.filtered.iterative_latency, 50.0);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "search bench: {} vectors × {} dims, {} queries per path, k = {}, ef_search = {}",
        args.n, f.dims, args.queries, args.k, f.ef_search
    )?;
    writeln!(
        out,
        "  handler (v2 event → search::handler → PgBouncer): p50 {h50:.3} ms  p99 {h99:.3} ms  recall@{} {:.3}",
        args.k, f.recall_handler
    )?;
    writeln!(
        out,
        "    round trips per search: {}",
        if f.alone {
            "1 (the statement alone: the login role sets its timeout and plan mode)"
        } else {
            "3 (a read transaction sets the timeout and plan mode first)"
        }
    )?;
    writeln!(
        out,
        "  raw statement (direct connection):                p50 {r50:.3} ms  p99 {r99:.3} ms  recall@{} {:.3}",
        args.k, f.recall_raw
    )?;
    writeln!(
        out,
        "  ratio handler ÷ raw (p50): {ratio:.3} (target ≤ 1.3); recall@{} target ≥ 0.95",
        args.k
    )?;
    let b = &f.breakdown;
    writeln!(
        out,
        "  where the handler's time goes (p50): event + body parsing {:.3} ms, storage call \
         through PgBouncer {:.3} ms; one round trip: {:.3} ms through PgBouncer, {:.3} ms direct",
        p(&b.parse, 50.0),
        p(&b.storage, 50.0),
        p(&b.round_trip_pgbouncer, 50.0),
        p(&b.round_trip_direct, 50.0),
    )?;
    writeln!(
        out,
        "  filtered {} ({} of {} rows match), {} queries:",
        f.filtered.filter, f.filtered.matching_rows, args.n, f.filtered.queries
    )?;
    writeln!(
        out,
        "    iterative scans (handler):     recall@{} {:.3}  k filled {:.3}  p50 {filtered_p50:.3} ms",
        args.k, f.filtered.iterative_recall, f.filtered.iterative_fill
    )?;
    writeln!(
        out,
        "    without iterative scans:       recall@{} {:.3}  k filled {:.3}",
        args.k, f.filtered.plain_recall, f.filtered.plain_fill
    )?;
    if args.json {
        let line = json!({
            "n": args.n,
            "clusters": args.clusters,
            "spread": args.spread,
            "dims": f.dims,
            "queries": args.queries,
            "k": args.k,
            "ef_search": f.ef_search,
            "search_round_trips": if f.alone { 1 } else { 3 },
            "row_level_security": args.row_level_security == "on",
            "handler_p50_ms": h50,
            "handler_p99_ms": h99,
            "raw_p50_ms": r50,
            "raw_p99_ms": r99,
            "ratio_p50": ratio,
            "recall_at_10": f.recall_handler,
            "raw_recall_at_10": f.recall_raw,
            "breakdown_p50_ms": {
                "parse": p(&b.parse, 50.0),
                "storage": p(&b.storage, 50.0),
                "round_trip_pgbouncer": p(&b.round_trip_pgbouncer, 50.0),
                "round_trip_direct": p(&b.round_trip_direct, 50.0),
            },
            "filtered": {
                "filter": f.filtered.filter,
                "matching_rows": f.filtered.matching_rows,
                "queries": f.filtered.queries,
                "iterative_recall_at_10": f.filtered.iterative_recall,
                "iterative_k_fill": f.filtered.iterative_fill,
                "iterative_p50_ms": filtered_p50,
                "plain_recall_at_10": f.filtered.plain_recall,
                "plain_k_fill": f.filtered.plain_fill,
            },
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Unit vectors around random centres, with a filter group per row.
struct Corpus {
    ids: Vec<Uuid>,
    vectors: Vec<Vec<f32>>,
    groups: Vec<u32>,
    centres: Vec<Vec<f32>>,
    dims: usize,
    spread: f32,
}

impl Corpus {
    fn generate(args: &SearchBenchArgs, dims: usize, groups: u32) -> Self {
        let mut rng = StdRng::seed_from_u64(args.seed);
        let centres: Vec<Vec<f32>> = (0..args.clusters)
            .map(|_| corpus::random_unit(&mut rng, dims))
            .collect();
        let mut corpus = Self {
            ids: Vec::with_capacity(args.n),
            vectors: Vec::with_capacity(args.n),
            groups: Vec::with_capacity(args.n),
            centres,
            dims,
            spread: args.spread,
        };
        for _ in 0..args.n {
            let vector = corpus.point(&mut rng);
            corpus.ids.push(Uuid::from_u128(rng.gen()));
            corpus.vectors.push(vector);
            corpus.groups.push(rng.gen_range(0..groups));
        }
        corpus
    }

    fn point(&self, rng: &mut StdRng) -> Vec<f32> {
        let centre = &self.centres[rng.gen_range(0..self.centres.len())];
        // Per-dimension noise `spread / sqrt(dims)` keeps the offset's norm near
        // `spread / sqrt(3)` whatever the dimensions (uniform noise has variance 1/3).
        let scale = self.spread / (self.dims as f32).sqrt();
        corpus::near(centre, scale, rng)
    }

    /// Fresh points from the same distribution (not members of the corpus).
    fn queries(&self, count: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..count).map(|_| self.point(&mut rng)).collect()
    }

    /// The exact `k` nearest by cosine distance among rows passing `keep`.
    fn exact(&self, query: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<Uuid> {
        corpus::exact_nearest(query, &self.vectors, k, keep)
            .into_iter()
            .map(|i| self.ids[i])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_search_ranks_by_cosine_distance() {
        let args = SearchBenchArgs {
            n: 200,
            queries: 1,
            k: 5,
            ef_search: None,
            clusters: 4,
            spread: 1.0,
            selectivity: 0.1,
            filtered_queries: 1,
            warmup: 0,
            seed: 3,
            json: false,
            database_url: None,
            row_level_security: "on".into(),
            admin_url: None,
        };
        let corpus = Corpus::generate(&args, 16, 10);
        let query = corpus.vectors[7].clone();
        let exact = corpus.exact(&query, 5, |_| true);
        assert_eq!(exact.len(), 5);
        assert!(
            exact.contains(&corpus.ids[7]),
            "a vector is its own nearest"
        );
        let only_group_0 = corpus.exact(&query, 500, |i| corpus.groups[i] == 0);
        let members = corpus.groups.iter().filter(|g| **g == 0).count();
        assert_eq!(only_group_0.len(), members);
    }

    #[test]
    fn the_event_is_an_http_api_request() {
        let event = search_event(r#"{"vector":[1]}"#);
        let request = search::event::request_from_slice(event.as_bytes()).unwrap();
        assert_eq!(request.uri().path(), "/search");
        assert_eq!(request.method(), "POST");
    }
}
