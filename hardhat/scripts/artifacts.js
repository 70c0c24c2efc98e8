// Exports / checks the committed contract artifacts in contracts/artifacts/.
//
//   node scripts/artifacts.js export   write contracts/artifacts/<Name>.json from hardhat/artifacts
//   node scripts/artifacts.js check    fail (exit 1) if they differ from hardhat/artifacts
//
// Run after `hardhat build --force` (the npm scripts do): a forced build compiles every
// source in one job, so the output depends only on the sources in the repo, not on the
// state of Hardhat's cache.
//
// The committed file is Hardhat's artifact (`hh3-artifact-1`: abi, bytecode,
// deployedBytecode, link and immutable references, ...) without `buildInfoId`: that names a
// build-info file under hardhat/artifacts/ (not committed) and changes with whatever else was
// compiled in the same job (e.g. a test mock), so it says nothing about the contract itself.
import { existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const CONTRACTS = ["PLEDRegistry", "PLEDToken"];
const DROPPED_FIELDS = ["buildInfoId"];

const hardhatDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const repoDir = path.resolve(hardhatDir, "..");
const outDir = path.join(repoDir, "contracts", "artifacts");

function built(name) {
  const file = path.join(hardhatDir, "artifacts", "contracts", `${name}.sol`, `${name}.json`);
  if (!existsSync(file)) {
    throw new Error(`${path.relative(repoDir, file)} is missing: run \`npx hardhat build\` first`);
  }
  const artifact = JSON.parse(readFileSync(file, "utf8"));
  for (const field of DROPPED_FIELDS) delete artifact[field];
  return artifact;
}

const render = (artifact) => JSON.stringify(artifact, null, 2) + "\n";

function describeDiff(committed, fresh) {
  const lines = [];
  const keys = new Set([...Object.keys(committed), ...Object.keys(fresh)]);
  for (const key of keys) {
    const a = JSON.stringify(committed[key]);
    const b = JSON.stringify(fresh[key]);
    if (a === b) continue;
    if (key === "abi") {
      const sigs = (abi) =>
        new Set(
          (abi ?? []).map(
            (it) => `${it.type} ${it.name ?? ""}(${(it.inputs ?? []).map((i) => i.type).join(",")})`,
          ),
        );
      const before = sigs(committed.abi);
      const after = sigs(fresh.abi);
      const removed = [...before].filter((s) => !after.has(s));
      const added = [...after].filter((s) => !before.has(s));
      lines.push(`    abi differs${removed.length || added.length ? ":" : " (names, outputs or mutability)"}`);
      for (const s of removed) lines.push(`      - ${s}`);
      for (const s of added) lines.push(`      + ${s}`);
    } else if (typeof committed[key] === "string" && typeof fresh[key] === "string") {
      const x = committed[key];
      const y = fresh[key];
      let i = 0;
      while (i < x.length && i < y.length && x[i] === y[i]) i++;
      let note = "";
      if (x.length === y.length && (key === "bytecode" || key === "deployedBytecode")) {
        // solc appends CBOR metadata (hash of the metadata, which hashes the sources); its
        // length is the last two bytes. A difference only there means the source text
        // changed (comments, NatSpec) but not the code.
        const cborHexChars = (parseInt(y.slice(-4), 16) + 2) * 2;
        if (i >= y.length - cborHexChars) note = "; only the trailing metadata hash: source text changed, code did not";
      }
      lines.push(
        `    ${key} differs (committed ${x.length} chars, fresh ${y.length} chars; first difference at char ${i}${note})`,
      );
    } else {
      lines.push(`    ${key} differs: committed ${a ?? "(absent)"} vs fresh ${b ?? "(absent)"}`);
    }
  }
  return lines;
}

function exportArtifacts() {
  mkdirSync(outDir, { recursive: true });
  for (const name of CONTRACTS) {
    const file = path.join(outDir, `${name}.json`);
    const text = render(built(name));
    const old = existsSync(file) ? readFileSync(file, "utf8") : undefined;
    if (old === text) {
      console.log(`unchanged ${path.relative(repoDir, file)}`);
    } else {
      writeFileSync(file, text);
      console.log(`wrote     ${path.relative(repoDir, file)}`);
    }
  }
}

function checkArtifacts() {
  const problems = [];
  for (const name of CONTRACTS) {
    const file = path.join(outDir, `${name}.json`);
    const rel = path.relative(repoDir, file);
    const fresh = built(name);
    if (!existsSync(file)) {
      problems.push(`  ${rel} is missing`);
      continue;
    }
    const text = readFileSync(file, "utf8");
    if (text === render(fresh)) {
      console.log(`ok ${rel}`);
      continue;
    }
    let committed;
    try {
      committed = JSON.parse(text);
    } catch (e) {
      problems.push(`  ${rel} is not valid JSON: ${e.message}`);
      continue;
    }
    const details = describeDiff(committed, fresh);
    problems.push(`  ${rel} differs from a fresh compile of contracts/solidity/${name}.sol:`);
    problems.push(...(details.length ? details : ["    formatting only"]));
  }
  if (problems.length > 0) {
    console.error("contract artifacts are out of date:");
    for (const p of problems) console.error(p);
    console.error("fix: cd hardhat && npm run export-artifacts, then commit contracts/artifacts/");
    process.exit(1);
  }
  console.log("contract artifacts match a fresh compile");
}

const mode = process.argv[2];
if (mode === "export") exportArtifacts();
else if (mode === "check") checkArtifacts();
else {
  console.error("usage: node scripts/artifacts.js export|check");
  process.exit(2);
}
