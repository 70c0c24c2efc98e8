//! Execution records. The static part (template pin, name, creator) is a JSON record under
//! `exe/<org>/<id>`; the dynamic part (status, engine state) is the head state of the
//! execution's chain, written atomically with every append by its lane.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pled_core::{ExecutionId, OrgId, RecordedAt};
use pled_engine::ExecState;
use pled_store::{Store, WriteSet};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{get_json, put_json, scan_json};
use crate::error::ApiError;

/// Where an execution is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started, no event applied yet.
    Created,
    /// Events are being applied.
    Running,
    /// Events are accepted and queued, not applied (operator control).
    Paused,
    /// A final state was entered.
    Completed,
    /// Stopped by an unrecoverable error or an operator.
    Failed,
    /// Stopped by an operator.
    Cancelled,
}

impl Status {
    /// Whether the execution still takes events.
    pub fn accepts_events(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// The static description of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    /// Id (UUID v7); also the ledger's `execution_id`.
    #[schema(value_type = String)]
    pub id: ExecutionId,
    /// Owning org.
    #[schema(value_type = String)]
    pub org: OrgId,
    /// Template it runs.
    pub template_id: String,
    /// Pinned version.
    pub version: u32,
    /// BLAKE3 of the pinned version's canonical JSON (also in its `execution.created` entry).
    pub template_hash: String,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When created.
    #[schema(value_type = String)]
    pub created_at: RecordedAt,
    /// Who created it.
    pub created_by: String,
}

/// The head state bytes of an execution's chain: its status and its engine state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LiveState {
    /// Lifecycle status.
    pub status: Status,
    /// The engine's state.
    pub exec: ExecState,
    /// While paused: where the queue of events waiting for resume starts and how long it
    /// is. The events themselves are the `event.queued` entries after `sinceSeq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<PauseQueue>,
}

/// The events a paused execution accepted and has not applied yet.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PauseQueue {
    /// Seq of the `admin.paused` entry; every `event.queued` entry after it is queued.
    pub since_seq: u64,
    /// How many events are queued.
    pub length: u64,
}

impl LiveState {
    /// The state of a freshly started execution.
    pub fn started(exec: ExecState) -> Self {
        let status = if exec.completed { Status::Completed } else { Status::Created };
        Self { status, exec, queue: None }
    }
}

impl LiveState {
    /// Encodes for the head.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a head's state bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ApiError> {
        serde_json::from_slice(b).map_err(|e| ApiError::Internal(format!("corrupt execution state: {e}")))
    }
}

fn key(org: &OrgId, id: ExecutionId) -> String {
    format!("exe/{org}/{id}")
}

/// One execution of the org (`None` for another org's, which the caller answers with 404).
pub fn get(store: &Store, org: &OrgId, id: ExecutionId) -> Result<Option<ExecutionRecord>, ApiError> {
    get_json(store, &key(org, id))
}

/// Execution records read so far, by id. A record never changes once written (it is put only
/// when its execution is created), so a cached one is always current. The cache empties itself
/// when it reaches [`RecordCache::CAPACITY`] records, which bounds its memory.
#[derive(Default)]
pub struct RecordCache(Mutex<HashMap<ExecutionId, Arc<ExecutionRecord>>>);

impl RecordCache {
    /// Records held at most (a few hundred bytes each).
    pub const CAPACITY: usize = 65_536;

    /// [`get`], from memory after the first read.
    pub fn get(&self, store: &Store, org: &OrgId, id: ExecutionId) -> Result<Option<Arc<ExecutionRecord>>, ApiError> {
        if let Some(rec) = self.cached(id) {
            return Ok((rec.org == *org).then_some(rec));
        }
        Ok(get(store, org, id)?.map(|rec| self.keep(rec)))
    }

    /// [`find`] (whatever the org), from memory after the first read.
    pub fn find(&self, store: &Store, id: ExecutionId) -> Result<Option<Arc<ExecutionRecord>>, ApiError> {
        if let Some(rec) = self.cached(id) {
            return Ok(Some(rec));
        }
        Ok(find(store, id)?.map(|rec| self.keep(rec)))
    }

    fn cached(&self, id: ExecutionId) -> Option<Arc<ExecutionRecord>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    fn keep(&self, rec: ExecutionRecord) -> Arc<ExecutionRecord> {
        let rec = Arc::new(rec);
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cached.len() >= Self::CAPACITY {
            cached.clear();
        }
        cached.insert(rec.id, rec.clone());
        rec
    }
}

/// Adds a record to a write set.
pub fn put(ws: WriteSet, rec: &ExecutionRecord) -> Result<WriteSet, ApiError> {
    put_json(ws, &key(&rec.org, rec.id), rec)
}

/// The `meta` marker of a store whose armed timers are all in the timer index (written by
/// the timer service's start-up backfill).
pub const BACKFILLED: &[u8] = b"index/backfill-v1";

/// The org of an execution, for callers that have no token to take it from (signed inbound
/// webhooks, the mint recorder, the offline CLI): it is in the execution's first ledger
/// entry (`execution.created`), one point read away.
pub fn org_of(store: &Store, id: ExecutionId) -> Result<Option<OrgId>, ApiError> {
    let Some(created) = store.entry(id, pled_core::Seq::FIRST)? else {
        return Ok(None);
    };
    let body = created.entry().body.to_value().map_err(|e| ApiError::Internal(e.to_string()))?;
    match body["org"].as_str().map(OrgId::new) {
        Some(Ok(org)) => Ok(Some(org)),
        _ => Err(ApiError::Internal(format!("execution {id}: its first entry names no org"))),
    }
}

/// An execution's record, whatever its org (see [`org_of`]).
pub fn find(store: &Store, id: ExecutionId) -> Result<Option<ExecutionRecord>, ApiError> {
    match org_of(store, id)? {
        Some(org) => get(store, &org, id),
        None => Ok(None),
    }
}

/// The live state of an execution.
pub fn live(store: &Store, id: ExecutionId) -> Result<Option<(pled_core::ChainHead, LiveState)>, ApiError> {
    match store.head(id)? {
        Some(h) => Ok(Some((h.chain, LiveState::from_bytes(&h.state)?))),
        None => Ok(None),
    }
}

/// Up to `limit` records after `cursor` (exclusive), in id order.
pub fn scan(store: &Store, org: &OrgId, cursor: Option<&str>, limit: usize) -> Result<Vec<ExecutionRecord>, ApiError> {
    Ok(scan_json(store, &format!("exe/{org}/"), cursor, limit)?.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use pled_store::StoreOptions;

    use super::*;

    fn record(org: &OrgId, n: u128) -> ExecutionRecord {
        ExecutionRecord {
            id: ExecutionId::from_u128(n),
            org: org.clone(),
            template_id: "t".into(),
            version: 1,
            template_hash: "h".into(),
            name: format!("e{n}"),
            description: None,
            created_at: RecordedAt::from_unix_micros(0).unwrap(),
            created_by: "test".into(),
        }
    }

    #[test]
    fn the_record_cache_answers_like_the_store_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (acme, globex) = (OrgId::new("acme").unwrap(), OrgId::new("globex").unwrap());
        let rec = record(&acme, 1);
        store.write_blocking(put(WriteSet::new(), &rec).unwrap()).unwrap();
        let cache = RecordCache::default();
        for _ in 0..2 {
            // Read from the store, then from memory: the same answers, another org's included.
            assert_eq!(cache.get(&store, &acme, rec.id).unwrap().as_deref(), Some(&rec));
            assert!(cache.get(&store, &globex, rec.id).unwrap().is_none());
            assert!(cache.get(&store, &acme, ExecutionId::from_u128(2)).unwrap().is_none());
        }
        assert!(cache.find(&store, ExecutionId::from_u128(2)).unwrap().is_none());
        let mut ws = WriteSet::new();
        for n in 10..10 + RecordCache::CAPACITY as u128 {
            ws = put(ws, &record(&acme, n)).unwrap();
        }
        store.write_blocking(ws).unwrap();
        for n in 10..10 + RecordCache::CAPACITY as u128 {
            assert!(cache.get(&store, &acme, ExecutionId::from_u128(n)).unwrap().is_some());
            assert!(cache.0.lock().unwrap().len() <= RecordCache::CAPACITY);
        }
        assert_eq!(cache.get(&store, &acme, rec.id).unwrap().as_deref(), Some(&rec), "read again after emptying");
    }
}
