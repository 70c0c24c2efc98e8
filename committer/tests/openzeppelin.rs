//! Proofs from PLED verify with OpenZeppelin's own code, run here: `@openzeppelin/merkle-tree`'s
//! `StandardMerkleTree.verify` (Node) accepts every proof of rounds of 1, 2, 3, 5, 8 and
//! 100,000 entries, and refuses a tampered proof, entry, leaf or root.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use pled_committer::{CommitConfig, Committer, ProofAnswer};
use pled_core::merkle::to_0x;
use pled_core::proof::ProofDocument;
use pled_core::{Body, ChainHead, ExecutionId, Kind, RecordedAt, Seq};
use pled_store::{Append, Store, StoreOptions, WriteSet};

fn hardhat() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("hardhat")
}

/// Runs the OpenZeppelin verifier over documents; one (ok, leafHashMatches) per document.
fn openzeppelin_verify(docs: &[ProofDocument]) -> Vec<(bool, bool)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proofs.json");
    std::fs::write(&file, serde_json::to_vec(docs).unwrap()).unwrap();
    let node = hardhat().join(".node/node_modules/.bin/node");
    let out = Command::new(&node)
        .arg("scripts/verify-proofs.mjs")
        .arg(&file)
        .current_dir(hardhat())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup-hardhat.sh)", node.display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["ok"].as_bool().unwrap(), v["leafHashMatches"].as_bool().unwrap())
        })
        .collect()
}

/// A store with one round per size, entries spread over three executions.
/// The entries of each round, by (execution, seq).
type Members = Vec<Vec<(ExecutionId, Seq)>>;

fn rounds(sizes: &[usize]) -> (tempfile::TempDir, std::sync::Arc<Committer>, Members) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions { sync: false, ..Default::default() }).unwrap();
    let c = Committer::open(store.clone(), CommitConfig { max_round_entries: u64::MAX, ..Default::default() }, false)
        .unwrap();
    let mut heads: Vec<_> = (0..3).map(|_| ChainHead::genesis(ExecutionId::new_v7())).collect();
    let mut per_round = Vec::new();
    for &size in sizes {
        let mut members = Vec::new();
        let mut left = size;
        let mut turn = 0;
        while left > 0 {
            let n = left.min(1000);
            let h = &mut heads[turn % 3];
            let run: Vec<_> = (0..n)
                .map(|_| {
                    let e = h.next_entry(
                        Kind::new("oz").unwrap(),
                        RecordedAt::now(),
                        Body::from_json_str(r#"{"x":1}"#).unwrap(),
                    );
                    h.advance(&e);
                    members.push((e.entry().execution_id, e.seq()));
                    e
                })
                .collect();
            store.write_blocking(WriteSet::new().append(Append::new(run).unwrap())).unwrap();
            left -= n;
            turn += 1;
        }
        let r = c.close_round().unwrap().unwrap();
        assert_eq!(r.leaf_count as usize, size);
        per_round.push(members);
    }
    (dir, c, per_round)
}

fn doc(c: &Committer, (e, s): (ExecutionId, Seq)) -> ProofDocument {
    match c.proof(e, s).unwrap() {
        ProofAnswer::Included(d) => *d,
        ProofAnswer::Pending { .. } => panic!("entry not in a round"),
    }
}

#[test]
fn openzeppelin_accepts_every_proof_of_small_rounds() {
    let (_dir, c, members) = rounds(&[1, 2, 3, 5, 8, 13]);
    let docs: Vec<_> = members.iter().flatten().map(|m| doc(&c, *m)).collect();
    let results = openzeppelin_verify(&docs);
    assert_eq!(results.len(), 32);
    assert!(results.iter().all(|r| *r == (true, true)), "{results:?}");
}

#[test]
fn openzeppelin_accepts_proofs_of_a_100k_round_and_refuses_tampering() {
    let (_dir, c, members) = rounds(&[100_000]);
    let all = &members[0];
    // Every 997th leaf, plus both ends.
    let mut picks: Vec<_> = all.iter().step_by(997).copied().collect();
    picks.push(*all.last().unwrap());
    let docs: Vec<_> = picks.iter().map(|m| doc(&c, *m)).collect();
    // 2^16 < 100,000 <= 2^17; a leaf whose subtree has no sibling moves up without one.
    assert!(docs.iter().all(|d| d.proof.len() <= 17) && docs[0].proof.len() == 17);
    let results = openzeppelin_verify(&docs);
    assert!(results.iter().all(|r| *r == (true, true)), "{results:?}");

    let base = docs[1].clone();
    let mut tampered = Vec::new();
    let mut t = base.clone();
    t.proof[3] = to_0x(&[7u8; 32]);
    tampered.push(t); // a sibling changed
    let mut t = base.clone();
    t.leaf.values[2] = to_0x(&[9u8; 32]);
    tampered.push(t); // another entry hash (a changed entry)
    let mut t = base.clone();
    t.leaf.values[1] = (base.seq().unwrap().get() + 1).to_string();
    tampered.push(t); // another seq
    let mut t = base.clone();
    t.root = to_0x(&[1u8; 32]);
    tampered.push(t); // another root
    let mut t = base.clone();
    t.proof.pop();
    tampered.push(t); // a shortened path
    let results = openzeppelin_verify(&tampered);
    assert!(results.iter().all(|r| !r.0), "every tampered proof must fail: {results:?}");
    // And PLED's own verifier names each failure.
    assert!(tampered.iter().all(|t| t.verify().is_err()));
}
