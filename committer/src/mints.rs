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
    /// Seq of the `token.minted_onchain` entry that put the confirmed mint on the
    /// execution's ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_seq: Option<u64>,
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
        let ws = WriteSet::new().put(Table::Commitments, keys::mint(rec.execution_id, rec.seq), bytes).put(
            Table::Commitments,
            keys::mint_unrecorded(rec.execution_id, rec.seq),
            Vec::new(),
        );
        let ws = self.enqueue(ws, &target)?;
        self.store.write_blocking(ws)?;
        Ok(Ok(rec))
    }

    /// Mints that are not on their execution's ledger yet, oldest request first per
    /// execution, at most `limit`.
    pub fn unrecorded_mints(&self, limit: usize) -> Result<Vec<MintRecord>, CommitError> {
        let markers = self.store.scan(Table::Commitments, &[keys::MINT_UNRECORDED], &[], limit)?;
        let mut out = Vec::with_capacity(markers.len());
        for (marker, _) in markers {
            let key = [&[keys::MINT][..], &marker[1..]].concat();
            let bytes = self
                .store
                .get(Table::Commitments, &key)?
                .ok_or_else(|| CommitError::Corrupt(format!("mint marker {marker:02x?} without its mint")))?;
            out.push(serde_json::from_slice(&bytes).map_err(|e| CommitError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    /// Adds to `ws` what marks a mint as on the ledger at `ledger_seq` (or, with `None`, as
    /// never going there: it failed). Written atomically with that ledger entry.
    pub fn mint_recorded(
        &self,
        ws: WriteSet,
        mint: &MintRecord,
        ledger_seq: Option<u64>,
    ) -> Result<WriteSet, CommitError> {
        let rec = MintRecord { ledger_seq, ..mint.clone() };
        let bytes = serde_json::to_vec(&rec).map_err(|e| CommitError::Corrupt(e.to_string()))?;
        Ok(ws
            .put(Table::Commitments, keys::mint(mint.execution_id, mint.seq), bytes)
            .delete(Table::Commitments, keys::mint_unrecorded(mint.execution_id, mint.seq)))
    }
}
