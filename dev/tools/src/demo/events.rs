//! What the demo sends the functions, as files `cargo lambda invoke` reads: SQS events
//! (the real fixture's shape, from `kit_support::events`) and purge inputs, and the
//! ingest function's answer read back.

use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use serde_json::Value;

use super::excerpt;

/// The queue the demo's SQS events come from.
pub const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:kit-demo-ingest";

/// One SQS message: its id and body.
pub type Message = (String, String);

/// An SQS event carrying `messages` from [`QUEUE_ARN`].
pub fn sqs_event(messages: &[Message]) -> Value {
    kit_support::events::sqs_event_with_ids(messages, QUEUE_ARN)
}

/// The message ids of the ingest function's `SqsBatchResponse`.
pub fn batch_failures(answer: Value, file: &Path) -> anyhow::Result<Vec<String>> {
    let response: SqsBatchResponse = serde_json::from_value(answer.clone()).with_context(|| {
        format!(
            "the answer to {} is not an SqsBatchResponse: {}",
            file.display(),
            excerpt(&answer.to_string())
        )
    })?;
    Ok(response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect())
}

/// The demo's own folder of event files; only files it wrote before are removed.
pub struct WorkDir(PathBuf);

impl WorkDir {
    pub fn prepare(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = ["ingest-", "seed-", "purge-"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            if ours && name.ends_with(".json") {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Self(path.to_owned()))
    }

    pub fn write(&self, name: &str, value: &impl serde::Serialize) -> anyhow::Result<PathBuf> {
        let path = self.0.join(name);
        let bytes = serde_json::to_vec(value)?;
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
    use aws_lambda_events::event::sqs::SqsEvent;
    use serde_json::json;

    #[test]
    fn events_have_the_lambda_shapes() {
        let event = sqs_event(&[("m1".into(), r#"{"op":"upsert"}"#.into())]);
        let record = &event["Records"][0];
        assert_eq!(record["messageId"], "m1");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], QUEUE_ARN);
        let back: SqsEvent = serde_json::from_value(event).unwrap();
        assert_eq!(back.records.len(), 1);
        assert_eq!(back.records[0].body.as_deref(), Some(r#"{"op":"upsert"}"#));

        let scheduled = kit_support::events::scheduled_event(json!({"namespace": "demo"}));
        assert_eq!(scheduled["detail-type"], "Scheduled Event");
        assert_eq!(scheduled["source"], "aws.events");
        let back: CloudWatchEvent<Value> = serde_json::from_value(scheduled).unwrap();
        assert_eq!(back.detail, Some(json!({"namespace": "demo"})));
    }

    #[test]
    fn the_ingest_answer_names_the_failed_messages() {
        let answer = json!({"batchItemFailures": [{"itemIdentifier": "m2"}]});
        let failed = batch_failures(answer, Path::new("ingest-001.json")).unwrap();
        assert_eq!(failed, ["m2"]);
        let error = batch_failures(json!({"oops": 1}), Path::new("x.json"));
        assert!(error.is_err() || error.unwrap().is_empty());
    }
}
