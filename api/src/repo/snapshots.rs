//! Execution snapshots: the full live state of an execution at a seq (status, engine state,
//! pause queue) with the chain's head hash there, so replay and late joiners start from it
//! instead of from genesis. Stored as JSON in the store's snapshots table, keyed by
//! execution and seq ([`pled_store::WriteSet::put_snapshot`]); a snapshot's id is its seq.

use pled_core::{ChainHead, ExecutionId, RecordedAt, Seq};
use pled_store::{Store, WriteSet};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::executions::LiveState;
use crate::error::ApiError;

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A write crossed a multiple of `snapshot_every` entries.
    Periodic,
    /// `POST /v1/executions/{id}/snapshot`.
    OnDemand,
}

/// One snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    /// The seq of the last entry it includes; also its id.
    pub seq: u64,
    /// That entry's hash: replay from here chains onto it.
    pub head_hash: String,
    /// Events applied up to here (also `state.exec.eventCount`).
    pub event_count: u64,
    /// Status, engine state and pause queue at `seq`.
    #[schema(value_type = Object)]
    pub state: LiveState,
    /// When it was taken.
    #[schema(value_type = String)]
    pub taken_at: RecordedAt,
    /// Why.
    pub trigger: Trigger,
    /// Who asked for it (on demand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_by: Option<String>,
    /// Free text (on demand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl SnapshotRecord {
    /// A snapshot of `live` at `head`.
    pub fn new(head: &ChainHead, live: &LiveState, trigger: Trigger) -> Self {
        Self {
            seq: head.seq.get(),
            head_hash: head.hash.to_hex(),
            event_count: live.exec.event_count,
            state: live.clone(),
            taken_at: RecordedAt::now(),
            trigger,
            taken_by: None,
            description: None,
        }
    }

    /// The chain head it starts from.
    pub fn head(&self, execution: ExecutionId) -> Result<ChainHead, ApiError> {
        let hash = self
            .head_hash
            .parse()
            .map_err(|_| ApiError::Internal(format!("corrupt snapshot {} of {execution}: head hash", self.seq)))?;
        Ok(ChainHead { execution_id: execution, seq: Seq::new(self.seq), hash })
    }
}

/// Whether a write moving the head from `before` to `after` takes a periodic snapshot: it
/// crosses a multiple of `every` entries (0: never).
pub fn periodic_due(every: u64, before: Seq, after: Seq) -> bool {
    every > 0 && before.get() / every != after.get() / every
}

/// Adds a snapshot to a write set.
pub fn put(ws: WriteSet, execution: ExecutionId, snap: &SnapshotRecord) -> Result<WriteSet, ApiError> {
    let bytes = serde_json::to_vec(snap).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(ws.put_snapshot(execution, Seq::new(snap.seq), bytes))
}

fn decode(execution: ExecutionId, seq: Seq, bytes: &[u8]) -> Result<SnapshotRecord, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Internal(format!("corrupt snapshot {seq} of {execution}: {e}")))
}

/// The snapshot at exactly `seq`.
pub fn get(store: &Store, execution: ExecutionId, seq: u64) -> Result<Option<SnapshotRecord>, ApiError> {
    match store.latest_snapshot(execution, Seq::new(seq))? {
        Some((at, bytes)) if at.get() == seq => Ok(Some(decode(execution, at, &bytes)?)),
        _ => Ok(None),
    }
}

/// The newest snapshot at or before `seq`.
pub fn latest(store: &Store, execution: ExecutionId, seq: u64) -> Result<Option<SnapshotRecord>, ApiError> {
    store.latest_snapshot(execution, Seq::new(seq))?.map(|(at, bytes)| decode(execution, at, &bytes)).transpose()
}

/// Up to `limit` snapshots of an execution with `after < seq <= up_to`, oldest first.
pub fn between(
    store: &Store,
    execution: ExecutionId,
    after: u64,
    up_to: u64,
    limit: usize,
) -> Result<Vec<SnapshotRecord>, ApiError> {
    let found = store.snapshots(execution, Seq::new(after), Seq::new(up_to), limit)?;
    found.into_iter().map(|(seq, bytes)| decode(execution, seq, &bytes)).collect()
}
