//! Storage encoding: key layouts and bincode records. Internal, never hashed: the hashes are
//! always re-computed from the decoded fields by the rules in `pled-core`.

use bincode::{BorrowDecode, Decode, Encode};
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

/// One stored entry, as bincode writes it. Written from borrowed text and read back
/// borrowing the record (bincode writes text as its bytes with a length, exactly as a `&[u8]`,
/// and a 32-byte array raw, without a length). Read as bytes: entries only skipped are not
/// checked for UTF-8.
#[derive(Encode, BorrowDecode)]
pub(crate) struct StoredEntry<'a> {
    pub(crate) kind: &'a [u8],
    recorded_at: &'a [u8],
    pub(crate) body: &'a [u8],
    prev_hash: [u8; 32],
    pub(crate) hash: [u8; 32],
}

/// Marks a record holding a group of entries. A record without it (written before groups)
/// holds exactly one entry: it starts with its kind's length, which is never 0.
const GROUP: u8 = 0;

/// At most this many entries share one record, so reading one entry decodes at most this
/// many (a long append is split into several groups).
pub(crate) const GROUP_MAX: usize = 32;

/// Writes the record of `entries` (consecutive entries of one execution, at most
/// [`GROUP_MAX`]) into `out`, cleared first: the writer reuses one buffer. The record's key is
/// the first entry's.
pub(crate) fn encode_group(entries: &[SealedEntry], out: &mut Vec<u8>) {
    out.clear();
    out.push(GROUP);
    for e in entries {
        let inner = e.entry();
        let stored = StoredEntry {
            kind: inner.kind.as_str().as_bytes(),
            recorded_at: inner.recorded_at.as_str().as_bytes(),
            body: inner.body.as_str().as_bytes(),
            prev_hash: *inner.prev_hash.as_bytes(),
            hash: *e.hash().as_bytes(),
        };
        #[allow(clippy::unwrap_used)] // INVARIANT: encoding plain structs into a Vec cannot fail.
        bincode::encode_into_std_write(&stored, out, CONFIG).unwrap();
    }
}

/// The entries of one record, in seq order, the first at the record key's seq.
pub(crate) struct Group<'a> {
    rest: &'a [u8],
    next: Seq,
}

impl<'a> Group<'a> {
    pub(crate) fn new(first: Seq, bytes: &'a [u8]) -> Self {
        let rest = match bytes.split_first() {
            Some((&GROUP, rest)) => rest,
            _ => bytes,
        };
        Self { rest, next: first }
    }

    /// The group of the record `bytes` whose first `at` bytes are read, the next entry
    /// being `next`: resumes a walk left at [`Group::at`] (a cursor keeps positions, not
    /// borrows, between entries).
    pub(crate) fn resume(bytes: &'a [u8], at: usize, next: Seq) -> Self {
        Self { rest: bytes.get(at..).unwrap_or_default(), next }
    }

    /// Where the walk is in the record `bytes` it reads: the bytes read, and the next seq.
    pub(crate) fn at(&self, bytes: &[u8]) -> (usize, Seq) {
        (bytes.len() - self.rest.len(), self.next)
    }

    /// The next entry's seq and stored form, borrowing the record.
    pub(crate) fn next_stored(&mut self) -> Option<Result<(Seq, StoredEntry<'a>), String>> {
        if self.rest.is_empty() {
            return None;
        }
        Some(match bincode::borrow_decode_from_slice::<StoredEntry<'a>, _>(self.rest, CONFIG) {
            Ok((stored, used)) => {
                self.rest = &self.rest[used..];
                let seq = self.next;
                self.next = seq.next();
                Ok((seq, stored))
            }
            Err(e) => {
                self.rest = &[];
                Err(e.to_string())
            }
        })
    }

    /// The next entry's seq and hash, without building the entry.
    pub(crate) fn next_hash(&mut self) -> Option<Result<(Seq, EntryHash), String>> {
        self.next_stored().map(|r| r.map(|(seq, s)| (seq, EntryHash::from_bytes(s.hash))))
    }

    /// Whether the group holds an entry at or after `seq`.
    pub(crate) fn reaches(mut self, seq: Seq) -> Result<bool, String> {
        self.skip_to(seq)?;
        Ok(!self.rest.is_empty())
    }

    /// Skips the entries before `seq`; the next one read is `seq` (if the group holds it).
    pub(crate) fn skip_to(&mut self, seq: Seq) -> Result<(), String> {
        while self.next < seq && !self.rest.is_empty() {
            if let Some(Err(e)) = self.next_stored() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The next entry. The kind's alphabet is checked (the canonical bytes are assembled
    /// around it without escaping); nothing is trusted until the chain verifier re-hashes it.
    pub(crate) fn next_entry(&mut self, execution_id: ExecutionId) -> Option<Result<SealedEntry, (Seq, String)>> {
        let seq = self.next;
        let (seq, s) = match self.next_stored()? {
            Ok(x) => x,
            Err(e) => return Some(Err((seq, e))),
        };
        Some(s.into_entry(execution_id, seq).map_err(|e| {
            self.rest = &[];
            (seq, e)
        }))
    }
}

impl StoredEntry<'_> {
    /// The entry, its text checked as UTF-8 and its kind's alphabet checked.
    pub(crate) fn into_entry(self, execution_id: ExecutionId, seq: Seq) -> Result<SealedEntry, String> {
        let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_owned).map_err(|e| e.to_string());
        let entry = Entry {
            execution_id,
            seq,
            kind: Kind::try_from(text(self.kind)?).map_err(|e| e.to_string())?,
            recorded_at: RecordedAt::from_stored(text(self.recorded_at)?),
            body: Body::from_stored(text(self.body)?),
            prev_hash: EntryHash::from_bytes(self.prev_hash),
        };
        Ok(SealedEntry::from_stored(entry, EntryHash::from_bytes(self.hash)))
    }
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

/// Marks a value of an expiring table ([`crate::Table::expires`]): it is followed by the time
/// the record expires (Unix milliseconds, 8 bytes big-endian), then the caller's bytes. A value
/// without it was written before records expired (the API's JSON starts with `{`): it never
/// expires.
const EXPIRES: u8 = 0;
const EXPIRY_HEADER: usize = 9;

/// `value` prefixed with its expiry, `until` (Unix ms; `u64::MAX` for never).
pub(crate) fn with_expiry(value: &[u8], until: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(EXPIRY_HEADER + value.len());
    out.push(EXPIRES);
    out.extend_from_slice(&until.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// Whether a stored value of an expiring table carries an expiry (its writer knew of expiry).
pub(crate) fn stamped(stored: &[u8]) -> bool {
    stored.first() == Some(&EXPIRES) && stored.len() >= EXPIRY_HEADER
}

/// The caller's bytes of a stored value of an expiring table; `None` once it has expired
/// (`now` in Unix ms).
pub(crate) fn unexpired(stored: &[u8], now: u64) -> Option<&[u8]> {
    match stored.split_first() {
        Some((&EXPIRES, rest)) if rest.len() >= 8 => {
            let (until, value) = rest.split_at(8);
            let until = u64::from_be_bytes(until.try_into().ok()?);
            (now < until).then_some(value)
        }
        _ => Some(stored),
    }
}

#[cfg(test)]
mod tests {
    use pled_core::{Body, ChainHead, ExecutionId, Kind, RecordedAt};

    use super::*;

    #[test]
    fn expiring_values_read_until_they_expire_and_unstamped_ones_always() {
        let stored = with_expiry(b"{}", 1_000);
        assert_eq!(stored.len(), 11);
        assert_eq!(unexpired(&stored, 999), Some(&b"{}"[..]));
        assert_eq!(unexpired(&stored, 1_000), None);
        assert_eq!(unexpired(&with_expiry(b"", u64::MAX), u64::MAX - 1), Some(&b""[..]));
        assert_eq!(unexpired(b"{\"legacy\":1}", u64::MAX), Some(&b"{\"legacy\":1}"[..]), "written before expiry");
        assert_eq!(unexpired(b"", 5), Some(&b""[..]));
    }

    fn chain(n: usize) -> Vec<SealedEntry> {
        let mut head = ChainHead::genesis(ExecutionId::from_u128(5));
        (0..n)
            .map(|i| {
                let body = Body::from_json_str(&format!(r#"{{"i":{i}}}"#)).unwrap();
                let e = head.next_entry(Kind::new("k").unwrap(), RecordedAt::now(), body);
                head.advance(&e);
                e
            })
            .collect()
    }

    fn read_all(first: Seq, bytes: &[u8]) -> Vec<SealedEntry> {
        let mut g = Group::new(first, bytes);
        std::iter::from_fn(|| g.next_entry(ExecutionId::from_u128(5))).map(|r| r.unwrap()).collect()
    }

    #[test]
    fn a_group_reads_back_as_the_entries_written() {
        let entries = chain(3);
        let mut bytes = vec![1, 2, 3];
        encode_group(&entries, &mut bytes);
        // Written from borrowed fields, read back as the owned entries.
        assert_eq!(read_all(Seq::FIRST, &bytes), entries);
        let mut g = Group::new(Seq::FIRST, &bytes);
        g.skip_to(Seq::new(3)).unwrap();
        assert_eq!(g.next_hash(), Some(Ok((Seq::new(3), entries[2].hash()))));
        assert_eq!(g.next_hash(), None);
    }

    #[test]
    fn a_walk_resumed_where_it_was_left_reads_on_from_there() {
        let entries = chain(3);
        let mut bytes = Vec::new();
        encode_group(&entries, &mut bytes);
        let mut g = Group::new(Seq::FIRST, &bytes);
        g.skip_to(Seq::new(2)).unwrap();
        let (at, next) = g.at(&bytes);
        assert_eq!(next, Seq::new(2));
        let mut resumed = Group::resume(&bytes, at, next);
        assert_eq!(resumed.next_hash(), Some(Ok((Seq::new(2), entries[1].hash()))));
        let (at, next) = resumed.at(&bytes);
        assert_eq!(Group::resume(&bytes, at, next).next_hash(), Some(Ok((Seq::new(3), entries[2].hash()))));
        assert_eq!(Group::resume(&bytes, bytes.len(), Seq::new(4)).next_hash(), None);
    }

    #[test]
    fn a_record_from_before_groups_reads_as_a_group_of_one() {
        let entries = chain(2);
        let mut bytes = Vec::new();
        encode_group(&entries[1..], &mut bytes);
        // The old record was the one entry without the group marker.
        assert_eq!(bytes[0], GROUP);
        assert_eq!(read_all(Seq::new(2), &bytes[1..]), &entries[1..]);
    }

    #[test]
    fn a_damaged_group_is_an_error_not_a_short_read() {
        let entries = chain(2);
        let mut bytes = Vec::new();
        encode_group(&entries, &mut bytes);
        bytes.truncate(bytes.len() - 1);
        let mut g = Group::new(Seq::FIRST, &bytes);
        assert!(g.next_entry(ExecutionId::from_u128(5)).unwrap().is_ok());
        assert!(g.next_entry(ExecutionId::from_u128(5)).unwrap().is_err());
        assert!(g.next_entry(ExecutionId::from_u128(5)).is_none());
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
