//! Chain linking and verification.
//!
//! A chain is valid when, for every entry in seq order: its seq is one more than the
//! previous one (the first is 1), its `prev_hash` is the previous entry's hash (all zero for
//! the first), it belongs to the chain's execution, and its stored hash equals the hash
//! re-computed from its content. The verifier stops at the first entry that breaks a rule
//! and says which rule.

use std::fmt;

use crate::body::Body;
use crate::entry::{Entry, Kind, SealedEntry};
use crate::ids::{EntryHash, ExecutionId, Seq};
use crate::time::RecordedAt;

/// The end of a chain: the last seq and hash (seq 0 and the zero hash for an empty chain).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChainHead {
    /// The chain.
    pub execution_id: ExecutionId,
    /// The last entry's seq; 0 when empty.
    pub seq: Seq,
    /// The last entry's hash; zero when empty.
    pub hash: EntryHash,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis(execution_id: ExecutionId) -> Self {
        Self { execution_id, seq: Seq::ZERO, hash: EntryHash::ZERO }
    }

    /// The next entry of this chain, hashed.
    pub fn next_entry(&self, kind: Kind, recorded_at: RecordedAt, body: Body) -> SealedEntry {
        Entry { execution_id: self.execution_id, seq: self.seq.next(), kind, recorded_at, body, prev_hash: self.hash }
            .seal()
    }

    /// Moves the head onto `entry`, which must be [`ChainHead::next_entry`]'s result.
    pub fn advance(&mut self, entry: &SealedEntry) {
        debug_assert_eq!(entry.seq(), self.seq.next());
        debug_assert_eq!(entry.entry().prev_hash, self.hash);
        self.seq = entry.seq();
        self.hash = entry.hash();
    }
}

/// Which rule an entry broke.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ChainProblem {
    /// The stored hash is not the hash of the stored content.
    HashMismatch {
        /// The hash stored with the entry.
        stored: EntryHash,
        /// The hash of its content.
        computed: EntryHash,
    },
    /// `prev_hash` is not the previous entry's hash.
    BrokenLink {
        /// The previous entry's hash (zero before seq 1).
        expected: EntryHash,
        /// The entry's `prev_hash`.
        found: EntryHash,
    },
    /// A seq is missing or repeated.
    SeqGap {
        /// The seq that should come next.
        expected: Seq,
        /// The seq found.
        found: Seq,
    },
    /// The entry names another execution.
    WrongExecution {
        /// The execution it names.
        found: ExecutionId,
    },
    /// The chain ends before its recorded head.
    Truncated {
        /// The head seq recorded for the chain.
        head: Seq,
    },
    /// The recorded head does not name the last entry.
    HeadMismatch {
        /// The head recorded for the chain.
        recorded: (Seq, EntryHash),
    },
    /// Entries exist for an execution that has no recorded head.
    MissingHead,
    /// The stored bytes could not be decoded at all.
    Corrupt {
        /// What the decoder said.
        detail: String,
    },
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HashMismatch { stored, computed } => {
                write!(f, "hash mismatch: stored {stored}, content hashes to {computed}")
            }
            Self::BrokenLink { expected, found } => {
                write!(f, "broken link: prev_hash is {found}, previous entry's hash is {expected}")
            }
            Self::SeqGap { expected, found } => {
                write!(f, "seq gap: expected {expected}, found {found}")
            }
            Self::WrongExecution { found } => write!(f, "entry belongs to execution {found}"),
            Self::Truncated { head } => write!(f, "chain ends before its recorded head seq {head}"),
            Self::HeadMismatch { recorded: (seq, hash) } => {
                write!(f, "recorded head (seq {seq}, hash {hash}) is not the last entry")
            }
            Self::MissingHead => {
                write!(f, "entries exist but no head is recorded for the execution")
            }
            Self::Corrupt { detail } => write!(f, "stored entry is corrupt: {detail}"),
        }
    }
}

/// The first bad entry of a chain.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("execution {execution_id}, seq {seq}: {problem}")]
pub struct ChainError {
    /// The chain.
    pub execution_id: ExecutionId,
    /// The first bad entry's seq (for [`ChainProblem::Truncated`], the first missing seq).
    pub seq: Seq,
    /// What is wrong.
    pub problem: ChainProblem,
}

/// Verifies one chain incrementally: feed entries in stored order, then call
/// [`ChainVerifier::finish`].
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    head: ChainHead,
}

impl ChainVerifier {
    /// A verifier for a chain starting at genesis.
    pub fn new(execution_id: ExecutionId) -> Self {
        Self { head: ChainHead::genesis(execution_id) }
    }

    /// A verifier that continues from a trusted head (e.g. a verified snapshot).
    pub fn from_head(head: ChainHead) -> Self {
        Self { head }
    }

    /// Checks the next entry against every rule.
    pub fn push(&mut self, sealed: &SealedEntry) -> Result<(), ChainError> {
        self.push_with_hash(sealed, sealed.entry().compute_hash())
    }

    /// [`ChainVerifier::push`] with the entry's hash already computed (e.g. on another thread:
    /// hashing is independent per entry, only the links are sequential). `computed` must be
    /// `sealed.entry().compute_hash()`.
    pub fn push_with_hash(&mut self, sealed: &SealedEntry, computed: EntryHash) -> Result<(), ChainError> {
        let e = sealed.entry();
        let expected_seq = self.head.seq.next();
        let fail = |problem| ChainError { execution_id: self.head.execution_id, seq: e.seq, problem };
        if e.execution_id != self.head.execution_id {
            return Err(fail(ChainProblem::WrongExecution { found: e.execution_id }));
        }
        if e.seq != expected_seq {
            return Err(ChainError {
                seq: expected_seq,
                ..fail(ChainProblem::SeqGap { expected: expected_seq, found: e.seq })
            });
        }
        if computed != sealed.hash() {
            return Err(fail(ChainProblem::HashMismatch { stored: sealed.hash(), computed }));
        }
        if e.prev_hash != self.head.hash {
            return Err(fail(ChainProblem::BrokenLink { expected: self.head.hash, found: e.prev_hash }));
        }
        self.head.advance(sealed);
        Ok(())
    }

    /// Reports an entry whose stored bytes could not be decoded.
    pub fn corrupt(&self, seq: Seq, detail: impl Into<String>) -> ChainError {
        ChainError {
            execution_id: self.head.execution_id,
            seq,
            problem: ChainProblem::Corrupt { detail: detail.into() },
        }
    }

    /// The head reached so far.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Ends the walk, checking the chain against the head recorded for it, if any.
    pub fn finish(self, recorded: Option<(Seq, EntryHash)>) -> Result<ChainHead, ChainError> {
        if let Some((seq, hash)) = recorded {
            if seq > self.head.seq {
                return Err(ChainError {
                    execution_id: self.head.execution_id,
                    seq: self.head.seq.next(),
                    problem: ChainProblem::Truncated { head: seq },
                });
            }
            if seq != self.head.seq || hash != self.head.hash {
                return Err(ChainError {
                    execution_id: self.head.execution_id,
                    seq: self.head.seq,
                    problem: ChainProblem::HeadMismatch { recorded: (seq, hash) },
                });
            }
        }
        Ok(self.head)
    }
}

/// Verifies a whole chain held in memory.
pub fn verify_chain<'a>(
    execution_id: ExecutionId,
    entries: impl IntoIterator<Item = &'a SealedEntry>,
) -> Result<ChainHead, ChainError> {
    let mut v = ChainVerifier::new(execution_id);
    for e in entries {
        v.push(e)?;
    }
    v.finish(None)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const ID: ExecutionId = ExecutionId::from_u128(42);

    fn chain(n: u64) -> Vec<SealedEntry> {
        let mut head = ChainHead::genesis(ID);
        (0..n)
            .map(|i| {
                let body = Body::from_value(&json!({ "i": i, "text": "héllo \"quoted\"" })).unwrap();
                let at = RecordedAt::from_unix_micros(1_795_312_110_000_000 + i as i64).unwrap();
                let e = head.next_entry(Kind::new("demo").unwrap(), at, body);
                head.advance(&e);
                e
            })
            .collect()
    }

    fn with_entry(e: &SealedEntry, f: impl FnOnce(&mut Entry)) -> SealedEntry {
        let mut inner = e.entry().clone();
        f(&mut inner);
        SealedEntry::from_stored(inner, e.hash())
    }

    #[test]
    fn a_built_chain_verifies() {
        let c = chain(10);
        let head = verify_chain(ID, &c).unwrap();
        assert_eq!((head.seq, head.hash), (Seq::new(10), c[9].hash()));
        assert_eq!(verify_chain(ID, &[]).unwrap(), ChainHead::genesis(ID));
    }

    #[test]
    fn names_the_first_bad_entry_and_why() {
        let c = chain(5);

        let mut tampered = c.clone();
        tampered[2] = with_entry(&c[2], |e| e.body = Body::from_json_str(r#"{"i":99}"#).unwrap());
        let err = verify_chain(ID, &tampered).unwrap_err();
        assert_eq!(err.seq, Seq::new(3));
        assert!(matches!(err.problem, ChainProblem::HashMismatch { .. }));

        // Re-hashing the tampered entry moves the failure to the link of the next one.
        tampered[2] = tampered[2].entry().clone().seal();
        let err = verify_chain(ID, &tampered).unwrap_err();
        assert_eq!(err.seq, Seq::new(4));
        assert!(matches!(err.problem, ChainProblem::BrokenLink { .. }));

        let mut gap = c.clone();
        gap.remove(1);
        let err = verify_chain(ID, &gap).unwrap_err();
        assert_eq!(
            err,
            ChainError {
                execution_id: ID,
                seq: Seq::new(2),
                problem: ChainProblem::SeqGap { expected: Seq::new(2), found: Seq::new(3) }
            }
        );

        let other = with_entry(&c[0], |e| e.execution_id = ExecutionId::from_u128(7));
        let err = verify_chain(ID, [&other]).unwrap_err();
        assert!(matches!(err.problem, ChainProblem::WrongExecution { .. }));
    }

    #[test]
    fn finish_checks_the_recorded_head() {
        let c = chain(3);
        let v = |n: usize| {
            let mut v = ChainVerifier::new(ID);
            c[..n].iter().for_each(|e| v.push(e).unwrap());
            v
        };
        assert!(v(3).finish(Some((Seq::new(3), c[2].hash()))).is_ok());
        let err = v(2).finish(Some((Seq::new(3), c[2].hash()))).unwrap_err();
        assert_eq!((err.seq, err.problem), (Seq::new(3), ChainProblem::Truncated { head: Seq::new(3) }));
        let err = v(3).finish(Some((Seq::new(3), c[1].hash()))).unwrap_err();
        assert!(matches!(err.problem, ChainProblem::HeadMismatch { .. }));
    }

    proptest! {
        /// Changing any byte of any entry's content or hash makes verification fail at
        /// exactly that entry.
        #[test]
        fn any_changed_byte_is_found_at_its_entry(
            n in 1u64..20, pick in any::<prop::sample::Index>(), byte in any::<prop::sample::Index>(),
            field in 0..4usize, flip in 1u8..=255,
        ) {
            let c = chain(n);
            let i = pick.index(c.len());
            let mut bad = c.clone();
            bad[i] = match field {
                0 => {
                    let mut h = *c[i].hash().as_bytes();
                    h[byte.index(32)] ^= flip;
                    SealedEntry::from_stored(c[i].entry().clone(), EntryHash::from_bytes(h))
                }
                1 => with_entry(&c[i], |e| {
                    let mut h = *e.prev_hash.as_bytes();
                    h[byte.index(32)] ^= flip;
                    e.prev_hash = EntryHash::from_bytes(h);
                }),
                2 => with_entry(&c[i], |e| {
                    let mut b = e.body.as_str().as_bytes().to_vec();
                    let at = byte.index(b.len());
                    b[at] ^= flip;
                    e.body = Body::from_stored(String::from_utf8_lossy(&b).into_owned());
                }),
                _ => with_entry(&c[i], |e| {
                    e.recorded_at = RecordedAt::from_unix_micros(e.recorded_at.unix_micros() + i64::from(flip)).unwrap();
                }),
            };
            let err = verify_chain(ID, &bad).unwrap_err();
            prop_assert_eq!(err.seq, Seq::new(i as u64 + 1));
        }
    }
}
