//! What the deadline and fault tests share (`mod fault_support;` in each): the real
//! handlers driven as the platform drives them, with a Lambda context and its deadline.

#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use kit_support::corpus::{clustered, DIMS};
use kit_support::events::{
    context_with_deadline, http_v2_request, sqs_event_json, upsert_body, STANDARD_QUEUE,
};
use lambda_http::{Body, Request, RequestExt};
use serde_json::{json, Value};
use storage::{Config, Database, Namespace, Upsert, Vector, WriteOp};
use uuid::Uuid;

/// Fails the test instead of hanging when a bound is missing.
pub async fn within<T>(limit: Duration, what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {limit:?}"))
}

/// `config` with `acquire` and `statement` as its own timeouts.
pub fn with_timeouts(mut config: Config, acquire: Duration, statement: Duration) -> Config {
    config.acquire_timeout = acquire;
    config.statement_timeout = statement;
    config
}

/// Writes `n` rows into namespace `default`; returns the first vector, to search for.
pub async fn seed(db: &Database, n: usize, created_at: DateTime<Utc>) -> Vec<f32> {
    let vectors = clustered(n, 2, DIMS, 0.4, 5);
    let ops: Vec<WriteOp> = vectors
        .iter()
        .map(|v| {
            WriteOp::Upsert(Upsert {
                namespace: Namespace::default(),
                id: Uuid::new_v4(),
                embedding: Vector::from(v.clone()),
                content: None,
                metadata: Default::default(),
                version: 1,
                created_at,
            })
        })
        .collect();
    db.write_batch(&ops).await.unwrap();
    vectors[0].clone()
}

/// A search's answer: status, `Retry-After`, JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    /// The error code, for an error.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

pub fn search_state(config: &Config) -> search::Search {
    let mut state =
        search::Search::new(config, search::Limits::default(), search::Auth::none()).unwrap();
    state.emit_metrics = false;
    state
}

/// `POST /search` for `vector` in namespace `default` through the real handler, with a
/// Lambda context whose deadline is `deadline_s` away.
pub async fn search(state: &search::Search, vector: &[f32], deadline_s: f64) -> Answer {
    let body = json!({"namespace": "default", "vector": vector, "k": 5}).to_string();
    let event = http_v2_request("POST", "/search", "", Some(&body), None);
    let request: Request = search::event::request_from_slice(event.to_string().as_bytes())
        .expect("a valid API Gateway event")
        .with_lambda_context(context_with_deadline(deadline_s));
    let response = search::handler(state, request)
        .await
        .expect("the handler never fails");
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("a JSON body"),
        other => panic!("unexpected body {other:?}"),
    };
    Answer {
        status: response.status().as_u16(),
        retry_after,
        body,
    }
}

/// `n` valid upsert bodies for new ids in namespace `default`, and the ids.
pub fn upserts(n: usize, seed: u64) -> (Vec<Uuid>, Vec<String>) {
    let vectors = clustered(n, 2, DIMS, 0.4, seed);
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    let bodies = ids
        .iter()
        .zip(&vectors)
        .map(|(id, v)| upsert_body(*id, "default", v, json!({}), 1))
        .collect();
    (ids, bodies)
}

/// An SQS event carrying `bodies`, with message ids `m0`, `m1`, ….
pub fn sqs_event(bodies: &[String]) -> SqsEvent {
    serde_json::from_value(sqs_event_json(bodies, STANDARD_QUEUE)).expect("a valid SQS event")
}

/// How many of `ids` are stored, read as the admin.
pub async fn stored(admin: &mut sqlx::PgConnection, ids: &[Uuid]) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE id = ANY($1)")
        .bind(ids)
        .fetch_one(admin)
        .await
        .unwrap()
}
