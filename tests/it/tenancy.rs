//! Tenant isolation against the real stack (docs/security.md, "Tenant isolation"): the
//! search handler, driven with every authorizer shape API Gateway and Function URLs
//! deliver, reads only the namespace its caller's claim names; a request chooses its
//! namespace only in `AUTH_MODE=iam` or `none` and only without claims; ingest rejects
//! records outside its queue's allow-list.

use ingest::AllowedNamespaces;
use kit_support::corpus::{clustered, DIMS};
use kit_support::events::{api_request, upsert_body, Caller};
use kit_support::search_corpus::seed_rows;
use kit_support::{Reply, SearchFn, TestStack};
use search::{Auth, AuthMode, Limits};
use serde_json::{json, Value};
use storage::Namespace;
use uuid::Uuid;

const MODES: [AuthMode; 4] = [
    AuthMode::Jwt,
    AuthMode::Lambda,
    AuthMode::Iam,
    AuthMode::None,
];

/// Two tenants, one row each, and a query vector near both.
struct Tenants {
    t: TestStack,
    acme: Uuid,
    victim: Uuid,
    vector: Vec<f32>,
}

async fn tenants() -> Tenants {
    let t = TestStack::new().await.unwrap();
    let vectors = clustered(2, 1, DIMS, 0.05, 41);
    let owner = |namespace: &str| vec![json!({"owner": namespace}).as_object().unwrap().clone()];
    let acme = seed_rows(&t, "acme", &vectors[..1], &owner("acme"))
        .await
        .unwrap()[0];
    let victim = seed_rows(&t, "victim", &vectors[1..], &owner("victim"))
        .await
        .unwrap()[0];
    Tenants {
        t,
        acme,
        victim,
        vector: vectors[0].clone(),
    }
}

fn state(t: &TestStack, mode: AuthMode) -> SearchFn {
    t.search_with(Limits::default(), Auth::with_mode(mode))
}

impl Tenants {
    /// `POST /search` from `caller`, the body naming `namespace` (or not).
    fn search(&self, caller: Caller, namespace: Option<&str>, claim: Option<Value>) -> Value {
        let mut body = json!({"vector": self.vector, "k": 10});
        if let Some(ns) = namespace {
            body["namespace"] = json!(ns);
        }
        api_request(
            caller,
            "POST",
            "/search",
            "",
            Some(&body.to_string()),
            claim,
        )
    }

    /// `GET /items/{id}` from `caller`, the query naming `namespace` (or not).
    fn item(
        &self,
        caller: Caller,
        id: Uuid,
        namespace: Option<&str>,
        claim: Option<Value>,
    ) -> Value {
        let query = namespace.map_or(String::new(), |ns| format!("namespace={ns}"));
        api_request(caller, "GET", &format!("/items/{id}"), &query, None, claim)
    }
}

/// The namespaces a search answer's rows come from.
fn owners(body: &Value) -> Vec<String> {
    let mut owners: Vec<String> = body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {body}"))
        .iter()
        .map(|hit| hit["metadata"]["owner"].as_str().unwrap().to_owned())
        .collect();
    owners.dedup();
    owners
}

fn assert_forbidden(reply: &Reply, names: &[&str], what: &str) {
    let Reply { status, body, .. } = reply;
    assert_eq!(
        (*status, body["error"]["code"].as_str()),
        (403, Some("namespace_forbidden")),
        "{what}: {body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    for name in names {
        assert!(
            message.contains(name),
            "{what}: {name:?} not in {message:?}"
        );
    }
}

/// Every shape with claims, in every mode: the claim decides, and nothing else can.
#[tokio::test]
async fn claims_decide_the_namespace_for_every_authorizer_shape_in_every_mode() {
    let x = tenants().await;
    for mode in MODES {
        let state = state(&x.t, mode);
        for caller in Caller::WITH_CLAIMS {
            let what = |case: &str| format!("{caller:?} under AUTH_MODE={mode:?}: {case}");
            let acme = Some(json!("acme"));

            // Claim ok: acme's rows only, with or without the body repeating it.
            for named in [None, Some("acme")] {
                let Reply { status, body, .. } =
                    state.call(&x.search(caller, named, acme.clone())).await;
                assert_eq!(status, 200, "{}: {body}", what("claim ok"));
                assert_eq!(body["namespace"], json!("acme"), "{}", what("claim ok"));
                assert_eq!(owners(&body), ["acme"], "{}", what("claim ok"));
                let Reply { status, body, .. } = state
                    .call(&x.item(caller, x.acme, named, acme.clone()))
                    .await;
                assert_eq!(status, 200, "{}: {body}", what("item, claim ok"));
            }
            // The victim's item is not found from acme's namespace.
            let Reply { status, .. } = state
                .call(&x.item(caller, x.victim, None, acme.clone()))
                .await;
            assert_eq!(status, 404, "{}", what("victim's item with acme's claim"));

            // Body or query naming another namespace than the claim.
            assert_forbidden(
                &state
                    .call(&x.search(caller, Some("victim"), acme.clone()))
                    .await,
                &["\"acme\"", "\"victim\"", "claim \"namespace\""],
                &what("body names another namespace"),
            );
            assert_forbidden(
                &state
                    .call(&x.item(caller, x.victim, Some("victim"), acme.clone()))
                    .await,
                &["\"acme\"", "\"victim\"", "claim \"namespace\""],
                &what("query names another namespace"),
            );

            // A missing, numeric, empty or other non-string claim: refused even when the
            // request names a namespace, on both routes; the message names the claim.
            for (claim, says) in [
                (None, "no claim \"namespace\""),
                (Some(json!(42)), "a number"),
                (Some(json!("")), "an empty string"),
                (Some(json!({"id": "acme"})), "an object"),
                (Some(json!(["acme"])), "an array"),
                (Some(json!("Not A Namespace")), "not a namespace"),
            ] {
                for named in [None, Some("victim"), Some("acme")] {
                    let case = format!("claim {claim:?}, request names {named:?}");
                    assert_forbidden(
                        &state.call(&x.search(caller, named, claim.clone())).await,
                        &["\"namespace\"", "NAMESPACE_CLAIM", says],
                        &what(&format!("POST /search, {case}")),
                    );
                    assert_forbidden(
                        &state
                            .call(&x.item(caller, x.victim, named, claim.clone()))
                            .await,
                        &["\"namespace\"", "NAMESPACE_CLAIM", says],
                        &what(&format!("GET /items, {case}")),
                    );
                }
            }
        }
    }
}

/// Events without claims: only `iam` (signed callers) and `none` let the request choose;
/// `jwt` and `lambda` fail closed, and so does `iam` for an unsigned event.
#[tokio::test]
async fn without_claims_the_request_chooses_only_in_iam_and_none_modes() {
    let x = tenants().await;
    for mode in MODES {
        let state = state(&x.t, mode);
        for caller in Caller::WITHOUT_CLAIMS {
            let what = format!("{caller:?} under AUTH_MODE={mode:?}");
            let chooses = match mode {
                AuthMode::None => true,
                AuthMode::Iam => caller.is_iam(),
                AuthMode::Jwt | AuthMode::Lambda => false,
            };
            let search = state.call(&x.search(caller, Some("victim"), None)).await;
            let item = state
                .call(&x.item(caller, x.victim, Some("victim"), None))
                .await;
            if chooses {
                assert_eq!(search.status, 200, "{what}: {}", search.body);
                assert_eq!(owners(&search.body), ["victim"], "{what}");
                assert_eq!(item.status, 200, "{what}: {}", item.body);
                // Nothing named: the default namespace (empty here).
                let Reply { status, body, .. } = state.call(&x.search(caller, None, None)).await;
                assert_eq!((status, body["namespace"].clone()), (200, json!("default")));
            } else {
                let says = if caller.is_iam() {
                    "IAM-signed"
                } else {
                    "no authorizer context"
                };
                assert_forbidden(&search, &[says, mode.as_str()], &what);
                assert_forbidden(&item, &[says, mode.as_str()], &what);
            }
        }
    }
}

/// `AUTH_MODE=none` is for local development, yet an event that does carry a JWT (or a
/// Lambda authorizer's context) still reads only its claim's namespace.
#[tokio::test]
async fn a_jwt_under_auth_mode_none_still_follows_its_claim() {
    let x = tenants().await;
    let state = state(&x.t, AuthMode::None);
    let Reply { status, body, .. } = state
        .call(&x.search(Caller::HttpJwt, None, Some(json!("acme"))))
        .await;
    assert_eq!((status, owners(&body)), (200, vec!["acme".to_owned()]));
    assert_forbidden(
        &state
            .call(&x.search(Caller::HttpJwt, Some("victim"), Some(json!("acme"))))
            .await,
        &["\"victim\""],
        "JWT for acme naming victim under none",
    );
    assert_forbidden(
        &state
            .call(&x.search(Caller::HttpLambda, Some("victim"), None))
            .await,
        &["no claim \"namespace\""],
        "Lambda authorizer context without the claim under none",
    );
}

/// `NAMESPACE_CLAIM` names the claim that is read; the default `namespace` is then just
/// another claim.
#[tokio::test]
async fn the_configured_claim_is_the_one_read() {
    let x = tenants().await;
    let auth = Auth::from_lookup(|name| match name {
        "AUTH_MODE" => Some("jwt".into()),
        "NAMESPACE_CLAIM" => Some("custom:tenant".into()),
        _ => None,
    })
    .unwrap();
    let state = x.t.search_with(Limits::default(), auth);
    let mut event = x.search(Caller::HttpJwt, None, Some(json!("victim")));
    assert_forbidden(
        &state.call(&event).await,
        &["no claim \"custom:tenant\""],
        "the default claim is not read",
    );
    event["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant"] = json!("acme");
    let Reply { status, body, .. } = state.call(&event).await;
    assert_eq!((status, owners(&body)), (200, vec!["acme".to_owned()]));
}

#[test]
fn auth_settings_are_read_once_and_invalid_values_stop_the_cold_start() {
    let read = |mode: Option<&str>| {
        let mode = mode.map(str::to_owned);
        Auth::from_lookup(move |name| (name == "AUTH_MODE").then(|| mode.clone()).flatten())
    };
    assert_eq!(
        read(None).unwrap().mode,
        AuthMode::Jwt,
        "fails closed by default"
    );
    assert_eq!(read(Some(" ")).unwrap().mode, AuthMode::Jwt);
    assert_eq!(read(Some("iam")).unwrap().mode, AuthMode::Iam);
    assert_eq!(read(Some("none")).unwrap().mode, AuthMode::None);
    assert_eq!(read(Some("lambda")).unwrap().namespace_claim, "namespace");
    let err = read(Some("NONE")).unwrap_err().to_string();
    assert!(
        err.contains("AUTH_MODE") && err.contains("jwt, lambda, iam or none"),
        "{err}"
    );
    let err = Auth::from_lookup(|name| (name == "NAMESPACE_CLAIM").then(|| "two words".into()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NAMESPACE_CLAIM"), "{err}");
}

/// A queue narrowed to some namespaces rejects records of others, each with its own
/// reason code, and still writes the rest.
#[tokio::test]
async fn ingest_rejects_records_outside_the_queue_allow_list() {
    let t = TestStack::new().await.unwrap();
    let mut ingest = t.ingest();
    ingest.state.allowed_namespaces = AllowedNamespaces::only(&["acme"]).unwrap();
    let v = clustered(3, 1, DIMS, 0.1, 42);
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let bodies = vec![
        upsert_body(ids[0], "acme", &v[0], json!({}), 0),
        upsert_body(ids[1], "victim", &v[1], json!({}), 0),
        json!({"op": "delete", "id": ids[2], "namespace": "victim"}).to_string(),
    ];
    let report = ingest.process(&bodies, 30.0).await;
    assert_eq!(report.failures, ["m1", "m2"]);
    assert_eq!(
        report.rejected.get("namespace_not_allowed"),
        Some(&2),
        "{report:?}"
    );
    assert_eq!(report.written, 1);
    let victim = Namespace::parse("victim").unwrap();
    assert!(t
        .db
        .get_item(&victim, ids[1], false)
        .await
        .unwrap()
        .is_none());
    let acme = Namespace::parse("acme").unwrap();
    assert!(t.db.get_item(&acme, ids[0], false).await.unwrap().is_some());
}
