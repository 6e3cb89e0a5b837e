//! Hostile input: keys and values that have broken SQL builders elsewhere are answered
//! exactly or refused with a 400 and a short message, never with extra rows, never 500.

use std::collections::BTreeSet;

use kit_support::corpus::{clustered, DIMS};
use kit_support::events::http_v2_request;
use kit_support::search_corpus::{seed_rows, varied_metadata, HOSTILE};
use kit_support::text::prefix;
use kit_support::TestStack;
use search::filter::{parse_filter, FilterLimits};
use search::Limits;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{expected_for, result_ids};

const ROWS: usize = 200;

fn hostile_cases() -> Vec<Value> {
    let long_value = "'; --".repeat(2048); // 10 KiB
    let long_key = "k".repeat(10 * 1024);
    let mut strings: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    strings.extend([
        "x\0y".to_string(),
        "\0".to_string(),
        long_value.clone(),
        long_key.clone(),
        "k".repeat(256),
        "k".repeat(257),
    ]);
    let mut cases = Vec::new();
    for s in &strings {
        let field = |condition: Value| {
            let mut m = Map::new();
            m.insert(s.clone(), condition);
            Value::Object(m)
        };
        cases.push(field(json!(s)));
        cases.push(field(json!(1)));
        cases.push(field(json!({"$eq": s})));
        cases.push(field(json!({"$ne": s})));
        cases.push(field(json!({"$gt": s})));
        cases.push(field(json!({"$lte": s})));
        cases.push(field(json!({"$in": [s, 0, 1, 2]})));
        cases.push(field(json!({"$nin": [s, 2]})));
        cases.push(field(json!({"$exists": true})));
        cases.push(json!({"$not": field(json!(s))}));
        cases.push(json!({"hostile": s}));
        cases.push(json!({"hostile": {"$in": [s, "' OR 1=1 --"]}}));
        cases.push(json!({"hostile": {"$nin": [s]}}));
        cases.push(json!({"hostile": {"$gte": s}}));
        cases.push(json!({"$or": [field(json!(0)), {"hostile": s}]}));
        let mut object = Map::new();
        object.insert(s.clone(), json!(s));
        cases.push(json!({"author": Value::Object(object)}));
    }
    // Deep nesting: combinators beyond MAX_FILTER_DEPTH, and literals nested deeply.
    let mut deep_not = json!({"hostile": "'"});
    for _ in 0..7 {
        deep_not = json!({"$not": deep_not});
    }
    cases.push(deep_not);
    let mut deep_and = json!({"i": 1});
    for _ in 0..100 {
        deep_and = json!({"$and": [deep_and]});
    }
    cases.push(deep_and);
    let mut deep_literal = json!(0);
    for _ in 0..100 {
        deep_literal = json!([deep_literal]);
    }
    cases.push(json!({"nested": deep_literal}));
    // 10,000-element $in: over MAX_FILTER_IN_VALUES by default.
    let many: Vec<Value> = (0..10_000)
        .map(|i| json!(format!("' OR '{i}'='{i}' --")))
        .collect();
    cases.push(json!({"hostile": {"$in": many}}));
    // Operators and combinators that do not exist, and operator/literal mixes.
    cases.push(json!({"$where": "1=1"}));
    cases.push(json!({"i": {"$regex": ".*"}}));
    cases.push(json!({"i": {"$gt": 1, "; DROP": 2}}));
    cases.push(json!({"i": {"x": 1, "$gt": 2}}));
    cases
}

#[tokio::test]
async fn hostile_filters_are_400_or_exact_never_extra_rows_never_500() {
    let t = TestStack::new().await.unwrap();
    let metadata = varied_metadata(ROWS, 71);
    let vectors = clustered(ROWS, 4, DIMS, 0.6, 72);
    let ids = seed_rows(&t, "acme", &vectors, &metadata).await.unwrap();
    seed_rows(&t, "globex", &vectors[..50], &metadata[..50])
        .await
        .unwrap();
    let state = t.search();
    let wide_limits = Limits {
        filter: FilterLimits {
            max_in_values: 10_000,
            ..FilterLimits::default()
        },
        ..Limits::default()
    };
    let wide = t.search_with(wide_limits, search::Auth::none());
    let before = t.count_rows().await.unwrap();

    let (mut ok, mut refused, mut found_hostile) = (0, 0, 0);
    for filter in hostile_cases() {
        for (state, limits) in [
            (&state, FilterLimits::default()),
            (&wide, wide_limits.filter),
        ] {
            let body = json!({"namespace": "acme", "vector": vectors[1], "k": ROWS,
                              "filter": filter, "include": []});
            let reply = state.post_search(&body).await;
            let shown = prefix(&filter.to_string(), 200);
            match reply.status {
                200 => {
                    ok += 1;
                    let parsed = parse_filter(&filter, &limits).unwrap_or_else(|e| {
                        panic!("{shown}: the API accepted what the parser refuses: {e:?}")
                    });
                    let want = expected_for(&ids, &metadata, parsed.as_ref());
                    let got: BTreeSet<Uuid> = result_ids(&reply.body).into_iter().collect();
                    assert_eq!(got, want, "{shown}");
                    if !want.is_empty() && want.len() < ROWS {
                        found_hostile += 1;
                    }
                }
                400 => {
                    refused += 1;
                    let error = &reply.body["error"];
                    assert!(
                        ["invalid_filter", "invalid_json"]
                            .contains(&error["code"].as_str().unwrap()),
                        "{shown}: {}",
                        reply.body
                    );
                    // Refusals are short: hostile input is never echoed whole.
                    let message = error["message"].as_str().unwrap();
                    assert!(
                        message.len() < 1024,
                        "{shown}: {} byte message",
                        message.len()
                    );
                }
                other => panic!("{shown}: status {other}: {}", reply.body),
            }
        }
    }
    eprintln!("hostile filters: {ok} answered exactly, {refused} refused, {found_hostile} found hostile data");
    assert!(ok > 100 && refused > 20 && found_hostile > 50);
    assert_eq!(
        t.count_rows().await.unwrap(),
        before,
        "rows changed under hostile input"
    );
}

/// Hostile values elsewhere in the body, and hostile ids and namespaces on the item
/// route: 400 with a code, never a 500, nothing written.
#[tokio::test]
async fn hostile_values_outside_the_filter_are_400_with_a_code() {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(10, 1, DIMS, 0.6, 72);
    seed_rows(&t, "acme", &vectors, &varied_metadata(10, 71))
        .await
        .unwrap();
    let state = t.search();
    let before = t.count_rows().await.unwrap();

    let v = &vectors[0];
    for (body, code) in [
        (
            json!({"namespace": "acme' OR '1'='1", "vector": v}),
            "invalid_namespace",
        ),
        (
            json!({"namespace": "acme; DROP TABLE embeddings", "vector": v}),
            "invalid_namespace",
        ),
        (
            json!({"namespace": "acme\u{0}", "vector": v}),
            "invalid_namespace",
        ),
        (
            json!({"namespace": "ACME", "vector": v}),
            "invalid_namespace",
        ),
        (
            json!({"vector": v, "k": "10; DROP TABLE embeddings"}),
            "invalid_k",
        ),
        (json!({"vector": v, "k": -1}), "invalid_k"),
        (json!({"vector": v, "k": 1e300}), "invalid_k"),
        (
            json!({"vector": v, "ef_search": "1 OR 1=1"}),
            "invalid_ef_search",
        ),
        (
            json!({"vector": v, "max_distance": "0.1 OR TRUE"}),
            "invalid_max_distance",
        ),
        (
            json!({"vector": v, "include": ["metadata'--"]}),
            "invalid_include",
        ),
        (
            json!({"vector": ["1'); DROP TABLE embeddings; --"]}),
            "invalid_vector",
        ),
        (
            json!({"vector": v, "filter": "lang = 'en' OR 1=1"}),
            "invalid_filter",
        ),
        (
            json!({"vector": v, "filter": [{"lang": "en"}]}),
            "invalid_filter",
        ),
        (
            json!({"vector": v, "'; DROP TABLE embeddings; --": 1}),
            "unknown_field",
        ),
    ] {
        let reply = state.post_search(&body).await;
        assert_eq!(
            (reply.status, reply.body["error"]["code"].as_str()),
            (400, Some(code)),
            "{}",
            reply.body
        );
    }
    for raw in [
        "{\"vector\": [1, 2, \"\\ud800\"]}".to_string(),
        "{\"vector\": \u{0}}".to_string(),
        "[".repeat(10_000),
        "{\"filter\": ".repeat(200),
    ] {
        let reply = state
            .call(&http_v2_request("POST", "/search", "", Some(&raw), None))
            .await;
        assert_eq!(reply.status, 400, "{}", reply.body);
    }
    // Hostile ids and namespaces on the item route.
    for (path, query) in [
        ("/items/1' OR '1'='1", "namespace=acme"),
        (
            "/items/00000000-0000-0000-0000-000000000000;--",
            "namespace=acme",
        ),
        (
            "/items/00000000-0000-0000-0000-000000000000",
            "namespace=acme'--",
        ),
    ] {
        let reply = state
            .call(&http_v2_request("GET", path, query, None, None))
            .await;
        assert_eq!(reply.status, 400, "{path}?{query}: {}", reply.body);
    }

    assert_eq!(
        t.count_rows().await.unwrap(),
        before,
        "rows changed under hostile input"
    );
}
