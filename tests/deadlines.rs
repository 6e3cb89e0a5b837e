//! Deadlines end to end: each function against a path that goes silent (the fault proxy
//! in front of the real PgBouncer accepts bytes and answers nothing, keeping every
//! socket open), before connecting and after, answers within its bounds: search a
//! `503 database_unavailable` with `Retry-After` within `DB_ACQUIRE_TIMEOUT_MS +
//! DB_STATEMENT_TIMEOUT_MS + 1 s`, ingest every record in `batchItemFailures` before its
//! deadline, purge a clean stop. A step cut mid-protocol leaves its connection closed,
//! never reused, so the function recovers as soon as the path does. And a purge batch
//! that could not take the advisory lock makes the run say `complete: false`.

mod fault_support;

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::Utc;
use fault_support::{
    search, search_state, seed, sqs_event, stored, upserts, with_timeouts, within, Answer,
};
use ingest::{Ingest, Limits};
use kit_support::events::context_with_deadline;
use kit_support::proxy::{Proxy, Trip};
use kit_support::TestDb;
use lambda_runtime::LambdaEvent;
use purge::{Purge, PurgeRequest, Settings, Stop};
use storage::{Config, Function};
use tokio::time::Instant;
use uuid::Uuid;

/// The functions' own bounds in these tests: short, so that a silent path shows quickly.
const ACQUIRE: Duration = Duration::from_millis(600);
const STATEMENT: Duration = Duration::from_millis(1_000);

/// What the issue promises a search on a silent path: an answer within this.
fn search_bound() -> Duration {
    ACQUIRE + STATEMENT + Duration::from_secs(1)
}

/// `function`'s configuration on this test's database, through `proxy`, with `acquire`
/// and `statement` as its own timeouts.
fn through(
    t: &TestDb,
    proxy: &Proxy,
    function: Function,
    acquire: Duration,
    statement: Duration,
) -> Config {
    let config = t.config_as(function);
    let url = proxy.url(&config.database_url);
    with_timeouts(config.with_url(url), acquire, statement)
}

/// A search must have answered `503 database_unavailable` with `Retry-After`, within
/// `bound` of `started`.
fn assert_unavailable_in_time(answer: Answer, started: Instant, bound: Duration, case: &str) {
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 503, "{case}: {:?}", answer.body);
    assert_eq!(
        answer.code(),
        Some("database_unavailable"),
        "{case}: {:?}",
        answer.body
    );
    assert!(
        answer.retry_after.is_some(),
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
        let t = TestDb::new().await.unwrap();
        let vector = seed(&t.db, 20, Utc::now()).await;
        let proxy = Proxy::start(&t.app_url).await;
        proxy.go_silent();
        let state = search_state(&through(&t, &proxy, Function::Search, ACQUIRE, STATEMENT));

        let started = Instant::now();
        let answer = search(&state, &vector, 30.0).await;
        assert_unavailable_in_time(answer, started, search_bound(), "cold, silent");

        // The invocation's deadline bounds the operation when it comes first: with
        // long own timeouts, the answer comes before the deadline (minus the reserve).
        let patient = search_state(&through(
            &t,
            &proxy,
            Function::Search,
            Duration::from_secs(20),
            Duration::from_secs(20),
        ));
        let started = Instant::now();
        let answer = search(&patient, &vector, 1.5).await;
        assert_unavailable_in_time(
            answer,
            started,
            Duration::from_millis(1_500),
            "cold, silent, the deadline first",
        );
    })
    .await;
}

#[tokio::test]
async fn a_search_on_a_path_silent_after_connecting_answers_503_in_time_and_recovers() {
    within(Duration::from_secs(90), "the test", async {
        let t = TestDb::new().await.unwrap();
        let vector = seed(&t.db, 20, Utc::now()).await;
        // Both ways the kept connection meets the silence: used at once (its statement
        // gets no answer), or after sitting idle (its check gets none).
        for idle_first in [false, true] {
            let case = if idle_first {
                "kept connection idle, then silent"
            } else {
                "kept connection, silent at once"
            };
            let proxy = Proxy::start(&t.app_url).await;
            let state = search_state(&through(&t, &proxy, Function::Search, ACQUIRE, STATEMENT));
            let answer = search(&state, &vector, 30.0).await;
            assert_eq!(answer.status, 200, "{case}: {:?}", answer.body);
            if idle_first {
                tokio::time::sleep(Duration::from_millis(1_200)).await;
            }
            proxy.go_silent();
            let started = Instant::now();
            let answer = search(&state, &vector, 30.0).await;
            assert_unavailable_in_time(answer, started, search_bound(), case);

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
            let answer = search(&state, &vector, 30.0).await;
            assert_eq!(
                answer.status, 200,
                "{case}: after the path came back: {:?}",
                answer.body
            );
            assert!(
                proxy.connections_accepted() > accepted,
                "{case}: a new connection"
            );
            eprintln!(
                "{case}: recovered in {} ms once the path answered",
                started.elapsed().as_millis()
            );
            state.db.close().await;
        }
    })
    .await;
}

/// An SQS event of `n` valid upserts (message ids `m0`…), and its ids.
fn ingest_event(n: usize) -> (SqsEvent, Vec<Uuid>) {
    let (ids, bodies) = upserts(n, 9);
    (sqs_event(&bodies), ids)
}

/// Runs the ingest handler on `event` with a deadline `deadline_s` away; returns the
/// failed message ids and how long it took.
async fn ingest(state: &Ingest, event: SqsEvent, deadline_s: f64) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let response = ingest::handler(
        state,
        LambdaEvent::new(event, context_with_deadline(deadline_s)),
    )
    .await
    .expect("the handler never fails for database trouble");
    let failed = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    (failed, started.elapsed())
}

async fn stored_in(t: &TestDb, ids: &[Uuid]) -> i64 {
    let admin = t.admin_pool().await.unwrap();
    let mut conn = admin.acquire().await.unwrap();
    let n = stored(&mut conn, ids).await;
    drop(conn);
    admin.close().await;
    n
}

#[tokio::test]
async fn an_ingest_batch_on_a_silent_path_is_reported_in_full_before_its_deadline() {
    within(Duration::from_secs(120), "the test", async {
        let t = TestDb::new().await.unwrap();
        let deadline_s = 4.0;
        // Silent before connecting; silent in the middle of the batch's transaction (the
        // upsert swallowed after BEGIN went through), with the steps' own bounds shorter
        // than the deadline; and the same with own bounds far longer: the deadline cuts.
        for (case, trip, acquire, statement) in [
            ("silent before connecting", None, ACQUIRE, STATEMENT),
            (
                "silent mid-transaction",
                Some(Trip::SilenceBefore(b"INSERT INTO embeddings")),
                ACQUIRE,
                STATEMENT,
            ),
            (
                "silent mid-transaction, long own timeouts",
                Some(Trip::SilenceBefore(b"INSERT INTO embeddings")),
                Duration::from_secs(30),
                Duration::from_secs(30),
            ),
        ] {
            let proxy = Proxy::start(&t.app_url).await;
            let state = Ingest::new(
                &through(&t, &proxy, Function::Ingest, acquire, statement),
                Limits::default(),
            )
            .unwrap();
            match trip {
                None => proxy.go_silent(),
                Some(trip) => {
                    // Connected first: the dimensions are read and the connection kept.
                    state.db.dimensions().await.unwrap();
                    proxy.arm(trip);
                }
            }
            let (event, ids) = ingest_event(20);
            let (failed, took) = ingest(&state, event, deadline_s).await;
            let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
            assert_eq!(failed, expected, "{case}: every record is reported");
            assert!(
                took < Duration::from_secs_f64(deadline_s),
                "{case}: answered after {took:?}, past the {deadline_s} s deadline"
            );
            assert_eq!(
                stored_in(&t, &ids).await,
                0,
                "{case}: nothing was committed"
            );
            eprintln!(
                "{case}: all 20 records reported after {} ms",
                took.as_millis()
            );

            // Once the path answers, the redelivered batch is stored.
            proxy.speak();
            let (event, ids) = ingest_event(20);
            let (failed, _) = ingest(&state, event, 30.0).await;
            assert!(
                failed.is_empty(),
                "{case}: after the path came back: {failed:?}"
            );
            assert_eq!(stored_in(&t, &ids).await, 20, "{case}");
            state.db.close().await;
        }
    })
    .await;
}

fn purge_state(config: &Config) -> Purge {
    Purge::new(
        config,
        Settings {
            safety_margin: Duration::from_millis(200),
            ..Settings::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn a_purge_on_a_silent_path_stops_cleanly_in_time() {
    within(Duration::from_secs(90), "the test", async {
        let t = TestDb::new().await.unwrap();
        seed(&t.db, 30, Utc::now() - chrono::Duration::days(90)).await;

        // Silent before connecting, own bounds first: a clean, bounded failure.
        let proxy = Proxy::start(&t.app_url).await;
        proxy.go_silent();
        let state = purge_state(&through(&t, &proxy, Function::Purge, ACQUIRE, STATEMENT));
        let started = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(30);
        let error = purge::run(&state, &PurgeRequest::default(), Utc::now(), deadline)
            .await
            .unwrap_err();
        assert!(error.is_unavailable(), "{error}");
        assert!(
            started.elapsed() <= ACQUIRE + STATEMENT + Duration::from_secs(1),
            "failed after {:?}",
            started.elapsed()
        );

        // Silent once the first batch starts, own bounds longer than the invocation: the
        // batch is cut by the deadline, and the run says so instead of being killed.
        let proxy = Proxy::start(&t.app_url).await;
        let config = through(
            &t,
            &proxy,
            Function::Purge,
            Duration::from_secs(30),
            Duration::from_secs(30),
        );
        let state = purge_state(&config);
        proxy.arm(Trip::SilenceBefore(b"pg_try_advisory_xact_lock"));
        let started = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(3);
        let report = purge::run(&state, &PurgeRequest::default(), Utc::now(), deadline)
            .await
            .expect("a run cut by its deadline reports");
        assert!(Instant::now() < deadline, "{:?}", started.elapsed());
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
    let t = TestDb::new().await.unwrap();
    seed(&t.db, 30, Utc::now() - chrono::Duration::days(90)).await;
    let state = Purge::new(&t.config_as(Function::Purge), Settings::default()).unwrap();
    let admin = t.admin_pool().await.unwrap();
    let mut holder = admin.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('pgvector-lambda-kit:purge'))")
        .execute(&mut *holder)
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let report = purge::run(&state, &PurgeRequest::default(), Utc::now(), deadline)
        .await
        .unwrap();
    assert!(!report.complete, "{report:?}");
    assert_eq!(report.stopped, Some(Stop::LockBusy), "{report:?}");
    assert_eq!(report.deleted, 0, "{report:?}");
    let shown = serde_json::to_value(&report).unwrap();
    assert_eq!(shown["stopped"], "lock_busy", "{shown}");

    holder.rollback().await.unwrap();
    let report = purge::run(&state, &PurgeRequest::default(), Utc::now(), deadline)
        .await
        .unwrap();
    assert!(report.complete, "{report:?}");
    assert_eq!(report.stopped, None, "{report:?}");
    assert_eq!(report.deleted, 30, "{report:?}");
    admin.close().await;
}
