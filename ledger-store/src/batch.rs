//! What one caller asks the writer to make durable, atomically.

use pled_core::merkle::{Node, hash_leaves};
use pled_core::{EntryHash, ExecutionId, SealedEntry, Seq};

use crate::StoreError;

/// Column families a caller may write directly. The chain column families (entries, heads,
/// feed) are written only through [`Append`], so their invariants hold by construction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Table {
    /// Execution snapshots, keyed `execution id || seq (BE)`; see [`WriteSet::put_snapshot`].
    Snapshots,
    /// Idempotency records: key = the caller's scoped key, value = the stored answer. They
    /// expire [`crate::StoreOptions::idempotency_ttl`] after they are written: from then on
    /// they read as absent, and compactions remove them.
    Idempotency,
    /// Small records of the service (orgs, tokens, templates, …), keyed by the caller.
    Meta,
    /// Durable work queues (action jobs), keyed by the caller.
    Jobs,
    /// Commit rounds, their leaves and indexes, per-execution commitments (the committer's).
    Commitments,
    /// Work ordered by when it is due: keys start with a one-byte kind and the due time
    /// (big-endian), so a scan from the start of a kind yields the earliest first.
    Queue,
}

impl Table {
    /// Whether its records expire (are stored with their expiry time).
    pub fn expires(self) -> bool {
        self == Table::Idempotency
    }
}

/// A run of new entries for one execution, and optionally its new state.
///
/// INVARIANT: `entries` is non-empty, of one execution, with contiguous seqs, each linked to
/// the previous one by `prev_hash`.
#[derive(Clone, Debug)]
pub struct Append {
    pub(crate) entries: Vec<SealedEntry>,
    /// The entries' Merkle leaves, kept in the feed for commit rounds. Computed here, by the
    /// caller (in parallel lanes), not by the single writer thread.
    pub(crate) leaves: Vec<Node>,
    pub(crate) state: Option<Vec<u8>>,
}

impl Append {
    /// Checks that `entries` form a contiguous linked run. Where the run attaches (its first
    /// seq and `prev_hash`) is checked by the writer against the durable head: a lost race
    /// is a [`StoreError::SeqConflict`], never a fork.
    pub fn new(entries: Vec<SealedEntry>) -> Result<Self, StoreError> {
        let first = entries.first().ok_or_else(|| StoreError::InvalidAppend("no entries".into()))?;
        if first.seq() == Seq::ZERO {
            return Err(StoreError::InvalidAppend("seq 0 is not a valid entry seq".into()));
        }
        let execution = first.entry().execution_id;
        for pair in entries.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.entry().execution_id != execution {
                return Err(StoreError::InvalidAppend(format!(
                    "entries of executions {execution} and {} in one append",
                    b.entry().execution_id
                )));
            }
            if b.seq() != a.seq().next() || b.entry().prev_hash != a.hash() {
                return Err(StoreError::InvalidAppend(format!(
                    "entry seq {} does not follow seq {} of execution {execution}",
                    b.seq(),
                    a.seq()
                )));
            }
        }
        let hashes: Vec<EntryHash> = entries.iter().map(SealedEntry::hash).collect();
        let leaves = hash_leaves(&[(execution, first.seq(), &hashes)]);
        Ok(Self { entries, leaves, state: None })
    }

    /// Also replaces the execution's current state bytes (kept as they were otherwise).
    pub fn with_state(mut self, state: Vec<u8>) -> Self {
        self.state = Some(state);
        self
    }

    /// The execution.
    pub fn execution_id(&self) -> ExecutionId {
        self.entries[0].entry().execution_id
    }

    pub(crate) fn first_seq(&self) -> Seq {
        self.entries[0].seq()
    }

    pub(crate) fn attach_hash(&self) -> EntryHash {
        self.entries[0].entry().prev_hash
    }

    pub(crate) fn last(&self) -> &SealedEntry {
        // INVARIANT: non-empty.
        &self.entries[self.entries.len() - 1]
    }
}

/// Everything one caller needs written atomically: chain appends plus any records that must
/// commit with them (snapshot, idempotency record, queue items).
#[derive(Clone, Debug, Default)]
pub struct WriteSet {
    pub(crate) appends: Vec<Append>,
    pub(crate) puts: Vec<(Table, Vec<u8>, Vec<u8>)>,
    pub(crate) deletes: Vec<(Table, Vec<u8>)>,
}

impl WriteSet {
    /// An empty write set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an append (several appends, even to one execution, apply in order).
    pub fn append(mut self, a: Append) -> Self {
        self.appends.push(a);
        self
    }

    /// Adds a put.
    pub fn put(mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        self.puts.push((table, key.into(), value.into()));
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, table: Table, key: impl Into<Vec<u8>>) -> Self {
        self.deletes.push((table, key.into()));
        self
    }

    /// Adds a snapshot of an execution's state at `seq`.
    pub fn put_snapshot(self, execution: ExecutionId, seq: Seq, snapshot: Vec<u8>) -> Self {
        self.put(Table::Snapshots, crate::codec::entry_key(execution, seq), snapshot)
    }

    /// Adds everything `other` holds after what this set holds, as if it had been added
    /// here in the same order.
    pub fn merge(mut self, other: WriteSet) -> Self {
        self.appends.extend(other.appends);
        self.puts.extend(other.puts);
        self.deletes.extend(other.deletes);
        self
    }

    /// How many entries the set appends.
    pub fn entry_count(&self) -> usize {
        self.appends.iter().map(|a| a.entries.len()).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.appends.is_empty() && self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// What one append became: its seqs, its last hash, and its position in the global feed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Appended {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The first new seq.
    pub first_seq: Seq,
    /// The last new seq (the new head).
    pub last_seq: Seq,
    /// The hash of the last new entry (the new head hash).
    pub last_hash: EntryHash,
    /// Position in the global feed of appends, from 1, in the order they became durable.
    pub feed_position: u64,
}
