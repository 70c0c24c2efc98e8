//! The inclusion-proof document PLED serves (`GET /v1/executions/{id}/ledger/{seq}/proof`)
//! and its offline verification: entry → entry hash → leaf → root. Everything an auditor
//! needs is in the document; `StandardMerkleTree.verify(root, leaf.encoding, leaf.values,
//! proof)` from `@openzeppelin/merkle-tree` and `MerkleProof.verify(proof, root, leaf.hash)` in
//! Solidity accept it unchanged.

use serde::{Deserialize, Serialize};

use crate::entry::SealedEntry;
use crate::ids::{EntryHash, Seq};
use crate::merkle::{from_0x, hash_pair, leaf_hash, to_0x};

/// The ABI types of a leaf's values, in order.
pub const LEAF_ENCODING: [&str; 3] = ["bytes16", "uint64", "bytes32"];

/// A leaf: its values (as OpenZeppelin's JS library takes them) and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    /// Always [`LEAF_ENCODING`].
    pub encoding: Vec<String>,
    /// `0x` + 32 hex digits (execution id), decimal seq, `0x` + 64 hex digits (entry hash).
    pub values: Vec<String>,
    /// `keccak256(keccak256(abi.encode(values)))`, `0x` hex.
    pub hash: String,
}

impl Leaf {
    /// The leaf of an entry.
    pub fn of(entry: &SealedEntry) -> Self {
        let e = entry.entry();
        Self {
            encoding: LEAF_ENCODING.iter().map(|s| (*s).to_owned()).collect(),
            values: vec![to_0x(e.execution_id.as_bytes()), e.seq.get().to_string(), to_0x(entry.hash().as_bytes())],
            hash: to_0x(&leaf_hash(&e.execution_id, e.seq, &entry.hash())),
        }
    }
}

/// What a proof is against: a commit round (entries of all executions) or a per-execution
/// commitment (one execution's seq range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Scope {
    /// A commit round.
    #[serde(rename_all = "camelCase")]
    Round {
        /// Round id.
        round: u64,
        /// The leaf's index in the round's tree.
        leaf_index: u64,
        /// Leaves in the round.
        leaf_count: u64,
    },
    /// A per-execution commitment.
    #[serde(rename_all = "camelCase")]
    Commitment {
        /// Commitment id (per execution).
        commitment_id: u64,
        /// First seq covered.
        range_start: u64,
        /// Last seq covered.
        range_end: u64,
        /// The leaf's index (seq - range_start).
        leaf_index: u64,
    },
}

/// An inclusion proof, self-contained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProofDocument {
    /// `pled-proof-v1`.
    pub format: String,
    /// The entry in export form (docs/ledger-format.md).
    pub entry: serde_json::Value,
    /// Its BLAKE3 hash (hex).
    pub entry_hash: String,
    /// The Merkle leaf.
    pub leaf: Leaf,
    /// Sibling hashes from the leaf up (`0x` hex).
    pub proof: Vec<String>,
    /// The root (`0x` hex).
    pub root: String,
    /// Round or commitment.
    pub scope: Scope,
    /// Where the root is anchored (status and chain fields).
    pub anchor: serde_json::Value,
}

/// Whether `s` is exactly `to_0x(bytes)` (`0x` and lower-case hex).
fn is_0x(s: &str, bytes: &[u8]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    s.len() == 2 + 2 * bytes.len()
        && s.starts_with("0x")
        && s.as_bytes()[2..]
            .chunks_exact(2)
            .zip(bytes)
            .all(|(pair, b)| pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 15)])
}

/// Whether `s` is exactly the decimal text of `n` (no sign, no leading zero).
fn is_decimal(s: &str, n: u64) -> bool {
    s.bytes().all(|c| c.is_ascii_digit()) && !(s.len() > 1 && s.starts_with('0')) && s.parse() == Ok(n)
}

/// Which step of a verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The document is not a v1 proof.
    #[error("not a pled-proof-v1 document")]
    Format,
    /// The entry does not parse.
    #[error("entry: {0}")]
    Entry(String),
    /// The entry's content does not hash to its hash.
    #[error("entry hash mismatch: the entry hashes to {computed}, the document says {claimed}")]
    EntryHash {
        /// Hash of the content.
        computed: String,
        /// Hash in the document.
        claimed: String,
    },
    /// The leaf values are not the entry's id, seq and hash.
    #[error("leaf values do not match the entry: expected {expected:?}")]
    LeafValues {
        /// What they should be.
        expected: Vec<String>,
    },
    /// The leaf hash is not the hash of its values.
    #[error("leaf hash mismatch: values hash to {computed}")]
    LeafHash {
        /// Hash of the values.
        computed: String,
    },
    /// A proof or root element is not 32 bytes of `0x` hex.
    #[error("malformed hash {0:?}")]
    Malformed(String),
    /// The path does not lead to the root.
    #[error("the proof leads to {computed}, not to the root {root}")]
    Root {
        /// Where it leads.
        computed: String,
        /// The claimed root.
        root: String,
    },
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The entry.
    pub entry: SealedEntry,
    /// The root it is included under.
    pub root: [u8; 32],
}

impl ProofDocument {
    /// Builds a document.
    pub fn new(
        entry: &SealedEntry,
        proof: &[[u8; 32]],
        root: &[u8; 32],
        scope: Scope,
        anchor: serde_json::Value,
    ) -> Self {
        Self {
            format: "pled-proof-v1".into(),
            entry: serde_json::to_value(entry).unwrap_or_default(),
            entry_hash: entry.hash().to_hex(),
            leaf: Leaf::of(entry),
            proof: proof.iter().map(|p| to_0x(p)).collect(),
            root: to_0x(root),
            scope,
            anchor,
        }
    }

    /// Checks entry → hash → leaf → root, naming the first step that fails.
    pub fn verify(&self) -> Result<Verified, ProofError> {
        if self.format != "pled-proof-v1" {
            return Err(ProofError::Format);
        }
        let entry = SealedEntry::from_export_value(&self.entry).map_err(|e| ProofError::Entry(e.to_string()))?;
        let computed = entry.entry().compute_hash();
        let claimed: EntryHash = self.entry_hash.parse().map_err(|_| ProofError::Malformed(self.entry_hash.clone()))?;
        if computed != entry.hash() || computed != claimed {
            return Err(ProofError::EntryHash { computed: computed.to_hex(), claimed: self.entry_hash.clone() });
        }
        // Compared in place (the leaf is checked on every proof served and every entry of an
        // evidence bundle); the expected strings are built only to report a mismatch.
        let e = entry.entry();
        let values_match = self.leaf.values.len() == 3
            && is_0x(&self.leaf.values[0], e.execution_id.as_bytes())
            && is_decimal(&self.leaf.values[1], e.seq.get())
            && is_0x(&self.leaf.values[2], computed.as_bytes());
        if !values_match || !self.leaf.encoding.iter().map(String::as_str).eq(LEAF_ENCODING) {
            return Err(ProofError::LeafValues { expected: Leaf::of(&entry).values });
        }
        let leaf = leaf_hash(&e.execution_id, e.seq, &computed);
        if !is_0x(&self.leaf.hash, &leaf) {
            return Err(ProofError::LeafHash { computed: to_0x(&leaf) });
        }
        let mut reached = leaf;
        for p in &self.proof {
            let sibling = from_0x::<32>(p).ok_or_else(|| ProofError::Malformed(p.clone()))?;
            reached = hash_pair(&reached, &sibling);
        }
        let root = from_0x::<32>(&self.root).ok_or_else(|| ProofError::Malformed(self.root.clone()))?;
        if reached != root {
            return Err(ProofError::Root { computed: to_0x(&reached), root: self.root.clone() });
        }
        Ok(Verified { entry, root })
    }

    /// The entry's seq (from the leaf values), for messages.
    pub fn seq(&self) -> Option<Seq> {
        self.leaf.values.get(1).and_then(|s| s.parse().ok()).map(Seq::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MerkleTree;
    use crate::{Body, ChainHead, ExecutionId, Kind, RecordedAt};

    fn doc() -> ProofDocument {
        let mut head = ChainHead::genesis(ExecutionId::from_u128(9));
        let entries: Vec<_> = (0..5)
            .map(|i| {
                let e =
                    head.next_entry(Kind::new("k").unwrap(), RecordedAt::from_unix_micros(i).unwrap(), Body::empty());
                head.advance(&e);
                e
            })
            .collect();
        let leaves: Vec<_> = entries.iter().map(|e| leaf_hash(&e.entry().execution_id, e.seq(), &e.hash())).collect();
        let tree = MerkleTree::from_leaves(&leaves);
        let scope = Scope::Round { round: 1, leaf_index: 3, leaf_count: 5 };
        ProofDocument::new(
            &entries[3],
            &tree.proof(3).unwrap(),
            &tree.root().unwrap(),
            scope,
            serde_json::json!({ "status": "unanchored" }),
        )
    }

    #[test]
    fn a_served_proof_verifies_and_every_tampering_names_its_step() {
        let d = doc();
        assert!(d.verify().is_ok());
        let mut x = d.clone();
        x.entry["body"] = serde_json::json!({ "changed": true });
        assert!(matches!(x.verify(), Err(ProofError::EntryHash { .. })));
        let mut x = d.clone();
        x.leaf.values[1] = "9".into();
        assert!(matches!(x.verify(), Err(ProofError::LeafValues { .. })));
        let mut x = d.clone();
        x.leaf.hash = to_0x(&[1; 32]);
        assert!(matches!(x.verify(), Err(ProofError::LeafHash { .. })));
        let mut x = d.clone();
        x.proof[0] = to_0x(&[2; 32]);
        assert!(matches!(x.verify(), Err(ProofError::Root { .. })));
        let mut x = d.clone();
        x.root = to_0x(&[3; 32]);
        assert!(matches!(x.verify(), Err(ProofError::Root { .. })));
        let mut x = d.clone();
        x.proof.push("0xnothex".into());
        assert!(matches!(x.verify(), Err(ProofError::Malformed(_))));
        // The values must be written exactly as served.
        for (i, other) in [(2, d.leaf.values[2].to_uppercase().replace("0X", "0x")), (1, "04".into()), (1, "+4".into())]
        {
            let mut x = d.clone();
            x.leaf.values[i] = other;
            assert!(matches!(x.verify(), Err(ProofError::LeafValues { .. })), "{:?}", x.leaf.values);
        }
        let mut x = d;
        x.leaf.encoding[1] = "uint256".into();
        assert!(matches!(x.verify(), Err(ProofError::LeafValues { .. })));
    }

    #[test]
    fn exact_text_checks() {
        assert!(is_0x("0x00ff", &[0, 255]));
        assert!(!is_0x("0x00FF", &[0, 255]));
        assert!(!is_0x("0x00f", &[0, 255]));
        assert!(!is_0x("1x00ff", &[0, 255]));
        assert!(is_decimal("4", 4) && is_decimal("1234", 1234));
        assert!(!is_decimal("04", 4) && !is_decimal("+4", 4) && !is_decimal("", 0) && !is_decimal("5", 4));
    }
}
