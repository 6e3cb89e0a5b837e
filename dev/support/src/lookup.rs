//! Environment lookups for the code that reads its settings through one
//! (`Config::from_lookup`, `credentials::Environment::load_with`, …): a test hands it
//! exactly the variables a deployed function would see, never the process environment.

use std::collections::HashMap;

/// A lookup that answers `pairs` (the last value wins for a repeated name) and nothing else.
pub fn from_pairs(
    pairs: &[(&str, &str)],
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}
