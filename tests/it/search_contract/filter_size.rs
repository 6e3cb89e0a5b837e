//! Hostile filter sizes: filters made of empty groups, filters whose SQL would be huge.

use kit_support::corpus::{clustered, DIMS};
use kit_support::events::http_v2_request;
use kit_support::search_corpus::seed_rows;
use kit_support::TestStack;
use lambda_http::Request;
use search::Limits;
use serde_json::{json, Value};

use super::result_ids;

/// A 100,000-element filter of empty groups (no condition at all) in every shape is
/// 400 invalid_filter, refused by MAX_FILTER_NODES within milliseconds at the handler,
/// even with bodies allowed up to Lambda's 6 MiB request payload.
#[tokio::test]
async fn filters_of_empty_groups_are_400_invalid_filter_quickly() {
    let t = TestStack::new().await.unwrap();
    let limits = Limits {
        max_body_bytes: 6 * 1024 * 1024,
        ..Limits::default()
    };
    let state = t.search_with(limits, search::Auth::none());
    let v = clustered(1, 1, DIMS, 0.3, 131).remove(0);
    // Warm: the connection and the column's dimensions are there before the timing.
    assert_eq!(state.post_search(&json!({"vector": v})).await.status, 200);
    let n = 100_000;
    let many = |item: Value| Value::Array(vec![item; n]);
    let shapes = [
        ("$and of {}", json!({"$and": many(json!({}))})),
        ("$or of []", json!({"$or": many(json!([]))})),
        (
            "$or of {\"$and\": [{}]}",
            json!({"$or": many(json!({"$and": [{}]}))}),
        ),
        (
            "$and of {\"$not\": {}}",
            json!({"$and": many(json!({"$not": {}}))}),
        ),
        (
            "$in of one array of []",
            json!({"a": {"$in": [many(json!([]))]}}),
        ),
        ("a value of {}", json!({"a": many(json!({}))})),
    ];
    for (what, filter) in shapes {
        let body = json!({"vector": v, "filter": filter}).to_string();
        assert!(body.len() < limits.max_body_bytes, "{what}");
        let event = http_v2_request("POST", "/search", "", Some(&body), None);
        let event = event.to_string();
        let started = std::time::Instant::now();
        let request: Request = search::event::request_from_slice(event.as_bytes()).unwrap();
        let read = started.elapsed();
        let response = state.handle(request).await;
        let total = started.elapsed();
        let reply = &response.body;
        assert_eq!(response.status, 400, "{what}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_filter", "{what}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        if what == "$or of []" {
            assert!(message.contains("JSON object"), "{what}: {message}");
        } else {
            // The parser's node budget, not the compiler's SQL bound (its backstop).
            assert!(
                message.contains("more than 256 objects and arrays (MAX_FILTER_NODES)"),
                "{what}: {message}"
            );
        }
        eprintln!(
            "{what}: {} body bytes, event read {:.1} ms, handler {:.1} ms",
            body.len(),
            read.as_secs_f64() * 1e3,
            (total - read).as_secs_f64() * 1e3
        );
        // Unoptimized test build on a shared two-core machine: a wide margin.
        assert!(total.as_millis() < 2000, "{what}: {total:?}");
    }
}

/// The SQL text of a filter is bounded (storage's MAX_FILTER_SQL_BYTES) whatever the
/// parser's limits allow: raised limits let 1,000 range conditions through the parser,
/// and the compiler refuses them as 400 invalid_filter before anything reaches the
/// database; 100 of them run.
#[tokio::test]
async fn a_filter_whose_sql_would_be_too_long_is_400_invalid_filter() {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(3, 1, DIMS, 0.3, 137);
    let metadata = vec![json!({"k0": "y"}).as_object().unwrap().clone(); 3];
    seed_rows(&t, "acme", &vectors, &metadata).await.unwrap();
    let mut limits = Limits::default();
    limits.filter.max_conditions = 1000;
    limits.filter.max_nodes = 100_000;
    let state = t.search_with(limits, search::Auth::none());
    let ranges = |n: usize| {
        let parts: Vec<Value> = (0..n)
            .map(|i| json!({ format!("k{i}"): {"$gte": "x"} }))
            .collect();
        json!({ "$or": parts })
    };
    let reply = state
        .post_search(&json!({"namespace": "acme", "vector": vectors[0], "filter": ranges(1000)}))
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "invalid_filter");
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("MAX_FILTER_SQL_BYTES")
            && message.contains(&storage::MAX_FILTER_SQL_BYTES.to_string()),
        "{message}"
    );
    let reply = state
        .post_search(&json!({"namespace": "acme", "vector": vectors[0], "filter": ranges(100)}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(result_ids(&reply.body).len(), 3);
}
