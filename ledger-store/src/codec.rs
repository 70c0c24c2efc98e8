//! Storage encoding: key layouts and bincode records. Internal, never hashed: the hashes are
//! always re-computed from the decoded fields by the rules in `pled-core`.

use bincode::{Decode, Encode};
use pled_core::{Body, Entry, EntryHash, ExecutionId, Kind, RecordedAt, SealedEntry, Seq};

use crate::StoreError;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// `execution id (16 bytes) || seq (8 bytes, big-endian)`: entries of one execution are
/// adjacent and in seq order.
pub(crate) fn entry_key(execution: ExecutionId, seq: Seq) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(execution.as_bytes());
    k[16..].copy_from_slice(&seq.get().to_be_bytes());
    k
}

pub(crate) fn split_entry_key(key: &[u8]) -> Option<(ExecutionId, Seq)> {
    let id: [u8; 16] = key.get(..16)?.try_into().ok()?;
    let seq: [u8; 8] = key.get(16..24)?.try_into().ok()?;
    (key.len() == 24).then(|| (ExecutionId::from_bytes(id), Seq::new(u64::from_be_bytes(seq))))
}

#[derive(Encode, Decode)]
pub(crate) struct StoredEntry {
    pub(crate) kind: String,
    pub(crate) recorded_at: String,
    pub(crate) body: String,
    pub(crate) prev_hash: [u8; 32],
    pub(crate) hash: [u8; 32],
}

/// A [`StoredEntry`] to write, borrowing the entry's text: bincode writes a `&str` exactly as
/// it writes a `String`, and an array reference as the array.
#[derive(Encode)]
struct StoredEntryRef<'a> {
    kind: &'a str,
    recorded_at: &'a str,
    body: &'a str,
    prev_hash: &'a [u8; 32],
    hash: &'a [u8; 32],
}

/// Writes the stored form of `e` into `out` (cleared first): the writer reuses one buffer
/// for every entry.
pub(crate) fn encode_entry(e: &SealedEntry, out: &mut Vec<u8>) {
    let inner = e.entry();
    let hash = e.hash();
    let stored = StoredEntryRef {
        kind: inner.kind.as_str(),
        recorded_at: inner.recorded_at.as_str(),
        body: inner.body.as_str(),
        prev_hash: inner.prev_hash.as_bytes(),
        hash: hash.as_bytes(),
    };
    out.clear();
    #[allow(clippy::unwrap_used)] // INVARIANT: encoding plain structs into a Vec cannot fail.
    bincode::encode_into_std_write(&stored, out, CONFIG).unwrap();
}

/// Decodes a stored entry. The kind's alphabet is checked (the canonical bytes are assembled
/// around it without escaping); nothing is trusted until the chain verifier re-hashes it.
pub(crate) fn decode_entry(execution_id: ExecutionId, seq: Seq, bytes: &[u8]) -> Result<SealedEntry, String> {
    let s: StoredEntry = decode_raw(bytes)?;
    let entry = Entry {
        execution_id,
        seq,
        kind: Kind::try_from(s.kind).map_err(|e| e.to_string())?,
        recorded_at: RecordedAt::from_stored(s.recorded_at),
        body: Body::from_stored(s.body),
        prev_hash: EntryHash::from_bytes(s.prev_hash),
    };
    Ok(SealedEntry::from_stored(entry, EntryHash::from_bytes(s.hash)))
}

/// The entry hash of a stored entry, read without decoding: `StoredEntry` ends with the two
/// fixed 32-byte arrays `prev_hash` and `hash`, which bincode writes raw, so the hash is
/// always the last 32 bytes (checked by a test).
pub(crate) fn stored_hash(bytes: &[u8]) -> Option<EntryHash> {
    let tail: [u8; 32] = bytes.get(bytes.len().checked_sub(32)?..)?.try_into().ok()?;
    Some(EntryHash::from_bytes(tail))
}

/// The recorded end of a chain and the execution's current state bytes.
#[derive(Encode, Decode, Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredHead {
    pub(crate) seq: u64,
    pub(crate) hash: [u8; 32],
    pub(crate) state: Vec<u8>,
}

/// One append, in the global feed (the order appends became durable), with the Merkle leaves
/// of its entries (so its last seq is `first_seq + leaves.len() - 1`): a commit round reads
/// one small record per append instead of every entry.
#[derive(Encode, Decode, Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredFeed {
    pub(crate) execution_id: [u8; 16],
    pub(crate) first_seq: u64,
    pub(crate) leaves: Vec<[u8; 32]>,
}

/// A feed record written before the feed carried leaves.
#[derive(Encode, Decode, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LegacyStoredFeed {
    pub(crate) execution_id: [u8; 16],
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
}

pub(crate) fn encode<T: Encode>(v: &T) -> Vec<u8> {
    #[allow(clippy::unwrap_used)] // INVARIANT: encoding plain structs into a Vec cannot fail.
    bincode::encode_to_vec(v, CONFIG).unwrap()
}

pub(crate) fn decode_raw<T: Decode<()>>(bytes: &[u8]) -> Result<T, String> {
    let (v, used) = bincode::decode_from_slice(bytes, CONFIG).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(v)
}

pub(crate) fn decode<T: Decode<()>>(what: impl Fn() -> String, bytes: &[u8]) -> Result<T, StoreError> {
    decode_raw(bytes).map_err(|detail| StoreError::Corrupt { what: what(), detail })
}

#[cfg(test)]
mod tests {
    use pled_core::{Body, ChainHead, ExecutionId, Kind, RecordedAt};

    use super::*;

    #[test]
    fn the_hash_is_the_last_32_bytes_of_a_stored_entry() {
        let head = ChainHead::genesis(ExecutionId::from_u128(5));
        let e =
            head.next_entry(Kind::new("k").unwrap(), RecordedAt::now(), Body::from_json_str(r#"{"a":"b"}"#).unwrap());
        let mut bytes = vec![1, 2, 3];
        encode_entry(&e, &mut bytes);
        assert_eq!(stored_hash(&bytes), Some(e.hash()));
        // Written from borrowed fields, read back as the owned record.
        assert_eq!(decode_entry(e.entry().execution_id, e.seq(), &bytes), Ok(e));
    }

    #[test]
    fn a_legacy_feed_record_is_told_apart_from_a_current_one() {
        let legacy = LegacyStoredFeed { execution_id: [7; 16], first_seq: 3, last_seq: 4 };
        assert!(decode_raw::<StoredFeed>(&encode(&legacy)).is_err());
        assert_eq!(decode_raw::<LegacyStoredFeed>(&encode(&legacy)), Ok(legacy));
        let current = StoredFeed { execution_id: [7; 16], first_seq: 3, leaves: vec![[1; 32], [2; 32]] };
        assert_eq!(decode_raw::<StoredFeed>(&encode(&current)), Ok(current.clone()));
        assert!(decode_raw::<LegacyStoredFeed>(&encode(&current)).is_err());
    }
}
