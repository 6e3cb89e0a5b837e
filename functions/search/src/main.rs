//! Runtime glue: build the shared state once, then hand each request to the handler.

use lambda_http::{service_fn, Error, Request};
use search::{handler, Limits, Search};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = storage::Config::from_env()?;
    let limits = Limits::default();
    let claim = std::env::var("NAMESPACE_CLAIM").unwrap_or_else(|_| "namespace".into());
    tracing::info!(?config, ?limits, claim, "search cold start");
    let state = Search::new(&config, limits, claim)?;
    let state = &state;
    lambda_http::run(service_fn(move |request: Request| async move {
        handler(state, request).await
    }))
    .await
}
