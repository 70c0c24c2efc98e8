//! Inclusion proofs: generating one (`Committer::proof`, what `GET …/ledger/{seq}/proof`
//! runs) for random entries of a closed 100,000-entry round, and verifying a proof document
//! (`ProofDocument::verify`: the entry's hash, its leaf, the path to the root), with
//! latency percentiles over many single calls; building (closing) rounds of 100k and 1M
//! entries; and the Merkle leaves of 4,096 entries on one core, one leaf at a time
//! (`leaf_hash`, alloy's scalar keccak) and four at a time (`hash_leaves`).

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use pled_benches::{execution, seal_run};
use pled_committer::{CommitConfig, Committer, ProofAnswer};
use pled_core::merkle::{hash_leaves, leaf_hash};
use pled_core::proof::ProofDocument;
use pled_core::{ChainHead, EntryHash, RecordedAt, Seq};
use pled_store::{Append, Store, StoreOptions, WriteSet};

const EXECUTIONS: u64 = 100;
const PER_EXECUTION: u64 = 1_000;

fn proof(c: &Committer, i: u64) -> ProofDocument {
    let (e, s) = (execution(i % EXECUTIONS), Seq::new(1 + (i * 7919) % PER_EXECUTION));
    match c.proof(e, s).unwrap() {
        ProofAnswer::Included(d) => *d,
        ProofAnswer::Pending { .. } => panic!("entry not in a round"),
    }
}

/// p50/p99 of `n` single calls, printed next to criterion's mean.
fn percentiles(name: &str, n: u64, mut f: impl FnMut(u64)) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    for i in 0..n {
        let t = Instant::now();
        f(i);
        h.record(t.elapsed().as_nanos().max(1) as u64).unwrap();
    }
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    eprintln!(
        "{name}: {n} calls, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        us(0.5),
        us(0.99),
        h.max() as f64 / 1000.0
    );
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let committer =
        Committer::open(store.clone(), CommitConfig { max_round_entries: u64::MAX, ..Default::default() }, false)
            .unwrap();
    let at = RecordedAt::now();
    for i in 0..EXECUTIONS {
        let mut head = ChainHead::genesis(execution(i));
        let run = seal_run(&mut head, PER_EXECUTION as usize, &at);
        store.write_blocking(WriteSet::new().append(Append::new(run).unwrap())).unwrap();
    }
    let round = committer.close_round().unwrap().unwrap();
    assert_eq!(round.leaf_count, EXECUTIONS * PER_EXECUTION);
    // The first proof loads the round's tree into the cache, as the first request would.
    let first = Instant::now();
    proof(&committer, 0).verify().unwrap();
    eprintln!("first proof of the round (loads its tree): {:?}", first.elapsed());

    percentiles("proof generation, 100k-entry round", 20_000, |i| {
        proof(&committer, i);
    });
    let docs: Vec<_> = (0..1_000).map(|i| proof(&committer, i)).collect();
    percentiles("proof verification", 20_000, |i| {
        docs[i as usize % docs.len()].verify().unwrap();
    });

    let mut g = c.benchmark_group("proof");
    g.measurement_time(Duration::from_secs(5));
    let mut i = 0;
    g.bench_function("generate/round=100k", |b| {
        b.iter(|| {
            i += 1;
            proof(&committer, i)
        })
    });
    g.bench_function("verify/round=100k", |b| {
        b.iter(|| {
            i += 1;
            docs[i as usize % docs.len()].verify().unwrap()
        })
    });
    g.finish();
}

/// Closing a round (`Committer::close_round`: the feed records of every append since the last
/// round, their entries' leaves, the tree, the root, the index and the round record) over 100k
/// and 1M fresh entries. The appends before each close are not timed.
fn round_build(c: &mut Criterion) {
    // The committer logs each round's phases (read, leaves, tree, write).
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter("pled_committer=info").try_init();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions { sync: false, ..Default::default() }).unwrap();
    let committer =
        Committer::open(store.clone(), CommitConfig { max_round_entries: u64::MAX, ..Default::default() }, false)
            .unwrap();
    let at = RecordedAt::now();
    let mut heads: Vec<ChainHead> = (0..100).map(|i| ChainHead::genesis(execution(10_000 + i))).collect();
    // Appends of 4 entries (one event's worth), as the service makes them: a round reads one
    // feed record per append.
    let mut append = |entries: u64| {
        for _ in 0..entries / (4 * heads.len() as u64) {
            let ws =
                heads.iter_mut().fold(WriteSet::new(), |ws, h| ws.append(Append::new(seal_run(h, 4, &at)).unwrap()));
            store.write_blocking(ws).unwrap();
        }
    };
    let mut close = |entries: u64| {
        append(entries);
        let t = Instant::now();
        let r = committer.close_round().unwrap().unwrap();
        assert_eq!(r.leaf_count, entries);
        t.elapsed()
    };
    // 1M: three closes, timed one by one (ten criterion samples would write 10M entries).
    let mut runs: Vec<Duration> = (0..3).map(|_| close(1_000_000)).collect();
    runs.sort();
    eprintln!("round build, 1,000,000 entries: {:?} (best of 3), {:?} (worst)", runs[0], runs[2]);
    let mut g = c.benchmark_group("round");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(criterion::Throughput::Elements(100_000));
    g.bench_function("build/entries=100000", |b| b.iter_custom(|iters| (0..iters).map(|_| close(100_000)).sum()));
    g.finish();
}

fn leaves(c: &mut Criterion) {
    let id = execution(1);
    let hashes: Vec<EntryHash> = (0..4096u32).map(|i| EntryHash::from_bytes([(i % 251) as u8; 32])).collect();
    let mut g = c.benchmark_group("leaves");
    g.throughput(criterion::Throughput::Elements(hashes.len() as u64));
    g.bench_function("one-at-a-time/4096", |b| {
        b.iter(|| hashes.iter().enumerate().map(|(i, h)| leaf_hash(&id, Seq::new(i as u64 + 1), h)).collect::<Vec<_>>())
    });
    g.bench_function("four-at-a-time/4096", |b| b.iter(|| hash_leaves(&[(id, Seq::FIRST, &hashes)])));
    g.finish();
}

criterion_group!(proof_benches, benches, round_build, leaves);
criterion_main!(proof_benches);
