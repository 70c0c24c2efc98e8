import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { network } from "hardhat";
import { getAddress, keccak256, toHex, zeroAddress, type Hex } from "viem";

import { ZERO32, buildTree, executionId, flip, proofOf, roundEntries } from "../lib/pled-test-helpers.js";

const URI = "https://pled.example/tokens/{id}.json";

describe("PLEDToken", async function () {
  const { viem, networkHelpers } = await network.create();
  const publicClient = await viem.getPublicClient();
  const [admin, other, holder] = await viem.getWalletClients();
  const adminAddress = getAddress(admin.account.address);
  const otherAddress = getAddress(other.account.address);
  const holderAddress = getAddress(holder.account.address);

  // A registry with round 1 anchored over 8 entries (sink entries among them).
  async function deployFixture() {
    const registry = await viem.deployContract("PLEDRegistry");
    const token = await viem.deployContract("PLEDToken", [registry.address, URI]);
    const asOther = await viem.getContractAt("PLEDToken", token.address, { client: { wallet: other } });
    const entries = roundEntries(8, "sinks");
    const tree = buildTree(entries);
    await publicClient.waitForTransactionReceipt({
      hash: await registry.write.commitRound([1n, tree.root as Hex, BigInt(entries.length)]),
    });
    return { registry, token, asOther, entries, tree };
  }
  const deploy = () => networkHelpers.loadFixture(deployFixture);

  describe("deployment", function () {
    it("stores the registry and URI and gives the deployer DEFAULT_ADMIN_ROLE and MINTER_ROLE", async function () {
      const { registry, token } = await deploy();
      assert.equal(await token.read.registry(), getAddress(registry.address));
      assert.equal(await token.read.uri([123n]), URI);
      const minter = await token.read.MINTER_ROLE();
      assert.equal(minter, keccak256(toHex("MINTER_ROLE")));
      assert.equal(await token.read.hasRole([minter, adminAddress]), true);
      assert.equal(await token.read.hasRole([ZERO32, adminAddress]), true);
      assert.equal(await token.read.hasRole([minter, otherAddress]), false);
    });

    it("reverts with ZeroRegistry for a zero registry address", async function () {
      const { token } = await deploy();
      await viem.assertions.revertWithCustomError(
        viem.deployContract("PLEDToken", [zeroAddress, URI]) as unknown as Promise<Hex>,
        token,
        "ZeroRegistry",
      );
    });

    it("supports the ERC-165 ids of ERC-1155, its metadata URI, AccessControl and ERC-165", async function () {
      const { token } = await deploy();
      for (const id of ["0xd9b67a26", "0x0e89341c", "0x7965db0b", "0x01ffc9a7"] as const) {
        assert.equal(await token.read.supportsInterface([id]), true, id);
      }
      assert.equal(await token.read.supportsInterface(["0xffffffff"]), false);
      assert.equal(await token.read.supportsInterface(["0x12345678"]), false);
    });
  });

  describe("tokenIdOf", function () {
    it("is uint256(keccak256(bytes(tokenType)))", async function () {
      const { token } = await deploy();
      for (const t of ["gold", "Carbon credit (t CO2e)", "", "ünïcødé"]) {
        assert.equal(await token.read.tokenIdOf([t]), BigInt(keccak256(toHex(t))), t);
      }
    });
  });

  describe("mintForSinkEntry", function () {
    it("mints to the receiver, marks the entry and emits SinkMinted and TransferSingle", async function () {
      const { token, entries, tree } = await deploy();
      const e = entries[3];
      const proof = proofOf(tree, 3);
      const tokenId = BigInt(keccak256(toHex("gold")));
      assert.equal(await token.read.isMinted([e.executionId, e.seq]), false);
      const hash = token.write.mintForSinkEntry([
        holderAddress,
        "gold",
        250n,
        1n,
        e.executionId,
        e.seq,
        e.entryHash,
        proof,
      ]);
      await viem.assertions.emitWithArgs(hash, token, "SinkMinted", [
        e.executionId,
        e.seq,
        1n,
        holderAddress,
        tokenId,
        "gold",
        250n,
      ]);
      await viem.assertions.emitWithArgs(hash, token, "TransferSingle", [
        adminAddress,
        zeroAddress,
        holderAddress,
        tokenId,
        250n,
      ]);
      assert.equal(await token.read.isMinted([e.executionId, e.seq]), true);
      assert.equal(await token.read.balanceOf([holderAddress, tokenId]), 250n);
      assert.equal(await token.read.balanceOf([adminAddress, tokenId]), 0n);
      // Other entries are untouched.
      assert.equal(await token.read.isMinted([entries[4].executionId, entries[4].seq]), false);
    });

    it("mints every entry of the round once, adding up balances per token type", async function () {
      const { token, entries, tree } = await deploy();
      const types = ["gold", "silver"];
      const expected = new Map<string, bigint>();
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        const t = types[i % 2];
        const qty = BigInt(i + 1);
        await publicClient.waitForTransactionReceipt({
          hash: await token.write.mintForSinkEntry([
            holderAddress,
            t,
            qty,
            1n,
            e.executionId,
            e.seq,
            e.entryHash,
            proofOf(tree, i),
          ]),
        });
        expected.set(t, (expected.get(t) ?? 0n) + qty);
      }
      for (const t of types) {
        assert.equal(await token.read.balanceOf([holderAddress, await token.read.tokenIdOf([t])]), expected.get(t));
      }
    });

    it("reverts with AlreadyMinted for a second mint of the same entry", async function () {
      const { token, entries, tree } = await deploy();
      const e = entries[0];
      const proof = proofOf(tree, 0);
      await publicClient.waitForTransactionReceipt({
        hash: await token.write.mintForSinkEntry([holderAddress, "gold", 1n, 1n, e.executionId, e.seq, e.entryHash, proof]),
      });
      await viem.assertions.revertWithCustomErrorWithArgs(
        token.write.mintForSinkEntry([holderAddress, "gold", 1n, 1n, e.executionId, e.seq, e.entryHash, proof]),
        token,
        "AlreadyMinted",
        [e.executionId, e.seq],
      );
      // Not with another type, quantity or receiver either.
      await viem.assertions.revertWithCustomErrorWithArgs(
        token.write.mintForSinkEntry([otherAddress, "silver", 9n, 1n, e.executionId, e.seq, e.entryHash, proof]),
        token,
        "AlreadyMinted",
        [e.executionId, e.seq],
      );
      assert.equal(await token.read.balanceOf([holderAddress, await token.read.tokenIdOf(["gold"])]), 1n);
    });

    it("reverts with InvalidInclusionProof for a wrong proof, entry hash or seq", async function () {
      const { token, entries, tree } = await deploy();
      const e = entries[5];
      const proof = proofOf(tree, 5);
      const cases: Array<[bigint, Hex, Hex[]]> = [
        [e.seq, e.entryHash, [flip(proof[0]), ...proof.slice(1)]],
        [e.seq, e.entryHash, proofOf(tree, 4)],
        [e.seq, flip(e.entryHash), proof],
        [e.seq + 1n, e.entryHash, proof],
      ];
      for (const [seq, entryHash, p] of cases) {
        await viem.assertions.revertWithCustomErrorWithArgs(
          token.write.mintForSinkEntry([holderAddress, "gold", 1n, 1n, e.executionId, seq, entryHash, p]),
          token,
          "InvalidInclusionProof",
          [1n, e.executionId, seq],
        );
      }
      assert.equal(await token.read.isMinted([e.executionId, e.seq]), false);
    });

    it("reverts with InvalidInclusionProof against an unknown round", async function () {
      const { token, entries, tree } = await deploy();
      const e = entries[2];
      await viem.assertions.revertWithCustomErrorWithArgs(
        token.write.mintForSinkEntry([holderAddress, "gold", 1n, 2n, e.executionId, e.seq, e.entryHash, proofOf(tree, 2)]),
        token,
        "InvalidInclusionProof",
        [2n, e.executionId, e.seq],
      );
    });

    it("reverts with ZeroQuantity and EmptyTokenType", async function () {
      const { token, entries, tree } = await deploy();
      const e = entries[1];
      const proof = proofOf(tree, 1);
      await viem.assertions.revertWithCustomError(
        token.write.mintForSinkEntry([holderAddress, "gold", 0n, 1n, e.executionId, e.seq, e.entryHash, proof]),
        token,
        "ZeroQuantity",
      );
      await viem.assertions.revertWithCustomError(
        token.write.mintForSinkEntry([holderAddress, "", 1n, 1n, e.executionId, e.seq, e.entryHash, proof]),
        token,
        "EmptyTokenType",
      );
      assert.equal(await token.read.isMinted([e.executionId, e.seq]), false);
    });

    it("rejects a caller without MINTER_ROLE, and accepts one after a grant", async function () {
      const { token, asOther, entries, tree } = await deploy();
      const e = entries[6];
      const proof = proofOf(tree, 6);
      const minter = await token.read.MINTER_ROLE();
      const args = [holderAddress, "gold", 3n, 1n, e.executionId, e.seq, e.entryHash, proof] as const;
      await viem.assertions.revertWithCustomErrorWithArgs(
        asOther.write.mintForSinkEntry(args),
        token,
        "AccessControlUnauthorizedAccount",
        [otherAddress, minter],
      );
      await publicClient.waitForTransactionReceipt({ hash: await token.write.grantRole([minter, otherAddress]) });
      await viem.assertions.emit(asOther.write.mintForSinkEntry(args), token, "SinkMinted");
      assert.equal(await token.read.isMinted([e.executionId, e.seq]), true);
    });

    it("rolls back when the receiver is the zero address or a contract that does not accept ERC-1155 tokens", async function () {
      const { registry, token, entries, tree } = await deploy();
      const e = entries[7];
      await viem.assertions.revertWithCustomErrorWithArgs(
        token.write.mintForSinkEntry([
          registry.address,
          "gold",
          1n,
          1n,
          e.executionId,
          e.seq,
          e.entryHash,
          proofOf(tree, 7),
        ]),
        token,
        "ERC1155InvalidReceiver",
        [getAddress(registry.address)],
      );
      assert.equal(await token.read.isMinted([e.executionId, e.seq]), false);
      // The zero address is no receiver either.
      await viem.assertions.revertWithCustomErrorWithArgs(
        token.write.mintForSinkEntry([zeroAddress, "gold", 1n, 1n, e.executionId, e.seq, e.entryHash, proofOf(tree, 7)]),
        token,
        "ERC1155InvalidReceiver",
        [zeroAddress],
      );
      assert.equal(await token.read.isMinted([e.executionId, e.seq]), false);
    });

    it("does not let a re-entering receiver mint the same entry twice", async function () {
      const { token, entries, tree } = await deploy();
      const receiver = await viem.deployContract("ReentrantReceiver");
      await publicClient.waitForTransactionReceipt({
        hash: await token.write.grantRole([await token.read.MINTER_ROLE(), receiver.address]),
      });
      const e = entries[4];
      const proof = proofOf(tree, 4);
      await publicClient.waitForTransactionReceipt({
        hash: await receiver.write.arm([token.address, "gold", 1n, e.executionId, e.seq, e.entryHash, proof]),
      });
      // The receiver's nested mintForSinkEntry hits AlreadyMinted, which undoes the whole mint.
      await viem.assertions.revertWithCustomErrorWithArgs(
        token.write.mintForSinkEntry([receiver.address, "gold", 1n, 1n, e.executionId, e.seq, e.entryHash, proof]),
        token,
        "AlreadyMinted",
        [e.executionId, e.seq],
      );
      assert.equal(await token.read.isMinted([e.executionId, e.seq]), false);
      assert.equal(await token.read.balanceOf([receiver.address, await token.read.tokenIdOf(["gold"])]), 0n);
    });
  });
});
