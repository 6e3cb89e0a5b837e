//! Responses above Lambda's 6 MB payload limit are 400 response_too_large, measured as
//! Lambda returns them (envelope included), in every API shape.
//!
//! Lambda refuses a synchronous response payload over 6 MB (API Gateway then answers
//! 502). Rows whose content is all quotes double in size as the body becomes the
//! envelope's JSON string: a response of 16 of them has a ~4 MB body but a ~8 MB
//! payload, and is refused as 400 response_too_large; 8 of them fit and are sent
//! whole, in every API shape, under the limit envelope included.

use kit_support::corpus::{clustered, DIMS};
use kit_support::events::{http_v2_request, rest_v1_request};
use kit_support::search_corpus::{function_url_request, seed_rows, UrlAuth};
use kit_support::TestStack;
use search::Limits;
use serde_json::{json, Value};

const LAMBDA_LIMIT: usize = search::response::LAMBDA_RESPONSE_LIMIT;

/// 20 rows in `acme` whose content is 120,000 double quotes; the query vector.
async fn rows_of_quotes() -> (TestStack, Vec<f32>) {
    let t = TestStack::new().await.unwrap();
    let n = 20;
    let vectors = clustered(n, 1, DIMS, 0.1, 139);
    let metadata = vec![json!({"lang": "en"}).as_object().unwrap().clone(); n];
    seed_rows(&t, "acme", &vectors, &metadata).await.unwrap();
    let admin = t.admin_pool().await.unwrap();
    sqlx::query("UPDATE embeddings SET content = repeat('\"', 120000)")
        .execute(&admin)
        .await
        .unwrap();
    (t, vectors[0].clone())
}

/// A search of `k` rows with everything included.
fn search(vector: &[f32], k: usize) -> String {
    json!({"namespace": "acme", "vector": vector, "k": k,
           "include": ["vector", "content", "metadata"]})
    .to_string()
}

/// `POST /search` with `body` in every API shape.
fn events(body: &str) -> [(&'static str, Value); 3] {
    [
        (
            "HTTP API",
            http_v2_request("POST", "/search", "", Some(body), None),
        ),
        (
            "REST API",
            rest_v1_request("POST", "/search", Some(body), None),
        ),
        (
            "Function URL",
            function_url_request("POST", "/search", "", Some(body), false, UrlAuth::None),
        ),
    ]
}

/// Eight rows fit: sent whole, the payload (about twice the body) under the limit.
#[tokio::test]
async fn a_response_under_lambdas_payload_limit_is_sent_whole_in_every_shape() {
    let (t, vector) = rows_of_quotes().await;
    let state = t.search();
    for (api, event) in events(&search(&vector, 8)) {
        let payload = state.lambda_payload(&event).await;
        assert!(
            payload.len() < LAMBDA_LIMIT,
            "{api}: {} bytes",
            payload.len()
        );
        let envelope: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(envelope["statusCode"], 200, "{api}");
        let body: Value = serde_json::from_str(envelope["body"].as_str().unwrap()).unwrap();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 8, "{api}");
        assert!(results.iter().all(|r| {
            r["content"].as_str().is_some_and(|c| c.len() == 120_000)
                && r["vector"].as_array().is_some_and(|v| v.len() == DIMS)
        }));
        let body_len = envelope["body"].as_str().unwrap().len();
        eprintln!(
            "{api}, k = 8: body {body_len} bytes, Lambda payload {} bytes",
            payload.len()
        );
        // The payload is twice the body: twice this body (k = 16) would pass a check
        // of the body's own length, yet be twice Lambda's limit once sent.
        assert!(payload.len() > body_len * 19 / 10, "{api}");
        assert!(body_len * 2 < 6_000_000, "{api}");
    }
}

/// Sixteen rows: a ~4 MB body but a ~8 MB payload, refused with the size, the limit and
/// the fix.
#[tokio::test]
async fn a_response_over_lambdas_payload_limit_is_400_response_too_large() {
    let (t, vector) = rows_of_quotes().await;
    let state = t.search();
    for (api, event) in events(&search(&vector, 16)) {
        let payload = state.lambda_payload(&event).await;
        let envelope: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(envelope["statusCode"], 400, "{api}: {envelope}");
        let body: Value = serde_json::from_str(envelope["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "response_too_large", "{api}");
        let message = body["error"]["message"].as_str().unwrap();
        // The size (about 8 MB as Lambda would return it), the limit and the fix.
        let size: usize = message
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap();
        assert!(
            (7_000_000..9_000_000).contains(&size)
                && message.contains("6000000")
                && message.contains("MAX_RESPONSE_BYTES")
                && message.contains("k = 16")
                && message.contains("include"),
            "{api}: {message}"
        );
        assert!(payload.len() < 4096, "{api}: {} bytes", payload.len());
    }
}

#[tokio::test]
async fn max_response_bytes_is_the_setting_that_decides() {
    let (t, vector) = rows_of_quotes().await;
    let lower = t.search_with(
        Limits {
            max_response_bytes: 1_000_000,
            ..Limits::default()
        },
        search::Auth::none(),
    );
    let reply = lower.call(&events(&search(&vector, 8))[0].1).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["code"], "response_too_large");
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("the limit is 1000000"));
}
