//! The filter language: parsing, bounds, and the reference evaluator.

use super::*;
use serde_json::json;

fn parse(value: Value) -> Result<Option<Filter>, ApiError> {
    parse_filter(&value, &FilterLimits::default())
}

#[test]
fn the_design_example_parses() {
    let filter = parse(json!({"lang": "en", "year": {"$gte": 2024},
        "$or": [{"source": "faq"}, {"source": {"$in": ["kb", "docs"]}}]}))
    .unwrap()
    .unwrap();
    let row = |v: Value| v.as_object().unwrap().clone();
    assert!(matches(
        &filter,
        &row(json!({"lang": "en", "year": 2025, "source": "kb"}))
    ));
    assert!(!matches(
        &filter,
        &row(json!({"lang": "en", "year": 2023, "source": "kb"}))
    ));
    assert!(!matches(
        &filter,
        &row(json!({"lang": "en", "year": 2025, "source": "blog"}))
    ));
}

#[test]
fn numbers_compare_by_exact_decimal_value() {
    let n = |text: &str| match serde_json::from_str::<Value>(text).unwrap() {
        Value::Number(n) => n,
        other => panic!("{other}"),
    };
    for (a, b, want) in [
        ("1", "1.0", Ordering::Equal),
        ("0", "-0.0", Ordering::Equal),
        ("-1", "0", Ordering::Less),
        ("-2", "-1.5", Ordering::Less),
        ("0.1", "0.10", Ordering::Equal),
        ("1e2", "100", Ordering::Equal),
        ("1.5e-3", "0.0015", Ordering::Equal),
        ("9007199254740993", "9007199254740992", Ordering::Greater),
        (
            "18446744073709551615",
            "1.8446744073709552e19",
            Ordering::Less,
        ),
        ("12", "9", Ordering::Greater),
        ("0.02", "0.1", Ordering::Less),
        ("-0.02", "-0.1", Ordering::Greater),
    ] {
        assert_eq!(compare_numbers(&n(a), &n(b)), want, "{a} vs {b}");
        assert_eq!(compare_numbers(&n(b), &n(a)), want.reverse(), "{b} vs {a}");
    }
}

#[test]
fn empty_filter_is_no_filter() {
    assert_eq!(parse(json!({})).unwrap(), None);
}

#[test]
fn mistakes_are_400_with_a_reason() {
    for (bad, says) in [
        (json!({"a": {"$regex": "x"}}), "unknown operator"),
        (json!({"$nor": []}), "unknown combinator"),
        (json!({"a": {"$gt": true}}), "number or a string"),
        (json!({"a": {"$in": "x"}}), "takes an array"),
        (json!({"$or": {}}), "array of filters"),
        (json!({"$and": []}), "at least one"),
        (json!({"a": {"$exists": 1}}), "true or false"),
        (json!([1]), "JSON object"),
        (json!({"a": "x\u{0}"}), "NUL"),
    ] {
        let err = parse(bad.clone()).unwrap_err();
        assert_eq!(err.code, "invalid_filter");
        assert!(err.message.contains(says), "{bad}: {}", err.message);
    }
}

#[test]
fn complexity_is_bounded() {
    let mut deep = json!({"a": 1});
    for _ in 0..10 {
        deep = json!({"$not": deep});
    }
    assert!(parse(deep)
        .unwrap_err()
        .message
        .contains("MAX_FILTER_DEPTH"));
    let wide: Map<String, Value> = (0..100).map(|i| (format!("k{i}"), json!(i))).collect();
    assert!(parse(Value::Object(wide))
        .unwrap_err()
        .message
        .contains("MAX_FILTER_CONDITIONS"));
    let many: Vec<Value> = (0..10_000).map(|i| json!(i)).collect();
    assert!(parse(json!({"a": {"$in": many}}))
        .unwrap_err()
        .message
        .contains("MAX_FILTER_IN_VALUES"));
}

/// Filters with no condition at all, or few, made of many (empty) objects and
/// arrays: each is refused by MAX_FILTER_NODES, at the first node past it.
#[test]
fn every_object_and_array_counts_empty_ones_included() {
    let n = 100_000;
    let empties = |item: Value| Value::Array(vec![item; n]);
    let mut nested_empties = json!({});
    for _ in 0..3 {
        nested_empties = json!({"$and": [nested_empties]});
    }
    let two_level = json!({"$or": vec![json!({"$and": [{}, {}]}); n]});
    let nots = Value::Array(vec![json!({"$not": {}}); n]);
    for (what, filter) in [
        ("$and of {}", json!({"$and": empties(json!({}))})),
        ("$or of {}", json!({"$or": empties(json!({}))})),
        ("$and of $not {}", json!({"$and": nots})),
        ("$or of $and of {}", two_level),
        (
            "$and of nested empties",
            json!({"$and": empties(nested_empties)}),
        ),
        // Few conditions, but huge values: the objects and arrays inside count.
        (
            "$in of one array of []",
            json!({"a": {"$in": [empties(json!([]))]}}),
        ),
        (
            "$eq of an array of {}",
            json!({"a": {"$eq": empties(json!({}))}}),
        ),
        ("literal array of []", json!({"a": empties(json!([]))})),
        (
            "$in of 1024 {}",
            json!({"a": {"$in": vec![json!({}); 1024]}}),
        ),
    ] {
        let started = std::time::Instant::now();
        let err = parse_filter(&filter, &FilterLimits::default()).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.code, "invalid_filter", "{what}");
        assert!(
            err.message.contains("MAX_FILTER_NODES") && err.message.contains("256"),
            "{what}: {}",
            err.message
        );
        // Refused at the 257th node: microseconds, whatever the body's size.
        assert!(took.as_millis() < 50, "{what}: {took:?}");
    }
    // `$or` takes filters: an array in it is refused as such, at the first one.
    let err = parse(json!({"$or": empties(json!([]))})).unwrap_err();
    assert!(err.message.contains("JSON object"), "{}", err.message);
    // Up to the limit is fine: 255 empty groups plus the root object.
    let fits = json!({"$and": vec![json!({}); 254]});
    assert!(parse(fits).is_ok());
    let over = json!({"$and": vec![json!({}); 255]});
    assert!(parse(over).is_err());
    // An ordinary filter costs a handful of nodes.
    let mut parser = Parser {
        limits: &FilterLimits::default(),
        conditions: 0,
        nodes: 0,
    };
    parser
        .object(
            &json!({"lang": "en", "year": {"$gte": 2024},
                "$or": [{"source": "faq"}, {"tags": {"$in": [["a"], "b"]}}]}),
            1,
        )
        .unwrap();
    assert_eq!(parser.nodes, 8);
}
