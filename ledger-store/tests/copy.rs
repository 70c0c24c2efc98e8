#![allow(clippy::unwrap_used)]
//! Whole-store copies: what a backup beside a running server relies on.

mod common;

use common::entries;
use pled_core::{ChainHead, ExecutionId, SealedEntry};
use pled_store::verify::verify_store;
use pled_store::{Append, Head, Store, StoreError, StoreOptions, Table, WriteSet};

type Contents = (Vec<Head>, Vec<(ExecutionId, Vec<SealedEntry>)>, u64, Vec<(Table, usize)>);

/// Everything a store holds, through its read paths, to compare two stores.
fn contents(store: &Store) -> Contents {
    let heads = store.heads(None, usize::MAX).unwrap();
    let chains = heads
        .iter()
        .map(|h| (h.chain.execution_id, store.entries(h.chain.execution_id, pled_core::Seq::ZERO, usize::MAX).unwrap()))
        .collect();
    let tables = [Table::Snapshots, Table::Idempotency, Table::Meta, Table::Jobs, Table::Commitments, Table::Queue]
        .into_iter()
        .map(|t| (t, store.stored_records(t).unwrap()))
        .collect();
    (heads, chains, store.feed_head(), tables)
}

async fn fill(store: &Store, executions: usize, per: usize) -> Vec<ExecutionId> {
    let ids: Vec<ExecutionId> = (0..executions).map(|_| ExecutionId::new_v7()).collect();
    for id in &ids {
        let mut head = ChainHead::genesis(*id);
        for _ in 0..per {
            store.append(Append::new(entries(&mut head, 3)).unwrap()).await.unwrap();
        }
    }
    let set = (0..25).fold(WriteSet::new(), |ws, i| {
        ws.put(Table::Meta, format!("m/{i}"), "{}").put(Table::Idempotency, format!("k/{i}"), "{\"a\":1}")
    });
    store.write(set).await.unwrap();
    ids
}

#[tokio::test]
async fn a_copy_holds_every_record_and_opens_as_a_store_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    fill(&store, 4, 30).await;
    let out = tempfile::tempdir().unwrap();
    let copy_dir = out.path().join("copy");
    let mut reports = Vec::new();
    let (records, bytes) = store
        .copy_to(&copy_dir, |p| {
            if p.table_done {
                reports.push((p.table.to_owned(), p.records))
            }
        })
        .unwrap();
    // 4 executions × 30 appends: 120 entry records, 120 feed records, 4 heads; 25 meta, 25 keys.
    assert_eq!(records, 120 + 120 + 4 + 25 + 25);
    assert!(bytes > 0);
    assert_eq!(reports.len(), 9, "every column family: {reports:?}");
    assert_eq!(reports.last().unwrap().1, records);

    let copy = Store::open(&copy_dir, StoreOptions::default()).unwrap();
    assert_eq!(contents(&copy), contents(&store));
    assert_eq!(verify_store(&copy, |_| {}).unwrap().entries, 4 * 30 * 3);
    // The copy is a store of its own: it takes appends and leaves the original alone.
    let (id, _) = contents(&store).1[0].clone();
    let mut head = copy.chain_head(id).unwrap();
    copy.append(Append::new(entries(&mut head, 1)).unwrap()).await.unwrap();
    assert_eq!(store.chain_head(id).unwrap().seq.get(), 90);

    // It never writes into a directory that exists.
    let err = store.copy_to(&copy_dir, |_| {}).unwrap_err();
    assert!(matches!(&err, StoreError::Open { detail, .. } if detail.contains("already exists")), "{err}");
}

#[tokio::test]
async fn a_read_only_handle_copies_the_store_as_it_was_when_opened_while_the_server_writes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let ids = fill(&store, 3, 20).await;
    let reader = Store::open_read_only(dir.path()).unwrap();
    let before = contents(&store);
    // The writer goes on: more appends to the same chains, and a new one.
    for id in &ids {
        let mut head = store.chain_head(*id).unwrap();
        store.append(Append::new(entries(&mut head, 3)).unwrap()).await.unwrap();
    }
    fill(&store, 1, 5).await;

    let out = tempfile::tempdir().unwrap();
    reader.copy_to(&out.path().join("copy"), |_| {}).unwrap();
    let copy = Store::open(out.path().join("copy"), StoreOptions::default()).unwrap();
    assert_eq!(contents(&copy), before, "the view of the moment the reader opened");
    assert_ne!(contents(&store), before);
    assert_eq!(verify_store(&copy, |_| {}).unwrap().entries, 3 * 20 * 3);
}
