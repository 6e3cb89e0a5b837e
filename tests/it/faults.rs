//! Faults on a real stack of their own (`kit_support::private_stack`, one cluster shared
//! by these tests in turn), so the tests running against the shared stack never see
//! them: PostgreSQL restarted (`-m fast`, `-m immediate`) and PgBouncer killed and
//! restarted, backends terminated, PgBouncer paused for maintenance, each in the middle
//! of a stream of ingest batches and a search load; a connection storm; a kept
//! connection that outlived PgBouncer's server and a load balancer's idle timeouts.
//!
//! What must hold: ingest loses no record and stores none twice (every failed record is
//! delivered again, as SQS would, until stored); searches fail only with `503
//! database_unavailable`, and recover (the time is printed: `-- --nocapture`).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kit_support::corpus::{clustered, DIMS};
use kit_support::events::upsert_body;
use kit_support::private_stack::{PrivateStack, Shutdown};
use kit_support::proxy::Proxy;
use kit_support::search_corpus::write_rows;
use kit_support::{IngestFn, SearchFn};
use serde_json::{json, Map};
use sqlx::Row;
use storage::{Config, Database, Function, STATEMENT_GRACE};
use tokio::time::Instant;
use uuid::Uuid;

/// Records streamed through ingest per fault, in batches of [`BATCH`].
const RECORDS: usize = 500;
const BATCH: usize = 25;
/// Concurrent ingest invocations and search environments.
const INGESTERS: usize = 2;
const SEARCHERS: usize = 2;

/// `function`'s configuration on `db` with the committed kit.toml's bounds.
fn config(stack: &PrivateStack, function: Function, db: &str) -> Config {
    let mut config = stack.config(function, db);
    (config.acquire_timeout, config.statement_timeout) = match function {
        Function::Ingest => (Duration::from_secs(3), Duration::from_secs(15)),
        Function::Search => (Duration::from_secs(1), Duration::from_secs(3)),
        Function::Purge => (Duration::from_secs(5), Duration::from_secs(60)),
    };
    config
}

fn ingest_fn(stack: &PrivateStack, db: &str) -> IngestFn {
    IngestFn::new(
        &config(stack, Function::Ingest, db),
        ingest::Limits::default(),
    )
}

fn search_fn(config: &Config) -> SearchFn {
    SearchFn::new(config, search::Limits::default(), search::Auth::none())
}

/// A search for `vector` in namespace `default` with `deadline_s` left: status, code.
async fn search(search: &SearchFn, vector: &[f32], deadline_s: f64) -> (u16, Option<String>) {
    let body = json!({"namespace": "default", "vector": vector, "k": 5});
    let reply = search.post_search_within(&body, deadline_s).await;
    (reply.status, reply.code().map(str::to_owned))
}

/// A migrated database of its own on the private stack with `n` rows in namespace
/// `default`; the first vector, to search for.
async fn seeded(stack: &PrivateStack, n: usize) -> (String, Vec<f32>) {
    let db = stack.create_database().await.unwrap();
    let writer = Database::connect_lazy(&config(stack, Function::Ingest, &db)).unwrap();
    let vectors = clustered(n, 2, DIMS, 0.4, 5);
    write_rows(&writer, "default", &vectors, &vec![Map::new(); n])
        .await
        .unwrap();
    writer.close().await;
    (db, vectors[0].clone())
}

/// Fails the test instead of hanging.
async fn within<T>(limit: Duration, what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {limit:?}"))
}

/// SQS as the ingest function sees it: messages delivered in batches; the ones a batch
/// reports in `batchItemFailures` are delivered again, until every one is stored.
struct Queue {
    ids: Vec<Uuid>,
    bodies: Vec<String>,
    pending: Mutex<VecDeque<usize>>,
    in_flight: AtomicUsize,
    acknowledged: AtomicUsize,
    /// Rows the batches said they wrote: exactly one per record, or one was written twice.
    written: AtomicUsize,
    redelivered: AtomicUsize,
    failed_batches: AtomicUsize,
    /// When each batch that committed anything ended.
    commits: Mutex<Vec<Instant>>,
}

impl Queue {
    fn new(n: usize) -> Arc<Queue> {
        let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
        let bodies = ids
            .iter()
            .zip(clustered(n, 2, DIMS, 0.4, 17))
            .map(|(id, v)| upsert_body(*id, "default", &v, json!({}), 1))
            .collect();
        Arc::new(Queue {
            ids,
            bodies,
            pending: Mutex::new((0..n).collect()),
            in_flight: AtomicUsize::new(0),
            acknowledged: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            redelivered: AtomicUsize::new(0),
            failed_batches: AtomicUsize::new(0),
            commits: Mutex::new(Vec::new()),
        })
    }

    /// The next batch, or `None` when every message is acknowledged.
    async fn receive(&self) -> Option<Vec<usize>> {
        loop {
            {
                let mut pending = self.pending.lock().unwrap();
                if !pending.is_empty() {
                    let n = pending.len().min(BATCH);
                    self.in_flight.fetch_add(1, Ordering::SeqCst);
                    return Some(pending.drain(..n).collect());
                }
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return None;
                }
            }
            // Another invocation's batch may still fail and come back.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One ingest "invocation" after another, each with a 10 s deadline, until the queue
/// is empty.
async fn ingest_until_empty(queue: Arc<Queue>, ingest: IngestFn) {
    while let Some(batch) = queue.receive().await {
        let bodies: Vec<&str> = batch.iter().map(|&i| queue.bodies[i].as_str()).collect();
        let report = ingest.process(&bodies, 10.0).await;
        let failed: Vec<usize> = report
            .failures
            .iter()
            .map(|id| batch[id.trim_start_matches('m').parse::<usize>().unwrap()])
            .collect();
        queue.written.fetch_add(report.written, Ordering::SeqCst);
        queue
            .acknowledged
            .fetch_add(batch.len() - failed.len(), Ordering::SeqCst);
        if failed.is_empty() {
            queue.commits.lock().unwrap().push(Instant::now());
        } else {
            queue.failed_batches.fetch_add(1, Ordering::SeqCst);
            queue.redelivered.fetch_add(failed.len(), Ordering::SeqCst);
            queue.pending.lock().unwrap().extend(failed);
        }
        queue.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Each search's answer: when it ended, its status and code, and how long it took.
type Answers = Arc<Mutex<Vec<(Instant, u16, Option<String>, Duration)>>>;

/// One search environment searching until told to stop.
async fn search_until(
    searcher: SearchFn,
    vector: Vec<f32>,
    stop: Arc<AtomicBool>,
    answers: Answers,
) {
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let (status, code) = search(&searcher, &vector, 15.0).await;
        answers
            .lock()
            .unwrap()
            .push((Instant::now(), status, code, started.elapsed()));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// What each fault does to the private stack.
#[derive(Clone, Copy, Debug)]
enum Fault {
    RestartPostgres(Shutdown),
    KillPgBouncer,
    TerminateBackends,
    PausePgBouncer,
}

impl Fault {
    async fn inject(self, stack: &PrivateStack) {
        match self {
            Fault::RestartPostgres(shutdown) => {
                tokio::task::block_in_place(|| stack.restart_postgres(shutdown)).unwrap()
            }
            Fault::KillPgBouncer => {
                tokio::task::block_in_place(|| stack.kill_pgbouncer()).unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await; // down for a while
                tokio::task::block_in_place(|| stack.start_pgbouncer()).unwrap();
            }
            Fault::TerminateBackends => {
                let mut ended = 0;
                for role in ["kit_ingest", "kit_search"] {
                    ended += stack.terminate_backends(role).await.unwrap();
                }
                assert!(ended > 0, "no backend served the load");
            }
            Fault::PausePgBouncer => {
                stack.pgbouncer_admin("PAUSE").await.unwrap();
                tokio::time::sleep(Duration::from_secs(2)).await;
                stack.pgbouncer_admin("RESUME").await.unwrap();
            }
        }
    }
}

/// Streams [`RECORDS`] through ingest and searches meanwhile; injects `fault` once a
/// quarter of the records are stored; checks and prints what the functions did.
async fn survive_mid_stream(fault: Fault) {
    let stack = PrivateStack::shared().await.unwrap();
    let (db, vector) = seeded(&stack, 40).await;

    let queue = Queue::new(RECORDS);
    let ingesters: Vec<_> = (0..INGESTERS)
        .map(|_| {
            tokio::spawn(ingest_until_empty(
                Arc::clone(&queue),
                ingest_fn(&stack, &db),
            ))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Answers = Arc::default();
    let searchers: Vec<_> = (0..SEARCHERS)
        .map(|_| {
            tokio::spawn(search_until(
                search_fn(&config(&stack, Function::Search, &db)),
                vector.clone(),
                Arc::clone(&stop),
                Arc::clone(&answers),
            ))
        })
        .collect();

    within(Duration::from_secs(60), "a quarter of the stream", async {
        while queue.acknowledged.load(Ordering::SeqCst) < RECORDS / 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let injected = Instant::now();
    fault.inject(&stack).await;
    let fault_took = injected.elapsed();

    within(
        Duration::from_secs(180),
        "the stream after the fault",
        async {
            for ingester in ingesters {
                ingester.await.unwrap();
            }
        },
    )
    .await;
    // Searches go on a little after the stream, to see them recover.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for searcher in searchers {
        searcher.await.unwrap();
    }

    // Ingest: every record stored, exactly once.
    let mut admin = stack.admin(&db).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE id = ANY($1)")
        .bind(&queue.ids)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(stored, RECORDS as i64, "{fault:?}: records lost");
    assert_eq!(
        queue.written.load(Ordering::SeqCst),
        RECORDS,
        "{fault:?}: the batches wrote {} rows for {RECORDS} records",
        queue.written.load(Ordering::SeqCst)
    );
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT version FROM embeddings WHERE id = ANY($1)")
            .bind(&queue.ids)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert_eq!(versions, [1], "{fault:?}");
    let first_commit_after = queue
        .commits
        .lock()
        .unwrap()
        .iter()
        .find(|at| **at > injected + fault_took)
        .map(|at| at.duration_since(injected));

    // Search: only 503 database_unavailable, and answers again after the fault.
    let answers = answers.lock().unwrap().clone();
    let mut failures = 0;
    for (_, status, code, _) in &answers {
        match (status, code.as_deref()) {
            (200, _) => {}
            (503, Some("database_unavailable")) => failures += 1,
            other => panic!("{fault:?}: a search answered {other:?}"),
        }
    }
    let last_failure = answers
        .iter()
        .filter(|(_, status, _, _)| *status != 200)
        .map(|(at, ..)| *at)
        .max();
    let recovered = answers
        .iter()
        .filter(|(at, status, _, _)| {
            *status == 200 && last_failure.is_none_or(|last| *at > last) && *at > injected
        })
        .map(|(at, ..)| at.duration_since(injected))
        .min()
        .unwrap_or_else(|| panic!("{fault:?}: searches never answered 200 after the fault"));
    let slowest = answers
        .iter()
        .map(|(.., took)| *took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "{fault:?}: fault took {:.1} s; ingest: {} failed batches, {} records redelivered, \
         first commit {:.1} s after the fault; search: {} of {} answered 503, all 200 again \
         {:.1} s after the fault, slowest answer {:.1} s",
        fault_took.as_secs_f64(),
        queue.failed_batches.load(Ordering::SeqCst),
        queue.redelivered.load(Ordering::SeqCst),
        first_commit_after.map_or(f64::NAN, |d| d.as_secs_f64()),
        failures,
        answers.len(),
        recovered.as_secs_f64(),
        slowest.as_secs_f64()
    );
    assert!(
        recovered < fault_took + Duration::from_secs(20),
        "{fault:?}: searches recovered only {recovered:?} after the fault"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_fast_mid_stream_loses_nothing() {
    survive_mid_stream(Fault::RestartPostgres(Shutdown::Fast)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_and_restarted_mid_stream_loses_nothing() {
    survive_mid_stream(Fault::RestartPostgres(Shutdown::Immediate)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_killed_and_restarted_mid_stream_loses_nothing() {
    survive_mid_stream(Fault::KillPgBouncer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_terminated_mid_stream_lose_nothing() {
    survive_mid_stream(Fault::TerminateBackends).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_paused_for_maintenance_mid_stream_loses_nothing() {
    survive_mid_stream(Fault::PausePgBouncer).await;
}

/// What a storm of cold search clients met.
struct Storm {
    /// Each client's status, error code and time to answer.
    outcomes: Vec<(u16, Option<String>, Duration)>,
    /// The most backends PostgreSQL gave the search role on this database.
    most_backends: i64,
    /// The most clients waiting in PgBouncer's queue, and the longest wait there.
    most_waiting: i64,
    longest_wait: Duration,
}

impl Storm {
    /// `clients` cold search environments at once (each its own handle: a new
    /// connection, the vector's dimensions, the login's defaults, then the search),
    /// sampling PostgreSQL and PgBouncer meanwhile.
    async fn blow(stack: &PrivateStack, db: &str, vector: &[f32], clients: usize) -> Storm {
        let mut admin = stack.admin(db).await.unwrap();
        let mut console = stack.pgbouncer_console().await.unwrap();
        let done = AtomicBool::new(false);
        let sample = async {
            let (mut backends, mut waiting, mut wait) = (0, 0, Duration::ZERO);
            while !done.load(Ordering::SeqCst) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = 'kit_search' AND datname = $1",
                )
                .bind(db)
                .fetch_one(&mut admin)
                .await
                .unwrap();
                backends = backends.max(n);
                let pools = sqlx::raw_sql("SHOW POOLS")
                    .fetch_all(&mut console)
                    .await
                    .unwrap();
                for pool in pools {
                    let text = |column: &str| pool.try_get_unchecked::<String, _>(column).unwrap();
                    if text("database") == db && text("user") == "kit_search" {
                        waiting = waiting.max(text("cl_waiting").parse::<i64>().unwrap());
                        let waited = Duration::from_secs(text("maxwait").parse().unwrap())
                            + Duration::from_micros(text("maxwait_us").parse().unwrap());
                        wait = wait.max(waited);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (backends, waiting, wait)
        };
        let config = config(stack, Function::Search, db);
        let storm = async {
            let spawned: Vec<_> = (0..clients)
                .map(|_| {
                    let searcher = search_fn(&config);
                    let vector = vector.to_vec();
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let (status, code) = search(&searcher, &vector, 15.0).await;
                        (status, code, started.elapsed())
                    })
                })
                .collect();
            let mut outcomes = Vec::new();
            for client in spawned {
                outcomes.push(client.await.unwrap());
            }
            done.store(true, Ordering::SeqCst);
            outcomes
        };
        let ((most_backends, most_waiting, longest_wait), outcomes) = tokio::join!(sample, storm);
        Storm {
            outcomes,
            most_backends,
            most_waiting,
            longest_wait,
        }
    }

    /// (answered 200, answered 503 `database_unavailable`); anything else fails the test.
    fn counts(&self) -> (usize, usize) {
        let (mut ok, mut unavailable) = (0, 0);
        for (status, code, _) in &self.outcomes {
            match (status, code.as_deref()) {
                (200, _) => ok += 1,
                (503, Some("database_unavailable")) => unavailable += 1,
                other => panic!("a storm client answered {other:?}"),
            }
        }
        (ok, unavailable)
    }

    fn slowest(&self) -> Duration {
        self.outcomes.iter().map(|(.., took)| *took).max().unwrap()
    }
}

/// More cold clients at once than PgBouncer's pool holds: they wait in PgBouncer's
/// queue, at most `query_wait_timeout`, and whoever waits longer is sent away and
/// answers 503; PostgreSQL never sees more connections than the pool (no `53300 too
/// many connections`). First with every server connection held by open transactions
/// (all wait, PgBouncer sends them away), then with the pool free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_storm_waits_in_pgbouncer_and_never_reaches_postgres() {
    const CLIENTS: usize = 60;
    const POOL: usize = 4;
    let stack = PrivateStack::shared().await.unwrap();
    let (db, vector) = seeded(&stack, 40).await;
    for setting in [
        format!("SET default_pool_size = {POOL}"),
        "SET reserve_pool_size = 0".to_owned(),
        "SET query_wait_timeout = 1".to_owned(),
    ] {
        stack.pgbouncer_admin(&setting).await.unwrap();
    }
    let query_wait = Duration::from_secs(1);
    let config = config(&stack, Function::Search, &db);
    // Every answer within the client's own bounds: a connection, then three round trips.
    let own_bounds = config.acquire_timeout + 3 * (config.statement_timeout + STATEMENT_GRACE);

    // The pool taken: transactions of the same role hold every server connection.
    let mut holders = Vec::new();
    for _ in 0..POOL {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&stack.url(Function::Search, &db))
            .await
            .unwrap();
        sqlx::raw_sql("BEGIN; SELECT 1")
            .execute(&mut conn)
            .await
            .unwrap();
        holders.push(conn);
    }
    let held = Storm::blow(&stack, &db, &vector, CLIENTS).await;
    for mut conn in holders {
        sqlx::raw_sql("COMMIT").execute(&mut conn).await.unwrap();
    }
    let (ok, unavailable) = held.counts();
    assert_eq!((ok, unavailable), (0, CLIENTS), "the pool was held");
    let sent_away = std::fs::read_to_string(stack.dir().join("log/pgbouncer.log"))
        .unwrap()
        .lines()
        .filter(|line| line.contains(db.as_str()) && line.contains("query_wait_timeout"))
        .count();
    assert!(
        sent_away > 0,
        "no client reached PgBouncer's query_wait_timeout"
    );
    assert!(
        held.longest_wait <= query_wait + Duration::from_millis(500),
        "a client waited {:?} in PgBouncer's queue",
        held.longest_wait
    );
    assert!(held.slowest() <= own_bounds, "{:?}", held.slowest());
    eprintln!(
        "storm on a held pool of {POOL}: {CLIENTS} cold clients answered 503, {sent_away} \
         of them sent away by PgBouncer at query_wait_timeout (1 s; the longest wait seen \
         {:.2} s); slowest answer {:.2} s",
        held.longest_wait.as_secs_f64(),
        held.slowest().as_secs_f64()
    );

    // The pool free: more clients than it holds take turns at it (those who overlap
    // wait in PgBouncer's queue).
    let free = Storm::blow(&stack, &db, &vector, CLIENTS).await;
    let (ok, unavailable) = free.counts();
    assert!(ok > 0, "no client was served");
    assert!(free.slowest() <= own_bounds, "{:?}", free.slowest());
    eprintln!(
        "storm on a free pool of {POOL}: {ok} of {CLIENTS} cold clients answered 200, \
         {unavailable} 503; up to {} waiting in PgBouncer at once; slowest answer {:.2} s",
        free.most_waiting,
        free.slowest().as_secs_f64()
    );

    // PostgreSQL never served the role with more than the pool.
    for storm in [&held, &free] {
        assert!(
            storm.most_backends <= POOL as i64,
            "PostgreSQL served the search role with {} backends, over the pool's {POOL}",
            storm.most_backends
        );
    }
    let log = std::fs::read_to_string(stack.dir().join("log/postgresql.log")).unwrap();
    assert!(
        !log.contains("too many clients") && !log.contains("53300"),
        "PostgreSQL refused connections itself"
    );
}

/// A Lambda environment frozen longer than PgBouncer's `server_idle_timeout` and than a
/// load balancer's idle timeout: its kept connection's server side is gone, and the
/// balancer forgot the flow (the next bytes go nowhere). It is checked and replaced
/// before use, within the acquire timeout: the search answers 200, not 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_frozen_past_the_idle_timeouts_is_replaced_before_use() {
    let stack = PrivateStack::shared().await.unwrap();
    let (db, vector) = seeded(&stack, 20).await;
    stack
        .pgbouncer_admin("SET server_idle_timeout = 1")
        .await
        .unwrap();

    let config = config(&stack, Function::Search, &db);
    let proxy = Proxy::start(&config.database_url).await;
    proxy.set_idle_timeout(Some(Duration::from_millis(1_500)));
    let balanced = search_fn(&config.with_url(proxy.url(&config.database_url)));
    let direct = search_fn(&config);
    for searcher in [&balanced, &direct] {
        assert_eq!(search(searcher, &vector, 15.0).await.0, 200);
    }
    let accepted = proxy.connections_accepted();
    tokio::time::sleep(Duration::from_secs(3)).await; // frozen

    for (searcher, case) in [
        (&direct, "past server_idle_timeout"),
        (&balanced, "past both"),
    ] {
        let started = Instant::now();
        let (status, code) = search(searcher, &vector, 15.0).await;
        assert_eq!(status, 200, "{case}: {code:?}");
        eprintln!(
            "thawed, {case}: 200 after {} ms",
            started.elapsed().as_millis()
        );
        assert!(
            started.elapsed() < config.acquire_timeout + Duration::from_secs(1),
            "{case}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        proxy.connections_accepted(),
        accepted + 1,
        "the forgotten connection was replaced by one new connection"
    );
    assert!(proxy.silenced_connections_closed() >= 1, "and closed");
}
