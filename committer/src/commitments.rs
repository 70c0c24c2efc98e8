//! Per-execution commitments: the root over one execution's seq range, made on demand (the
//! registry's `commitLedgerRoot(executionId, rangeStart, rangeEnd, merkleRoot)`). Leaves are
//! the range's entries in seq order.

use std::sync::Arc;

use pled_core::merkle::{MerkleTree, hash_leaves, to_0x};
use pled_core::proof::Scope;
use pled_core::{ExecutionId, RecordedAt, Seq};
use pled_store::{Table, WriteSet};
use serde::{Deserialize, Serialize};

use crate::error::CommitError;
use crate::keys;
use crate::rounds::{Anchor, AnchorStatus, Committer, ProofAnswer};

/// One commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitmentRecord {
    /// 1, 2, 3, … per execution.
    pub id: u64,
    /// The execution.
    pub execution_id: ExecutionId,
    /// First seq covered.
    pub range_start: u64,
    /// Last seq covered.
    pub range_end: u64,
    /// Merkle root (`0x` hex).
    pub root: String,
    /// Leaves (`range_end - range_start + 1`).
    pub leaf_count: u64,
    /// When made.
    pub created_at: RecordedAt,
    /// Who asked for it.
    pub created_by: String,
    /// Anchoring.
    pub anchor: Anchor,
}

impl Committer {
    /// The execution's commitments, oldest first.
    pub fn commitments(&self, execution: ExecutionId) -> Result<Vec<CommitmentRecord>, CommitError> {
        let rows = self.store.scan(Table::Commitments, &keys::commitment_prefix(execution), &[], usize::MAX)?;
        rows.into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| CommitError::Corrupt(e.to_string())))
            .collect()
    }

    /// One commitment.
    pub fn commitment(&self, execution: ExecutionId, id: u64) -> Result<Option<CommitmentRecord>, CommitError> {
        self.store
            .get(Table::Commitments, &keys::commitment(execution, id))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| CommitError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Commits `start..=end` of an execution (defaults: after the previous commitment's end,
    /// up to the head). Blocking.
    pub fn commit_range(
        &self,
        execution: ExecutionId,
        start: Option<u64>,
        end: Option<u64>,
        by: &str,
    ) -> Result<CommitmentRecord, CommitError> {
        let _guard = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.store.chain_head(execution)?.seq.get();
        let previous = self.commitments(execution)?;
        let start = start.unwrap_or_else(|| previous.last().map_or(1, |c| c.range_end + 1));
        let end = end.unwrap_or(head);
        if start < 1 || start > end || end > head {
            return Err(CommitError::Invalid(format!(
                "range {start}..={end} is not within 1..={head} (the execution's entries), or is empty"
            )));
        }
        let hashes = self.store.entry_hashes(execution, Seq::new(start), Seq::new(end))?;
        let tree = MerkleTree::from_leaves(&hash_leaves(&[(execution, Seq::new(start), &hashes)]));
        let root = tree.root().ok_or_else(|| CommitError::Corrupt("empty range".into()))?;
        let rec = CommitmentRecord {
            id: previous.last().map_or(1, |c| c.id + 1),
            execution_id: execution,
            range_start: start,
            range_end: end,
            root: to_0x(&root),
            leaf_count: end - start + 1,
            created_at: RecordedAt::now(),
            created_by: by.to_owned(),
            anchor: Anchor {
                status: if self.anchoring() { AnchorStatus::Built } else { AnchorStatus::Unanchored },
                ..Anchor::default()
            },
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| CommitError::Corrupt(e.to_string()))?;
        let mut ws = WriteSet::new().put(Table::Commitments, keys::commitment(execution, rec.id), bytes);
        if self.anchoring() {
            ws = self.enqueue(ws, &crate::outbox::Target::Commitment { execution_id: execution, id: rec.id })?;
        }
        self.store.write_blocking(ws)?;
        Ok(rec)
    }

    /// The proof that entry `seq` is in commitment `id` of its execution.
    pub fn commitment_proof(&self, execution: ExecutionId, seq: Seq, id: u64) -> Result<ProofAnswer, CommitError> {
        let c = self
            .commitment(execution, id)?
            .ok_or_else(|| CommitError::NotFound(format!("commitment {id} of execution {execution}")))?;
        if seq.get() < c.range_start || seq.get() > c.range_end {
            return Err(CommitError::Invalid(format!(
                "seq {seq} is outside commitment {id} ({}..={})",
                c.range_start, c.range_end
            )));
        }
        let entry = self
            .store
            .entry(execution, seq)?
            .ok_or_else(|| CommitError::NotFound(format!("entry {seq} of execution {execution}")))?;
        let hashes = self.store.entry_hashes(execution, Seq::new(c.range_start), Seq::new(c.range_end))?;
        let tree = Arc::new(MerkleTree::from_leaves(&hash_leaves(&[(execution, Seq::new(c.range_start), &hashes)])));
        if tree.root().map(|r| to_0x(&r)).as_deref() != Some(c.root.as_str()) {
            return Err(CommitError::Corrupt(format!("commitment {id}: the ledger no longer gives its root")));
        }
        let leaf_index = seq.get() - c.range_start;
        let scope =
            Scope::Commitment { commitment_id: id, range_start: c.range_start, range_end: c.range_end, leaf_index };
        Ok(ProofAnswer::Included(Box::new(self.document(&entry, &tree, leaf_index, scope, &c.anchor)?)))
    }
}
