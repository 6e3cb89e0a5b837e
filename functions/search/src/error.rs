//! API errors: `{"error": {"code": "...", "message": "..."}}` with a stable code.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::json;
use storage::StorageError;

/// Every error code the API returns, with its HTTP status. The OpenAPI document
/// (`docs/openapi.yaml`) lists exactly these; a test keeps the two equal, and debug
/// builds refuse a code missing here.
pub const CODES: &[(&str, u16)] = &[
    ("invalid_json", 400),
    ("unknown_field", 400),
    ("invalid_namespace", 400),
    ("invalid_vector", 400),
    ("invalid_k", 400),
    ("invalid_ef_search", 400),
    ("invalid_filter", 400),
    ("invalid_max_distance", 400),
    ("invalid_include", 400),
    ("invalid_id", 400),
    ("response_too_large", 400),
    ("namespace_forbidden", 403),
    ("route_not_found", 404),
    ("item_not_found", 404),
    ("method_not_allowed", 405),
    ("body_too_large", 413),
    ("internal", 500),
    ("database_unavailable", 503),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "namespace_forbidden",
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: format!("{method} is not allowed on {path}"),
        }
    }

    pub fn too_large(size: usize, limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
            message: format!("the body is {size} bytes, the limit is {limit} (MAX_BODY_BYTES)"),
        }
    }

    /// The results would not fit Lambda's response payload limit (`MAX_RESPONSE_BYTES`).
    /// `size` is the body's size as Lambda returns it (JSON-escaped in the envelope).
    pub fn response_too_large(size: usize, limit: usize, k: u32) -> Self {
        Self::bad_request(
            "response_too_large",
            format!(
                "the response would be {size} bytes, the limit is {limit} (MAX_RESPONSE_BYTES, \
                 within Lambda's 6 MB response payload limit); ask for fewer results than \
                 k = {k}, or leave \"vector\" and \"content\" out of include and read \
                 them for the few hits that need them with GET /items/{{id}}"
            ),
        )
    }

    /// A storage failure: a filter too large to compile is the client's (400
    /// `invalid_filter`); transient failures and a refused login (still refused after
    /// the credentials were re-read) are 503 with `Retry-After`, the rest 500 (a server
    /// fault, never something the client sent).
    pub fn from_storage(error: &StorageError) -> Self {
        if let StorageError::Filter(too_large) = error {
            // Refused by the compiler's bound before anything reached the database.
            return Self::bad_request("invalid_filter", too_large.to_string());
        }
        if error.is_unavailable() {
            tracing::warn!(%error, sqlstate = ?error.sqlstate(), "database unavailable");
            Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "database_unavailable",
                message: "the database is unavailable; retry shortly".into(),
            }
        } else {
            tracing::error!(%error, sqlstate = ?error.sqlstate(), "database error");
            Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "internal",
                message: "internal error; see the function's logs".into(),
            }
        }
    }

    pub fn into_response(self) -> Response<Body> {
        debug_assert!(
            CODES.contains(&(self.code, self.status.as_u16())),
            "error code {:?} with status {} is not in error::CODES (and docs/openapi.yaml)",
            self.code,
            self.status
        );
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut builder = Response::builder()
            .status(self.status)
            .header("content-type", "application/json");
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            builder = builder.header("retry-after", "1");
        }
        builder
            .body(Body::Text(body.to_string()))
            .expect("a static status and headers always build")
    }
}
