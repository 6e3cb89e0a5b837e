//! The ingest handler under faults, against the real stack through PgBouncer: poisoned
//! records anywhere in a batch, repeated and concurrent deliveries, deadlocks, versions
//! out of order, a 10,000-record batch, and a database whose network path disappears
//! mid-batch (a TCP proxy inside the test, between the handler and PgBouncer).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use ingest::Reason;
use kit_support::corpus::{clustered, DIMS};
use kit_support::events::{sqs_event, upsert_body, STANDARD_QUEUE};
use kit_support::proxy::{Proxy, Trip};
use kit_support::{IngestFn, TestStack};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};
use storage::Config;
use uuid::Uuid;

use crate::alone::{is_child_for, run_alone};

// ---------------------------------------------------------------------------------------
// Helpers

fn some(bodies: Vec<String>) -> Vec<Option<String>> {
    bodies.into_iter().map(Some).collect()
}

fn message_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("m{i}")).collect()
}

fn state_with(config: &Config) -> IngestFn {
    IngestFn::new(config, ingest::Limits::default())
}

/// Valid upsert bodies for `n` new ids in namespace `acme`, with small metadata.
fn valid_batch(n: usize, seed: u64) -> (Vec<Uuid>, Vec<String>) {
    let vectors = clustered(n, 8, DIMS, 0.2, seed);
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let bodies = ids
        .iter()
        .zip(&vectors)
        .enumerate()
        .map(|(i, (id, v))| upsert_body(*id, "acme", v, json!({"i": i}), 1))
        .collect();
    (ids, bodies)
}

/// A body that breaks the contract in exactly the way `reason` names.
fn poisoned(reason: Reason, embedding: &[f32]) -> Option<String> {
    let good = || json!({"id": Uuid::new_v4(), "namespace": "acme", "embedding": embedding});
    let with = |key: &str, value: Value| {
        let mut body = good();
        body[key] = value;
        Some(body.to_string())
    };
    match reason {
        Reason::MissingBody => None,
        Reason::InvalidJson => Some(r#"{"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "#.into()),
        Reason::UnknownField => with("metdata", json!({"lang": "en"})),
        Reason::UnknownOp => with("op", json!("merge")),
        Reason::MissingId => Some(json!({"embedding": embedding}).to_string()),
        Reason::InvalidId => with("id", json!("not-a-uuid")),
        Reason::InvalidNamespace => with("namespace", json!("Acme Corp")),
        Reason::MissingEmbedding => Some(json!({"id": Uuid::new_v4()}).to_string()),
        Reason::InvalidEmbedding => with("embedding", json!("0.1,0.2")),
        Reason::WrongDimensions => with("embedding", json!(&embedding[..DIMS - 1])),
        Reason::NonFiniteValue => {
            let mut values: Vec<f64> = embedding.iter().map(|&x| f64::from(x)).collect();
            values[DIMS / 2] = 1e39; // beyond f32: infinite once parsed
            with("embedding", json!(values))
        }
        Reason::InvalidContent => with("content", json!(42)),
        Reason::ContentTooLarge => with("content", json!("x".repeat(70_000))),
        Reason::InvalidMetadata => with("metadata", json!([1, 2])),
        Reason::MetadataTooLarge => with("metadata", json!({"big": "x".repeat(20_000)})),
        Reason::MetadataTooDeep => with(
            "metadata",
            json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}),
        ),
        Reason::InvalidVersion => with("version", json!(-3)),
        Reason::InvalidCreatedAt => with("created_at", json!("yesterday")),
        // The batch's queue allows only acme (ALLOWED_NAMESPACES).
        Reason::NamespaceNotAllowed => with("namespace", json!("globex")),
        Reason::CreatedAtInFuture => with("created_at", json!("9999-12-31T23:59:59Z")),
        Reason::CreatedAtTooOld => with("created_at", json!("1970-01-01T00:00:00Z")),
    }
}

/// The backends of this test's database currently waiting for a lock.
async fn lock_waiters(admin: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(admin)
    .await
    .unwrap()
}

async fn wait_for_lock_waiters(admin: &PgPool, n: i64) {
    let started = Instant::now();
    while lock_waiters(admin).await < n {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "expected {n} backends waiting for a lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Peak resident memory of this process so far (`VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn current_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0); false where that is not allowed.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ---------------------------------------------------------------------------------------
// Poisoned records

/// Invalid records at random (seeded) positions of a 200-record batch, every reason code
/// among them: exactly their message ids come back, every valid record is stored, and a
/// redelivery counts each rejection under its reason code.
#[tokio::test]
async fn poisoned_records_anywhere_in_a_batch_are_reported_exactly() {
    let t = TestStack::new().await.unwrap();
    let mut state = t.ingest();
    state.state.settings.allowed_namespaces = ingest::AllowedNamespaces::only(&["acme"]).unwrap();
    let mut stored = 0;
    for seed in [11u64, 12, 13] {
        let mut rng = StdRng::seed_from_u64(seed);
        let (_, valid) = valid_batch(200, seed);
        let mut bodies = some(valid);
        // Every reason once, then more at random, at distinct random positions.
        let mut reasons: Vec<Reason> = Reason::ALL.to_vec();
        reasons.extend((0..rng.gen_range(0..=12)).map(|_| *Reason::ALL.choose(&mut rng).unwrap()));
        reasons.shuffle(&mut rng);
        let positions = rand::seq::index::sample(&mut rng, bodies.len(), reasons.len()).into_vec();
        let embedding = clustered(1, 1, DIMS, 0.0, seed)[0].clone();
        let mut expected_failures: Vec<usize> = Vec::new();
        let mut expected_codes: BTreeMap<&str, usize> = BTreeMap::new();
        for (&position, &reason) in positions.iter().zip(&reasons) {
            bodies[position] = poisoned(reason, &embedding);
            expected_failures.push(position);
            *expected_codes.entry(reason.code()).or_default() += 1;
        }
        expected_failures.sort_unstable();
        let expected_ids: Vec<String> = expected_failures.iter().map(|i| format!("m{i}")).collect();

        let failures = state.deliver_to(STANDARD_QUEUE, &bodies, 30.0).await;
        assert_eq!(failures, expected_ids, "seed {seed}");
        stored += (bodies.len() - reasons.len()) as i64;
        assert_eq!(
            t.count_rows().await.unwrap(),
            stored,
            "seed {seed}: every valid record stored"
        );

        let report = state.process(&bodies, 30.0).await;
        assert_eq!(report.rejected, expected_codes, "seed {seed}");
        assert_eq!(
            (
                report.written,
                report.stale,
                report.unchanged,
                report.not_committed
            ),
            (0, 0, bodies.len() - reasons.len(), 0),
            "seed {seed}: a redelivery changes nothing"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Repeats, concurrency, deadlocks, versions

/// Three copies of one batch delivered at once (separate states, separate connections)
/// into an empty table, then the batch again, then three concurrent copies again: one
/// row per record, written once, never rewritten, no error and no failure anywhere.
#[tokio::test]
async fn repeated_and_concurrent_deliveries_store_each_record_once() {
    let t = TestStack::new().await.unwrap();
    let states: Vec<IngestFn> = (0..3).map(|_| t.ingest()).collect();
    let (ids, bodies) = valid_batch(200, 21);
    let bodies = some(bodies);

    let (a, b, c) = tokio::join!(
        states[0].process(&bodies, 60.0),
        states[1].process(&bodies, 60.0),
        states[2].process(&bodies, 60.0),
    );
    for report in [&a, &b, &c] {
        assert!(report.failures.is_empty(), "{report:?}");
    }
    assert_eq!(
        a.written + b.written + c.written,
        200,
        "each record written by exactly one of the three: {a:?} {b:?} {c:?}"
    );
    assert_eq!(a.unchanged + b.unchanged + c.unchanged, 400);
    let first = t.row_snapshot().await.unwrap();
    assert_eq!(first.len(), 200);
    let stored: HashSet<Uuid> = first.keys().map(|(_, id)| *id).collect();
    assert_eq!(stored, ids.iter().copied().collect());
    let writers: HashSet<&String> = first.values().map(|(_, xmin, _)| xmin).collect();
    assert_eq!(writers.len(), 1, "one transaction wrote every row");

    assert!(states[0]
        .deliver_to(STANDARD_QUEUE, &bodies, 30.0)
        .await
        .is_empty());
    assert_eq!(
        t.row_snapshot().await.unwrap(),
        first,
        "a redelivery rewrote rows"
    );

    let (a, b, c) = tokio::join!(
        states[0].deliver_to(STANDARD_QUEUE, &bodies, 60.0),
        states[1].deliver_to(STANDARD_QUEUE, &bodies, 60.0),
        states[2].deliver_to(STANDARD_QUEUE, &bodies, 60.0),
    );
    assert!(a.is_empty() && b.is_empty() && c.is_empty());
    assert_eq!(
        t.row_snapshot().await.unwrap(),
        first,
        "concurrent redeliveries rewrote rows"
    );
}

/// Batches lock rows in key order, whatever order their records come in: while one
/// batch waits for the first key, a batch listing the keys in reverse holds none of
/// them, so the two cannot deadlock.
#[tokio::test]
async fn concurrent_batches_lock_rows_in_key_order() {
    let t = TestStack::new().await.unwrap();
    let admin = t.admin_pool().await.unwrap();
    let (sa, sb) = (t.ingest(), t.ingest());
    let mut keys = [Uuid::new_v4(), Uuid::new_v4()];
    keys.sort();
    let [k1, k2] = keys;
    let v = clustered(4, 4, DIMS, 0.0, 31);
    let seed = some(vec![
        upsert_body(k1, "acme", &v[0], json!({}), 1),
        upsert_body(k2, "acme", &v[1], json!({}), 1),
    ]);
    assert!(sa.deliver_to(STANDARD_QUEUE, &seed, 30.0).await.is_empty());

    // Someone else holds k1.
    let mut holder = admin.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM embeddings WHERE namespace = 'acme' AND id = $1 FOR UPDATE")
        .bind(k1)
        .execute(&mut *holder)
        .await
        .unwrap();
    let forward = some(vec![
        upsert_body(k1, "acme", &v[2], json!({}), 2),
        upsert_body(k2, "acme", &v[2], json!({}), 2),
    ]);
    let reverse = some(vec![
        upsert_body(k2, "acme", &v[3], json!({}), 3),
        upsert_body(k1, "acme", &v[3], json!({}), 3),
    ]);
    let control = async {
        wait_for_lock_waiters(&admin, 2).await;
        // Both wait for k1; neither may hold k2 (the reverse batch would, unsorted).
        let mut probe = admin.begin().await.unwrap();
        let k2_free = sqlx::query(
            "SELECT 1 FROM embeddings WHERE namespace = 'acme' AND id = $1 FOR UPDATE NOWAIT",
        )
        .bind(k2)
        .execute(&mut *probe)
        .await;
        probe.rollback().await.unwrap();
        holder.commit().await.unwrap();
        k2_free.map(|_| ())
    };
    let (a, b, probed) = tokio::join!(
        sa.process(&forward, 30.0),
        sb.process(&reverse, 30.0),
        control
    );
    probed.expect("k2 was locked while both batches waited for k1");
    for report in [&a, &b] {
        assert!(report.failures.is_empty(), "{report:?}");
        assert!(report.transient_errors.is_empty(), "{report:?}");
    }
    let rows = t.row_snapshot().await.unwrap();
    assert!(rows.values().all(|(version, _, _)| *version == 3));
}

/// A real deadlock (40P01) between an upsert and a delete crossing on two keys is
/// absorbed by the retry: both batches end committed, neither reports a failure.
#[tokio::test]
async fn a_deadlock_is_absorbed_by_the_retry() {
    let t = TestStack::new().await.unwrap();
    let admin = t.admin_pool().await.unwrap();
    let (sa, sb) = (t.ingest(), t.ingest());
    let mut keys = [Uuid::new_v4(), Uuid::new_v4()];
    keys.sort();
    let [k1, k2] = keys;
    let v = clustered(3, 3, DIMS, 0.0, 41);
    let seed = some(vec![
        upsert_body(k1, "acme", &v[0], json!({}), 1),
        upsert_body(k2, "acme", &v[0], json!({}), 1),
    ]);
    assert!(sa.deliver_to(STANDARD_QUEUE, &seed, 30.0).await.is_empty());

    // B: upsert k2, then delete k1. A: upsert k1, then k2. With k2 held elsewhere, B
    // queues on k2 first, then A takes k1 and queues on k2 behind B; once k2 is free,
    // B takes it and waits for A's k1 while A waits for B's k2.
    let b_bodies = some(vec![
        upsert_body(k2, "acme", &v[1], json!({"by": "b"}), 2),
        json!({"op": "delete", "id": k1, "namespace": "acme", "version": 10}).to_string(),
    ]);
    let a_bodies = some(vec![
        upsert_body(k1, "acme", &v[2], json!({"by": "a"}), 3),
        upsert_body(k2, "acme", &v[2], json!({"by": "a"}), 3),
    ]);
    let mut holder = admin.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM embeddings WHERE namespace = 'acme' AND id = $1 FOR UPDATE")
        .bind(k2)
        .execute(&mut *holder)
        .await
        .unwrap();
    let (go_a, a_may_start) = tokio::sync::oneshot::channel::<()>();
    let run_b = sb.process(&b_bodies, 60.0);
    let run_a = async {
        a_may_start.await.unwrap();
        sa.process(&a_bodies, 60.0).await
    };
    let control = async {
        wait_for_lock_waiters(&admin, 1).await; // B waits for k2
        go_a.send(()).unwrap();
        wait_for_lock_waiters(&admin, 2).await; // A holds k1 and waits for k2
        holder.commit().await.unwrap();
    };
    let (b, a, ()) = tokio::join!(run_b, run_a, control);
    for report in [&a, &b] {
        assert!(report.failures.is_empty(), "{report:?}");
        assert_eq!(report.not_committed, 0, "{report:?}");
    }
    let retried: Vec<&String> = a
        .transient_errors
        .iter()
        .chain(&b.transient_errors)
        .collect();
    assert!(
        retried.iter().any(|code| *code == "40P01"),
        "expected a deadlock to be retried, saw {retried:?}"
    );
    // Whichever order the retry produced, k2 ends at A's version 3, and k1 is either
    // deleted by B (A first) or re-inserted by A's retry (B first).
    let rows = t.row_snapshot().await.unwrap();
    assert_eq!(rows[&("acme".to_owned(), k2)].0, 3);
    if let Some((version, _, _)) = rows.get(&("acme".to_owned(), k1)) {
        assert_eq!(*version, 3);
    }
}

/// Versions of the same keys spread over batches in random order (several per batch,
/// too): every key ends at its highest version, and each batch's report counts exactly
/// the stale and superseded records a model of the contract predicts. Then the same
/// batches delivered concurrently end in the same state.
#[tokio::test]
async fn versions_applied_out_of_order_end_in_the_highest() {
    const KEYS: usize = 40;
    const VERSIONS: i64 = 5;
    let t = TestStack::new().await.unwrap();
    let admin = t.admin_pool().await.unwrap();
    let vectors = clustered(KEYS * VERSIONS as usize, 8, DIMS, 0.2, 51);
    let mut rng = StdRng::seed_from_u64(52);
    let run = |namespace: &'static str, rng: &mut StdRng| {
        let keys: Vec<Uuid> = (0..KEYS).map(|_| Uuid::new_v4()).collect();
        let mut deliveries: Vec<(Uuid, i64, usize)> = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            for version in 1..=VERSIONS {
                deliveries.push((*key, version, k * VERSIONS as usize + version as usize - 1));
            }
        }
        deliveries.shuffle(rng);
        let batches: Vec<Vec<(Uuid, i64, usize)>> =
            deliveries.chunks(KEYS).map(|c| c.to_vec()).collect();
        let bodies: Vec<Vec<Option<String>>> = batches
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .map(|(id, version, vi)| {
                        Some(upsert_body(
                            *id,
                            namespace,
                            &vectors[*vi],
                            json!({"v": version}),
                            *version as u64,
                        ))
                    })
                    .collect()
            })
            .collect();
        (keys, batches, bodies)
    };

    // One after the other, with exact accounting.
    let (keys, batches, bodies) = run("ordered", &mut rng);
    let state = t.ingest();
    let mut stored: HashMap<Uuid, i64> = HashMap::new();
    for (batch, bodies) in batches.iter().zip(&bodies) {
        let mut best: HashMap<Uuid, i64> = HashMap::new();
        for (id, version, _) in batch {
            let slot = best.entry(*id).or_insert(*version);
            *slot = (*slot).max(*version);
        }
        let superseded = batch.len() - best.len();
        let (mut written, mut stale) = (0, 0);
        for (id, version) in &best {
            match stored.get(id) {
                Some(current) if current > version => stale += 1,
                _ => {
                    written += 1;
                    stored.insert(*id, *version);
                }
            }
        }
        let report = state.process(bodies, 30.0).await;
        assert!(report.failures.is_empty(), "{report:?}");
        assert_eq!(
            (
                report.written,
                report.stale,
                report.superseded,
                report.unchanged
            ),
            (written, stale, superseded, superseded),
            "{report:?}"
        );
    }
    let final_rows: Vec<(Uuid, i64, Value)> =
        sqlx::query("SELECT id, version, metadata FROM embeddings WHERE namespace = 'ordered'")
            .fetch_all(&admin)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("id"), r.get("version"), r.get("metadata")))
            .collect();
    assert_eq!(final_rows.len(), KEYS);
    for (id, version, metadata) in &final_rows {
        assert!(keys.contains(id));
        assert_eq!(
            (*version, metadata.clone()),
            (VERSIONS, json!({"v": VERSIONS}))
        );
    }

    // All at once, on separate connections.
    let (_, _, bodies) = run("concurrent", &mut rng);
    let states: Vec<IngestFn> = bodies.iter().map(|_| t.ingest()).collect();
    let reports = futures_join_all(
        states
            .iter()
            .zip(&bodies)
            .map(|(state, bodies)| state.process(bodies, 60.0)),
    )
    .await;
    for report in &reports {
        assert!(report.failures.is_empty(), "{report:?}");
    }
    let versions: Vec<(i64, Value)> =
        sqlx::query("SELECT version, metadata FROM embeddings WHERE namespace = 'concurrent'")
            .fetch_all(&admin)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("version"), r.get("metadata")))
            .collect();
    assert_eq!(versions.len(), KEYS);
    assert!(versions
        .iter()
        .all(|(v, m)| *v == VERSIONS && *m == json!({"v": VERSIONS})));
}

/// Runs futures concurrently on this task (no `futures` crate needed).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Scale

/// 10,000 records in one SQS event through the handler: all written in one transaction,
/// with the handler's extra memory a small multiple of the event's payload (no
/// quadratic structure anywhere in parsing, de-duplication, failure accounting or the
/// column arrays). Peak memory is the process's: the work runs in a process of its own.
#[test]
fn ten_thousand_records_in_one_batch_are_all_written_in_bounded_memory() {
    run_alone(TEN_THOUSAND, &[], &[]);
}

const TEN_THOUSAND: &str = "ingest_faults::ten_thousand_records_in_its_own_process";

#[tokio::test]
#[ignore = "runs in a process of its own, started by the test above"]
async fn ten_thousand_records_in_its_own_process() {
    if !is_child_for(TEN_THOUSAND) {
        return;
    }
    const N: usize = 10_000;
    let t = TestStack::new().await.unwrap();
    let admin = t.admin_pool().await.unwrap();
    // One transaction writes 10,000 HNSW entries: give the statement time to finish.
    let mut config = t.config();
    config.statement_timeout = Duration::from_secs(600);
    let state = state_with(&config);

    // Short values (0, 1, 0.5) keep each body near 6 KB (60 MB in all); the schema needs
    // 1536 dimensions.
    let mut rng = StdRng::seed_from_u64(61);
    let ids: Vec<Uuid> = (0..N).map(|_| Uuid::new_v4()).collect();
    let bodies: Vec<Option<String>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let hot = rng.gen_range(0..DIMS);
            let mut embedding = vec![0.0f32; DIMS];
            embedding[hot] = 1.0;
            embedding[(hot + 1 + i % 7) % DIMS] = 0.5;
            Some(upsert_body(*id, "bulk", &embedding, json!({"i": i}), 1))
        })
        .collect();
    let payload: u64 = bodies.iter().flatten().map(|b| b.len() as u64).sum();
    let event = sqs_event(&bodies, STANDARD_QUEUE);
    drop(bodies);

    let measured = reset_peak_rss();
    let before = current_rss().unwrap_or(0);
    let started = Instant::now();
    let response = state.invoke(event, 900.0).await;
    let elapsed = started.elapsed();
    let peak = peak_rss().unwrap_or(0);
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(t.count_rows().await.unwrap(), N as i64);
    let stored: HashSet<Uuid> = sqlx::query_scalar("SELECT id FROM embeddings")
        .fetch_all(&admin)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(stored, ids.iter().copied().collect());
    let growth = peak.saturating_sub(before);
    eprintln!(
        "10,000 records: {:.1} s, payload {} MB, peak memory growth {} MB (measured: {measured})",
        elapsed.as_secs_f64(),
        payload >> 20,
        growth >> 20
    );
    if measured {
        // The parsed records (6 KB of floats each) and the bound column arrays are each
        // about the size of the vectors; the event itself was allocated before.
        let vectors = (N * DIMS * 4) as u64;
        assert!(
            growth < 4 * vectors + payload + (64 << 20),
            "peak memory grew by {} MB for {} MB of vectors",
            growth >> 20,
            vectors >> 20
        );
    }
}

// ---------------------------------------------------------------------------------------
// The database disappears

/// A state reaching PgBouncer through `proxy`, with short timeouts so a dead path turns
/// into failures well inside the test's deadline.
fn state_via(t: &TestStack, proxy: &Proxy) -> IngestFn {
    let mut config = t.config().with_url(proxy.url(&t.app_url));
    config.acquire_timeout = Duration::from_millis(400);
    let mut state = state_with(&config);
    state.state.reserve = Duration::from_millis(500);
    state
}

/// The path to the database dies at three moments of the transaction (after its first
/// statement, while the batch's rows are on the wire, and just before COMMIT, after
/// every statement ran) and stays down past the deadline: nothing is half-written, every
/// valid record is reported (the invalid one too, as always), the handler does not fail.
/// Once the path is back, a redelivery stores every record exactly once.
#[tokio::test]
async fn a_database_that_disappears_mid_batch_leaves_nothing_half_written() {
    let t = TestStack::new().await.unwrap();
    let admin = t.admin_pool().await.unwrap();
    let proxy = Proxy::start(&t.app_url).await;

    let (_, earlier) = valid_batch(10, 70);
    let setup = state_via(&t, &proxy);
    assert!(setup
        .deliver_to(STANDARD_QUEUE, &some(earlier), 30.0)
        .await
        .is_empty());
    let mut expected_rows = 10;

    for (seed, trip) in [
        (71, Trip::Before(b"WITH written AS")),
        (72, Trip::After(b"WITH written AS", 256 * 1024)),
        (73, Trip::Before(b"COMMIT")),
    ] {
        let (ids, valid) = valid_batch(150, seed);
        let mut bodies = some(valid);
        bodies.insert(75, Some("{not json".to_owned()));
        let before = t.row_snapshot().await.unwrap();
        assert_eq!(before.len() as i64, expected_rows);

        // A fresh environment: its first use of each statement goes over the wire in full.
        // The deadline bounds every statement too (docs/reliability.md): it leaves the
        // batch's statements time to reach the cut on a busy machine.
        let state = state_via(&t, &proxy);
        proxy.arm(trip.clone());
        let started = Instant::now();
        let deadline_s = 8.0;
        let failures = state.deliver_to(STANDARD_QUEUE, &bodies, deadline_s).await;
        assert_eq!(proxy.trips(), 1, "{trip:?}: the path was cut");
        assert_eq!(failures, message_ids(bodies.len()), "{trip:?}");
        assert!(
            started.elapsed() < Duration::from_secs_f64(deadline_s),
            "{trip:?}: gave up by the deadline"
        );
        let after = t.row_snapshot().await.unwrap();
        assert_eq!(after, before, "{trip:?}: nothing half-written");

        proxy.up().await;
        let failures = state.deliver_to(STANDARD_QUEUE, &bodies, 30.0).await;
        assert_eq!(
            failures,
            ["m75"],
            "{trip:?}: only the invalid record, once the path is back"
        );
        expected_rows += ids.len() as i64;
        assert_eq!(t.count_rows().await.unwrap(), expected_rows, "{trip:?}");
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(&admin)
            .await
            .unwrap();
        assert_eq!(
            stored,
            ids.len() as i64,
            "{trip:?}: every record exactly once"
        );
        proxy.reset_trips();
    }
}

/// The path dies just before COMMIT and refuses connections for about a second, then
/// comes back well within the deadline: the retry re-runs the transaction, every record
/// is stored once and no failure is reported.
#[tokio::test]
async fn an_outage_shorter_than_the_deadline_is_absorbed_by_the_retry() {
    let t = TestStack::new().await.unwrap();
    let proxy = Proxy::start(&t.app_url).await;
    let mut config = t.config().with_url(proxy.url(&t.app_url));
    config.acquire_timeout = Duration::from_millis(400);
    let state = state_with(&config);
    let (ids, valid) = valid_batch(120, 81);
    let bodies = some(valid);

    proxy.arm(Trip::Before(b"COMMIT"));
    let restore = async {
        proxy.tripped().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        proxy.up().await;
    };
    let started = Instant::now();
    let (report, ()) = tokio::join!(state.process(&bodies, 15.0), restore);
    assert_eq!(proxy.trips(), 1);
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.written, ids.len());
    assert!(
        !report.transient_errors.is_empty(),
        "the cut was seen and retried: {report:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(t.count_rows().await.unwrap(), ids.len() as i64);
}

/// A cold environment whose first connections are refused for about a second: the
/// retry (and the pool's own connect loop) bridges the gap, no failures.
#[tokio::test]
async fn connections_refused_at_cold_start_are_retried_until_they_succeed() {
    let t = TestStack::new().await.unwrap();
    let proxy = Proxy::start(&t.app_url).await;
    proxy.down();
    let mut config = t.config().with_url(proxy.url(&t.app_url));
    config.acquire_timeout = Duration::from_millis(300);
    let state = state_with(&config);
    let (ids, valid) = valid_batch(50, 91);
    let bodies = some(valid);
    let restore = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        proxy.up().await;
    };
    let (report, ()) = tokio::join!(state.process(&bodies, 15.0), restore);
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(
        report.transient_errors.iter().all(|e| e == "connection")
            && !report.transient_errors.is_empty(),
        "{report:?}"
    );
    assert_eq!(t.count_rows().await.unwrap(), ids.len() as i64);
}
