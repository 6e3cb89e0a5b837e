//! The integration tests, one binary: each module is one area of the product, tested
//! against the real local stack (PostgreSQL + pgvector through PgBouncer, verified TLS).
//! The helpers, and `TestStack` (the one way a test talks to a function), are in
//! `dev/support` (crate `kit-support`).
//!
//! Run one area or one test with a filter: `scripts/test.sh -- tenancy::`, or with the
//! stack's variables set, `cargo test -p kit-tests --test it -- search_contract::openapi`.

mod alone;
mod connections;
mod credentials;
mod deadlines;
mod faults;
mod ingest;
mod ingest_faults;
mod migrations;
mod purge;
mod roles;
mod rotation;
mod search;
mod search_contract;
mod tenancy;
mod tls;
