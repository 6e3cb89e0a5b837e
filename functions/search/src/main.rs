//! Runtime glue: build the shared state once, then hand each request to the handler.

use lambda_http::{service_fn, Error, Request};
use search::request::namespace_claim_from_lookup;
use search::{handler, Limits, Search};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = credentials::Environment::load().await?;
    let config = storage::Config::from_lookup(|name| env.get(name))?;
    let limits = Limits::from_lookup(|name| env.get(name))?;
    let claim = namespace_claim_from_lookup(|name| env.get(name))?;
    tracing::info!(?config, ?limits, claim, "search cold start");
    let state = Search::new(&config, limits, claim)?;
    let state = &state;
    lambda_http::run(service_fn(move |request: Request| async move {
        handler(state, request).await
    }))
    .await
}
