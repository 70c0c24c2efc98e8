//! On-chain mints against sink ledger entries: at most one per entry, sent by the publisher
//! (the one sending task) with the entry's inclusion proof against its confirmed round.

use pled_core::{ExecutionId, RecordedAt};
use pled_store::{Table, WriteSet};
use serde::{Deserialize, Serialize};

use crate::error::CommitError;
use crate::keys;
use crate::outbox::Target;
use crate::rounds::{Anchor, Committer};

/// One mint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MintRecord {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The sink entry's seq.
    pub seq: u64,
    /// Token type.
    pub token_type: String,
    /// Quantity (decimal string).
    pub quantity: String,
    /// Recipient.
    pub to: String,
    /// The round whose root proves the entry.
    pub round: u64,
    /// When requested.
    pub requested_at: RecordedAt,
    /// Who requested it.
    pub requested_by: String,
    /// The mint transaction's progress.
    pub anchor: Anchor,
}

impl Committer {
    /// The mint of a sink entry, if one was requested.
    pub fn mint(&self, execution: ExecutionId, seq: u64) -> Result<Option<MintRecord>, CommitError> {
        self.store
            .get(Table::Commitments, &keys::mint(execution, seq))?
            .map(|b| serde_json::from_slice(&b).map_err(|e| CommitError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Records a mint request and queues its transaction, once per entry: a second request
    /// for the same entry is refused with the first one's record.
    pub fn request_mint(&self, rec: MintRecord) -> Result<Result<MintRecord, MintRecord>, CommitError> {
        let _guard = self.closing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = self.mint(rec.execution_id, rec.seq)? {
            return Ok(Err(existing));
        }
        let target = Target::Mint {
            execution_id: rec.execution_id,
            seq: rec.seq,
            token_type: rec.token_type.clone(),
            quantity: rec.quantity.clone(),
            to: rec.to.clone(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| CommitError::Corrupt(e.to_string()))?;
        let ws = WriteSet::new().put(Table::Commitments, keys::mint(rec.execution_id, rec.seq), bytes);
        let ws = self.enqueue(ws, &target)?;
        self.store.write_blocking(ws)?;
        Ok(Ok(rec))
    }
}
