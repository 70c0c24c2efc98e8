//! Live fan-out of new ledger entries and state changes to stream subscribers, one bounded
//! broadcast channel per watched execution. Lanes publish after the durable write; a
//! subscriber that falls behind the channel's capacity is told it lagged (see
//! `routes::streams`) instead of slowing ingest or growing memory.
//!
//! The hub also carries the server's shutdown to everyone who waits on it: when it closes,
//! streams end with `closing`, long-polls answer, and replays stop, so that a graceful
//! shutdown does not wait for clients that would otherwise hold their requests open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pled_core::{ExecutionId, SealedEntry};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::error::ApiError;
use crate::repo::executions::LiveState;

/// How many items a subscriber may fall behind before it is told it lagged.
pub const STREAM_BUFFER: usize = 1024;

/// What lanes publish.
#[derive(Debug, Clone)]
pub enum Update {
    /// New entries, in seq order (one durable write's worth).
    Entries(Arc<Vec<SealedEntry>>),
    /// The state after those entries.
    State(Arc<StateChange>),
}

/// A state change, as streams send it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateChange {
    /// The seq of the last entry the state includes.
    pub head_seq: u64,
    /// Its hash.
    pub head_hash: String,
    /// Status and engine state.
    #[serde(flatten)]
    pub live: LiveState,
}

/// Broadcast channels by execution.
pub struct Hub {
    channels: Mutex<HashMap<ExecutionId, broadcast::Sender<Update>>>,
    /// `true` once the server shuts down.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self { channels: Mutex::default(), closing: watch::Sender::new(false) }
    }
}

impl Hub {
    /// Marks the server as shutting down: [`Hub::closed`] resolves for everyone, now and
    /// later.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once the server shuts down.
    pub async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        // The sender lives as long as the hub, so the wait ends only when it closes.
        let _ = rx.wait_for(|closing| *closing).await;
    }

    /// Awaits `f` unless the server shuts down first, which answers 503 (`f` wins when both
    /// are ready): how a request that holds itself open (a long-poll, a wait for a replay
    /// slot) lets the shutdown go on.
    pub async fn unless_closing<F: std::future::Future>(&self, f: F) -> Result<F::Output, ApiError> {
        tokio::select! {
            biased;
            out = f => Ok(out),
            () = self.closed() => Err(ApiError::Unavailable("the server is shutting down; try again once it is back".into())),
        }
    }

    /// Subscribes to an execution's updates (before reading its snapshot, so nothing written
    /// afterwards is missed).
    pub fn subscribe(&self, id: ExecutionId) -> broadcast::Receiver<Update> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_insert_with(|| broadcast::channel(STREAM_BUFFER).0).subscribe()
    }

    /// Publishes to an execution's subscribers, if it has any (the updates are built only
    /// then: most writes have nobody listening).
    pub fn publish<U: IntoIterator<Item = Update>>(&self, id: ExecutionId, updates: impl FnOnce() -> U) {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = map.get(&id) else { return };
        if tx.receiver_count() == 0 {
            map.remove(&id);
            return;
        }
        for u in updates() {
            let _ = tx.send(u);
        }
    }
}
