//! Logs and metrics for the kit's functions, shaped for CloudWatch.
//!
//! - [`init`]: JSON log lines (one object per event, with the span's fields, so the
//!   request id of the invocation is on every line), level from `RUST_LOG`.
//! - [`Metrics`]: CloudWatch Embedded Metric Format: one JSON log line per flush that
//!   CloudWatch turns into metrics, with no API call from the function.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::{json, Map, Value};

/// Installs the JSON subscriber once; later calls are no-ops (tests call it freely).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time() // CloudWatch stamps every line already
        .try_init();
}

/// A CloudWatch metric unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    CountPerSecond,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::CountPerSecond => "Count/Second",
        }
    }
}

/// Metrics for one invocation, written as one Embedded Metric Format line by [`Metrics::flush`].
#[derive(Debug)]
pub struct Metrics {
    namespace: &'static str,
    dimensions: Vec<(String, String)>,
    values: Vec<(String, Unit, f64)>,
}

impl Metrics {
    /// `namespace` is the CloudWatch metric namespace (e.g. `pgvector-lambda-kit`);
    /// `function` becomes the `Function` dimension.
    pub fn new(namespace: &'static str, function: &str) -> Self {
        Self {
            namespace,
            dimensions: vec![("Function".to_owned(), function.to_owned())],
            values: Vec::new(),
        }
    }

    pub fn put(&mut self, name: impl Into<String>, unit: Unit, value: f64) -> &mut Self {
        self.values.push((name.into(), unit, value));
        self
    }

    pub fn count(&mut self, name: impl Into<String>, value: u64) -> &mut Self {
        self.put(name, Unit::Count, value as f64)
    }

    /// The EMF document (exposed for tests).
    pub fn to_json(&self, timestamp_ms: i64) -> Value {
        let mut root = Map::new();
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        let metrics: Vec<Value> = self
            .values
            .iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimension_names],
                    "Metrics": metrics,
                }]
            }),
        );
        for (k, v) in &self.dimensions {
            root.insert(k.clone(), Value::String(v.clone()));
        }
        for (name, _, value) in &self.values {
            root.insert(name.clone(), json!(value));
        }
        Value::Object(root)
    }

    /// Writes the line to stdout (where Lambda's log capture expects EMF) and clears the values.
    pub fn flush(&mut self) {
        if self.values.is_empty() {
            return;
        }
        let mut line = String::new();
        let _ = write!(
            line,
            "{}",
            self.to_json(chrono::Utc::now().timestamp_millis())
        );
        let _ = writeln!(std::io::stdout().lock(), "{line}");
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_metric_it_carries() {
        let mut m = Metrics::new("pgvector-lambda-kit", "ingest");
        m.count("RecordsReceived", 10)
            .put("BatchLatency", Unit::Milliseconds, 12.5);
        let doc = m.to_json(1);
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "pgvector-lambda-kit");
        assert_eq!(declared["Dimensions"], json!([["Function"]]));
        assert_eq!(
            declared["Metrics"][1],
            json!({"Name": "BatchLatency", "Unit": "Milliseconds"})
        );
        assert_eq!(doc["Function"], "ingest");
        assert_eq!(doc["RecordsReceived"], 10.0);
        assert_eq!(doc["BatchLatency"], 12.5);
    }
}
