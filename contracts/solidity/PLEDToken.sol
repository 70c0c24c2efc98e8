// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {PLEDRegistry} from "./PLEDRegistry.sol";

/// @title PLED token: tokens minted for PLED sink entries against anchored inclusion proofs
/// @notice One ERC-1155 contract holds every token type: PLED templates define several token
/// types per process (each sink of a template names one), and new types appear whenever a
/// template version is published. ERC-1155 gives each type its own id and balances inside
/// one contract, so no deployment is needed per type. A type's id is
/// `uint256(keccak256(bytes(tokenType)))` (see `tokenIdOf`).
/// @dev Trust assumption. On-chain, `mintForSinkEntry` proves that the ledger entry
/// `(executionId, seq, entryHash)` is a leaf of a round anchored in the `PLEDRegistry`, and
/// it mints at most once per entry `(executionId, seq)`. It does not (and cannot cheaply)
/// check that `tokenType` and `quantity` are what the entry's body says: the entry hash is
/// BLAKE3 over the RFC 8785 (JCS) canonical JSON of the entry, which is not recomputed
/// on-chain. That binding is attested by the `MINTER_ROLE` holder (PLED's minter), and any
/// auditor can check it off-chain: fetch the entry, recompute its hash, read the sink's type
/// and quantity from its body, and compare with the `SinkMinted` event.
contract PLEDToken is ERC1155, AccessControl {
    /// @notice Role allowed to mint (`mintForSinkEntry`).
    /// @return The role identifier, `keccak256("MINTER_ROLE")`.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @notice The registry whose anchored rounds mints are checked against.
    /// @return The `PLEDRegistry` address fixed at deployment.
    PLEDRegistry public immutable registry;

    mapping(bytes16 executionId => mapping(uint64 seq => bool)) private _minted;

    /// @notice Tokens were minted for a sink entry.
    /// @param executionId The sink entry's execution.
    /// @param seq The sink entry's seq.
    /// @param roundId The anchored round the inclusion proof was checked against.
    /// @param to The receiver.
    /// @param tokenId The ERC-1155 id, `tokenIdOf(tokenType)`.
    /// @param tokenType The token type's name.
    /// @param quantity How many were minted.
    event SinkMinted(
        bytes16 indexed executionId,
        uint64 indexed seq,
        uint64 roundId,
        address to,
        uint256 tokenId,
        string tokenType,
        uint256 quantity
    );

    /// @notice The registry address is zero.
    error ZeroRegistry();
    /// @notice The quantity to mint is zero.
    error ZeroQuantity();
    /// @notice The token type's name is empty.
    error EmptyTokenType();
    /// @notice The entry is not a leaf of the given anchored round (unknown round or wrong proof).
    /// @param roundId The round.
    /// @param executionId The entry's execution.
    /// @param seq The entry's seq.
    error InvalidInclusionProof(uint64 roundId, bytes16 executionId, uint64 seq);
    /// @notice Tokens were already minted for this entry.
    /// @param executionId The entry's execution.
    /// @param seq The entry's seq.
    error AlreadyMinted(bytes16 executionId, uint64 seq);

    /// @notice Deploys the token contract; the deployer gets `DEFAULT_ADMIN_ROLE` and `MINTER_ROLE`.
    /// @param registry_ The `PLEDRegistry` that anchors the rounds.
    /// @param uri_ The ERC-1155 metadata URI (clients substitute `{id}`).
    constructor(address registry_, string memory uri_) ERC1155(uri_) {
        if (registry_ == address(0)) revert ZeroRegistry();
        registry = PLEDRegistry(registry_);
        _grantRole(DEFAULT_ADMIN_ROLE, msg.sender);
        _grantRole(MINTER_ROLE, msg.sender);
    }

    /// @notice The ERC-1155 id of a token type.
    /// @param tokenType The token type's name as the template defines it.
    /// @return `uint256(keccak256(bytes(tokenType)))`.
    function tokenIdOf(string memory tokenType) public pure returns (uint256) {
        return uint256(keccak256(bytes(tokenType)));
    }

    /// @notice Whether tokens were already minted for a ledger entry.
    /// @param executionId The entry's execution.
    /// @param seq The entry's seq.
    /// @return True once `mintForSinkEntry` succeeded for `(executionId, seq)`.
    function isMinted(bytes16 executionId, uint64 seq) external view returns (bool) {
        return _minted[executionId][seq];
    }

    /// @notice Mints `quantity` tokens of `tokenType` to `to` for an anchored sink entry, once per entry.
    /// @dev Checks `registry.verifyInclusion(roundId, executionId, seq, entryHash, proof)`.
    /// That `tokenType` and `quantity` match the entry's body is attested by the caller (see
    /// the contract's trust assumption). The entry is marked minted before the ERC-1155
    /// receiver hook runs, so a re-entering receiver gets `AlreadyMinted`.
    /// @param to The receiver (an account, or a contract implementing `IERC1155Receiver`).
    /// @param tokenType The token type's name; not empty.
    /// @param quantity How many to mint; not zero.
    /// @param roundId The anchored round whose tree contains the entry.
    /// @param executionId The sink entry's execution.
    /// @param seq The sink entry's seq.
    /// @param entryHash The sink entry's hash.
    /// @param proof The sibling path from the entry's leaf to the round root.
    function mintForSinkEntry(
        address to,
        string calldata tokenType,
        uint256 quantity,
        uint64 roundId,
        bytes16 executionId,
        uint64 seq,
        bytes32 entryHash,
        bytes32[] calldata proof
    ) external onlyRole(MINTER_ROLE) {
        if (quantity == 0) revert ZeroQuantity();
        if (bytes(tokenType).length == 0) revert EmptyTokenType();
        _checkAndMarkEntry(roundId, executionId, seq, entryHash, proof);
        _mintSink(to, tokenType, quantity, roundId, executionId, seq);
    }

    /// @dev Reverts unless the entry is unminted and anchored in `roundId`; then marks it minted.
    function _checkAndMarkEntry(
        uint64 roundId,
        bytes16 executionId,
        uint64 seq,
        bytes32 entryHash,
        bytes32[] calldata proof
    ) private {
        if (_minted[executionId][seq]) revert AlreadyMinted(executionId, seq);
        if (!registry.verifyInclusion(roundId, executionId, seq, entryHash, proof)) {
            revert InvalidInclusionProof(roundId, executionId, seq);
        }
        _minted[executionId][seq] = true;
    }

    /// @dev Emits `SinkMinted` and mints (split out of `mintForSinkEntry` to keep the stack shallow).
    function _mintSink(
        address to,
        string calldata tokenType,
        uint256 quantity,
        uint64 roundId,
        bytes16 executionId,
        uint64 seq
    ) private {
        uint256 tokenId = uint256(keccak256(bytes(tokenType)));
        emit SinkMinted(executionId, seq, roundId, to, tokenId, tokenType, quantity);
        _mint(to, tokenId, quantity, "");
    }

    /// @notice ERC-165: ERC-1155, ERC-1155 metadata URI, AccessControl and ERC-165 itself.
    /// @param interfaceId The interface identifier.
    /// @return Whether the contract implements it.
    function supportsInterface(bytes4 interfaceId) public view override(ERC1155, AccessControl) returns (bool) {
        return super.supportsInterface(interfaceId);
    }
}
