// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC1155Receiver} from "@openzeppelin/contracts/token/ERC1155/IERC1155Receiver.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

interface IPLEDTokenMint {
    function mintForSinkEntry(
        address to,
        string calldata tokenType,
        uint256 quantity,
        uint64 roundId,
        bytes16 executionId,
        uint64 seq,
        bytes32 entryHash,
        bytes32[] calldata proof
    ) external;
}

/// @notice Test-only ERC-1155 receiver that, when it receives tokens, calls
/// `mintForSinkEntry` again with the arguments it was primed with (it must hold MINTER_ROLE).
/// Used to show that a re-entering receiver cannot mint an entry twice. Not deployed by PLED.
contract ReentrantReceiver is IERC1155Receiver {
    IPLEDTokenMint public token;
    bool public armed;
    string private _tokenType;
    uint64 private _roundId;
    bytes16 private _executionId;
    uint64 private _seq;
    bytes32 private _entryHash;
    bytes32[] private _proof;

    /// @notice Primes the receiver with the mint to repeat on the next receipt.
    function arm(
        IPLEDTokenMint token_,
        string calldata tokenType,
        uint64 roundId,
        bytes16 executionId,
        uint64 seq,
        bytes32 entryHash,
        bytes32[] calldata proof
    ) external {
        token = token_;
        armed = true;
        _tokenType = tokenType;
        _roundId = roundId;
        _executionId = executionId;
        _seq = seq;
        _entryHash = entryHash;
        _proof = proof;
    }

    /// @inheritdoc IERC1155Receiver
    function onERC1155Received(address, address, uint256, uint256, bytes calldata) external returns (bytes4) {
        if (armed) {
            armed = false;
            token.mintForSinkEntry(address(this), _tokenType, 1, _roundId, _executionId, _seq, _entryHash, _proof);
        }
        return IERC1155Receiver.onERC1155Received.selector;
    }

    /// @inheritdoc IERC1155Receiver
    function onERC1155BatchReceived(address, address, uint256[] calldata, uint256[] calldata, bytes calldata)
        external
        pure
        returns (bytes4)
    {
        return IERC1155Receiver.onERC1155BatchReceived.selector;
    }

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == type(IERC1155Receiver).interfaceId || interfaceId == type(IERC165).interfaceId;
    }
}
