//! The anchoring outbox: what the publisher must put on-chain, in order. An item is added in
//! the same write as the round or commitment it anchors, and removed once its transaction is
//! deep enough that a reorg is no longer expected. The transaction state of an item (nonce,
//! every signed attempt) is persisted *before* the transaction is broadcast, so a crash at
//! any moment resumes by re-broadcasting the same signed bytes: never a second transaction.

use pled_core::ExecutionId;
use pled_store::{Table, WriteSet};
use serde::{Deserialize, Serialize};

use crate::error::CommitError;
use crate::keys;
use crate::rounds::{Anchor, Committer};

/// What an outbox item anchors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Target {
    /// `commitRound(round, root, leafCount)`.
    Round {
        /// Round id.
        round: u64,
    },
    /// `commitLedgerRoot(executionId, rangeStart, rangeEnd, root)`.
    #[serde(rename_all = "camelCase")]
    Commitment {
        /// The execution.
        execution_id: ExecutionId,
        /// Its commitment id.
        id: u64,
    },
    /// `mintForSinkEntry(...)` for a sink entry.
    #[serde(rename_all = "camelCase")]
    Mint {
        /// The execution.
        execution_id: ExecutionId,
        /// The sink entry's seq.
        seq: u64,
        /// Token type.
        token_type: String,
        /// Quantity (decimal string).
        quantity: String,
        /// Recipient (`0x` address).
        to: String,
    },
}

/// The signed attempts of one item's transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxState {
    /// Sender nonce (the same for every attempt).
    pub nonce: u64,
    /// Signed raw transactions (`0x` hex), oldest first; later ones pay more.
    pub raw: Vec<String>,
    /// Their hashes.
    pub hashes: Vec<String>,
    /// Max fee per gas of the last attempt (wei).
    pub max_fee: u128,
    /// Priority fee of the last attempt (wei).
    pub priority_fee: u128,
    /// Unix ms of the last (re-)broadcast.
    pub last_sent_ms: u64,
    /// Unix ms of the last fee bump (or first signing).
    pub last_bump_ms: u64,
}

/// One item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Position in the outbox.
    pub seq: u64,
    /// What it anchors.
    pub target: Target,
    /// Its transaction, once signed.
    pub tx: Option<TxState>,
}

fn corrupt(e: impl std::fmt::Display) -> CommitError {
    CommitError::Corrupt(e.to_string())
}

impl Committer {
    /// Adds an outbox item to `ws`. Callers hold the committer's closing lock.
    pub(crate) fn enqueue(&self, ws: WriteSet, target: &Target) -> Result<WriteSet, CommitError> {
        let next = match self.store.get(Table::Commitments, &[keys::OUTBOX_COUNTER])? {
            Some(b) => u64::from_be_bytes(b.try_into().map_err(|_| corrupt("outbox counter"))?) + 1,
            None => 1,
        };
        Ok(ws.put(Table::Commitments, vec![keys::OUTBOX_COUNTER], next.to_be_bytes().to_vec()).put(
            Table::Commitments,
            keys::outbox(next),
            serde_json::to_vec(target).map_err(corrupt)?,
        ))
    }

    /// Up to `limit` outbox items, in order.
    pub fn outbox(&self, limit: usize) -> Result<Vec<Item>, CommitError> {
        let rows = self.store.scan(Table::Commitments, &[keys::OUTBOX], &[], limit)?;
        let mut items = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let seq = keys::parse_seq_suffix(&k).ok_or_else(|| corrupt("outbox key"))?.get();
            let tx = self
                .store
                .get(Table::Commitments, &keys::tx_state(seq))?
                .map(|b| serde_json::from_slice(&b))
                .transpose()
                .map_err(corrupt)?;
            items.push(Item { seq, target: serde_json::from_slice(&v).map_err(corrupt)?, tx });
        }
        Ok(items)
    }

    /// Persists an item's transaction state (before broadcasting it).
    pub fn save_tx(&self, seq: u64, tx: &TxState) -> Result<(), CommitError> {
        self.store.write_blocking(WriteSet::new().put(
            Table::Commitments,
            keys::tx_state(seq),
            serde_json::to_vec(tx).map_err(corrupt)?,
        ))?;
        Ok(())
    }

    /// Removes a finished item.
    pub fn finish(&self, seq: u64) -> Result<(), CommitError> {
        let ws = WriteSet::new()
            .delete(Table::Commitments, keys::outbox(seq))
            .delete(Table::Commitments, keys::tx_state(seq));
        self.store.write_blocking(ws)?;
        Ok(())
    }

    /// The anchoring of a target's record (a mint has none).
    pub fn anchor_of(&self, target: &Target) -> Result<Option<Anchor>, CommitError> {
        Ok(match target {
            Target::Round { round } => self.round(*round)?.map(|r| r.anchor),
            Target::Commitment { execution_id, id } => self.commitment(*execution_id, *id)?.map(|c| c.anchor),
            Target::Mint { execution_id, seq, .. } => self.mint(*execution_id, *seq)?.map(|m| m.anchor),
        })
    }

    /// Records a target's new anchoring.
    pub fn set_target_anchor(&self, target: &Target, anchor: Anchor) -> Result<(), CommitError> {
        match target {
            Target::Round { round } => {
                self.set_anchor(*round, anchor)?;
            }
            Target::Commitment { execution_id, id } => {
                let mut c = self
                    .commitment(*execution_id, *id)?
                    .ok_or_else(|| CommitError::NotFound(format!("commitment {id}")))?;
                c.anchor = anchor;
                self.store.write_blocking(WriteSet::new().put(
                    Table::Commitments,
                    keys::commitment(*execution_id, *id),
                    serde_json::to_vec(&c).map_err(corrupt)?,
                ))?;
            }
            Target::Mint { execution_id, seq, .. } => {
                let mut m = self
                    .mint(*execution_id, *seq)?
                    .ok_or_else(|| CommitError::NotFound(format!("mint of {execution_id}/{seq}")))?;
                m.anchor = anchor;
                self.store.write_blocking(WriteSet::new().put(
                    Table::Commitments,
                    keys::mint(*execution_id, *seq),
                    serde_json::to_vec(&m).map_err(corrupt)?,
                ))?;
            }
        }
        Ok(())
    }
}
