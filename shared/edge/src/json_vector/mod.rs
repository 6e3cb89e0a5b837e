//! Vectors as clients send them: JSON arrays of numbers (ingest messages, search bodies).
//!
//! A 1536-dimension embedding written by a Python or JavaScript client is about 30 KB
//! of decimals with 17 significant digits, nearly all of its document. Read element by
//! element through serde, it cost more than everything else a search request does in
//! the function. [`from_json_object`] reads it with a dedicated reader instead and lets
//! serde read the rest of the document; both give the same values, bit for bit.

mod numbers;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use numbers::number_array;

/// Deserializes the JSON object `document` into `T`, whose field for the top-level
/// member `key` is a [`JsonVector`] (`field` points at it).
///
/// When that member is an array of plain numbers, it is read by `number_array` and
/// serde reads the rest of the document (kept in `rest`, with the array replaced by
/// `null`). The outcome is the same as `serde_json::from_slice(document)`:
///
/// - the numbers are computed as serde_json computes them, and any number that would
///   take one of its rarer paths (more than 19 significant digits, an exponent beyond
///   ±308) sends the whole array back to serde;
/// - JSON is parsed left to right, so replacing a valid array with `null` (also a
///   value) turns a valid document into a valid one and an invalid one into an invalid
///   one, with the same members (an unknown or repeated key still fails);
/// - a document the fast path does not understand (an escaped key, a member that is
///   not an array of numbers), or that fails to deserialize, is read again whole by
///   serde, so errors carry their positions in the original.
pub fn from_json_object<'a, T: Deserialize<'a>>(
    document: &'a [u8],
    key: &str,
    rest: &'a mut Vec<u8>,
    field: impl FnOnce(&mut T) -> &mut JsonVector,
) -> serde_json::Result<T> {
    if let Some(values) = lift_array(document, key.as_bytes(), rest) {
        let rest: &'a Vec<u8> = rest;
        if let Ok(mut value) = serde_json::from_slice::<T>(rest) {
            *field(&mut value) = JsonVector::Values(values);
            return Ok(value);
        }
    }
    serde_json::from_slice(document)
}

/// Reads the array under the top-level member `key` of the object `document` and copies
/// the document into `rest` with that array replaced by `null`; `None` when the member
/// is absent, its key is escaped, or it is not an array of numbers `number_array`
/// reads.
fn lift_array(document: &[u8], key: &[u8], rest: &mut Vec<u8>) -> Option<Vec<f32>> {
    let start = member_value(document, key)?;
    let (values, end) = number_array(document, start)?;
    rest.clear();
    rest.reserve(document.len() - (end - start) + 4);
    rest.extend_from_slice(&document[..start]);
    rest.extend_from_slice(b"null");
    rest.extend_from_slice(&document[end..]);
    Some(values)
}

/// Where the value of the top-level member `key` starts. Only finds members: values
/// before it are skipped by their brackets and strings, without checking them (serde
/// reads them afterwards). `None` when the document is not an object as far as the
/// member, or a key on the way is escaped (serde decides what it names).
fn member_value(b: &[u8], key: &[u8]) -> Option<usize> {
    let mut i = skip_whitespace(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_whitespace(b, i + 1);
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let name_start = i + 1;
        let name_end = name_start
            + b[name_start..]
                .iter()
                .position(|c| matches!(c, b'"' | b'\\'))?;
        if b[name_end] == b'\\' {
            return None;
        }
        i = skip_whitespace(b, name_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_whitespace(b, i + 1);
        if &b[name_start..name_end] == key {
            return Some(i);
        }
        i = skip_whitespace(b, skip_value(b, i)?);
        if b.get(i) != Some(&b',') {
            return None; // the end of the object (or not JSON): no such member
        }
        i = skip_whitespace(b, i + 1);
    }
}

/// The end of the value starting at `i`, for a valid document.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'[' | b'{' => {
            let mut depth = 0usize;
            loop {
                match *b.get(i)? {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(b.len() - i);
            (len > 0).then_some(i + len)
        }
    }
}

/// The end of the string whose opening quote is at `i`.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        i += b.get(i..)?.iter().position(|c| matches!(c, b'"' | b'\\'))?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        i += 2; // an escape: whatever follows the backslash is not the end
    }
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
fn skip_whitespace(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// A JSON array of numbers read straight into `f32`s, in the same pass as the rest of
/// its document: no `serde_json::Value` per element (an ingest message or a search body
/// is nearly all vector). Whatever else was sent is named, so each caller can say what
/// is wrong. JSON has no NaN or Infinity literals; a number beyond f32's range becomes
/// infinite here, for the caller to refuse as non-finite.
#[derive(Debug, Default)]
pub enum JsonVector {
    /// Absent or `null`.
    #[default]
    Missing,
    Values(Vec<f32>),
    /// An array holding something other than a number at `position`.
    NotANumber {
        position: usize,
        found: &'static str,
    },
    NotAnArray(&'static str),
}

impl<'de> Deserialize<'de> for JsonVector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVectorVisitor)
    }
}

struct JsonVectorVisitor;

impl<'de> Visitor<'de> for JsonVectorVisitor {
    type Value = JsonVector;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of numbers")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonVector::Missing)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(element) = seq.next_element::<Element>()? {
            match element {
                Element::Number(v) => values.push(v),
                Element::Other(found) => {
                    let position = values.len();
                    // Read the rest so the message stays well-formed JSON to the parser.
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(JsonVector::NotANumber { position, found });
                }
            }
        }
        Ok(JsonVector::Values(values))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(JsonVector::NotAnArray("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(JsonVector::NotAnArray("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(JsonVector::NotAnArray("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(JsonVector::NotAnArray("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(JsonVector::NotAnArray("a string"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonVector::NotAnArray("an object"))
    }
}

/// One element of the embedding array: a number (as f32, the way serde's own `f32`
/// conversion rounds it) or the JSON type found instead.
enum Element {
    Number(f32),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ElementVisitor)
    }
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Element;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E>(self, v: f64) -> Result<Element, E> {
        Ok(Element::Number(v as f32))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Element, E> {
        Ok(Element::Number(v as f32))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Element, E> {
        Ok(Element::Number(v as f32))
    }

    fn visit_unit<E>(self) -> Result<Element, E> {
        Ok(Element::Other("null"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Element, E> {
        Ok(Element::Other("a boolean"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Element, E> {
        Ok(Element::Other("a string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Element::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Element::Other("an object"))
    }
}
