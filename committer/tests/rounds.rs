//! Rounds over real stores: every entry's proof verifies against its round's root, rounds
//! cover everything once, incremental rounds equal a tree built from scratch, and a round
//! interrupted by SIGKILL gets the same root after restart.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pled_committer::{CommitConfig, Committer, ProofAnswer, RoundRecord};
use pled_core::merkle::{MerkleTree, leaf_hash, to_0x};
use pled_core::{Body, ChainHead, ExecutionId, Kind, RecordedAt, SealedEntry, Seq};
use pled_store::{Append, Store, StoreOptions, Table, WriteSet};
use proptest::prelude::*;

fn entries(head: &mut ChainHead, n: usize) -> Vec<SealedEntry> {
    (0..n)
        .map(|_| {
            let e = head.next_entry(
                Kind::new("t").unwrap(),
                RecordedAt::now(),
                Body::from_json_str(&format!(r#"{{"n":{}}}"#, head.seq.get())).unwrap(),
            );
            head.advance(&e);
            e
        })
        .collect()
}

fn append(store: &Store, head: &mut ChainHead, n: usize) {
    store.write_blocking(WriteSet::new().append(Append::new(entries(head, n)).unwrap())).unwrap();
}

/// The root of a round computed the slow, obvious way: decode every entry of the round's feed
/// range and hash.
fn independent_root(store: &Store, r: &RoundRecord) -> String {
    let mut leaves = Vec::new();
    for item in store.feed(r.feed_from, (r.feed_to - r.feed_from) as usize).unwrap() {
        for e in store
            .entries(
                item.execution_id,
                Seq::new(item.first_seq.get() - 1),
                (item.last_seq.get() - item.first_seq.get() + 1) as usize,
            )
            .unwrap()
        {
            assert_eq!(e.entry().compute_hash(), e.hash());
            leaves.push(leaf_hash(&e.entry().execution_id, e.seq(), &e.hash()));
        }
    }
    to_0x(&MerkleTree::from_leaves(&leaves).root().unwrap())
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions { sync: false, ..Default::default() }).unwrap()
}

#[test]
fn every_entry_of_a_round_proves_against_its_root_and_later_ones_are_pending() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut heads: Vec<_> = (0..3).map(|_| ChainHead::genesis(ExecutionId::new_v7())).collect();
    for (i, h) in heads.iter_mut().enumerate() {
        append(&store, h, 3 + i);
    }
    let c = Committer::open(store.clone(), CommitConfig::default(), false).unwrap();
    assert_eq!(c.close_round().unwrap().map(|r| r.id), Some(1));
    assert!(c.close_round().unwrap().is_none(), "nothing pending, no round");
    let r1 = c.round(1).unwrap().unwrap();
    assert_eq!(r1.leaf_count, 3 + 4 + 5);
    assert_eq!(r1.root.as_deref(), Some(independent_root(&store, &r1).as_str()));

    append(&store, &mut heads[0], 2);
    for h in &heads {
        for seq in 1..=h.seq.get() {
            match c.proof(h.execution_id, Seq::new(seq)).unwrap() {
                ProofAnswer::Included(doc) => {
                    let v = doc.verify().unwrap();
                    assert_eq!(Some(to_0x(&v.root)), r1.root);
                }
                ProofAnswer::Pending { until_round } => {
                    assert_eq!(until_round, 2);
                    assert!(h.execution_id == heads[0].execution_id && seq > 3);
                }
            }
        }
    }
    let r2 = c.close_round().unwrap().unwrap();
    assert_eq!((r2.id, r2.leaf_count, r2.feed_from), (2, 2, r1.feed_to));
    assert!(matches!(c.proof(heads[0].execution_id, Seq::new(5)).unwrap(), ProofAnswer::Included(_)));
    assert!(c.proof(heads[0].execution_id, Seq::new(99)).is_err());
}

/// A round's index is written in slices of 2,048 appends: entries of the first, a middle
/// and the last slice all prove against the round's root.
#[test]
fn a_round_over_thousands_of_appends_proves_every_slice_of_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut heads: Vec<_> = (0..5_000).map(|_| ChainHead::genesis(ExecutionId::new_v7())).collect();
    let mut ws = WriteSet::new();
    for h in &mut heads {
        ws = ws.append(Append::new(entries(h, 2)).unwrap());
    }
    store.write_blocking(ws).unwrap();
    let c = Committer::open(store.clone(), CommitConfig::default(), false).unwrap();
    let r = c.close_round().unwrap().unwrap();
    assert_eq!(r.leaf_count, 10_000);
    assert_eq!(r.root.as_deref(), Some(independent_root(&store, &r).as_str()));
    for i in [0, 1, 2047, 2048, 3000, 4095, 4096, 4999] {
        for seq in [1, 2] {
            let ProofAnswer::Included(doc) = c.proof(heads[i].execution_id, Seq::new(seq)).unwrap() else {
                panic!("append {i} seq {seq}: not included");
            };
            assert_eq!(Some(to_0x(&doc.verify().unwrap().root)), r.root, "append {i} seq {seq}");
        }
    }
}

#[test]
fn rounds_close_at_max_round_entries_on_append_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut h = ChainHead::genesis(ExecutionId::new_v7());
    for _ in 0..10 {
        append(&store, &mut h, 3);
    }
    let c = Committer::open(store, CommitConfig { max_round_entries: 7, ..Default::default() }, false).unwrap();
    let sizes: Vec<u64> = std::iter::from_fn(|| c.close_round().unwrap()).map(|r| r.leaf_count).collect();
    assert_eq!(sizes, [9, 9, 9, 3]);
}

#[test]
fn per_execution_commitments_prove_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut h = ChainHead::genesis(ExecutionId::new_v7());
    append(&store, &mut h, 10);
    let c = Committer::open(store, CommitConfig::default(), false).unwrap();
    let first = c.commit_range(h.execution_id, None, Some(4), "test").unwrap();
    assert_eq!((first.id, first.range_start, first.range_end), (1, 1, 4));
    let second = c.commit_range(h.execution_id, None, None, "test").unwrap();
    assert_eq!((second.id, second.range_start, second.range_end), (2, 5, 10));
    let ProofAnswer::Included(doc) = c.commitment_proof(h.execution_id, Seq::new(7), 2).unwrap() else { panic!() };
    assert_eq!(to_0x(&doc.verify().unwrap().root), second.root);
    assert!(c.commitment_proof(h.execution_id, Seq::new(2), 2).is_err(), "outside the range");
    assert!(c.commit_range(h.execution_id, Some(5), Some(11), "test").is_err(), "beyond the head");
    assert!(c.commit_range(h.execution_id, Some(6), Some(5), "test").is_err(), "empty");
    assert_eq!(c.commitments(h.execution_id).unwrap().len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Rounds closed while appending, in any rhythm, equal trees built from scratch over the
    /// same entries, and cover every entry exactly once.
    #[test]
    fn incremental_rounds_equal_batch_trees(plan in prop::collection::vec((0usize..3, 1usize..6, any::<bool>()), 1..25), max in 1u64..20) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let c = Committer::open(store.clone(), CommitConfig { max_round_entries: max, ..Default::default() }, false).unwrap();
        let mut heads: Vec<_> = (0..3).map(|_| ChainHead::genesis(ExecutionId::new_v7())).collect();
        for (which, n, close) in plan {
            append(&store, &mut heads[which], n);
            if close {
                c.close_round().unwrap();
            }
        }
        while c.close_round().unwrap().is_some() {}
        let rounds = c.rounds_after(0, 1000).unwrap();
        let total: u64 = rounds.iter().map(|r| r.leaf_count).sum();
        prop_assert_eq!(total, heads.iter().map(|h| h.seq.get()).sum::<u64>());
        for w in rounds.windows(2) {
            prop_assert_eq!(w[0].feed_to, w[1].feed_from);
        }
        for r in &rounds {
            prop_assert_eq!(r.root.clone(), Some(independent_root(&store, r)));
        }
    }
}

const CHILD_ENV: &str = "PLED_ROUND_CHILD_DIR";

#[test]
fn child_closes_rounds() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let c = Committer::open(store, CommitConfig::default(), false).unwrap();
    println!("closing");
    c.close_round().unwrap();
    println!("closed");
    std::thread::sleep(Duration::from_secs(60));
}

/// The newest round record as stored (`r | round` in the commitments table); a round that
/// was planned but not built has no root.
fn last_round_record(store: &Store) -> Option<RoundRecord> {
    let last = [&[b'r'][..], &u64::MAX.to_be_bytes()].concat();
    store.seek_prev(Table::Commitments, b"r", &last).unwrap().map(|(_, v)| serde_json::from_slice(&v).unwrap())
}

/// Starts the child that closes one round; returns it and its output once it says "closing".
fn start_closing(exe: &std::path::Path, dir: &std::path::Path) -> (std::process::Child, impl Iterator<Item = String>) {
    let mut child = Command::new(exe)
        .args(["--exact", "child_closes_rounds", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
    assert!(lines.by_ref().any(|l| l.contains("closing")), "the child did not start closing");
    (child, lines)
}

#[test]
fn a_round_interrupted_by_sigkill_gets_the_same_root_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut heads: Vec<_> = (0..2).map(|_| ChainHead::genesis(ExecutionId::new_v7())).collect();
    let fill = |heads: &mut Vec<ChainHead>| {
        let store = open(dir.path());
        for h in heads.iter_mut() {
            for _ in 0..5 {
                append(&store, h, 2000);
            }
        }
    };
    // Calibration: how long closing a round of this size takes here, so that the kills below
    // land anywhere from before the plan to after the build.
    fill(&mut heads);
    let (mut child, mut lines) = start_closing(&exe, dir.path());
    let t = std::time::Instant::now();
    assert!(lines.any(|l| l.contains("closed")), "the calibration round did not close");
    let close_us = (t.elapsed().as_micros() as u64).max(1);
    child.kill().unwrap();
    child.wait().unwrap();

    let mut interrupted = 0;
    let mut checked = 0;
    for round in 0..10 {
        fill(&mut heads);
        let (mut child, _lines) = start_closing(&exe, dir.path());
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % close_us));
        child.kill().unwrap();
        child.wait().unwrap();
        // Interrupted mid-round: the round is planned (its range is durable) but not built.
        let store = open(dir.path());
        if last_round_record(&store).is_some_and(|r| r.root.is_none()) {
            interrupted += 1;
        }

        // Restart: a planned round is finished over the same range; then every round's root
        // equals the one computed from scratch.
        let c = Arc::new(Committer::open(store.clone(), CommitConfig::default(), false).unwrap());
        while c.close_round().unwrap().is_some() {}
        for r in c.rounds_after(checked, 1000).unwrap() {
            assert_eq!(r.root.clone(), Some(independent_root(&store, &r)), "round {} after kill {round}", r.id);
            checked = r.id;
        }
    }
    eprintln!("{interrupted} of 10 kills landed between a round's plan and its build (closing takes {close_us} µs)");
    assert!(interrupted > 0);
}
