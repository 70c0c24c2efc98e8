#![allow(clippy::unwrap_used)]
//! Many writers at once, to the same and to different executions: seqs stay contiguous, no
//! chain forks, no acknowledged write is lost.

mod common;

use std::collections::HashSet;

use common::append_one;
use pled_core::{ExecutionId, Seq};
use pled_store::verify::verify_store;
use pled_store::{Store, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_never_fork_and_never_lose_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let shared = ExecutionId::new_v7();
    let own: Vec<_> = (0..48).map(|_| ExecutionId::new_v7()).collect();
    const PER_TASK: usize = 20;

    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        // 16 tasks race on one execution; 48 have one each.
        let target = if i < 16 { shared } else { own[i - 16] };
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for _ in 0..PER_TASK {
                acked.push(append_one(&store, target).await);
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }

    // Every acknowledged entry is in the store, exactly as acknowledged.
    for e in &acked {
        let id = e.entry().execution_id;
        assert_eq!(store.entry(id, e.seq()).unwrap().as_ref(), Some(e));
    }
    // The shared chain has exactly one entry per acknowledged append, seqs 1..=n.
    let chain: Vec<_> = store.iter_entries(shared, Seq::FIRST).map(Result::unwrap).collect();
    assert_eq!(chain.len(), 16 * PER_TASK);
    assert!(chain.iter().enumerate().all(|(i, e)| e.seq() == Seq::new(i as u64 + 1)));
    let hashes: HashSet<_> = acked.iter().map(|e| e.hash()).collect();
    assert_eq!(hashes.len(), 64 * PER_TASK);

    let totals = verify_store(&store, |_| {}).unwrap();
    assert_eq!((totals.executions, totals.entries), (49, (64 * PER_TASK) as u64));
    // Group commit did group: fewer syncs than write sets.
    let stats = store.writer_stats();
    let (groups, sets) = (
        stats.groups.load(std::sync::atomic::Ordering::Relaxed),
        stats.sets.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert_eq!(sets, (64 * PER_TASK) as u64);
    assert!(groups < sets, "{groups} groups for {sets} sets");
}
