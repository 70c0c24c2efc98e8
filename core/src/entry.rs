//! The ledger entry, its canonical bytes and its hash.
//!
//! The hashed object of an entry is the JSON object
//! `{"body":…,"execution_id":…,"kind":…,"prev_hash":…,"recorded_at":…,"seq":…}` in RFC 8785
//! (JCS) form, and `entry_hash = BLAKE3(ENTRY_DOMAIN_TAG || those bytes)`. Because every field
//! but `body` has a fixed, escape-free alphabet, the canonical bytes are assembled directly
//! (keys already in JCS order) around the body's stored canonical text; a property test
//! checks the assembly against a general JCS implementation.

use std::borrow::Cow;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::body::{Body, BodyError};
use crate::ids::{EntryHash, ExecutionId, IdError, Seq};
use crate::time::{RecordedAt, TimeError};

/// Prefixed to the canonical bytes before hashing, so that an entry hash can never be
/// confused with the hash of anything else: the 20 ASCII bytes `PLED-LEDGER-ENTRY-V1` and
/// one zero byte.
pub const ENTRY_DOMAIN_TAG: &[u8] = b"PLED-LEDGER-ENTRY-V1\0";

/// Why an entry (or an exported entry line) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The kind is outside its alphabet.
    #[error("kind {0:?} must be 1-64 characters of a-z, 0-9, '_', '.', ':' and '-', starting with a letter")]
    Kind(String),
    /// The body was refused.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// An id or hash field was refused.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The recorded time was refused.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A field of an exported entry is missing, has the wrong type, or is unknown.
    #[error("entry field {field:?}: {problem}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// What an entry records (`event.received`, `state.changed`, …). Lower-case ASCII letters,
/// digits and `_ . : -`, starting with a letter, at most 64 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(Cow<'static, str>);

impl Kind {
    /// A validated kind.
    pub fn new(s: &str) -> Result<Self, EntryError> {
        Self::try_from(s.to_owned())
    }

    /// A kind the program names itself, checked where it is evaluated: in a constant
    /// (`const { Kind::known("event.received") }`) that is when the program is built, and an
    /// invalid kind does not compile. Neither checks nor allocates at run time there.
    ///
    /// # Panics
    /// On a kind outside the alphabet (in a constant: a build error).
    pub const fn known(s: &'static str) -> Self {
        assert!(valid_kind(s.as_bytes()), "a kind must be 1-64 characters of a-z, 0-9, '_', '.', ':' and '-'");
        Self(Cow::Borrowed(s))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Kind {
    type Error = EntryError;

    /// [`Kind::new`], keeping the string.
    fn try_from(s: String) -> Result<Self, EntryError> {
        if valid_kind(s.as_bytes()) { Ok(Self(Cow::Owned(s))) } else { Err(EntryError::Kind(s)) }
    }
}

/// Whether `b` is a kind: 1-64 bytes of `a-z 0-9 _ . : -`, starting with a letter.
const fn valid_kind(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > 64 || !b[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b':' | b'-')) {
            return false;
        }
        i += 1;
    }
    true
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({})", self.0)
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// An entry before it is hashed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    /// The chain it belongs to.
    pub execution_id: ExecutionId,
    /// Its position, from 1.
    pub seq: Seq,
    /// What it records.
    pub kind: Kind,
    /// When the ledger recorded it.
    pub recorded_at: RecordedAt,
    /// Kind-specific content.
    pub body: Body,
    /// The previous entry's hash; [`EntryHash::ZERO`] for seq 1.
    pub prev_hash: EntryHash,
}

impl Entry {
    /// The canonical (JCS) bytes of the hashed object.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.as_str().len() + 200);
        self.write_canonical(&mut out, None);
        out
    }

    /// `BLAKE3(ENTRY_DOMAIN_TAG || canonical bytes)`.
    pub fn compute_hash(&self) -> EntryHash {
        // One reusable buffer per thread: hashing is the hot path of appends and verification.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            buf.clear();
            buf.extend_from_slice(ENTRY_DOMAIN_TAG);
            self.write_canonical(buf, None);
            EntryHash::from_bytes(*blake3::hash(buf).as_bytes())
        })
    }

    /// Hashes the entry.
    pub fn seal(self) -> SealedEntry {
        let hash = self.compute_hash();
        SealedEntry { entry: self, hash }
    }

    /// Writes the canonical object, with `entry_hash` as an extra member when given (the
    /// export form). Keys are written in JCS order (UTF-16 code-unit order, which for these
    /// ASCII names is byte order).
    fn write_canonical(&self, out: &mut Vec<u8>, entry_hash: Option<&EntryHash>) {
        out.extend_from_slice(b"{\"body\":");
        out.extend_from_slice(self.body.as_str().as_bytes());
        if let Some(h) = entry_hash {
            out.extend_from_slice(b",\"entry_hash\":\"");
            h.write_hex(out);
            out.push(b'"');
        }
        out.extend_from_slice(b",\"execution_id\":\"");
        self.execution_id.write_canonical(out);
        out.extend_from_slice(b"\",\"kind\":\"");
        // INVARIANT: Kind's alphabet needs no JSON escaping.
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"prev_hash\":\"");
        self.prev_hash.write_hex(out);
        out.extend_from_slice(b"\",\"recorded_at\":\"");
        out.extend_from_slice(self.recorded_at.as_str().as_bytes());
        out.extend_from_slice(b"\",\"seq\":");
        crate::jcs::write_u64(self.seq.get(), out, false);
        out.push(b'}');
    }
}

/// An entry with its hash.
///
/// INVARIANT: built by [`Entry::seal`] the hash is the entry's hash; built by
/// [`SealedEntry::from_stored`] or parsed from an export it is the *claimed* hash, which
/// [`crate::ChainVerifier`] re-computes before anything is trusted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SealedEntry {
    entry: Entry,
    hash: EntryHash,
}

impl SealedEntry {
    /// Re-assembles an entry and its claimed hash (from storage).
    pub fn from_stored(entry: Entry, hash: EntryHash) -> Self {
        Self { entry, hash }
    }

    /// The entry.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The (claimed, see the type's invariant) entry hash.
    pub fn hash(&self) -> EntryHash {
        self.hash
    }

    /// Shorthand for `entry().seq`.
    pub fn seq(&self) -> Seq {
        self.entry.seq
    }

    /// The export form: the hashed object plus `entry_hash`, itself in JCS form. Removing
    /// `entry_hash` and hashing the rest as the ledger format says gives the hash back.
    pub fn export_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entry.body.as_str().len() + 280);
        self.entry.write_canonical(&mut out, Some(&self.hash));
        out
    }

    /// Parses one exported entry object (claimed hash, not verified).
    pub fn from_export_value(v: &Value) -> Result<Self, EntryError> {
        let obj = v.as_object().ok_or_else(|| field("", "an exported entry must be a JSON object"))?;
        const KNOWN: [&str; 7] = ["body", "entry_hash", "execution_id", "kind", "prev_hash", "recorded_at", "seq"];
        if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(field(unknown, "unknown field"));
        }
        let text = |name: &str| -> Result<&str, EntryError> {
            obj.get(name).ok_or_else(|| field(name, "missing"))?.as_str().ok_or_else(|| field(name, "must be a string"))
        };
        let seq = obj
            .get("seq")
            .ok_or_else(|| field("seq", "missing"))?
            .as_u64()
            .filter(|s| (1..=crate::MAX_SAFE_INTEGER).contains(s))
            .ok_or_else(|| field("seq", "must be an integer from 1 to 2^53-1"))?;
        let entry = Entry {
            execution_id: text("execution_id")?.parse()?,
            seq: Seq::new(seq),
            kind: Kind::new(text("kind")?)?,
            recorded_at: RecordedAt::parse(text("recorded_at")?)?,
            body: Body::from_value(obj.get("body").ok_or_else(|| field("body", "missing"))?)?,
            prev_hash: text("prev_hash")?.parse()?,
        };
        Ok(Self { entry, hash: text("entry_hash")?.parse()? })
    }
}

fn field(name: &str, problem: &'static str) -> EntryError {
    EntryError::Field { field: name.to_owned(), problem }
}

/// Serialises as the export form (the same members, in the same order, as
/// [`SealedEntry::export_json`]).
impl Serialize for SealedEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.entry;
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("body", &e.body)?;
        m.serialize_entry("entry_hash", &self.hash)?;
        m.serialize_entry("execution_id", &e.execution_id)?;
        m.serialize_entry("kind", &e.kind)?;
        m.serialize_entry("prev_hash", &e.prev_hash)?;
        m.serialize_entry("recorded_at", &e.recorded_at)?;
        m.serialize_entry("seq", &e.seq)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn sample(body: Value) -> Entry {
        Entry {
            execution_id: ExecutionId::from_u128(0x0192_f8c1_6c2e_7b35_9a0b_1c2d_3e4f_5a6b),
            seq: Seq::new(7),
            kind: Kind::new("event.received").unwrap(),
            recorded_at: RecordedAt::parse("2026-11-22T01:48:30.123456Z").unwrap(),
            body: Body::from_value(&body).unwrap(),
            prev_hash: EntryHash::from_bytes([0x11; 32]),
        }
    }

    fn generic_jcs(e: &Entry, hash: Option<EntryHash>) -> Vec<u8> {
        let mut v = json!({
            "execution_id": e.execution_id.to_string(),
            "seq": e.seq.get(),
            "kind": e.kind.as_str(),
            "recorded_at": e.recorded_at.as_str(),
            "body": e.body.to_value().unwrap(),
            "prev_hash": e.prev_hash.to_hex(),
        });
        if let Some(h) = hash {
            v["entry_hash"] = json!(h.to_hex());
        }
        serde_json_canonicalizer::to_vec(&v).unwrap()
    }

    #[test]
    fn kinds_have_a_fixed_alphabet() {
        for ok in ["a", "event.received", "token:mint", "x_1-2"] {
            assert!(Kind::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Event", "1abc", "a b", "a\"b", "é", &"a".repeat(65)] {
            assert!(Kind::new(bad).is_err(), "{bad:?}");
            assert!(Kind::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
        const KNOWN: Kind = Kind::known("event.received");
        assert_eq!(KNOWN, Kind::new("event.received").unwrap());
        for bad in ["", "Event", "a b", "é"] {
            assert!(std::panic::catch_unwind(|| Kind::known(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn export_parses_back_to_the_same_entry() {
        let sealed = sample(json!({"a": [1, "ü", {"z": null}]})).seal();
        let v: Value = serde_json::from_slice(&sealed.export_json()).unwrap();
        assert_eq!(SealedEntry::from_export_value(&v).unwrap(), sealed);
        assert_eq!(serde_json::to_value(&sealed).unwrap(), v);
        let mut extra = v.clone();
        extra["note"] = json!(1);
        assert!(matches!(
            SealedEntry::from_export_value(&extra),
            Err(EntryError::Field { problem: "unknown field", .. })
        ));
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(crate::MAX_SAFE_INTEGER as i64)..=crate::MAX_SAFE_INTEGER as i64).prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            ".*".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The assembled canonical bytes equal a general JCS serialisation of the same object.
        #[test]
        fn assembled_bytes_equal_generic_jcs(
            body in prop::collection::btree_map(".*", json_value(), 0..6),
            seq in 1..=crate::MAX_SAFE_INTEGER,
        ) {
            let mut e = sample(Value::Object(body.into_iter().collect()));
            e.seq = Seq::new(seq);
            prop_assert_eq!(e.canonical_bytes(), generic_jcs(&e, None));
            let sealed = e.clone().seal();
            prop_assert_eq!(sealed.export_json(), generic_jcs(&e, Some(sealed.hash())));
        }
    }
}
