//! The `credentials` crate against a local Secrets Manager (moto): the login secret, the
//! CA secret, and the AWS settings read from a function's process environment.
//!
//! Needs moto: run scripts/install-moto.sh. Each test starts its own moto server.

mod ca_secret;
mod from_env;
mod secrets_manager;
