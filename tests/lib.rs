//! The integration tests live in the `[[test]]` targets of this package; their shared
//! helpers are in `dev/support` (crate `kit-support`).
