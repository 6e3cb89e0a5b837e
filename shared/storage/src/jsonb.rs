//! What `jsonb` can hold, for the edges that validate JSON before it reaches storage.

use serde_json::Value;

/// Whether a string or key anywhere in `value` contains U+0000, which `jsonb` (and
/// `text`) cannot store.
pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_found_in_nested_keys_and_values() {
        assert!(contains_nul(&json!({"a": [{"b": "x\u{0}"}]})));
        assert!(contains_nul(&json!({"k\u{0}": 1})));
        assert!(!contains_nul(&json!({"a": ["\\u0000 is only text here"]})));
    }
}
