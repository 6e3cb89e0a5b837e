//! Deadlines end to end: each function against a path that goes silent (the fault proxy
//! in front of the real PgBouncer accepts bytes and answers nothing, keeping every
//! socket open), before connecting and after, answers within its bounds: search a
//! `503 database_unavailable` with `Retry-After` within `DB_ACQUIRE_TIMEOUT_MS +
//! DB_STATEMENT_TIMEOUT_MS + 1 s`, ingest every record in `batchItemFailures` before its
//! deadline, purge a clean stop. A step cut mid-protocol leaves its connection closed,
//! never reused, so the function recovers as soon as the path does. And a purge batch
//! that could not take the advisory lock makes the run say `complete: false`.

use std::future::Future;
use std::time::Duration;

use kit_support::corpus::{clustered, DIMS};
use kit_support::events::{upsert_body, STANDARD_QUEUE};
use kit_support::proxy::{Proxy, Trip};
use kit_support::search_corpus::write_rows;
use kit_support::{IngestFn, PurgeFn, Reply, SearchFn, TestStack};
use purge::{Settings, Stop};
use serde_json::{json, Map, Value};
use storage::{Config, Function};
use tokio::time::Instant;
use uuid::Uuid;

/// The functions' own bounds in these tests: short, so that a silent path shows quickly.
const ACQUIRE: Duration = Duration::from_millis(600);
const STATEMENT: Duration = Duration::from_millis(1_000);

/// What a search on a silent path promises: an answer within this.
fn search_bound() -> Duration {
    ACQUIRE + STATEMENT + Duration::from_secs(1)
}

/// Fails the test instead of hanging when a bound is missing.
async fn within<T>(limit: Duration, what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {limit:?}"))
}

/// `function`'s configuration on this test's database, through `proxy`, with `acquire`
/// and `statement` as its own timeouts.
fn through(
    t: &TestStack,
    proxy: &Proxy,
    function: Function,
    acquire: Duration,
    statement: Duration,
) -> Config {
    let config = t.config_as(function);
    let mut config = config.with_url(proxy.url(&config.database_url));
    config.acquire_timeout = acquire;
    config.statement_timeout = statement;
    config
}

/// `n` rows in namespace `default`; the first vector, to search for.
async fn seed(t: &TestStack, n: usize) -> Vec<f32> {
    let vectors = clustered(n, 2, DIMS, 0.4, 5);
    write_rows(&t.db, "default", &vectors, &vec![Map::new(); n])
        .await
        .unwrap();
    vectors[0].clone()
}

fn search_fn(config: &Config) -> SearchFn {
    SearchFn::new(config, search::Limits::default(), search::Auth::none())
}

fn query(vector: &[f32]) -> Value {
    json!({"namespace": "default", "vector": vector, "k": 5})
}

/// A search must have answered `503 database_unavailable` with `Retry-After`, within
/// `bound` of `started`.
fn assert_unavailable_in_time(reply: Reply, started: Instant, bound: Duration, case: &str) {
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 503, "{case}: {}", reply.body);
    assert_eq!(reply.code(), Some("database_unavailable"), "{case}");
    assert!(
        reply.headers.contains_key("retry-after"),
        "{case}: a 503 carries Retry-After"
    );
    assert!(
        elapsed <= bound,
        "{case}: answered after {elapsed:?}, over the bound {bound:?}"
    );
    eprintln!("{case}: 503 after {} ms", elapsed.as_millis());
}

#[tokio::test]
async fn a_search_on_a_path_silent_before_connecting_answers_503_in_time() {
    within(Duration::from_secs(60), "the test", async {
        let t = TestStack::new().await.unwrap();
        let vector = seed(&t, 20).await;
        let proxy = Proxy::start(&t.app_url).await;
        proxy.go_silent();
        let search = search_fn(&through(&t, &proxy, Function::Search, ACQUIRE, STATEMENT));

        let started = Instant::now();
        let reply = search.post_search_within(&query(&vector), 30.0).await;
        assert_unavailable_in_time(reply, started, search_bound(), "cold, silent");

        // The invocation's deadline bounds the operation when it comes first: with
        // long own timeouts, the answer comes before the deadline (minus the reserve).
        let long = Duration::from_secs(20);
        let patient = search_fn(&through(&t, &proxy, Function::Search, long, long));
        let started = Instant::now();
        let reply = patient.post_search_within(&query(&vector), 1.5).await;
        let case = "cold, silent, the deadline first";
        assert_unavailable_in_time(reply, started, Duration::from_millis(1_500), case);
    })
    .await;
}

#[tokio::test]
async fn a_search_on_a_path_silent_after_connecting_answers_503_in_time_and_recovers() {
    within(Duration::from_secs(90), "the test", async {
        let t = TestStack::new().await.unwrap();
        let vector = seed(&t, 20).await;
        // Both ways the kept connection meets the silence: used at once (its statement
        // gets no answer), or after sitting idle (its check gets none).
        for idle_first in [false, true] {
            let case = if idle_first {
                "kept connection idle, then silent"
            } else {
                "kept connection, silent at once"
            };
            let proxy = Proxy::start(&t.app_url).await;
            let search = search_fn(&through(&t, &proxy, Function::Search, ACQUIRE, STATEMENT));
            let reply = search.post_search_within(&query(&vector), 30.0).await;
            assert_eq!(reply.status, 200, "{case}: {}", reply.body);
            if idle_first {
                tokio::time::sleep(Duration::from_millis(1_200)).await;
            }
            proxy.go_silent();
            let started = Instant::now();
            let reply = search.post_search_within(&query(&vector), 30.0).await;
            assert_unavailable_in_time(reply, started, search_bound(), case);

            // The abandoned connection was closed, not kept nor handed back to the pool
            // (whose release check would wait on it for good, holding its only slot).
            let deadline = Instant::now() + Duration::from_secs(5);
            while proxy.silenced_connections_closed() == 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                proxy.silenced_connections_closed() >= 1,
                "{case}: the connection cut mid-protocol was not closed"
            );

            // The path answers again: the next search gets a new connection at once.
            proxy.speak();
            let accepted = proxy.connections_accepted();
            let started = Instant::now();
            let reply = search.post_search_within(&query(&vector), 30.0).await;
            assert_eq!(reply.status, 200, "{case}, the path back: {}", reply.body);
            assert!(
                proxy.connections_accepted() > accepted,
                "{case}: a new connection"
            );
            eprintln!(
                "{case}: recovered in {} ms once the path answered",
                started.elapsed().as_millis()
            );
            search.state.db.close().await;
        }
    })
    .await;
}

/// `n` valid upserts for new ids in namespace `default`.
fn upserts(n: usize) -> Vec<String> {
    clustered(n, 2, DIMS, 0.4, 9)
        .iter()
        .map(|v| upsert_body(Uuid::new_v4(), "default", v, json!({}), 1))
        .collect()
}

#[tokio::test]
async fn an_ingest_batch_on_a_silent_path_is_reported_in_full_before_its_deadline() {
    within(Duration::from_secs(120), "the test", async {
        let t = TestStack::new().await.unwrap();
        let deadline_s = 4.0;
        let all: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        let mut stored = 0;
        // Silent before connecting; silent in the middle of the batch's transaction (the
        // upsert swallowed after BEGIN went through), with the steps' own bounds shorter
        // than the deadline; and the same with own bounds far longer: the deadline cuts.
        let long = Duration::from_secs(30);
        let mid_transaction = Trip::SilenceBefore(b"INSERT INTO embeddings");
        for (case, trip, acquire, statement) in [
            ("silent before connecting", None, ACQUIRE, STATEMENT),
            (
                "silent mid-transaction",
                Some(mid_transaction.clone()),
                ACQUIRE,
                STATEMENT,
            ),
            (
                "silent mid-transaction, long own timeouts",
                Some(mid_transaction),
                long,
                long,
            ),
        ] {
            let proxy = Proxy::start(&t.app_url).await;
            let config = through(&t, &proxy, Function::Ingest, acquire, statement);
            let ingest = IngestFn::new(&config, ingest::Limits::default());
            match trip {
                None => proxy.go_silent(),
                Some(trip) => {
                    // Connected first: the dimensions are read and the connection kept.
                    ingest.state.db.dimensions().await.unwrap();
                    proxy.arm(trip);
                }
            }
            let started = Instant::now();
            let failed = ingest
                .deliver_to(STANDARD_QUEUE, &upserts(20), deadline_s)
                .await;
            let took = started.elapsed();
            assert_eq!(failed, all, "{case}: every record is reported");
            assert!(
                took < Duration::from_secs_f64(deadline_s),
                "{case}: answered after {took:?}, past the {deadline_s} s deadline"
            );
            assert_eq!(
                t.count_rows().await.unwrap(),
                stored,
                "{case}: nothing committed"
            );
            eprintln!(
                "{case}: all 20 records reported after {} ms",
                took.as_millis()
            );

            // Once the path answers, the redelivered batch is stored.
            proxy.speak();
            let failed = ingest.deliver_to(STANDARD_QUEUE, &upserts(20), 30.0).await;
            assert!(failed.is_empty(), "{case}, the path back: {failed:?}");
            stored += 20;
            assert_eq!(t.count_rows().await.unwrap(), stored, "{case}");
            ingest.state.db.close().await;
        }
    })
    .await;
}

/// Rows of namespace `default`, 90 days old: past the default retention.
async fn seed_expired(t: &TestStack, n: usize) {
    seed(t, n).await;
    let admin = t.admin_pool().await.unwrap();
    sqlx::query("UPDATE embeddings SET created_at = now() - interval '90 days'")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
}

fn purge_fn(config: &Config) -> PurgeFn {
    PurgeFn::new(Settings {
        safety_margin: Duration::from_millis(200),
        ..Settings::new(config.clone())
    })
}

#[tokio::test]
async fn a_purge_on_a_silent_path_stops_cleanly_in_time() {
    within(Duration::from_secs(90), "the test", async {
        let t = TestStack::new().await.unwrap();
        seed_expired(&t, 30).await;

        // Silent before connecting, own bounds first: a clean, bounded failure.
        let proxy = Proxy::start(&t.app_url).await;
        proxy.go_silent();
        let purge = purge_fn(&through(&t, &proxy, Function::Purge, ACQUIRE, STATEMENT));
        let started = Instant::now();
        let error = purge.run(json!({}), 30.0).await.unwrap_err();
        let unavailable = lambda_runtime::Diagnostic::from(error);
        assert_eq!(unavailable.error_type, "DatabaseUnavailable");
        assert!(
            started.elapsed() <= ACQUIRE + STATEMENT + Duration::from_secs(1),
            "failed after {:?}",
            started.elapsed()
        );

        // Silent once the first batch starts, own bounds longer than the invocation: the
        // batch is cut by the deadline, and the run says so instead of being killed.
        let proxy = Proxy::start(&t.app_url).await;
        let long = Duration::from_secs(30);
        let purge = purge_fn(&through(&t, &proxy, Function::Purge, long, long));
        proxy.arm(Trip::SilenceBefore(b"pg_try_advisory_xact_lock"));
        let started = Instant::now();
        let report = purge
            .run(json!({}), 3.0)
            .await
            .expect("a run cut by its deadline reports");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(proxy.trips(), 1, "the path went silent mid-run");
        assert!(!report.complete, "{report:?}");
        assert_eq!(report.stopped, Some(Stop::Deadline), "{report:?}");
        assert_eq!(report.deleted, 0, "{report:?}");
        eprintln!(
            "purge, silent mid-run: stopped after {} ms with complete: false",
            started.elapsed().as_millis()
        );
    })
    .await;
}

/// A batch that could not take the purge's advisory lock (another batch holds it: a
/// manual run racing an expired lease) did nothing, and says nothing about what is
/// left: the run reports `complete: false`, and the next one finishes.
#[tokio::test]
async fn a_purge_batch_that_cannot_take_the_advisory_lock_leaves_the_run_incomplete() {
    let t = TestStack::new().await.unwrap();
    seed_expired(&t, 30).await;
    let purge = t.purge();
    let admin = t.admin_pool().await.unwrap();
    let mut holder = admin.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('pgvector-lambda-kit:purge'))")
        .execute(&mut *holder)
        .await
        .unwrap();

    let report = purge.scheduled(60.0).await.unwrap();
    assert!(!report.complete, "{report:?}");
    assert_eq!(report.stopped, Some(Stop::LockBusy), "{report:?}");
    assert_eq!(report.deleted, 0, "{report:?}");
    let shown = serde_json::to_value(&report).unwrap();
    assert_eq!(shown["stopped"], "lock_busy", "{shown}");

    holder.rollback().await.unwrap();
    let report = purge.scheduled(60.0).await.unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(report.stopped, None, "{report:?}");
    assert_eq!(report.deleted, 30, "{report:?}");
    admin.close().await;
}
