//! Merkle trees an EVM (and OpenZeppelin's tools) can check.
//!
//! - A **leaf** is OpenZeppelin's `StandardMerkleTree` leaf over the values
//!   `(bytes16 executionId, uint64 seq, bytes32 entryHash)`:
//!   `keccak256(keccak256(abi.encode(executionId, seq, entryHash)))`. The double hash keeps a
//!   64-byte inner node from ever passing for a leaf.
//! - An **inner node** is `keccak256(min(a, b) || max(a, b))` (OpenZeppelin's
//!   `Hashes.commutativeKeccak256`); a node without a sibling moves up unchanged. A one-leaf
//!   tree's root is its leaf.
//! - A **proof** is the list of sibling hashes from the leaf up; verifying folds them with the
//!   inner-node rule, exactly as `MerkleProof.verify` (Solidity) and
//!   `StandardMerkleTree.verify` (JS) do, so their results agree with [`verify_proof`].
//!
//! Trees are built with `rs_merkle` and the [`SortedKeccak`] hasher.

use alloy_primitives::keccak256;

use crate::ids::{EntryHash, ExecutionId, Seq};

/// A 32-byte keccak node of a tree (leaf, inner node or root).
pub type Node = [u8; 32];

/// `rs_merkle` hasher: keccak256, with sorted-pair inner nodes and lone nodes moved up.
#[derive(Clone, Copy, Debug)]
pub struct SortedKeccak;

impl rs_merkle::Hasher for SortedKeccak {
    type Hash = Node;

    fn hash(data: &[u8]) -> Node {
        keccak256(data).0
    }

    fn concat_and_hash(left: &Node, right: Option<&Node>) -> Node {
        match right {
            Some(right) => hash_pair(left, right),
            None => *left,
        }
    }
}

/// OpenZeppelin's `commutativeKeccak256`.
pub fn hash_pair(a: &Node, b: &Node) -> Node {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo);
    buf[32..].copy_from_slice(hi);
    keccak256(buf).0
}

/// `abi.encode(bytes16 executionId, uint64 seq, bytes32 entryHash)`: three 32-byte words;
/// `bytes16` is left-aligned (zero-padded on the right), `uint64` right-aligned.
pub fn leaf_encoding(execution: &ExecutionId, seq: Seq, entry_hash: &EntryHash) -> [u8; 96] {
    let mut out = [0u8; 96];
    out[..16].copy_from_slice(execution.as_bytes());
    out[56..64].copy_from_slice(&seq.get().to_be_bytes());
    out[64..].copy_from_slice(entry_hash.as_bytes());
    out
}

/// The leaf of one ledger entry.
pub fn leaf_hash(execution: &ExecutionId, seq: Seq, entry_hash: &EntryHash) -> Node {
    let inner = keccak256(leaf_encoding(execution, seq, entry_hash));
    keccak256(inner).0
}

/// The root a proof leads to from `leaf`.
pub fn process_proof(leaf: &Node, proof: &[Node]) -> Node {
    proof.iter().fold(*leaf, |acc, sibling| hash_pair(&acc, sibling))
}

/// Whether `proof` leads from `leaf` to `root`.
pub fn verify_proof(root: &Node, leaf: &Node, proof: &[Node]) -> bool {
    &process_proof(leaf, proof) == root
}

/// A built tree over leaves in a fixed order.
pub struct MerkleTree {
    inner: rs_merkle::MerkleTree<SortedKeccak>,
    len: usize,
}

impl MerkleTree {
    /// Builds the tree (leaves in the given order).
    pub fn from_leaves(leaves: &[Node]) -> Self {
        Self { inner: rs_merkle::MerkleTree::from_leaves(leaves), len: leaves.len() }
    }

    /// The root; `None` for an empty tree.
    pub fn root(&self) -> Option<Node> {
        self.inner.root()
    }

    /// How many leaves.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree has no leaf.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sibling path of leaf `index`, bottom up; `None` if out of range.
    pub fn proof(&self, index: usize) -> Option<Vec<Node>> {
        (index < self.len).then(|| self.inner.proof(&[index]).proof_hashes().to_vec())
    }
}

/// `0x`-prefixed lower-case hex, as EVM tools write 32-byte values.
pub fn to_0x(node: &[u8]) -> String {
    format!("0x{}", hex::encode(node))
}

/// Parses `0x`-prefixed hex of exactly `N` bytes.
pub fn from_0x<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.strip_prefix("0x")?;
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{FixedBytes, U256};
    use alloy_sol_types::SolValue;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn leaf_encoding_is_abi_encode() {
        let id = ExecutionId::from_u128(0x0192_f8c1_6c2e_7b35_9a0b_1c2d_3e4f_5a6b);
        let h = EntryHash::from_bytes([0xab; 32]);
        let alloy =
            (FixedBytes::<16>(*id.as_bytes()), U256::from(7u64), FixedBytes::<32>(*h.as_bytes())).abi_encode_params();
        assert_eq!(leaf_encoding(&id, Seq::new(7), &h).to_vec(), alloy);
    }

    #[test]
    fn one_leaf_tree_has_the_leaf_as_root_and_an_empty_proof() {
        let leaf = leaf_hash(&ExecutionId::from_u128(1), Seq::FIRST, &EntryHash::ZERO);
        let t = MerkleTree::from_leaves(&[leaf]);
        assert_eq!(t.root(), Some(leaf));
        assert_eq!(t.proof(0), Some(vec![]));
        assert!(t.proof(1).is_none());
    }

    proptest! {
        /// Every proof of every tree leads to its root; a changed leaf or sibling does not.
        #[test]
        fn proofs_verify_and_tampering_fails(n in 1usize..80, pick in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let leaves: Vec<Node> = (0..n as u64).map(|i| leaf_hash(&ExecutionId::from_u128(u128::from(i % 3)), Seq::new(i + 1), &EntryHash::from_bytes([i as u8; 32]))).collect();
            let t = MerkleTree::from_leaves(&leaves);
            let root = t.root().unwrap();
            for (i, leaf) in leaves.iter().enumerate() {
                prop_assert!(verify_proof(&root, leaf, &t.proof(i).unwrap()));
            }
            let i = pick.index(n);
            let mut bad_leaf = leaves[i];
            bad_leaf[0] ^= flip;
            prop_assert!(!verify_proof(&root, &bad_leaf, &t.proof(i).unwrap()));
            let mut proof = t.proof(i).unwrap();
            if let Some(s) = proof.first_mut() {
                s[31] ^= flip;
                prop_assert!(!verify_proof(&root, &leaves[i], &proof));
            }
        }
    }
}
