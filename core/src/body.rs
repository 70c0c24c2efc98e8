//! Entry bodies: JSON objects held in their RFC 8785 (JCS) canonical form.
//!
//! JCS writes every number as an IEEE-754 double. An integer above 2^53 cannot be held
//! exactly, and common JCS libraries round it silently, so a hash would commit to a value the
//! client never sent. Such integers are refused here, at the edge, with the path of the
//! offending value: big amounts and counters travel as decimal strings.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The largest integer a JSON number may carry in a body: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not parseable JSON.
    #[error("body is not valid JSON: {0}")]
    Json(String),
    /// The top level must be an object.
    #[error("body must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// An integer JCS cannot hold exactly.
    #[error("number at {path} is outside ±(2^53-1) and would be rounded when hashed; send it as a decimal string")]
    UnsafeInteger {
        /// JSON pointer to the value.
        path: String,
    },
}

/// A JSON object in canonical (JCS) text form.
///
/// INVARIANT: `0` is the JCS serialisation of a JSON object whose numbers are all exactly
/// representable as doubles (built by [`Body::from_value`]), or bytes read back from storage
/// that the chain verifier re-hashes before trusting.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Body(String);

impl Body {
    /// The empty object `{}`.
    pub fn empty() -> Self {
        Self("{}".to_owned())
    }

    /// Canonicalises a JSON value, refusing non-objects and unsafe integers.
    pub fn from_value(value: &Value) -> Result<Self, BodyError> {
        Self::check(value)?;
        let mut out = Vec::with_capacity(128);
        crate::jcs::write_value(value, &mut out);
        // INVARIANT: write_value emits UTF-8 (it copies str bytes and ASCII).
        Ok(Self(String::from_utf8(out).map_err(|e| BodyError::Json(e.to_string()))?))
    }

    /// Whether [`Body::from_value`] takes `value`, without writing it.
    pub fn check(value: &Value) -> Result<(), BodyError> {
        if !value.is_object() {
            return Err(BodyError::NotAnObject(type_name(value)));
        }
        if !numbers_safe(value) {
            // Only now build the path of the offending number.
            check_numbers(value, &mut String::new())?;
        }
        Ok(())
    }

    /// The body of the object with these members, written straight as canonical text: the
    /// same bytes and the same errors as [`Body::from_value`] on that object, without building
    /// it (the hot path of every engine step). Member names must be distinct.
    pub fn from_members(members: &mut [(&str, Member<'_>)]) -> Result<Self, BodyError> {
        // Checked in the order `from_value` checks (its map's, by bytes), so that the first
        // offending number is the same; written in JCS order.
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        debug_assert!(members.windows(2).all(|w| w[0].0 != w[1].0), "member names must be distinct");
        let escaped = |k: &str| format!("/{}", k.replace('~', "~0").replace('/', "~1"));
        for (k, m) in members.iter() {
            match m {
                Member::Json(v) if !numbers_safe(v) => check_numbers(v, &mut escaped(k))?,
                Member::UInt(n) if *n > MAX_SAFE_INTEGER => return Err(BodyError::UnsafeInteger { path: escaped(k) }),
                Member::Object(map) => {
                    for (name, v) in map.iter().filter(|(_, v)| !numbers_safe(v)) {
                        check_numbers(v, &mut format!("{}{}", escaped(k), escaped(name)))?;
                    }
                }
                _ => {}
            }
        }
        // Byte order is JCS's UTF-16 order when every name is ASCII (they are in the engine).
        if !members.iter().all(|(k, _)| k.is_ascii()) {
            members.sort_by(|a, b| crate::jcs::utf16_cmp(a.0, b.0));
        }
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        for (i, (k, m)) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::jcs::write_string(k, &mut out);
            out.push(b':');
            match m {
                Member::Json(v) => crate::jcs::write_value(v, &mut out),
                Member::Str(s) => crate::jcs::write_string(s, &mut out),
                Member::UInt(n) => crate::jcs::write_u64(*n, &mut out, false),
                Member::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                Member::Null => out.extend_from_slice(b"null"),
                Member::Object(map) => crate::jcs::write_object(map.iter().map(|(k, v)| (k.as_str(), v)), &mut out),
            }
        }
        out.push(b'}');
        // INVARIANT: only str bytes and ASCII were written.
        Ok(Self(String::from_utf8(out).map_err(|e| BodyError::Json(e.to_string()))?))
    }

    /// Parses and canonicalises JSON text.
    pub fn from_json_str(s: &str) -> Result<Self, BodyError> {
        let v: Value = serde_json::from_str(s).map_err(|e| BodyError::Json(e.to_string()))?;
        Self::from_value(&v)
    }

    /// Wraps text read back from storage, without checks (see the type's invariant).
    pub fn from_stored(canonical: String) -> Self {
        Self(canonical)
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the body, returning its canonical text.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The body as a JSON value.
    pub fn to_value(&self) -> Result<Value, BodyError> {
        serde_json::from_str(&self.0).map_err(|e| BodyError::Json(e.to_string()))
    }
}

/// One member of a body built by [`Body::from_members`].
#[derive(Debug, Clone, Copy)]
pub enum Member<'a> {
    /// Any JSON value.
    Json(&'a Value),
    /// A string.
    Str(&'a str),
    /// An integer (above 2^53-1 refused, as in any body).
    UInt(u64),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
    /// An object held as a map of names to JSON values.
    Object(&'a BTreeMap<String, Value>),
}

impl<'a> Member<'a> {
    /// A string, or `null`.
    pub fn opt_str(s: Option<&'a str>) -> Self {
        s.map_or(Member::Null, Member::Str)
    }

    /// An integer, or `null`.
    pub fn opt_uint(n: Option<u64>) -> Self {
        n.map_or(Member::Null, Member::UInt)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether every integer in `v` is within ±(2^53 − 1) (no allocation: the common case).
fn numbers_safe(v: &Value) -> bool {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u <= MAX_SAFE_INTEGER,
            (None, Some(i)) => i.unsigned_abs() <= MAX_SAFE_INTEGER,
            (None, None) => true,
        },
        Value::Array(items) => items.iter().all(numbers_safe),
        Value::Object(map) => map.values().all(numbers_safe),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

fn check_numbers(v: &Value, path: &mut String) -> Result<(), BodyError> {
    match v {
        Value::Number(n) => {
            let safe = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= MAX_SAFE_INTEGER,
                (None, Some(i)) => i.unsigned_abs() <= MAX_SAFE_INTEGER,
                (None, None) => true, // a double: JCS writes its shortest round-trip form
            };
            if safe { Ok(()) } else { Err(BodyError::UnsafeInteger { path: pointer_or_root(path) }) }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

fn pointer_or_root(path: &str) -> String {
    if path.is_empty() { "/".to_owned() } else { path.to_owned() }
}

impl fmt::Display for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Body({})", self.0)
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Emit the canonical text as raw JSON rather than re-serialising a parsed value.
        #[allow(clippy::unwrap_used)] // INVARIANT: the text is valid JSON.
        let raw = serde_json::value::RawValue::from_string(self.0.clone()).unwrap();
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Self::from_value(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn canonicalises_key_order_and_whitespace() {
        let b = Body::from_json_str(r#"{ "b": 1, "a": [true, null, 1.5e0] }"#).unwrap();
        assert_eq!(b.as_str(), r#"{"a":[true,null,1.5],"b":1}"#);
    }

    #[test]
    fn refuses_unsafe_integers_with_their_path() {
        let err = Body::from_json_str(r#"{"order":{"lines":[{"amount":9007199254740992}]}}"#).unwrap_err();
        assert_eq!(err, BodyError::UnsafeInteger { path: "/order/lines/0/amount".into() });
        assert!(Body::from_json_str(r#"{"x":-9007199254740992}"#).is_err());
        assert!(Body::from_json_str(r#"{"x":9007199254740991}"#).is_ok());
        assert!(Body::from_json_str(r#"{"x":-9007199254740991}"#).is_ok());
        assert!(Body::from_json_str(r#"{"amount":"18446744073709551615"}"#).is_ok());
    }

    fn member() -> impl Strategy<Value = (Value, Member<'static>)> {
        // Values leak so that the members can borrow them for the whole test.
        let leak = |v: Value| -> &'static Value { Box::leak(Box::new(v)) };
        let json = prop_oneof![
            Just(json!(null)),
            Just(json!({"é": [1, 2.5, "x\n"], "a": {"b": 9007199254740992u64}})),
            Just(json!([-9007199254740992i64])),
            any::<i32>().prop_map(|n| json!(n)),
            "\\PC{0,4}".prop_map(|s| json!(s)),
        ];
        prop_oneof![
            json.clone().prop_map(move |v| (v.clone(), Member::Json(leak(v)))),
            "\\PC{0,4}".prop_map(|s| (json!(s), Member::Str(Box::leak(s.into_boxed_str())))),
            prop_oneof![0..=MAX_SAFE_INTEGER + 2, Just(u64::MAX)].prop_map(|n| (json!(n), Member::UInt(n))),
            any::<bool>().prop_map(|b| (json!(b), Member::Bool(b))),
            Just((json!(null), Member::Null)),
            prop::collection::btree_map("[a-zé~/]{0,3}", json, 0..3).prop_map(|m| {
                let map: &'static BTreeMap<String, Value> = Box::leak(Box::new(m));
                (json!(map), Member::Object(map))
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// `from_members` writes the same bytes, and refuses with the same error, as
        /// `from_value` on the object built from the members.
        #[test]
        fn from_members_equals_from_value(members in prop::collection::btree_map("[a-zA-Z\u{e000}\u{1f600}~/]{0,3}", member(), 0..6)) {
            let object: serde_json::Map<String, Value> = members.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect();
            let mut list: Vec<(&str, Member<'_>)> = members.iter().map(|(k, (_, m))| (k.as_str(), *m)).collect();
            prop_assert_eq!(Body::from_members(&mut list), Body::from_value(&Value::Object(object)));
        }
    }

    #[test]
    fn refuses_non_objects_and_bad_json() {
        assert_eq!(Body::from_json_str("[1]").unwrap_err(), BodyError::NotAnObject("an array"));
        assert!(matches!(Body::from_json_str("{"), Err(BodyError::Json(_))));
        assert!(matches!(Body::from_json_str(r#"{"a":"\ud800"}"#), Err(BodyError::Json(_))));
    }
}
