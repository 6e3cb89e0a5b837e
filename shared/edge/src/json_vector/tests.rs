//! The reader against serde alone: numbers bit for bit, documents value for value.

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
        let fast =
            from_json_object::<Doc>(document.as_bytes(), "vector", &mut rest, |d| &mut d.vector);
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
