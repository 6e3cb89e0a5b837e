//! Runtime glue: build the shared state once, then hand each invocation to the handler.

use ingest::{handler, Settings, State};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    // DATABASE_URL, or on AWS the secret named by DATABASE_SECRET_ARN.
    let env = credentials::Environment::load().await?;
    // An invalid value (a limit, ALLOWED_NAMESPACES, …) stops the cold start here.
    let settings = Settings::from_lookup(|name| env.get(name))?;
    tracing::info!(?settings, "ingest cold start");
    let mut state = State::new(settings)?;
    // A refused login (rotated password) re-reads the secret; nothing to re-read locally.
    state.db.set_credential_source(env.credential_source());
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        handler(state, event).await
    }))
    .await
}
