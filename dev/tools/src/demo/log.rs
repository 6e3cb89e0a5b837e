//! The functions' own accounting, read from the emulator's log: the ingest function's
//! EMF metrics (`RecordsWritten`, `RecordsUnchanged`, `BatchLatency`) and its "record
//! rejected" lines (`message_id`, `reason`). Those names are the ingest function's log
//! contract (tests/ingest.rs asserts the rejection line); a log that cannot be read only
//! leaves them out of the summary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// The part of the emulator's log written since the demo started.
pub struct FunctionLog {
    path: PathBuf,
    offset: u64,
}

/// What the ingest function itself reported: its EMF metrics and rejection log lines.
#[derive(Debug, Default)]
pub struct FunctionMetrics {
    /// Per ingest invocation, in order.
    pub batches: Vec<BatchMetrics>,
    /// message id → reason code, from the "record rejected" log lines.
    pub reasons: HashMap<String, String>,
}

/// One ingest invocation's EMF metrics.
#[derive(Debug)]
pub struct BatchMetrics {
    pub written: u64,
    pub unchanged: u64,
    pub latency_ms: f64,
}

impl FunctionLog {
    pub fn at_end(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self {
            path: path.to_owned(),
            offset,
        }
    }

    pub fn read(&self) -> anyhow::Result<FunctionMetrics> {
        let bytes = std::fs::read(&self.path)
            .with_context(|| format!("reading the emulator's log {}", self.path.display()))?;
        let start = usize::try_from(self.offset).unwrap_or(0).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes[start..]);
        let mut metrics = FunctionMetrics::default();
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let Ok(value) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let count = |name: &str| value[name].as_f64().unwrap_or(0.0) as u64;
            if value["Function"] == "ingest" && value.get("_aws").is_some() {
                metrics.batches.push(BatchMetrics {
                    written: count("RecordsWritten"),
                    unchanged: count("RecordsUnchanged"),
                    latency_ms: value["BatchLatency"].as_f64().unwrap_or(0.0),
                });
            }
            let fields = value.get("fields").unwrap_or(&value);
            if fields["message"] == "record rejected" {
                if let (Some(id), Some(reason)) =
                    (fields["message_id"].as_str(), fields["reason"].as_str())
                {
                    metrics.reasons.insert(id.to_owned(), reason.to_owned());
                }
            }
        }
        Ok(metrics)
    }
}
