//! Logs and metrics for the kit's functions, shaped for CloudWatch.
//!
//! - [`init`]: JSON log lines (one object per event, with the span's fields, so the
//!   request id of the invocation is on every line), level from `RUST_LOG`.
//! - [`Metrics`]: CloudWatch Embedded Metric Format: one JSON log line per flush that
//!   CloudWatch turns into metrics, with no API call from the function. The lines go to
//!   stdout unless the process chose another [`MetricsSink`] first (a benchmark whose
//!   stdout carries its figures discards them).

use std::io::Write;
use std::sync::OnceLock;

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

/// Where [`Metrics::flush`] writes, for the whole process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricsSink {
    /// stdout, where Lambda's log capture turns EMF lines into metrics (the default).
    #[default]
    Stdout,
    /// Nowhere: processes that run the handlers for another purpose and own stdout
    /// (benchmarks print their figures there) or have no CloudWatch behind it (tests).
    Discard,
}

static METRICS_SINK: OnceLock<MetricsSink> = OnceLock::new();

/// Chooses where this process's metrics go. The first choice stands (a flush before any
/// choice fixes the default, stdout), so call it at start-up, before any handler runs;
/// returns the sink in force.
pub fn set_metrics_sink(sink: MetricsSink) -> MetricsSink {
    *METRICS_SINK.get_or_init(|| sink)
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

    /// Writes the line to the process's [`MetricsSink`] (stdout, where Lambda's log
    /// capture expects EMF, unless another was chosen) and clears the values.
    pub fn flush(&mut self) {
        let sink = *METRICS_SINK.get_or_init(MetricsSink::default);
        self.flush_into(sink, &mut std::io::stdout().lock());
    }

    /// Writes the line to `stdout` unless `sink` discards it; clears the values either way.
    fn flush_into(&mut self, sink: MetricsSink, stdout: &mut impl Write) {
        if !self.values.is_empty() && sink == MetricsSink::Stdout {
            let line = self.to_json(chrono::Utc::now().timestamp_millis());
            let _ = writeln!(stdout, "{line}");
        }
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

    #[test]
    fn the_sink_decides_whether_a_line_is_written() {
        let mut m = Metrics::new("pgvector-lambda-kit", "search");
        let mut out = Vec::new();
        m.count("Status200", 1);
        m.flush_into(MetricsSink::Discard, &mut out);
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        assert!(m.values.is_empty(), "discarded values are cleared too");
        m.count("Status200", 1);
        m.flush_into(MetricsSink::Stdout, &mut out);
        let line: Value = serde_json::from_slice(&out).expect("one JSON line");
        assert_eq!(line["Status200"], 1.0);
        assert!(out.ends_with(b"\n"));
        // The process keeps its first choice.
        assert_eq!(set_metrics_sink(MetricsSink::Discard), MetricsSink::Discard);
        assert_eq!(set_metrics_sink(MetricsSink::Stdout), MetricsSink::Discard);
    }
}
