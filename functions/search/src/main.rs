//! Runtime glue: build the shared state once, then hand each request to the handler.

use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Adapter, Error, Request, Service};
use search::event::ApiEvent;
use search::{handler, Settings, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    // DATABASE_URL, or on AWS the secret named by DATABASE_SECRET_ARN.
    let env = credentials::Environment::load().await?;
    // An invalid value (AUTH_MODE, a limit, …) stops the cold start here.
    let settings = Settings::from_lookup(|name| env.get(name))?;
    tracing::info!(?settings, "search cold start");
    let mut state = State::new(settings)?;
    // A refused login (rotated password) re-reads the secret; nothing to re-read locally.
    state.db.set_credential_source(env.credential_source());
    let state = &state;
    // What `lambda_http::run` does, but with events read by `ApiEvent` (the body
    // unescaped once; see event.rs): lambda_http's adapter (doc-hidden, hence the exact
    // pin in the workspace Cargo.toml) still builds the request, adds the trace header
    // and the Lambda context, and shapes the response for whichever API the event came
    // from.
    let mut adapter = Adapter::from(service_fn(move |request: Request| async move {
        handler(state, request).await
    }));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiEvent>| {
        adapter.call(LambdaEvent::new(event.payload.0, event.context))
    }))
    .await
}
