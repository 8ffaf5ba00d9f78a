//! Canonical JSON, byte-for-byte as BigchainDB's `serialize()` (python-rapidjson with
//! `sort_keys=True, ensure_ascii=False`): compact, keys sorted by code point, raw UTF-8.
//!
//! Transaction ids and signatures are hashes of this text, so any deviation rejects valid
//! transactions. The rules are pinned by `vectors/serialization.json` (made by the driver):
//! - control characters escape as `\b \f \n \r \t` or upper-case `\u00XX`; DEL and all
//!   non-ASCII stay raw;
//! - floats are laid out as Python's `repr` (`1.0`, `1e+20`, `1e-07`), with the shortest
//!   round-trip digits;
//! - integers must fit in i64/u64 (serde_json without `arbitrary_precision`); larger ones
//!   are parsed as floats and so hash differently: such transactions fail the id check.

use serde_json::Value;

/// Serializes `value` canonically into a new string.
pub fn to_string(value: &Value) -> String {
    let mut out = String::with_capacity(512);
    write_value(&mut out, value);
    out
}

/// Appends the canonical serialization of `value` to `out` (lets callers reuse a buffer).
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        // serde_json's Map is a BTreeMap (byte order == code-point order) as long as the
        // `preserve_order` feature is off; `tests/canonical_guard.rs` fails if it turns on.
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

/// Writes a JSON string literal with rapidjson's escaping.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    use std::fmt::Write;
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        write_float(out, f);
    }
}

/// Python `repr(float)`: shortest round-trip digits; scientific when the decimal exponent is
/// below -4 or at least 16, with a signed exponent of at least two digits.
pub fn write_float(out: &mut String, f: f64) {
    use std::fmt::Write;
    if f.is_sign_negative() {
        out.push('-');
    }
    let sci = format!("{:e}", f.abs()); // e.g. "1.23456e2", shortest digits
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.abs());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_follow_python_repr() {
        let cases = [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (1e20, "1e+20"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1e-7, "1e-07"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (123.456, "123.456"),
            (1.5e300, "1.5e+300"),
            (2e-300, "2e-300"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
        ];
        for (f, want) in cases {
            let mut s = String::new();
            write_float(&mut s, f);
            assert_eq!(s, want, "float {f:?}");
        }
    }

    #[test]
    fn escapes_like_rapidjson() {
        assert_eq!(to_string(&json!("a\u{1f}b\u{7f}é\"\\")), "\"a\\u001Fb\u{7f}é\\\"\\\\\"");
        assert_eq!(to_string(&json!({"b": [1, null], "a": true})), "{\"a\":true,\"b\":[1,null]}");
    }
}
