import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { network } from "hardhat";
import { getAddress, keccak256, toHex, type Hex } from "viem";

import {
  LEAF_ENCODING,
  ZERO32,
  buildTree,
  executionId,
  flip,
  leafValue,
  proofOf,
  rangeEntries,
  roundEntries,
} from "../lib/pled-test-helpers.js";

describe("PLEDRegistry", async function () {
  const { viem, networkHelpers } = await network.create();
  const publicClient = await viem.getPublicClient();
  const [admin, other] = await viem.getWalletClients();
  const otherAddress = getAddress(other.account.address);

  async function deployFixture() {
    const registry = await viem.deployContract("PLEDRegistry");
    const asOther = await viem.getContractAt("PLEDRegistry", registry.address, {
      client: { wallet: other },
    });
    return { registry, asOther };
  }
  const deploy = () => networkHelpers.loadFixture(deployFixture);

  async function receiptOf(hash: Promise<Hex>) {
    const receipt = await publicClient.waitForTransactionReceipt({ hash: await hash });
    assert.equal(receipt.status, "success");
    return receipt;
  }

  describe("roles", function () {
    it("gives the deployer DEFAULT_ADMIN_ROLE and COMMITTER_ROLE", async function () {
      const { registry } = await deploy();
      const committerRole = await registry.read.COMMITTER_ROLE();
      assert.equal(committerRole, keccak256(toHex("COMMITTER_ROLE")));
      assert.equal(await registry.read.hasRole([committerRole, admin.account.address]), true);
      assert.equal(await registry.read.hasRole([ZERO32, admin.account.address]), true);
      assert.equal(await registry.read.hasRole([committerRole, other.account.address]), false);
      assert.equal(await registry.read.getRoleAdmin([committerRole]), ZERO32);
    });

    it("rejects commitRound and commitLedgerRoot from an account without COMMITTER_ROLE", async function () {
      const { registry, asOther } = await deploy();
      const role = await registry.read.COMMITTER_ROLE();
      await viem.assertions.revertWithCustomErrorWithArgs(
        asOther.write.commitRound([1n, keccak256("0x01"), 1n]),
        registry,
        "AccessControlUnauthorizedAccount",
        [otherAddress, role],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        asOther.write.commitLedgerRoot([executionId("x"), 1n, 1n, keccak256("0x01")]),
        registry,
        "AccessControlUnauthorizedAccount",
        [otherAddress, role],
      );
    });

    it("lets the admin grant and revoke COMMITTER_ROLE", async function () {
      const { registry, asOther } = await deploy();
      const role = await registry.read.COMMITTER_ROLE();
      await receiptOf(registry.write.grantRole([role, other.account.address]));
      await viem.assertions.emitWithArgs(asOther.write.commitRound([7n, keccak256("0x07"), 3n]), registry, "RoundCommitted", [
        7n,
        keccak256("0x07"),
        3n,
      ]);
      await receiptOf(registry.write.revokeRole([role, other.account.address]));
      await viem.assertions.revertWithCustomError(
        asOther.write.commitRound([8n, keccak256("0x08"), 1n]),
        registry,
        "AccessControlUnauthorizedAccount",
      );
    });
  });

  describe("leafHash", function () {
    it("equals the OpenZeppelin StandardMerkleTree leaf", async function () {
      const { registry } = await deploy();
      const entries = roundEntries(13, "leafhash");
      const tree = buildTree(entries);
      for (const e of entries) {
        const expected = tree.leafHash(leafValue(e));
        assert.equal(await registry.read.leafHash([e.executionId, e.seq, e.entryHash]), expected);
      }
      // Extreme values encode the same way too.
      const max: [Hex, bigint, Hex] = [`0x${"ff".repeat(16)}`, 2n ** 64n - 1n, `0x${"ff".repeat(32)}`];
      const maxTree = StandardMerkleTree.of([max], LEAF_ENCODING);
      assert.equal(await registry.read.leafHash(max), maxTree.leafHash(max));
    });

    it("is keccak256(bytes.concat(keccak256(abi.encode(executionId, seq, entryHash))))", async function () {
      const { registry } = await deploy();
      const [e] = roundEntries(1, "formula");
      const { encodeAbiParameters } = await import("viem");
      const inner = keccak256(
        encodeAbiParameters(
          [{ type: "bytes16" }, { type: "uint64" }, { type: "bytes32" }],
          [e.executionId, e.seq, e.entryHash],
        ),
      );
      assert.equal(await registry.read.leafHash([e.executionId, e.seq, e.entryHash]), keccak256(inner));
    });
  });

  describe("commitRound", function () {
    it("stores the root, leaf count, block and timestamp and emits RoundCommitted", async function () {
      const { registry } = await deploy();
      const root = keccak256("0xaa");
      const hash = registry.write.commitRound([1n, root, 42n]);
      await viem.assertions.emitWithArgs(hash, registry, "RoundCommitted", [1n, root, 42n]);
      const receipt = await publicClient.getTransactionReceipt({ hash: await hash });
      const block = await publicClient.getBlock({ blockNumber: receipt.blockNumber });
      assert.deepEqual(await registry.read.roundOf([1n]), [root, 42n, receipt.blockNumber, block.timestamp]);
    });

    it("returns zeros for an unknown round", async function () {
      const { registry } = await deploy();
      assert.deepEqual(await registry.read.roundOf([99n]), [ZERO32, 0n, 0n, 0n]);
    });

    it("accepts round id 0 and the largest round id", async function () {
      const { registry } = await deploy();
      const max = 2n ** 64n - 1n;
      await receiptOf(registry.write.commitRound([0n, keccak256("0x00"), 1n]));
      await receiptOf(registry.write.commitRound([max, keccak256("0xff"), 2n ** 64n - 1n]));
      assert.equal((await registry.read.roundOf([0n]))[0], keccak256("0x00"));
      assert.deepEqual((await registry.read.roundOf([max])).slice(0, 2), [keccak256("0xff"), 2n ** 64n - 1n]);
    });

    it("treats a resend with the same root and count as a no-op without an event", async function () {
      const { registry } = await deploy();
      const root = keccak256("0xbb");
      const first = await receiptOf(registry.write.commitRound([5n, root, 10n]));
      assert.equal(first.logs.length, 1);
      await networkHelpers.mine(3);
      const again = await receiptOf(registry.write.commitRound([5n, root, 10n]));
      assert.equal(again.logs.length, 0);
      const [, , blockNumber] = await registry.read.roundOf([5n]);
      assert.equal(blockNumber, first.blockNumber, "the first anchoring block is kept");
    });

    it("reverts with RootConflict for a different root or leaf count", async function () {
      const { registry } = await deploy();
      const root = keccak256("0xcc");
      await receiptOf(registry.write.commitRound([2n, root, 4n]));
      const other = keccak256("0xcd");
      await viem.assertions.revertWithCustomErrorWithArgs(
        registry.write.commitRound([2n, other, 4n]),
        registry,
        "RootConflict",
        [2n, root, 4n, other, 4n],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        registry.write.commitRound([2n, root, 5n]),
        registry,
        "RootConflict",
        [2n, root, 4n, root, 5n],
      );
      assert.deepEqual((await registry.read.roundOf([2n])).slice(0, 2), [root, 4n]);
    });

    it("reverts with ZeroRoot and ZeroLeafCount", async function () {
      const { registry } = await deploy();
      await viem.assertions.revertWithCustomError(registry.write.commitRound([1n, ZERO32, 1n]), registry, "ZeroRoot");
      await viem.assertions.revertWithCustomError(
        registry.write.commitRound([1n, keccak256("0x01"), 0n]),
        registry,
        "ZeroLeafCount",
      );
      assert.deepEqual(await registry.read.roundOf([1n]), [ZERO32, 0n, 0n, 0n]);
    });
  });

  describe("verifyInclusion", function () {
    for (const size of [1, 2, 3, 5, 8, 13]) {
      it(`accepts every leaf of a ${size}-leaf StandardMerkleTree and rejects tampering`, async function () {
        const { registry } = await deploy();
        const entries = roundEntries(size, `size-${size}`);
        const tree = buildTree(entries);
        const roundId = BigInt(100 + size);
        await receiptOf(registry.write.commitRound([roundId, tree.root as Hex, BigInt(size)]));
        if (size === 1) {
          assert.equal(tree.root, tree.leafHash(leafValue(entries[0])), "a one-leaf tree's root is its leaf");
        }
        for (let i = 0; i < entries.length; i++) {
          const e = entries[i];
          const proof = proofOf(tree, i);
          assert.equal(StandardMerkleTree.verify(tree.root, LEAF_ENCODING, leafValue(e), proof), true);
          assert.equal(
            await registry.read.verifyInclusion([roundId, e.executionId, e.seq, e.entryHash, proof]),
            true,
            `leaf ${i}`,
          );
          // Tampered proof: a flipped sibling, or an extra sibling for the empty proof.
          const badProof = proof.length > 0 ? [flip(proof[0]), ...proof.slice(1)] : [keccak256("0x00")];
          assert.equal(await registry.read.verifyInclusion([roundId, e.executionId, e.seq, e.entryHash, badProof]), false);
          assert.equal(
            await registry.read.verifyInclusion([roundId, e.executionId, e.seq, flip(e.entryHash), proof]),
            false,
          );
          assert.equal(
            await registry.read.verifyInclusion([roundId, e.executionId, e.seq + 1n, e.entryHash, proof]),
            false,
          );
          assert.equal(
            await registry.read.verifyInclusion([roundId, executionId("someone else"), e.seq, e.entryHash, proof]),
            false,
          );
          assert.equal(
            await registry.read.verifyInclusion([roundId + 1000n, e.executionId, e.seq, e.entryHash, proof]),
            false,
            "unknown round",
          );
        }
      });
    }

    it("rejects a proof against another round's root", async function () {
      const { registry } = await deploy();
      const a = roundEntries(5, "round-a");
      const b = roundEntries(5, "round-b");
      const treeA = buildTree(a);
      const treeB = buildTree(b);
      await receiptOf(registry.write.commitRound([1n, treeA.root as Hex, 5n]));
      await receiptOf(registry.write.commitRound([2n, treeB.root as Hex, 5n]));
      const e = a[2];
      const proof = proofOf(treeA, 2);
      assert.equal(await registry.read.verifyInclusion([1n, e.executionId, e.seq, e.entryHash, proof]), true);
      assert.equal(await registry.read.verifyInclusion([2n, e.executionId, e.seq, e.entryHash, proof]), false);
    });
  });

  describe("commitLedgerRoot", function () {
    it("stores the range root and emits LedgerRootCommitted", async function () {
      const { registry } = await deploy();
      const id = executionId("range");
      const tree = buildTree(rangeEntries(id, 1n, 10n));
      await viem.assertions.emitWithArgs(
        registry.write.commitLedgerRoot([id, 1n, 10n, tree.root as Hex]),
        registry,
        "LedgerRootCommitted",
        [id, 1n, 10n, tree.root as Hex],
      );
      assert.equal(await registry.read.rangeRootOf([id, 1n, 10n]), tree.root);
      assert.equal(await registry.read.rangeRootOf([id, 1n, 9n]), ZERO32);
      assert.equal(await registry.read.rangeRootOf([executionId("unknown"), 1n, 10n]), ZERO32);
    });

    it("accepts a one-entry range (rangeStart == rangeEnd)", async function () {
      const { registry } = await deploy();
      const id = executionId("single");
      const entries = rangeEntries(id, 4n, 4n);
      const tree = buildTree(entries);
      await receiptOf(registry.write.commitLedgerRoot([id, 4n, 4n, tree.root as Hex]));
      const e = entries[0];
      assert.equal(await registry.read.verifyRangeInclusion([id, 4n, 4n, 4n, e.entryHash, []]), true);
    });

    it("treats a resend with the same root as a no-op without an event", async function () {
      const { registry } = await deploy();
      const id = executionId("resend");
      const root = keccak256("0x1234");
      const first = await receiptOf(registry.write.commitLedgerRoot([id, 3n, 9n, root]));
      assert.equal(first.logs.length, 1);
      const again = await receiptOf(registry.write.commitLedgerRoot([id, 3n, 9n, root]));
      assert.equal(again.logs.length, 0);
    });

    it("reverts with RangeRootConflict for a different root", async function () {
      const { registry } = await deploy();
      const id = executionId("conflict");
      const root = keccak256("0x01");
      const other = keccak256("0x02");
      await receiptOf(registry.write.commitLedgerRoot([id, 1n, 5n, root]));
      await viem.assertions.revertWithCustomErrorWithArgs(
        registry.write.commitLedgerRoot([id, 1n, 5n, other]),
        registry,
        "RangeRootConflict",
        [id, 1n, 5n, root, other],
      );
      // Overlapping but different ranges are separate commitments.
      await receiptOf(registry.write.commitLedgerRoot([id, 1n, 6n, other]));
      assert.equal(await registry.read.rangeRootOf([id, 1n, 5n]), root);
      assert.equal(await registry.read.rangeRootOf([id, 1n, 6n]), other);
    });

    it("reverts with InvalidRange for rangeStart 0 or rangeStart > rangeEnd, and ZeroRoot", async function () {
      const { registry } = await deploy();
      const id = executionId("invalid");
      const root = keccak256("0x01");
      await viem.assertions.revertWithCustomErrorWithArgs(
        registry.write.commitLedgerRoot([id, 0n, 5n, root]),
        registry,
        "InvalidRange",
        [0n, 5n],
      );
      await viem.assertions.revertWithCustomErrorWithArgs(
        registry.write.commitLedgerRoot([id, 6n, 5n, root]),
        registry,
        "InvalidRange",
        [6n, 5n],
      );
      await viem.assertions.revertWithCustomError(
        registry.write.commitLedgerRoot([id, 1n, 5n, ZERO32]),
        registry,
        "ZeroRoot",
      );
    });
  });

  describe("verifyRangeInclusion", function () {
    it("accepts every entry of the range and rejects seqs outside it and tampering", async function () {
      const { registry } = await deploy();
      const id = executionId("range-verify");
      // The tree covers seqs 3..=9 but only 3..=8 is anchored as a range under its root:
      // the proof for seq 9 leads to the root, yet seq 9 is outside the range.
      const entries = rangeEntries(id, 3n, 9n);
      const tree = buildTree(entries);
      await receiptOf(registry.write.commitLedgerRoot([id, 3n, 8n, tree.root as Hex]));
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        const proof = proofOf(tree, i);
        const inside = e.seq <= 8n;
        assert.equal(
          await registry.read.verifyRangeInclusion([id, 3n, 8n, e.seq, e.entryHash, proof]),
          inside,
          `seq ${e.seq}`,
        );
        assert.equal(
          await registry.read.verifyRangeInclusion([id, 3n, 8n, e.seq, flip(e.entryHash), proof]),
          false,
        );
        if (proof.length > 0) {
          assert.equal(
            await registry.read.verifyRangeInclusion([id, 3n, 8n, e.seq, e.entryHash, [flip(proof[0]), ...proof.slice(1)]]),
            false,
          );
        }
        // Unknown range (same execution, other bounds) and unknown execution.
        assert.equal(await registry.read.verifyRangeInclusion([id, 3n, 9n, e.seq, e.entryHash, proof]), false);
        assert.equal(
          await registry.read.verifyRangeInclusion([executionId("nobody"), 3n, 8n, e.seq, e.entryHash, proof]),
          false,
        );
      }
      // Below the range.
      const below = { seq: 2n, entryHash: entries[0].entryHash };
      assert.equal(
        await registry.read.verifyRangeInclusion([id, 3n, 8n, below.seq, below.entryHash, proofOf(tree, 0)]),
        false,
      );
    });
  });
});
