//! What every request handler shares.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use pled_store::Store;
use tokio::sync::{Mutex, MutexGuard};

use crate::auth::JwtConfig;
use crate::config::ServeConfig;
use crate::hub::Hub;
use crate::lanes::Lanes;

/// Shared state of the service: one `Arc`, so the per-request clones the router makes cost
/// one reference count (not one per service).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// Shares `services`.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What every request handler shares (through [`AppState`]).
pub struct Services {
    /// The ledger store.
    pub store: Store,
    /// JWT verification settings.
    pub jwt: Arc<JwtConfig>,
    /// The effective configuration.
    pub config: Arc<ServeConfig>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Serialises read-modify-write of one record (and idempotent creation under one key).
    pub locks: Arc<KeyLocks>,
    /// Execution records read so far (they never change).
    pub records: crate::repo::executions::RecordCache,
    /// The executions' processing lanes.
    pub lanes: Arc<Lanes>,
    /// Live updates for stream subscribers.
    pub hub: Arc<Hub>,
    /// Commit rounds, proofs and commitments.
    pub committer: Arc<pled_committer::Committer>,
    /// Access tokens verified so far.
    pub tokens: Arc<crate::repo::tokens::Verifier>,
    /// Per-org request rates (changed by a reload).
    pub limits: crate::ratelimit::OrgLimits,
    /// The longest lifetime of a token issued through the API (changed by a reload; `config`
    /// keeps the value at start).
    pub token_max_lifetime: std::sync::RwLock<Option<std::time::Duration>>,
    /// The action runner (spawned by `pled serve`; tests spawn it when they need it).
    pub runner: Arc<crate::actions::Runner>,
    /// Fires due timers (spawned like the runner).
    pub timers: Arc<crate::timers::TimerService>,
    /// Replay slots and background replays.
    pub runs: crate::runs::Runs,
}

/// A fixed set of async mutexes; a key always maps to the same one. Bounded memory, and two
/// requests touching the same record (or retrying with the same idempotency key) never
/// interleave their read-modify-write.
pub struct KeyLocks {
    stripes: Vec<Mutex<()>>,
}

impl KeyLocks {
    /// `n` stripes.
    pub fn new(n: usize) -> Self {
        Self { stripes: (0..n.max(1)).map(|_| Mutex::new(())).collect() }
    }

    /// The stripe `key` maps to.
    pub fn stripe(&self, key: &str) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.stripes.len() as u64) as usize
    }

    /// Locks the stripe of `key`.
    pub async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(key)].lock().await
    }

    /// Locks the stripes of all `keys` at once. Never lock a second key while holding one:
    /// two keys can share a stripe, and the task would wait for itself. Here each stripe is
    /// locked once, in ascending order, so two tasks holding several never wait for each
    /// other in a cycle either.
    pub async fn lock_all(&self, keys: &[&str]) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = keys.iter().map(|k| self.stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.stripes[i].lock().await);
        }
        guards
    }
}

impl Default for KeyLocks {
    fn default() -> Self {
        Self::new(1024)
    }
}
