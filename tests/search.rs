//! The search function against the real stack, driven with API Gateway event JSON.

use aws_lambda_events::event::sqs::SqsEvent;
use kit_support::corpus::{clustered, cosine_distance, DIMS};
use kit_support::events::{
    context_with_deadline, http_v2_request, rest_v1_request, sqs_event_json, upsert_body,
    STANDARD_QUEUE,
};
use kit_support::search_corpus::nearest_query;
use kit_support::TestDb;
use lambda_http::{Body, Request};
use lambda_runtime::LambdaEvent;
use search::{handler, Settings, State};
use serde_json::{json, Value};
use storage::{Function, Include, Namespace, SearchQuery, Upsert, Vector, WriteOp};
use uuid::Uuid;

fn search_state(t: &TestDb) -> State {
    State::new(Settings {
        auth: search::Auth::none(),
        ..Settings::new(t.config_as(Function::Search))
    })
    .unwrap()
}

async fn call(state: &State, event: Value) -> (u16, Value) {
    let request: Request = search::event::request_from_slice(event.to_string().as_bytes())
        .expect("a valid API Gateway event");
    let response = handler(state, request)
        .await
        .expect("the handler never fails");
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("JSON body"),
        other => panic!("unexpected body {other:?}"),
    };
    (status, body)
}

async fn post_search(state: &State, body: Value) -> (u16, Value) {
    call(
        state,
        http_v2_request("POST", "/search", "", Some(&body.to_string()), None),
    )
    .await
}

/// Loads `vectors` into `namespace` with metadata `{"i": index, "group": index % 4}`.
async fn seed(t: &TestDb, namespace: &str, vectors: &[Vec<f32>]) -> Vec<Uuid> {
    let ids: Vec<Uuid> = vectors.iter().map(|_| Uuid::new_v4()).collect();
    let ops: Vec<WriteOp> = vectors
        .iter()
        .zip(&ids)
        .enumerate()
        .map(|(i, (v, id))| {
            WriteOp::Upsert(Upsert {
                namespace: Namespace::parse(namespace).unwrap(),
                id: *id,
                embedding: Vector::from(v.clone()),
                content: Some(format!("doc {i}")),
                metadata: json!({"i": i, "group": i % 4}).as_object().unwrap().clone(),
                version: 0,
                created_at: chrono::Utc::now(),
            })
        })
        .collect();
    for chunk in ops.chunks(500) {
        t.db.write_batch(chunk).await.unwrap();
    }
    ids
}

#[tokio::test]
async fn ingest_then_search_finds_the_inserted_vector_first() {
    let t = TestDb::new().await.unwrap();
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
    let ingest = ingest::State::new(ingest::Settings::new(t.config())).unwrap();
    let event: SqsEvent = serde_json::from_value(sqs_event_json(&bodies, STANDARD_QUEUE)).unwrap();
    let response = ingest::handler(
        &ingest,
        LambdaEvent::new(event, context_with_deadline(30.0)),
    )
    .await
    .unwrap();
    assert!(response.batch_item_failures.is_empty());

    let state = search_state(&t);
    let target = 17;
    let (status, body) = post_search(
        &state,
        json!({"namespace": "acme", "vector": vectors[target], "k": 5, "include": ["metadata", "content"]}),
    )
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
    let (status, body) = post_search(
        &state,
        json!({"namespace": "acme", "vector": vectors[target], "k": 5, "filter": {"lang": "en"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert!(results.iter().all(|r| r["metadata"]["lang"] == "en"));
    assert!(results.iter().all(|r| r["id"] != json!(ids[target])));
}

#[tokio::test]
async fn results_match_exact_search_and_respect_max_distance() {
    let t = TestDb::new().await.unwrap();
    let vectors = clustered(300, 6, DIMS, 0.5, 12);
    let ids = seed(&t, "acme", &vectors).await;
    let state = search_state(&t);
    let query = &vectors[3];
    let mut exact: Vec<(f64, Uuid)> = vectors
        .iter()
        .zip(&ids)
        .map(|(v, id)| (cosine_distance(query, v), *id))
        .collect();
    exact.sort_by(|a, b| a.0.total_cmp(&b.0));

    let (_, body) = post_search(
        &state,
        json!({"namespace": "acme", "vector": query, "k": 10}),
    )
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
    let (_, body) = post_search(
        &state,
        json!({"namespace": "acme", "vector": query, "k": 10, "max_distance": ceiling}),
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
    let t = TestDb::new().await.unwrap();
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
    let t = TestDb::new().await.unwrap();
    let state = search_state(&t);
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
        let (got_status, body) = call(&state, event).await;
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
    let t = TestDb::new().await.unwrap();
    let vectors = clustered(3, 1, DIMS, 0.1, 15);
    let ids = seed(&t, "acme", &vectors).await;
    let state = search_state(&t);

    let (status, body) = call(
        &state,
        http_v2_request(
            "GET",
            &format!("/items/{}", ids[1]),
            "namespace=acme",
            None,
            None,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["id"].clone(), body["metadata"]["i"].clone()),
        (json!(ids[1]), json!(1))
    );
    assert!(body.get("vector").is_none(), "no vector unless asked");
    let (_, body) = call(
        &state,
        http_v2_request(
            "GET",
            &format!("/items/{}", ids[1]),
            "namespace=acme&include_vector=true",
            None,
            None,
        ),
    )
    .await;
    assert_eq!(body["vector"].as_array().unwrap().len(), DIMS);

    let (status, body) = call(&state, http_v2_request("GET", "/health", "", None, None)).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    // REST API (v1) with a stage prefix in the request context.
    let (status, body) = call(
        &state,
        rest_v1_request(
            "POST",
            "/search",
            Some(&json!({"namespace": "acme", "vector": vectors[0], "k": 2}).to_string()),
            None,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_authorizer_namespace_wins_and_another_one_is_forbidden() {
    let t = TestDb::new().await.unwrap();
    let vectors = clustered(4, 1, DIMS, 0.1, 16);
    seed(&t, "acme", &vectors[..2]).await;
    seed(&t, "globex", &vectors[2..]).await;
    let state = search_state(&t);
    let body = json!({"vector": vectors[0], "k": 10}).to_string();

    // JWT claim says acme: only acme's rows, without naming a namespace.
    let (status, out) = call(
        &state,
        http_v2_request("POST", "/search", "", Some(&body), Some("acme")),
    )
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
    let (status, out) = call(
        &state,
        http_v2_request("POST", "/search", "", Some(&other), Some("acme")),
    )
    .await;
    assert_eq!(
        (status, out["error"]["code"].clone()),
        (403, json!("namespace_forbidden"))
    );
    // Lambda authorizer context on a REST API.
    let (status, _) = call(
        &state,
        rest_v1_request("POST", "/search", Some(&other), Some("acme")),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_database_that_is_down_is_503_with_retry_after_quickly() {
    let t = TestDb::new().await.unwrap();
    let config = t
        .config()
        .with_url("postgres://kit_app:unused@127.0.0.1:9/kit");
    let state = State::new(Settings {
        auth: search::Auth::none(),
        ..Settings::new(config)
    })
    .unwrap();
    let started = std::time::Instant::now();
    let request: Request = search::event::request_from_slice(
        http_v2_request("GET", "/health", "", None, None)
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let response = handler(&state, request).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (status, body) = post_search(&state, json!({"vector": [1.0, 0.0]})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (503, json!("database_unavailable"))
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
