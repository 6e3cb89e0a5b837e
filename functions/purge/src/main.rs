//! Runtime glue: build the shared state once, then hand each scheduled event to the handler.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use purge::{handler, Settings, State};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    // DATABASE_URL, or on AWS the secret named by DATABASE_SECRET_ARN.
    let env = credentials::Environment::load().await?;
    // An invalid value (RETENTION_DAYS, PURGE_BATCH_SIZE, …) stops the cold start here.
    let settings = Settings::from_lookup(|name| env.get(name))?;
    tracing::info!(?settings, "purge cold start");
    let mut state = State::new(settings)?;
    // A refused login (rotated password) re-reads the secret; nothing to re-read locally.
    state.db.set_credential_source(env.credential_source());
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move { handler(state, event).await },
    ))
    .await
}
