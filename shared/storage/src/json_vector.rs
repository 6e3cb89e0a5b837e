//! Vectors as clients send them: JSON arrays of numbers (ingest messages, search bodies).

use std::fmt;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

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
