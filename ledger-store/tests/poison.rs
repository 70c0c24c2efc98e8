#![allow(clippy::unwrap_used)]
//! After a failed write the store refuses further writes instead of guessing what reached
//! the disk; reads go on, and a restart recovers.

mod common;

use common::entries;
use pled_core::{ChainHead, ExecutionId, Seq};
use pled_store::{Append, Store, StoreError, StoreOptions};

#[tokio::test]
async fn a_failed_write_poisons_the_writer_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = ExecutionId::new_v7();
    let mut head = ChainHead::genesis(id);
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.append(Append::new(entries(&mut head, 2)).unwrap()).await.unwrap();

        store.inject_write_failure("IO error: No space left on device");
        let mut lost = head;
        let err = store.append(Append::new(entries(&mut lost, 1)).unwrap()).await.unwrap_err();
        assert!(matches!(&err, StoreError::Poisoned(m) if m.contains("No space left")), "{err}");
        assert!(store.poisoned().is_some());

        // Later writes are refused without touching the disk, with the original cause.
        let err = store.append(Append::new(entries(&mut head.clone(), 1)).unwrap()).await.unwrap_err();
        assert!(matches!(&err, StoreError::Poisoned(m) if m.contains("No space left")), "{err}");
        assert!(err.to_string().contains("restart"));

        // Reads still answer, and show only what was acknowledged.
        assert_eq!(store.chain_head(id).unwrap(), head);
        assert_eq!(store.entries(id, Seq::ZERO, 10).unwrap().len(), 2);
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(store.poisoned().is_none());
    store.append(Append::new(entries(&mut head, 1)).unwrap()).await.unwrap();
    assert_eq!(store.chain_head(id).unwrap().seq, Seq::new(3));
}
