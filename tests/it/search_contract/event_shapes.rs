//! Every event shape API Gateway and Function URLs deliver (HTTP API v2, REST API v1,
//! Function URLs with and without IAM, base64 bodies) round-trips through the handler.

use kit_support::corpus::{clustered, DIMS};
use kit_support::events::{api_request, http_v2_request, rest_v1_request, Caller};
use kit_support::search_corpus::{function_url_request, seed_rows, UrlAuth};
use kit_support::TestStack;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::result_ids;

/// 20 rows in `acme` with `{"i": i, "lang": "en" | "de"}`; their ids and vectors.
async fn seeded() -> (TestStack, Vec<Uuid>, Vec<Vec<f32>>) {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(20, 2, DIMS, 0.4, 101);
    let metadata: Vec<Map<String, Value>> = (0..20)
        .map(|i| {
            json!({"i": i, "lang": (["en", "de"][i % 2])})
                .as_object()
                .unwrap()
                .clone()
        })
        .collect();
    let ids = seed_rows(&t, "acme", &vectors, &metadata).await.unwrap();
    (t, ids, vectors)
}

#[tokio::test]
async fn searches_round_trip_through_every_event_shape() {
    let (t, ids, vectors) = seeded().await;
    let state = t.search();
    let body = json!({"namespace": "acme", "vector": vectors[3], "k": 5,
                      "filter": {"lang": "de"}, "include": ["metadata", "content"]})
    .to_string();
    let unnamed = json!({"vector": vectors[3], "k": 5, "filter": {"lang": "de"},
                         "include": ["metadata", "content"]})
    .to_string();

    let shapes: Vec<(&str, Value)> = vec![
        (
            "HTTP API v2",
            http_v2_request("POST", "/search", "", Some(&body), None),
        ),
        (
            "HTTP API v2 + JWT claim",
            http_v2_request("POST", "/search", "", Some(&unnamed), Some("acme")),
        ),
        (
            "REST API v1 (stage prod)",
            rest_v1_request("POST", "/search", Some(&body), None),
        ),
        (
            "REST API v1 + Lambda authorizer",
            rest_v1_request("POST", "/search", Some(&unnamed), Some("acme")),
        ),
        (
            "Function URL",
            function_url_request("POST", "/search", "", Some(&body), false, UrlAuth::None),
        ),
        (
            "Function URL, base64 body",
            function_url_request("POST", "/search", "", Some(&body), true, UrlAuth::None),
        ),
        (
            "Function URL, AWS_IAM",
            function_url_request("POST", "/search", "", Some(&body), false, UrlAuth::AwsIam),
        ),
    ];
    let mut answers = Vec::new();
    for (name, event) in &shapes {
        let reply = state.call(event).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        assert_eq!(
            reply
                .headers
                .get("content-type")
                .map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "{name}"
        );
        assert_eq!(reply.body["namespace"], json!("acme"), "{name}");
        let hits = reply.body["results"].as_array().unwrap();
        assert_eq!(hits.len(), 5, "{name}");
        assert!(hits.iter().all(|h| h["metadata"]["lang"] == json!("de")
            && h["content"].as_str().is_some_and(|c| c.starts_with("doc "))));
        answers.push(result_ids(&reply.body));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(answers[0][0], ids[3]);
}

#[tokio::test]
async fn item_reads_round_trip_through_every_event_shape() {
    let (t, ids, _) = seeded().await;
    let state = t.search();
    // Items, with the namespace from the query string on every shape.
    let item_path = format!("/items/{}", ids[4]);
    // A REST API event without authorizer context, its query string parameters set.
    let v1_item = api_request(
        Caller::RestIam,
        "GET",
        &item_path,
        "namespace=acme&include_vector=true",
        None,
        None,
    );
    for (name, event) in [
        (
            "HTTP API v2",
            http_v2_request(
                "GET",
                &item_path,
                "namespace=acme&include_vector=true",
                None,
                None,
            ),
        ),
        ("REST API v1", v1_item),
        (
            "Function URL",
            function_url_request(
                "GET",
                &item_path,
                "namespace=acme&include_vector=true",
                None,
                false,
                UrlAuth::None,
            ),
        ),
    ] {
        let reply = state.call(&event).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        assert_eq!(reply.body["id"], json!(ids[4]), "{name}");
        assert_eq!(
            reply.body["metadata"],
            json!({"i": 4, "lang": "en"}),
            "{name}"
        );
        assert_eq!(
            reply.body["vector"].as_array().map(Vec::len),
            Some(DIMS),
            "{name}"
        );
    }
}

#[tokio::test]
async fn health_answers_on_every_event_shape_and_function_urls_route_like_the_api() {
    let t = TestStack::new().await.unwrap();
    let state = t.search();
    let body = json!({"namespace": "acme", "vector": clustered(1, 1, DIMS, 0.4, 101)[0], "k": 5})
        .to_string();
    for (name, event) in [
        (
            "HTTP API v2",
            http_v2_request("GET", "/health", "", None, None),
        ),
        ("REST API v1", rest_v1_request("GET", "/health", None, None)),
        (
            "Function URL",
            function_url_request("GET", "/health", "", None, false, UrlAuth::None),
        ),
    ] {
        let reply = state.call(&event).await;
        assert_eq!(
            (reply.status, reply.body),
            (200, json!({"status": "ok"})),
            "{name}"
        );
    }
    // Function URLs have no routes of their own: the handler's routing answers.
    let reply = state
        .call(&function_url_request(
            "GET",
            "/search",
            "",
            None,
            false,
            UrlAuth::None,
        ))
        .await;
    assert_eq!(
        (reply.status, reply.body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let reply = state
        .call(&function_url_request(
            "POST",
            "/",
            "",
            Some(&body),
            false,
            UrlAuth::None,
        ))
        .await;
    assert_eq!(
        (reply.status, reply.body["error"]["code"].as_str()),
        (404, Some("route_not_found"))
    );
}
