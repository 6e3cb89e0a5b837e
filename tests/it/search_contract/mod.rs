//! The search API's contract (docs/search.md, docs/openapi.yaml) against the real
//! stack: PostgreSQL + pgvector through PgBouncer in transaction pooling, driven with
//! API Gateway v1/v2 and Function URL event JSON through the real handler. One concern
//! a module:
//!
//! - `filters`: the SQL filter compiler agrees with the Rust reference evaluator
//!   (`search::filter::matches`) on every operator over a corpus of varied metadata;
//! - `iterative_scans`: filtered statements keep the HNSW index, and rare matches still
//!   fill k (iterative index scans), also for a small namespace;
//! - `hostile`: hostile keys and values are 400 or exact, never extra rows, never 500;
//! - `settings_leak`: per-request settings never leak to the next client of a pooled
//!   server connection;
//! - `event_shapes`, `read_replica`: every event shape round-trips; reads go to the read
//!   replica when configured;
//! - `openapi`: real responses (200s and every error status) validate against
//!   docs/openapi.yaml;
//! - `filter_size`, `response_size`: hostile sizes, filters made of empty groups or whose
//!   SQL would be huge, and responses above Lambda's payload limit.

mod event_shapes;
mod filter_size;
mod filters;
mod hostile;
mod iterative_scans;
mod openapi;
mod read_replica;
mod response_size;
mod settings_leak;

use std::collections::BTreeSet;

use search::filter::{matches, parse_filter, FilterLimits};
use serde_json::{Map, Value};
use storage::Filter;
use uuid::Uuid;

/// The ids of a search answer's rows, in order.
fn result_ids(body: &Value) -> Vec<Uuid> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {body}"))
        .iter()
        .map(|r| serde_json::from_value(r["id"].clone()).expect("a UUID id"))
        .collect()
}

/// The ids whose metadata passes `filter` by the Rust reference evaluator.
fn expected(ids: &[Uuid], metadata: &[Map<String, Value>], filter: &Value) -> BTreeSet<Uuid> {
    let parsed = parse_filter(filter, &FilterLimits::default())
        .unwrap_or_else(|e| panic!("{filter} does not parse: {e:?}"));
    expected_for(ids, metadata, parsed.as_ref())
}

fn expected_for(
    ids: &[Uuid],
    metadata: &[Map<String, Value>],
    filter: Option<&Filter>,
) -> BTreeSet<Uuid> {
    ids.iter()
        .zip(metadata)
        .filter(|(_, m)| filter.is_none_or(|f| matches(f, m)))
        .map(|(id, _)| *id)
        .collect()
}
