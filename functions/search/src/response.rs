//! Response bodies measured as Lambda returns them, against `MAX_RESPONSE_BYTES`.
//!
//! A synchronous Lambda invocation's response payload is at most 6 MB. Above it the
//! platform, not the function, answers: API Gateway turns the failed invocation into a
//! 502 and a Function URL into a 502 too, with nothing the client can act on. The body a
//! handler builds travels inside a JSON envelope (`statusCode`, `headers`, `body`,
//! `isBase64Encoded`), as a JSON string: every `"` and `\` of the body is escaped once
//! more, so a body of 4 MB can be 8 MB by the time it leaves. [`to_json_within`]
//! measures that size while serializing and refuses a body that would not fit.

use std::io;

use serde::Serialize;

/// Lambda's response payload limit for synchronous invocations (6 MB).
pub const LAMBDA_RESPONSE_LIMIT: usize = 6 * 1024 * 1024;

/// The default `MAX_RESPONSE_BYTES`: leaves 291,456 bytes of [`LAMBDA_RESPONSE_LIMIT`]
/// for the envelope around the body (status, headers, a few hundred bytes in practice).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 6_000_000;

/// Serializes `value` as JSON. `Err(size)` when the body, escaped as the JSON string it
/// becomes inside the Lambda response envelope, takes more than `limit` bytes; `size`
/// is that full size (serialization goes on counting, without keeping the bytes).
pub fn to_json_within<T: Serialize>(value: &T, limit: usize) -> Result<String, usize> {
    let mut out = Measured {
        kept: Vec::new(),
        in_envelope: 2, // the string's own quotes
        limit,
    };
    // Cannot fail: the writer never errors, every map key is a string and no field has
    // a fallible `Serialize`.
    serde_json::to_writer(&mut out, value).expect("a search response always serializes");
    if out.in_envelope > limit {
        return Err(out.in_envelope);
    }
    Ok(String::from_utf8(out.kept).expect("serde_json writes UTF-8"))
}

/// The size of `body` as a JSON string inside the envelope. serde_json's output holds no
/// control characters (they are escaped already), so only `"` and `\` grow, by one each.
pub fn size_in_envelope(body: &str) -> usize {
    2 + body.len() + body.bytes().filter(|b| matches!(b, b'"' | b'\\')).count()
}

/// Keeps the bytes while they fit and counts their escaped size all along.
struct Measured {
    kept: Vec<u8>,
    in_envelope: usize,
    limit: usize,
}

impl io::Write for Measured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.in_envelope +=
            bytes.len() + bytes.iter().filter(|b| matches!(b, b'"' | b'\\')).count();
        if self.in_envelope <= self.limit {
            self.kept.extend_from_slice(bytes);
        } else if !self.kept.is_empty() {
            self.kept = Vec::new();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_size_is_the_escaped_size_in_the_envelope() {
        for value in [
            json!({"a": "plain"}),
            json!({"q": "\"quoted\" and \\ backslashed", "n": [1.5, -2e-7]}),
            json!({"control": "\u{1}\n\t", "unicode": "é😀"}),
            json!([]),
        ] {
            let body = serde_json::to_string(&value).unwrap();
            let envelope = serde_json::to_string(&json!({ "body": body })).unwrap();
            // `{"body":` + the string + `}`
            assert_eq!(size_in_envelope(&body), envelope.len() - 9, "{body}");
            let size = size_in_envelope(&body);
            assert_eq!(to_json_within(&value, size).unwrap(), body);
            assert_eq!(to_json_within(&value, size - 1).unwrap_err(), size);
        }
    }

    #[test]
    fn quotes_count_twice() {
        // 1000 quotes: a 2,002-byte body (`"` + 1000 × `\"` + `"`), 4,006 bytes as the
        // envelope's string (each `\"` becomes `\\\"`, and the body's quotes escaped).
        let value = json!("\"".repeat(1000));
        let body = serde_json::to_string(&value).unwrap();
        assert_eq!(body.len(), 2002);
        assert_eq!(to_json_within(&value, 10_000).unwrap(), body);
        assert_eq!(to_json_within(&value, 3000).unwrap_err(), 4006);
    }
}
