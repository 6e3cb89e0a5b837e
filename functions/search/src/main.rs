//! Runtime glue: build the shared state once, then hand each request to the handler.

use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Adapter, Error, Request, Service};
use search::event::ApiEvent;
use search::{handler, Auth, Limits, Search};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = credentials::Environment::load().await?;
    let config = storage::Config::for_function(storage::Function::Search, |name| env.get(name))?;
    let limits = Limits::from_lookup(|name| env.get(name))?;
    // AUTH_MODE and NAMESPACE_CLAIM: an invalid value stops the cold start here.
    let auth = Auth::from_lookup(|name| env.get(name))?;
    tracing::info!(?config, ?limits, auth_mode = %auth.mode, namespace_claim = auth.namespace_claim, "search cold start");
    let mut state = Search::new(&config, limits, auth)?;
    // A refused login (rotated password) re-reads the secret; nothing to re-read locally.
    state.db.set_credential_source(env.credential_source());
    let state = &state;
    // What `lambda_http::run` does, but with events read by `ApiEvent` (the body
    // unescaped once; see event.rs): lambda_http's adapter still builds the request,
    // adds the trace header and the Lambda context, and shapes the response for
    // whichever API the event came from.
    let mut adapter = Adapter::from(service_fn(move |request: Request| async move {
        handler(state, request).await
    }));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiEvent>| {
        adapter.call(LambdaEvent::new(event.payload.0, event.context))
    }))
    .await
}
