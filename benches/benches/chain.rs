//! Chain verification: in memory (the pure hashing and linking rules) and over a RocksDB store
//! of 1M entries (what `pled verify` does).

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pled_benches::{execution, seal_run};
use pled_core::{ChainHead, RecordedAt, verify_chain};
use pled_store::verify::verify_store;
use pled_store::{Append, Store, StoreOptions};

const ENTRIES: usize = 1_000_000;

fn seal(c: &mut Criterion) {
    let at = RecordedAt::now();
    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("entries=1000", |b| {
        let mut head = ChainHead::genesis(execution(1));
        b.iter(|| seal_run(&mut head, 1000, &at))
    });
    g.finish();
}

fn verify_memory(c: &mut Criterion) {
    let at = RecordedAt::now();
    let mut head = ChainHead::genesis(execution(1));
    let chain = seal_run(&mut head, ENTRIES, &at);
    let mut g = c.benchmark_group("verify");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Elements(ENTRIES as u64));
    g.bench_function("memory/entries=1M", |b| b.iter(|| verify_chain(execution(1), &chain).unwrap()));
    g.finish();
}

fn verify_rocksdb(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions { sync: false, ..Default::default() }).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let at = RecordedAt::now();
    // 100 executions x 10,000 entries.
    rt.block_on(async {
        for i in 0..100 {
            let mut head = ChainHead::genesis(execution(i));
            for _ in 0..10 {
                store.append(Append::new(seal_run(&mut head, 1000, &at)).unwrap()).await.unwrap();
            }
        }
    });
    let mut g = c.benchmark_group("verify");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(ENTRIES as u64));
    g.bench_function("rocksdb/entries=1M", |b| {
        b.iter(|| assert_eq!(verify_store(&store, |_| {}).unwrap().entries, ENTRIES as u64))
    });
    g.finish();
}

criterion_group!(benches, seal, verify_memory, verify_rocksdb);
criterion_main!(benches);
