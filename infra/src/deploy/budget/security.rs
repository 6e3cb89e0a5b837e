//! The security walls `kit check` keeps: the search API's authentication, the ingest
//! queue's producers and namespaces, TLS on both hops (docs/security.md).

use super::{Rule, Violation};
use crate::deploy::model::{AuthMode, KitConfig};

/// The search API's authentication (docs/security.md, "Tenant isolation"): each mode has
/// what it needs and nothing meant for another, and an open API is written on purpose.
pub(super) fn check_api_auth(config: &KitConfig, out: &mut Vec<Violation>) {
    let api = &config.api;
    let mut refuse = |problem: String, fix: &str| {
        out.push(Violation::new(Rule::ApiAuth, problem, fix));
    };
    let mode = api.auth.as_str();
    match api.auth {
        AuthMode::None if !api.allow_unauthenticated => refuse(
            "api.auth is \"none\": anyone who can reach the search API could read every namespace \
             (each request's body or query names its own)"
                .into(),
            "set api.auth = \"jwt\" (with api.jwt_issuer and api.jwt_audience), \"lambda\" or \"iam\"; \
             or, to deploy an open API on purpose, write api.allow_unauthenticated = true",
        ),
        AuthMode::None => {}
        _ if api.allow_unauthenticated => refuse(
            format!("api.allow_unauthenticated = true but api.auth is \"{mode}\", which it does not apply to"),
            "remove api.allow_unauthenticated (it only confirms api.auth = \"none\")",
        ),
        _ => {}
    }
    if api.auth == AuthMode::Jwt {
        match api.jwt_issuer.as_deref() {
            Some(issuer) if issuer.starts_with("https://") && issuer.len() > "https://".len() => {}
            Some(issuer) => refuse(
                format!("api.jwt_issuer is {issuer:?} but a JWT authorizer's issuer is an https:// URL"),
                "set api.jwt_issuer to your issuer, e.g. \"https://cognito-idp.REGION.amazonaws.com/POOL_ID\"",
            ),
            None => refuse(
                "api.auth is \"jwt\" but api.jwt_issuer is not set".into(),
                "set api.jwt_issuer to your issuer, e.g. \"https://cognito-idp.REGION.amazonaws.com/POOL_ID\"",
            ),
        }
        if api.jwt_audience.is_empty() || api.jwt_audience.iter().any(|a| a.trim().is_empty()) {
            refuse(
                format!("api.jwt_audience is {:?}: a JWT authorizer needs at least one non-empty audience", api.jwt_audience),
                "set api.jwt_audience = [\"YOUR_APP_CLIENT_ID\"] (the tokens' aud, or client_id for access tokens)",
            );
        }
    } else {
        for (set, key) in [
            (api.jwt_issuer.is_some(), "jwt_issuer"),
            (!api.jwt_audience.is_empty(), "jwt_audience"),
            (!api.authorization_scopes.is_empty(), "authorization_scopes"),
        ] {
            if set {
                refuse(
                    format!("api.{key} is set but api.auth is \"{mode}\", which does not use it"),
                    "remove it, or set api.auth = \"jwt\"",
                );
            }
        }
    }
    if let Some(scope) = api
        .authorization_scopes
        .iter()
        .find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic()))
    {
        refuse(
            format!("api.authorization_scopes holds {scope:?}: a scope is printable ASCII without spaces"),
            "list scopes as [\"resource-server/scope\", …]",
        );
    }
    match (api.auth, api.lambda_authorizer_arn.as_deref()) {
        (AuthMode::Lambda, Some(arn)) if is_lambda_arn(arn) => {}
        (AuthMode::Lambda, Some(arn)) => refuse(
            format!("api.lambda_authorizer_arn is {arn:?}, not a Lambda function ARN"),
            "set api.lambda_authorizer_arn = \"arn:aws:lambda:REGION:ACCOUNT:function:NAME\"",
        ),
        (AuthMode::Lambda, None) => refuse(
            "api.auth is \"lambda\" but api.lambda_authorizer_arn is not set".into(),
            "set api.lambda_authorizer_arn = \"arn:aws:lambda:REGION:ACCOUNT:function:NAME\"",
        ),
        (_, Some(_)) => refuse(
            format!("api.lambda_authorizer_arn is set but api.auth is \"{mode}\", which does not use it"),
            "remove it, or set api.auth = \"lambda\"",
        ),
        (_, None) => {}
    }
    let claim = &api.namespace_claim;
    if claim.is_empty() || claim.len() > 256 || !claim.chars().all(|c| c.is_ascii_graphic()) {
        refuse(
            format!("api.namespace_claim is {claim:?}: a claim name is 1 to 256 printable ASCII characters without spaces"),
            "set api.namespace_claim = \"namespace\" (or the claim your issuer uses, e.g. \"custom:tenant\")",
        );
    }
}

/// The ingest queue's trust boundary (docs/security.md, "ingest"): only listed producers
/// may send, and an optional allow-list of namespaces is well formed.
pub(super) fn check_queue_access(config: &KitConfig, out: &mut Vec<Violation>) {
    let q = &config.queue;
    if q.producers.is_empty() {
        out.push(Violation::new(
            Rule::QueueAccess,
            "queue.producers is empty: the queue policy would let no one send, and whoever may \
             send may write any namespace, so the producers are listed explicitly",
            "list the IAM roles or users that send ingest messages, e.g. queue.producers = \
             [\"arn:${AWS::Partition}:iam::${AWS::AccountId}:role/kit-ingest-producer\"]",
        ));
    }
    for producer in &q.producers {
        if !is_principal_arn(producer) {
            out.push(Violation::new(
                Rule::QueueAccess,
                format!(
                    "queue.producers holds {producer:?}: a producer is an IAM role or user ARN \
                     (arn:PARTITION:iam::ACCOUNT:role/NAME or :user/NAME), without wildcards"
                ),
                "use the role's ARN, e.g. \"arn:aws:iam::123456789012:role/ingest-writer\"; \
                 ${AWS::AccountId} and ${AWS::Partition} are substituted at deploy time",
            ));
        }
    }
    for (i, namespace) in q.namespaces.iter().enumerate() {
        if storage::Namespace::parse(namespace).is_err() {
            out.push(Violation::new(
                Rule::QueueAccess,
                format!(
                    "queue.namespaces holds {namespace:?}, which is not a namespace (1 to 64 of a-z, 0-9, _ and -)"
                ),
                "list namespaces as ingest messages name them, e.g. [\"acme\", \"globex\"]",
            ));
        } else if q.namespaces[..i].contains(namespace) {
            out.push(Violation::new(
                Rule::QueueAccess,
                format!("queue.namespaces lists {namespace:?} twice"),
                "remove the duplicate",
            ));
        }
    }
}

/// `arn:PARTITION:iam::ACCOUNT:role/…` or `:user/…`, where PARTITION and ACCOUNT may be
/// `${AWS::Partition}` and `${AWS::AccountId}`.
fn is_principal_arn(arn: &str) -> bool {
    // The substitutions hold colons themselves: check the ARN they stand for.
    let arn = arn
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::AccountId}", "000000000000");
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    let partition_ok = partition.starts_with("aws")
        && partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-');
    let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
    let resource_ok = resource
        .strip_prefix("role/")
        .or_else(|| resource.strip_prefix("user/"))
        .is_some_and(|name| {
            !name.is_empty()
                && !name.ends_with('/')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
        });
    prefix == "arn"
        && partition_ok
        && service == "iam"
        && region.is_empty()
        && account_ok
        && resource_ok
}

/// `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
fn is_lambda_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    matches!(
        parts[..],
        ["arn", partition, "lambda", region, account, "function", name, ..]
            if partition.starts_with("aws")
                && !region.is_empty()
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && !name.is_empty()
    ) && parts.len() <= 8
}

/// `[tls]`: both hops verify their server (or at least encrypt); none may fall back to
/// plaintext, which `disable`, `allow` and `prefer` all do.
pub(super) fn check_tls(config: &KitConfig, out: &mut Vec<Violation>) {
    let tls = &config.tls;
    for (key, mode, hop, against) in [
        (
            "client_sslmode",
            tls.client_sslmode,
            "the functions' connections to PgBouncer",
            "the deployment's CA (kit tls issue)",
        ),
        (
            "server_sslmode",
            tls.server_sslmode,
            "PgBouncer's connections to PostgreSQL",
            "the RDS CA bundle in the PgBouncer image",
        ),
    ] {
        if mode.allows_plaintext() {
            out.push(Violation::new(
                Rule::Tls,
                format!(
                    "tls.{key} is \"{mode}\": {hop} could run in plaintext, readable and \
                     downgradable by anyone on the network path"
                ),
                format!(
                    "set tls.{key} = \"verify-full\" (verifies the server's certificate and name \
                     against {against})"
                ),
            ));
        }
    }
    if !is_valid_hostname(&tls.pgbouncer_hostname) {
        out.push(Violation::new(
            Rule::Tls,
            format!(
                "tls.pgbouncer_hostname is {:?}: it must be a lower-case DNS name of at least three \
                 labels (the first is the record, the rest the private hosted zone the stack creates)",
                tls.pgbouncer_hostname
            ),
            "set tls.pgbouncer_hostname = \"pgbouncer.kit.internal\"",
        ));
    }
}

fn is_valid_hostname(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 3
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}
