//! The ingest function against the real stack: SQS event JSON in, rows in PostgreSQL
//! (through PgBouncer) and an `SqsBatchResponse` out.

use kit_support::corpus::{clustered, DIMS};
use kit_support::events::{sqs_event, upsert_body, FIFO_QUEUE, STANDARD_QUEUE};
use kit_support::{IngestFn, TestStack};
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn poisoned_records_are_reported_by_message_id_and_the_rest_written() {
    let t = TestStack::new().await.unwrap();
    let ingest = t.ingest();
    let vectors = clustered(6, 2, DIMS, 0.1, 1);
    let good = |i: usize| upsert_body(Uuid::new_v4(), "acme", &vectors[i], json!({"i": i}), 1);
    let mut nan_like = vec![0.1f64; DIMS];
    nan_like[7] = 1e39; // beyond f32: infinite once stored
    let bodies = vec![
        good(0),
        "{this is not json".to_owned(),
        good(1),
        upsert_body(Uuid::new_v4(), "acme", &vectors[2][..3], json!({}), 1), // wrong dimensions
        json!({"id": Uuid::new_v4(), "embedding": nan_like}).to_string(),
        json!({"embedding": vectors[3]}).to_string(), // missing id
        json!({"id": "not-a-uuid", "embedding": vectors[3]}).to_string(),
        json!({"id": Uuid::new_v4(), "embedding": vectors[3], "metadata": [1, 2]}).to_string(),
        json!({"id": Uuid::new_v4(), "embedding": vectors[3], "content": "x".repeat(100_000)})
            .to_string(),
        json!({"id": Uuid::new_v4(), "op": "merge"}).to_string(),
        good(4),
    ];
    let failures = ingest.deliver(&bodies).await;
    assert_eq!(failures, ["m1", "m3", "m4", "m5", "m6", "m7", "m8", "m9"]);
    assert_eq!(
        t.count_rows().await.unwrap(),
        3,
        "exactly the three valid records are stored"
    );
}

#[tokio::test]
async fn a_stale_version_leaves_the_row_unchanged_and_a_newer_one_wins() {
    let t = TestStack::new().await.unwrap();
    let ingest = t.ingest();
    let id = Uuid::new_v4();
    let v = clustered(3, 3, DIMS, 0.0, 2);
    assert!(ingest
        .deliver(&[upsert_body(id, "acme", &v[0], json!({"rev": 5}), 5)])
        .await
        .is_empty());
    // Older version: acknowledged (not a failure), not applied.
    assert!(ingest
        .deliver(&[upsert_body(id, "acme", &v[1], json!({"rev": 4}), 4)])
        .await
        .is_empty());
    let item =
        t.db.get_item(&storage::Namespace::parse("acme").unwrap(), id, true)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(
        (item.version, item.metadata.clone()),
        (5, json!({"rev": 5}))
    );
    assert_eq!(item.vector.as_deref(), Some(&v[0][..]));
    // Equal or higher wins.
    assert!(ingest
        .deliver(&[upsert_body(id, "acme", &v[2], json!({"rev": 6}), 6)])
        .await
        .is_empty());
    let item =
        t.db.get_item(&storage::Namespace::parse("acme").unwrap(), id, false)
            .await
            .unwrap()
            .unwrap();
    assert_eq!((item.version, item.metadata), (6, json!({"rev": 6})));
}

#[tokio::test]
async fn redelivering_a_batch_changes_nothing() {
    let t = TestStack::new().await.unwrap();
    let ingest = t.ingest();
    let v = clustered(20, 4, DIMS, 0.2, 3);
    let bodies: Vec<String> = v
        .iter()
        .enumerate()
        .map(|(i, e)| upsert_body(Uuid::new_v4(), "acme", e, json!({"i": i}), 1))
        .collect();
    assert!(ingest.deliver(&bodies).await.is_empty());
    let before = t.row_snapshot().await.unwrap();
    assert!(ingest.deliver(&bodies).await.is_empty());
    assert_eq!(
        t.row_snapshot().await.unwrap(),
        before,
        "a redelivery must not rewrite any row"
    );
}

#[tokio::test]
async fn several_records_for_one_key_resolve_to_the_highest_version_then_the_last() {
    let t = TestStack::new().await.unwrap();
    let ingest = t.ingest();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let v = clustered(5, 5, DIMS, 0.0, 4);
    let bodies = vec![
        upsert_body(a, "acme", &v[0], json!({"pick": "a9"}), 9),
        upsert_body(a, "acme", &v[1], json!({"pick": "a3"}), 3),
        upsert_body(b, "acme", &v[2], json!({"pick": "b1-first"}), 1),
        upsert_body(b, "acme", &v[3], json!({"pick": "b1-last"}), 1),
        upsert_body(a, "other", &v[4], json!({"pick": "other-namespace"}), 0),
    ];
    assert!(ingest.deliver(&bodies).await.is_empty());
    let acme = storage::Namespace::parse("acme").unwrap();
    let pick = |id| {
        let db = &t.db;
        let ns = acme.clone();
        async move { db.get_item(&ns, id, false).await.unwrap().unwrap().metadata["pick"].clone() }
    };
    assert_eq!(pick(a).await, "a9");
    assert_eq!(pick(b).await, "b1-last");
    assert_eq!(
        t.count_rows().await.unwrap(),
        3,
        "same id in another namespace is another row"
    );
}

#[tokio::test]
async fn deletes_honour_versions() {
    let t = TestStack::new().await.unwrap();
    let ingest = t.ingest();
    let (kept, gone) = (Uuid::new_v4(), Uuid::new_v4());
    let v = clustered(2, 2, DIMS, 0.0, 5);
    let bodies = vec![
        upsert_body(kept, "acme", &v[0], json!({}), 5),
        upsert_body(gone, "acme", &v[1], json!({}), 5),
    ];
    assert!(ingest.deliver(&bodies).await.is_empty());
    let deletes = vec![
        json!({"op": "delete", "id": kept, "namespace": "acme", "version": 4}).to_string(),
        json!({"op": "delete", "id": gone, "namespace": "acme", "version": 5}).to_string(),
    ];
    assert!(ingest.deliver(&deletes).await.is_empty());
    let acme = storage::Namespace::parse("acme").unwrap();
    assert!(
        t.db.get_item(&acme, kept, false).await.unwrap().is_some(),
        "an older delete does not remove a newer row"
    );
    assert!(t.db.get_item(&acme, gone, false).await.unwrap().is_none());
}

#[tokio::test]
async fn a_fifo_queue_reports_the_first_failure_and_everything_after_it() {
    let t = TestStack::new().await.unwrap();
    let ingest = t.ingest();
    let v = clustered(4, 2, DIMS, 0.1, 6);
    let bodies = vec![
        upsert_body(Uuid::new_v4(), "acme", &v[0], json!({}), 1),
        upsert_body(Uuid::new_v4(), "acme", &v[1], json!({}), 1),
        "not json".to_owned(),
        upsert_body(Uuid::new_v4(), "acme", &v[2], json!({}), 1),
        upsert_body(Uuid::new_v4(), "acme", &v[3], json!({}), 1),
    ];
    assert_eq!(
        ingest.deliver_to(FIFO_QUEUE, &bodies, 30.0).await,
        ["m2", "m3", "m4"]
    );
    assert_eq!(
        t.count_rows().await.unwrap(),
        2,
        "records before the failure are written, later ones wait"
    );
}

#[tokio::test]
async fn an_unreachable_database_reports_every_record_within_the_deadline() {
    let t = TestStack::new().await.unwrap();
    // A port nothing listens on: connection refused, a transient error, retried until the deadline.
    let config = t
        .config()
        .with_url("postgres://kit_app:unused@127.0.0.1:9/kit");
    let mut ingest = IngestFn::new(&config, ingest::Limits::default());
    ingest.state.reserve = std::time::Duration::from_millis(200);
    let v = clustered(3, 1, DIMS, 0.1, 7);
    let bodies: Vec<String> = v
        .iter()
        .map(|e| upsert_body(Uuid::new_v4(), "acme", e, json!({}), 1))
        .collect();
    let started = std::time::Instant::now();
    let failed = ingest.deliver_to(STANDARD_QUEUE, &bodies, 2.0).await;
    assert_eq!(failed, ["m0", "m1", "m2"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "gave up by the deadline"
    );
}

#[tokio::test]
async fn the_response_is_the_sqs_partial_batch_shape() {
    let t = TestStack::new().await.unwrap();
    let ingest = t.ingest();
    let response = ingest
        .invoke(sqs_event(&["{}"], STANDARD_QUEUE), 10.0)
        .await;
    let wire: Value = serde_json::to_value(&response).unwrap();
    assert_eq!(
        wire,
        json!({"batchItemFailures": [{"itemIdentifier": "m0"}]})
    );
}

/// Every op lands in exactly one counter, and stale ops (upserts and deletes older than
/// the stored row) are counted apart from identical redeliveries.
#[tokio::test]
async fn the_write_outcome_counts_stale_ops_apart_from_unchanged_ones() {
    use storage::{Namespace, Upsert, WriteOp, WriteOutcome};
    let t = TestStack::new().await.unwrap();
    let ns = Namespace::parse("acme").unwrap();
    let v = clustered(4, 4, DIMS, 0.0, 8);
    let upsert = |id: Uuid, i: usize, version: i64| {
        WriteOp::Upsert(Upsert {
            namespace: ns.clone(),
            id,
            embedding: storage::Vector::from(v[i].clone()),
            content: None,
            metadata: Default::default(),
            version,
            created_at: chrono::Utc::now(),
        })
    };
    let delete = |id: Uuid, version: i64| WriteOp::Delete {
        namespace: ns.clone(),
        id,
        version,
    };
    let [a, b, c, d, e] = [(); 5].map(|_| Uuid::new_v4());
    let first =
        t.db.write_batch(&[
            upsert(a, 0, 5),
            upsert(b, 1, 5),
            upsert(c, 2, 5),
            upsert(e, 3, 5),
        ])
        .await
        .unwrap();
    assert_eq!(
        first,
        WriteOutcome {
            upserted: 4,
            ..WriteOutcome::default()
        }
    );

    let ops = [
        upsert(a, 3, 4), // stale upsert
        upsert(b, 1, 5), // identical redelivery
        upsert(c, 3, 6), // newer: applied
        delete(e, 3),    // stale delete
        delete(d, 1),    // nothing to delete
        upsert(b, 0, 2), // superseded by the v5 of b above
    ];
    let outcome = t.db.write_batch(&ops).await.unwrap();
    assert_eq!(
        outcome,
        WriteOutcome {
            upserted: 1,
            deleted: 0,
            stale: 2,
            unchanged: 2,
            superseded: 1,
        }
    );
    assert_eq!(outcome.total(), ops.len());

    let removed =
        t.db.write_batch(&[delete(b, 5), delete(c, 1)])
            .await
            .unwrap();
    assert_eq!(
        (removed.deleted, removed.stale, removed.unchanged),
        (1, 1, 0),
        "an equal version deletes, a lower one is stale"
    );
}

/// The handler's report carries the same split (it feeds `RecordsStale` and the log line).
#[tokio::test]
async fn the_batch_report_counts_stale_records() {
    let t = TestStack::new().await.unwrap();
    let ingest = t.ingest();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let v = clustered(2, 2, DIMS, 0.0, 9);
    assert!(ingest
        .deliver(&[
            upsert_body(a, "acme", &v[0], json!({}), 3),
            upsert_body(b, "acme", &v[1], json!({}), 3)
        ])
        .await
        .is_empty());
    let bodies = [
        upsert_body(a, "acme", &v[1], json!({}), 2),
        upsert_body(b, "acme", &v[1], json!({}), 3),
        json!({"op": "delete", "id": a, "namespace": "acme", "version": 1}).to_string(),
    ];
    let report = ingest.process(&bodies, 30.0).await;
    assert_eq!(
        (
            report.received,
            report.written,
            report.stale,
            report.unchanged,
            report.superseded
        ),
        (3, 0, 1, 2, 1),
        "a's v2 upsert beats its v1 delete in the batch (superseded) and is stale against \
         the stored v3; b is an identical redelivery: {report:?}"
    );
    assert!(report.failures.is_empty());
}

/// The log lines written while `work` runs on this thread (JSON, one per line).
async fn logged<T>(work: impl std::future::Future<Output = T>) -> (T, Vec<Value>) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);
    let out = work.await;
    drop(guard);
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let parsed = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    (out, parsed)
}

/// Retention counts from `created_at`: a record dated beyond the clock skew would never
/// be purged, one before the floor would be purged at once. Each is a per-record failure
/// with its own reason code (and one log line), never written, never dropped; times
/// within the bounds are stored as sent.
#[tokio::test]
async fn created_at_beyond_the_clock_skew_or_before_the_floor_is_a_record_failure() {
    let t = TestStack::new().await.unwrap();
    let ingest = t.ingest();
    let v = clustered(6, 1, DIMS, 0.3, 43);
    let now = chrono::Utc::now();
    let rfc3339 = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339();
    let cases = [
        (rfc3339(now - chrono::TimeDelta::days(400)), None),
        (
            rfc3339(now + chrono::TimeDelta::days(3650)),
            Some("created_at_in_future"),
        ),
        (
            "1970-01-01T00:00:00Z".to_owned(),
            Some("created_at_too_old"),
        ),
        (rfc3339(now + chrono::TimeDelta::seconds(60)), None),
        (
            "9999-12-31T23:59:59Z".to_owned(),
            Some("created_at_in_future"),
        ),
        (
            "1999-12-31T23:59:59+00:00".to_owned(),
            Some("created_at_too_old"),
        ),
    ];
    let ids: Vec<Uuid> = cases.iter().map(|_| Uuid::new_v4()).collect();
    let bodies: Vec<String> = cases
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, ((created_at, _), id))| {
            let mut body: Value =
                serde_json::from_str(&upsert_body(*id, "acme", &v[i], json!({}), 0)).unwrap();
            body["created_at"] = json!(created_at);
            body.to_string()
        })
        .collect();

    let (failures, logs) = logged(ingest.deliver(&bodies)).await;
    assert_eq!(failures, ["m1", "m2", "m4", "m5"]);
    for (i, (_, reason)) in cases.iter().enumerate() {
        let lines: Vec<&Value> = logs
            .iter()
            .filter(|l| l["fields"]["message_id"] == format!("m{i}"))
            .collect();
        match reason {
            Some(code) => {
                assert_eq!(lines.len(), 1, "m{i}: {lines:?}");
                let fields = &lines[0]["fields"];
                assert_eq!(fields["message"], "record rejected");
                assert_eq!(fields["reason"], *code);
                let detail = fields["detail"].as_str().unwrap();
                let setting = if *code == "created_at_in_future" {
                    "MAX_CLOCK_SKEW_S"
                } else {
                    "MIN_CREATED_AT"
                };
                assert!(detail.contains(setting), "{detail}");
            }
            None => assert!(lines.is_empty(), "m{i}: {lines:?}"),
        }
    }

    let pool = t.admin_pool().await.unwrap();
    let stored: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, created_at FROM embeddings ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    let sent = |i: usize| {
        chrono::DateTime::parse_from_rfc3339(&cases[i].0)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let micros = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
    assert_eq!(
        stored
            .iter()
            .map(|(id, at)| (*id, micros(*at)))
            .collect::<Vec<_>>(),
        vec![(ids[0], micros(sent(0))), (ids[3], micros(sent(3)))]
    );

    // The batch report counts each under its own code (the `Rejected.<code>` metrics).
    let report = ingest.process(&bodies, 30.0).await;
    assert_eq!(
        report.rejected.into_iter().collect::<Vec<_>>(),
        vec![("created_at_in_future", 2), ("created_at_too_old", 2)]
    );
}
