#![allow(clippy::unwrap_used)]
//! Helpers shared by the store's integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use pled_core::{Body, ChainHead, ExecutionId, Kind, RecordedAt, SealedEntry};
use pled_store::{Append, Store, StoreError};
use serde_json::json;

/// `n` entries continuing `head`, advancing it.
pub fn entries(head: &mut ChainHead, n: usize) -> Vec<SealedEntry> {
    (0..n)
        .map(|_| {
            let seq = head.seq.next().get();
            let body = Body::from_value(&json!({ "n": seq, "note": "entrée \u{1f600}" })).unwrap();
            let e = head.next_entry(Kind::new("test.entry").unwrap(), RecordedAt::now(), body);
            head.advance(&e);
            e
        })
        .collect()
}

/// Appends one entry at the store's current head, retrying lost races.
pub async fn append_one(store: &Store, id: ExecutionId) -> SealedEntry {
    loop {
        let mut head = store.chain_head(id).unwrap();
        let e = entries(&mut head, 1);
        match store.append(Append::new(e.clone()).unwrap()).await {
            Ok(_) => return e.into_iter().next().unwrap(),
            Err(StoreError::SeqConflict { .. }) => continue,
            Err(other) => panic!("append failed: {other}"),
        }
    }
}
