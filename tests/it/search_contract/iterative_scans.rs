//! Filtered searches against the planner: the statement keeps the HNSW index, and
//! iterative index scans fill k for rare matches and small namespaces.

use std::collections::BTreeSet;

use kit_support::corpus::{clustered, cosine_distance, DIMS};
use kit_support::search_corpus::seed_rows;
use kit_support::text::prefix;
use kit_support::{SearchFn, TestStack};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use search::Limits;
use serde_json::{json, Map, Value};
use storage::SearchQuery;
use uuid::Uuid;

use super::result_ids;

const ROWS: usize = 5000;
const CLUSTERS: usize = 50;
const K: usize = 10;

/// 1% of rows match, one in every cluster (row i sits in cluster i % 50).
fn rare(i: usize) -> bool {
    (i / CLUSTERS) % 100 == 3
}

fn rank_exact(
    query: &[f32],
    vectors: &[Vec<f32>],
    ids: &[Uuid],
    keep: impl Fn(usize) -> bool,
    k: usize,
) -> Vec<Uuid> {
    let mut scored: Vec<(f64, Uuid)> = vectors
        .iter()
        .zip(ids)
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(_, (v, id))| (cosine_distance(query, v), *id))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

fn plan_uses_hnsw(plan: &Value) -> bool {
    plan.to_string().contains("embeddings_embedding_hnsw")
}

/// The estimated row count of the plan's scan on `embeddings`.
fn scan_rows(plan: &Value) -> Option<f64> {
    fn walk(node: &Value) -> Option<f64> {
        if node["Relation Name"] == json!("embeddings") {
            return node["Plan Rows"].as_f64();
        }
        node["Plans"].as_array()?.iter().find_map(walk)
    }
    walk(&plan[0]["Plan"])
}

/// One 5,000-row table (loading it is the slow part) for two properties of filtered
/// searches: the planner keeps the HNSW index for them, and rare matches still fill k.
#[tokio::test]
async fn filtered_searches_use_the_hnsw_index_and_rare_matches_still_fill_k() {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(ROWS, CLUSTERS, DIMS, 0.5, 51);
    // Attributes drawn at random: values periodic in `i` would alias with the ~100
    // samples PostgreSQL's statistics keep, and skew its estimates either way.
    let mut rng = StdRng::seed_from_u64(52);
    let metadata: Vec<Map<String, Value>> = (0..ROWS)
        .map(|i| {
            json!({"i": i, "rare": rare(i), "rank": if rare(i) { 0 } else { rng.gen_range(1..100) },
                   "lang": (["en", "de"][rng.gen_range(0..2)]), "year": rng.gen_range(2018..2028),
                   "source": (["faq", "kb", "docs", "blog"][rng.gen_range(0..4)])})
            .as_object()
            .unwrap()
            .clone()
        })
        .collect();
    let ids = seed_rows(&t, "default", &vectors, &metadata).await.unwrap();
    assert_eq!((0..ROWS).filter(|i| rare(*i)).count(), ROWS / 100);
    // Fresh bulk loads need statistics before the planner trusts the index (docs/search.md).
    t.analyze().await.unwrap();
    // Row-level security hides column statistics from operators that are not leakproof
    // (every jsonb operator) and keeps their conditions off the GIN index, so with it
    // the planner estimates every filter at its default share of rows: this test is
    // about the plans statistics give, and runs with it off (the cost of RLS:
    // docs/security-database.md, and tests/roles.rs).
    let admin = t.admin_pool().await.unwrap();
    storage::roles::set_row_level_security(&mut admin.acquire().await.unwrap(), false)
        .await
        .unwrap();
    filtered_plans_keep_the_hnsw_index(&t, &vectors).await;
    rare_matches_fill_k(&t, &t.search(), &vectors, &ids).await;
}

/// EXPLAIN of exactly the statement the handler runs, with filters of every kind.
async fn filtered_plans_keep_the_hnsw_index(t: &TestStack, vectors: &[Vec<f32>]) {
    // The estimates must stay near the truth: an expression the planner cannot estimate
    // used to count as 0.5% of rows, so it expected a handful and chose a sequential scan
    // plus a sort over every matching row, at any table size.
    for filter in [
        json!({"lang": "en"}),
        json!({"year": {"$gte": 2020}}),
        json!({"$not": {"source": "blog"}}),
        json!({"source": {"$in": ["faq", "kb", "docs"]}}),
        json!({"$or": [{"lang": "en"}, {"source": "faq"}]}),
        json!({"lang": {"$exists": true}}),
    ] {
        let query = parse_for_test(&json!({"vector": vectors[5], "filter": filter}));
        assert!(query.iterative_scan);
        let plan = t.db.explain_search(&query).await.unwrap();
        let estimated = scan_rows(&plan).unwrap_or_else(|| panic!("no scan in {plan}"));
        let shown = prefix(&plan.to_string(), 600);
        assert!(
            plan_uses_hnsw(&plan),
            "{filter}: plan without the HNSW index (estimated {estimated} rows): {shown}"
        );
        assert!(
            estimated >= (ROWS / 4) as f64,
            "{filter}: estimated {estimated} matching rows of {ROWS}: {shown}"
        );
    }
}

/// Rare matches, by equality (GIN-indexable) and by a range (not indexable by GIN),
/// still fill k, with the recall of an exact search.
async fn rare_matches_fill_k(t: &TestStack, state: &SearchFn, vectors: &[Vec<f32>], ids: &[Uuid]) {
    for filter in [json!({"rare": true}), json!({"rank": {"$lt": 1}})] {
        let mut found = 0;
        let mut without_iterative = 0;
        let mut plans_with_hnsw = 0;
        const QUERIES: usize = 8;
        for q in 0..QUERIES {
            let query = &vectors[q * 131 + 1];
            let exact = rank_exact(query, vectors, ids, rare, K);
            let reply = state
                .post_search(
                    &json!({"vector": query, "k": K, "filter": filter, "include": ["metadata"]}),
                )
                .await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let got = result_ids(&reply.body);
            assert_eq!(got.len(), K, "{filter}: k not filled: {}", reply.body);
            assert!(reply.body["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["metadata"]["rare"] == json!(true)));
            found += got.iter().filter(|id| exact.contains(id)).count();

            // The same query without iterative scans, through storage directly.
            let mut plain = parse_for_test(&json!({"vector": query, "k": K, "filter": filter}));
            plain.iterative_scan = false;
            if plan_uses_hnsw(&t.db.explain_search(&plain).await.unwrap()) {
                plans_with_hnsw += 1;
            }
            without_iterative += t.db.search_nearest(&plain).await.unwrap().len();
        }
        let recall = found as f64 / (QUERIES * K) as f64;
        eprintln!(
            "{filter}: recall@{K} {recall:.3} with iterative scans; {without_iterative} of {} \
             rows without; HNSW plans {plans_with_hnsw}/{QUERIES}",
            QUERIES * K
        );
        assert!(recall >= 0.9, "{filter}: recall@{K} = {recall}");
        if plans_with_hnsw == QUERIES {
            // Through the HNSW index, the first ef_search = 100 candidates hold about one
            // matching row: without iterative scans k is not filled, hence they are on.
            assert!(
                without_iterative < QUERIES * K / 2,
                "{filter}: {without_iterative} rows without iterative scans"
            );
        }
    }
}

#[tokio::test]
async fn a_small_namespace_in_a_shared_table_still_fills_k() {
    let t = TestStack::new().await.unwrap();
    let big = clustered(1500, 10, DIMS, 0.5, 61);
    let small = clustered(40, 10, DIMS, 0.5, 61);
    let rows = |n: usize| vec![Map::new(); n];
    seed_rows(&t, "globex", &big, &rows(big.len()))
        .await
        .unwrap();
    let small_ids = seed_rows(&t, "acme", &small, &rows(small.len()))
        .await
        .unwrap();
    t.analyze().await.unwrap();
    let state = t.search();
    // No metadata filter, but the namespace is one: 40 rows among 1,540, and k far above
    // ef_search. Whichever plan PostgreSQL picks (HNSW with an iterative scan, which the
    // API always enables for that reason, or an exact scan it estimates cheaper for a
    // small namespace), every row of the namespace comes back.
    let reply = state
        .post_search(&json!({"namespace": "acme", "vector": small[0], "k": 40, "ef_search": 10}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got: BTreeSet<Uuid> = result_ids(&reply.body).into_iter().collect();
    let want: BTreeSet<Uuid> = small_ids.into_iter().collect();
    assert_eq!(got, want);
}

fn parse_for_test(body: &Value) -> SearchQuery {
    search::request::parse_search(
        body.to_string().as_bytes(),
        DIMS,
        &Limits::default(),
        &search::Grant::Requested,
    )
    .unwrap()
}
