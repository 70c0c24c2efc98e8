//! Action jobs as the store keeps them.
//!
//! - The record: table `jobs`, key `execution id (16 bytes) || job key`, a JSON
//!   [`JobRecord`]. Its id, `<execution id>/<job key>`, is the idempotency key handed to the
//!   side effect.
//! - Its place in the run queue: table `queue`, key `b'j' || due (µs since the epoch, u64 BE)
//!   || record key`, empty value. A job is in the queue from its creation until its final
//!   result; `queueDue` in the record says where, so a move deletes exactly the old key.
//!
//! Both change only in atomic writes that also carry the ledger entries that explain the
//! change (`action.scheduled` creates the job; `action.attempted` and the result move it),
//! except the move to `running`, which is the runner's own bookkeeping (see
//! [`crate::actions::runner`]).

use pled_core::{ExecutionId, RecordedAt};
use pled_engine::ActionJob;
use pled_store::{Store, Table, WriteSet};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::repo::executions::ExecutionRecord;

/// The first byte of every job key of the `queue` table.
pub const QUEUE_KIND: u8 = b'j';

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Created, waiting for its first attempt.
    Pending,
    /// An attempt is in flight (after a crash: it is run again, with the same attempt number).
    Running,
    /// An attempt failed transiently; the next one is due at `nextAttemptAt`.
    Retrying,
    /// Done: the side effect succeeded.
    Succeeded,
    /// Done: a failure that retrying cannot fix (a 4xx other than 408/429, bad input).
    Failed,
    /// Done: every attempt of its run failed (dead-letter; an operator may re-run it).
    Dead,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 6] =
        [Self::Pending, Self::Running, Self::Retrying, Self::Succeeded, Self::Failed, Self::Dead];

    /// Whether the job is done (no more attempts unless re-run).
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Dead)
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Retrying => "retrying",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Dead => "dead",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One attempt of a job, as its `action.attempted` entry records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// 1, 2, 3 … across re-runs.
    pub attempt: u32,
    /// When it started.
    pub started_at: String,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// `succeeded`, `retry`, `failed` or `dead`.
    pub outcome: String,
    /// The HTTP status, for webhooks that got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seq of its `action.attempted` entry.
    pub seq: u64,
}

/// An action job, as stored in the `jobs` table.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// `<execution id>/<job key>`: also the idempotency key passed to the side effect.
    pub id: String,
    /// Org.
    pub org: String,
    /// Execution.
    pub execution_id: String,
    /// The template action (`null`-like empty for an on-demand action of no template action).
    pub action_id: String,
    /// Its type.
    pub action_type: String,
    /// Its evaluated input.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Seq of its `action.scheduled` (or `action.requested`) entry.
    pub scheduled_seq: u64,
    /// Where it is.
    pub status: JobStatus,
    /// Attempts so far (the attempt in flight included while `running`).
    pub attempts: u32,
    /// When it was created.
    #[serde(default)]
    pub created_at: String,
    /// When it last changed.
    #[serde(default)]
    pub updated_at: String,
    /// When the next attempt is due (pending, retrying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// The due time (µs) of its key in the run queue; `None` once it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub queue_due: Option<i64>,
    /// The status its key in the org's status index is under (see [`status_key`]); `None`
    /// for a record written before the index (indexed at start-up, [`backfill_status_index`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub indexed_status: Option<JobStatus>,
    /// Attempts made before the current run (raised by a re-run, which grants a fresh
    /// budget of attempts).
    #[serde(default)]
    pub run_start: u32,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The result (the side effect's response) once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Seq of its result entry (`action.succeeded`, `action.failed`, `action.dead`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_seq: Option<u64>,
    /// Every attempt, oldest first.
    #[serde(default)]
    pub attempt_log: Vec<AttemptRecord>,
}

/// The key of a job in the `jobs` table.
pub fn job_key(execution: ExecutionId, job_key: &str) -> Vec<u8> {
    [execution.as_bytes().as_slice(), job_key.as_bytes()].concat()
}

/// The `jobs` table key of a job id (`<execution id>/<job key>`); `None` if it is not one.
pub fn key_of_id(id: &str) -> Option<(ExecutionId, Vec<u8>)> {
    let (exec, rest) = id.split_once('/')?;
    let exec: ExecutionId = exec.parse().ok()?;
    (!rest.is_empty()).then(|| (exec, job_key(exec, rest)))
}

/// The prefix of the org's jobs in one status, in the `meta` table: the listing of
/// `GET /v1/jobs?status=` (e.g. the dead-letter queue) reads only those.
pub fn status_prefix(org: &str, status: JobStatus) -> Vec<u8> {
    format!("jobs-status/{org}/{}/", status.as_str()).into_bytes()
}

/// A job's key in the status index: the prefix and the job id (execution ids are UUIDv7,
/// so within a status jobs sort by execution age, then job key).
pub fn status_key(org: &str, status: JobStatus, job_id: &str) -> Vec<u8> {
    [status_prefix(org, status), job_id.as_bytes().to_vec()].concat()
}

/// Marks (in `meta`) a store whose job records written before the status index are indexed.
pub const STATUS_INDEXED: &[u8] = b"index/jobs-status-v1";

/// Indexes, once, the job records written before the status index existed (their
/// `indexed_status` is `None`); later calls only read the marker.
pub async fn backfill_status_index(store: &Store) -> Result<usize, ApiError> {
    if store.get(Table::Meta, STATUS_INDEXED)?.is_some() {
        return Ok(0);
    }
    let (mut after, mut indexed) = (Vec::new(), 0usize);
    loop {
        let batch = store.scan(Table::Jobs, b"", &after, 1_000)?;
        let mut ws = WriteSet::new();
        for (k, v) in &batch {
            after.clone_from(k);
            let mut job: JobRecord =
                serde_json::from_slice(v).map_err(|e| ApiError::Internal(format!("corrupt job record: {e}")))?;
            if job.indexed_status.is_none() {
                let due = job.queue_due;
                ws = job.put(ws, due)?;
                indexed += 1;
            }
        }
        let last = batch.len() < 1_000;
        if last {
            ws = ws.put(Table::Meta, STATUS_INDEXED.to_vec(), Vec::new());
        }
        store.write(ws).await?;
        if last {
            return Ok(indexed);
        }
    }
}

/// The run-queue key of a job due at `due` (µs).
pub fn queue_key(due: i64, table_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + table_key.len());
    k.push(QUEUE_KIND);
    k.extend_from_slice(&(due.max(0) as u64).to_be_bytes());
    k.extend_from_slice(table_key);
    k
}

/// A run-queue key read back: (due µs, `jobs` table key).
pub fn parse_queue_key(k: &[u8]) -> Option<(i64, &[u8])> {
    if k.len() < 9 || k[0] != QUEUE_KIND {
        return None;
    }
    let due = u64::from_be_bytes(k[1..9].try_into().ok()?);
    Some((i64::try_from(due).unwrap_or(i64::MAX), &k[9..]))
}

impl JobRecord {
    /// Its `jobs` table key.
    pub fn table_key(&self) -> Result<Vec<u8>, ApiError> {
        key_of_id(&self.id)
            .map(|(_, k)| k)
            .ok_or_else(|| ApiError::Internal(format!("job id {:?} is malformed", self.id)))
    }

    /// The execution id, parsed.
    pub fn execution(&self) -> Result<ExecutionId, ApiError> {
        self.execution_id.parse().map_err(|_| ApiError::Internal(format!("job {}: bad execution id", self.id)))
    }

    /// Moves its run-queue key to `due` (µs; `None`: out of the queue) and its status-index
    /// key to its status, and adds the record itself, in `ws`.
    pub fn put(&mut self, mut ws: WriteSet, due: Option<i64>) -> Result<WriteSet, ApiError> {
        let key = self.table_key()?;
        if self.queue_due != due {
            if let Some(old) = self.queue_due {
                ws = ws.delete(Table::Queue, queue_key(old, &key));
            }
            if let Some(new) = due {
                ws = ws.put(Table::Queue, queue_key(new, &key), Vec::new());
            }
            self.queue_due = due;
        }
        if self.indexed_status != Some(self.status) {
            if let Some(old) = self.indexed_status {
                ws = ws.delete(Table::Meta, status_key(&self.org, old, &self.id));
            }
            ws = ws.put(Table::Meta, status_key(&self.org, self.status, &self.id), Vec::new());
            self.indexed_status = Some(self.status);
        }
        self.next_attempt_at = match (due, self.status) {
            (Some(d), JobStatus::Pending | JobStatus::Retrying) => {
                RecordedAt::from_unix_micros(d).ok().map(|t| t.as_str().to_owned())
            }
            _ => None,
        };
        let bytes = serde_json::to_vec(self).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(ws.put(Table::Jobs, key, bytes))
    }

    /// Attempts left in the current run, given the configured maximum.
    pub fn attempts_left(&self, max_attempts: u32) -> u32 {
        max_attempts.saturating_sub(self.attempts.saturating_sub(self.run_start))
    }
}

/// Reads one job by its `jobs` table key.
pub fn load(store: &Store, table_key: &[u8]) -> Result<Option<JobRecord>, ApiError> {
    store
        .get(Table::Jobs, table_key)?
        .map(|b| serde_json::from_slice(&b).map_err(|e| ApiError::Internal(format!("corrupt job record: {e}"))))
        .transpose()
}

/// A new pending job, due now.
pub fn new_job(
    record: &ExecutionRecord,
    job_key: &str,
    action_id: &str,
    action_type: &str,
    input: Value,
    scheduled_seq: u64,
) -> JobRecord {
    let now = RecordedAt::now();
    JobRecord {
        id: format!("{}/{job_key}", record.id),
        org: record.org.to_string(),
        execution_id: record.id.to_string(),
        action_id: action_id.to_owned(),
        action_type: action_type.to_owned(),
        input,
        scheduled_seq,
        status: JobStatus::Pending,
        attempts: 0,
        created_at: now.as_str().to_owned(),
        updated_at: now.as_str().to_owned(),
        next_attempt_at: None,
        queue_due: None,
        indexed_status: None,
        run_start: 0,
        last_error: None,
        result: None,
        result_seq: None,
        attempt_log: Vec::new(),
    }
}

/// Adds the jobs of an outcome to a write set (each due now, in the run queue). `entries`
/// are the sealed drafts of the outcome.
pub fn enqueue_jobs(
    mut ws: WriteSet,
    record: &ExecutionRecord,
    jobs: &[ActionJob],
    entries: &[pled_core::SealedEntry],
) -> Result<WriteSet, ApiError> {
    if jobs.is_empty() {
        return Ok(ws);
    }
    let now = RecordedAt::now().unix_micros();
    for j in jobs {
        let seq = entries.get(j.draft_index).map_or(0, |e| e.seq().get());
        let mut rec = new_job(record, &j.job_key, &j.action_id, &j.action_type, j.input.clone(), seq);
        ws = rec.put(ws, Some(now))?;
    }
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_by_due_time_and_read_back() {
        let id = ExecutionId::new_v7();
        let a = queue_key(5, &job_key(id, "1:0:x"));
        let b = queue_key(1_000_000, &job_key(id, "0:0:x"));
        assert!(a < b);
        let (due, key) = parse_queue_key(&b).unwrap();
        assert_eq!(due, 1_000_000);
        assert_eq!(key, job_key(id, "0:0:x").as_slice());
        assert_eq!(key_of_id(&format!("{id}/0:0:x")).unwrap().1, job_key(id, "0:0:x"));
        assert!(key_of_id("nope/x").is_none() && key_of_id(&format!("{id}/")).is_none());
    }

    #[tokio::test]
    async fn jobs_from_before_the_status_index_are_indexed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), pled_store::StoreOptions::default()).unwrap();
        let exec = ExecutionId::new_v7();
        let old: JobRecord = serde_json::from_value(serde_json::json!({
            "id": format!("{exec}/0:0:notify"), "org": "acme", "executionId": exec.to_string(),
            "actionId": "notify", "actionType": "webhook", "input": {}, "scheduledSeq": 3,
            "status": "dead", "attempts": 5,
        }))
        .unwrap();
        assert_eq!(old.indexed_status, None);
        let key = old.table_key().unwrap();
        store.write(WriteSet::new().put(Table::Jobs, key.clone(), serde_json::to_vec(&old).unwrap())).await.unwrap();

        assert_eq!(backfill_status_index(&store).await.unwrap(), 1);
        assert!(store.get(Table::Meta, &status_key("acme", JobStatus::Dead, &old.id)).unwrap().is_some());
        assert_eq!(load(&store, &key).unwrap().unwrap().indexed_status, Some(JobStatus::Dead));
        assert_eq!(backfill_status_index(&store).await.unwrap(), 0, "the marker makes it run once");

        // A later change of status moves the key.
        let mut job = load(&store, &key).unwrap().unwrap();
        job.status = JobStatus::Pending;
        store.write(job.put(WriteSet::new(), Some(1)).unwrap()).await.unwrap();
        assert!(store.get(Table::Meta, &status_key("acme", JobStatus::Dead, &old.id)).unwrap().is_none());
        assert!(store.get(Table::Meta, &status_key("acme", JobStatus::Pending, &old.id)).unwrap().is_some());
    }

    #[test]
    fn statuses_round_trip() {
        for s in ["pending", "running", "retrying", "succeeded", "failed", "dead"] {
            assert_eq!(JobStatus::parse(s).unwrap().as_str(), s);
        }
        assert!(JobStatus::Dead.is_final() && !JobStatus::Retrying.is_final());
    }
}
