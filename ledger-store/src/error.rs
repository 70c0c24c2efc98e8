//! The store's one error type, split by what the caller must do about it.

use pled_core::{EntryHash, ExecutionId, Seq};

/// What went wrong in the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended first: the caller's view of the chain is stale. Re-read the
    /// head and retry; nothing was written.
    #[error(
        "execution {execution_id}: expected to append at seq {expected} after hash {expected_prev}, but the head is at seq {head} (hash {head_hash})"
    )]
    SeqConflict {
        /// The chain.
        execution_id: ExecutionId,
        /// The seq the caller wanted to write.
        expected: Seq,
        /// The `prev_hash` the caller linked to.
        expected_prev: EntryHash,
        /// The actual head seq.
        head: Seq,
        /// The actual head hash.
        head_hash: EntryHash,
    },
    /// The entries of one append are not a contiguous, linked run of one execution.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// A write or sync failed earlier; the store refuses writes until it is reopened, because
    /// what reached the disk is unknown. Reads still work.
    #[error("store refuses writes after a failed write or sync ({0}); restart to recover from the WAL")]
    Poisoned(String),
    /// The store is shutting down.
    #[error("store is closed")]
    Closed,
    /// The store was opened to read only ([`crate::Store::open_read_only`]).
    #[error("the store is open read-only")]
    ReadOnly,
    /// RocksDB reported an error.
    #[error("rocksdb: {0}")]
    Rocks(String),
    /// Stored bytes could not be decoded.
    #[error("corrupt record in {what}: {detail}")]
    Corrupt {
        /// Which record.
        what: String,
        /// What the decoder said.
        detail: String,
    },
    /// The data directory could not be opened.
    #[error("cannot open data dir {path}: {detail}")]
    Open {
        /// The directory.
        path: String,
        /// Why.
        detail: String,
    },
}

impl StoreError {
    /// True when retrying the same call later can succeed without the caller changing it.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::SeqConflict { .. })
    }
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        Self::Rocks(e.into_string())
    }
}
