//! The action runner: takes due jobs from the run queue, runs them with a concurrency limit
//! and a per-attempt timeout, and records each attempt and the result on the ledger.
//!
//! One attempt of a job:
//!
//! 1. The job is marked `running` with its attempt number (a direct write of its record).
//! 2. The side effect runs (at most `action_timeout`).
//! 3. Through the execution's lane, in one atomic write: `action.attempted` (and, if the job
//!    is done, `action.succeeded` / `action.failed` / `action.dead`), the job's new status and
//!    queue position, and, if the template listens for it, the result event
//!    (`action.succeeded` / `action.failed`) stepped through the engine. The recorder checks
//!    inside the lane that the job is still `running` at this attempt, so a result is never
//!    recorded twice.
//!
//! A crash between 2 and 3 leaves the job `running` and in the queue: after a restart the same
//! attempt runs again (the receiver sees the same `Idempotency-Key` and can dedupe) and is
//! recorded once. Transient failures are retried after `backoff * 2^(n-1)` (at most
//! [`MAX_BACKOFF`]), with jitter (a random delay between half and all of it), or after the
//! receiver's `Retry-After`; after `action_max_attempts` attempts the job is `dead`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pled_core::{Body, ExecutionId, Kind, OrgId, RecordedAt};
use pled_store::{Store, Table, WriteSet};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use super::jobs::{self, AttemptRecord, JobRecord, JobStatus, QUEUE_KIND};
use super::kinds;
use super::types::{Context, Outcome, Registry};
use crate::error::ApiError;
use crate::lanes::{Lanes, NewEvent, Recording};
use crate::repo::executions::{self, ExecutionRecord};

/// The longest wait between two attempts (whatever the backoff or `Retry-After` says).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Re-read the queue at least this often (a safety net; lanes wake the runner).
const POLL: Duration = Duration::from_secs(1);
/// Tries to record an attempt before leaving the job to a later pass.
const RECORD_TRIES: u32 = 5;
/// The test seam: with this variable set (to anything), the process aborts right after the
/// first side effect, before recording it (the crash the runner must survive). Tests only.
pub const ABORT_AFTER_SIDE_EFFECT: &str = "PLED_TEST_ABORT_AFTER_SIDE_EFFECT";

/// How the runner runs jobs.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Longest attempt.
    pub timeout: Duration,
    /// Attempts per run before a job is dead.
    pub max_attempts: u32,
    /// The first retry's delay (doubling after each failure).
    pub backoff: Duration,
}

impl RunnerConfig {
    /// From the service configuration.
    pub fn from_config(c: &crate::config::ServeConfig) -> Self {
        Self {
            concurrency: c.action_concurrency.max(1),
            timeout: c.action_timeout,
            max_attempts: c.action_max_attempts.max(1),
            backoff: c.action_backoff,
        }
    }
}

/// Runs action jobs until stopped.
pub struct Runner {
    store: Store,
    lanes: Arc<Lanes>,
    registry: Registry,
    http: reqwest::Client,
    config: RunnerConfig,
    in_flight: Mutex<HashSet<Vec<u8>>>,
    permits: Arc<Semaphore>,
}

impl Runner {
    /// A runner over the lanes' store.
    pub fn new(store: Store, lanes: Arc<Lanes>, registry: Registry, config: RunnerConfig) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(config.concurrency)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Arc::new(Self {
            store,
            lanes,
            registry,
            http,
            permits: Arc::new(Semaphore::new(config.concurrency)),
            config,
            in_flight: Mutex::default(),
        })
    }

    /// The action types.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Runs until `stop` turns true. Jobs left `pending`, `retrying` or `running` by an
    /// earlier process are in the queue and run as soon as they are due.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        match crate::actions::jobs::backfill_status_index(&self.store).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "indexed the jobs of a store from before the status index"),
            Err(e) => {
                tracing::error!(error = %e, "indexing jobs by status failed; GET /v1/jobs?status= may miss older jobs")
            }
        }
        let wake = self.lanes.jobs_wake();
        let mut last_depth = Instant::now() - Duration::from_secs(60);
        loop {
            if *stop.borrow() {
                // Let the attempts in flight finish and record.
                let _ = self.permits.acquire_many(self.config.concurrency as u32).await;
                return;
            }
            if last_depth.elapsed() >= Duration::from_secs(5) {
                last_depth = Instant::now();
                self.report_depth();
            }
            let next = match self.pass().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the action queue failed");
                    None
                }
            };
            if !crate::lanes::wait_for_due(next, POLL, &wake, &mut stop).await {
                return;
            }
        }
    }

    fn report_depth(&self) {
        // Bounded: a deeper queue reports the bound.
        if let Ok(items) = self.store.scan(Table::Queue, &[QUEUE_KIND], b"", 100_000) {
            metrics::gauge!("pled_action_queue_depth").set(items.len() as f64);
        }
    }

    /// Starts every due job not already in flight (waiting for a free slot when all are
    /// busy); returns the due time of the first job that is not due yet.
    async fn pass(self: &Arc<Self>) -> Result<Option<i64>, ApiError> {
        let scan = self.config.concurrency * 2 + 64;
        let mut after: Vec<u8> = Vec::new();
        loop {
            let now = RecordedAt::now().unix_micros();
            let batch = self.store.scan(Table::Queue, &[QUEUE_KIND], &after, scan)?;
            let full = batch.len() == scan;
            for (qkey, _) in batch {
                let Some((due, key)) = jobs::parse_queue_key(&qkey) else {
                    continue;
                };
                if due > now {
                    return Ok(Some(due));
                }
                after.clone_from(&qkey);
                let key = key.to_vec();
                if !self.claim(&key) {
                    continue;
                }
                let Ok(permit) = self.permits.clone().acquire_owned().await else {
                    return Ok(None);
                };
                let this = self.clone();
                tokio::spawn(async move {
                    metrics::gauge!("pled_action_in_flight").increment(1.0);
                    if let Err(e) = this.execute(&qkey, &key).await {
                        tracing::warn!(error = %e, "action attempt not completed; it will be retried");
                        tokio::time::sleep(POLL).await;
                    }
                    metrics::gauge!("pled_action_in_flight").decrement(1.0);
                    this.release(&key);
                    drop(permit);
                });
            }
            if !full {
                return Ok(None);
            }
        }
    }

    fn claim(&self, key: &[u8]) -> bool {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_vec())
    }

    fn release(&self, key: &[u8]) {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Runs one attempt of the job under `key` and records it.
    async fn execute(&self, qkey: &[u8], key: &[u8]) -> Result<(), ApiError> {
        let Some(mut job) = jobs::load(&self.store, key)? else {
            // A queue key without its job: drop it.
            self.store.write(WriteSet::new().delete(Table::Queue, qkey.to_vec())).await?;
            return Ok(());
        };
        let record = match exec_record(&self.store, &job)? {
            Some(r) if !job.status.is_final() => r,
            _ => {
                // Done already (a stale key) or of no execution: out of the queue.
                if job.queue_due.is_some() && job.status.is_final() {
                    let ws = job.put(WriteSet::new(), None)?;
                    self.store.write(ws).await?;
                } else {
                    self.store.write(WriteSet::new().delete(Table::Queue, qkey.to_vec())).await?;
                }
                return Ok(());
            }
        };
        // A job found `running` was interrupted (crash, or a recording that failed): run the
        // same attempt again.
        let attempt = if job.status == JobStatus::Running { job.attempts } else { job.attempts + 1 };
        if job.status != JobStatus::Running {
            job.status = JobStatus::Running;
            job.attempts = attempt;
            job.updated_at = RecordedAt::now().as_str().to_owned();
            let ws = job.put(WriteSet::new(), job.queue_due)?;
            self.store.write(ws).await?;
        }
        let started_at = RecordedAt::now();
        let t0 = Instant::now();
        let outcome = self.attempt(&job, attempt).await;
        let elapsed = t0.elapsed();
        if std::env::var_os(ABORT_AFTER_SIDE_EFFECT).is_some_and(|v| !v.is_empty()) {
            tracing::error!(job = %job.id, "{ABORT_AFTER_SIDE_EFFECT} is set: aborting after the side effect");
            std::process::abort();
        }
        let ty = job.action_type.clone();
        let label = match &outcome {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
        };
        metrics::counter!("pled_action_attempts_total", "type" => ty.clone(), "outcome" => label).increment(1);
        metrics::histogram!("pled_action_attempt_duration_seconds", "type" => ty.clone()).record(elapsed.as_secs_f64());
        let plan = self.plan(&job, attempt, outcome, started_at, elapsed);
        let listens = self.listens(&record, plan.event_type());
        for n in 1..=RECORD_TRIES {
            let recorder = plan.clone().recorder(key.to_vec(), listens);
            match self.lanes.record(&record, recorder).await {
                Ok(a) => {
                    if let Some(result) = plan.result_kind()
                        && a.value()["entries"].as_array().is_some_and(|e| !e.is_empty())
                    {
                        metrics::counter!("pled_action_results_total", "type" => ty.clone(), "result" => result)
                            .increment(1);
                        let total = RecordedAt::now().unix_micros() - created_micros(&job);
                        metrics::histogram!("pled_action_latency_seconds", "type" => ty)
                            .record(total.max(0) as f64 / 1e6);
                    }
                    return Ok(());
                }
                Err(e) if n == RECORD_TRIES => return Err(e),
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "recording an action attempt failed; trying again");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(n))).await;
                }
            }
        }
        Ok(())
    }

    /// The side effect, bounded by the timeout.
    async fn attempt(&self, job: &JobRecord, attempt: u32) -> Outcome {
        let Some(ty) = self.registry.get(&job.action_type) else {
            return Outcome::failed(format!("unknown action type {:?}", job.action_type));
        };
        if let Err(e) = ty.check(&job.input) {
            return Outcome::failed(format!("invalid input: {e}"));
        }
        let cx = Context { job, attempt, store: &self.store, lanes: &self.lanes, http: &self.http };
        match tokio::time::timeout(self.config.timeout, ty.run(cx)).await {
            Ok(o) => o,
            Err(_) => Outcome::retry(format!("timed out after {} ms", self.config.timeout.as_millis())),
        }
    }

    /// What to record for an attempt's outcome.
    fn plan(&self, job: &JobRecord, attempt: u32, outcome: Outcome, started_at: RecordedAt, took: Duration) -> Plan {
        let used = attempt.saturating_sub(job.run_start);
        let (next, retry_in) = match &outcome {
            Outcome::Succeeded { .. } => (JobStatus::Succeeded, None),
            Outcome::Failed { .. } => (JobStatus::Failed, None),
            Outcome::Retry { .. } if used >= self.config.max_attempts => (JobStatus::Dead, None),
            Outcome::Retry { retry_after, .. } => {
                (JobStatus::Retrying, Some(retry_after.unwrap_or_else(|| backoff(self.config.backoff, used))))
            }
        };
        Plan { job_id: job.id.clone(), attempt, outcome, next, retry_in, started_at, took }
    }

    /// Whether the execution's template has a rule or a transition on `event_type`.
    fn listens(&self, record: &ExecutionRecord, event_type: Option<&str>) -> bool {
        let Some(t) = event_type else {
            return false;
        };
        match self.lanes.machine(&record.org, &record.template_id, record.version) {
            Ok(m) => {
                let tpl = m.template();
                tpl.rules.iter().any(|r| r.on == t) || tpl.transitions.iter().any(|x| x.on.as_deref() == Some(t))
            }
            Err(_) => false,
        }
    }
}

fn created_micros(job: &JobRecord) -> i64 {
    RecordedAt::parse(&job.created_at).map(|t| t.unix_micros()).unwrap_or_else(|_| RecordedAt::now().unix_micros())
}

fn exec_record(store: &Store, job: &JobRecord) -> Result<Option<ExecutionRecord>, ApiError> {
    let (Ok(org), Ok(id)) = (OrgId::new(&job.org), job.execution_id.parse::<ExecutionId>()) else {
        return Ok(None);
    };
    executions::get(store, &org, id)
}

/// `base * 2^(n-1)`, at most [`MAX_BACKOFF`], then a random point between half and all of it.
pub fn backoff(base: Duration, n: u32) -> Duration {
    let full = base.saturating_mul(1u32 << n.saturating_sub(1).min(20)).min(MAX_BACKOFF);
    let half = full / 2;
    half + full.saturating_sub(half).mul_f64(rand::random::<f64>())
}

/// The recording of one attempt, decided before it is written.
#[derive(Clone)]
struct Plan {
    job_id: String,
    attempt: u32,
    outcome: Outcome,
    next: JobStatus,
    retry_in: Option<Duration>,
    started_at: RecordedAt,
    took: Duration,
}

impl Plan {
    fn result_kind(&self) -> Option<&'static str> {
        match self.next {
            JobStatus::Succeeded => Some(kinds::ACTION_SUCCEEDED),
            JobStatus::Failed => Some(kinds::ACTION_FAILED),
            JobStatus::Dead => Some(kinds::ACTION_DEAD),
            _ => None,
        }
    }

    fn event_type(&self) -> Option<&'static str> {
        match self.next {
            JobStatus::Succeeded => Some(super::events::SUCCEEDED),
            JobStatus::Failed | JobStatus::Dead => Some(super::events::FAILED),
            _ => None,
        }
    }

    fn parts(&self) -> (&'static str, Option<u16>, Option<String>, Value) {
        let label = match self.next {
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Dead => "dead",
            _ => "retry",
        };
        match &self.outcome {
            Outcome::Succeeded { response, status } => (label, *status, None, response.clone()),
            Outcome::Retry { error, status, .. } => (label, *status, Some(error.clone()), Value::Null),
            Outcome::Failed { error, status, response } => (label, *status, Some(error.clone()), response.clone()),
        }
    }

    /// The recorder run inside the lane: nothing if the attempt is recorded already.
    fn recorder(self, key: Vec<u8>, listens: bool) -> crate::lanes::Recorder {
        Box::new(move |store, head| {
            let Some(mut job) = jobs::load(store, &key)? else {
                return Ok(None);
            };
            if job.status != JobStatus::Running || job.attempts != self.attempt || job.id != self.job_id {
                return Ok(None);
            }
            let (label, status, error, response) = self.parts();
            let now = RecordedAt::now();
            let next_at = self.retry_in.map(|d| now.unix_micros() + d.min(MAX_BACKOFF).as_micros() as i64);
            let seq = head.seq.get() + 1;
            job.attempt_log.push(AttemptRecord {
                attempt: self.attempt,
                started_at: self.started_at.as_str().to_owned(),
                duration_ms: self.took.as_millis() as u64,
                outcome: label.to_owned(),
                status,
                error: error.clone(),
                seq,
            });
            job.status = self.next;
            job.updated_at = now.as_str().to_owned();
            if error.is_some() {
                job.last_error.clone_from(&error);
            }
            let next_at_text = next_at.and_then(|m| RecordedAt::from_unix_micros(m).ok());
            let attempted = json!({
                "jobId": job.id,
                "actionId": job.action_id,
                "type": job.action_type,
                "attempt": self.attempt,
                "outcome": label,
                "status": status,
                "error": error,
                "durationMs": self.took.as_millis() as u64,
                "nextAttemptAt": next_at_text.as_ref().map(RecordedAt::as_str),
            });
            let mut entries = vec![(kind(kinds::ACTION_ATTEMPTED), body(&attempted)?)];
            let mut event = None;
            if let Some(result_kind) = self.result_kind() {
                let attempts = job.attempts.saturating_sub(job.run_start);
                let mut result = json!({
                    "jobId": job.id,
                    "actionId": job.action_id,
                    "type": job.action_type,
                    "attempts": attempts,
                });
                match self.next {
                    JobStatus::Succeeded => result["response"] = response.clone(),
                    _ => {
                        result["error"] = json!(error);
                        result["status"] = json!(status);
                        result["response"] = response.clone();
                    }
                }
                job.result = Some(result.clone());
                job.result_seq = Some(seq + 1);
                entries.push((kind(result_kind), body(&result)?));
                if listens && let Some(t) = self.event_type() {
                    let mut payload = result;
                    payload["dead"] = json!(self.next == JobStatus::Dead);
                    event = Some(NewEvent {
                        kind: t.to_owned(),
                        payload,
                        source: format!("action:{}", job.action_id),
                        occurred_at: None,
                    });
                }
            }
            let ws = job.put(WriteSet::new(), next_at)?;
            Ok(Some(Recording { entries, ws, event }))
        })
    }
}

fn kind(k: &str) -> Kind {
    #[allow(clippy::unwrap_used)] // INVARIANT: the kinds of `actions::kinds` are valid kind literals.
    Kind::new(k).unwrap()
}

fn body(v: &Value) -> Result<Body, ApiError> {
    Body::from_value(v).map_err(|e| ApiError::Internal(format!("action entry body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for n in 1..=6 {
            let full = base * (1 << (n - 1));
            for _ in 0..50 {
                let d = backoff(base, n);
                assert!(d >= full / 2 && d <= full, "attempt {n}: {d:?}");
            }
        }
        assert!(backoff(Duration::from_secs(60), 30) <= MAX_BACKOFF);
    }
}
