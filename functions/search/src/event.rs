//! API Gateway (HTTP API v2, REST API v1) and Function URL events, read in one pass.
//!
//! `lambda_http` reads an event three times: whole as raw JSON, then as a REST API
//! event (which fails on an HTTP API event only at its end, for want of `httpMethod`),
//! then as an HTTP API event: lambda_http 1.3.2's `Deserialize for LambdaRequest`
//! (<https://github.com/aws/aws-lambda-rust-runtime/blob/7f89224ce954a0ad3998cc095e80539c3d110ab9/lambda-http/src/deserializer.rs#L21-L36>;
//! aws/aws-lambda-rust-runtime#795 proposed reading the event once and was closed
//! unmerged). Each pass unescapes the body again, and a search body is nearly all of
//! the event (30 KB for a 1536-dimension vector). [`ApiEvent`] unescapes the body once
//! and hands `lambda_http` the rest of the event (about 1 KB), so the request the
//! handler sees is the one `lambda_http` builds, body included. An event that says it
//! is `"version": "2.0"` (HTTP API, Function URL) is read as one first.
//!
//! This builds lambda_http's `LambdaRequest` and main.rs hands it to its `Adapter`, both
//! public but `#[doc(hidden)]`: the workspace pins `lambda_http` exactly. When moving the
//! pin, check whether the new deserializer still reads the event more than once (if
//! not, `lambda_http::run` can replace this module) and re-run this module's tests,
//! which compare our requests with the ones lambda_http makes.
//!
//! `lambda_http` types HTTP API JWT claims as strings, which is what API Gateway sends.
//! An event whose claims hold other JSON values would not read at all (every request a
//! 500), so such a value becomes a [`NON_STRING_CLAIM`] marker naming its type, which
//! the authorization check refuses (auth.rs).

use std::fmt;

use lambda_http::request::LambdaRequest;
use lambda_http::Request;
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// The first character of a JWT claim that was not a string in the event; the rest
/// names the JSON type it had ("a number", "an object", …). No real claim starts with
/// it (a NUL).
pub const NON_STRING_CLAIM: &str = "\u{0}";

/// An event as the runtime delivers it, with its body read once.
#[derive(Debug)]
pub struct ApiEvent(pub LambdaRequest);

impl ApiEvent {
    /// The request `lambda_http` makes of this event.
    pub fn into_request(self) -> Request {
        self.0.into()
    }
}

/// The request for an event's JSON, as the function's runtime makes it (tests and
/// benchmarks take this path too).
pub fn request_from_slice(event: &[u8]) -> serde_json::Result<Request> {
    serde_json::from_slice::<ApiEvent>(event).map(ApiEvent::into_request)
}

impl<'de> Deserialize<'de> for ApiEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = ApiEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an API Gateway or Function URL event")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ApiEvent, A::Error> {
        let mut rest = Vec::with_capacity(2048);
        rest.push(b'{');
        let mut body: Option<Option<String>> = None;
        let mut version_2 = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "body" {
                if body.is_some() {
                    return Err(A::Error::duplicate_field("body"));
                }
                body = Some(map.next_value()?);
                continue;
            }
            let value: Box<RawValue> = map.next_value()?;
            version_2 |= key == "version" && value.get() == r#""2.0""#;
            if rest.len() > 1 {
                rest.push(b',');
            }
            serde_json::to_writer(&mut rest, &key).map_err(A::Error::custom)?;
            rest.push(b':');
            rest.extend_from_slice(value.get().as_bytes());
        }
        rest.push(b'}');
        let http_api = version_2
            .then(|| {
                serde_json::from_slice(&rest).ok().or_else(|| {
                    let marked = with_string_claims(&rest)?;
                    serde_json::from_slice(&marked).ok()
                })
            })
            .flatten();
        let mut request = match http_api {
            Some(event) => LambdaRequest::ApiGatewayV2(event),
            None => serde_json::from_slice(&rest).map_err(A::Error::custom)?,
        };
        let body = body.flatten();
        match &mut request {
            LambdaRequest::ApiGatewayV1(event) => event.body = body,
            LambdaRequest::ApiGatewayV2(event) => event.body = body,
            #[allow(unreachable_patterns)] // other event sources, when lambda_http has them
            _ => {
                if body.is_some() {
                    return Err(A::Error::custom(
                        "this function serves API Gateway and Function URL events",
                    ));
                }
            }
        }
        Ok(ApiEvent(request))
    }
}

/// The event with each non-string JWT claim replaced by a [`NON_STRING_CLAIM`] marker,
/// or `None` when there is none (only read after the event failed to read as it is).
fn with_string_claims(event: &[u8]) -> Option<Vec<u8>> {
    let mut event: Value = serde_json::from_slice(event).ok()?;
    let claims = event
        .pointer_mut("/requestContext/authorizer/jwt/claims")?
        .as_object_mut()?;
    let mut changed = false;
    for value in claims.values_mut() {
        if !value.is_string() {
            *value = Value::String(format!("{NON_STRING_CLAIM}{}", edge::json_type(value)));
            changed = true;
        }
    }
    changed.then(|| serde_json::to_vec(&event).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::RequestExt;
    use serde_json::json;

    const HTTP_V2: &str =
        include_str!("../../../dev/support/fixtures/example-apigw-v2-request-jwt-authorizer.json");
    const HTTP_V2_PLAIN: &str =
        include_str!("../../../dev/support/fixtures/example-apigw-v2-request-no-authorizer.json");
    const REST_V1: &str = include_str!("../../../dev/support/fixtures/example-apigw-request.json");

    /// Everything the handler can read of a request (maps in a stable order).
    fn seen(request: &Request) -> String {
        let sorted = |map: lambda_http::aws_lambda_events::query_map::QueryMap| {
            let mut pairs: Vec<(String, String)> = map
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            pairs.sort();
            pairs
        };
        format!(
            "{} {} {:?} {:?} {:?} {:?} {:?} {} {}",
            request.method(),
            request.uri(),
            request.headers(),
            request.body(),
            sorted(request.query_string_parameters()),
            sorted(request.path_parameters()),
            sorted(request.stage_variables()),
            // serde_json's maps are ordered: the authorizer's fields compare whatever
            // order their hash map holds them in.
            serde_json::to_value(request.request_context_ref()).unwrap(),
            matches!(
                request.request_context_ref(),
                Some(lambda_http::request::RequestContext::ApiGatewayV1(_))
            ),
        )
    }

    fn with(fixture: &str, changes: &[(&str, Value)]) -> String {
        let mut event: Value = serde_json::from_str(fixture).unwrap();
        for (key, value) in changes {
            event[*key] = value.clone();
        }
        event.to_string()
    }

    #[test]
    fn requests_are_the_ones_lambda_http_makes() {
        let body = r#"{"namespace":"a \"quoted\" name","vector":[0.5,-1e-3]}"#;
        let base64 = [
            ("body", json!("aGVsbG8=")),
            ("isBase64Encoded", json!(true)),
        ];
        let mut events = Vec::new();
        for fixture in [HTTP_V2, HTTP_V2_PLAIN, REST_V1] {
            events.extend([
                with(fixture, &[("body", json!(body))]),
                with(fixture, &[("body", Value::Null)]),
                with(fixture, &base64),
                fixture.to_owned(),
            ]);
        }
        for event in &events {
            let ours = request_from_slice(event.as_bytes()).expect("our reader");
            let theirs = lambda_http::request::from_str(event).expect("lambda_http's");
            assert_eq!(seen(&ours), seen(&theirs), "{event}");
        }
        let ours = request_from_slice(events[0].as_bytes()).unwrap();
        assert!(matches!(ours.body(), lambda_http::Body::Text(text) if text == body));
    }

    #[test]
    fn events_from_elsewhere_are_refused_as_lambda_http_refuses_them() {
        for event in [
            r#"{"Records":[]}"#,
            "{}",
            "[]",
            r#"{"body":"x","body":"y"}"#,
        ] {
            assert!(request_from_slice(event.as_bytes()).is_err(), "{event}");
            assert!(lambda_http::request::from_str(event).is_err(), "{event}");
        }
    }
}
