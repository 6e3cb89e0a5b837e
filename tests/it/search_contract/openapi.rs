//! docs/openapi.yaml against the function: its error codes are the function's, every
//! response it documents is one the handler really gives (each validated against its
//! schema), and its request schema accepts the contract's examples.

use std::collections::BTreeSet;

use kit_support::corpus::{clustered, DIMS};
use kit_support::events::http_v2_request;
use kit_support::search_corpus::seed_rows;
use kit_support::{SearchFn, TestStack};
use search::Limits;
use serde_json::{json, Value};
use uuid::Uuid;

fn openapi() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("docs/openapi.yaml");
    serde_norway::from_str(&text).expect("docs/openapi.yaml parses as YAML")
}

/// The response schema the document gives `(path, method, status)`, resolved against
/// the whole document so `$ref`s into `components` work.
fn response_validator(doc: &Value, path: &str, method: &str, status: u16) -> jsonschema::Validator {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "no {method} {path} in the document");
    let mut response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} does not document status {status}"
    );
    if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
        response = doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {reference}"));
    }
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema"
    );
    schema_validator(doc, schema.clone())
}

fn schema_validator(doc: &Value, schema: Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    });
    jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .expect("the schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance} violates the document: {errors:?}"
    );
}

/// Codes passed to `bad_request("…")` / `not_found("…")` in the function's sources.
fn codes_in_sources() -> BTreeSet<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions/search/src");
    let mut codes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for call in ["bad_request(", "not_found("] {
            for (at, _) in text.match_indices(call) {
                let rest = text[at + call.len()..].trim_start();
                if let Some(rest) = rest.strip_prefix('"') {
                    let code = &rest[..rest.find('"').unwrap()];
                    codes.insert(code.to_owned());
                }
            }
        }
    }
    codes
}

/// The codes `search::error::CODES` lists.
fn known_codes() -> BTreeSet<String> {
    search::error::CODES
        .iter()
        .map(|(c, _)| c.to_string())
        .collect()
}

#[test]
fn the_documents_error_codes_are_exactly_the_functions() {
    let doc = openapi();
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1.")));

    // The document's error codes are exactly the ones the function can return.
    let documented: BTreeSet<String> = doc["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let known = known_codes();
    assert_eq!(
        documented, known,
        "docs/openapi.yaml vs search::error::CODES"
    );
    let used = codes_in_sources();
    assert!(
        used.is_subset(&known)
            && used.contains("invalid_filter")
            && used.contains("item_not_found"),
        "codes in the sources {used:?} vs search::error::CODES"
    );
}

/// The functions every documented response comes from: a working one, one whose
/// database is down, one whose database has no schema (500), one with a small response
/// bound; and five rows in `acme`.
struct Functions {
    state: SearchFn,
    down: SearchFn,
    no_schema: SearchFn,
    small_responses: SearchFn,
    ids: Vec<Uuid>,
    vector: Vec<f32>,
    _stacks: (TestStack, TestStack),
}

async fn functions() -> Functions {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(5, 1, DIMS, 0.3, 121);
    let metadata = vec![json!({"lang": "en"}).as_object().unwrap().clone(); 5];
    let ids = seed_rows(&t, "acme", &vectors, &metadata).await.unwrap();
    let down_config = t
        .config()
        .with_url("postgres://kit_app:unused@127.0.0.1:9/kit");
    let broken = TestStack::new().await.unwrap();
    let admin = broken.admin_pool().await.unwrap();
    sqlx::query("DROP TABLE embeddings")
        .execute(&admin)
        .await
        .unwrap();
    Functions {
        state: t.search(),
        down: SearchFn::new(&down_config, Limits::default(), search::Auth::none()),
        no_schema: broken.search(),
        small_responses: t.search_with(
            Limits {
                max_response_bytes: 65_536,
                ..Limits::default()
            },
            search::Auth::none(),
        ),
        ids,
        vector: vectors[0].clone(),
        _stacks: (t, broken),
    }
}

fn post(body: Value, claim: Option<&str>) -> Value {
    http_v2_request("POST", "/search", "", Some(&body.to_string()), claim)
}

fn get(path: &str, query: &str) -> Value {
    http_v2_request("GET", path, query, None, None)
}

/// (function, event, path template, method, status, code)
type Case<'a> = (&'a SearchFn, Value, &'a str, &'a str, u16, Option<&'a str>);

/// One request for every documented (path, method, status), and one for every code.
fn cases(f: &Functions) -> Vec<Case<'_>> {
    let (state, down, no_schema, small_responses) =
        (&f.state, &f.down, &f.no_schema, &f.small_responses);
    let (ids, v) = (&f.ids, &f.vector);
    vec![
        (
            state,
            post(
                json!({"namespace": "acme", "vector": v, "include": ["metadata", "content", "vector"]}),
                None,
            ),
            "/search",
            "post",
            200,
            None,
        ),
        (
            state,
            post(
                json!({"namespace": "acme", "vector": v, "k": 2, "include": []}),
                None,
            ),
            "/search",
            "post",
            200,
            None,
        ),
        (
            state,
            get(&format!("/items/{}", ids[0]), "namespace=acme"),
            "/items/{id}",
            "get",
            200,
            None,
        ),
        (
            state,
            get(
                &format!("/items/{}", ids[0]),
                "namespace=acme&include_vector=true",
            ),
            "/items/{id}",
            "get",
            200,
            None,
        ),
        (state, get("/health", ""), "/health", "get", 200, None),
        (
            state,
            http_v2_request("POST", "/search", "", Some("{"), None),
            "/search",
            "post",
            400,
            Some("invalid_json"),
        ),
        (
            state,
            post(json!({"vector": v, "vectr": 1}), None),
            "/search",
            "post",
            400,
            Some("unknown_field"),
        ),
        (
            state,
            post(json!({"vector": v, "namespace": "A B"}), None),
            "/search",
            "post",
            400,
            Some("invalid_namespace"),
        ),
        (
            state,
            post(json!({"vector": [1, 2]}), None),
            "/search",
            "post",
            400,
            Some("invalid_vector"),
        ),
        (
            state,
            post(json!({"vector": v, "k": 0}), None),
            "/search",
            "post",
            400,
            Some("invalid_k"),
        ),
        (
            state,
            post(json!({"vector": v, "ef_search": 0}), None),
            "/search",
            "post",
            400,
            Some("invalid_ef_search"),
        ),
        (
            state,
            post(json!({"vector": v, "filter": {"a": {"$nope": 1}}}), None),
            "/search",
            "post",
            400,
            Some("invalid_filter"),
        ),
        (
            small_responses,
            post(
                json!({"namespace": "acme", "vector": v, "k": 5, "include": ["vector"]}),
                None,
            ),
            "/search",
            "post",
            400,
            Some("response_too_large"),
        ),
        (
            state,
            post(json!({"vector": v, "max_distance": -1}), None),
            "/search",
            "post",
            400,
            Some("invalid_max_distance"),
        ),
        (
            state,
            post(json!({"vector": v, "include": "all"}), None),
            "/search",
            "post",
            400,
            Some("invalid_include"),
        ),
        (
            state,
            post(json!({"vector": v, "namespace": "globex"}), Some("acme")),
            "/search",
            "post",
            403,
            Some("namespace_forbidden"),
        ),
        (
            state,
            http_v2_request(
                "POST",
                "/search",
                "",
                Some(&" ".repeat(1024 * 1024 + 1)),
                None,
            ),
            "/search",
            "post",
            413,
            Some("body_too_large"),
        ),
        (
            no_schema,
            post(json!({"vector": v}), None),
            "/search",
            "post",
            500,
            Some("internal"),
        ),
        (
            down,
            post(json!({"vector": v}), None),
            "/search",
            "post",
            503,
            Some("database_unavailable"),
        ),
        (
            state,
            get("/items/nope", "namespace=acme"),
            "/items/{id}",
            "get",
            400,
            Some("invalid_id"),
        ),
        (
            state,
            get(
                &format!("/items/{}", ids[0]),
                "namespace=acme&include_vector=yes",
            ),
            "/items/{id}",
            "get",
            400,
            Some("invalid_include"),
        ),
        (
            state,
            http_v2_request(
                "GET",
                &format!("/items/{}", ids[0]),
                "namespace=globex",
                None,
                Some("acme"),
            ),
            "/items/{id}",
            "get",
            403,
            Some("namespace_forbidden"),
        ),
        (
            state,
            get(&format!("/items/{}", Uuid::new_v4()), "namespace=acme"),
            "/items/{id}",
            "get",
            404,
            Some("item_not_found"),
        ),
        (
            no_schema,
            get(&format!("/items/{}", ids[0]), "namespace=acme"),
            "/items/{id}",
            "get",
            500,
            Some("internal"),
        ),
        (
            down,
            get(&format!("/items/{}", ids[0]), "namespace=acme"),
            "/items/{id}",
            "get",
            503,
            Some("database_unavailable"),
        ),
        (
            down,
            get("/health", ""),
            "/health",
            "get",
            503,
            Some("database_unavailable"),
        ),
    ]
}

/// Real responses, 200s and every error status, validate against the document; every
/// response it documents was exercised, and every code returned.
#[tokio::test]
async fn real_responses_match_the_openapi_document() {
    let doc = openapi();
    let known = known_codes();
    let f = functions().await;
    let (state, ids) = (&f.state, &f.ids);
    let mut exercised: BTreeSet<(String, String, u16)> = BTreeSet::new();
    let mut codes_seen: BTreeSet<String> = BTreeSet::new();
    for (state, event, path, method, status, code) in cases(&f) {
        let reply = state.call(&event).await;
        let what = format!("{method} {path} → {status} {code:?}");
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_eq!(
            reply.body["error"]["code"].as_str(),
            code,
            "{what}: {}",
            reply.body
        );
        if status == 503 {
            assert!(
                reply.headers.contains_key("retry-after"),
                "{what}: no Retry-After"
            );
        }
        assert_valid(
            &response_validator(&doc, path, method, status),
            &reply.body,
            &what,
        );
        exercised.insert((path.to_owned(), method.to_owned(), status));
        codes_seen.extend(code.map(str::to_owned));
    }
    // Unknown routes and methods answer with the documented Error schema.
    let error_schema = schema_validator(&doc, json!({"$ref": "#/components/schemas/Error"}));
    for (event, code) in [
        (get("/nowhere", ""), "route_not_found"),
        (get("/search", ""), "method_not_allowed"),
        (
            http_v2_request("DELETE", &format!("/items/{}", ids[0]), "", None, None),
            "method_not_allowed",
        ),
    ] {
        let reply = state.call(&event).await;
        assert_eq!(reply.body["error"]["code"].as_str(), Some(code));
        assert_valid(&error_schema, &reply.body, code);
        codes_seen.insert(code.to_owned());
    }
    // Every documented (path, method, status) was exercised, and every code returned.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for status in operation["responses"].as_object().unwrap().keys() {
                let key = (path.clone(), method.clone(), status.parse().unwrap());
                assert!(
                    exercised.contains(&key),
                    "documented but not exercised: {key:?}"
                );
            }
        }
    }
    assert_eq!(codes_seen, known, "codes exercised vs search::error::CODES");
}

#[test]
fn the_request_schema_accepts_the_contracts_examples_and_refuses_the_rest() {
    let doc = openapi();
    // The request schema accepts the contract's example and what the handler accepts.
    let request_schema =
        schema_validator(&doc, json!({"$ref": "#/components/schemas/SearchRequest"}));
    let example =
        &doc["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["example"];
    assert_valid(&request_schema, example, "the documented example");
    let contract_example = json!({
        "namespace": "acme", "vector": [0.01, 0.02], "k": 10,
        "filter": {"lang": "en", "year": {"$gte": 2024},
                   "$or": [{"source": "faq"}, {"source": {"$in": ["kb", "docs"]}}]},
        "max_distance": 0.35, "include": ["metadata", "content"], "ef_search": 100
    });
    assert_valid(
        &request_schema,
        &contract_example,
        "the contract's full example",
    );
    assert!(!request_schema.is_valid(&json!({"vector": [1], "vectr": 1})));
    assert!(!request_schema.is_valid(&json!({"vector": [1], "filter": {"a": {"$regex": "x"}}})));
    assert!(!request_schema.is_valid(&json!({"vector": [1], "filter": {"$nor": []}})));
}
