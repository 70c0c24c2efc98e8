#![allow(clippy::unwrap_used)]
//! Appends and every read path, including the refusals: stale seqs, forks, bad runs.

mod common;

use common::entries;
use pled_core::merkle::leaf_hash;
use pled_core::{ChainHead, EntryHash, ExecutionId, Seq};
use pled_store::{Append, Store, StoreError, StoreOptions, Table, WriteSet};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), StoreOptions::default()).unwrap()
}

#[tokio::test]
async fn appends_are_readable_by_every_path_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = ExecutionId::new_v7();
    let mut head = ChainHead::genesis(id);
    let first = entries(&mut head, 5);
    let second = entries(&mut head, 3);
    {
        let store = open(&dir);
        let a = store.append(Append::new(first.clone()).unwrap().with_state(b"s1".to_vec())).await.unwrap();
        assert_eq!(
            (a.first_seq, a.last_seq, a.last_hash, a.feed_position),
            (Seq::new(1), Seq::new(5), first[4].hash(), 1)
        );
        let b = store.append(Append::new(second.clone()).unwrap()).await.unwrap();
        assert_eq!((b.first_seq, b.last_seq, b.feed_position), (Seq::new(6), Seq::new(8), 2));
    }
    let store = open(&dir);
    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_eq!(store.entry(id, Seq::new(3)).unwrap().as_ref(), Some(&all[2]));
    assert_eq!(store.entry(id, Seq::new(9)).unwrap(), None);
    assert_eq!(store.entries(id, Seq::new(2), 3).unwrap(), all[2..5].to_vec());
    assert_eq!(store.entries(id, Seq::new(7), 100).unwrap(), all[7..].to_vec());
    assert!(store.entries(id, Seq::new(8), 100).unwrap().is_empty());
    let iterated: Vec<_> = store.iter_entries(id, Seq::FIRST).map(Result::unwrap).collect();
    assert_eq!(iterated, all);
    let h = store.head(id).unwrap().unwrap();
    assert_eq!(h.chain, head);
    assert_eq!(h.state, b"s1", "an append without state keeps the previous state");
    let feed = store.feed(0, 10).unwrap();
    assert_eq!(feed.len(), 2);
    assert_eq!((feed[1].position, feed[1].first_seq, feed[1].last_seq), (2, Seq::new(6), Seq::new(8)));
    let leaves: Vec<_> = second.iter().map(|e| leaf_hash(&id, e.seq(), &e.hash())).collect();
    assert_eq!(feed[1].leaves, leaves);
    assert_eq!(store.feed(1, 10).unwrap(), feed[1..].to_vec());
    assert!(store.head(ExecutionId::new_v7()).unwrap().is_none());

    // A new store continues the feed where it was.
    let mut more = head;
    let c = store.append(Append::new(entries(&mut more, 1)).unwrap()).await.unwrap();
    assert_eq!(c.feed_position, 3);
}

#[tokio::test]
async fn a_stale_append_is_a_conflict_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = ExecutionId::new_v7();
    let mut head = ChainHead::genesis(id);
    let mut fork_head = head;
    store.append(Append::new(entries(&mut head, 2)).unwrap()).await.unwrap();

    // Someone else's view: also starting at genesis. Same seq, different content: a fork.
    let fork = entries(&mut fork_head, 1);
    let err = store.append(Append::new(fork).unwrap()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SeqConflict { expected, head: h, .. } if expected == Seq::new(1) && h == Seq::new(2))
    );
    assert!(err.is_retryable());

    // Right seq, wrong prev_hash: also refused.
    let mut wrong = head;
    wrong.hash = EntryHash::from_bytes([9; 32]);
    let err = store.append(Append::new(entries(&mut wrong, 1)).unwrap()).await.unwrap_err();
    assert!(matches!(err, StoreError::SeqConflict { .. }));

    // A set is atomic: a bad append sinks the puts that came with it.
    let set = WriteSet::new()
        .put(Table::Meta, b"k".to_vec(), b"v".to_vec())
        .append(Append::new(entries(&mut ChainHead::genesis(id), 1)).unwrap());
    assert!(store.write(set).await.is_err());
    assert_eq!(store.get(Table::Meta, b"k").unwrap(), None);
    assert_eq!(store.chain_head(id).unwrap(), head);
    assert_eq!(store.feed(0, 10).unwrap().len(), 1);
}

#[test]
fn runs_must_be_contiguous_linked_and_of_one_execution() {
    let id = ExecutionId::new_v7();
    let mut head = ChainHead::genesis(id);
    let run = entries(&mut head, 3);
    assert!(matches!(Append::new(vec![]), Err(StoreError::InvalidAppend(_))));
    assert!(matches!(Append::new(vec![run[0].clone(), run[2].clone()]), Err(StoreError::InvalidAppend(_))));
    let other = entries(&mut ChainHead::genesis(ExecutionId::new_v7()), 2);
    assert!(matches!(Append::new(vec![run[0].clone(), other[1].clone()]), Err(StoreError::InvalidAppend(_))));
}

#[tokio::test]
async fn several_appends_to_one_execution_in_one_set_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = ExecutionId::new_v7();
    let mut head = ChainHead::genesis(id);
    let a = entries(&mut head, 2);
    let b = entries(&mut head, 2);
    let done = store
        .write(
            WriteSet::new().append(Append::new(a).unwrap()).append(Append::new(b).unwrap().with_state(b"x".to_vec())),
        )
        .await
        .unwrap();
    assert_eq!(done.iter().map(|d| d.last_seq.get()).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(store.head(id).unwrap().unwrap().state, b"x");
}

#[tokio::test]
async fn idempotency_records_expire_after_their_ttl_and_compactions_remove_them() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = std::time::Duration::from_secs(1);
    let put = |key: &str, value: &str| WriteSet::new().put(Table::Idempotency, key.as_bytes(), value.as_bytes());
    {
        // Written without a TTL: kept whatever a later store's TTL.
        let store = open(&dir);
        store.write(put("org/forever", "{\"kept\":true}")).await.unwrap();
    }
    let store =
        Store::open(dir.path(), StoreOptions { idempotency_ttl: Some(ttl), ..StoreOptions::default() }).unwrap();
    store.write(put("org/first", "{\"n\":1}").put(Table::Meta, b"m".to_vec(), b"meta".to_vec())).await.unwrap();
    assert_eq!(store.get(Table::Idempotency, b"org/first").unwrap(), Some(b"{\"n\":1}".to_vec()));
    assert_eq!(store.scan(Table::Idempotency, b"org/", b"", 10).unwrap().len(), 2);

    tokio::time::sleep(ttl + std::time::Duration::from_millis(50)).await;
    store.write(put("org/second", "{\"n\":2}")).await.unwrap();
    assert_eq!(store.get(Table::Idempotency, b"org/first").unwrap(), None, "expired");
    assert_eq!(store.get(Table::Idempotency, b"org/second").unwrap(), Some(b"{\"n\":2}".to_vec()));
    assert_eq!(store.get(Table::Idempotency, b"org/forever").unwrap(), Some(b"{\"kept\":true}".to_vec()));
    let keys: Vec<Vec<u8>> =
        store.scan(Table::Idempotency, b"", b"", 10).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [b"org/forever".to_vec(), b"org/second".to_vec()], "a scan skips expired records too");
    assert_eq!(store.stored_records(Table::Idempotency).unwrap(), 3, "still on disk until a compaction");

    store.compact(Table::Idempotency);
    assert_eq!(store.stored_records(Table::Idempotency).unwrap(), 2, "the compaction dropped the expired record");
    assert_eq!(store.get(Table::Meta, b"m").unwrap(), Some(b"meta".to_vec()), "other tables never expire");
    drop(store);
    let store = open(&dir);
    assert_eq!(store.get(Table::Idempotency, b"org/second").unwrap(), Some(b"{\"n\":2}".to_vec()), "after reopen");
}

#[tokio::test]
async fn records_from_before_expiry_are_given_the_ttl_once() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = std::time::Duration::from_secs(1);
    let with_ttl = || Store::open(dir.path(), StoreOptions { idempotency_ttl: Some(ttl), ..StoreOptions::default() });
    // Records of an older version: JSON with no expiry in front. Written raw here, as no write
    // path of this version makes them.
    write_legacy_records(dir.path(), 2_500);
    let store = with_ttl().unwrap();
    store.write(WriteSet::new().put(Table::Idempotency, b"new/1".to_vec(), b"{}".to_vec())).await.unwrap();
    assert_eq!(store.scan(Table::Idempotency, b"", b"", 10_000).unwrap().len(), 2_501, "legacy records read as before");

    assert_eq!(store.expire_legacy_records().await.unwrap(), 2_500, "the new record already had an expiry");
    assert_eq!(store.get(Table::Meta, pled_store::LEGACY_EXPIRY_DONE).unwrap(), Some(b"2500".to_vec()));
    assert_eq!(store.expire_legacy_records().await.unwrap(), 0, "once per store");
    assert_eq!(store.get(Table::Idempotency, b"old/0042").unwrap(), Some(b"{\"n\":42}".to_vec()), "same answer");

    tokio::time::sleep(ttl + std::time::Duration::from_millis(50)).await;
    assert!(store.scan(Table::Idempotency, b"", b"", 10_000).unwrap().is_empty(), "all expired now");
    store.compact(Table::Idempotency);
    assert_eq!(store.stored_records(Table::Idempotency).unwrap(), 0);
    // Without a TTL there is nothing to give.
    drop(store);
    assert_eq!(open(&dir).expire_legacy_records().await.unwrap(), 0);
}

/// Creates a store in `path` and writes `n` idempotency records into it with RocksDB directly,
/// as versions before expiry wrote them.
fn write_legacy_records(path: &std::path::Path, n: usize) {
    drop(Store::open(path, StoreOptions::default()).unwrap());
    let mut opts = rocksdb::Options::default();
    opts.create_missing_column_families(true);
    let names = ["entries", "heads", "feed", "snapshots", "idempotency", "meta", "jobs", "commitments", "queue"];
    let db = rocksdb::DB::open_cf(&opts, path, names).unwrap();
    for i in 0..n {
        let cf = db.cf_handle("idempotency").unwrap();
        db.put_cf(cf, format!("old/{i:04}"), format!("{{\"n\":{i}}}")).unwrap();
    }
}

#[tokio::test]
async fn sizes_are_reported_for_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let names = |store: &Store| store.sizes().unwrap().into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(
        names(&store),
        ["entries", "heads", "feed", "snapshots", "idempotency", "meta", "jobs", "commitments", "queue"]
    );
    assert!(store.sizes().unwrap().iter().all(|t| (t.disk_bytes, t.keys) == (0, 0)), "a new store is empty");

    let id = ExecutionId::new_v7();
    store.append(Append::new(entries(&mut ChainHead::genesis(id), 3)).unwrap()).await.unwrap();
    let set = (0..10).fold(WriteSet::new(), |ws, i| ws.put(Table::Idempotency, format!("org/{i}"), "{}"));
    store.write(set).await.unwrap();
    let size = |name: &str| store.sizes().unwrap().into_iter().find(|t| t.name == name).unwrap();
    assert_eq!((size("entries").keys, size("heads").keys, size("feed").keys), (1, 1, 1));
    assert_eq!(size("idempotency").keys, 10);
    assert!(size("entries").memtable_bytes > 0 && size("entries").disk_bytes == 0, "{:?}", size("entries"));

    store.compact(Table::Idempotency);
    let idem = size("idempotency");
    assert!(idem.disk_bytes > 0 && idem.keys == 10, "flushed to a table file: {idem:?}");
}

#[tokio::test]
async fn snapshots_idempotency_and_scans() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = ExecutionId::new_v7();
    let other = ExecutionId::new_v7();
    let set = WriteSet::new()
        .put_snapshot(id, Seq::new(10), b"at10".to_vec())
        .put_snapshot(id, Seq::new(20), b"at20".to_vec())
        .put_snapshot(other, Seq::new(5), b"other".to_vec())
        .put(Table::Idempotency, b"org/key-1".to_vec(), b"answer".to_vec())
        .put(Table::Meta, b"t/a".to_vec(), b"1".to_vec())
        .put(Table::Meta, b"t/b".to_vec(), b"2".to_vec())
        .put(Table::Meta, b"t/c".to_vec(), b"3".to_vec())
        .put(Table::Meta, b"u/a".to_vec(), b"4".to_vec());
    store.write(set).await.unwrap();

    assert_eq!(store.latest_snapshot(id, Seq::new(9)).unwrap(), None);
    assert_eq!(store.latest_snapshot(id, Seq::new(10)).unwrap(), Some((Seq::new(10), b"at10".to_vec())));
    assert_eq!(store.latest_snapshot(id, Seq::new(19)).unwrap(), Some((Seq::new(10), b"at10".to_vec())));
    assert_eq!(store.latest_snapshot(id, Seq::new(1000)).unwrap(), Some((Seq::new(20), b"at20".to_vec())));
    let seqs = |after: u64, up_to: u64, limit: usize| {
        let found = store.snapshots(id, Seq::new(after), Seq::new(up_to), limit).unwrap();
        found.into_iter().map(|(seq, _)| seq.get()).collect::<Vec<_>>()
    };
    assert_eq!(store.snapshots(id, Seq::new(0), Seq::new(u64::MAX), 10).unwrap()[1], (Seq::new(20), b"at20".to_vec()));
    assert_eq!(seqs(0, u64::MAX, usize::MAX), [10, 20]);
    assert_eq!(seqs(0, u64::MAX, 1), [10]);
    assert_eq!(seqs(10, u64::MAX, 10), [20], "after is exclusive");
    assert_eq!(seqs(9, 10, 10), [10], "up_to is inclusive");
    assert_eq!(seqs(10, 19, 10), Vec::<u64>::new());
    assert_eq!(seqs(20, 10, 10), Vec::<u64>::new(), "an empty range");
    assert_eq!(seqs(u64::MAX, u64::MAX, 10), Vec::<u64>::new());
    assert_eq!(
        store.snapshots(other, Seq::new(0), Seq::new(u64::MAX), 10).unwrap(),
        [(Seq::new(5), b"other".to_vec())]
    );
    assert_eq!(store.get(Table::Idempotency, b"org/key-1").unwrap(), Some(b"answer".to_vec()));

    let keys = |rows: Vec<(Vec<u8>, Vec<u8>)>| {
        rows.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(keys(store.scan(Table::Meta, b"t/", b"", 10).unwrap()), ["t/a", "t/b", "t/c"]);
    assert_eq!(keys(store.scan(Table::Meta, b"t/", b"t/a", 1).unwrap()), ["t/b"]);
    assert_eq!(keys(store.scan(Table::Meta, b"t/", b"t/c", 10).unwrap()), Vec::<String>::new());

    store.write(WriteSet::new().delete(Table::Meta, b"t/b".to_vec())).await.unwrap();
    assert_eq!(keys(store.scan(Table::Meta, b"t/", b"", 10).unwrap()), ["t/a", "t/c"]);
}

#[tokio::test]
async fn heads_page_through_executions_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut ids: Vec<_> = (0..5).map(|_| ExecutionId::new_v7()).collect();
    for id in &ids {
        store.append(Append::new(entries(&mut ChainHead::genesis(*id), 1)).unwrap()).await.unwrap();
    }
    ids.sort();
    let page1 = store.heads(None, 3).unwrap();
    let page2 = store.heads(Some(page1[2].chain.execution_id), 3).unwrap();
    let got: Vec<_> = page1.iter().chain(&page2).map(|h| h.chain.execution_id).collect();
    assert_eq!(got, ids);
}

#[test]
fn a_second_process_cannot_open_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(&dir);
    let err = Store::open(dir.path(), StoreOptions::default()).err().unwrap();
    assert!(err.to_string().contains("in use by another process"), "{err}");
}

/// The writer's remembered tips start empty after a reopen: the first append then checks
/// against the stored head, refuses a stale seq, and keeps the stored state when it brings none.
#[tokio::test]
async fn after_reopen_appends_check_and_keep_the_stored_head() {
    let dir = tempfile::tempdir().unwrap();
    let id = ExecutionId::new_v7();
    let mut head = ChainHead::genesis(id);
    let first = entries(&mut head, 2);
    open(&dir).append(Append::new(first.clone()).unwrap().with_state(b"kept".to_vec())).await.unwrap();
    let store = open(&dir);
    let stale = store.append(Append::new(first).unwrap()).await;
    assert!(matches!(stale, Err(StoreError::SeqConflict { .. })), "{stale:?}");
    let next = entries(&mut head, 1);
    store.append(Append::new(next).unwrap()).await.unwrap();
    let h = store.head(id).unwrap().unwrap();
    assert_eq!((h.chain, h.state.as_slice()), (head, &b"kept"[..]));
}
