// Shared helpers for the contract tests: deterministic ledger entries and the
// OpenZeppelin StandardMerkleTree that PLED's proofs must match.
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { keccak256, slice, toHex, type Hex } from "viem";

/** The leaf encoding PLED uses (see PLEDRegistry's NatSpec and docs/ledger-format.md). */
export const LEAF_ENCODING = ["bytes16", "uint64", "bytes32"];

export type Entry = { executionId: Hex; seq: bigint; entryHash: Hex };
export type LeafValue = [Hex, bigint, Hex];

/** A deterministic execution id (16 bytes) from a label. */
export function executionId(label: string): Hex {
  return slice(keccak256(toHex(`execution:${label}`)), 0, 16);
}

/** A deterministic stand-in for an entry hash (PLED's is BLAKE3; any 32 bytes do here). */
export function entryHash(executionIdHex: Hex, seq: bigint): Hex {
  return keccak256(toHex(`entry:${executionIdHex}:${seq}`));
}

/**
 * `count` entries spread over three executions, each execution's seqs 1, 2, 3, ...,
 * like a commit round covering several executions.
 */
export function roundEntries(count: number, salt = "round"): Entry[] {
  const ids = [executionId(`${salt}-a`), executionId(`${salt}-b`), executionId(`${salt}-c`)];
  const next = [1n, 1n, 1n];
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const k = i % ids.length;
    const seq = next[k]++;
    entries.push({ executionId: ids[k], seq, entryHash: entryHash(ids[k], seq) });
  }
  return entries;
}

/** Entries `start..=end` of one execution. */
export function rangeEntries(execId: Hex, start: bigint, end: bigint): Entry[] {
  const entries: Entry[] = [];
  for (let seq = start; seq <= end; seq++) {
    entries.push({ executionId: execId, seq, entryHash: entryHash(execId, seq) });
  }
  return entries;
}

export const leafValue = (e: Entry): LeafValue => [e.executionId, e.seq, e.entryHash];

export function buildTree(entries: Entry[]): StandardMerkleTree<LeafValue> {
  return StandardMerkleTree.of(entries.map(leafValue), LEAF_ENCODING);
}

/** The proof of entries[i] (StandardMerkleTree indexes by the values' original order). */
export function proofOf(tree: StandardMerkleTree<LeafValue>, i: number): Hex[] {
  return tree.getProof(i) as Hex[];
}

/** Flips the lowest bit of a 32-byte hex value. */
export function flip(h: Hex): Hex {
  const last = parseInt(h.slice(-2), 16) ^ 1;
  return `${h.slice(0, -2)}${last.toString(16).padStart(2, "0")}` as Hex;
}

export const ZERO32: Hex = `0x${"00".repeat(32)}`;
