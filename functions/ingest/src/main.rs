//! Runtime glue: build the shared state once, then hand each invocation to the handler.

use ingest::{handler, AllowedNamespaces, Ingest, Limits};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    // DATABASE_URL, or on AWS the secret named by DATABASE_SECRET_ARN.
    let env = credentials::Environment::load().await?;
    let config = storage::Config::for_function(storage::Function::Ingest, |name| env.get(name))?;
    let limits = Limits::from_lookup(|name| env.get(name))?;
    let allowed_namespaces = AllowedNamespaces::from_lookup(|name| env.get(name))?;
    tracing::info!(?config, ?limits, ?allowed_namespaces, "ingest cold start");
    let mut state = Ingest::new(&config, limits)?;
    state.allowed_namespaces = allowed_namespaces;
    // A refused login (rotated password) re-reads the secret; nothing to re-read locally.
    state.db.set_credential_source(env.credential_source());
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        handler(state, event).await
    }))
    .await
}
