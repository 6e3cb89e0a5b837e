//! Per-request settings stay transaction-local through PgBouncer: the next client of the
//! same pooled server connection sees the server's defaults.

use kit_support::corpus::{clustered, DIMS};
use kit_support::search_corpus::seed_rows;
use kit_support::{TestDb, TestStack};
use search::filter::{parse_filter, FilterLimits};
use serde_json::{json, Map, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use storage::{Include, Namespace, SearchQuery, Vector};

/// What a client that lands on a pooled server connection sees.
#[derive(Debug, PartialEq)]
struct Reading {
    pid: i32,
    ef_search: Option<String>,
    iterative_scan: Option<String>,
    max_scan_tuples: Option<String>,
    statement_timeout: String,
    plan_cache_mode: String,
}

async fn read_settings(app_url: &str) -> Reading {
    let mut conn = PgConnection::connect(app_url).await.unwrap();
    let row = sqlx::query(
        "SELECT pg_backend_pid(),
                current_setting('hnsw.ef_search', true),
                current_setting('hnsw.iterative_scan', true),
                current_setting('hnsw.max_scan_tuples', true),
                current_setting('statement_timeout'),
                current_setting('plan_cache_mode')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    Reading {
        pid: row.get(0),
        ef_search: row.get(1),
        iterative_scan: row.get(2),
        max_scan_tuples: row.get(3),
        statement_timeout: row.get(4),
        plan_cache_mode: row.get(5),
    }
}

/// The backends of `t`'s database logged in as `DATABASE_URL`'s role (the probes').
async fn backends(t: &TestDb) -> Vec<i32> {
    let app_user = t
        .app_url
        .parse::<PgConnectOptions>()
        .unwrap()
        .get_username()
        .to_owned();
    let admin = t.admin_pool().await.unwrap();
    let pids = sqlx::query_scalar::<_, i32>(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND usename = $2 ORDER BY pid",
    )
    .bind(&t.name)
    .bind(&app_user)
    .fetch_all(&admin)
    .await
    .unwrap();
    admin.close().await;
    pids
}

/// A test database whose clients take turns, so PgBouncer keeps one server connection for
/// it and hands it to each of them; returns what a client sees there by default.
async fn one_server_connection() -> (TestStack, Reading) {
    let t = TestStack::with_config(|mut c| {
        c.max_connections = 1;
        c
    })
    .await
    .unwrap();
    let vectors = clustered(50, 2, DIMS, 0.5, 81);
    let metadata: Vec<Map<String, Value>> = (0..50)
        .map(|i| json!({"i": i}).as_object().unwrap().clone())
        .collect();
    seed_rows(&t, "default", &vectors, &metadata).await.unwrap();
    // Clients take turns, so PgBouncer keeps one server connection for this database and
    // hands it to each of them: load pgvector in it, then read the server defaults.
    let mut conn = PgConnection::connect(&t.app_url).await.unwrap();
    sqlx::query("SELECT '[1,2,3]'::vector")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let baseline = read_settings(&t.app_url).await;
    assert_eq!(
        backends(&t).await,
        vec![baseline.pid],
        "one server connection"
    );
    assert_eq!(
        (
            baseline.ef_search.as_deref(),
            baseline.iterative_scan.as_deref()
        ),
        (Some("40"), Some("off")),
        "{baseline:?}"
    );

    (t, baseline)
}

#[tokio::test]
async fn per_request_settings_never_leak_to_the_next_client_through_pgbouncer() {
    let (t, baseline) = one_server_connection().await;
    let vectors = clustered(50, 2, DIMS, 0.5, 81);
    // Searches with unusual settings: through storage, and through the handler.
    let query = SearchQuery {
        namespace: Namespace::default(),
        vector: Vector::from(vectors[0].clone()),
        k: 5,
        filter: parse_filter(&json!({"i": {"$lt": 10}}), &FilterLimits::default()).unwrap(),
        max_distance: None,
        include: Include::default(),
        ef_search: 777,
        iterative_scan: true,
        max_scan_tuples: 12_345,
        timeout: Some(std::time::Duration::from_millis(4321)),
    };
    assert_eq!(t.db.search_nearest(&query).await.unwrap().len(), 5);
    let state = t.search(); // DB_MAX_CONNECTIONS defaults to 1
    let reply = state
        .post_search(
            &json!({"vector": vectors[0], "k": 5, "ef_search": 333, "filter": {"i": {"$gte": 3}}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        backends(&t).await,
        vec![baseline.pid],
        "still one server connection"
    );

    // Every later client, on that same server connection, sees the defaults.
    for _ in 0..5 {
        let reading = read_settings(&t.app_url).await;
        assert_eq!(reading, baseline, "a setting leaked to the next client");
    }
    // So does the storage pool's own client, the one that ran the search.
    let row = sqlx::query(
        "SELECT pg_backend_pid(), current_setting('hnsw.ef_search'), current_setting('statement_timeout')",
    )
    .fetch_one(&t.db.pool())
    .await
    .unwrap();
    assert_eq!(
        (
            row.get::<i32, _>(0),
            row.get::<String, _>(1),
            row.get::<String, _>(2)
        ),
        (
            baseline.pid,
            "40".to_string(),
            baseline.statement_timeout.clone()
        )
    );
}

/// The probe sees a leak when there is one: a session-level SET does leak through
/// transaction pooling (which is why storage never uses one).
#[tokio::test]
async fn the_probe_sees_a_session_level_set_leak() {
    let (t, baseline) = one_server_connection().await;
    let mut conn = PgConnection::connect(&t.app_url).await.unwrap();
    sqlx::query("SET hnsw.ef_search = 555")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let leaked = read_settings(&t.app_url).await;
    assert_eq!(
        (leaked.pid, leaked.ef_search.as_deref()),
        (baseline.pid, Some("555")),
        "the control leak was not observed: the probe would miss real leaks"
    );
    let mut conn = PgConnection::connect(&t.app_url).await.unwrap();
    sqlx::query("RESET ALL").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(read_settings(&t.app_url).await, baseline);
}
