//! Replays and comparisons that run longer than a request may wait: *runs*, started with
//! `background: true`, followed with `GET /v1/replays/{id}` and stopped with
//! `POST /v1/replays/{id}/cancel`.
//!
//! Every replay and comparison, in the background or not, takes one of a fixed number of
//! slots (`--replay-concurrency`) while it folds, so that a burst of replays cannot take the
//! cores away from ingest. A background run waits its turn `queued`; a request that cannot get
//! a slot before its deadline answers 503.
//!
//! Runs live in memory: they only read, so a run lost in a restart is run again. Each org
//! keeps its last [`RUNS_KEPT`]; the oldest finished one makes room for a new one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pled_core::{OrgId, RecordedAt};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::replay::Progress;

/// Runs an org keeps (queued, running and finished).
pub const RUNS_KEPT: usize = 100;

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// `POST /v1/executions/{id}/replay`.
    Replay,
    /// `POST /v1/executions/{id}/compare`.
    Compare,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a slot.
    Queued,
    /// Folding.
    Running,
    /// Ran to its end: `report` holds what it found (which may be a divergence).
    Succeeded,
    /// Could not run (`error` says why).
    Failed,
    /// Stopped by a cancel or the server's shutdown (`error` says how far it got).
    Cancelled,
}

/// A run, as `GET /v1/replays/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    /// Its id.
    pub id: String,
    /// `replay` or `compare`.
    pub kind: RunKind,
    /// The execution it reads.
    pub execution_id: String,
    /// Where it is.
    pub status: RunStatus,
    /// The request body that started it.
    #[schema(value_type = Object)]
    pub request: Value,
    /// Who started it.
    pub created_by: String,
    /// When it was accepted.
    #[schema(value_type = String)]
    pub created_at: RecordedAt,
    /// When it got its slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub started_at: Option<RecordedAt>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<RecordedAt>,
    /// How far it got (updated every 256 inputs).
    pub progress: Progress,
    /// `succeeded`: the replay report or comparison report, exactly as the request without
    /// `background` would have answered (not in listings).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub report: Option<Report>,
    /// `failed` or `cancelled`: the problem the request without `background` would have
    /// answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// A finished run's report, kept as the compact JSON text it is answered with (a fraction of
/// the memory of a parsed value) and shared by every view of the run.
#[derive(Debug, Clone)]
pub struct Report(Arc<RawValue>);

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// One run: its view, its cancellation flag and where the fold reports its progress.
pub struct Run {
    view: Mutex<RunView>,
    cancel: AtomicBool,
    cancelled: Notify,
    progress: Mutex<Progress>,
}

impl Run {
    /// Its id.
    pub fn id(&self) -> String {
        self.lock().id.clone()
    }

    /// What it looks like now (its progress is where the fold last showed it).
    pub fn view(&self) -> RunView {
        let mut v = self.lock().clone();
        v.progress = *self.progress.lock().unwrap_or_else(|p| p.into_inner());
        v
    }

    /// The flag the fold checks.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// Where the fold reports its progress.
    pub fn progress(&self) -> &Mutex<Progress> {
        &self.progress
    }

    /// Asks it to stop: a queued run ends at once, a running one at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.cancelled.notify_one();
    }

    /// Resolves once [`Run::cancel`] was called (at once if it already was).
    pub async fn cancelled(&self) {
        if !self.cancel.load(Ordering::Relaxed) {
            self.cancelled.notified().await;
        }
    }

    /// It got its slot.
    pub fn started(&self) {
        let mut v = self.lock();
        v.status = RunStatus::Running;
        v.started_at = Some(RecordedAt::now());
    }

    /// It ended: with its report, or the problem that stopped it.
    pub fn finished(&self, outcome: Result<Box<RawValue>, ApiError>) {
        let mut v = self.lock();
        v.finished_at = Some(RecordedAt::now());
        match outcome {
            Ok(report) => {
                v.status = RunStatus::Succeeded;
                v.report = Some(Report(report.into()));
            }
            Err(e) => {
                v.status = if self.cancel.load(Ordering::Relaxed) { RunStatus::Cancelled } else { RunStatus::Failed };
                v.error = Some(e.problem());
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, RunView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_finished(&self) -> bool {
        matches!(self.lock().status, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled)
    }
}

/// The slots and every org's runs.
pub struct Runs {
    slots: Arc<Semaphore>,
    size: usize,
    orgs: Mutex<HashMap<OrgId, VecDeque<Arc<Run>>>>,
}

impl Runs {
    /// `slots` replays or comparisons fold at once (at least one).
    pub fn new(slots: usize) -> Self {
        let size = slots.max(1);
        Self { slots: Arc::new(Semaphore::new(size)), size, orgs: Mutex::default() }
    }

    /// A slot for a replay answered in its request: waits until `deadline` at most, behind
    /// the runs already queued.
    pub async fn slot_until(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, ApiError> {
        let wait = self.slots.clone().acquire_owned();
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::Unavailable(format!(
                "all {} replay slots stayed busy (replays and comparisons running or queued); try again, or \
                 start it with \"background\": true and follow it at /v1/replays/{{id}}",
                self.size
            ))),
        }
    }

    /// A slot for a background run, once one is free.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed.
        self.slots.clone().acquire_owned().await.unwrap_or_else(|_| unreachable!("the replay slots are never closed"))
    }

    /// Slots in use now (by requests and background runs).
    pub fn busy(&self) -> usize {
        self.size - self.slots.available_permits()
    }

    /// Background runs waiting for a slot, over all orgs.
    pub fn queued(&self) -> usize {
        self.orgs().values().flatten().filter(|r| r.lock().status == RunStatus::Queued).count()
    }

    /// Registers a queued run. 429 when the org already has [`RUNS_KEPT`] runs and none of
    /// them has finished.
    pub fn submit(
        &self,
        who: &Principal,
        kind: RunKind,
        execution_id: &str,
        request: Value,
    ) -> Result<Arc<Run>, ApiError> {
        let run = Arc::new(Run {
            view: Mutex::new(RunView {
                id: uuid::Uuid::now_v7().hyphenated().to_string(),
                kind,
                execution_id: execution_id.to_owned(),
                status: RunStatus::Queued,
                request,
                created_by: who.subject.clone(),
                created_at: RecordedAt::now(),
                started_at: None,
                finished_at: None,
                progress: Progress::default(),
                report: None,
                error: None,
            }),
            cancel: AtomicBool::new(false),
            cancelled: Notify::new(),
            progress: Mutex::default(),
        });
        let mut orgs = self.orgs();
        let runs = orgs.entry(who.org.clone()).or_default();
        if runs.len() >= RUNS_KEPT {
            let Some(oldest) = runs.iter().position(|r| r.is_finished()) else {
                return Err(ApiError::TooManyRequests(format!(
                    "{RUNS_KEPT} replays and comparisons are already queued or running for this org; wait for one \
                     to finish or cancel one"
                )));
            };
            runs.remove(oldest);
        }
        runs.push_back(run.clone());
        Ok(run)
    }

    /// One of the org's runs (`None` for another org's, as for one that does not exist).
    pub fn get(&self, org: &OrgId, id: &str) -> Option<Arc<Run>> {
        self.orgs().get(org)?.iter().find(|r| r.lock().id == id).cloned()
    }

    /// The org's runs, newest first, without their reports.
    pub fn list(&self, org: &OrgId) -> Vec<RunView> {
        let summary = |r: &Arc<Run>| RunView { report: None, ..r.view() };
        self.orgs().get(org).map(|runs| runs.iter().rev().map(summary).collect()).unwrap_or_default()
    }

    fn orgs(&self) -> MutexGuard<'_, HashMap<OrgId, VecDeque<Arc<Run>>>> {
        self.orgs.lock().unwrap_or_else(|p| p.into_inner())
    }
}
