//! Schedules: a cron pattern that starts an execution of a template, or posts an event to
//! one, on every occurrence.
//!
//! A schedule is a JSON record in `meta` (`sched/<org>/<id>`) and one key in the store's
//! `queue` table, `b's' || due (µs, u64 BE) || <org>/<id>`, for its next run. The
//! [`ScheduleService`] reads the queue from its earliest key, runs what is due and moves the
//! key to the next occurrence.
//!
//! **Exactly once per occurrence.** A run carries the idempotency key
//! `schedule:<id>:<occurrence µs>` (the start or the event post is deduplicated by it), so a
//! crash between the run and moving the key repeats nothing: the run is answered from its
//! stored record (kept for `--idempotency-ttl`, so for any restart within that time).
//!
//! **Misfire policy.** Occurrences missed while the service was down (or busy) collapse into
//! one run, made as soon as the service is back, for the earliest missed occurrence; the
//! schedule then continues with the first occurrence after the present. The record counts
//! the skipped ones (`missedRuns`).
//!
//! Patterns are croner's: 5 fields (minute hour day-of-month month day-of-week) or 6 (with
//! seconds first), in UTC.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use pled_core::{ExecutionId, OrgId, RecordedAt};
use pled_store::{Store, Table, WriteSet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::idempotency::Idempotency;
use crate::lanes::NewEvent;
use crate::repo::{executions, get_json, put_json};
use crate::state::AppState;

/// The first byte of every schedule key of the `queue` table.
pub const SCHEDULE_KIND: u8 = b's';
/// Re-read the queue at least this often.
const POLL: Duration = Duration::from_secs(1);
/// Wait after a run failed transiently before trying again.
const RETRY: Duration = Duration::from_secs(1);
/// At most this many missed occurrences are counted.
const MAX_COUNTED_MISSES: u64 = 100_000;

/// What a schedule does on each occurrence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// Start an execution of a template (its latest published version unless `version`).
    StartExecution {
        /// The template.
        #[serde(rename = "templateId")]
        template_id: String,
        /// A published version (default: the latest at each run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
        /// The executions' name (1-200 characters).
        #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
        name: String,
        /// Initial variables.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        variables: Option<Value>,
    },
    /// Post an event to an execution.
    PostEvent {
        /// The execution (of the schedule's org).
        #[serde(rename = "executionId")]
        execution_id: String,
        /// Event type (1-200 characters).
        #[serde(rename = "type")]
        #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
        event_type: String,
        /// Payload (default `{}`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        payload: Option<Value>,
    },
}

/// A schedule.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Id (UUID v7).
    pub id: String,
    /// Org.
    pub org: String,
    /// The cron pattern (UTC).
    pub cron: String,
    /// What each run does.
    pub target: Target,
    /// When it was created.
    pub created_at: String,
    /// Who created it.
    pub created_by: String,
    /// The next occurrence.
    pub next_run_at: String,
    /// Its due time in µs (the queue key).
    #[schema(ignore)]
    pub next_due: i64,
    /// Runs made.
    pub runs: u64,
    /// Occurrences skipped by the misfire policy.
    pub missed_runs: u64,
    /// The last run's occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<String>,
    /// The last run's result (`{ok, status, executionId | eventSeq | error}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub last_result: Option<Value>,
}

fn record_key(org: &str, id: &str) -> String {
    format!("sched/{org}/{id}")
}

/// The queue key of a schedule's next run.
pub fn queue_key(due: i64, org: &str, id: &str) -> Vec<u8> {
    let mut k = vec![SCHEDULE_KIND];
    k.extend_from_slice(&(due.max(0) as u64).to_be_bytes());
    k.extend_from_slice(format!("{org}/{id}").as_bytes());
    k
}

fn parse_queue_key(k: &[u8]) -> Option<(i64, String, String)> {
    if k.len() < 10 || k[0] != SCHEDULE_KIND {
        return None;
    }
    let due = i64::try_from(u64::from_be_bytes(k[1..9].try_into().ok()?)).ok()?;
    let rest = std::str::from_utf8(&k[9..]).ok()?;
    let (org, id) = rest.split_once('/')?;
    Some((due, org.to_owned(), id.to_owned()))
}

/// Parses a pattern; the error says what is wrong.
pub fn parse_cron(pattern: &str) -> Result<Cron, String> {
    let fields = pattern.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!("{fields} fields: a pattern has 5 (minute hour day month weekday) or 6 (seconds first)"));
    }
    Cron::from_str(pattern).map_err(|e| e.to_string())
}

fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn at(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// The first occurrence strictly after `after` (µs).
pub fn next_after(cron: &Cron, after: i64) -> Result<i64, String> {
    cron.find_next_occurrence(&at(after), false).map(|t| micros(&t)).map_err(|e| e.to_string())
}

fn text(us: i64) -> String {
    RecordedAt::from_unix_micros(us).map(|t| t.as_str().to_owned()).unwrap_or_default()
}

impl Schedule {
    /// A new schedule whose first run is the first occurrence after now.
    pub fn new(org: &OrgId, cron: String, target: Target, created_by: &str) -> Result<Self, String> {
        let c = parse_cron(&cron)?;
        let now = RecordedAt::now();
        let due = next_after(&c, now.unix_micros())?;
        Ok(Self {
            id: uuid::Uuid::now_v7().hyphenated().to_string(),
            org: org.to_string(),
            cron,
            target,
            created_at: now.as_str().to_owned(),
            created_by: created_by.to_owned(),
            next_run_at: text(due),
            next_due: due,
            runs: 0,
            missed_runs: 0,
            last_run_at: None,
            last_result: None,
        })
    }

    /// Adds the record and its queue key (moved from `old_due`, if any) to `ws`.
    pub fn put(&self, ws: WriteSet, old_due: Option<i64>) -> Result<WriteSet, ApiError> {
        let mut ws = ws;
        if let Some(old) = old_due.filter(|o| *o != self.next_due) {
            ws = ws.delete(Table::Queue, queue_key(old, &self.org, &self.id));
        }
        ws = ws.put(Table::Queue, queue_key(self.next_due, &self.org, &self.id), Vec::new());
        put_json(ws, &record_key(&self.org, &self.id), self)
    }

    /// Removes the record and its queue key.
    pub fn delete(&self, ws: WriteSet) -> WriteSet {
        ws.delete(Table::Queue, queue_key(self.next_due, &self.org, &self.id))
            .delete(Table::Meta, record_key(&self.org, &self.id).into_bytes())
    }
}

/// One schedule of the org.
pub fn get(store: &Store, org: &OrgId, id: &str) -> Result<Option<Schedule>, ApiError> {
    get_json(store, &record_key(org.as_str(), id))
}

/// A page of the org's schedules.
pub fn list(
    store: &Store,
    org: &OrgId,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<crate::repo::Page<Schedule>, ApiError> {
    crate::repo::page(store, &format!("sched/{org}/"), cursor, limit, |_: &Schedule| true)
}

/// Runs schedules until stopped.
pub struct ScheduleService {
    state: AppState,
}

/// How a run went.
enum Ran {
    /// Done (or refused for good): record it and move on.
    Done(Value),
    /// A transient failure: try the same occurrence again later.
    Retry(String),
}

impl ScheduleService {
    /// A service over the app's state (it starts executions and posts events like the routes).
    pub fn new(state: AppState) -> Arc<Self> {
        Arc::new(Self { state })
    }

    /// Runs until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let next = match self.pass().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the schedule queue failed");
                    None
                }
            };
            let wait = next.map_or(POLL, |due| {
                Duration::from_micros((due - RecordedAt::now().unix_micros()).max(0) as u64).min(POLL)
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Runs every due schedule, in due order; returns the next due time.
    async fn pass(&self) -> Result<Option<i64>, ApiError> {
        let store = &self.state.store;
        loop {
            let batch = store.scan(Table::Queue, &[SCHEDULE_KIND], b"", 64)?;
            let now = RecordedAt::now().unix_micros();
            let Some((key, _)) = batch.first() else {
                return Ok(None);
            };
            let Some((due, org, id)) = parse_queue_key(key) else {
                store.write(WriteSet::new().delete(Table::Queue, key.clone())).await?;
                continue;
            };
            if due > now {
                return Ok(Some(due));
            }
            if !self.fire(key, due, &org, &id).await? {
                // A transient failure: give the others a chance, come back later.
                tokio::time::sleep(RETRY).await;
                return Ok(Some(now + RETRY.as_micros() as i64));
            }
        }
    }

    /// Runs one due occurrence and moves the schedule on. `false`: retry later.
    async fn fire(&self, key: &[u8], due: i64, org: &str, id: &str) -> Result<bool, ApiError> {
        let store = &self.state.store;
        // Ordered with a concurrent delete (which takes the same lock).
        let _guard = self.state.locks.lock(&format!("sched/{org}/{id}")).await;
        let sched = match OrgId::new(org).ok().map(|o| get(store, &o, id)) {
            Some(r) => r?,
            None => None,
        };
        let Some(mut sched) = sched.filter(|s| s.next_due == due) else {
            // Deleted, or a stale key.
            store.write(WriteSet::new().delete(Table::Queue, key.to_vec())).await?;
            return Ok(true);
        };
        let result = match self.run_once(&sched, due).await {
            Ran::Done(v) => v,
            Ran::Retry(e) => {
                tracing::warn!(schedule = %sched.id, error = %e, "schedule run failed; retrying");
                return Ok(false);
            }
        };
        metrics::counter!("pled_schedule_runs_total").increment(1);
        let cron = parse_cron(&sched.cron).map_err(ApiError::Internal)?;
        let now = RecordedAt::now().unix_micros();
        let next = next_after(&cron, now).map_err(ApiError::Internal)?;
        // Occurrences after this one and up to now were missed: they collapse into this run.
        let mut missed = 0;
        let mut t = due;
        while missed < MAX_COUNTED_MISSES {
            match next_after(&cron, t) {
                Ok(n) if n <= now => {
                    missed += 1;
                    t = n;
                }
                _ => break,
            }
        }
        let old = sched.next_due;
        sched.runs += 1;
        sched.missed_runs += missed;
        sched.last_run_at = Some(text(due));
        sched.last_result = Some(result);
        sched.next_due = next;
        sched.next_run_at = text(next);
        store.write(sched.put(WriteSet::new(), Some(old))?).await?;
        Ok(true)
    }

    async fn run_once(&self, sched: &Schedule, due: i64) -> Ran {
        let s = &self.state;
        let Ok(org) = OrgId::new(&sched.org) else {
            return Ran::Done(json!({"ok": false, "error": "bad org"}));
        };
        let key = format!("schedule:{}:{due}", sched.id);
        let mut headers = axum::http::HeaderMap::new();
        if let Ok(v) = key.parse() {
            headers.insert(crate::idempotency::HEADER, v);
        }
        let outcome = match &sched.target {
            Target::StartExecution { template_id, version, name, variables } => {
                let req = crate::routes::executions::NewExecution {
                    template_id: template_id.clone(),
                    version: *version,
                    name: name.clone(),
                    description: Some(format!("started by schedule {}", sched.id)),
                    variables: variables.clone(),
                };
                let raw = serde_json::to_vec(&json!({"schedule": sched.id, "due": due})).unwrap_or_default();
                match Idempotency::from_request(&headers, &org, "executions", "/v1/executions", &raw) {
                    Ok(idem) => self.start(&org, &format!("schedule:{}", sched.id), &req, idem).await,
                    Err(e) => Err(e),
                }
            }
            Target::PostEvent { execution_id, event_type, payload } => {
                let payload = payload.clone().unwrap_or_else(|| json!({}));
                let body = json!({"type": event_type, "payload": payload, "source": format!("schedule:{}", sched.id)});
                let raw = serde_json::to_vec(&body).unwrap_or_default();
                let path = format!("/v1/executions/{execution_id}/events");
                match (
                    execution_id.parse::<ExecutionId>().ok().map(|id| executions::get(&s.store, &org, id)),
                    Idempotency::from_request(&headers, &org, &format!("events:{execution_id}"), &path, &raw),
                ) {
                    (Some(Ok(Some(rec))), Ok(idem)) => {
                        let ev = NewEvent {
                            kind: event_type.clone(),
                            payload,
                            source: format!("schedule:{}", sched.id),
                            occurred_at: Some(text(due)),
                        };
                        s.lanes.ingest(&rec, vec![ev], false, idem).await.map(|a| {
                            json!({"ok": true, "status": a.status.as_u16(), "eventSeq": a.value().get("eventSeq").cloned(), "replayed": a.replayed})
                        })
                    }
                    (Some(Err(e)), _) | (_, Err(e)) => Err(e),
                    _ => Err(ApiError::not_found("execution", execution_id)),
                }
            }
        };
        match outcome {
            Ok(v) => Ran::Done(v),
            Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => Ran::Retry(e.to_string()),
            Err(e) => {
                let p = e.problem();
                Ran::Done(json!({"ok": false, "status": p.status, "error": p.detail}))
            }
        }
    }

    /// Starts an execution under the run's idempotency key (a repeated run gets the first
    /// answer).
    async fn start(
        &self,
        org: &OrgId,
        created_by: &str,
        req: &crate::routes::executions::NewExecution,
        idem: Option<Idempotency>,
    ) -> Result<Value, ApiError> {
        let s = &self.state;
        if let Some(i) = &idem
            && let Some(r) = i.lookup_record(&s.store)?
        {
            let id = serde_json::from_str::<Value>(r.body.get()).ok().and_then(|b| b.get("id").cloned());
            return Ok(json!({"ok": true, "status": r.status, "executionId": id, "replayed": true}));
        }
        let created = crate::routes::executions::start_execution(s, org, created_by, req)?;
        let mut ws = created.writes;
        if let Some(i) = &idem {
            ws = i.record(ws, created.status, &created.body, created.location.as_deref())?;
        }
        s.store.write(ws).await?;
        s.lanes.jobs_wake().notify_one();
        s.lanes.timers_wake().notify_one();
        Ok(json!({"ok": true, "status": created.status.as_u16(), "executionId": created.body.get("id")}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_checked_and_occurrences_computed_in_utc() {
        assert!(parse_cron("* * *").unwrap_err().contains("3 fields"));
        assert!(parse_cron("61 * * * *").is_err());
        let every_minute = parse_cron("* * * * *").unwrap();
        let t = RecordedAt::parse("2026-01-01T00:00:30.000000Z").unwrap().unix_micros();
        assert_eq!(text(next_after(&every_minute, t).unwrap()), "2026-01-01T00:01:00.000000Z");
        let seconds = parse_cron("*/10 * * * * *").unwrap();
        assert_eq!(text(next_after(&seconds, t).unwrap()), "2026-01-01T00:00:40.000000Z");
        let daily = parse_cron("0 9 * * *").unwrap();
        assert_eq!(text(next_after(&daily, t).unwrap()), "2026-01-01T09:00:00.000000Z");
    }

    #[test]
    fn queue_keys_read_back() {
        let k = queue_key(42, "acme", "0190-x");
        assert_eq!(parse_queue_key(&k), Some((42, "acme".into(), "0190-x".into())));
        assert!(queue_key(1, "a", "b") < queue_key(2, "a", "a"));
    }
}
