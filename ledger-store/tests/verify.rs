#![allow(clippy::unwrap_used)]
//! `verify_store` on real RocksDB data: any sequence of appends verifies, and changing any
//! byte of any stored entry makes it fail at exactly that entry (entries are stored in groups,
//! one RocksDB record per append of up to 32 entries).

mod common;

use common::entries;
use pled_core::{ChainHead, ChainProblem, ExecutionId, Seq};
use pled_store::verify::{VerifyError, verify_store};
use pled_store::{Append, Store, StoreOptions};
use proptest::prelude::*;

fn build(dir: &std::path::Path, plan: &[(usize, usize)], executions: usize) -> Vec<ChainHead> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = Store::open(dir, StoreOptions { sync: false, ..Default::default() }).unwrap();
    let mut heads: Vec<_> = (0..executions).map(|_| ChainHead::genesis(ExecutionId::new_v7())).collect();
    rt.block_on(async {
        for &(which, n) in plan {
            let head = &mut heads[which % executions];
            store.append(Append::new(entries(head, n)).unwrap()).await.unwrap();
        }
    });
    heads
}

fn raw_db(dir: &std::path::Path) -> rocksdb::DB {
    let opts = rocksdb::Options::default();
    let names = rocksdb::DB::list_cf(&opts, dir).unwrap();
    rocksdb::DB::open_cf(&opts, dir, names).unwrap()
}

fn entry_key(id: ExecutionId, seq: u64) -> Vec<u8> {
    [id.as_bytes().as_slice(), &seq.to_be_bytes()].concat()
}

/// The record holding entry `seq` of `id` (the last one starting at or before it): its key,
/// its first seq and its value.
fn record_of(db: &rocksdb::DB, id: ExecutionId, seq: u64) -> (Vec<u8>, u64, Vec<u8>) {
    let mut it = db.raw_iterator_cf(db.cf_handle("entries").unwrap());
    it.seek_for_prev(entry_key(id, seq));
    let (k, v) = (it.key().unwrap().to_vec(), it.value().unwrap().to_vec());
    assert_eq!(&k[..16], id.as_bytes());
    let first = u64::from_be_bytes(k[16..].try_into().unwrap());
    (k, first, v)
}

/// Where each entry of a group record ends: after the group marker (0), each entry is
/// three strings (bincode: a length of 1 byte below 251, else 251 and 2 bytes or 252 and 4,
/// little-endian, then the bytes) and two 32-byte hashes.
fn entry_ends(record: &[u8]) -> Vec<usize> {
    assert_eq!(record[0], 0, "a group record");
    let (mut at, mut ends) = (1, vec![]);
    while at < record.len() {
        for _ in 0..3 {
            let len = match record[at] {
                251 => (2, u16::from_le_bytes(record[at + 1..at + 3].try_into().unwrap()) as usize),
                252 => (4, u32::from_le_bytes(record[at + 1..at + 5].try_into().unwrap()) as usize),
                n => (0, n as usize),
            };
            at += 1 + len.0 + len.1;
        }
        at += 64;
        ends.push(at);
    }
    assert_eq!(at, record.len());
    ends
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn appends_verify_and_any_flipped_byte_is_found_at_its_entry(
        executions in 1usize..4,
        plan in prop::collection::vec((0usize..4, 1usize..6), 1..12),
        pick in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let heads = build(dir.path(), &plan, executions);
        let total: u64 = heads.iter().map(|h| h.seq.get()).sum();
        {
            let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
            let ok = verify_store(&store, |_| {}).unwrap();
            prop_assert_eq!(ok.entries, total);
            prop_assert_eq!(ok.executions, heads.iter().filter(|h| h.seq.get() > 0).count() as u64);
        }

        // Flip one byte of one stored entry (the group marker counts as the first entry's).
        let nonempty: Vec<_> = heads.iter().filter(|h| h.seq.get() > 0).collect();
        let head = nonempty[pick.index(nonempty.len())];
        let seq = 1 + (byte.index(1 << 20) as u64 % head.seq.get());
        {
            let db = raw_db(dir.path());
            let (key, first, mut value) = record_of(&db, head.execution_id, seq);
            let ends = entry_ends(&value);
            let start = if seq == first { 0 } else { ends[(seq - first - 1) as usize] };
            let end = ends[(seq - first) as usize];
            let at = start + byte.index(end - start);
            value[at] ^= flip;
            db.put_cf(db.cf_handle("entries").unwrap(), &key, value).unwrap();
        }
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        match verify_store(&store, |_| {}) {
            Err(VerifyError::Chain(e)) => {
                prop_assert_eq!(e.execution_id, head.execution_id);
                prop_assert_eq!(e.seq, Seq::new(seq), "{}", e);
            }
            other => prop_assert!(false, "expected a chain error, got {:?}", other),
        }
    }
}

#[test]
fn a_changed_head_or_a_missing_entry_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    // Two appends: entries 1-4 in one record, 5 in another.
    let heads = build(dir.path(), &[(0, 4), (0, 1)], 1);
    let id = heads[0].execution_id;
    {
        let db = raw_db(dir.path());
        assert_eq!(record_of(&db, id, 5).1, 5);
        db.delete_cf(db.cf_handle("entries").unwrap(), entry_key(id, 5)).unwrap();
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let err = verify_store(&store, |_| {}).unwrap_err();
    assert!(
        matches!(err, VerifyError::Chain(ref e) if e.seq == Seq::new(5) && e.problem == ChainProblem::Truncated { head: Seq::new(5) }),
        "{err}"
    );
    drop(store);
    {
        let db = raw_db(dir.path());
        db.delete_cf(db.cf_handle("heads").unwrap(), id.as_bytes()).unwrap();
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let err = verify_store(&store, |_| {}).unwrap_err();
    assert!(matches!(err, VerifyError::Chain(ref e) if e.problem == ChainProblem::MissingHead), "{err}");
}
