//! The functions' edge: what the three Lambda functions share where an event comes in,
//! before anything reaches storage.
//!
//! - [`json_vector`]: the vector of an ingest message or a search body, read from the
//!   JSON text eight digits at a time, the rest of the document by serde, the same values
//!   bit for bit ([`from_json_object`], [`JsonVector`]).
//! - [`deadline`]: the invocation's deadline as a monotonic [`tokio::time::Instant`], with
//!   a fixed budget when an emulator sends a placeholder ([`deadline::of`]).
//! - [`json_type`] and [`clip`]: what error messages say of a value a client sent (its
//!   JSON type, its first 80 characters).
//!
//! Storage takes what the edge made of the event (a `Vector`, an `Instant`), never the
//! event itself.

pub mod deadline;
pub mod json_vector;

pub use json_vector::{from_json_object, JsonVector};

use serde_json::Value;

/// `value`'s JSON type with an article, as error messages name it ("got an array").
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How many characters of a value a client sent an error message quotes.
pub const CLIP_CHARS: usize = 80;

/// The first [`CLIP_CHARS`] characters of `text` (all of it when shorter): an error
/// message quotes no more of what a client sent.
pub fn clip(text: &str) -> &str {
    match text.char_indices().nth(CLIP_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_whole_characters() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        assert_eq!(clip(&long).chars().count(), CLIP_CHARS);
        assert_eq!(clip(&long), "é".repeat(80));
        assert_eq!(clip(&"x".repeat(80)), "x".repeat(80));
    }
}
