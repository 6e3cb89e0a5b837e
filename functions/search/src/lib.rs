//! The search function: `POST /search`, `GET /items/{id}`, `GET /health` behind API
//! Gateway (HTTP API v2, REST API v1) or a Function URL.
//!
//! Client mistakes are 400/403/404/413 with a stable code; a database that is down or
//! silent is 503 with `Retry-After`, within `DB_ACQUIRE_TIMEOUT_MS` +
//! `DB_STATEMENT_TIMEOUT_MS` + 1 s and before the invocation's deadline.

pub mod auth;
pub mod error;
pub mod event;
pub mod filter;
pub mod request;
pub mod response;
pub mod settings;

use std::time::Instant;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::{json, Value};
use storage::{Database, StorageError};
use telemetry::{Metrics, Unit};
use uuid::Uuid;

pub use auth::{Auth, AuthMode, Grant};
pub use error::{ApiError, ErrorCode};
pub use settings::{Limits, Settings};

/// Everything an invocation needs, built once per execution environment.
#[derive(Debug)]
pub struct State {
    pub db: Database,
    pub settings: Settings,
}

impl State {
    /// A lazy database handle for `settings.database`; nothing is opened yet.
    pub fn new(settings: Settings) -> Result<Self, StorageError> {
        Ok(Self {
            db: Database::connect_lazy(&settings.database)?,
            settings,
        })
    }
}

/// The Lambda handler. Never returns `Err`: every outcome is an HTTP response.
pub async fn handler(
    state: &State,
    request: Request,
) -> Result<Response<Body>, lambda_http::Error> {
    let started = Instant::now();
    let route = Route::of(&request);
    let work = respond(state, &request, route);
    // Every database step is bounded by the invocation's deadline (minus a reserve for
    // the answer) as well as by its own timeout: a silent path ends in a 503, in time.
    let outcome = match request.lambda_context_ref() {
        Some(context) => {
            storage::within_deadline(edge::deadline::from_epoch_ms(context.deadline), work).await
        }
        None => work.await,
    };
    let response = match outcome {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(code = error.code.as_str(), status = error.status().as_u16(), message = %error.message, "request refused");
            error.into_response()
        }
    };
    let mut metrics = Metrics::new("pgvector-lambda-kit", "search");
    metrics
        .put(
            "Latency",
            Unit::Milliseconds,
            started.elapsed().as_secs_f64() * 1e3,
        )
        .count(format!("Status{}", response.status().as_u16()), 1);
    metrics.flush();
    Ok(response)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route<'a> {
    Search,
    Item(&'a str),
    Health,
    Unknown,
}

impl<'a> Route<'a> {
    /// Matches on the path's last segments, so a REST API stage prefix (`/prod/search`)
    /// or a custom base path does not matter.
    fn of(request: &'a Request) -> Self {
        let path = request.uri().path().trim_end_matches('/');
        let mut segments = path.rsplit('/');
        match (segments.next(), segments.next()) {
            (Some("search"), _) => Route::Search,
            (Some("health"), _) => Route::Health,
            (Some(id), Some("items")) if !id.is_empty() => Route::Item(id),
            _ => Route::Unknown,
        }
    }
}

async fn respond(
    state: &State,
    request: &Request,
    route: Route<'_>,
) -> Result<Response<Body>, ApiError> {
    let method = request.method();
    match (route, method) {
        (Route::Search, &Method::POST) => search(state, request).await,
        (Route::Item(id), &Method::GET) => item(state, request, id).await,
        (Route::Health, &Method::GET) => health(state).await,
        (Route::Unknown, _) => Err(ApiError::new(
            ErrorCode::RouteNotFound,
            format!(
                "no route for {} {}; the API has POST /search, GET /items/{{id}}, GET /health",
                method,
                request.uri().path()
            ),
        )),
        (_, other) => Err(ApiError::method_not_allowed(
            other.as_str(),
            request.uri().path(),
        )),
    }
}

async fn search(state: &State, request: &Request) -> Result<Response<Body>, ApiError> {
    let settings = &state.settings;
    // Before anything else: a request the wall refuses learns nothing more.
    let grant = settings.auth.grant(request)?;
    let body = body_bytes(request.body());
    if body.len() > settings.limits.max_body_bytes {
        return Err(ApiError::body_too_large(
            body.len(),
            settings.limits.max_body_bytes,
        ));
    }
    let dimensions = state
        .db
        .dimensions()
        .await
        .map_err(|e| ApiError::from_storage(&e))?;
    let query = request::parse_search(body, dimensions, &settings.limits, &grant)?;
    let started = Instant::now();
    let hits = state
        .db
        .search_nearest(&query)
        .await
        .map_err(|e| ApiError::from_storage(&e))?;
    let took_ms = started.elapsed().as_secs_f64() * 1e3;
    let response = SearchResponse {
        results: &hits,
        namespace: query.namespace.as_str(),
        k: query.k,
        took_ms: (took_ms * 100.0).round() / 100.0,
    };
    // Serialized straight from the hits, without a `Value` tree in between, and measured
    // as it leaves: above Lambda's payload limit the platform would answer a bare 502.
    let limit = settings.limits.max_response_bytes;
    let body = crate::response::to_json_within(&response, limit)
        .map_err(|size| ApiError::response_too_large(size, limit, query.k))?;
    Ok(json_text_response(StatusCode::OK, body))
}

/// The `POST /search` response body (docs/openapi.yaml, `SearchResponse`).
#[derive(Serialize)]
struct SearchResponse<'a> {
    results: &'a [storage::Hit],
    namespace: &'a str,
    k: u32,
    took_ms: f64,
}

async fn item(state: &State, request: &Request, raw_id: &str) -> Result<Response<Body>, ApiError> {
    let grant = state.settings.auth.grant(request)?;
    let id = Uuid::parse_str(raw_id).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidId,
            format!("item ids are UUIDs, got {:?}", edge::clip(raw_id)),
        )
    })?;
    let params = request.query_string_parameters();
    let namespace = grant.resolve(params.first("namespace"))?;
    let include_vector = match params.first("include_vector") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::new(
                ErrorCode::InvalidInclude,
                format!(
                    "include_vector is true or false, got {:?}",
                    edge::clip(other)
                ),
            ))
        }
    };
    match state.db.get_item(&namespace, id, include_vector).await {
        Ok(Some(item)) => Ok(json_response(StatusCode::OK, &json!(item))),
        Ok(None) => Err(ApiError::new(
            ErrorCode::ItemNotFound,
            format!("no item {id} in namespace {namespace:?}"),
        )),
        Err(e) => Err(ApiError::from_storage(&e)),
    }
}

async fn health(state: &State) -> Result<Response<Body>, ApiError> {
    match state.db.health().await {
        Ok(()) => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
        Err(e) => {
            let mut error = ApiError::from_storage(&e);
            // Health is about availability: any database failure is 503.
            error.code = ErrorCode::DatabaseUnavailable;
            Err(error)
        }
    }
}

fn body_bytes(body: &Body) -> &[u8] {
    match body {
        Body::Empty => b"",
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    json_text_response(status, value.to_string())
}

fn json_text_response(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body))
        .expect("a static status and headers always build")
}
