//! RFC 8785 (JCS) serialisation of JSON values, written for speed on the ingest path (every
//! entry body goes through it). A property test checks it byte for byte against
//! `serde_json_canonicalizer`, and the known-answer vectors against Python's `rfc8785`.
//!
//! - Object members sorted by the UTF-16 code units of their names.
//! - Strings with the minimal escapes: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other
//!   control characters as `\u00xx`; everything else literal UTF-8.
//! - Numbers as ECMAScript `Number.prototype.toString` writes the double.

use serde_json::{Number, Value};

/// Appends the canonical form of `v` to `out`.
pub fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map.iter().map(|(k, v)| (k.as_str(), v)), out),
    }
}

/// Appends the canonical form of the object with these members (distinct names). Members
/// that already come in JCS order (a `serde_json` map iterates in byte order, which is UTF-16
/// order unless keys hold characters from U+E000 up) are written as they come; others are
/// sorted first.
pub(crate) fn write_object<'a>(members: impl Iterator<Item = (&'a str, &'a Value)> + Clone, out: &mut Vec<u8>) {
    let mut previous: Option<&str> = None;
    let in_order = members.clone().all(|(k, _)| {
        let ordered = previous.is_none_or(|p| utf16_cmp(p, k).is_lt());
        previous = Some(k);
        ordered
    });
    if in_order {
        write_members(members, out);
    } else {
        let mut sorted: Vec<(&str, &Value)> = members.collect();
        sorted.sort_unstable_by(|a, b| utf16_cmp(a.0, b.0));
        write_members(sorted.into_iter(), out);
    }
}

fn write_members<'a>(members: impl Iterator<Item = (&'a str, &'a Value)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, item)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, out);
        out.push(b':');
        write_value(item, out);
    }
    out.push(b'}');
}

/// Orders strings by their UTF-16 code units (RFC 8785 §3.2.3). Byte order of UTF-8 equals
/// code-point order, which differs from UTF-16 order only between supplementary characters
/// (surrogate pairs, 0xD800..) and U+E000..U+FFFF.
pub(crate) fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() || b.is_ascii() {
        return a.as_bytes().cmp(b.as_bytes());
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        write_u64(u, out, false);
    } else if let Some(i) = n.as_i64() {
        write_u64(i.unsigned_abs(), out, true);
    } else if let Some(f) = n.as_f64() {
        if f == 0.0 {
            out.push(b'0'); // -0 is written 0
        } else {
            let mut buf = ryu_js::Buffer::new();
            out.extend_from_slice(buf.format_finite(f).as_bytes());
        }
    }
}

/// Writes an integer in its JCS (ECMAScript) form; `negative` prefixes a minus for non-zero `n`.
pub(crate) fn write_u64(mut n: u64, out: &mut Vec<u8>, negative: bool) {
    // Integers arrive here only within ±(2^53-1) (larger ones are refused before), where the
    // ECMAScript form of the double is the plain decimal.
    if negative && n != 0 {
        out.push(b'-');
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        let i = next_escape(bytes, start);
        out.extend_from_slice(&bytes[start..i]);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        if escape.is_empty() {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.push(b'"');
}

/// The index of the first byte at or after `from` that a JSON string must escape (`"`, `\`,
/// or a control character below 0x20), or `bytes.len()`. `from` is at most `bytes.len()`.
fn next_escape(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let marks = escape_marks(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        if marks != 0 {
            return i + (marks.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    // Fewer than eight bytes are left: test them one by one. (Copying them into a padded
    // word and reading that back stalls the load on the copy's narrower stores: it was 40%
    // of this function's cycles.)
    let rest = bytes.get(i..).unwrap_or_default();
    rest.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').map_or(bytes.len(), |p| i + p)
}

/// Eight bytes (little-endian) in, the high bit set in the byte that must be escaped, and
/// possibly in bytes after it, never before: `(x - 0x0101..) & !x & 0x8080..` marks the
/// first zero byte of `x` (a borrow can only reach the bytes above it), here of the word XOR
/// `"` and of the word XOR `\`, and, subtracting 0x20 instead of 1, the bytes below 0x20 of
/// the word itself. Bytes of 0x80 and above (UTF-8 sequences) are never marked.
fn escape_marks(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    below(w, 0x20) | below(w ^ (ONES * u64::from(b'"')), 1) | below(w ^ (ONES * u64::from(b'\\')), 1)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn jcs(v: &Value) -> String {
        let mut out = Vec::new();
        write_value(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_forms() {
        assert_eq!(
            jcs(&json!({"b": 1, "a": [true, null, -0.0, 1e21, 1e-7, 0.1, 100.0, -5]})),
            r#"{"a":[true,null,0,1e+21,1e-7,0.1,100,-5],"b":1}"#
        );
        assert_eq!(
            jcs(&json!("\u{0}\u{1f}\u{7f}\"\\/\u{8}\u{c}\n\r\t é")),
            "\"\\u0000\\u001f\u{7f}\\\"\\\\/\\b\\f\\n\\r\\t é\""
        );
        // U+E000 sorts after U+1F600 in UTF-16 (0xD83D < 0xE000), before it in UTF-8.
        assert_eq!(jcs(&json!({"\u{e000}": 1, "\u{1f600}": 2})), "{\"\u{1f600}\":2,\"\u{e000}\":1}");
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(crate::MAX_SAFE_INTEGER as i64)..=crate::MAX_SAFE_INTEGER as i64).prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            "\\PC*".prop_map(Value::String),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                // ASCII keys (byte order is UTF-16 order) and any keys.
                prop::collection::btree_map(prop_oneof!["[a-zA-Z_]{0,3}", any::<String>()], inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn equals_a_general_jcs_implementation(v in value()) {
            prop_assert_eq!(jcs(&v), serde_json_canonicalizer::to_string(&v).unwrap());
        }

        /// Strings dense in characters to escape, at every offset within the 8-byte words
        /// that `next_escape` scans, beside multi-byte characters.
        #[test]
        fn escapes_at_every_offset(s in "[a\"\\\\\u{0}-\u{1f}\u{7f}é€😀]{0,40}") {
            let v = Value::String(s);
            prop_assert_eq!(jcs(&v), serde_json_canonicalizer::to_string(&v).unwrap());
        }
    }
}
