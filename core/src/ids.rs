//! Typed identifiers, so that a sequence number is never confused with a count and an
//! execution id never with an org id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a textual id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not a UUID in the canonical hyphenated lowercase form.
    #[error("execution id {0:?} is not a UUID in canonical form (e.g. 0192f8c1-6c2e-7b35-9a0b-1c2d3e4f5a6b)")]
    ExecutionId(String),
    /// Not 64 lowercase hex digits.
    #[error("hash {0:?} is not 64 lowercase hex digits")]
    Hash(String),
    /// Not a valid org slug.
    #[error("org id {0:?} must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit")]
    OrgId(String),
    /// Sequence numbers start at 1.
    #[error("seq must be at least 1, got {0}")]
    Seq(u64),
}

/// The id of one execution (one hash chain). A UUID, written in canonical hyphenated
/// lowercase form in JSON and as its 16 bytes in storage keys and on-chain (`bytes16`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutionId(Uuid);

impl ExecutionId {
    /// A fresh, time-ordered (UUID v7) id. Time-ordered ids keep RocksDB keys of recent
    /// executions close together.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    /// An id from its 128-bit value (tests and fixtures).
    pub const fn from_u128(v: u128) -> Self {
        Self(Uuid::from_u128(v))
    }

    /// An id from its 16 bytes.
    pub const fn from_bytes(b: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(b))
    }

    /// The 16 bytes, as used in storage keys and as the on-chain `bytes16`.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The canonical text form, as hashed in entries.
    pub fn to_canonical(&self) -> String {
        self.0.hyphenated().to_string()
    }

    /// Writes the canonical text form into `out` (no allocation; used on the hashing path).
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.extend_from_slice(self.0.hyphenated().encode_lower(&mut buf).as_bytes());
    }
}

impl FromStr for ExecutionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        // Only the canonical form is accepted: the hashed text must be exactly what the
        // client sees, so "{...}", urn: and upper-case spellings are refused, not normalised.
        let id = Uuid::try_parse(s).map_err(|_| IdError::ExecutionId(s.to_owned()))?;
        if id.hyphenated().to_string() != s {
            return Err(IdError::ExecutionId(s.to_owned()));
        }
        Ok(Self(id))
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExecutionId({self})")
    }
}

impl Serialize for ExecutionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ExecutionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A position in one execution's chain. The first entry has seq 1; seq 0 means "before the
/// first entry" (an empty chain).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Seq(u64);

impl Seq {
    /// The position before the first entry: the head of an empty chain.
    pub const ZERO: Seq = Seq(0);
    /// The first entry's seq.
    pub const FIRST: Seq = Seq(1);

    /// A seq from its number.
    pub const fn new(v: u64) -> Self {
        Self(v)
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The following seq. It stays at `u64::MAX`, which no chain reaches (seqs stay below
    /// 2^53 to be exact JSON numbers, see [`crate::MAX_SAFE_INTEGER`]): reading "after" a seq a
    /// client sent then finds nothing, instead of wrapping round to the chain's start.
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}

/// A BLAKE3 entry hash (32 bytes), written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EntryHash([u8; 32]);

impl EntryHash {
    /// The `prev_hash` of the first entry of every chain.
    pub const ZERO: EntryHash = EntryHash([0; 32]);

    /// A hash from its bytes.
    pub const fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.hex().as_str().to_owned()
    }

    /// Writes the 64 hex digits into `out` (no allocation; used on the hashing path).
    pub(crate) fn write_hex(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hex().0);
    }

    /// The 64 hex digits on the stack: what `Display`, `Serialize` and the hashing path
    /// write, without allocating.
    fn hex(&self) -> HexDigits {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        HexDigits(buf)
    }
}

/// An [`EntryHash`] in lowercase hex.
struct HexDigits([u8; 64]);

impl HexDigits {
    fn as_str(&self) -> &str {
        // INVARIANT: every byte is an ASCII hex digit, so the text is valid UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for EntryHash {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let valid = s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        let mut out = [0u8; 32];
        if !valid || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(IdError::Hash(s.to_owned()));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryHash({})", self.hex().as_str())
    }
}

impl Serialize for EntryHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.hex().as_str())
    }
}

impl<'de> Deserialize<'de> for EntryHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A tenant. Orgs are slugs (`acme`, `acme-eu-2`) chosen by the platform owner.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OrgId(String);

impl OrgId {
    /// A validated org id.
    pub fn new(s: &str) -> Result<Self, IdError> {
        let ok = (1..=63).contains(&s.len())
            && s.bytes().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            && !s.starts_with('-');
        if ok { Ok(Self(s.to_owned())) } else { Err(IdError::OrgId(s.to_owned())) }
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OrgId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgId({})", self.0)
    }
}

impl<'de> Deserialize<'de> for OrgId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_id_accepts_only_canonical_text() {
        let id = ExecutionId::from_u128(0x0192_f8c1_6c2e_7b35_9a0b_1c2d_3e4f_5a6b);
        let text = id.to_string();
        assert_eq!(text, "0192f8c1-6c2e-7b35-9a0b-1c2d3e4f5a6b");
        assert_eq!(text.parse::<ExecutionId>().unwrap(), id);
        for bad in [
            "0192F8C1-6C2E-7B35-9A0B-1C2D3E4F5A6B",
            "0192f8c16c2e7b359a0b1c2d3e4f5a6b",
            "{0192f8c1-6c2e-7b35-9a0b-1c2d3e4f5a6b}",
            "",
            "nope",
        ] {
            assert!(bad.parse::<ExecutionId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn entry_hash_hex_round_trips_and_refuses_upper_case() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
        let h = EntryHash::from_bytes(bytes);
        let expected = hex::encode(bytes);
        assert_eq!(h.to_hex(), expected);
        assert_eq!(h.to_string(), expected);
        assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{expected}\""));
        assert_eq!(h.to_hex().parse::<EntryHash>().unwrap(), h);
        let mut buf = Vec::new();
        h.write_hex(&mut buf);
        assert_eq!(buf, expected.as_bytes());
        assert!("AB".repeat(32).parse::<EntryHash>().is_err());
        assert!("ab".repeat(31).parse::<EntryHash>().is_err());
    }

    #[test]
    fn org_ids_are_slugs() {
        assert!(OrgId::new("acme-eu-2").is_ok());
        for bad in ["", "-acme", "Acme", "a b", &"a".repeat(64)] {
            assert!(OrgId::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
