//! Runtime glue: build the shared state once, then hand each invocation to the handler.

use ingest::{handler, Ingest, Limits};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = storage::Config::from_env()?;
    let limits = limits_from_env()?;
    tracing::info!(?config, ?limits, "ingest cold start");
    let state = Ingest::new(&config, limits)?;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        handler(state, event).await
    }))
    .await
}

fn limits_from_env() -> Result<Limits, Error> {
    let defaults = Limits::default();
    Ok(Limits {
        max_content_bytes: env_or("MAX_CONTENT_BYTES", defaults.max_content_bytes)?,
        max_metadata_bytes: env_or("MAX_METADATA_BYTES", defaults.max_metadata_bytes)?,
        max_metadata_depth: env_or("MAX_METADATA_DEPTH", defaults.max_metadata_depth)?,
    })
}

fn env_or(name: &str, default: usize) -> Result<usize, Error> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(raw) => raw.trim().parse().map_err(|_| {
            format!("{name}={raw:?} is not valid: expected a whole number of bytes or levels")
                .into()
        }),
    }
}
