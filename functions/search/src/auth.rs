//! Tenant isolation: which namespace a request may read.
//!
//! The wall (docs/security.md, "Tenant isolation"):
//!
//! - An event that carries authorizer context (HTTP API JWT claims, a Lambda authorizer's
//!   context, a REST API authorizer's context including Cognito `claims`) reads the
//!   namespace from one **string** claim, `NAMESPACE_CLAIM`, whatever `AUTH_MODE` says. A
//!   missing, empty or non-string claim is `403 namespace_forbidden`; a body or query
//!   naming another namespace is 403 too.
//! - A namespace chosen by the body (`POST /search`) or the query (`GET /items/{id}`) is
//!   accepted only with `AUTH_MODE=iam` (callers signed with SigV4, trusted services) or
//!   `AUTH_MODE=none` (local development), and only from events without such context.
//! - With `AUTH_MODE=jwt` or `lambda`, an event without authorizer context (a route the
//!   authorizer does not cover) is refused: the function fails closed.

use std::fmt;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::Value;
use storage::{ConfigError, Namespace};

use crate::error::{ApiError, ErrorCode};
use crate::event::NON_STRING_CLAIM;

/// How the API in front of the function authenticates callers (`AUTH_MODE`, rendered
/// from `kit.toml [api] auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// An HTTP API JWT authorizer (the default): the namespace is a token claim.
    Jwt,
    /// A Lambda authorizer: the namespace is a key of the context it returns.
    Lambda,
    /// `AWS_IAM` (SigV4) routes: trusted service callers name the namespace in the
    /// request; events with claims still follow the claim.
    Iam,
    /// No authentication (local development): the request names the namespace; events
    /// with claims still follow the claim.
    None,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Jwt => "jwt",
            AuthMode::Lambda => "lambda",
            AuthMode::Iam => "iam",
            AuthMode::None => "none",
        }
    }

    /// Whether a request without claims may name its own namespace.
    fn request_chooses(self) -> bool {
        matches!(self, AuthMode::Iam | AuthMode::None)
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The function's authorization settings, read once at cold start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Auth {
    /// `AUTH_MODE`: `jwt` (default), `lambda`, `iam` or `none`.
    pub mode: AuthMode,
    /// `NAMESPACE_CLAIM`: the JWT claim or authorizer context key naming the caller's
    /// namespace (default `namespace`; e.g. `custom:tenant` for Cognito).
    pub namespace_claim: String,
}

impl Auth {
    pub const DEFAULT_CLAIM: &'static str = "namespace";

    /// `AUTH_MODE=none` with the default claim: local development and tests, where the
    /// request body or query names the namespace.
    pub fn none() -> Self {
        Self::with_mode(AuthMode::None)
    }

    /// `mode` with the default claim.
    pub fn with_mode(mode: AuthMode) -> Self {
        Self {
            mode,
            namespace_claim: Self::DEFAULT_CLAIM.to_owned(),
        }
    }

    /// Reads `AUTH_MODE` and `NAMESPACE_CLAIM` through `lookup` (the environment at cold
    /// start, a map in tests). Unset or blank keeps the default (`jwt`, `namespace`);
    /// anything else invalid is an error naming the variable, the value and what is
    /// accepted, so the function refuses to start rather than guess.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mode = match lookup("AUTH_MODE") {
            None => AuthMode::Jwt,
            Some(raw) => match raw.trim() {
                "" | "jwt" => AuthMode::Jwt,
                "lambda" => AuthMode::Lambda,
                "iam" => AuthMode::Iam,
                "none" => AuthMode::None,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "AUTH_MODE",
                        value: raw,
                        expected: "jwt, lambda, iam or none (kit.toml [api] auth)",
                    })
                }
            },
        };
        let namespace_claim = match lookup("NAMESPACE_CLAIM") {
            None => Self::DEFAULT_CLAIM.to_owned(),
            Some(raw) if raw.trim().is_empty() => Self::DEFAULT_CLAIM.to_owned(),
            Some(raw) => {
                let claim = raw.trim();
                if claim.len() <= 256 && claim.chars().all(|c| c.is_ascii_graphic()) {
                    claim.to_owned()
                } else {
                    return Err(ConfigError::Invalid {
                        name: "NAMESPACE_CLAIM",
                        value: raw,
                        expected:
                            "a claim name of 1 to 256 printable ASCII characters without spaces",
                    });
                }
            }
        };
        Ok(Self {
            mode,
            namespace_claim,
        })
    }

    /// What `request` may read: the namespace its claim names, or (without claims, in
    /// `iam` and `none` modes) whichever namespace the request names.
    pub fn grant(&self, request: &Request) -> Result<Grant, ApiError> {
        let claim = self.namespace_claim.as_str();
        match caller(request, claim) {
            Caller::Claims { source, value } => {
                claim_namespace(claim, source, value).map(|namespace| Grant::Claim {
                    namespace,
                    claim: claim.to_owned(),
                })
            }
            Caller::Iam if self.mode.request_chooses() => Ok(Grant::Requested),
            Caller::Anonymous if self.mode == AuthMode::None => Ok(Grant::Requested),
            Caller::Iam => Err(ApiError::new(
                ErrorCode::NamespaceForbidden,
                format!(
                "the request is IAM-signed but carries no claim {claim:?} and AUTH_MODE is {}: \
                 only AUTH_MODE=iam lets signed callers name their namespace; fix the route's \
                 authorizer or set kit.toml [api] auth = \"iam\"",
                self.mode
            ),
            )),
            Caller::Anonymous => Err(ApiError::new(
                ErrorCode::NamespaceForbidden,
                format!(
                    "the request carries no authorizer context, so no claim {claim:?} names its \
                 namespace, and AUTH_MODE is {} (which requires one): put the route behind the \
                 API's authorizer (kit render does for every route)",
                    self.mode
                ),
            )),
        }
    }
}

/// The namespace a request is allowed to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The caller's claim `claim` names it; a request naming another is refused.
    Claim { namespace: Namespace, claim: String },
    /// The request names it (the body's or query's `namespace`, else `default`).
    Requested,
}

impl Grant {
    /// The namespace to read, given the one the request names (if any).
    pub fn resolve(&self, requested: Option<&str>) -> Result<Namespace, ApiError> {
        match (self, requested) {
            (Grant::Claim { namespace, claim }, Some(asked)) if asked != namespace.as_str() => {
                Err(ApiError::new(
                    ErrorCode::NamespaceForbidden,
                    format!(
                        "the caller's claim {claim:?} (NAMESPACE_CLAIM) grants namespace {:?}, \
                     not {:?}: leave namespace out or name the claim's",
                        namespace.as_str(),
                        edge::clip(asked)
                    ),
                ))
            }
            (Grant::Claim { namespace, .. }, _) => Ok(namespace.clone()),
            (Grant::Requested, Some(asked)) => Namespace::parse(asked)
                .map_err(|e| ApiError::new(ErrorCode::InvalidNamespace, e.to_string())),
            (Grant::Requested, None) => Ok(Namespace::default()),
        }
    }
}

/// Who the event says the caller is.
#[derive(Debug, PartialEq)]
enum Caller<'a> {
    /// No authorizer context and no IAM identity.
    Anonymous,
    /// A SigV4-signed caller (HTTP API `authorizer.iam`, REST API `identity.userArn` or
    /// access key, a Cognito identity pool) without any authorizer claims.
    Iam,
    /// Authorizer context: `value` is the claim as found (`None` when absent).
    Claims {
        source: &'static str,
        value: Option<Claim<'a>>,
    },
}

/// A claim's value as the event holds it.
#[derive(Debug, PartialEq)]
enum Claim<'a> {
    /// A JWT claim (always text on the wire).
    Text(&'a str),
    /// An authorizer context value (any JSON).
    Json(&'a Value),
}

fn caller<'a>(request: &'a Request, claim: &str) -> Caller<'a> {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            let Some(authorizer) = ctx.authorizer.as_ref() else {
                return Caller::Anonymous;
            };
            if let Some(jwt) = &authorizer.jwt {
                // Claims are strings on the wire; the event reader turns any other value
                // into a NON_STRING_CLAIM marker (event.rs).
                return Caller::Claims {
                    source: "the JWT authorizer's claims",
                    value: jwt.claims.get(claim).map(|v| Claim::Text(v.as_str())),
                };
            }
            if !authorizer.fields.is_empty() {
                return Caller::Claims {
                    source: "the Lambda authorizer's context",
                    value: authorizer.fields.get(claim).map(Claim::Json),
                };
            }
            if authorizer.iam.is_some() {
                return Caller::Iam;
            }
            // An authorizer object with nothing in it (a Lambda authorizer that returned
            // no context): authorized by something, naming no namespace.
            Caller::Claims {
                source: "the authorizer context",
                value: None,
            }
        }
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            let fields = &ctx.authorizer.fields;
            if !fields.is_empty() {
                if let Some(Value::Object(claims)) = fields.get("claims") {
                    if !fields.contains_key(claim) {
                        return Caller::Claims {
                            source: "the Cognito authorizer's claims",
                            value: claims.get(claim).map(Claim::Json),
                        };
                    }
                }
                return Caller::Claims {
                    source: "the REST API authorizer's context",
                    value: fields.get(claim).map(Claim::Json),
                };
            }
            let identity = &ctx.identity;
            let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
            if present(&identity.user_arn)
                || present(&identity.access_key)
                || present(&identity.cognito_identity_id)
            {
                Caller::Iam
            } else {
                Caller::Anonymous
            }
        }
        _ => Caller::Anonymous,
    }
}

/// The namespace a claim grants, or 403 naming the claim and what is wrong with it.
fn claim_namespace(
    claim: &str,
    source: &str,
    value: Option<Claim<'_>>,
) -> Result<Namespace, ApiError> {
    let refuse = |what: String| {
        Err(ApiError::new(
            ErrorCode::NamespaceForbidden,
            format!(
                "{what}; the namespace comes only from the string claim {claim:?} \
             (NAMESPACE_CLAIM): issue tokens or authorizer context with {claim:?} set to the \
             caller's namespace, or set kit.toml [api] namespace_claim to the claim your \
             issuer uses"
            ),
        ))
    };
    let text = match value {
        None => return refuse(format!("no claim {claim:?} in {source}")),
        Some(Claim::Text(text)) => text,
        Some(Claim::Json(Value::String(text))) => text.as_str(),
        Some(Claim::Json(other)) => {
            return refuse(format!(
                "claim {claim:?} in {source} is {}, not a string",
                edge::json_type(other)
            ))
        }
    };
    if let Some(kind) = text.strip_prefix(NON_STRING_CLAIM) {
        return refuse(format!(
            "claim {claim:?} in {source} is {kind}, not a string"
        ));
    }
    if text.is_empty() {
        return refuse(format!("claim {claim:?} in {source} is an empty string"));
    }
    Namespace::parse(text).or_else(|_| {
        refuse(format!(
            "claim {claim:?} in {source} is {:?}, which is not a namespace (1 to 64 of a-z, 0-9, _ and -)",
            edge::clip(text)
        ))
    })
}
