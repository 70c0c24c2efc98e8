//! Evidence bundles: everything an auditor needs about one execution, self-contained and
//! checkable offline (`pled audit verify`). JSON Lines, in this order:
//!
//! 1. `{"type":"header","format":"pled-evidence-v1", "execution": {…}, "template": {…}, …}`:
//!    the execution record and the full template version it runs;
//! 2. one `{"type":"entry","entry":{…export form…},"proof":{…}|null}` per ledger entry, in seq
//!    order, with its inclusion proof (`round`, `leafIndex`, `path`) or `null` while pending;
//! 3. one `{"type":"round",…}` per round the proofs refer to (root, leaf count, anchoring);
//! 4. one `{"type":"commitment",…}` per per-execution commitment;
//! 5. `{"type":"trailer","entries":N,"digest":"<BLAKE3 hex of every preceding line, each with
//!    its newline>"}`.
//!
//! Verification re-hashes every entry, checks the chain, checks every proof against its
//! round's root, re-computes every commitment root from the entries, checks the template
//! hash against the `execution.created` entry, and finally the digest, so any changed byte is
//! found, and named.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use pled_committer::{Committer, ProofAnswer};
use pled_core::merkle::{MerkleTree, from_0x, hash_leaves, leaf_hash, process_proof, to_0x};
use pled_core::proof::Scope;
use pled_core::{ChainVerifier, EntryHash, ExecutionId, SealedEntry, Seq};
use pled_store::Store;
use serde_json::{Value, json};

use crate::repo::executions::ExecutionRecord;
use crate::repo::templates;

/// Writes an execution's evidence bundle. `progress` is called with the entries written so
/// far, every 10,000 entries.
pub fn export(
    store: &Store,
    committer: &Committer,
    record: &ExecutionRecord,
    out: &mut dyn Write,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<u64> {
    let version = templates::get_version(store, &record.org, &record.template_id, record.version)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("template version {}/{} is missing", record.template_id, record.version))?;
    let mut digest = blake3::Hasher::new();
    let mut line = |v: &Value, out: &mut dyn Write| -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec(v)?;
        bytes.push(b'\n');
        digest.update(&bytes);
        out.write_all(&bytes)?;
        Ok(())
    };
    line(
        &json!({ "type": "header", "format": "pled-evidence-v1", "generatedAt": pled_core::RecordedAt::now(), "execution": record, "template": version }),
        out,
    )?;
    let mut rounds = BTreeSet::new();
    let mut n = 0u64;
    for entry in store.iter_entries(record.id, Seq::FIRST) {
        let entry = entry?;
        let proof = match committer.proof(record.id, entry.seq())? {
            ProofAnswer::Included(doc) => match doc.scope {
                Scope::Round { round, leaf_index, .. } => {
                    rounds.insert(round);
                    json!({ "round": round, "leafIndex": leaf_index, "path": doc.proof })
                }
                Scope::Commitment { .. } => Value::Null,
            },
            ProofAnswer::Pending { .. } => Value::Null,
        };
        line(&json!({ "type": "entry", "entry": entry, "proof": proof }), out)?;
        n += 1;
        if n.is_multiple_of(10_000) {
            progress(n);
        }
    }
    for id in rounds {
        let r = committer.round(id)?.ok_or_else(|| anyhow::anyhow!("round {id} is missing"))?;
        let mut v = serde_json::to_value(&r)?;
        v["type"] = json!("round");
        line(&v, out)?;
    }
    for c in committer.commitments(record.id)? {
        let mut v = serde_json::to_value(&c)?;
        v["type"] = json!("commitment");
        line(&v, out)?;
    }
    let trailer = json!({ "type": "trailer", "entries": n, "digest": digest.finalize().to_hex().to_string() });
    let mut bytes = serde_json::to_vec(&trailer)?;
    bytes.push(b'\n');
    out.write_all(&bytes)?;
    progress(n);
    Ok(n)
}

/// What a verified bundle established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The execution.
    pub execution_id: ExecutionId,
    /// Entries, all re-hashed and chained.
    pub entries: u64,
    /// The chain's head hash.
    pub head_hash: String,
    /// Entries whose inclusion proof verified against their round's root.
    pub proven: u64,
    /// Entries not yet in a round when the bundle was made.
    pub pending: u64,
    /// Rounds and their roots and anchoring status.
    pub rounds: Vec<(u64, String, String)>,
    /// Commitments whose roots were re-computed from the entries.
    pub commitments: u64,
    /// Template id, version and hash (checked against `execution.created`).
    pub template: (String, u64, String),
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "evidence for execution {}: VERIFIED", self.execution_id)?;
        writeln!(
            f,
            "  template {} version {} (hash {}) matches the execution.created entry",
            self.template.0, self.template.1, self.template.2
        )?;
        writeln!(f, "  {} entries re-hashed; the chain is intact up to head {}", self.entries, self.head_hash)?;
        writeln!(
            f,
            "  {} entries proven in {} round(s); {} pending (not yet in a round)",
            self.proven,
            self.rounds.len(),
            self.pending
        )?;
        for (id, root, status) in &self.rounds {
            writeln!(f, "    round {id}: root {root} ({status})")?;
        }
        writeln!(f, "  {} per-execution commitment(s) re-computed from the entries", self.commitments)?;
        write!(f, "  bundle digest matches")
    }
}

/// Verifies a bundle; the error names the first thing that does not hold.
pub fn verify(text: &str) -> anyhow::Result<Summary> {
    use anyhow::{Context, bail, ensure};
    let mut lines = text.split_inclusive('\n').enumerate().peekable();
    let mut digest = blake3::Hasher::new();
    let parse =
        |no: usize, l: &str| serde_json::from_str::<Value>(l).with_context(|| format!("line {}: not JSON", no + 1));

    let (no, first) = lines.next().context("empty bundle")?;
    let header = parse(no, first)?;
    ensure!(
        header["type"] == "header" && header["format"] == "pled-evidence-v1",
        "line 1: not a pled-evidence-v1 header"
    );
    digest.update(first.as_bytes());
    let execution_id: ExecutionId = header["execution"]["id"].as_str().context("header: execution.id")?.parse()?;
    let template: pled_engine::Template =
        serde_json::from_value(header["template"]["template"].clone()).context("header: template")?;
    let template_hash = pled_engine::template_hash(&template).map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        header["template"]["templateHash"] == template_hash.as_str(),
        "header: the template does not hash to its templateHash (the template was changed)"
    );

    let mut chain = ChainVerifier::new(execution_id);
    let mut entries: Vec<SealedEntry> = Vec::new();
    let mut proofs: Vec<(usize, u64, u64, Vec<[u8; 32]>)> = Vec::new();
    let mut rounds: BTreeMap<u64, Value> = BTreeMap::new();
    let mut commitments = Vec::new();
    let mut trailer = None;
    for (no, l) in lines {
        let v = parse(no, l)?;
        let at = format!("line {}", no + 1);
        match v["type"].as_str() {
            Some("entry") => {
                digest.update(l.as_bytes());
                let e = SealedEntry::from_export_value(&v["entry"]).with_context(|| format!("{at}: entry"))?;
                chain.push(&e).map_err(|err| anyhow::anyhow!("{at}: {err}"))?;
                if !v["proof"].is_null() {
                    let p = &v["proof"];
                    let path = p["path"]
                        .as_array()
                        .with_context(|| format!("{at}: proof.path"))?
                        .iter()
                        .map(|h| {
                            h.as_str().and_then(from_0x::<32>).with_context(|| format!("{at}: proof.path element"))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    proofs.push((
                        entries.len(),
                        p["round"].as_u64().with_context(|| format!("{at}: proof.round"))?,
                        p["leafIndex"].as_u64().with_context(|| format!("{at}: proof.leafIndex"))?,
                        path,
                    ));
                }
                entries.push(e);
            }
            Some("round") => {
                digest.update(l.as_bytes());
                rounds.insert(v["id"].as_u64().with_context(|| format!("{at}: round id"))?, v);
            }
            Some("commitment") => {
                digest.update(l.as_bytes());
                commitments.push((at, v));
            }
            Some("trailer") => trailer = Some(v),
            _ => bail!("{at}: unknown line type"),
        }
    }
    let head = chain.finish(None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let created = entries.first().context("the bundle has no entries")?;
    ensure!(created.entry().kind.as_str() == "execution.created", "entry 1 is not execution.created");
    let body = created.entry().body.to_value()?;
    ensure!(
        body["templateHash"] == template_hash.as_str(),
        "the template in the header is not the one execution.created names ({})",
        body["templateHash"]
    );

    for (i, round, leaf_index, path) in &proofs {
        let e = &entries[*i];
        let r = rounds
            .get(round)
            .with_context(|| format!("entry {}: its proof names round {round}, which the bundle lacks", e.seq()))?;
        let root = r["root"].as_str().and_then(from_0x::<32>).with_context(|| format!("round {round}: root"))?;
        ensure!(
            *leaf_index < r["leafCount"].as_u64().unwrap_or(0),
            "entry {}: leaf index {leaf_index} outside round {round}",
            e.seq()
        );
        let leaf = leaf_hash(&execution_id, e.seq(), &e.hash());
        ensure!(
            process_proof(&leaf, path) == root,
            "entry {}: its proof does not lead to the root of round {round}",
            e.seq()
        );
    }
    for (at, c) in &commitments {
        let (start, end) = (c["rangeStart"].as_u64().unwrap_or(0), c["rangeEnd"].as_u64().unwrap_or(0));
        ensure!(
            start >= 1 && start <= end && end as usize <= entries.len(),
            "{at}: commitment range {start}..={end} is not within the bundle's entries"
        );
        // The chain check above made entry i the one at seq i + 1.
        let hashes: Vec<EntryHash> = entries[start as usize - 1..end as usize].iter().map(SealedEntry::hash).collect();
        let leaves = hash_leaves(&[(execution_id, Seq::new(start), &hashes)]);
        let root = MerkleTree::from_leaves(&leaves).root().map(|r| to_0x(&r));
        ensure!(root.as_deref() == c["root"].as_str(), "{at}: commitment {} root does not match its entries", c["id"]);
    }
    let trailer = trailer.context("the bundle has no trailer (truncated?)")?;
    ensure!(
        trailer["entries"].as_u64() == Some(entries.len() as u64),
        "trailer: it says {} entries, the bundle has {}",
        trailer["entries"],
        entries.len()
    );
    ensure!(
        trailer["digest"].as_str() == Some(digest.finalize().to_hex().as_str()),
        "trailer: the bundle digest does not match (a line was changed after export)"
    );
    Ok(Summary {
        execution_id,
        entries: entries.len() as u64,
        head_hash: head.hash.to_hex(),
        proven: proofs.len() as u64,
        pending: (entries.len() - proofs.len()) as u64,
        rounds: rounds
            .values()
            .map(|r| {
                (
                    r["id"].as_u64().unwrap_or(0),
                    r["root"].as_str().unwrap_or("").to_owned(),
                    r["anchor"]["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect(),
        commitments: commitments.len() as u64,
        template: (
            header["template"]["templateId"].as_str().unwrap_or("").to_owned(),
            header["template"]["version"].as_u64().unwrap_or(0),
            template_hash,
        ),
    })
}
