//! The search function against the real stack, driven with API Gateway event JSON.

use kit_support::corpus::{clustered, cosine_distance, DIMS};
use kit_support::events::{http_v2_request, rest_v1_request, upsert_body};
use kit_support::search_corpus::{nearest_query, seed_rows};
use kit_support::{Reply, SearchFn, TestStack};
use search::Limits;
use serde_json::{json, Map, Value};
use storage::{Include, SearchQuery};
use uuid::Uuid;

/// Loads `vectors` into `namespace` with metadata `{"i": index, "group": index % 4}`.
async fn seed(t: &TestStack, namespace: &str, vectors: &[Vec<f32>]) -> Vec<Uuid> {
    let metadata: Vec<Map<String, Value>> = (0..vectors.len())
        .map(|i| json!({"i": i, "group": i % 4}).as_object().unwrap().clone())
        .collect();
    seed_rows(t, namespace, vectors, &metadata).await.unwrap()
}

#[tokio::test]
async fn ingest_then_search_finds_the_inserted_vector_first() {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(40, 4, DIMS, 0.3, 11);
    let ids: Vec<Uuid> = vectors.iter().map(|_| Uuid::new_v4()).collect();
    let bodies: Vec<String> = vectors
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, (v, id))| {
            upsert_body(
                *id,
                "acme",
                v,
                json!({"lang": if i % 2 == 0 { "en" } else { "de" }}),
                1,
            )
        })
        .collect();
    assert!(t.ingest().deliver(&bodies).await.is_empty());

    let search = t.search();
    let target = 17;
    let Reply { status, body, .. } = search.post_search(&json!({"namespace": "acme", "vector": vectors[target], "k": 5, "include": ["metadata", "content"]}))
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["id"], json!(ids[target]));
    assert!(results[0]["distance"].as_f64().unwrap() < 1e-5);
    assert_eq!(
        results[0]["content"],
        json!(format!("document {}", ids[target]))
    );
    let distances: Vec<f64> = results
        .iter()
        .map(|r| r["distance"].as_f64().unwrap())
        .collect();
    assert!(
        distances.windows(2).all(|w| w[0] <= w[1]),
        "ascending: {distances:?}"
    );

    // With a filter, only matching rows come back; the target is "de" (odd index).
    let Reply { status, body, .. } = search.post_search(&json!({"namespace": "acme", "vector": vectors[target], "k": 5, "filter": {"lang": "en"}}))
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r["metadata"]["lang"] == "en"));
    assert!(results.iter().all(|r| r["id"] != json!(ids[target])));
}

#[tokio::test]
async fn results_match_exact_search_and_respect_max_distance() {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(300, 6, DIMS, 0.5, 12);
    let ids = seed(&t, "acme", &vectors).await;
    let search = t.search();
    let query = &vectors[3];
    let mut exact: Vec<(f64, Uuid)> = vectors
        .iter()
        .zip(&ids)
        .map(|(v, id)| (cosine_distance(query, v), *id))
        .collect();
    exact.sort_by(|a, b| a.0.total_cmp(&b.0));

    let Reply { body, .. } = search
        .post_search(&json!({"namespace": "acme", "vector": query, "k": 10}))
        .await;
    let got: Vec<Uuid> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::from_value(r["id"].clone()).unwrap())
        .collect();
    let want: Vec<Uuid> = exact.iter().take(10).map(|(_, id)| *id).collect();
    let overlap = got.iter().filter(|id| want.contains(id)).count();
    assert!(overlap >= 9, "recall@10 = {overlap}/10");

    let ceiling = exact[5].0 + 1e-6;
    let Reply { body, .. } = search
        .post_search(
            &json!({"namespace": "acme", "vector": query, "k": 10, "max_distance": ceiling}),
        )
        .await;
    let results = body["results"].as_array().unwrap();
    assert!(
        !results.is_empty() && results.len() <= 6,
        "{}",
        results.len()
    );
    assert!(results
        .iter()
        .all(|r| r["distance"].as_f64().unwrap() <= ceiling));
}

#[tokio::test]
async fn the_search_statement_uses_the_hnsw_index() {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(2000, 8, DIMS, 0.5, 13);
    seed(&t, "default", &vectors).await;
    t.analyze().await.unwrap();
    let query = SearchQuery {
        include: Include {
            metadata: true,
            ..Include::default()
        },
        ..nearest_query(&vectors[0], 10)
    };
    let plan = t.db.explain_search(&query).await.unwrap();
    let text = plan.to_string();
    assert!(
        text.contains("embeddings_embedding_hnsw"),
        "plan without the HNSW index: {text}"
    );
}

#[tokio::test]
async fn bad_requests_are_4xx_with_stable_codes_never_500() {
    let t = TestStack::new().await.unwrap();
    let search = t.search();
    let v = clustered(1, 1, DIMS, 0.0, 14).remove(0);
    let cases = [
        (
            http_v2_request("POST", "/search", "", Some("{not json"), None),
            400,
            "invalid_json",
        ),
        (
            http_v2_request(
                "POST",
                "/search",
                "",
                Some(r#"{"vector": [1, 2, 3]}"#),
                None,
            ),
            400,
            "invalid_vector",
        ),
        (
            http_v2_request(
                "POST",
                "/search",
                "",
                Some(&json!({"vector": v, "k": 0}).to_string()),
                None,
            ),
            400,
            "invalid_k",
        ),
        (
            http_v2_request(
                "POST",
                "/search",
                "",
                Some(&json!({"vector": v, "filter": {"a": {"$where": 1}}}).to_string()),
                None,
            ),
            400,
            "invalid_filter",
        ),
        (
            http_v2_request(
                "POST",
                "/search",
                "",
                Some(&"x".repeat(2 * 1024 * 1024)),
                None,
            ),
            413,
            "body_too_large",
        ),
        (
            http_v2_request("GET", "/items/not-a-uuid", "", None, None),
            400,
            "invalid_id",
        ),
        (
            http_v2_request(
                "GET",
                &format!("/items/{}", Uuid::new_v4()),
                "namespace=acme",
                None,
                None,
            ),
            404,
            "item_not_found",
        ),
        (
            http_v2_request("GET", "/nowhere", "", None, None),
            404,
            "route_not_found",
        ),
        (
            http_v2_request("GET", "/search", "", None, None),
            405,
            "method_not_allowed",
        ),
    ];
    for (event, status, code) in cases {
        let Reply {
            status: got_status,
            body,
            ..
        } = search.call(&event).await;
        assert_eq!(
            (got_status, body["error"]["code"].as_str().unwrap_or("")),
            (status, code),
            "{body}"
        );
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn items_and_health_answer_over_rest_and_http_apis() {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(3, 1, DIMS, 0.1, 15);
    let ids = seed(&t, "acme", &vectors).await;
    let search = t.search();

    let Reply { status, body, .. } = search
        .get(&format!("/items/{}", ids[1]), "namespace=acme")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["id"].clone(), body["metadata"]["i"].clone()),
        (json!(ids[1]), json!(1))
    );
    assert!(body.get("vector").is_none(), "no vector unless asked");
    let Reply { body, .. } = search
        .get(
            &format!("/items/{}", ids[1]),
            "namespace=acme&include_vector=true",
        )
        .await;
    assert_eq!(body["vector"].as_array().unwrap().len(), DIMS);

    let Reply { status, body, .. } = search.health().await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    // REST API (v1) with a stage prefix in the request context.
    let Reply { status, body, .. } = search
        .call(&rest_v1_request(
            "POST",
            "/search",
            Some(&json!({"namespace": "acme", "vector": vectors[0], "k": 2}).to_string()),
            None,
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_authorizer_namespace_wins_and_another_one_is_forbidden() {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(4, 1, DIMS, 0.1, 16);
    seed(&t, "acme", &vectors[..2]).await;
    seed(&t, "globex", &vectors[2..]).await;
    let search = t.search();
    let body = json!({"vector": vectors[0], "k": 10}).to_string();

    // JWT claim says acme: only acme's rows, without naming a namespace.
    let Reply {
        status, body: out, ..
    } = search
        .call(&http_v2_request(
            "POST",
            "/search",
            "",
            Some(&body),
            Some("acme"),
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            out["namespace"].clone(),
            out["results"].as_array().unwrap().len()
        ),
        (json!("acme"), 2)
    );

    let other = json!({"namespace": "globex", "vector": vectors[0]}).to_string();
    let Reply {
        status, body: out, ..
    } = search
        .call(&http_v2_request(
            "POST",
            "/search",
            "",
            Some(&other),
            Some("acme"),
        ))
        .await;
    assert_eq!(
        (status, out["error"]["code"].clone()),
        (403, json!("namespace_forbidden"))
    );
    // Lambda authorizer context on a REST API.
    let Reply { status, .. } = search
        .call(&rest_v1_request(
            "POST",
            "/search",
            Some(&other),
            Some("acme"),
        ))
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_database_that_is_down_is_503_with_retry_after_quickly() {
    let t = TestStack::new().await.unwrap();
    let config = t
        .config()
        .with_url("postgres://kit_app:unused@127.0.0.1:9/kit");
    let search = SearchFn::new(&config, Limits::default(), search::Auth::none());
    let started = std::time::Instant::now();
    let response = search.health().await;
    assert_eq!(response.status, 503);
    assert_eq!(
        response
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let Reply { status, body, .. } = search.post_search(&json!({"vector": [1.0, 0.0]})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (503, json!("database_unavailable"))
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
