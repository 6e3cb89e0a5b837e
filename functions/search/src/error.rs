//! API errors: `{"error": {"code": "...", "message": "..."}}` with a stable code.

use std::fmt;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::json;
use storage::StorageError;

/// Every error the API returns, each with its code on the wire and its HTTP status
/// ([`ErrorCode::describe`]). The OpenAPI document (`docs/openapi.yaml`) lists exactly
/// these codes, and docs/search.md says when each is returned; a test keeps the
/// document and [`ErrorCode::ALL`] equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    InvalidJson,
    UnknownField,
    InvalidNamespace,
    InvalidVector,
    InvalidK,
    InvalidEfSearch,
    InvalidFilter,
    InvalidMaxDistance,
    InvalidInclude,
    InvalidId,
    ResponseTooLarge,
    NamespaceForbidden,
    RouteNotFound,
    ItemNotFound,
    MethodNotAllowed,
    BodyTooLarge,
    Internal,
    DatabaseUnavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::InvalidJson,
        ErrorCode::UnknownField,
        ErrorCode::InvalidNamespace,
        ErrorCode::InvalidVector,
        ErrorCode::InvalidK,
        ErrorCode::InvalidEfSearch,
        ErrorCode::InvalidFilter,
        ErrorCode::InvalidMaxDistance,
        ErrorCode::InvalidInclude,
        ErrorCode::InvalidId,
        ErrorCode::ResponseTooLarge,
        ErrorCode::NamespaceForbidden,
        ErrorCode::RouteNotFound,
        ErrorCode::ItemNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::BodyTooLarge,
        ErrorCode::Internal,
        ErrorCode::DatabaseUnavailable,
    ];

    /// The code as clients read it, and the status it is answered with.
    pub const fn describe(self) -> (&'static str, StatusCode) {
        use ErrorCode::*;
        match self {
            InvalidJson => ("invalid_json", StatusCode::BAD_REQUEST),
            UnknownField => ("unknown_field", StatusCode::BAD_REQUEST),
            InvalidNamespace => ("invalid_namespace", StatusCode::BAD_REQUEST),
            InvalidVector => ("invalid_vector", StatusCode::BAD_REQUEST),
            InvalidK => ("invalid_k", StatusCode::BAD_REQUEST),
            InvalidEfSearch => ("invalid_ef_search", StatusCode::BAD_REQUEST),
            InvalidFilter => ("invalid_filter", StatusCode::BAD_REQUEST),
            InvalidMaxDistance => ("invalid_max_distance", StatusCode::BAD_REQUEST),
            InvalidInclude => ("invalid_include", StatusCode::BAD_REQUEST),
            InvalidId => ("invalid_id", StatusCode::BAD_REQUEST),
            // The client asked for more than a response can carry: fewer results fit.
            ResponseTooLarge => ("response_too_large", StatusCode::BAD_REQUEST),
            NamespaceForbidden => ("namespace_forbidden", StatusCode::FORBIDDEN),
            RouteNotFound => ("route_not_found", StatusCode::NOT_FOUND),
            ItemNotFound => ("item_not_found", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
            BodyTooLarge => ("body_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
            DatabaseUnavailable => ("database_unavailable", StatusCode::SERVICE_UNAVAILABLE),
        }
    }

    /// The code on the wire (`invalid_vector`, …).
    pub const fn as_str(self) -> &'static str {
        self.describe().0
    }

    pub const fn status(self) -> StatusCode {
        self.describe().1
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code compares equal to its text on the wire (tests name codes as clients do).
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An error response: the code (which fixes the status) and a message for the caller
/// that names the value, the limit and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status, from the code.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )
    }

    pub fn body_too_large(size: usize, limit: usize) -> Self {
        Self::new(
            ErrorCode::BodyTooLarge,
            format!("the body is {size} bytes, the limit is {limit} (MAX_BODY_BYTES)"),
        )
    }

    /// The results would not fit Lambda's response payload limit (`MAX_RESPONSE_BYTES`).
    /// `size` is the body's size as Lambda returns it (JSON-escaped in the envelope).
    pub fn response_too_large(size: usize, limit: usize, k: u32) -> Self {
        Self::new(
            ErrorCode::ResponseTooLarge,
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
            return Self::new(ErrorCode::InvalidFilter, too_large.to_string());
        }
        if error.is_unavailable() {
            tracing::warn!(%error, sqlstate = ?error.sqlstate(), "database unavailable");
            Self::new(
                ErrorCode::DatabaseUnavailable,
                "the database is unavailable; retry shortly",
            )
        } else {
            tracing::error!(%error, sqlstate = ?error.sqlstate(), "database error");
            Self::new(
                ErrorCode::Internal,
                "internal error; see the function's logs",
            )
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let body = json!({"error": {"code": self.code.as_str(), "message": self.message}});
        let mut builder = Response::builder()
            .status(self.status())
            .header("content-type", "application/json");
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            builder = builder.header("retry-after", "1");
        }
        builder
            .body(Body::Text(body.to_string()))
            .expect("a static status and headers always build")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_read_as_their_text() {
        let mut codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::InvalidEfSearch, "invalid_ef_search");
        assert_eq!(ErrorCode::BodyTooLarge.status().as_u16(), 413);
    }

    #[test]
    fn unavailable_answers_say_when_to_retry() {
        let response = ApiError::new(ErrorCode::DatabaseUnavailable, "down").into_response();
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let response = ApiError::new(ErrorCode::Internal, "bug").into_response();
        assert!(!response.headers().contains_key("retry-after"));
    }
}
