// Gas of the PLED calls that cost money, per scenario, from transaction receipts on
// Hardhat's in-process chain (EDR). Run: npx hardhat run scripts/gas.ts
// (npm run gas runs the tests with --gas-stats, then this).
import { network } from "hardhat";
import type { Hex } from "viem";

import { buildTree, proofOf, roundEntries } from "../lib/pled-test-helpers.js";

const { viem } = await network.create();
const publicClient = await viem.getPublicClient();
const wallets = await viem.getWalletClients();

const rows: Array<[string, bigint]> = [];
async function measure(label: string, hash: Promise<Hex>): Promise<bigint> {
  const receipt = await publicClient.waitForTransactionReceipt({ hash: await hash });
  if (receipt.status !== "success") throw new Error(`${label}: reverted`);
  rows.push([label, receipt.gasUsed]);
  return receipt.gasUsed;
}

const registry = await viem.deployContract("PLEDRegistry");
const token = await viem.deployContract("PLEDToken", [registry.address, "https://pled.example/tokens/{id}.json"]);

let roundId = 1n;
let perEntry = "";
for (const size of [1, 13, 1_000, 100_000]) {
  const entries = roundEntries(size, `gas-${size}`);
  const tree = buildTree(entries);
  const round = roundId++;
  const commitGas = await measure(
    `commitRound (new round, ${size.toLocaleString("en-US")} ${size === 1 ? "leaf" : "leaves"})`,
    registry.write.commitRound([round, tree.root as Hex, BigInt(size)]),
  );
  if (size === 100_000) {
    perEntry = `gas per anchored entry in a 100,000-entry round: ${(Number(commitGas) / size).toFixed(3)}`;
  }
  if (size === 13) {
    await measure("commitRound (resend, no-op)", registry.write.commitRound([round, tree.root as Hex, BigInt(size)]));
  }
  // First mint of a token type to a fresh holder (new balance slot), then a second entry of
  // the same type to the same holder (balance slot already non-zero).
  const holder = wallets[Number(round) % wallets.length].account.address;
  for (const [i, what] of [
    [0, "first of its type for the holder"],
    [1, "same type and holder again"],
  ] as const) {
    const e = entries[Math.min(i, entries.length - 1)];
    if (i === 1 && size === 1) break;
    await measure(
      `mintForSinkEntry (proof of ${proofOf(tree, i).length} hashes, ${what})`,
      token.write.mintForSinkEntry([
        holder,
        `type-${size}`,
        1000n,
        round,
        e.executionId,
        e.seq,
        e.entryHash,
        proofOf(tree, i),
      ]),
    );
  }
}

const execution = roundEntries(1, "range")[0].executionId;
const rangeTree = buildTree(roundEntries(100, "range-tree"));
await measure("commitLedgerRoot (new range)", registry.write.commitLedgerRoot([execution, 1n, 100n, rangeTree.root as Hex]));
await measure(
  "commitLedgerRoot (resend, no-op)",
  registry.write.commitLedgerRoot([execution, 1n, 100n, rangeTree.root as Hex]),
);

const width = Math.max(...rows.map(([l]) => l.length));
console.log(`${"scenario".padEnd(width)}  gasUsed`);
for (const [label, gas] of rows) console.log(`${label.padEnd(width)}  ${gas.toString().padStart(7)}`);
console.log(perEntry);
