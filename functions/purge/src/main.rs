//! Runtime glue: build the shared state once, then hand each scheduled event to the handler.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use purge::{handler, Purge, Settings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = credentials::Environment::load().await?;
    let config = storage::Config::for_function(storage::Function::Purge, |name| env.get(name))?;
    let settings = Settings::from_lookup(|name| env.get(name))?;
    tracing::info!(?config, ?settings, "purge cold start");
    let mut state = Purge::new(&config, settings)?;
    // A refused login (rotated password) re-reads the secret; nothing to re-read locally.
    state.db.set_credential_source(env.credential_source());
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move { handler(state, event).await },
    ))
    .await
}
