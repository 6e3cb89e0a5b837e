//! Search test material: a corpus whose metadata covers every JSON type, mixed types
//! under one key, missing fields, unicode and hostile keys; seeding through storage; and
//! Lambda Function URL event JSON.

use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use storage::{Database, Include, Namespace, SearchQuery, Upsert, Vector, WriteOp};
use uuid::Uuid;

use crate::TestDb;

/// The `k` nearest to `vector` in the default namespace, no filter or ceiling, ids and
/// distances only, `ef_search` 100 without iterative scans, the handle's timeout.
/// Tests change what they exercise with struct update syntax.
pub fn nearest_query(vector: &[f32], k: u32) -> SearchQuery {
    SearchQuery {
        namespace: Namespace::default(),
        vector: Vector::from(vector.to_vec()),
        k,
        filter: None,
        max_distance: None,
        include: Include::default(),
        ef_search: 100,
        iterative_scan: false,
        max_scan_tuples: 20_000,
        timeout: None,
    }
}

/// Strings that have broken SQL builders somewhere: quotes, comments, statement
/// separators, a classic tautology, backslashes, unicode (combining marks, RTL, emoji,
/// a BOM), JSON-path and `jsonb` operator look-alikes. None contains NUL, which
/// PostgreSQL's `jsonb` cannot store (the API refuses NUL with a 400).
pub const HOSTILE: &[&str] = &[
    "'",
    "''",
    "\"",
    "a'b",
    "x\"y",
    "--",
    ";",
    "' OR '1'='1' --",
    "'; DROP TABLE embeddings; --",
    "\") OR TRUE --",
    "$1",
    "?",
    "?|",
    "@>",
    "->>",
    "\\",
    "\\'",
    "%",
    "_",
    "{}",
    "[]",
    "null",
    "true",
    "ключ",
    "日本語",
    "e\u{301}",
    "\u{202e}abc",
    "🎉",
    "\u{feff}bom",
    " leading and trailing ",
    "",
];

/// Metadata for `n` rows, reproducible from `seed`. Row `i` always has `{"i": i}`; the
/// other fields vary in type and presence, so every operator meets numbers, strings,
/// booleans, null, arrays, objects, absent fields and mixed types.
pub fn varied_metadata(n: usize, seed: u64) -> Vec<Map<String, Value>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut m = Map::new();
            m.insert("i".into(), json!(i));
            m.insert("mod7".into(), json!(i % 7));
            if i % 11 != 0 {
                let langs = ["en", "de", "fr", "日本語"];
                m.insert("lang".into(), json!(langs[rng.gen_range(0..langs.len())]));
            }
            let year = 2018 + (i % 10) as i64;
            match i % 9 {
                0 => {} // absent
                1 => {
                    m.insert("year".into(), json!(year.to_string()));
                }
                2 => {
                    m.insert("year".into(), json!(year as f64));
                }
                3 => {
                    m.insert("year".into(), json!(year as f64 + 0.5));
                }
                4 => {
                    m.insert("year".into(), Value::Null);
                }
                _ => {
                    m.insert("year".into(), json!(year));
                }
            }
            let score: f64 = (rng.gen_range(-1000..=1000) as f64) / 1000.0;
            m.insert(
                "score".into(),
                match i % 13 {
                    0 => json!(9_007_199_254_740_993u64),
                    1 => json!(9_007_199_254_740_992u64),
                    2 => json!(-0.0),
                    3 => json!(0),
                    4 => json!(1e-7),
                    5 => json!(-2),
                    _ => json!(score),
                },
            );
            match i % 5 {
                0 => {}
                1 => {
                    m.insert("draft".into(), json!(true));
                }
                2 => {
                    m.insert("draft".into(), json!(false));
                }
                3 => {
                    m.insert("draft".into(), json!("false"));
                }
                _ => {
                    m.insert("draft".into(), json!(0));
                }
            }
            let tags = match i % 6 {
                0 => json!(["a", "b"]),
                1 => json!(["b", "a"]),
                2 => json!([]),
                3 => json!(["a"]),
                4 => json!([1, "a", null]),
                _ => Value::Null,
            };
            if !tags.is_null() {
                m.insert("tags".into(), tags);
            }
            match i % 8 {
                0 => {
                    m.insert("author".into(), json!({"name": "ann", "id": 1}));
                }
                1 => {
                    m.insert("author".into(), json!({"id": 1.0, "name": "ann"}));
                }
                2 => {
                    m.insert("author".into(), json!({"name": "ann", "id": 1, "x": null}));
                }
                3 => {
                    m.insert("author".into(), json!({}));
                }
                4 => {
                    m.insert("author".into(), json!("ann"));
                }
                _ => {}
            }
            let texts = [
                "",
                " ",
                "O'Reilly",
                "back\\slash",
                "Zebra",
                "apple",
                "Äpfel",
                "äpfel",
                "10",
                "9",
                "e\u{301}",
                "é",
                "🎉",
            ];
            m.insert("text".into(), json!(texts[i % texts.len()]));
            if i % 4 == 0 {
                m.insert("nullable".into(), Value::Null);
            } else if i % 4 == 1 {
                m.insert("nullable".into(), json!("set"));
            }
            m.insert(
                "ключ".into(),
                json!(if i % 3 == 0 {
                    "значение"
                } else {
                    "другое"
                }),
            );
            if i % 2 == 0 {
                m.insert("emoji 🎉".into(), json!(i % 4 == 0));
            }
            // Hostile keys and values, stored as data: the filter must find them exactly.
            let hostile = HOSTILE[i % HOSTILE.len()];
            m.insert(hostile.to_owned(), json!(i % 3));
            m.insert("hostile".into(), json!(hostile));
            if i % 10 == 0 {
                m.insert("nested".into(), json!([[[[i % 20]]]]));
            }
            if i == 7 {
                m.insert("long".into(), json!("x".repeat(10 * 1024)));
            }
            m
        })
        .collect()
}

/// Writes `vectors[j]` with `metadata[j]` into `namespace` of the test's database
/// through storage's batch writer (through PgBouncer); returns the ids in order.
///
/// Bulk loads into an HNSW-indexed table are slow on a busy two-core machine, so the
/// load gets its own handle with a generous statement timeout.
pub async fn seed_rows(
    t: &TestDb,
    namespace: &str,
    vectors: &[Vec<f32>],
    metadata: &[Map<String, Value>],
) -> anyhow::Result<Vec<Uuid>> {
    let mut config = t.config();
    config.statement_timeout = Duration::from_secs(600);
    let db = Database::connect_lazy(&config)?;
    let ids = write_rows(&db, namespace, vectors, metadata).await;
    db.close().await;
    ids
}

/// [`seed_rows`] through a given handle (whose statement timeout applies).
pub async fn write_rows(
    db: &Database,
    namespace: &str,
    vectors: &[Vec<f32>],
    metadata: &[Map<String, Value>],
) -> anyhow::Result<Vec<Uuid>> {
    anyhow::ensure!(vectors.len() == metadata.len(), "one metadata per vector");
    let namespace = Namespace::parse(namespace)?;
    let ids: Vec<Uuid> = vectors.iter().map(|_| Uuid::new_v4()).collect();
    let ops: Vec<WriteOp> = vectors
        .iter()
        .zip(metadata)
        .zip(&ids)
        .map(|((v, m), id)| {
            WriteOp::Upsert(Upsert {
                namespace: namespace.clone(),
                id: *id,
                embedding: Vector::from(v.clone()),
                content: Some(format!("doc {id}")),
                metadata: m.clone(),
                version: 0,
                created_at: sqlx::types::chrono::Utc::now(),
            })
        })
        .collect();
    for chunk in ops.chunks(250) {
        db.write_batch(chunk).await.context("seeding the corpus")?;
    }
    Ok(ids)
}

/// How a Function URL authenticates: `NONE` (no authorizer) or `AWS_IAM` (the caller's
/// IAM identity under `requestContext.authorizer.iam`, never a namespace claim).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlAuth {
    None,
    AwsIam,
}

/// A Lambda Function URL request (payload 2.0, the shape AWS documents), on
/// `<url-id>.lambda-url.us-east-1.on.aws`. With `base64`, the body arrives
/// base64-encoded, as Function URLs deliver bodies they do not recognise as text.
pub fn function_url_request(
    method: &str,
    path: &str,
    query: &str,
    body: Option<&str>,
    base64: bool,
    auth: UrlAuth,
) -> Value {
    let url_id = "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6";
    let query_parameters: Map<String, Value> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    let authorizer = match auth {
        UrlAuth::None => Value::Null,
        UrlAuth::AwsIam => json!({"iam": {
            "accessKey": "AKIAIOSFODNN7EXAMPLE",
            "accountId": "111122223333",
            "callerId": "AIDACKCEVSQ6C2EXAMPLE",
            "cognitoIdentity": null,
            "principalOrgId": null,
            "userArn": "arn:aws:iam::111122223333:user/example-user",
            "userId": "AIDACOSFODNN7EXAMPLE"
        }}),
    };
    let mut context = json!({
        "accountId": "anonymous",
        "apiId": url_id,
        "domainName": format!("{url_id}.lambda-url.us-east-1.on.aws"),
        "domainPrefix": url_id,
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "203.0.113.7",
            "userAgent": "kit-tests"
        },
        "requestId": Uuid::new_v4().to_string(),
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2026:19:03:58 +0000",
        "timeEpoch": 1_773_342_238_390u64
    });
    if !authorizer.is_null() {
        context["authorizer"] = authorizer;
        context["accountId"] = json!("111122223333");
    }
    let content_type = if base64 {
        "application/octet-stream"
    } else {
        "application/json"
    };
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "content-type": content_type,
            "host": format!("{url_id}.lambda-url.us-east-1.on.aws"),
            "x-amzn-trace-id": "Root=1-5eb33c07-de25b420912dcd8c8b93d5d8",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
            "x-forwarded-for": "203.0.113.7"
        },
        "queryStringParameters": if query_parameters.is_empty() { Value::Null } else { Value::Object(query_parameters) },
        "requestContext": context,
        "body": match body {
            None => Value::Null,
            Some(b) if base64 => json!(base64_encode(b.as_bytes())),
            Some(b) => json!(b),
        },
        "pathParameters": null,
        "isBase64Encoded": base64 && body.is_some(),
        "stageVariables": null
    })
}

/// Standard base64 with padding (RFC 4648), for base64-encoded event bodies.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (j, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if j <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn the_corpus_mixes_types_under_one_key() {
        let rows = varied_metadata(200, 1);
        let kinds: std::collections::HashSet<&str> = rows
            .iter()
            .filter_map(|m| m.get("year"))
            .map(|v| match v {
                Value::Null => "null",
                Value::String(_) => "string",
                Value::Number(n) if n.is_f64() => "float",
                Value::Number(_) => "int",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(rows.iter().any(|m| !m.contains_key("year")));
    }
}
