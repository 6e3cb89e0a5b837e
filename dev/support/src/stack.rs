//! [`TestStack`]: a test's own database on the local stack and the three functions on it,
//! each logged in as its own role ([`TestDb::config_as`]). Its function handles are how
//! tests talk to the functions, the way Lambda does: real event JSON in (SQS batches from
//! the AWS fixture, API Gateway and Function URL requests, the EventBridge schedule or a
//! manual run's options), the handler's answer out.

use std::ops::Deref;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use ingest::BatchReport;
use lambda_http::http::HeaderMap;
use lambda_http::{Body, Request, RequestExt};
use lambda_runtime::LambdaEvent;
use purge::{PurgeError, PurgeReport};
use search::Auth;
use serde_json::Value;
use storage::{Config, Function};

use crate::events::{
    context_with_deadline, http_v2_request, sqs_event, MessageBody, STANDARD_QUEUE,
};
use crate::TestDb;

/// A test's database (everything [`TestDb`] offers) and the functions on it.
pub struct TestStack {
    t: TestDb,
}

impl Deref for TestStack {
    type Target = TestDb;

    fn deref(&self) -> &TestDb {
        &self.t
    }
}

impl TestStack {
    /// A fresh database on the local stack (see [`TestDb::new`]).
    pub async fn new() -> anyhow::Result<Self> {
        Ok(Self {
            t: TestDb::new().await?,
        })
    }

    /// Like [`TestStack::new`], with the storage configuration adjusted by `adjust`.
    pub async fn with_config(adjust: impl FnOnce(Config) -> Config) -> anyhow::Result<Self> {
        Ok(Self {
            t: TestDb::with_config(adjust).await?,
        })
    }

    /// The ingest function as its own role, with the default limits.
    pub fn ingest(&self) -> IngestFn {
        IngestFn::new(&self.config_as(Function::Ingest), ingest::Limits::default())
    }

    /// The search function as its own role, with the default limits and `AUTH_MODE=none`.
    pub fn search(&self) -> SearchFn {
        self.search_with(search::Limits::default(), Auth::none())
    }

    /// The search function as its own role, with `limits` and `auth`.
    pub fn search_with(&self, limits: search::Limits, auth: Auth) -> SearchFn {
        SearchFn::new(&self.config_as(Function::Search), limits, auth)
    }

    /// The purge function as its own role, with the default settings.
    pub fn purge(&self) -> PurgeFn {
        self.purge_with(|settings| settings)
    }

    /// The purge function as its own role, with the default settings changed by `adjust`
    /// (e.g. `|s| purge::Settings { batch_size: 10, ..s }`).
    pub fn purge_with(&self, adjust: impl FnOnce(purge::Settings) -> purge::Settings) -> PurgeFn {
        PurgeFn::new(adjust(purge::Settings::new(
            self.config_as(Function::Purge),
        )))
    }
}

/// The ingest function's warm state, invoked with SQS batches.
pub struct IngestFn {
    pub state: ingest::State,
}

impl From<ingest::State> for IngestFn {
    fn from(state: ingest::State) -> Self {
        Self { state }
    }
}

impl IngestFn {
    /// The function on any configuration (a proxy's URL, other timeouts, an unreachable
    /// database); [`TestStack::ingest`] is the usual one.
    pub fn new(config: &Config, limits: ingest::Limits) -> Self {
        ingest::State::new(ingest::Settings {
            limits,
            ..ingest::Settings::new(config.clone())
        })
        .expect("a valid configuration")
        .into()
    }

    /// The handler's response to `event`, with `deadline_s` seconds left in the invocation.
    pub async fn invoke(&self, event: SqsEvent, deadline_s: f64) -> SqsBatchResponse {
        ingest::handler(
            &self.state,
            LambdaEvent::new(event, context_with_deadline(deadline_s)),
        )
        .await
        .expect("the handler never returns Err for record content or database trouble")
    }

    /// Delivers `bodies` (message ids `m0`, `m1`, …) from `queue`; returns the message ids
    /// the handler reports in `batchItemFailures`.
    pub async fn deliver_to<B: MessageBody>(
        &self,
        queue: &str,
        bodies: &[B],
        deadline_s: f64,
    ) -> Vec<String> {
        self.invoke(sqs_event(bodies, queue), deadline_s)
            .await
            .batch_item_failures
            .into_iter()
            .map(|failure| failure.item_identifier)
            .collect()
    }

    /// [`IngestFn::deliver_to`] a standard queue with 30 s left.
    pub async fn deliver<B: MessageBody>(&self, bodies: &[B]) -> Vec<String> {
        self.deliver_to(STANDARD_QUEUE, bodies, 30.0).await
    }

    /// What the handler runs for a batch from a standard queue, with the counts its
    /// response does not carry (they feed its metrics and log line).
    pub async fn process<B: MessageBody>(&self, bodies: &[B], deadline_s: f64) -> BatchReport {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs_f64(deadline_s);
        ingest::process(
            &self.state,
            &sqs_event(bodies, STANDARD_QUEUE).records,
            deadline,
        )
        .await
    }
}

/// The search function's warm state, invoked with API Gateway and Function URL events.
pub struct SearchFn {
    pub state: search::State,
}

impl From<search::State> for SearchFn {
    fn from(state: search::State) -> Self {
        Self { state }
    }
}

/// An HTTP answer of the search function.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The JSON body.
    pub body: Value,
}

impl Reply {
    /// The stable error code of an error answer.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

impl SearchFn {
    /// The function on any configuration (a read replica, an unreachable database);
    /// [`TestStack::search`] is the usual one.
    pub fn new(config: &Config, limits: search::Limits, auth: Auth) -> Self {
        search::State::new(search::Settings {
            limits,
            auth,
            ..search::Settings::new(config.clone())
        })
        .expect("a valid configuration")
        .into()
    }

    /// The handler's answer to an API event's JSON, read as the function's runtime reads it.
    pub async fn call(&self, event: &Value) -> Reply {
        let request: Request = search::event::request_from_slice(event.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("the event must read ({e}): {event}"));
        self.handle(request).await
    }

    /// The handler's answer to a request already read from its event (a test that times
    /// the two steps apart).
    pub async fn handle(&self, request: Request) -> Reply {
        let response = search::handler(&self.state, request)
            .await
            .expect("the handler never fails");
        let body = match response.body() {
            Body::Text(text) => serde_json::from_str(text).expect("a JSON body"),
            other => panic!("unexpected body {other:?}"),
        };
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body,
        }
    }

    /// `POST /search` with `body`, over an HTTP API without an authorizer.
    pub async fn post_search(&self, body: &Value) -> Reply {
        self.post_raw(&body.to_string()).await
    }

    /// [`SearchFn::post_search`] in an invocation with `deadline_s` seconds left: the
    /// Lambda context the runtime attaches to the request, whose deadline bounds every
    /// database step of the handler.
    pub async fn post_search_within(&self, body: &Value, deadline_s: f64) -> Reply {
        let event = http_v2_request("POST", "/search", "", Some(&body.to_string()), None);
        let request: Request = search::event::request_from_slice(event.to_string().as_bytes())
            .expect("a valid API Gateway event")
            .with_lambda_context(context_with_deadline(deadline_s));
        self.handle(request).await
    }

    /// `POST /search` with `body` as it is (not JSON, too large, …).
    pub async fn post_raw(&self, body: &str) -> Reply {
        self.call(&http_v2_request("POST", "/search", "", Some(body), None))
            .await
    }

    /// `GET path?query` over an HTTP API without an authorizer.
    pub async fn get(&self, path: &str, query: &str) -> Reply {
        self.call(&http_v2_request("GET", path, query, None, None))
            .await
    }

    /// `GET /health`.
    pub async fn health(&self) -> Reply {
        self.get("/health", "").await
    }

    /// What the Lambda runtime sends back for `event`: the handler's response shaped by
    /// lambda_http's adapter for the event's API (the envelope with `statusCode`,
    /// `headers`, `body`, …), serialized as the runtime serializes it.
    pub async fn lambda_payload(&self, event: &Value) -> Vec<u8> {
        use lambda_http::{service_fn, Adapter, Service};
        let event: search::event::ApiEvent = serde_json::from_slice(event.to_string().as_bytes())
            .expect("a valid Lambda HTTP event");
        let state = &self.state;
        let mut adapter = Adapter::from(service_fn(move |request: Request| async move {
            search::handler(state, request).await
        }));
        let response = adapter
            .call(LambdaEvent::new(event.0, lambda_http::Context::default()))
            .await
            .expect("the handler never fails");
        serde_json::to_vec(&response).expect("the envelope serializes")
    }
}

/// The purge function's warm state, invoked with the EventBridge schedule or a manual
/// run's options.
pub struct PurgeFn {
    pub state: purge::State,
}

impl PurgeFn {
    /// The function with any settings; [`TestStack::purge`] is the usual one.
    pub fn new(settings: purge::Settings) -> Self {
        Self {
            state: purge::State::new(settings).expect("a valid configuration"),
        }
    }

    /// The scheduled run: the EventBridge event (the AWS fixture), `deadline_s` seconds left.
    pub async fn scheduled(&self, deadline_s: f64) -> Result<PurgeReport, PurgeError> {
        let event = crate::events::scheduled_event(Value::Object(Default::default()));
        self.invoke(event, deadline_s).await
    }

    /// A manual run with `options` (`{"dry_run", "namespace", "older_than_days"}`, `{}`
    /// for the defaults), `deadline_s` seconds left.
    pub async fn run(&self, options: Value, deadline_s: f64) -> Result<PurgeReport, PurgeError> {
        self.invoke(options, deadline_s).await
    }

    async fn invoke(&self, payload: Value, deadline_s: f64) -> Result<PurgeReport, PurgeError> {
        purge::handler(
            &self.state,
            LambdaEvent::new(payload, context_with_deadline(deadline_s)),
        )
        .await
    }
}
