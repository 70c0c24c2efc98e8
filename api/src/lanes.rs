//! Processing lanes: one task per active execution runs its events through the engine, one at
//! a time and in order, while different executions run in parallel.
//!
//! A lane takes every request waiting for it, steps each event through the pure engine in
//! memory, and commits the whole group (events, messages, entries, the new head and state,
//! action jobs, idempotency records) as one atomic write through the store's group-commit
//! writer. Callers are answered after the sync; subscribers are told after the sync. A lane
//! with nothing to do for a while exits; the next request starts it again from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use pled_core::{ChainHead, ExecutionId, RecordedAt, SealedEntry};
use pled_engine::{ActionJob, AiOutputs, Event, Machine, Outcome};
use pled_store::{Append, Store, Table, WriteSet};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::hub::{Hub, StateChange, Update};
use crate::idempotency::Idempotency;
use crate::repo::executions::{ExecutionRecord, LiveState, Status};
use crate::repo::templates;

/// A lane exits after this long without work.
const IDLE: Duration = Duration::from_secs(60);
/// A lane commits at most this many events in one write.
const MAX_GROUP_EVENTS: usize = 2_000;
/// Requests that may wait for one lane (backpressure beyond that).
const LANE_QUEUE: usize = 1_024;

/// One event as an integrator posts it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Event type.
    pub kind: String,
    /// JSON object.
    pub payload: Value,
    /// Sender.
    pub source: String,
    /// When it happened, as the sender says.
    pub occurred_at: Option<String>,
}

/// What a lane answers.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: Value,
    /// Whether it is a stored answer replayed for a repeated idempotency key.
    pub replayed: bool,
}

struct Ingest {
    events: Vec<NewEvent>,
    batch: bool,
    idem: Option<Idempotency>,
    reply: oneshot::Sender<Result<Answer, ApiError>>,
}

/// A created action job, as stored in the `jobs` table (picked up by the action runner).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// `<execution id>/<job key>`: also the idempotency key passed to the side effect.
    pub id: String,
    /// Org.
    pub org: String,
    /// Execution.
    pub execution_id: String,
    /// The template action.
    pub action_id: String,
    /// Its type.
    pub action_type: String,
    /// Its evaluated input.
    pub input: Value,
    /// Seq of its `action.scheduled` entry.
    pub scheduled_seq: u64,
    /// `pending` when created.
    pub status: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// The key of a job in the `jobs` table.
pub fn job_key(execution: ExecutionId, job_key: &str) -> Vec<u8> {
    [execution.as_bytes().as_slice(), job_key.as_bytes()].concat()
}

/// Every lane, and what they share.
pub struct Lanes {
    store: Store,
    hub: Arc<Hub>,
    ai: Option<Arc<dyn crate::ai::AiProvider>>,
    machines: Mutex<HashMap<(String, String, u32), Arc<Machine>>>,
    lanes: Mutex<HashMap<ExecutionId, mpsc::Sender<Ingest>>>,
}

impl Lanes {
    /// Lanes over a store, publishing to `hub`.
    pub fn new(store: Store, hub: Arc<Hub>, ai: Option<Arc<dyn crate::ai::AiProvider>>) -> Arc<Self> {
        Arc::new(Self { store, hub, ai, machines: Mutex::default(), lanes: Mutex::default() })
    }

    /// The compiled machine of a published template version (cached).
    pub fn machine(&self, org: &pled_core::OrgId, template_id: &str, version: u32) -> Result<Arc<Machine>, ApiError> {
        let key = (org.to_string(), template_id.to_owned(), version);
        if let Some(m) = self.machines.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(m.clone());
        }
        let v = templates::get_version(&self.store, org, template_id, version)?
            .ok_or_else(|| ApiError::not_found("template version", format!("{template_id}/{version}")))?;
        let compiled = pled_engine::compile(&v.template);
        let machine = Arc::new(compiled.machine.ok_or_else(|| {
            ApiError::Internal(format!("published version {template_id}/{version} does not compile"))
        })?);
        self.machines.lock().unwrap_or_else(|p| p.into_inner()).insert(key, machine.clone());
        Ok(machine)
    }

    /// Posts events to an execution (in one atomic write; `batch` shapes the answer).
    pub async fn ingest(
        self: &Arc<Self>,
        record: &ExecutionRecord,
        events: Vec<NewEvent>,
        batch: bool,
        idem: Option<Idempotency>,
    ) -> Result<Answer, ApiError> {
        let (reply, rx) = oneshot::channel();
        let mut job = Ingest { events, batch, idem, reply };
        for _ in 0..2 {
            let tx = self.lane(record)?;
            match tx.send(job).await {
                Ok(()) => {
                    return rx.await.map_err(|_| ApiError::Unavailable("the execution's lane stopped".into()))?;
                }
                // The lane exited between lookup and send: start a new one.
                Err(mpsc::error::SendError(back)) => {
                    job = back;
                    self.lanes.lock().unwrap_or_else(|p| p.into_inner()).remove(&record.id);
                }
            }
        }
        Err(ApiError::Unavailable("could not start the execution's lane".into()))
    }

    fn lane(self: &Arc<Self>, record: &ExecutionRecord) -> Result<mpsc::Sender<Ingest>, ApiError> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = lanes.get(&record.id)
            && !tx.is_closed()
        {
            return Ok(tx.clone());
        }
        let machine = self.machine(&record.org, &record.template_id, record.version)?;
        let (head, live) = crate::repo::executions::live(&self.store, record.id)?
            .ok_or_else(|| ApiError::Internal(format!("execution {} has no ledger", record.id)))?;
        let (tx, rx) = mpsc::channel(LANE_QUEUE);
        lanes.insert(record.id, tx.clone());
        let lane = Lane { lanes: self.clone(), record: record.clone(), machine, head, live };
        tokio::spawn(lane.run(rx));
        Ok(tx)
    }

    /// Publishes a write's entries and the state after it.
    pub fn publish(&self, id: ExecutionId, entries: Vec<SealedEntry>, head: &ChainHead, live: &LiveState) {
        let change = StateChange { head_seq: head.seq.get(), head_hash: head.hash.to_hex(), live: live.clone() };
        self.hub.publish(id, [Update::Entries(Arc::new(entries)), Update::State(Arc::new(change))]);
    }
}

/// Seals engine drafts onto a chain, all recorded at `at`.
pub fn seal(head: &mut ChainHead, drafts: &[pled_engine::Draft], at: &RecordedAt) -> Vec<SealedEntry> {
    drafts
        .iter()
        .map(|d| {
            let e = head.next_entry(d.kind.clone(), at.clone(), d.body.clone());
            head.advance(&e);
            e
        })
        .collect()
}

/// Adds the jobs of an outcome to a write set. `entries` are the sealed drafts of the outcome.
pub fn enqueue_jobs(
    mut ws: WriteSet,
    record: &ExecutionRecord,
    jobs: &[ActionJob],
    entries: &[SealedEntry],
) -> Result<WriteSet, ApiError> {
    for j in jobs {
        let rec = JobRecord {
            id: format!("{}/{}", record.id, j.job_key),
            org: record.org.to_string(),
            execution_id: record.id.to_string(),
            action_id: j.action_id.clone(),
            action_type: j.action_type.clone(),
            input: j.input.clone(),
            scheduled_seq: entries.get(j.draft_index).map_or(0, |e| e.seq().get()),
            status: "pending".into(),
            attempts: 0,
        };
        let bytes = serde_json::to_vec(&rec).map_err(|e| ApiError::Internal(e.to_string()))?;
        ws = ws.put(Table::Jobs, job_key(record.id, &j.job_key), bytes);
    }
    Ok(ws)
}

/// The answer's view of entries.
pub fn entry_refs(entries: &[SealedEntry]) -> Value {
    Value::Array(
        entries.iter().map(|e| json!({ "seq": e.seq(), "kind": e.entry().kind, "entryHash": e.hash() })).collect(),
    )
}

struct Lane {
    lanes: Arc<Lanes>,
    record: ExecutionRecord,
    machine: Arc<Machine>,
    head: ChainHead,
    live: LiveState,
}

/// One request's work inside a group, before the write.
struct Staged {
    reply: oneshot::Sender<Result<Answer, ApiError>>,
    answer: Result<Answer, ApiError>,
}

impl Lane {
    async fn run(mut self, mut rx: mpsc::Receiver<Ingest>) {
        loop {
            let first = match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    // Idle: leave the registry, unless work arrived meanwhile.
                    let mut lanes = self.lanes.lanes.lock().unwrap_or_else(|p| p.into_inner());
                    if rx.is_empty() {
                        lanes.remove(&self.record.id);
                        return;
                    }
                    continue;
                }
            };
            let mut group = vec![first];
            let mut events = group[0].events.len();
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(job) => {
                        events += job.events.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            self.commit(group).await;
        }
    }

    async fn commit(&mut self, group: Vec<Ingest>) {
        let store = self.lanes.store.clone();
        let mut head = self.head;
        let mut live = self.live.clone();
        let mut entries: Vec<SealedEntry> = Vec::new();
        let mut ws = WriteSet::new();
        let mut staged = Vec::with_capacity(group.len());
        // Answers given earlier in this group, by idempotency key (not yet in the store).
        let mut fresh: HashMap<String, (Idempotency, Answer)> = HashMap::new();
        // AI outputs obtained in this group (not yet in the store).
        let mut ai_fresh: HashMap<String, Value> = HashMap::new();

        for job in group {
            let Ingest { events, batch, idem, reply } = job;
            if let Some(i) = &idem {
                let replay = match fresh.get(&i.lock_key()) {
                    Some((first, answer)) if first.same_request(i) => {
                        Ok(Some(Answer { status: answer.status, body: answer.body.clone(), replayed: true }))
                    }
                    Some(_) => Err(i.conflict()),
                    None => i.lookup_record(&store).map(|r| {
                        r.map(|r| Answer {
                            status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
                            body: r.body,
                            replayed: true,
                        })
                    }),
                };
                match replay {
                    Ok(Some(answer)) => {
                        staged.push(Staged { reply, answer: Ok(answer) });
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        staged.push(Staged { reply, answer: Err(e) });
                        continue;
                    }
                }
            }
            // Work on copies: a request that fails leaves nothing behind.
            let (mut h, mut l, mut w) = (head, live.clone(), ws.clone());
            let first_new = entries.len();
            let mut mine = Vec::new();
            match self.apply(&events, &mut h, &mut l, &mut mine, &mut w, &mut ai_fresh).await {
                Ok(results) => {
                    let body = answer_body(batch, results, &h, &l);
                    let answer = Answer { status: StatusCode::CREATED, body, replayed: false };
                    if let Some(i) = idem {
                        match i.record(w.clone(), answer.status, &answer.body, None) {
                            Ok(with) => w = with,
                            Err(e) => {
                                staged.push(Staged { reply, answer: Err(e) });
                                continue;
                            }
                        }
                        fresh.insert(
                            i.lock_key(),
                            (i, Answer { status: answer.status, body: answer.body.clone(), replayed: false }),
                        );
                    }
                    head = h;
                    live = l;
                    ws = w;
                    entries.extend(mine);
                    debug_assert!(entries.len() >= first_new);
                    staged.push(Staged { reply, answer: Ok(answer) });
                }
                Err(e) => staged.push(Staged { reply, answer: Err(e) }),
            }
        }

        if !entries.is_empty() {
            let append = match Append::new(entries.clone()) {
                Ok(a) => a.with_state(live.to_bytes()),
                Err(e) => return fail_all(staged, ApiError::Internal(e.to_string())),
            };
            ws = ws.append(append);
        }
        if let Err(e) = store.write(ws).await {
            // What the store holds is the truth: reload before the next group.
            if let Ok(Some((h, l))) = crate::repo::executions::live(&store, self.record.id) {
                self.head = h;
                self.live = l;
            }
            return fail_all(staged, e.into());
        }
        if !entries.is_empty() {
            metrics::counter!("pled_ledger_entries_appended_total").increment(entries.len() as u64);
            self.lanes.publish(self.record.id, entries, &head, &live);
        }
        self.head = head;
        self.live = live;
        for s in staged {
            let _ = s.reply.send(s.answer);
        }
    }

    /// Steps events through the engine, sealing their entries onto `head`.
    async fn apply(
        &self,
        events: &[NewEvent],
        head: &mut ChainHead,
        live: &mut LiveState,
        out: &mut Vec<SealedEntry>,
        ws: &mut WriteSet,
        ai_fresh: &mut HashMap<String, Value>,
    ) -> Result<Vec<Value>, ApiError> {
        if !live.status.accepts_events() {
            return Err(ApiError::Conflict {
                detail: format!("execution {} is {} and takes no more events", self.record.id, live.status.as_str()),
                extra: Some(serde_json::Map::from_iter([("executionStatus".to_owned(), json!(live.status))])),
            });
        }
        let mut results = Vec::with_capacity(events.len());
        for ev in events {
            let received_at = RecordedAt::now();
            let event = Event {
                event_seq: live.exec.event_count + 1,
                r#type: ev.kind.clone(),
                payload: ev.payload.clone(),
                source: ev.source.clone(),
                occurred_at: ev.occurred_at.clone(),
                received_at: received_at.to_string(),
            };
            let bad = |e: pled_engine::EngineError| ApiError::bad_field("/", e.to_string());
            let requests = self.machine.ai_requests(&live.exec, &event).map_err(bad)?;
            let ai = if requests.is_empty() {
                AiOutputs::new()
            } else {
                let lanes = &self.lanes;
                crate::ai::resolve(&lanes.store, lanes.ai.as_deref(), &self.record.org, &requests, ai_fresh, ws).await?
            };
            let outcome: Outcome = self.machine.process_event(&live.exec, &event, &ai).map_err(bad)?;
            let sealed = seal(head, &outcome.drafts, &received_at);
            *ws = enqueue_jobs(std::mem::take(ws), &self.record, &outcome.actions, &sealed)?;
            live.exec = outcome.state;
            live.status = if live.exec.completed { Status::Completed } else { Status::Running };
            metrics::counter!("pled_events_ingested_total").increment(1);
            metrics::counter!("pled_messages_derived_total").increment(outcome.messages.len() as u64);
            metrics::counter!("pled_transitions_fired_total").increment(outcome.transitions.len() as u64);
            results.push(json!({
                "eventSeq": event.event_seq,
                "entries": entry_refs(&sealed),
                "messages": outcome.messages,
                "transitions": outcome.transitions,
            }));
            out.extend(sealed);
            if !live.status.accepts_events() && events.len() > results.len() {
                return Err(ApiError::conflict(format!(
                    "event {} of the batch completed the execution; the remaining {} cannot be applied",
                    results.len(),
                    events.len() - results.len()
                )));
            }
        }
        Ok(results)
    }
}

fn answer_body(batch: bool, mut results: Vec<Value>, head: &ChainHead, live: &LiveState) -> Value {
    let tail = json!({ "headSeq": head.seq, "headHash": head.hash, "status": live.status, "state": live.exec });
    let mut body =
        if batch || results.len() != 1 { json!({ "events": results }) } else { results.pop().unwrap_or(Value::Null) };
    if let (Some(b), Some(t)) = (body.as_object_mut(), tail.as_object()) {
        b.extend(t.clone());
    }
    body
}

fn fail_all(staged: Vec<Staged>, e: ApiError) {
    let msg = e.to_string();
    for s in staged {
        let answer = match &s.answer {
            // Replays did not depend on this write.
            Ok(a) if a.replayed => Ok(Answer { status: a.status, body: a.body.clone(), replayed: true }),
            _ => Err(match &e {
                ApiError::Unavailable(_) => ApiError::Unavailable(msg.clone()),
                _ => ApiError::Internal(msg.clone()),
            }),
        };
        let _ = s.reply.send(answer);
    }
}
