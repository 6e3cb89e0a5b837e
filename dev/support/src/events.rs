//! Real Lambda event JSON (the `aws_lambda_events` fixtures' shapes), filled in.

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{json, Value};

const SQS_EVENT: &str = include_str!("../fixtures/example-sqs-event.json");

/// An SQS event whose records carry `bodies`, with message ids `m0`, `m1`, ….
/// `queue_arn` lets a test pick a FIFO queue (ARN ending in `.fifo`).
pub fn sqs_event_json(bodies: &[String], queue_arn: &str) -> Value {
    let fixture: Value = serde_json::from_str(SQS_EVENT).expect("fixture parses");
    let template = fixture["Records"][0].clone();
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut record = template.clone();
            record["messageId"] = json!(format!("m{i}"));
            record["body"] = json!(body);
            record["eventSourceARN"] = json!(queue_arn);
            record
        })
        .collect();
    json!({ "Records": records })
}

/// A message body as a test writes it: text, or `None` for a message without a body.
pub trait MessageBody {
    fn text(&self) -> Option<&str>;
}

impl MessageBody for String {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl MessageBody for &str {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl MessageBody for Option<String> {
    fn text(&self) -> Option<&str> {
        self.as_deref()
    }
}

/// [`sqs_event_json`] typed as the ingest handler receives it; a `None` body is a
/// message without one (`"body": null`).
pub fn sqs_event<B: MessageBody>(bodies: &[B], queue_arn: &str) -> SqsEvent {
    let texts: Vec<String> = bodies
        .iter()
        .map(|b| b.text().unwrap_or_default().to_owned())
        .collect();
    let mut value = sqs_event_json(&texts, queue_arn);
    for (i, body) in bodies.iter().enumerate() {
        if body.text().is_none() {
            value["Records"][i]["body"] = Value::Null;
        }
    }
    serde_json::from_value(value).expect("a valid SQS event")
}

pub const STANDARD_QUEUE: &str = "arn:aws:sqs:us-west-2:123456789012:kit-ingest";
pub const FIFO_QUEUE: &str = "arn:aws:sqs:us-west-2:123456789012:kit-ingest.fifo";

/// An ingest message body for an upsert.
pub fn upsert_body(
    id: uuid::Uuid,
    namespace: &str,
    embedding: &[f32],
    metadata: Value,
    version: u64,
) -> String {
    json!({
        "op": "upsert",
        "id": id,
        "namespace": namespace,
        "embedding": embedding,
        "content": format!("document {id}"),
        "metadata": metadata,
        "version": version,
    })
    .to_string()
}

/// A Lambda context whose deadline is `seconds` from now.
pub fn context_with_deadline(seconds: f64) -> lambda_context::Context {
    let mut context = lambda_context::Context::default();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    context.deadline = now_ms + (seconds * 1000.0) as u64;
    context.request_id = uuid::Uuid::new_v4().to_string();
    context
}

/// Re-exported so tests and helpers agree on one `Context` type.
pub mod lambda_context {
    pub use lambda_runtime::Context;
}

const HTTP_V2: &str = include_str!("../fixtures/example-apigw-v2-request-jwt-authorizer.json");
const REST_V1: &str = include_str!("../fixtures/example-apigw-request.json");

/// An API Gateway HTTP API (payload 2.0) request — also the Function URL shape. With
/// `namespace_claim`, the JWT authorizer carries `{"namespace": …}`; without, there is
/// no authorizer.
pub fn http_v2_request(
    method: &str,
    path: &str,
    query: &str,
    body: Option<&str>,
    namespace_claim: Option<&str>,
) -> Value {
    let mut event: Value = serde_json::from_str(HTTP_V2).expect("fixture parses");
    event["routeKey"] = json!("$default");
    event["rawPath"] = json!(path);
    event["rawQueryString"] = json!(query);
    event["queryStringParameters"] = query_map(query);
    event["pathParameters"] = json!({});
    event["cookies"] = json!([]);
    event["headers"] = json!({"content-type": "application/json"});
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["routeKey"] = json!("$default");
    event["requestContext"]["stage"] = json!("$default");
    match namespace_claim {
        Some(ns) => {
            event["requestContext"]["authorizer"] =
                json!({"jwt": {"claims": {"namespace": ns, "sub": "user-1"}, "scopes": []}})
        }
        None => {
            event["requestContext"]
                .as_object_mut()
                .expect("object")
                .remove("authorizer");
        }
    }
    event["body"] = body.map_or(Value::Null, |b| json!(b));
    event["isBase64Encoded"] = json!(false);
    event
}

/// An API Gateway REST API (payload 1.0) request on stage `prod`; with `namespace_context`,
/// a Lambda authorizer put `{"namespace": …}` in its context.
pub fn rest_v1_request(
    method: &str,
    path: &str,
    body: Option<&str>,
    namespace_context: Option<&str>,
) -> Value {
    let mut event: Value = serde_json::from_str(REST_V1).expect("fixture parses");
    event["resource"] = json!(path);
    event["path"] = json!(path);
    event["httpMethod"] = json!(method);
    event["headers"] = json!({"content-type": "application/json"});
    event["multiValueHeaders"] = json!({"content-type": ["application/json"]});
    event["queryStringParameters"] = Value::Null;
    event["multiValueQueryStringParameters"] = Value::Null;
    event["pathParameters"] = Value::Null;
    event["requestContext"]["path"] = json!(format!("/prod{path}"));
    event["requestContext"]["resourcePath"] = json!(path);
    event["requestContext"]["httpMethod"] = json!(method);
    event["requestContext"]["authorizer"] = match namespace_context {
        Some(ns) => json!({"principalId": "user-1", "namespace": ns}),
        None => json!({}),
    };
    event["body"] = body.map_or(Value::Null, |b| json!(b));
    event["isBase64Encoded"] = json!(false);
    event
}

fn query_map(query: &str) -> Value {
    let pairs: serde_json::Map<String, Value> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    Value::Object(pairs)
}

const HTTP_V2_LAMBDA: &str =
    include_str!("../fixtures/example-apigw-v2-request-lambda-authorizer.json");
const HTTP_V2_IAM: &str = include_str!("../fixtures/example-apigw-v2-request-iam.json");

/// Who an API event says the caller is: the authorizer shapes API Gateway and Function
/// URLs deliver (each taken from its `aws_lambda_events` fixture).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// HTTP API, JWT authorizer: `requestContext.authorizer.jwt.claims`.
    HttpJwt,
    /// HTTP API, Lambda authorizer: `requestContext.authorizer.lambda`.
    HttpLambda,
    /// REST API, Cognito user pool authorizer: `requestContext.authorizer.claims`.
    RestCognito,
    /// REST API, Lambda authorizer: its context flat in `requestContext.authorizer`.
    RestLambda,
    /// HTTP API or Function URL with `AWS_IAM`: `requestContext.authorizer.iam`, no claims.
    HttpIam,
    /// REST API with `AWS_IAM`: `requestContext.identity` names the signer, no authorizer.
    RestIam,
    /// HTTP API or Function URL without any authorizer.
    HttpAnonymous,
    /// REST API without any authorizer or signed identity.
    RestAnonymous,
}

impl Caller {
    /// The shapes that carry claims (authorizer context).
    pub const WITH_CLAIMS: [Caller; 4] = [
        Caller::HttpJwt,
        Caller::HttpLambda,
        Caller::RestCognito,
        Caller::RestLambda,
    ];
    /// The shapes without claims.
    pub const WITHOUT_CLAIMS: [Caller; 4] = [
        Caller::HttpIam,
        Caller::RestIam,
        Caller::HttpAnonymous,
        Caller::RestAnonymous,
    ];

    pub fn is_iam(self) -> bool {
        matches!(self, Caller::HttpIam | Caller::RestIam)
    }
}

/// An API event from `caller` for `method path?query` with `body`. For the shapes with
/// claims, `claim` is the value of the `namespace` claim (any JSON: a string, a number,
/// an object; `None` leaves it out); the shapes without claims ignore it.
pub fn api_request(
    caller: Caller,
    method: &str,
    path: &str,
    query: &str,
    body: Option<&str>,
    claim: Option<Value>,
) -> Value {
    let with_claim = |mut context: Value| {
        if let Some(value) = claim.clone() {
            context["namespace"] = value;
        }
        context
    };
    let fixture_authorizer = |fixture: &str| -> Value {
        let event: Value = serde_json::from_str(fixture).expect("fixture parses");
        event["requestContext"]["authorizer"].clone()
    };
    let mut event = match caller {
        Caller::HttpJwt | Caller::HttpLambda | Caller::HttpIam | Caller::HttpAnonymous => {
            http_v2_request(method, path, query, body, None)
        }
        _ => {
            let mut event = rest_v1_request(method, path, body, None);
            let params = query_map(query);
            if params.as_object().is_some_and(|p| !p.is_empty()) {
                let multi: serde_json::Map<String, Value> = params
                    .as_object()
                    .expect("object")
                    .iter()
                    .map(|(k, v)| (k.clone(), json!([v])))
                    .collect();
                event["queryStringParameters"] = params;
                event["multiValueQueryStringParameters"] = Value::Object(multi);
            }
            event
        }
    };
    let context = &mut event["requestContext"];
    match caller {
        Caller::HttpJwt => {
            let mut authorizer = fixture_authorizer(HTTP_V2);
            authorizer["jwt"]["claims"] = with_claim(authorizer["jwt"]["claims"].clone());
            context["authorizer"] = authorizer;
        }
        Caller::HttpLambda => {
            let mut authorizer = fixture_authorizer(HTTP_V2_LAMBDA);
            authorizer["lambda"] = with_claim(authorizer["lambda"].clone());
            context["authorizer"] = authorizer;
        }
        Caller::HttpIam => context["authorizer"] = fixture_authorizer(HTTP_V2_IAM),
        Caller::HttpAnonymous => {}
        // A Cognito user pool authorizer on a REST API puts the token's claims (all
        // strings on the wire) under `claims`.
        Caller::RestCognito => {
            context["authorizer"] = json!({
                "claims": with_claim(json!({
                    "sub": "7d8ca528-4931-4254-9273-ea5ee853f271",
                    "cognito:username": "user-1",
                    "token_use": "id",
                }))
            })
        }
        Caller::RestLambda => context["authorizer"] = with_claim(fixture_authorizer(REST_V1)),
        // The fixture's identity is a signed (IAM) caller's.
        Caller::RestIam => context["authorizer"] = Value::Null,
        Caller::RestAnonymous => {
            context["authorizer"] = Value::Null;
            for key in [
                "cognitoIdentityPoolId",
                "accountId",
                "cognitoIdentityId",
                "caller",
                "accessKey",
                "cognitoAuthenticationType",
                "cognitoAuthenticationProvider",
                "userArn",
                "user",
                "apiKey",
                "apiKeyId",
            ] {
                context["identity"][key] = Value::Null;
            }
        }
    }
    event
}
