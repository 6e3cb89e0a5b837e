//! The contract, reason by reason.

use super::*;
use crate::settings::tests::limits;
use crate::settings::AllowedNamespaces;
use serde_json::json;

const DIMS: usize = 3;

fn try_parse(body: Value) -> Result<WriteOp, Rejection> {
    parse(
        Some(&body.to_string()),
        DIMS,
        &Limits::default(),
        Utc::now(),
    )
}

fn reason(body: Value) -> Reason {
    try_parse(body).unwrap_err().reason
}

fn good() -> Value {
    json!({"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "embedding": [0.1, 0.2, 0.3]})
}

fn with(key: &str, value: Value) -> Value {
    let mut body = good();
    body[key] = value;
    body
}

#[test]
fn a_minimal_message_is_an_upsert_in_the_default_namespace() {
    let WriteOp::Upsert(u) = try_parse(good()).unwrap() else {
        panic!("expected an upsert")
    };
    assert_eq!(u.namespace.as_str(), "default");
    assert_eq!(u.version, 0);
    assert_eq!(u.embedding.as_slice(), &[0.1, 0.2, 0.3]);
}

#[test]
fn a_delete_needs_no_embedding() {
    let body = json!({"op": "delete", "id": "0f8fad5b-d9cb-469f-a165-70867728950e", "namespace": "acme", "version": 4});
    assert!(matches!(
        try_parse(body).unwrap(),
        WriteOp::Delete { version: 4, .. }
    ));
}

#[test]
fn each_contract_violation_has_its_reason() {
    assert_eq!(
        parse(None, DIMS, &Limits::default(), Utc::now())
            .unwrap_err()
            .reason,
        Reason::MissingBody
    );
    assert_eq!(
        parse(Some("{not json"), DIMS, &Limits::default(), Utc::now())
            .unwrap_err()
            .reason,
        Reason::InvalidJson
    );
    assert_eq!(
        reason(json!({"embedding": [0.1, 0.2, 0.3]})),
        Reason::MissingId
    );
    assert_eq!(reason(with("id", json!("not-a-uuid"))), Reason::InvalidId);
    assert_eq!(reason(with("id", json!(42))), Reason::InvalidId);
    assert_eq!(
        reason(with("namespace", json!("Bad Space"))),
        Reason::InvalidNamespace
    );
    assert_eq!(
        reason(with("embedding", json!([0.1, 0.2]))),
        Reason::WrongDimensions
    );
    assert_eq!(
        reason(with("embedding", json!([0.1, "x", 0.3]))),
        Reason::InvalidEmbedding
    );
    assert_eq!(
        reason(with("embedding", json!(null))),
        Reason::MissingEmbedding
    );
    assert_eq!(
        reason(with("embedding", json!([0.1, 1e39, 0.3]))),
        Reason::NonFiniteValue
    );
    assert_eq!(
        reason(with("metadata", json!([1, 2]))),
        Reason::InvalidMetadata
    );
    assert_eq!(
        reason(with("metadata", json!("text"))),
        Reason::InvalidMetadata
    );
    assert_eq!(
        reason(with(
            "metadata",
            json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}})
        )),
        Reason::MetadataTooDeep
    );
    assert_eq!(
        reason(with("metadata", json!({"big": "x".repeat(20_000)}))),
        Reason::MetadataTooLarge
    );
    assert_eq!(
        reason(with("content", json!("x".repeat(70_000)))),
        Reason::ContentTooLarge
    );
    assert_eq!(reason(with("op", json!("merge"))), Reason::UnknownOp);
    assert_eq!(reason(with("version", json!(-1))), Reason::InvalidVersion);
    assert_eq!(reason(with("version", json!(1.5))), Reason::InvalidVersion);
    assert_eq!(
        reason(with("created_at", json!("yesterday"))),
        Reason::InvalidCreatedAt
    );
    assert_eq!(reason(with("metdata", json!({}))), Reason::UnknownField);
}

#[test]
fn every_malformed_embedding_is_invalid_embedding() {
    for bad in [
        json!("0.1,0.2,0.3"),
        json!(7),
        json!(true),
        json!({"0": 0.1}),
        json!([0.1, null, 0.3]),
        json!([[0.1], 0.2, 0.3]),
        json!([0.1, {"x": 1}, 0.3]),
        json!([0.1, 0.2, false]),
    ] {
        let err = try_parse(with("embedding", bad.clone())).unwrap_err();
        assert_eq!(err.reason, Reason::InvalidEmbedding, "{bad}: {err}");
    }
    let err = try_parse(with("embedding", json!([0.1, "x", 0.3]))).unwrap_err();
    assert!(err.detail.contains("embedding[1] is a string"), "{err}");
}

#[test]
fn embedding_values_round_as_serde_rounds_f32() {
    let text = "[0.1, -0.025513947, 1e-40, 3.4028235e38, 16777217, -0, 0.333333343267]";
    let expected: Vec<f32> = serde_json::from_str(text).unwrap();
    let body = format!(r#"{{"id": "0f8fad5b-d9cb-469f-a165-70867728950e", "embedding": {text}}}"#);
    let WriteOp::Upsert(u) = parse(Some(&body), 7, &Limits::default(), Utc::now()).unwrap() else {
        panic!("expected an upsert")
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(u.embedding.as_slice()), bits(&expected));
}

#[test]
fn nan_literals_are_not_json() {
    let body = r#"{"id":"0f8fad5b-d9cb-469f-a165-70867728950e","embedding":[NaN,0,0]}"#;
    assert_eq!(
        parse(Some(body), DIMS, &Limits::default(), Utc::now())
            .unwrap_err()
            .reason,
        Reason::InvalidJson
    );
}

#[test]
fn depth_counts_structure_not_brackets_in_strings() {
    assert_eq!(json_depth(r#"{"a": "[[[{{{"}"#), 1);
    assert_eq!(json_depth(r#"{"a": [{"b": []}]}"#), 4);
    assert_eq!(json_depth(r#""\"[""#), 0);
}

#[test]
fn limits_read_each_variable() {
    let l = limits(&[
        ("MAX_CONTENT_BYTES", "1000"),
        ("MAX_METADATA_BYTES", " 2000 "),
        ("MAX_METADATA_DEPTH", "3"),
    ])
    .unwrap();
    assert_eq!(
        (
            l.max_content_bytes,
            l.max_metadata_bytes,
            l.max_metadata_depth
        ),
        (1000, 2000, 3)
    );
    let body = with("metadata", json!({"a": {"b": {"c": {"d": 1}}}}));
    let err = parse(Some(&body.to_string()), DIMS, &l, Utc::now()).unwrap_err();
    assert_eq!(err.reason, Reason::MetadataTooDeep);
    assert!(err.detail.contains("MAX_METADATA_DEPTH"), "{err}");
}

#[test]
fn the_allow_list_rejects_other_namespaces_and_reads_its_variable() {
    let op = try_parse(good()).unwrap();
    let namespace = op.key().0.as_str().to_owned();
    assert!(AllowedNamespaces::default().check(op.clone()).is_ok());
    let allowed = AllowedNamespaces::only(&[&namespace, "b"]).unwrap();
    assert!(allowed.check(op.clone()).is_ok());
    let err = AllowedNamespaces::only(&["a", "b"])
        .unwrap()
        .check(op)
        .unwrap_err();
    assert_eq!(err.reason.code(), "namespace_not_allowed");
    assert!(err.detail.contains("ALLOWED_NAMESPACES"), "{err}");
    let read = |v: &str| {
        let v = v.to_owned();
        AllowedNamespaces::from_lookup(move |_| Some(v.clone()))
    };
    assert_eq!(read(" ").unwrap(), AllowedNamespaces::default());
    assert_eq!(
        read("a, b").unwrap(),
        AllowedNamespaces::only(&["a", "b"]).unwrap()
    );
    let err = read("a,Not Valid").unwrap_err().to_string();
    assert!(err.contains("ALLOWED_NAMESPACES"), "{err}");
}

#[test]
fn created_at_is_bounded_by_the_clock_and_the_floor() {
    let now = DateTime::parse_from_rfc3339("2026-12-01T02:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let at = |created_at: &str, limits: &Limits| {
        let body = with("created_at", json!(created_at)).to_string();
        parse(Some(&body), DIMS, limits, now).map(|op| match op {
            WriteOp::Upsert(u) => u.created_at,
            WriteOp::Delete { .. } => panic!("an upsert"),
        })
    };
    let d = Limits::default();
    // Within the skew and from the floor on: stored as sent.
    for ok in [
        "2026-12-01T02:05:00Z",
        "2026-12-01T03:04:59+01:00",
        "2000-01-01T00:00:00Z",
        "2026-11-30T23:00:00Z",
    ] {
        assert_eq!(
            at(ok, &d).unwrap(),
            DateTime::parse_from_rfc3339(ok).unwrap()
        );
    }
    for (bad, reason, says) in [
        (
            "2026-12-01T02:05:01Z",
            Reason::CreatedAtInFuture,
            "301 s ahead",
        ),
        (
            "9999-12-31T23:59:59Z",
            Reason::CreatedAtInFuture,
            "MAX_CLOCK_SKEW_S",
        ),
        (
            "1999-12-31T23:59:59Z",
            Reason::CreatedAtTooOld,
            "MIN_CREATED_AT",
        ),
        (
            "1970-01-01T00:00:00Z",
            Reason::CreatedAtTooOld,
            "2000-01-01T00:00:00",
        ),
        (
            "0001-01-01T00:00:00Z",
            Reason::CreatedAtTooOld,
            "MIN_CREATED_AT",
        ),
    ] {
        let err = at(bad, &d).unwrap_err();
        assert_eq!(err.reason, reason, "{bad}: {err}");
        assert!(err.detail.contains(says), "{bad}: {err}");
    }
    // Both bounds are configurable.
    let l = limits(&[
        ("MAX_CLOCK_SKEW_S", "0"),
        ("MIN_CREATED_AT", "2020-01-01T00:00:00Z"),
    ])
    .unwrap();
    assert_eq!(
        at("2026-12-01T02:00:01Z", &l).unwrap_err().reason,
        Reason::CreatedAtInFuture
    );
    assert!(at("2026-12-01T02:00:00Z", &l).is_ok());
    assert_eq!(
        at("2019-12-31T23:59:59Z", &l).unwrap_err().reason,
        Reason::CreatedAtTooOld
    );
    // A delete carries no created_at that matters: nothing to bound.
    let delete = json!({"op": "delete", "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "created_at": "9999-12-31T23:59:59Z"});
    assert!(parse(Some(&delete.to_string()), DIMS, &d, now).is_ok());
}

#[test]
fn reason_codes_are_unique() {
    let mut codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), Reason::ALL.len());
}
