//! The purge function against the real stack: retention windows, batches, the lease.

use chrono::{Duration, Utc};
use kit_support::corpus::{clustered, DIMS};
use kit_support::search_corpus::nearest_query;
use kit_support::{TestDb, TestStack};
use purge::Settings;
use serde_json::json;
use storage::{Function, Namespace, Upsert, Vector, WriteOp};
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

#[tokio::test]
async fn a_scheduled_run_deletes_exactly_the_rows_past_retention_per_namespace() {
    let t = TestStack::new().await.unwrap();
    seed_aged(&t, "acme", &[1, 29, 31, 45, 400]).await;
    seed_aged(&t, "shortlived", &[1, 6, 8, 29, 31]).await;
    t.admin_db()
        .set_retention(&Namespace::parse("shortlived").unwrap(), 7)
        .await
        .unwrap();
    let state = t.purge(Settings {
        batch_size: 2,
        ..Settings::default()
    });

    let report = state.scheduled(60.0).await.unwrap();
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
    let t = TestStack::new().await.unwrap();
    seed_aged(&t, "acme", &[1, 10, 40]).await;
    let state = t.purge(Settings::default());
    let options = json!({"dry_run": true, "older_than_days": 7});
    let report = state.run(options, 60.0).await.unwrap();
    assert_eq!(
        (report.deleted, report.per_namespace.get("acme").copied()),
        (0, Some(2))
    );
    assert!(report.dry_run);
    assert_eq!(ages(&t, "acme").await, [1, 10, 40]);
}

#[tokio::test]
async fn a_manual_run_limited_to_one_namespace_leaves_the_others() {
    let t = TestStack::new().await.unwrap();
    seed_aged(&t, "acme", &[1, 10]).await;
    seed_aged(&t, "globex", &[1, 10]).await;
    let state = t.purge(Settings::default());
    let options = json!({"dry_run": false, "namespace": "acme", "older_than_days": 7});
    let report = state.run(options, 60.0).await.unwrap();
    assert_eq!(report.deleted, 1);
    assert_eq!(
        (ages(&t, "acme").await, ages(&t, "globex").await),
        (vec![1], vec![1, 10])
    );
}

#[tokio::test]
async fn a_run_out_of_time_stops_early_and_the_next_one_finishes() {
    let t = TestStack::new().await.unwrap();
    seed_aged(&t, "acme", &[40; 30]).await;
    seed_aged(&t, "acme", &[1; 5]).await;
    // The deadline is already within the safety margin: no batch may start.
    let settings = Settings {
        batch_size: 10,
        safety_margin: std::time::Duration::from_secs(5),
        ..Settings::default()
    };
    let state = t.purge(settings);
    let report = state.run(json!({}), 1.0).await.unwrap();
    assert_eq!(
        (report.complete, report.deleted, report.batches),
        (false, 0, 0)
    );
    // Later runs with time converge on the same state as one full run.
    let report = state.run(json!({}), 60.0).await.unwrap();
    assert!(report.complete);
    assert_eq!(report.deleted, 30);
    assert_eq!(ages(&t, "acme").await, [1; 5]);
}

#[tokio::test]
async fn a_second_concurrent_run_skips() {
    let t = TestStack::new().await.unwrap();
    let state = t.purge(Settings::default());
    // Another run holds an unexpired lease.
    assert!(t
        .db_as(Function::Purge)
        .acquire_purge_lease(Uuid::new_v4(), Utc::now() + Duration::minutes(5))
        .await
        .unwrap());
    let report = state.run(json!({}), 60.0).await.unwrap();
    assert!(report.skipped && !report.complete);
    assert_eq!(report.deleted, 0);
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let t = TestStack::new().await.unwrap();
    seed_aged(&t, "acme", &[40]).await;
    assert!(t
        .db_as(Function::Purge)
        .acquire_purge_lease(Uuid::new_v4(), Utc::now() - Duration::seconds(1))
        .await
        .unwrap());
    let state = t.purge(Settings::default());
    let report = state.run(json!({}), 60.0).await.unwrap();
    assert!(!report.skipped && report.complete);
    assert_eq!(report.deleted, 1);
}

/// Ingest keeps writing while a purge runs: fresh rows, refreshed old rows and rows that
/// arrive already old. The purge never deletes a row newer than the cutoff and never
/// makes an ingest batch fail.
#[tokio::test]
async fn purge_under_concurrent_ingest_never_touches_rows_newer_than_the_cutoff() {
    let t = TestStack::new().await.unwrap();
    seed_aged(&t, "acme", &[40; 1500]).await;
    let pool = t.admin_pool().await.unwrap();
    let old_ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM embeddings ORDER BY id LIMIT 100")
        .fetch_all(&pool)
        .await
        .unwrap();
    let purge_state = t.purge(Settings {
        batch_size: 50,
        ..Settings::default()
    });
    let ingest = t.ingest();
    let vectors = clustered(40, 4, DIMS, 0.3, 99);
    let started = Utc::now();

    let ingest_loop = async {
        let (mut fresh, mut refreshed, mut failures) = (Vec::new(), Vec::new(), 0usize);
        for round in 0..20 {
            let mut bodies = Vec::new();
            for embedding in &vectors[..10] {
                let id = Uuid::new_v4();
                fresh.push(id);
                bodies.push(json!({"id": id, "namespace": "acme", "embedding": embedding, "metadata": {"age": 0}}).to_string());
            }
            for id in &old_ids[round * 5..round * 5 + 5] {
                refreshed.push(*id);
                bodies.push(json!({"id": id, "namespace": "acme", "embedding": vectors[round], "metadata": {"age": 0}, "version": 1}).to_string());
            }
            for embedding in &vectors[..3] {
                let created = (Utc::now() - Duration::days(90)).to_rfc3339();
                bodies.push(json!({"id": Uuid::new_v4(), "namespace": "acme", "embedding": embedding, "metadata": {"age": 90}, "created_at": created}).to_string());
            }
            failures += ingest.deliver(&bodies).await.len();
            tokio::task::yield_now().await;
        }
        (fresh, refreshed, failures)
    };
    let purge_run = purge_state.run(json!({}), 60.0);
    let ((fresh, refreshed, failures), report) = tokio::join!(ingest_loop, purge_run);
    let report = report.unwrap();
    assert_eq!(failures, 0, "the purge made ingest fail");
    assert!(report.deleted >= 1400, "purged only {}", report.deleted);

    let present: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM embeddings WHERE id = ANY($1)")
        .bind(fresh.iter().chain(&refreshed).copied().collect::<Vec<_>>())
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        present.len(),
        fresh.len() + refreshed.len(),
        "a row newer than the cutoff was deleted"
    );
    let newer_than_cutoff_missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM embeddings WHERE created_at >= $1 AND (metadata->>'age')::int = 0",
    )
    .bind(started - Duration::seconds(1))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        newer_than_cutoff_missing as usize,
        fresh.len() + refreshed.len()
    );

    // The next run converges: nothing older than the cutoff remains.
    let report = purge_state.run(json!({}), 60.0).await.unwrap();
    assert!(report.complete);
    let expired: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM embeddings WHERE created_at < now() - interval '30 days'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(expired, 0);
}

/// Deleting most of a table leaves dead tuples in the HNSW graph; after VACUUM the index
/// still answers with recall@10 ≥ 0.95 over the rows that remain.
#[tokio::test]
async fn recall_stays_high_after_purging_most_rows_and_vacuum() {
    use kit_support::corpus::cosine_distance;

    let t = TestStack::new().await.unwrap();
    let vectors = clustered(2500, 10, DIMS, 0.6, 21);
    let now = Utc::now();
    let ops: Vec<WriteOp> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let age = if i % 5 == 0 { 1 } else { 60 };
            WriteOp::Upsert(Upsert {
                namespace: Namespace::default(),
                id: Uuid::from_u128(i as u128 + 1),
                embedding: Vector::from(v.clone()),
                content: None,
                metadata: json!({"i": i}).as_object().unwrap().clone(),
                version: 0,
                created_at: now - Duration::days(age),
            })
        })
        .collect();
    for chunk in ops.chunks(500) {
        t.db.write_batch(chunk).await.unwrap();
    }
    let state = t.purge(Settings::default());
    let report = state.run(json!({}), 120.0).await.unwrap();
    assert_eq!(report.deleted, 2000);
    let admin = t.admin_pool().await.unwrap();
    sqlx::query("VACUUM ANALYZE embeddings")
        .execute(&admin)
        .await
        .unwrap();

    let remaining: Vec<(Uuid, &Vec<f32>)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 0)
        .map(|(i, v)| (Uuid::from_u128(i as u128 + 1), v))
        .collect();
    let (mut found, mut wanted) = (0usize, 0usize);
    let search = t.db_as(Function::Search);
    for q in 0..20 {
        let query_vector = &vectors[q * 37 + 1];
        let mut exact: Vec<(f64, Uuid)> = remaining
            .iter()
            .map(|(id, v)| (cosine_distance(query_vector, v), *id))
            .collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: Vec<Uuid> = exact.iter().take(10).map(|(_, id)| *id).collect();
        let hits = search
            .search_nearest(&nearest_query(query_vector, 10))
            .await
            .unwrap();
        found += hits.iter().filter(|h| truth.contains(&h.id)).count();
        wanted += 10;
    }
    let recall = found as f64 / wanted as f64;
    assert!(
        recall >= 0.95,
        "recall@10 after purge + VACUUM = {recall:.3}"
    );
}

#[tokio::test]
async fn two_runs_started_together_one_works_and_one_skips() {
    let t = TestStack::new().await.unwrap();
    seed_aged(&t, "acme", &[40; 1200]).await;
    let (a, b) = (
        t.purge(Settings {
            batch_size: 100,
            ..Settings::default()
        }),
        t.purge(Settings {
            batch_size: 100,
            ..Settings::default()
        }),
    );
    let (ra, rb) = tokio::join!(a.run(json!({}), 60.0), b.run(json!({}), 60.0));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        ra.skipped != rb.skipped,
        "exactly one run skips: {ra:?} {rb:?}"
    );
    assert_eq!(ra.deleted + rb.deleted, 1200);
    assert!(ages(&t, "acme").await.is_empty());
}
