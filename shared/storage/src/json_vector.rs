//! Vectors as clients send them: JSON arrays of numbers (ingest messages, search bodies).
//!
//! A 1536-dimension embedding written by a Python or JavaScript client is about 30 KB
//! of decimals with 17 significant digits, nearly all of its document. Read element by
//! element through serde, it cost more than everything else a search request does in
//! the function. [`from_json_object`] reads it with a dedicated reader instead and lets
//! serde read the rest of the document; both give the same values, bit for bit.

use std::fmt;
use std::sync::LazyLock;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

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
    let mut i = whitespace(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = whitespace(b, i + 1);
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
        i = whitespace(b, name_end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = whitespace(b, i + 1);
        if &b[name_start..name_end] == key {
            return Some(i);
        }
        i = whitespace(b, skip_value(b, i)?);
        if b.get(i) != Some(&b',') {
            return None; // the end of the object (or not JSON): no such member
        }
        i = whitespace(b, i + 1);
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

fn whitespace(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// Reads the JSON array of numbers starting at `i` into `f32`s, exactly as serde_json
/// and [`JsonVector`] would (see [`number`]), and returns it with the index just past
/// its `]`. `None` for anything else: another value, an element that is not a number,
/// a number outside the common case, malformed JSON.
fn number_array(b: &[u8], i: usize) -> Option<(Vec<f32>, usize)> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut i = whitespace(b, i + 1);
    // About 20 bytes per element in the common case; 8 is the fewest a second element
    // can take after a short first one without growing the vector more than twice.
    let mut values = Vec::with_capacity((b.len() - i) / 8);
    if b.get(i) == Some(&b']') {
        return Some((values, i + 1));
    }
    let pow10 = &*POW10;
    loop {
        let (value, end) = number(b, i, pow10)?;
        values.push(value);
        i = whitespace(b, end);
        match *b.get(i)? {
            b',' => i = whitespace(b, i + 1),
            b']' => return Some((values, i + 1)),
            _ => return None,
        }
    }
}

/// `1e0` to `1e308` as `f64`, each the nearest to its power of ten: the values of the
/// literals in serde_json's own table (the standard library's parser rounds correctly,
/// as the compiler does literals).
static POW10: LazyLock<[f64; 309]> = LazyLock::new(|| {
    std::array::from_fn(|n| format!("1e{n}").parse().expect("a power of ten parses"))
});

/// One JSON number at `i` as `f32`, computed the way serde_json (without its
/// `float_roundtrip` feature) and [`JsonVector`] compute it:
///
/// - an integer is a `u64` (or, negative, an `i64`; `-0` and values below `i64::MIN`
///   are an `f64`) converted to `f32`;
/// - otherwise the significant digits form a `u64`, converted to `f64` and multiplied
///   or divided by a power of ten, negated if needed, then converted to `f32`.
///
/// `None` (so serde decides) when the number is not JSON, has more digits than a `u64`
/// holds, or an exponent beyond ±308 (where serde divides more than once).
fn number(b: &[u8], mut i: usize, pow10: &[f64; 309]) -> Option<(f32, usize)> {
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut significand = 0u64;
    match *b.get(i)? {
        b'0' => {
            i += 1;
            if b.get(i).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
        b'1'..=b'9' => i = digits(b, i, &mut significand)?.0,
        _ => return None,
    }
    let mut exponent = 0i32;
    let mut float = false;
    if b.get(i) == Some(&b'.') {
        let (end, count) = digits(b, i + 1, &mut significand)?;
        if count == 0 {
            return None;
        }
        (i, exponent, float) = (end, -count, true);
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        let negative_exponent = b.get(i) == Some(&b'-');
        if let Some(b'-' | b'+') = b.get(i) {
            i += 1;
        }
        let mut value = 0u64;
        let (end, count) = digits(b, i, &mut value)?;
        if count == 0 || value > 1000 {
            return None;
        }
        let value = value as i32;
        exponent += if negative_exponent { -value } else { value };
        (i, float) = (end, true);
    }
    let value = if float {
        let power = *pow10.get(exponent.unsigned_abs() as usize)?;
        let magnitude = if exponent >= 0 {
            let f = significand as f64 * power;
            if f.is_infinite() {
                return None; // serde_json refuses it as out of range
            }
            f
        } else {
            significand as f64 / power
        };
        (if negative { -magnitude } else { magnitude }) as f32
    } else if !negative {
        significand as f32
    } else {
        let value = (significand as i64).wrapping_neg();
        if value >= 0 {
            (-(significand as f64)) as f32
        } else {
            value as f32
        }
    };
    Some((value, i))
}

/// Appends the decimal digits at `i` to `significand`; returns the index after them and
/// how many there were, or `None` if the significand would overflow a `u64`. Eight
/// digits at a time while they fit (SWAR: one 64-bit load, three multiplications).
fn digits(b: &[u8], mut i: usize, significand: &mut u64) -> Option<(usize, i32)> {
    let mut count = 0;
    while *significand < 100_000_000_000 {
        let Some(chunk) = b.get(i..i + 8) else { break };
        let chunk = u64::from_le_bytes(chunk.try_into().ok()?);
        let all_digits = ((chunk & 0xF0F0_F0F0_F0F0_F0F0)
            | ((chunk.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4))
            == 0x3333_3333_3333_3333;
        if !all_digits {
            break;
        }
        let v = chunk.wrapping_sub(0x3030_3030_3030_3030);
        let v = v.wrapping_mul(10).wrapping_add(v >> 8);
        let v = ((v & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32))
            + ((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)))
            >> 32;
        *significand = *significand * 100_000_000 + v;
        (i, count) = (i + 8, count + 8);
    }
    while let Some(&c) = b.get(i) {
        let digit = c.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        *significand = significand.checked_mul(10)?.checked_add(u64::from(digit))?;
        (i, count) = (i + 1, count + 1);
    }
    Some((i, count))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// What serde alone makes of a JSON array: the reference [`number_array`] must match.
    fn by_serde(text: &str) -> Option<Vec<u32>> {
        match serde_json::from_str::<JsonVector>(text) {
            Ok(JsonVector::Values(values)) => Some(values.iter().map(|v| v.to_bits()).collect()),
            _ => None,
        }
    }

    fn fast(text: &str) -> Option<Vec<u32>> {
        let (values, end) = number_array(text.as_bytes(), 0)?;
        assert_eq!(end, text.len(), "{text}");
        Some(values.iter().map(|v| v.to_bits()).collect())
    }

    /// Numbers as clients write them, and the edges of the fast path.
    fn number_texts(rng: &mut StdRng) -> Vec<String> {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "-1",
            "1e5",
            "1E+5",
            "1e-5",
            "-2.5E-3",
            "0.1",
            "123456789",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e22",
            "1e23",
            "1e-22",
            "1e-23",
            "3.4028235e38",
            "3.4028236e38",
            "1e39",
            "1.5e-45",
            "1e-46",
            "1e308",
            "0.1e1",
            "1e-308",
            "1e-309",
            "0.5e-308",
            "1e-330",
            "1e400",
            "1e-400",
            "0e400",
            "12345678901234567890",
            "0.12345678901234567890",
            "1.0000000000000000001",
            "4.999999999999999e-1",
            "0e0",
            "0E-0",
            "1e0000000000000000000000005",
        ]
        .map(String::from)
        .to_vec();
        texts.extend((0..=330).map(|e| format!("1.2345678901234567e-{e}")));
        for _ in 0..20_000 {
            let x: f32 = f32::from_bits(rng.gen::<u32>() & 0x3fff_ffff) * rng.gen_range(-1.0..1.0);
            if !x.is_finite() {
                continue;
            }
            let digits: String = (0..rng.gen_range(1..24))
                .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
                .collect();
            texts.extend([
                serde_json::to_string(&x).unwrap(), // shortest f32 (Rust, JS)
                serde_json::json!(x).to_string(),   // f32 widened to f64 (Python)
                format!("{x:e}"),
                format!("{:.9}", x),
                format!("-0.{digits}"),
                format!("{digits}e-{}", rng.gen_range(0..330)),
                format!("0.{digits}E+{}", rng.gen_range(0..330)),
            ]);
        }
        texts
    }

    #[test]
    fn numbers_are_read_as_serde_reads_them_bit_for_bit() {
        let mut rng = StdRng::seed_from_u64(7);
        let texts = number_texts(&mut rng);
        let mut taken = 0;
        for text in &texts {
            let array = format!("[{text}]");
            if let Some(bits) = fast(&array) {
                assert_eq!(Some(bits), by_serde(&array), "{text}");
                taken += 1;
            }
        }
        assert!(taken * 2 > texts.len(), "{taken} of {}", texts.len());
        // Embedding values as clients print them all take the fast path.
        for _ in 0..10_000 {
            let x: f32 = rng.gen_range(-1.0..1.0) * 10f32.powi(rng.gen_range(-6..1));
            for text in [
                serde_json::to_string(&x).unwrap(),
                serde_json::json!(x).to_string(),
            ] {
                let array = format!("[{text}]");
                assert!(fast(&array).is_some(), "{text}");
                assert_eq!(fast(&array), by_serde(&array), "{text}");
            }
        }
        for text in ["[0.1,-2e-5,3]", "[ 1 , 2 ]", "[\n1,\t2\r]", "[]", "[ ]"] {
            assert_eq!(fast(text), by_serde(text), "{text}");
            assert!(fast(text).is_some(), "{text}");
        }
    }

    #[test]
    fn anything_else_goes_back_to_serde() {
        for text in [
            "[01]",
            "[1.]",
            "[.5]",
            "[+1]",
            "[1e]",
            "[1e+]",
            "[-]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "[1]x",
            "[NaN]",
            "[Infinity]",
            "[\"1\"]",
            "[null]",
            "[[1]]",
            "[1",
            "1",
            "{}",
            "[0x10]",
            "[1e400]",
            "[1e309]",
            "[1e-400]",
            "[123456789012345678901]",
        ] {
            let result = number_array(text.as_bytes(), 0);
            assert!(
                result.is_none() || result.is_some_and(|(_, end)| end < text.len()),
                "{text}"
            );
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // compared through `Debug`
    struct Doc {
        #[serde(default)]
        vector: JsonVector,
        other: Option<serde_json::Value>,
        name: Option<String>,
    }

    fn outcome(result: serde_json::Result<Doc>) -> String {
        match result {
            Ok(doc) => format!("{doc:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn documents_read_the_same_as_with_serde_alone() {
        let documents = [
            r#"{"vector":[0.5,-1,2e-3]}"#,
            r#"{"name":"a","vector":[1,2],"other":{"x":[1,{"y":"]"}]}}"#,
            r#" { "other" : [ "}" , "\"vector\":[9]" ] , "vector" : [ 1 , 2 ] } "#,
            r#"{"other":{"vector":[7]},"vector":[1]}"#,
            r#"{"vect\u006fr":[1]}"#,
            r#"{"vector":[1],"vector":[2]}"#,
            r#"{"vector":[1],"unknown":true}"#,
            r#"{"vector":[1],"name":}"#,
            r#"{"name":tru,"vector":[1]}"#,
            r#"{"name":"a\"b","vector":[1]}"#,
            r#"{"vector":[1]} trailing"#,
            r#"{"vector":[1]"#,
            r#"{"vector":null}"#,
            r#"{"vector":"1"}"#,
            r#"{"vector":[1,"2"]}"#,
            r#"{"vector":[]}"#,
            r#"{"vector":[1e400]}"#,
            r#"{"name":"x"}"#,
            r#"[{"vector":[1]}]"#,
            r#"{"other":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"vector":[1]}"#,
            "{\"name\":\"\u{e9}\",\"vector\":[1]}",
            r#"{"name":"abc\"#,
            r#"{"other":["\"#,
            r#"{"other":{"a":"\\"},"vector":[1]}"#,
            "",
        ];
        for document in documents {
            let mut rest = Vec::new();
            let fast = from_json_object::<Doc>(document.as_bytes(), "vector", &mut rest, |d| {
                &mut d.vector
            });
            let serde = serde_json::from_slice::<Doc>(document.as_bytes());
            assert_eq!(outcome(fast), outcome(serde), "{document}");
        }
    }

    /// Every prefix of a document, and the document with bytes changed at random: the
    /// reader never panics and always agrees with serde (value or error message).
    #[test]
    fn truncated_and_damaged_documents_read_the_same_as_with_serde_alone() {
        let document = br#"{"name":"a\"b\\","other":{"x":[1,"]",{"y":"\\"}]},"vector":[0.25,-1e-3,7,0.123456789012345678]}"#.to_vec();
        let check = |bytes: &[u8]| {
            let mut rest = Vec::new();
            let fast = from_json_object::<Doc>(bytes, "vector", &mut rest, |d| &mut d.vector);
            let serde = serde_json::from_slice::<Doc>(bytes);
            assert_eq!(
                outcome(fast),
                outcome(serde),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        };
        for end in 0..=document.len() {
            check(&document[..end]);
        }
        let mut rng = StdRng::seed_from_u64(11);
        let alphabet = b"{}[]\",:\\ 0123456789.-+eE\ntrufalsn";
        for _ in 0..20_000 {
            let mut damaged = document.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..damaged.len());
                damaged[at] = alphabet[rng.gen_range(0..alphabet.len())];
            }
            check(&damaged);
        }
    }

    #[test]
    fn the_array_is_lifted_out_of_a_typical_document() {
        let document = br#"{"namespace":"a","vector":[0.25,-1],"k":3}"#;
        let mut rest = Vec::new();
        let values = lift_array(document, b"vector", &mut rest).expect("fast path");
        assert_eq!(values, [0.25, -1.0]);
        assert_eq!(rest, br#"{"namespace":"a","vector":null,"k":3}"#);
        assert!(lift_array(br#"{"vect\u006fr":[1]}"#, b"vector", &mut rest).is_none());
        assert!(lift_array(br#"{"other":{"vector":[1]}}"#, b"vector", &mut rest).is_none());
    }
}
