//! Filters: the SQL the compiler emits selects exactly the rows the Rust reference
//! evaluator selects, for every operator over a corpus of varied metadata.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kit_support::corpus::{clustered, DIMS};
use kit_support::search_corpus::{seed_rows, varied_metadata};
use kit_support::TestStack;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{expected, result_ids};

const ROWS: usize = 300;

/// Every case: the hand-written ones, then the generated ones.
fn cases(metadata: &[Map<String, Value>]) -> Vec<Value> {
    let mut cases = combinator_cases();
    cases.extend(generated_cases(metadata));
    cases
}

/// Every operator on every key of the corpus, with up to six distinct sample values
/// per key (so numbers, strings, booleans, null, arrays and objects all meet every
/// operator, including under keys whose type varies from row to row).
fn generated_cases(metadata: &[Map<String, Value>]) -> Vec<Value> {
    let mut samples: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for row in metadata {
        for (key, value) in row {
            let seen = samples.entry(key.clone()).or_default();
            if seen.len() < 6 && !seen.contains(value) {
                seen.push(value.clone());
            }
        }
    }
    samples.insert("missing".into(), vec![json!(1), json!("x"), Value::Null]);
    let mut cases = Vec::new();
    for (key, values) in &samples {
        if key.starts_with('$') {
            continue; // not addressable as a field: the injection test covers the 400
        }
        let case = |condition: Value| {
            let mut filter = Map::new();
            filter.insert(key.clone(), condition);
            Value::Object(filter)
        };
        cases.push(case(json!({"$exists": true})));
        cases.push(case(json!({"$exists": false})));
        for value in values {
            cases.push(case(value.clone()));
            cases.push(case(json!({"$eq": value})));
            cases.push(case(json!({"$ne": value})));
            if value.is_number() || value.is_string() {
                for op in ["$gt", "$gte", "$lt", "$lte"] {
                    cases.push(case(json!({ op: value })));
                }
            }
        }
        let some: Vec<Value> = values.iter().take(3).cloned().collect();
        cases.push(case(json!({ "$in": some })));
        cases.push(case(json!({ "$nin": some })));
    }
    cases
}

/// Hand-written cases: type mixing, number precision, unicode, combinators.
fn combinator_cases() -> Vec<Value> {
    vec![
        json!({}),
        json!({"year": 2020}),
        json!({"year": 2020.0}),
        json!({"year": "2020"}),
        json!({"year": null}),
        json!({"year": {"$gte": 2020, "$lt": 2024}}),
        json!({"year": {"$gt": 2021, "$lte": 2021.5}}),
        json!({"year": {"$in": [2020, "2021", null]}}),
        json!({"year": {"$nin": [2020, "2021", null]}}),
        json!({"year": {"$gt": "2020"}}),
        json!({"score": 0}),
        json!({"score": -0.0}),
        json!({"score": 9_007_199_254_740_992u64}),
        json!({"score": 9_007_199_254_740_993u64}),
        json!({"score": {"$gt": 9_007_199_254_740_992u64}}),
        json!({"score": {"$gte": 9_007_199_254_740_992.0}}),
        json!({"score": 1e-7}),
        json!({"score": {"$gt": 0, "$lt": 1e-6}}),
        json!({"score": {"$lte": -2}}),
        json!({"text": {"$gt": "Z"}}),
        json!({"text": {"$lt": "a"}}),
        json!({"text": {"$gte": "é"}}),
        json!({"text": {"$gt": ""}}),
        json!({"text": "e\u{301}"}),
        json!({"text": "é"}),
        json!({"text": {"$in": ["", " ", "O'Reilly"]}}),
        json!({"tags": ["a", "b"]}),
        json!({"tags": ["b", "a"]}),
        json!({"tags": ["a"]}),
        json!({"tags": "a"}),
        json!({"tags": []}),
        json!({"tags": [1, "a", null]}),
        json!({"tags": [1.0, "a", null]}),
        json!({"tags": {"$in": [["a"], []]}}),
        json!({"tags": {"$ne": ["a", "b"]}}),
        json!({"author": {"name": "ann", "id": 1}}),
        json!({"author": {"id": 1, "name": "ann"}}),
        json!({"author": {"name": "ann"}}),
        json!({"author": {}}),
        json!({"author": {"$eq": {}}}),
        json!({"author": "ann"}),
        json!({"author": {"$in": [{"name": "ann", "id": 1.0}, "ann"]}}),
        json!({"nested": [[[[0]]]]}),
        json!({"nested": {"$eq": [[[[10]]]]}}),
        json!({"draft": false}),
        json!({"draft": 0}),
        json!({"draft": "false"}),
        json!({"draft": {"$ne": false}}),
        json!({"nullable": null}),
        json!({"nullable": {"$ne": null}}),
        json!({"nullable": {"$exists": true}, "$not": {"nullable": null}}),
        json!({"ключ": "значение"}),
        json!({"emoji 🎉": true}),
        json!({"emoji 🎉": {"$exists": false}}),
        json!({"日本語": 1}),
        json!({"lang": "日本語"}),
        json!({"lang": "en", "draft": true}),
        json!({"$or": [{"lang": "en"}, {"year": {"$gte": 2025}}]}),
        json!({"$or": [{"lang": "en"}, {"missing": 1}]}),
        json!({"$and": [{"lang": {"$in": ["en", "de"]}}, {"score": {"$gt": 0}}]}),
        json!({"$not": {"year": {"$gt": 2020}}}),
        json!({"$not": {"$not": {"year": {"$gt": 2020}}}}),
        json!({"$not": {"missing": {"$gt": 0}}}),
        json!({"$not": {"$or": [{"missing": {"$gt": 0}}, {"lang": "en"}]}}),
        json!({"$not": {"$and": [{"missing": {"$lt": 0}}, {"lang": "en"}]}}),
        json!({"$and": [{"draft": false}, {"$not": {"tags": {"$in": [[]]}}}]}),
        json!({"$or": [{"$and": [{"mod7": 3}, {"lang": "de"}]}, {"$not": {"year": {"$exists": true}}}]}),
        json!({"$or": [{"i": {"$lt": 10}}], "$and": [{"i": {"$gte": 5}}], "$not": {"i": 7}}),
        json!({"lang": "en", "year": {"$gte": 2024}, "$or": [{"text": "apple"}, {"text": {"$in": ["Zebra", "9"]}}]}),
    ]
}

#[tokio::test]
async fn every_filter_operator_agrees_with_the_reference_evaluator() {
    let t = TestStack::new().await.unwrap();
    let metadata = varied_metadata(ROWS, 41);
    let vectors = clustered(ROWS, 5, DIMS, 0.6, 42);
    let ids = seed_rows(&t, "acme", &vectors, &metadata).await.unwrap();
    // The same metadata in another namespace: no filter may reach across.
    seed_rows(&t, "globex", &vectors[..60], &metadata[..60])
        .await
        .unwrap();
    t.analyze().await.unwrap();
    let state = t.search();

    let cases = cases(&metadata);
    let mut mismatches = Vec::new();
    for filter in &cases {
        let want = expected(&ids, &metadata, filter);
        let reply = state
            .post_search(
                &json!({"namespace": "acme", "vector": vectors[0], "k": ROWS,
                    "filter": filter, "include": []}),
            )
            .await;
        assert_eq!(reply.status, 200, "{filter}: {}", reply.body);
        let got_list = result_ids(&reply.body);
        let got: BTreeSet<Uuid> = got_list.iter().copied().collect();
        assert_eq!(got.len(), got_list.len(), "{filter}: duplicate ids");
        if got != want {
            let rows: HashMap<&Uuid, &Map<String, Value>> = ids.iter().zip(&metadata).collect();
            let describe = |set: BTreeSet<&Uuid>| {
                set.into_iter()
                    .take(3)
                    .map(|id| {
                        rows.get(id).map_or("another namespace".into(), |m| {
                            Value::Object((*m).clone()).to_string()
                        })
                    })
                    .collect::<Vec<_>>()
            };
            mismatches.push(format!(
                "{filter}: SQL {} rows, evaluator {}; only SQL: {:?}; only evaluator: {:?}",
                got.len(),
                want.len(),
                describe(got.difference(&want).collect()),
                describe(want.difference(&got).collect()),
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} filters disagree:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

/// The corpus is varied enough that most filters select a proper, non-empty subset (by
/// the reference evaluator): agreement on them means something.
#[test]
fn most_filters_select_a_proper_non_empty_subset() {
    let metadata = varied_metadata(ROWS, 41);
    let ids: Vec<Uuid> = (0..ROWS).map(|_| Uuid::new_v4()).collect();
    let cases = cases(&metadata);
    let informative = cases
        .iter()
        .map(|filter| expected(&ids, &metadata, filter))
        .filter(|want| !want.is_empty() && want.len() < ROWS)
        .count();
    eprintln!(
        "{} filters, {informative} selecting a proper non-empty subset",
        cases.len()
    );
    assert!(
        informative * 2 > cases.len(),
        "only {informative} of {} filters were informative",
        cases.len()
    );
}
