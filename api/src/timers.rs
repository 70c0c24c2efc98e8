//! Firing armed timers, durably.
//!
//! The engine arms and cancels timers in an execution's state (`ExecState.timers`, with the
//! `timer.armed` / `timer.cancelled` entries). The service keeps an index of the timers it
//! must fire in the store's `queue` table, key `b't' || due (µs, u64 BE) || execution id (16
//! bytes) || transition id`, value the org. The index is written in the same atomic write as
//! the entries and state that arm or cancel the timers ([`reindex`], called by every lane
//! write and at start), so after a crash it is exactly as the ledger says. It holds the
//! timers of executions that are created or running: pausing takes an execution's timers
//! out, resuming puts them back (a timer that fell due while paused fires on resume),
//! finishing removes them.
//!
//! [`TimerService`] reads the index from its earliest key, fires what is due through the
//! execution's lane ([`crate::lanes::Lanes::fire_timer`], which checks the timer is still
//! armed and writes `timer.fired` with the transition's entries, removing the key in the same
//! write), and sleeps until the next due time or until a lane arms an earlier one. Memory does
//! not grow with the number of pending timers: they stay in RocksDB.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pled_core::{ExecutionId, OrgId, RecordedAt};
use pled_store::{Table, WriteSet};
use tokio::sync::{Semaphore, watch};

use crate::lanes::Lanes;
use crate::repo::executions::{self, BACKFILLED, LiveState, Status};

/// The first byte of every timer key of the `queue` table.
pub const TIMER_KIND: u8 = b't';
/// Timers read from the index per pass.
const SCAN: usize = 1_024;
/// Timers being fired at once (different executions fire in parallel).
const PARALLEL: usize = 256;
/// Re-read the index at least this often (a safety net; lanes wake the service).
const POLL: Duration = Duration::from_secs(1);
/// Wait after a firing failed before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// The index key of a timer.
pub fn timer_key(due_micros: i64, execution: ExecutionId, transition_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(25 + transition_id.len());
    k.push(TIMER_KIND);
    k.extend_from_slice(&(due_micros.max(0) as u64).to_be_bytes());
    k.extend_from_slice(execution.as_bytes());
    k.extend_from_slice(transition_id.as_bytes());
    k
}

/// An index key read back: (due µs, execution, transition id).
pub fn parse_timer_key(k: &[u8]) -> Option<(i64, ExecutionId, &str)> {
    if k.len() < 25 || k[0] != TIMER_KIND {
        return None;
    }
    let due = i64::try_from(u64::from_be_bytes(k[1..9].try_into().ok()?)).ok()?;
    let exec = ExecutionId::from_bytes(k[9..25].try_into().ok()?);
    Some((due, exec, std::str::from_utf8(&k[25..]).ok()?))
}

/// The timers of a state that the service must fire: (due µs, transition id).
fn indexed(live: &LiveState) -> Vec<(i64, &str)> {
    if !matches!(live.status, Status::Created | Status::Running) || live.exec.completed {
        return Vec::new();
    }
    live.exec
        .timers
        .iter()
        .filter_map(|t| RecordedAt::parse(&t.due_at).ok().map(|d| (d.unix_micros(), t.transition_id.as_str())))
        .collect()
}

/// Adds to `ws` the index changes from state `old` (`None`: a new execution) to `new`.
/// Returns whether any timer was added (the service should look again).
pub fn reindex(
    mut ws: WriteSet,
    org: &OrgId,
    execution: ExecutionId,
    old: Option<&LiveState>,
    new: &LiveState,
) -> (WriteSet, bool) {
    let before = old.map(indexed).unwrap_or_default();
    let after = indexed(new);
    let mut added = false;
    for (due, t) in &before {
        if !after.contains(&(*due, *t)) {
            ws = ws.delete(Table::Queue, timer_key(*due, execution, t));
        }
    }
    for (due, t) in &after {
        if !before.contains(&(*due, *t)) {
            ws = ws.put(Table::Queue, timer_key(*due, execution, t), org.as_str().as_bytes().to_vec());
            added = true;
        }
    }
    (ws, added)
}

/// Removes one timer from the index.
pub fn unindex(ws: WriteSet, execution: ExecutionId, transition_id: &str, due_micros: i64) -> WriteSet {
    ws.delete(Table::Queue, timer_key(due_micros, execution, transition_id))
}

/// Fires due timers from the index until stopped.
pub struct TimerService {
    lanes: Arc<Lanes>,
    store: pled_store::Store,
    in_flight: Mutex<HashSet<Vec<u8>>>,
    parallel: Arc<Semaphore>,
}

impl TimerService {
    /// A service over the lanes (and their store).
    pub fn new(store: pled_store::Store, lanes: Arc<Lanes>) -> Arc<Self> {
        Arc::new(Self { lanes, store, in_flight: Mutex::default(), parallel: Arc::new(Semaphore::new(PARALLEL)) })
    }

    /// Runs until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if let Err(e) = self.backfill().await {
            tracing::error!(error = %e, "building the timer index of an older store failed; timers armed before the upgrade will not fire");
        }
        let wake = self.lanes.timers_wake();
        loop {
            if *stop.borrow() {
                return;
            }
            let next = match self.pass().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the timer index failed");
                    Some(RecordedAt::now().unix_micros() + RETRY.as_micros() as i64)
                }
            };
            if !crate::lanes::wait_for_due(next, POLL, &wake, &mut stop).await {
                return;
            }
        }
    }

    /// Starts firing every due timer not already being fired; returns the due time of the
    /// first timer that is not due yet.
    async fn pass(self: &Arc<Self>) -> Result<Option<i64>, crate::error::ApiError> {
        let mut after: Vec<u8> = Vec::new();
        loop {
            let now = RecordedAt::now().unix_micros();
            let batch = self.store.scan(Table::Queue, &[TIMER_KIND], &after, SCAN)?;
            let full = batch.len() == SCAN;
            for (key, org) in batch {
                let Some((due, exec, transition)) = parse_timer_key(&key) else {
                    continue;
                };
                if due > now {
                    return Ok(Some(due));
                }
                after.clone_from(&key);
                if !self.claim(&key) {
                    continue;
                }
                let Ok(permit) = self.parallel.clone().acquire_owned().await else {
                    return Ok(None);
                };
                let this = self.clone();
                let transition = transition.to_owned();
                let org = String::from_utf8_lossy(&org).into_owned();
                tokio::spawn(async move {
                    this.fire(&org, exec, &transition, due).await;
                    this.release(&key);
                    drop(permit);
                });
            }
            if !full {
                return Ok(None);
            }
        }
    }

    /// Stores written before the timer index existed have armed timers only in their
    /// executions' states: index them once (marker `index/backfill-v1` in `meta`).
    async fn backfill(&self) -> Result<(), crate::error::ApiError> {
        if self.store.get(Table::Meta, BACKFILLED)?.is_some() {
            return Ok(());
        }
        let mut after: Vec<u8> = Vec::new();
        let mut indexed = 0usize;
        loop {
            let batch = self.store.scan(Table::Meta, b"exe/", &after, 1_000)?;
            let mut ws = WriteSet::new();
            for (k, v) in &batch {
                after.clone_from(k);
                let Ok(rec) = serde_json::from_slice::<executions::ExecutionRecord>(v) else {
                    continue;
                };
                if let Some((_, live)) = executions::live(&self.store, rec.id)? {
                    let (next, added) = reindex(ws, &rec.org, rec.id, None, &live);
                    ws = next;
                    indexed += usize::from(added);
                }
            }
            self.store.write(ws).await?;
            if batch.len() < 1_000 {
                break;
            }
        }
        self.store.write(WriteSet::new().put(Table::Meta, BACKFILLED.to_vec(), b"1".to_vec())).await?;
        if indexed > 0 {
            tracing::info!(
                executions = indexed,
                "indexed the armed timers of executions started before the timer index"
            );
        }
        Ok(())
    }

    fn claim(&self, key: &[u8]) -> bool {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_vec())
    }

    fn release(&self, key: &[u8]) {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    async fn fire(&self, org: &str, exec: ExecutionId, transition: &str, due: i64) {
        let record = match OrgId::new(org).ok().map(|o| executions::get(&self.store, &o, exec)) {
            Some(Ok(Some(r))) => r,
            Some(Err(e)) => {
                tracing::warn!(execution_id = %exec, error = %e, "timer: reading the execution failed");
                tokio::time::sleep(RETRY).await;
                return;
            }
            _ => {
                // No such execution (deleted, or a corrupt key): drop the key.
                let _ = self.store.write(unindex(WriteSet::new(), exec, transition, due)).await;
                return;
            }
        };
        let started = std::time::Instant::now();
        match self.lanes.fire_timer(&record, transition, due).await {
            Ok(_) => {
                let late = (RecordedAt::now().unix_micros() - due).max(0) as f64 / 1e6;
                metrics::histogram!("pled_timer_firing_delay_seconds").record(late);
                metrics::histogram!("pled_timer_fire_duration_seconds").record(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                tracing::warn!(execution_id = %exec, transition, error = %e, "firing a timer failed; will retry");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_sort_by_due_time_and_read_back() {
        let id = ExecutionId::new_v7();
        let a = timer_key(10, id, "expire");
        let b = timer_key(11, id, "a");
        assert!(a < b);
        assert_eq!(parse_timer_key(&a), Some((10, id, "expire")));
        assert_eq!(parse_timer_key(b"j123"), None);
    }
}
