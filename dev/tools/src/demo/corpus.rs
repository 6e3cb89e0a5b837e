//! What the demo ingests: clustered documents with metadata the searches filter on,
//! reproducible from `--seed`, the old rows the purge deletes, and records the ingest
//! function must refuse.

use chrono::{DateTime, SecondsFormat, Utc};
use kit_support::corpus::{near, random_unit};
use kit_support::events::UpsertMessage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use storage::Namespace;
use uuid::Uuid;

use super::DemoArgs;

/// One synthetic document.
#[derive(Debug)]
pub struct Doc {
    pub id: Uuid,
    pub embedding: Vec<f32>,
    pub metadata: Value,
    pub content: String,
}

pub struct Corpus {
    pub centres: Vec<Vec<f32>>,
    pub docs: Vec<Doc>,
    /// Rows the purge step seeds with an old `created_at`.
    pub old: Vec<Doc>,
}

const LANGS: [&str; 2] = ["en", "de"];
const SOURCES: [&str; 3] = ["faq", "kb", "docs"];

impl Corpus {
    /// Documents drawn around random centres, each with its own noise scale, so a query
    /// at a centre sees distances spread from about 0.02 to 0.2 within its cluster.
    pub fn generate(args: &DemoArgs) -> Self {
        let dims = args.dimensions;
        let mut rng = StdRng::seed_from_u64(args.seed);
        let centres: Vec<Vec<f32>> = (0..args.clusters)
            .map(|_| random_unit(&mut rng, dims))
            .collect();
        let draw = |rng: &mut StdRng, i: usize| {
            let cluster = i % centres.len();
            let spread = rng.gen_range(0.01f32..0.035);
            let embedding = near(&centres[cluster], spread, rng);
            let lang = LANGS[usize::from(rng.gen_bool(0.4))];
            let source = SOURCES[rng.gen_range(0..SOURCES.len())];
            let year: u32 = rng.gen_range(2020..=2026);
            Doc {
                id: uuid::Builder::from_random_bytes(rng.gen()).into_uuid(),
                embedding,
                metadata: json!({"lang": lang, "source": source, "year": year}),
                content: format!("Demo document {i}: topic {cluster}, {source} ({lang}, {year})"),
            }
        };
        let docs = (0..args.records).map(|i| draw(&mut rng, i)).collect();
        // A separate stream, so --old-records does not change the corpus.
        let mut old_rng = StdRng::seed_from_u64(args.seed ^ 0x01d_01d_01d);
        let old = (0..args.old_records)
            .map(|i| {
                let mut doc = draw(&mut old_rng, i);
                doc.metadata["source"] = json!("archive");
                doc.content = format!("Archived demo document {i}");
                doc
            })
            .collect();
        Self { centres, docs, old }
    }
}

/// The ingest contract's upsert message for `doc`.
pub fn upsert_body(
    namespace: &Namespace,
    doc: &Doc,
    version: u64,
    created_at: Option<DateTime<Utc>>,
) -> String {
    let created_at = created_at.map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true));
    UpsertMessage {
        id: doc.id,
        namespace: namespace.as_str(),
        embedding: &doc.embedding,
        content: Some(&doc.content),
        metadata: &doc.metadata,
        version,
        created_at: created_at.as_deref(),
    }
    .body()
}

/// A record the ingest function must refuse (and report in `batchItemFailures`).
pub struct Planted {
    pub message_id: &'static str,
    pub defect: &'static str,
    pub body: String,
}

/// One planted record per kind of defect.
pub fn planted_invalid(namespace: &Namespace, doc: &Doc) -> Vec<Planted> {
    let (embedding, metadata) = (&doc.embedding, &doc.metadata);
    vec![
        Planted {
            message_id: "demo-planted-wrong-dimensions",
            defect: "a 3-d embedding",
            body: json!({"id": Uuid::new_v4(), "namespace": namespace, "embedding": [0.6, 0.8, 0.0], "metadata": metadata})
                .to_string(),
        },
        Planted {
            message_id: "demo-planted-invalid-id",
            defect: "id \"not-a-uuid\"",
            body: json!({"id": "not-a-uuid", "namespace": namespace, "embedding": embedding})
                .to_string(),
        },
        Planted {
            message_id: "demo-planted-unknown-op",
            defect: "op \"merge\"",
            body: json!({"op": "merge", "id": Uuid::new_v4(), "namespace": namespace}).to_string(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_corpus_is_reproducible_and_normalised() {
        let args = DemoArgs {
            records: 40,
            batch_size: 10,
            clusters: 4,
            dimensions: 16,
            seed: 9,
            namespace: "demo".into(),
            old_records: 3,
            old_age_days: 90,
            repeats: 1,
            address: "127.0.0.1".into(),
            port: 9753,
            timeout_secs: 1,
            work_dir: PathBuf::from("unused"),
            watch_log: None,
        };
        let (a, b) = (Corpus::generate(&args), Corpus::generate(&args));
        assert_eq!(a.docs.len(), 40);
        assert_eq!(a.old.len(), 3);
        assert_eq!(a.docs[7].id, b.docs[7].id);
        assert_eq!(a.docs[7].embedding, b.docs[7].embedding);
        assert!(a.old.iter().all(|o| a.docs.iter().all(|d| d.id != o.id)));
        let norm: f32 = a.docs[5]
            .embedding
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }

    #[test]
    fn an_upsert_names_the_namespace_version_and_age() {
        let ns = Namespace::parse("demo").unwrap();
        let doc = Doc {
            id: Uuid::nil(),
            embedding: vec![0.6, 0.8],
            metadata: json!({"lang": "en"}),
            content: "c".into(),
        };
        let body: Value = serde_json::from_str(&upsert_body(&ns, &doc, 3, None)).unwrap();
        assert_eq!(body["namespace"], "demo");
        assert_eq!(body["version"], 3);
        assert!(body.get("created_at").is_none());
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let body: Value = serde_json::from_str(&upsert_body(&ns, &doc, 3, Some(at))).unwrap();
        assert_eq!(body["created_at"], "2026-01-02T03:04:05Z");
    }
}
