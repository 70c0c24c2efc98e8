// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title PLED registry: on-chain anchors for PLED ledger Merkle roots
/// @notice PLED appends every execution's entries to a per-execution, hash-chained ledger.
/// A committer periodically builds a keccak256 Merkle tree over the entries appended since
/// its previous round (across all executions) and anchors the root here with one
/// transaction (`commitRound`). A single execution's seq range can also be anchored on
/// demand (`commitLedgerRoot`). Anyone can then check an inclusion proof served by PLED
/// against the anchored root with `verifyInclusion` / `verifyRangeInclusion`, or off-chain
/// with OpenZeppelin's `StandardMerkleTree.verify`.
/// @dev Leaf encoding (fixed; PLED serves proofs for exactly this): the OpenZeppelin
/// `StandardMerkleTree` leaf over the values `(bytes16 executionId, uint64 seq,
/// bytes32 entryHash)` with leaf encoding `["bytes16", "uint64", "bytes32"]`, i.e.
/// `keccak256(bytes.concat(keccak256(abi.encode(executionId, seq, entryHash))))`.
/// Inner nodes hash the sorted pair (`Hashes.commutativeKeccak256`, the `MerkleProof`
/// default). A tree with one leaf has that leaf as its root and an empty proof.
/// The double hash keeps a 64-byte inner node from ever being accepted as a leaf.
contract PLEDRegistry is AccessControl {
    /// @notice Role allowed to anchor roots (`commitRound`, `commitLedgerRoot`).
    /// @return The role identifier, `keccak256("COMMITTER_ROLE")`.
    bytes32 public constant COMMITTER_ROLE = keccak256("COMMITTER_ROLE");

    /// @dev One anchored commit round. Packed in two storage slots.
    struct Round {
        bytes32 root;
        uint64 leafCount;
        uint64 blockNumber;
        uint64 timestamp;
    }

    mapping(uint64 roundId => Round) private _rounds;
    mapping(bytes16 executionId => mapping(uint64 rangeStart => mapping(uint64 rangeEnd => bytes32 root)))
        private _rangeRoots;

    /// @notice A commit round's Merkle root was anchored.
    /// @param roundId The committer's round number.
    /// @param root The Merkle root over the round's leaves.
    /// @param leafCount How many leaves (ledger entries) the tree has.
    event RoundCommitted(uint64 indexed roundId, bytes32 root, uint64 leafCount);

    /// @notice The Merkle root over one execution's seq range was anchored.
    /// @param executionId The execution (a UUID as 16 bytes).
    /// @param rangeStart First seq covered (inclusive, >= 1).
    /// @param rangeEnd Last seq covered (inclusive).
    /// @param merkleRoot The Merkle root over the range's leaves.
    event LedgerRootCommitted(bytes16 indexed executionId, uint64 rangeStart, uint64 rangeEnd, bytes32 merkleRoot);

    /// @notice The root is zero (no tree has a zero root).
    error ZeroRoot();
    /// @notice A round must cover at least one leaf.
    error ZeroLeafCount();
    /// @notice The round is already anchored with a different root or leaf count.
    /// @param roundId The round.
    /// @param storedRoot The root anchored before.
    /// @param storedLeafCount The leaf count anchored before.
    /// @param root The root of this call.
    /// @param leafCount The leaf count of this call.
    error RootConflict(uint64 roundId, bytes32 storedRoot, uint64 storedLeafCount, bytes32 root, uint64 leafCount);
    /// @notice The execution's range is already anchored with a different root.
    /// @param executionId The execution.
    /// @param rangeStart First seq of the range.
    /// @param rangeEnd Last seq of the range.
    /// @param storedRoot The root anchored before.
    /// @param merkleRoot The root of this call.
    error RangeRootConflict(
        bytes16 executionId, uint64 rangeStart, uint64 rangeEnd, bytes32 storedRoot, bytes32 merkleRoot
    );
    /// @notice A seq range must satisfy `1 <= rangeStart <= rangeEnd`.
    /// @param rangeStart First seq of the range.
    /// @param rangeEnd Last seq of the range.
    error InvalidRange(uint64 rangeStart, uint64 rangeEnd);

    /// @notice Deploys the registry; the deployer gets `DEFAULT_ADMIN_ROLE` and `COMMITTER_ROLE`.
    constructor() {
        _grantRole(DEFAULT_ADMIN_ROLE, msg.sender);
        _grantRole(COMMITTER_ROLE, msg.sender);
    }

    /// @notice The OpenZeppelin `StandardMerkleTree` leaf for one ledger entry.
    /// @param executionId The execution (a UUID as 16 bytes).
    /// @param seq The entry's sequence number in its execution (1, 2, 3, ...).
    /// @param entryHash The entry's hash (BLAKE3 over its canonical JSON, see docs/ledger-format.md).
    /// @return The leaf, `keccak256(bytes.concat(keccak256(abi.encode(executionId, seq, entryHash))))`.
    function leafHash(bytes16 executionId, uint64 seq, bytes32 entryHash) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(executionId, seq, entryHash))));
    }

    /// @notice Anchors the Merkle root of one commit round (entries of many executions).
    /// @dev Idempotent: the same round with the same root and leaf count again is a no-op
    /// without an event, so a resend after a crash is harmless. A different root or leaf
    /// count for an anchored round reverts with `RootConflict`.
    /// @param roundId The committer's round number.
    /// @param root The Merkle root over the round's leaves; not zero.
    /// @param leafCount How many leaves the tree has; not zero.
    function commitRound(uint64 roundId, bytes32 root, uint64 leafCount) external onlyRole(COMMITTER_ROLE) {
        if (root == bytes32(0)) revert ZeroRoot();
        if (leafCount == 0) revert ZeroLeafCount();
        Round storage round = _rounds[roundId];
        bytes32 storedRoot = round.root;
        if (storedRoot != bytes32(0)) {
            uint64 storedLeafCount = round.leafCount;
            if (storedRoot != root || storedLeafCount != leafCount) {
                revert RootConflict(roundId, storedRoot, storedLeafCount, root, leafCount);
            }
            return;
        }
        round.root = root;
        round.leafCount = leafCount;
        round.blockNumber = uint64(block.number);
        round.timestamp = uint64(block.timestamp);
        emit RoundCommitted(roundId, root, leafCount);
    }

    /// @notice Anchors the Merkle root over one execution's entries `rangeStart..=rangeEnd`.
    /// @dev Idempotent: the same (executionId, rangeStart, rangeEnd) with the same root again
    /// is a no-op without an event; a different root reverts with `RangeRootConflict`.
    /// @param executionId The execution (a UUID as 16 bytes).
    /// @param rangeStart First seq covered (inclusive, >= 1).
    /// @param rangeEnd Last seq covered (inclusive, >= rangeStart).
    /// @param merkleRoot The Merkle root over the range's leaves; not zero.
    function commitLedgerRoot(bytes16 executionId, uint64 rangeStart, uint64 rangeEnd, bytes32 merkleRoot)
        external
        onlyRole(COMMITTER_ROLE)
    {
        if (rangeStart == 0 || rangeStart > rangeEnd) revert InvalidRange(rangeStart, rangeEnd);
        if (merkleRoot == bytes32(0)) revert ZeroRoot();
        bytes32 storedRoot = _rangeRoots[executionId][rangeStart][rangeEnd];
        if (storedRoot != bytes32(0)) {
            if (storedRoot != merkleRoot) {
                revert RangeRootConflict(executionId, rangeStart, rangeEnd, storedRoot, merkleRoot);
            }
            return;
        }
        _rangeRoots[executionId][rangeStart][rangeEnd] = merkleRoot;
        emit LedgerRootCommitted(executionId, rangeStart, rangeEnd, merkleRoot);
    }

    /// @notice What was anchored for a round; all zeros when the round is unknown.
    /// @param roundId The round.
    /// @return root The anchored root.
    /// @return leafCount The anchored leaf count.
    /// @return blockNumber The block in which the round was anchored.
    /// @return timestamp That block's timestamp (seconds since the Unix epoch).
    function roundOf(uint64 roundId)
        external
        view
        returns (bytes32 root, uint64 leafCount, uint64 blockNumber, uint64 timestamp)
    {
        Round storage round = _rounds[roundId];
        return (round.root, round.leafCount, round.blockNumber, round.timestamp);
    }

    /// @notice The root anchored for one execution's seq range; zero when none.
    /// @param executionId The execution.
    /// @param rangeStart First seq of the range.
    /// @param rangeEnd Last seq of the range.
    /// @return The anchored root, or zero.
    function rangeRootOf(bytes16 executionId, uint64 rangeStart, uint64 rangeEnd) external view returns (bytes32) {
        return _rangeRoots[executionId][rangeStart][rangeEnd];
    }

    /// @notice Checks that a ledger entry is a leaf of an anchored round.
    /// @param roundId The round whose root the proof leads to.
    /// @param executionId The entry's execution.
    /// @param seq The entry's seq.
    /// @param entryHash The entry's hash.
    /// @param proof The sibling path from the leaf to the root (as `StandardMerkleTree.getProof`).
    /// @return False when the round is unknown or the proof does not lead to its root.
    function verifyInclusion(
        uint64 roundId,
        bytes16 executionId,
        uint64 seq,
        bytes32 entryHash,
        bytes32[] calldata proof
    ) external view returns (bool) {
        bytes32 root = _rounds[roundId].root;
        if (root == bytes32(0)) return false;
        return MerkleProof.verifyCalldata(proof, root, leafHash(executionId, seq, entryHash));
    }

    /// @notice Checks that a ledger entry is a leaf of an anchored execution range.
    /// @param executionId The entry's execution (and the range's).
    /// @param rangeStart First seq of the anchored range.
    /// @param rangeEnd Last seq of the anchored range.
    /// @param seq The entry's seq.
    /// @param entryHash The entry's hash.
    /// @param proof The sibling path from the leaf to the range root.
    /// @return False when the range is unknown, `seq` is outside it, or the proof does not lead to its root.
    function verifyRangeInclusion(
        bytes16 executionId,
        uint64 rangeStart,
        uint64 rangeEnd,
        uint64 seq,
        bytes32 entryHash,
        bytes32[] calldata proof
    ) external view returns (bool) {
        if (seq < rangeStart || seq > rangeEnd) return false;
        bytes32 root = _rangeRoots[executionId][rangeStart][rangeEnd];
        if (root == bytes32(0)) return false;
        return MerkleProof.verifyCalldata(proof, root, leafHash(executionId, seq, entryHash));
    }
}
