//! The purge function against the real stack: retention windows, batches, the lease.

use chrono::{Duration, Utc};
use kit_tests::corpus::{clustered, DIMS};
use kit_tests::events::context_with_deadline;
use kit_tests::TestDb;
use lambda_runtime::LambdaEvent;
use purge::{handler, run, Purge, PurgeRequest, Settings};
use serde_json::json;
use storage::{Namespace, Upsert, Vector, WriteOp};
use uuid::Uuid;

/// Seeds rows in `namespace` aged `ages_days` days (one row per entry).
async fn seed_aged(t: &TestDb, namespace: &str, ages_days: &[i64]) {
    let vectors = clustered(ages_days.len(), 2, DIMS, 0.3, ages_days.len() as u64);
    let now = Utc::now();
    let ops: Vec<WriteOp> = ages_days
        .iter()
        .zip(vectors)
        .map(|(age, v)| {
            WriteOp::Upsert(Upsert {
                namespace: Namespace::parse(namespace).unwrap(),
                id: Uuid::new_v4(),
                embedding: Vector::from(v),
                content: None,
                metadata: json!({"age": age}).as_object().unwrap().clone(),
                version: 0,
                created_at: now - Duration::days(*age) - Duration::minutes(1),
            })
        })
        .collect();
    for chunk in ops.chunks(1000) {
        t.db.write_batch(chunk).await.unwrap();
    }
}

async fn ages(t: &TestDb, namespace: &str) -> Vec<i64> {
    let pool = t.admin_pool().await.unwrap();
    sqlx::query_scalar(
        "SELECT (metadata->>'age')::int8 FROM embeddings WHERE namespace = $1 ORDER BY 1",
    )
    .bind(namespace)
    .fetch_all(&pool)
    .await
    .unwrap()
}

fn purge_state(t: &TestDb, settings: Settings) -> Purge {
    Purge::new(&t.config(), settings).unwrap()
}

#[tokio::test]
async fn a_scheduled_run_deletes_exactly_the_rows_past_retention_per_namespace() {
    let t = TestDb::new().await.unwrap();
    seed_aged(&t, "acme", &[1, 29, 31, 45, 400]).await;
    seed_aged(&t, "shortlived", &[1, 6, 8, 29, 31]).await;
    t.db.set_retention(&Namespace::parse("shortlived").unwrap(), 7)
        .await
        .unwrap();
    let state = purge_state(
        &t,
        Settings {
            batch_size: 2,
            ..Settings::default()
        },
    );

    let event: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/example-eventbridge-schedule.json")).unwrap();
    let report = handler(&state, LambdaEvent::new(event, context_with_deadline(60.0)))
        .await
        .unwrap();
    assert!(report.complete && !report.skipped);
    assert_eq!(report.deleted, 6);
    assert_eq!(report.per_namespace.get("acme"), Some(&3));
    assert_eq!(report.per_namespace.get("shortlived"), Some(&3));
    assert!(report.batches >= 3, "batches of 2: {}", report.batches);
    assert_eq!(ages(&t, "acme").await, [1, 29]);
    assert_eq!(ages(&t, "shortlived").await, [1, 6]);
}

#[tokio::test]
async fn a_dry_run_counts_and_deletes_nothing() {
    let t = TestDb::new().await.unwrap();
    seed_aged(&t, "acme", &[1, 10, 40]).await;
    let state = purge_state(&t, Settings::default());
    let request = PurgeRequest {
        dry_run: true,
        namespace: None,
        older_than_days: Some(7),
    };
    let report = run(&state, &request, Utc::now(), deadline(60))
        .await
        .unwrap();
    assert_eq!(
        (report.deleted, report.per_namespace.get("acme").copied()),
        (0, Some(2))
    );
    assert!(report.dry_run);
    assert_eq!(ages(&t, "acme").await, [1, 10, 40]);
}

#[tokio::test]
async fn a_manual_run_limited_to_one_namespace_leaves_the_others() {
    let t = TestDb::new().await.unwrap();
    seed_aged(&t, "acme", &[1, 10]).await;
    seed_aged(&t, "globex", &[1, 10]).await;
    let state = purge_state(&t, Settings::default());
    let request = PurgeRequest {
        dry_run: false,
        namespace: Some(Namespace::parse("acme").unwrap()),
        older_than_days: Some(7),
    };
    let report = run(&state, &request, Utc::now(), deadline(60))
        .await
        .unwrap();
    assert_eq!(report.deleted, 1);
    assert_eq!(
        (ages(&t, "acme").await, ages(&t, "globex").await),
        (vec![1], vec![1, 10])
    );
}

#[tokio::test]
async fn a_run_out_of_time_stops_early_and_the_next_one_finishes() {
    let t = TestDb::new().await.unwrap();
    seed_aged(&t, "acme", &[40; 30]).await;
    seed_aged(&t, "acme", &[1; 5]).await;
    // The deadline is already within the safety margin: no batch may start.
    let settings = Settings {
        batch_size: 10,
        safety_margin: std::time::Duration::from_secs(5),
        ..Settings::default()
    };
    let state = purge_state(&t, settings);
    let report = run(&state, &PurgeRequest::default(), Utc::now(), deadline(1))
        .await
        .unwrap();
    assert_eq!(
        (report.complete, report.deleted, report.batches),
        (false, 0, 0)
    );
    // Later runs with time converge on the same state as one full run.
    let report = run(&state, &PurgeRequest::default(), Utc::now(), deadline(60))
        .await
        .unwrap();
    assert!(report.complete);
    assert_eq!(report.deleted, 30);
    assert_eq!(ages(&t, "acme").await, [1; 5]);
}

#[tokio::test]
async fn a_second_concurrent_run_skips() {
    let t = TestDb::new().await.unwrap();
    let state = purge_state(&t, Settings::default());
    // Another run holds an unexpired lease.
    assert!(t
        .db
        .acquire_purge_lease(Uuid::new_v4(), Utc::now() + Duration::minutes(5))
        .await
        .unwrap());
    let report = run(&state, &PurgeRequest::default(), Utc::now(), deadline(60))
        .await
        .unwrap();
    assert!(report.skipped && !report.complete);
    assert_eq!(report.deleted, 0);
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let t = TestDb::new().await.unwrap();
    seed_aged(&t, "acme", &[40]).await;
    assert!(t
        .db
        .acquire_purge_lease(Uuid::new_v4(), Utc::now() - Duration::seconds(1))
        .await
        .unwrap());
    let state = purge_state(&t, Settings::default());
    let report = run(&state, &PurgeRequest::default(), Utc::now(), deadline(60))
        .await
        .unwrap();
    assert!(!report.skipped && report.complete);
    assert_eq!(report.deleted, 1);
}

fn deadline(seconds: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(seconds)
}
