//! The fast path: a JSON array of numbers read straight into `f32`s, eight digits at a
//! time, with the values serde_json would compute.

use std::sync::LazyLock;

use super::skip_whitespace;
#[cfg(doc)]
use super::JsonVector;

/// Reads the JSON array of numbers starting at `i` into `f32`s, exactly as serde_json
/// and [`JsonVector`] would (see [`number`]), and returns it with the index just past
/// its `]`. `None` for anything else: another value, an element that is not a number,
/// a number outside the common case, malformed JSON.
pub(super) fn number_array(b: &[u8], i: usize) -> Option<(Vec<f32>, usize)> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut i = skip_whitespace(b, i + 1);
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
        i = skip_whitespace(b, end);
        match *b.get(i)? {
            b',' => i = skip_whitespace(b, i + 1),
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
