// Verifies PLED proof documents with OpenZeppelin's own JS library, as an auditor would:
//   node scripts/verify-proofs.mjs proofs.json
// proofs.json is a JSON array of proof documents (GET /v1/executions/{id}/ledger/{seq}/proof).
// For each, prints one line {"ok": bool, "leafHashMatches": bool}: `ok` is
// StandardMerkleTree.verify(root, leaf.encoding, leaf.values, proof); `leafHashMatches` says
// whether the library's leaf hash for those values equals the document's leaf.hash.
import { readFileSync } from "node:fs";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { standardLeafHash } from "@openzeppelin/merkle-tree/dist/hashes.js";

const docs = JSON.parse(readFileSync(process.argv[2], "utf8"));
for (const d of docs) {
  let ok = false;
  let leafHashMatches = false;
  try {
    ok = StandardMerkleTree.verify(d.root, d.leaf.encoding, d.leaf.values, d.proof);
    leafHashMatches = standardLeafHash(d.leaf.encoding, d.leaf.values) === d.leaf.hash;
  } catch (e) {
    ok = false;
  }
  console.log(JSON.stringify({ ok, leafHashMatches }));
}
