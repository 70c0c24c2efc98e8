//! Durable appends through the group-commit writer, and reads. Every append here is synced
//! (`StoreOptions::default()`), as in production.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pled_benches::{execution, seal_run};
use pled_core::{ChainHead, RecordedAt, Seq};
use pled_store::{Append, Store, StoreOptions};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One caller (or a few) appending runs of `batch` entries, each append synced.
fn append_batches(c: &mut Criterion) {
    let rt = runtime();
    let at = RecordedAt::now();
    let mut g = c.benchmark_group("append");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for (batch, callers) in [(1usize, 1usize), (100, 1), (1000, 1), (1000, 4)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut heads: Vec<_> = (0..callers as u64).map(|i| ChainHead::genesis(execution(i))).collect();
        g.throughput(Throughput::Elements((batch * callers) as u64));
        let id = BenchmarkId::from_parameter(format!("batch={batch}/callers={callers}"));
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    // Sealing (hashing) and an append's Merkle leaves are the callers' work,
                    // done in parallel lanes; this measures what the store adds: grouping, the
                    // write and the sync.
                    let runs: Vec<_> =
                        heads.iter_mut().map(|h| Append::new(seal_run(h, batch, &at)).unwrap()).collect();
                    let start = Instant::now();
                    rt.block_on(async {
                        let pending: Vec<_> = runs
                            .into_iter()
                            .map(|a| {
                                let s = store.clone();
                                tokio::spawn(async move { s.append(a).await.unwrap() })
                            })
                            .collect();
                        for p in pending {
                            p.await.unwrap();
                        }
                    });
                    spent += start.elapsed();
                }
                spent
            })
        });
    }
    g.finish();
}

/// 64 concurrent writers, each appending one entry at a time to its own execution and
/// waiting for the sync before the next: the group-commit case.
fn append_concurrent(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("append_concurrent");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    const WRITERS: u64 = 64;
    const PER_WRITER: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    g.throughput(Throughput::Elements(WRITERS * PER_WRITER as u64));
    g.bench_function(BenchmarkId::from_parameter(format!("writers={WRITERS}/entries=1")), |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..WRITERS)
                    .map(|w| {
                        let store = store.clone();
                        tokio::spawn(async move {
                            let id = execution(1000 + w);
                            let mut head = store.chain_head(id).unwrap();
                            let at = RecordedAt::now();
                            for _ in 0..PER_WRITER {
                                let run = seal_run(&mut head, 1, &at);
                                store.append(Append::new(run).unwrap()).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    });
    g.finish();
    let s = store.writer_stats();
    let (groups, sets) =
        (s.groups.load(std::sync::atomic::Ordering::Relaxed), s.sets.load(std::sync::atomic::Ordering::Relaxed));
    eprintln!(
        "append_concurrent: {sets} appends in {groups} synced groups ({:.1} per sync)",
        sets as f64 / groups.max(1) as f64
    );
}

/// Reads: one entry, a page of 100, with 1,000 executions x 1,000 entries in the store.
fn reads(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions { sync: false, ..Default::default() }).unwrap();
    let at = RecordedAt::now();
    rt.block_on(async {
        for i in 0..1000 {
            let mut head = ChainHead::genesis(execution(i));
            store.append(Append::new(seal_run(&mut head, 1000, &at)).unwrap()).await.unwrap();
        }
    });
    let mut g = c.benchmark_group("read");
    let mut n = 0u64;
    g.bench_function("entry", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919);
            store.entry(execution(n % 1000), Seq::new(1 + n % 1000)).unwrap().unwrap()
        })
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("page/limit=100", |b| {
        b.iter(|| {
            n = n.wrapping_add(7919);
            let page = store.entries(execution(n % 1000), Seq::new(n % 900), 100).unwrap();
            assert_eq!(page.len(), 100);
            page
        })
    });
    g.finish();
}

criterion_group!(benches, append_batches, append_concurrent, reads);
criterion_main!(benches);
