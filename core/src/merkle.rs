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
//! Trees are built layer by layer, hashing four leaves or pairs at a time
//! ([`crate::keccak`]), in parallel subtrees when large (see [`MerkleTree::from_leaves`]);
//! the tests check them against `rs_merkle`'s trees with the same hashing rules.

use alloy_primitives::keccak256;

use crate::ids::{EntryHash, ExecutionId, Seq};
use crate::keccak::keccak256_each;

/// A 32-byte keccak node of a tree (leaf, inner node or root).
pub type Node = [u8; 32];

/// OpenZeppelin's `commutativeKeccak256`.
pub fn hash_pair(a: &Node, b: &Node) -> Node {
    keccak256(sorted_pair(a, b)).0
}

/// What [`hash_pair`] hashes: the smaller node, then the larger.
fn sorted_pair(a: &Node, b: &Node) -> [u8; 64] {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo);
    buf[32..].copy_from_slice(hi);
    buf
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

/// Leaves per subtree when a tree is built on several threads. A power of two, so that the
/// subtrees over `[k·SUBTREE_LEAVES, (k+1)·SUBTREE_LEAVES)` are exactly the bottom of the whole
/// tree: pairs never cross their boundaries.
const SUBTREE_LEAVES: usize = 1 << 16;

/// A built tree over leaves in a fixed order: every layer, the leaves first and the root last
/// (32 bytes per node, about 64 bytes per leaf).
pub struct MerkleTree {
    layers: Vec<Vec<Node>>,
}

impl MerkleTree {
    /// Builds the tree (leaves in the given order), on all cores when it is large.
    pub fn from_leaves(leaves: &[Node]) -> Self {
        Self::build(leaves, SUBTREE_LEAVES)
    }

    /// Builds subtrees of `subtree` leaves (a power of two) in parallel, then the tree over
    /// their roots. Layer `j` of the whole tree is the concatenation of the subtrees' layers
    /// `j`; a short last subtree's root stands alone in the layers above its own top.
    fn build(leaves: &[Node], subtree: usize) -> Self {
        if leaves.len() <= subtree {
            return Self { layers: layers_of(leaves) };
        }
        let parts = par_map(leaves.chunks(subtree).collect::<Vec<_>>().as_slice(), 1, |chunks| {
            chunks.iter().map(|c| layers_of(c)).collect()
        });
        let height = subtree.trailing_zeros() as usize + 1;
        let mut layers: Vec<Vec<Node>> = (0..height)
            .map(|j| {
                let mut layer = Vec::with_capacity(leaves.len().div_ceil(1 << j));
                for part in &parts {
                    // INVARIANT: a part has at least one layer and its last is its root.
                    layer.extend_from_slice(part.get(j).or(part.last()).map_or(&[][..], Vec::as_slice));
                }
                layer
            })
            .collect();
        let top = layers.last().map(|roots| layers_of(roots)).unwrap_or_default();
        layers.extend(top.into_iter().skip(1));
        Self { layers }
    }

    /// The root; `None` for an empty tree.
    pub fn root(&self) -> Option<Node> {
        self.layers.last()?.first().copied()
    }

    /// How many leaves.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, Vec::len)
    }

    /// Whether the tree has no leaf.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sibling path of leaf `index`, bottom up (a node without a sibling adds nothing);
    /// `None` if out of range.
    pub fn proof(&self, index: usize) -> Option<Vec<Node>> {
        if index >= self.len() {
            return None;
        }
        let mut path = Vec::with_capacity(self.layers.len());
        let mut i = index;
        for layer in &self.layers[..self.layers.len() - 1] {
            path.extend(layer.get(i ^ 1));
            i /= 2;
        }
        Some(path)
    }
}

/// All layers of the tree over `leaves`: each layer hashes the pairs of the one below
/// ([`hash_pair`]), and a last node without a sibling moves up unchanged.
fn layers_of(leaves: &[Node]) -> Vec<Vec<Node>> {
    if leaves.is_empty() {
        return Vec::new();
    }
    let mut layers = vec![leaves.to_vec()];
    while let Some(below) = layers.last().filter(|l| l.len() > 1) {
        let pairs: Vec<[u8; 64]> = below.chunks_exact(2).map(|p| sorted_pair(&p[0], &p[1])).collect();
        let mut layer = Vec::with_capacity(below.len().div_ceil(2));
        keccak256_each(&pairs, &mut layer);
        if below.len() % 2 == 1 {
            layer.extend(below.last().copied());
        }
        layers.push(layer);
    }
    layers
}

/// Consecutive entries of one execution: its id, the first entry's seq, the entries' hashes.
pub type Run<'a> = (ExecutionId, Seq, &'a [EntryHash]);

/// The leaves of the entries of `runs`, in order, on all cores when there are many (a long
/// run is shared between cores too).
pub fn hash_leaves(runs: &[Run<'_>]) -> Vec<Node> {
    const PIECE: usize = 4096;
    let leaves = |part: &[Run<'_>]| -> Vec<Node> {
        let encodings: Vec<[u8; 96]> = part
            .iter()
            .flat_map(|&(e, first, hashes)| {
                hashes.iter().enumerate().map(move |(i, h)| leaf_encoding(&e, Seq::new(first.get() + i as u64), h))
            })
            .collect();
        // The leaf's two hashes, each four leaves at a time.
        let mut inner = Vec::with_capacity(encodings.len());
        keccak256_each(&encodings, &mut inner);
        let mut out = Vec::with_capacity(encodings.len());
        keccak256_each(&inner, &mut out);
        out
    };
    if runs.iter().map(|r| r.2.len()).sum::<usize>() < 2 * PIECE {
        return leaves(runs);
    }
    let pieces: Vec<Run<'_>> = runs
        .iter()
        .flat_map(|&(e, first, hashes)| {
            hashes.chunks(PIECE).enumerate().map(move |(i, c)| (e, Seq::new(first.get() + (i * PIECE) as u64), c))
        })
        .collect();
    par_map(&pieces, 1, leaves)
}

/// `f` over consecutive parts of `items`, one part per core (unless there are fewer than
/// `min_per_thread` items per core), results concatenated in order.
fn par_map<T: Sync, R: Send>(items: &[T], min_per_thread: usize, f: impl Fn(&[T]) -> Vec<R> + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if threads == 1 || items.len() < threads * min_per_thread {
        return f(items);
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let parts: Vec<_> = items.chunks(per).map(|part| s.spawn(move || f(part))).collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
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

    /// `rs_merkle` hasher with our rules: keccak256, sorted-pair inner nodes, lone nodes
    /// moved up. The reference the trees are checked against.
    #[derive(Clone, Copy, Debug)]
    struct SortedKeccak;

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

    #[test]
    fn leaf_encoding_is_abi_encode() {
        let id = ExecutionId::from_u128(0x0192_f8c1_6c2e_7b35_9a0b_1c2d_3e4f_5a6b);
        let h = EntryHash::from_bytes([0xab; 32]);
        let alloy =
            (FixedBytes::<16>(*id.as_bytes()), U256::from(7u64), FixedBytes::<32>(*h.as_bytes())).abi_encode_params();
        assert_eq!(leaf_encoding(&id, Seq::new(7), &h).to_vec(), alloy);
    }

    #[test]
    fn run_leaves_are_each_entrys_leaf_in_order_whether_split_or_not() {
        let hashes: Vec<EntryHash> = (0..10_000u32).map(|i| EntryHash::from_bytes([(i % 251) as u8; 32])).collect();
        let (a, b) = (ExecutionId::from_u128(1), ExecutionId::from_u128(2));
        let runs = [(a, Seq::new(5), &hashes[..3]), (b, Seq::new(1), &hashes[..]), (a, Seq::new(8), &hashes[..2])];
        let expected: Vec<Node> = runs
            .iter()
            .flat_map(|&(e, first, hs)| {
                hs.iter().enumerate().map(move |(i, h)| leaf_hash(&e, Seq::new(first.get() + i as u64), h))
            })
            .collect();
        assert_eq!(hash_leaves(&runs), expected);
        assert_eq!(hash_leaves(&runs[..1]), expected[..3]);
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
        /// Trees built from parallel subtrees equal `rs_merkle`'s own tree over the same
        /// leaves: same root, same proof for every leaf, whatever the subtree size.
        #[test]
        fn subtree_builds_equal_rs_merkle(n in 1usize..300, log_subtree in 1u32..6) {
            let leaves: Vec<Node> = (0..n as u64).map(|i| leaf_hash(&ExecutionId::from_u128(7), Seq::new(i + 1), &EntryHash::ZERO)).collect();
            let reference = rs_merkle::MerkleTree::<SortedKeccak>::from_leaves(&leaves);
            let t = MerkleTree::build(&leaves, 1 << log_subtree);
            prop_assert_eq!(t.len(), n);
            prop_assert_eq!(t.root(), reference.root());
            for i in 0..n {
                prop_assert_eq!(t.proof(i).unwrap(), reference.proof(&[i]).proof_hashes().to_vec());
            }
        }

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
