//! Step 3, search: requests to the search function's Function URL, each answer checked
//! against the contract (docs/search.md), then repeated queries for latencies.

use anyhow::{bail, ensure, Context};
use hyper::{Method, StatusCode};
use kit_support::corpus::near;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::corpus::Corpus;
use super::emulator::{Emulator, Reply};
use super::progress::Progress;
use super::{excerpt, DemoArgs};

#[derive(Clone, Debug, Deserialize)]
pub struct Hit {
    pub id: String,
    pub distance: f64,
    #[serde(default)]
    pub metadata: Value,
}

/// One request of the search step and what came back.
pub struct Probe {
    pub title: String,
    pub request: String,
    pub status: StatusCode,
    pub client_ms: f64,
    pub took_ms: Option<f64>,
    pub hits: Vec<Hit>,
    /// The id the first hit must have, when there is one.
    pub expected_first: Option<String>,
    /// What was checked, or the error/body shown.
    pub outcome: String,
}

impl Probe {
    /// A request whose answer is shown as `outcome`, without ranked hits.
    fn answered(title: &str, request: String, reply: &Reply, outcome: String) -> Self {
        Self {
            title: title.into(),
            request,
            status: reply.status,
            client_ms: reply.client_ms,
            took_ms: None,
            hits: Vec::new(),
            expected_first: None,
            outcome,
        }
    }
}

pub struct Latency {
    pub title: String,
    pub client_ms: Vec<f64>,
    pub took_ms: Vec<f64>,
}

pub struct SearchReport {
    pub probes: Vec<Probe>,
    pub latencies: Vec<Latency>,
}

pub async fn run_searches(
    args: &DemoArgs,
    emulator: &Emulator,
    corpus: &Corpus,
) -> anyhow::Result<SearchReport> {
    let ns = args.namespace.as_str();
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(1));
    let source = &corpus.docs[(args.records / 3).min(corpus.docs.len() - 1)];
    let near_source = near(&source.embedding, 0.005, &mut rng);
    let centre = |n: usize| corpus.centres[n % corpus.centres.len()].clone();
    let mut probes = Vec::new();
    let mut progress = Progress::new("search");

    let plain = json!({"namespace": ns, "vector": near_source, "k": 5, "include": ["metadata"]});
    progress.update("nearest neighbours, no filter");
    let probe = search(
        emulator,
        "nearest to a slightly moved copy of one document, no filter",
        "k=5".into(),
        &plain,
    )
    .await?;
    ensure!(
        probe.hits.first().map(|h| h.id.as_str()) == Some(&source.id.to_string()),
        "the nearest hit should be the document the query vector was made from ({}), got {:?}",
        source.id,
        probe.hits.first().map(|h| &h.id)
    );
    probes.push(Probe {
        expected_first: Some(source.id.to_string()),
        outcome: format!(
            "{} hits; the first is the source document",
            probe.hits.len()
        ),
        ..probe
    });

    let filter = json!({"lang": "en", "year": {"$gte": 2024}});
    let filtered = json!({"namespace": ns, "vector": centre(1), "k": 5, "filter": filter, "include": ["metadata"]});
    progress.update("filtered: lang en, year >= 2024");
    probes.push(
        filtered_search(emulator, "filtered, at a cluster centre", &filtered, |m| {
            m["lang"] == "en" && m["year"].as_u64().is_some_and(|y| y >= 2024)
        })
        .await?,
    );

    let filter = json!({"$or": [
        {"source": "faq", "lang": "de"},
        {"source": {"$in": ["kb", "docs"]}, "year": {"$lt": 2022}}
    ]});
    let body = json!({"namespace": ns, "vector": centre(2), "k": 5, "filter": filter, "include": ["metadata"]});
    progress.update("filtered: $or with $in");
    probes.push(
        filtered_search(emulator, "$or with $in", &body, |m| {
            (m["source"] == "faq" && m["lang"] == "de")
                || ((m["source"] == "kb" || m["source"] == "docs")
                    && m["year"].as_u64().is_some_and(|y| y < 2022))
        })
        .await?,
    );

    let max_distance = 0.05;
    let body = json!({"namespace": ns, "vector": centre(3), "k": 50, "max_distance": max_distance, "include": ["metadata"]});
    progress.update("max_distance");
    let mut probe = search(
        emulator,
        "distance ceiling, at a cluster centre",
        format!("k=50 max_distance={max_distance}"),
        &body,
    )
    .await?;
    let worst = probe.hits.iter().map(|h| h.distance).fold(0.0, f64::max);
    ensure!(
        worst <= max_distance,
        "max_distance {max_distance} returned a hit at distance {worst}"
    );
    probe.outcome = format!(
        "{} of k=50 hits are within {max_distance}; farther neighbours are left out",
        probe.hits.len()
    );
    probes.push(probe);

    progress.update("bad requests");
    let bad = json!({"namespace": ns, "vector": [0.6, 0.8, 0.0], "k": 5});
    probes.push(
        expect_error(
            emulator,
            "bad request: a 3-d vector",
            &bad,
            StatusCode::BAD_REQUEST,
            "invalid_vector",
        )
        .await?,
    );
    let bad =
        json!({"namespace": ns, "vector": near_source, "filter": {"year": {"$regex": "^20"}}});
    probes.push(
        expect_error(
            emulator,
            "bad request: an unknown operator",
            &bad,
            StatusCode::BAD_REQUEST,
            "invalid_filter",
        )
        .await?,
    );

    progress.update("GET /items/{id}, GET /health");
    let path = format!("/items/{}?namespace={ns}", source.id);
    let reply = emulator.http(Method::GET, &path, None).await?;
    ensure!(
        reply.status == StatusCode::OK
            && reply.body["id"] == json!(source.id)
            && reply.body["metadata"] == source.metadata,
        "GET {path} should return the document with its metadata, got {} {}",
        reply.status,
        excerpt(&reply.body.to_string())
    );
    let outcome = format!(
        "version {}, created_at {}, metadata {}",
        reply.body["version"], reply.body["created_at"], reply.body["metadata"]
    );
    probes.push(Probe::answered(
        "one item",
        format!("GET {path}"),
        &reply,
        outcome,
    ));
    let reply = emulator.http(Method::GET, "/health", None).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "GET /health answered {} {}",
        reply.status,
        reply.body
    );
    let outcome = reply.body.to_string();
    probes.push(Probe::answered(
        "health",
        "GET /health".into(),
        &reply,
        outcome,
    ));

    let mut latencies = Vec::new();
    for (title, body) in [("no filter, k=5", &plain), ("filtered, k=5", &filtered)] {
        let mut latency = Latency {
            title: title.into(),
            client_ms: Vec::new(),
            took_ms: Vec::new(),
        };
        progress.update(&format!("latency, {title}, {} times", args.repeats));
        for n in 0..args.repeats {
            progress.live(&format!("latency, {title}: {}/{}", n + 1, args.repeats));
            let probe = search(emulator, title, String::new(), body).await?;
            latency.client_ms.push(probe.client_ms);
            latency.took_ms.extend(probe.took_ms);
        }
        latencies.push(latency);
    }
    progress.finish();
    Ok(SearchReport { probes, latencies })
}

/// `POST /search` that must answer 200 with results.
async fn search(
    emulator: &Emulator,
    title: &str,
    request: String,
    body: &Value,
) -> anyhow::Result<Probe> {
    let reply = emulator.http(Method::POST, "/search", Some(body)).await?;
    ensure!(
        reply.status == StatusCode::OK,
        "POST /search ({title}) answered {} {}",
        reply.status,
        excerpt(&reply.body.to_string())
    );
    let hits: Vec<Hit> =
        serde_json::from_value(reply.body["results"].clone()).with_context(|| {
            format!(
                "POST /search ({title}): no results list in {}",
                excerpt(&reply.body.to_string())
            )
        })?;
    let sorted = hits.windows(2).all(|w| w[0].distance <= w[1].distance);
    ensure!(
        sorted,
        "POST /search ({title}): results are not ordered by distance"
    );
    Ok(Probe {
        title: title.into(),
        request,
        status: reply.status,
        client_ms: reply.client_ms,
        took_ms: reply.body["took_ms"].as_f64(),
        hits,
        expected_first: None,
        outcome: String::new(),
    })
}

/// `POST /search` with `body`'s filter: every hit passes it (`matches`, the filter in
/// Rust), and there are `k` of them (the corpus has enough matches).
async fn filtered_search(
    emulator: &Emulator,
    title: &str,
    body: &Value,
    matches: impl Fn(&Value) -> bool,
) -> anyhow::Result<Probe> {
    let k = body["k"].as_u64().context("the body names k")? as usize;
    let request = format!("k={k} filter={}", body["filter"]);
    let mut probe = search(emulator, title, request, body).await?;
    if let Some(hit) = probe.hits.iter().find(|h| !matches(&h.metadata)) {
        bail!(
            "{}: hit {} has metadata {} that does not pass the filter",
            probe.title,
            hit.id,
            hit.metadata
        );
    }
    ensure!(
        probe.hits.len() == k,
        "{}: expected {k} hits (the corpus has more matching rows), got {}",
        probe.title,
        probe.hits.len()
    );
    probe.outcome = format!("{k} of {k} hits pass the filter");
    Ok(probe)
}

/// `POST /search` with a body the API must refuse with `status` and `code`.
async fn expect_error(
    emulator: &Emulator,
    title: &str,
    body: &Value,
    status: StatusCode,
    code: &str,
) -> anyhow::Result<Probe> {
    let reply = emulator.http(Method::POST, "/search", Some(body)).await?;
    let error = &reply.body["error"];
    ensure!(
        reply.status == status && error["code"] == code && error["message"].is_string(),
        "{title}: expected {status} with error code {code:?}, got {} {}",
        reply.status,
        excerpt(&reply.body.to_string())
    );
    let mut shown = body.clone();
    if shown["vector"].as_array().is_some_and(|v| v.len() > 8) {
        shown["vector"] = json!(format!(
            "<{} numbers>",
            shown["vector"].as_array().map_or(0, Vec::len)
        ));
    }
    let outcome = reply.body.to_string();
    Ok(Probe::answered(
        title,
        format!("POST /search {shown}"),
        &reply,
        outcome,
    ))
}
