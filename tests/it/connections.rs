//! How storage uses its connections through PgBouncer: a search is one statement and
//! one server assignment, the connection is kept between operations without the pool's
//! check, a kept connection that died is replaced, and the statement timeout holds in
//! both search modes (set by the login role, or by a transaction around the statement).

use std::time::{Duration, Instant};

use kit_support::corpus::{clustered, DIMS};
use kit_support::proxy::Proxy;
use kit_support::search_corpus::{nearest_query, seed_rows};
use kit_support::{pgbouncer_console, TestDb};
use serde_json::Map;
use sqlx::Row;
use storage::{Config, Database, ErrorClass, Function, Namespace, SearchQuery, Upsert, WriteOp};

/// A seeded database (`rows` rows, with statistics) and a query over it.
async fn seeded(rows: usize) -> (TestDb, SearchQuery) {
    let t = TestDb::new().await.unwrap();
    let vectors = clustered(rows, 3, DIMS, 0.5, 91);
    seed_rows(&t, "default", &vectors, &vec![Map::new(); vectors.len()])
        .await
        .unwrap();
    t.analyze().await.unwrap();
    let query = SearchQuery {
        ef_search: 40,
        iterative_scan: true,
        ..nearest_query(&vectors[0], 10)
    };
    (t, query)
}

/// PgBouncer's counters for this test's database: (server assignments, queries).
async fn pgbouncer_counters(t: &TestDb) -> (i64, i64) {
    let mut console = pgbouncer_console().await.unwrap();
    let rows = sqlx::raw_sql("SHOW STATS")
        .fetch_all(&mut console)
        .await
        .unwrap();
    let row = rows
        .iter()
        .find(|row| row.get::<String, _>("database") == t.name)
        .expect("PgBouncer has stats for the test's database");
    // The console answers in text; its counters are NUMERIC.
    let number = |column: &str| -> i64 {
        row.try_get_unchecked::<String, _>(column)
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        number("total_server_assignment_count"),
        number("total_query_count"),
    )
}

#[tokio::test]
async fn a_search_is_one_statement_and_one_server_assignment() {
    let (t, query) = seeded(60).await;
    let search = t.db_as(Function::Search);
    assert!(
        search.searches_run_alone().await.unwrap(),
        "the local stack's role sets statement_timeout and plan_cache_mode (scripts/stack.sh)"
    );
    search.search_nearest(&query).await.unwrap(); // the connection is now kept
    let (assignments, queries) = pgbouncer_counters(&t).await;
    for _ in 0..20 {
        assert_eq!(search.search_nearest(&query).await.unwrap().len(), 10);
    }
    let (assignments_after, queries_after) = pgbouncer_counters(&t).await;
    assert_eq!(
        (assignments_after - assignments, queries_after - queries),
        (20, 20),
        "each search: one statement, and no check of the connection afterwards"
    );

    // Without the role's settings, a transaction sets them: still one server
    // assignment per search, but three messages.
    let mut config = t.config_as(Function::Search);
    config.statement_timeout = Duration::from_millis(2_000); // below the search role's 3 s
    let db = Database::connect_lazy(&config).unwrap();
    assert!(!db.searches_run_alone().await.unwrap());
    db.search_nearest(&query).await.unwrap();
    let (assignments, queries) = pgbouncer_counters(&t).await;
    for _ in 0..10 {
        assert_eq!(db.search_nearest(&query).await.unwrap().len(), 10);
    }
    let (assignments_after, queries_after) = pgbouncer_counters(&t).await;
    assert_eq!(assignments_after - assignments, 10);
    assert!(
        queries_after - queries >= 20,
        "BEGIN with the settings, the statement, COMMIT: {} queries",
        queries_after - queries
    );
    db.close().await;
}

/// The index settings travel inside the statement: a tiny `ef_search` without
/// iterative scans caps the rows an HNSW scan can return, in both modes.
#[tokio::test]
async fn per_request_index_settings_reach_the_scan_in_both_modes() {
    // Enough rows that the planner takes the index (a tiny table is scanned exactly).
    let (t, mut query) = seeded(1_500).await;
    query.iterative_scan = false;
    query.ef_search = 3;
    let search = t.db_as(Function::Search);
    let plan = search.explain_search(&query).await.unwrap().to_string();
    assert!(plan.contains("embeddings_embedding_hnsw"), "{plan}");
    let mut config = t.config_as(Function::Search);
    config.statement_timeout = Duration::from_millis(2_000);
    let in_transaction = Database::connect_lazy(&config).unwrap();
    for (db, alone) in [(&search, true), (&in_transaction, false)] {
        assert_eq!(db.searches_run_alone().await.unwrap(), alone);
        assert_eq!(
            db.search_nearest(&query).await.unwrap().len(),
            3,
            "ef_search = 3 applied (alone: {alone})"
        );
        query.ef_search = 7;
        assert_eq!(db.search_nearest(&query).await.unwrap().len(), 7);
        query.ef_search = 3;
    }
    in_transaction.close().await;
}

/// A seeded database, a handle that reaches it through a proxy, and that handle's kept
/// connection (from one search) cut by the proxy, which listens again.
async fn kept_connection_cut() -> (TestDb, SearchQuery, Proxy, Database) {
    let (t, query) = seeded(60).await;
    let proxy = Proxy::start(&t.app_url).await;
    let db = Database::connect_lazy(&t.config().with_url(proxy.url(&t.app_url))).unwrap();
    db.search_nearest(&query).await.unwrap();
    proxy.down(); // every connection through the proxy is cut
    proxy.up().await;
    (t, query, proxy, db)
}

/// A connection kept between operations that died while idle (PgBouncer restarted, a
/// load balancer dropped it, the Lambda environment was frozen) is checked and
/// replaced before use. A write shows it: storage does not repeat writes by itself
/// (the ingest handler retries whole batches), so it would fail on the dead one.
#[tokio::test]
async fn a_kept_connection_that_died_while_idle_is_replaced() {
    // The database and the proxy stay up (bound) for the whole test.
    let (_t, query, _proxy, db) = kept_connection_cut().await;
    tokio::time::sleep(Duration::from_millis(1_300)).await; // idle past the check's threshold
    let write = WriteOp::Upsert(Upsert {
        namespace: Namespace::default(),
        id: uuid::Uuid::new_v4(),
        embedding: query.vector.clone(),
        content: None,
        metadata: Map::new(),
        version: 1,
        created_at: chrono::Utc::now(),
    });
    let outcome = db
        .write_batch(&[write])
        .await
        .expect("the dead connection is replaced, not used");
    assert_eq!(outcome.upserted, 1);
    db.close().await;
}

/// A search whose kept connection was cut moments ago (too recently to be checked)
/// loses it mid-request and runs once more on a new connection: the caller sees an
/// answer, not an error.
#[tokio::test]
async fn a_search_that_loses_its_connection_runs_again_on_a_new_one() {
    let (t, query, proxy, db) = kept_connection_cut().await;
    assert_eq!(db.search_nearest(&query).await.unwrap().len(), 10);
    assert!(db
        .get_item(&query.namespace, uuid::Uuid::nil(), false)
        .await
        .unwrap()
        .is_none());
    db.health().await.unwrap();

    // With the path down for good, the second attempt fails too, as a transient error.
    proxy.down();
    let mut config = t.config().with_url(proxy.url(&t.app_url));
    config.acquire_timeout = Duration::from_millis(400);
    let cut = Database::connect_lazy(&config).unwrap();
    let error = cut.search_nearest(&query).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    db.close().await;
}

/// A search that failed is not kept with its transaction still open: its connection
/// goes back to the pool, which rolls back, so PgBouncer's server connection is free.
#[tokio::test]
async fn a_failed_search_leaves_no_transaction_open() {
    let (t, query) = seeded(60).await;
    let admin = t.admin_pool().await.unwrap();
    let mut config = t.config_as(Function::Search);
    config.statement_timeout = Duration::from_millis(200); // the transaction path
    let db = Database::connect_lazy(&config).unwrap();
    assert!(!db.searches_run_alone().await.unwrap());

    let mut locker = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE embeddings IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let error = db.search_nearest(&query).await.unwrap_err();
    assert_eq!(error.sqlstate().as_deref(), Some("57014"), "{error}");
    locker.rollback().await.unwrap();

    let open = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'",
        )
        .bind(&t.name)
        .fetch_one(&admin)
        .await
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while open().await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        open().await,
        0,
        "a server connection was left in the failed transaction"
    );
    assert_eq!(db.search_nearest(&query).await.unwrap().len(), 10);
    db.close().await;
}

/// A search blocked behind a lock is cancelled by the server at the statement timeout:
/// the handle's own (set by the transaction around the statement) or the login role's
/// (when the statement runs alone).
#[tokio::test]
async fn a_blocked_search_is_cancelled_at_the_statement_timeout_in_both_modes() {
    let (t, query) = seeded(60).await;
    let admin = t.admin_pool().await.unwrap();
    let mut locker = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE embeddings IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let role_timeout: Duration = role_statement_timeout(&t.config_as(Function::Search)).await;
    let search = t.db_as(Function::Search);

    let mut config = t.config_as(Function::Search);
    config.statement_timeout = Duration::from_millis(300);
    let in_transaction = Database::connect_lazy(&config).unwrap();
    for (db, limit, alone) in [
        (&in_transaction, Duration::from_millis(300), false),
        (&search, role_timeout, true),
    ] {
        assert_eq!(db.searches_run_alone().await.unwrap(), alone);
        let started = Instant::now();
        let outcome =
            tokio::time::timeout(limit + Duration::from_secs(10), db.search_nearest(&query))
                .await
                .unwrap_or_else(|_| panic!("no timeout cancelled the search (alone: {alone})"));
        let error = outcome.unwrap_err();
        assert_eq!(error.sqlstate().as_deref(), Some("57014"), "{error}");
        assert!(
            started.elapsed() >= limit,
            "cancelled after {:?}, before {limit:?}",
            started.elapsed()
        );
    }
    locker.rollback().await.unwrap();
    in_transaction.close().await;
}

/// The login role's own `statement_timeout`, read on a fresh connection.
async fn role_statement_timeout(config: &Config) -> Duration {
    let mut conn: sqlx::PgConnection = sqlx::Connection::connect(&config.database_url)
        .await
        .unwrap();
    let ms: i64 = sqlx::query_scalar(
        "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(ms > 0, "the local stack's role sets a statement timeout");
    Duration::from_millis(ms as u64)
}

/// A handle that outlives its runtime (dropped after it) closes its kept connection
/// without needing the runtime.
#[test]
fn a_handle_dropped_after_its_runtime_closes_quietly() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (t, db) = runtime.block_on(async {
        let (t, query) = seeded(20).await;
        let db = Database::connect_lazy(&t.config()).unwrap();
        db.search_nearest(&query).await.unwrap(); // keeps a connection
        (t, db)
    });
    drop(runtime);
    drop(db); // handing the connection back to the pool would need the runtime
    drop(t);
}

/// The local stack keeps PostgreSQL's production durability: an acknowledged commit
/// survives a crash, so the crash and fault tests mean what they say.
#[tokio::test]
async fn the_local_stack_has_production_durability() {
    let t = TestDb::new().await.unwrap();
    let admin = t.admin_pool().await.unwrap();
    for (setting, expected) in [
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
    ] {
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(setting)
            .fetch_one(&admin)
            .await
            .unwrap();
        assert_eq!(value, expected, "{setting} on the local stack");
    }
}
