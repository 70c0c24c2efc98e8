//! Processing lanes: one task per active execution runs its events through the engine, one at
//! a time and in order, while different executions run in parallel.
//!
//! A lane takes every request waiting for it, steps each event through the pure engine in
//! memory, and commits the whole group (events, messages, entries, the new head and state,
//! action jobs, idempotency records) as one atomic write through the store's group-commit
//! writer. Callers are answered after the sync; subscribers are told after the sync. A lane
//! with nothing to do for a while exits; the next request starts it again from the store.
//!
//! Operator controls (pause, resume, cancel, complete, forced transitions and actions) go
//! through the same lane, so they are ordered with the events: a control is committed on its
//! own, after every event that reached the lane before it. While an execution is paused, its
//! events are accepted and recorded as `event.queued` entries (the queue is the ledger
//! itself); resume applies them, in order, in the same write as its `admin.resumed` entry.
//! Every write that crosses a multiple of `snapshot_every` entries also stores a snapshot at
//! its new head. The pure part of every step is in [`crate::apply`], shared with replay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use pled_core::{Body, ChainHead, EntryHash, ExecutionId, Kind, OrgId, RecordedAt, SealedEntry, Seq};
use pled_engine::{AiOutputs, Event, ExecState, ForceTarget, Machine, Message, TransitionRecord};
use pled_store::{Append, Store, WriteSet};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::apply::{self, AdminAction, Control, QueuedEvent, StepError};
use crate::error::ApiError;
use crate::hub::{Hub, StateChange, Update};
use crate::idempotency::{Idempotency, raw_json};
use crate::repo::executions::{ExecutionRecord, LiveState, PauseQueue, Status};
use crate::repo::snapshots::{self, SnapshotRecord, Trigger};
use crate::repo::{audit, templates};

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
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Body, written once: sent, stored with an idempotency key and given again as it is.
    pub body: Arc<RawValue>,
    /// Whether it is a stored answer replayed for a repeated idempotency key.
    pub replayed: bool,
}

impl Answer {
    fn ok(body: &impl Serialize) -> Result<Self, ApiError> {
        Ok(Self { status: StatusCode::OK, body: raw_json(body)?.into(), replayed: false })
    }

    /// The body as a JSON value (for callers that look inside).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.body.get()).unwrap_or(Value::Null)
    }
}

struct Ingest {
    events: Vec<NewEvent>,
    batch: bool,
    idem: Option<Idempotency>,
    reply: oneshot::Sender<Result<Answer, ApiError>>,
}

/// An operator control as the routes hand it to the lane.
#[derive(Debug, Clone)]
pub struct ControlRequest {
    /// Who (`principal.subject`), for the admin entry and the audit record.
    pub actor: String,
    /// Why (non-empty; the route checks).
    pub reason: String,
    /// What.
    pub control: ControlInput,
}

/// The controls.
#[derive(Debug, Clone)]
pub enum ControlInput {
    /// Stop applying events; queue them.
    Pause,
    /// Apply the queued events and go on.
    Resume {
        /// Optional approval data, recorded on the ledger as given.
        approval: Option<Value>,
    },
    /// Stop for good.
    Cancel,
    /// Mark completed.
    Complete,
    /// Force a transition or a move to a state.
    ForceTransition {
        /// What.
        target: ForceTarget,
        /// `msg.data` for its expressions.
        data: Value,
    },
    /// Schedule an action now.
    ForceAction {
        /// The template action.
        action_id: String,
        /// Literal input replacing the template's.
        input: Option<Value>,
    },
}

struct ControlJob {
    request: ControlRequest,
    idem: Option<Idempotency>,
    reply: oneshot::Sender<Result<Answer, ApiError>>,
}

/// Entries the service appends that are not inputs of the machine (a confirmed on-chain
/// mint, an action's attempts and result), with the rest of their write.
pub struct Recording {
    /// The entries, in order.
    pub entries: Vec<(Kind, Body)>,
    /// Writes that must land atomically with them (a job's new status, a marker).
    pub ws: WriteSet,
    /// An event to apply after the entries, in the same write (an action's result). It is
    /// queued while the execution is paused, and dropped when it takes no more events.
    pub event: Option<NewEvent>,
}

/// Builds a [`Recording`] inside the execution's lane, from the store and the head there, so
/// that a check ("not recorded yet") and the write that follows it are ordered with every
/// other write of the execution. `None`: nothing to record.
pub type Recorder = Box<dyn FnOnce(&Store, &ChainHead) -> Result<Option<Recording>, ApiError> + Send>;

struct RecordJob {
    recorder: Recorder,
    reply: oneshot::Sender<Result<Answer, ApiError>>,
}

struct TimerJob {
    transition_id: String,
    due_micros: i64,
    reply: oneshot::Sender<Result<Answer, ApiError>>,
}

enum Work {
    Ingest(Ingest),
    Control(ControlJob),
    Record(RecordJob),
    Timer(TimerJob),
}

pub use crate::actions::jobs::{JobRecord, enqueue_jobs, job_key};

/// How a consumer of the store's run queue (the action runner, the timer service) waits
/// between passes: until `next` falls due (µs since the epoch), `poll` at most, or until a
/// lane's write wakes it. Returns false when the service is stopping.
pub async fn wait_for_due(next: Option<i64>, poll: Duration, wake: &Notify, stop: &mut watch::Receiver<bool>) -> bool {
    let wait =
        next.map_or(poll, |due| Duration::from_micros((due - RecordedAt::now().unix_micros()).max(0) as u64).min(poll));
    tokio::select! {
        _ = wake.notified() => true,
        _ = tokio::time::sleep(wait) => true,
        changed = stop.changed() => changed.is_ok(),
    }
}

/// Every lane, and what they share.
pub struct Lanes {
    store: Store,
    hub: Arc<Hub>,
    ai: Option<Arc<dyn crate::ai::AiProvider>>,
    machines: Mutex<HashMap<(String, String, u32), Arc<Machine>>>,
    lanes: Mutex<HashMap<ExecutionId, mpsc::Sender<Work>>>,
    snapshot_every: AtomicU64,
    wake_jobs: Arc<Notify>,
    wake_timers: Arc<Notify>,
    /// Each org's counters, registered at its first lane.
    counters: Mutex<HashMap<OrgId, Arc<Counters>>>,
}

/// An org's lane counters (label `org`), registered once: looking a counter up by name on
/// every event costs more than the rest of its bookkeeping.
struct Counters {
    entries_appended: metrics::Counter,
    events_ingested: metrics::Counter,
    messages_derived: metrics::Counter,
    transitions_fired: metrics::Counter,
    timers_fired: metrics::Counter,
}

impl Counters {
    /// Handles on the global recorder, which must be installed first (a handle taken before
    /// it counts nowhere).
    fn register(org: &OrgId) -> Self {
        let org = org.as_str().to_owned();
        Self {
            entries_appended: metrics::counter!("pled_ledger_entries_appended_total", "org" => org.clone()),
            events_ingested: metrics::counter!("pled_events_ingested_total", "org" => org.clone()),
            messages_derived: metrics::counter!("pled_messages_derived_total", "org" => org.clone()),
            transitions_fired: metrics::counter!("pled_transitions_fired_total", "org" => org.clone()),
            timers_fired: metrics::counter!("pled_timers_fired_total", "org" => org),
        }
    }
}

impl Lanes {
    /// Lanes over a store, publishing to `hub`, snapshotting every
    /// `ServeConfig::default().snapshot_every` entries until [`Lanes::set_snapshot_every`].
    /// Counters go to the metrics recorder installed when an org's first lane starts.
    pub fn new(store: Store, hub: Arc<Hub>, ai: Option<Arc<dyn crate::ai::AiProvider>>) -> Arc<Self> {
        let every = crate::config::ServeConfig::default().snapshot_every;
        Arc::new(Self {
            store,
            hub,
            ai,
            machines: Mutex::default(),
            lanes: Mutex::default(),
            snapshot_every: AtomicU64::new(every),
            wake_jobs: Arc::default(),
            wake_timers: Arc::default(),
            counters: Mutex::default(),
        })
    }

    /// Snapshot every `n` ledger entries (0: on demand only). `crate::app` sets it from the
    /// configuration.
    pub fn set_snapshot_every(&self, n: u64) {
        self.snapshot_every.store(n, Ordering::Relaxed);
    }

    /// Notified after every write that queued action jobs (the action runner waits on it).
    pub fn jobs_wake(&self) -> Arc<Notify> {
        self.wake_jobs.clone()
    }

    /// Notified after every write that armed timers (the timer service waits on it).
    pub fn timers_wake(&self) -> Arc<Notify> {
        self.wake_timers.clone()
    }

    /// The snapshot interval in entries (0: on demand only).
    pub fn snapshot_every(&self) -> u64 {
        self.snapshot_every.load(Ordering::Relaxed)
    }

    /// `org`'s counters, registered the first time.
    fn counters_of(&self, org: &OrgId) -> Arc<Counters> {
        let mut all = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(org.clone()).or_insert_with(|| Arc::new(Counters::register(org))).clone()
    }

    /// The compiled machine of a published template version (cached).
    pub fn machine(&self, org: &OrgId, template_id: &str, version: u32) -> Result<Arc<Machine>, ApiError> {
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
        self.send(record, Work::Ingest(Ingest { events, batch, idem, reply }), rx).await
    }

    /// Applies an operator control through the execution's lane (ordered with its events,
    /// one atomic write with its audit record).
    pub async fn control(
        self: &Arc<Self>,
        record: &ExecutionRecord,
        request: ControlRequest,
        idem: Option<Idempotency>,
    ) -> Result<Answer, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.send(record, Work::Control(ControlJob { request, idem, reply }), rx).await
    }

    /// Appends service-written entries through the execution's lane (see [`Recorder`]), in
    /// any status (a completed execution still records its mints and action results). The
    /// answer lists the entries (`{"entries": [{seq, hash}], "headSeq", "headHash"}`; no
    /// entries when the recorder had nothing to record).
    pub async fn record(self: &Arc<Self>, record: &ExecutionRecord, recorder: Recorder) -> Result<Answer, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.send(record, Work::Record(RecordJob { recorder, reply }), rx).await
    }

    async fn send(
        self: &Arc<Self>,
        record: &ExecutionRecord,
        mut job: Work,
        rx: oneshot::Receiver<Result<Answer, ApiError>>,
    ) -> Result<Answer, ApiError> {
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

    fn lane(self: &Arc<Self>, record: &ExecutionRecord) -> Result<mpsc::Sender<Work>, ApiError> {
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
        let counters = self.counters_of(&record.org);
        let lane = Lane { lanes: self.clone(), record: record.clone(), machine, head, live, counters };
        tokio::spawn(lane.run(rx));
        Ok(tx)
    }

    /// Fires an armed timer through the execution's lane: `timer.fired` and the transition's
    /// entries when the timer is still armed (due at `due_micros`) and the execution is
    /// created or running; otherwise nothing is written (a cancelled timer, a paused or
    /// finished execution) and the answer has no entries.
    pub async fn fire_timer(
        self: &Arc<Self>,
        record: &ExecutionRecord,
        transition_id: &str,
        due_micros: i64,
    ) -> Result<Answer, ApiError> {
        let (reply, rx) = oneshot::channel();
        let job = TimerJob { transition_id: transition_id.to_owned(), due_micros, reply };
        self.send(record, Work::Timer(job), rx).await
    }

    /// Publishes a write's entries and the state after it.
    pub fn publish(&self, id: ExecutionId, entries: Vec<SealedEntry>, head: &ChainHead, live: &LiveState) {
        self.hub.publish(id, || {
            let change = StateChange { head_seq: head.seq.get(), head_hash: head.hash.to_hex(), live: live.clone() };
            [Update::Entries(Arc::new(entries)), Update::State(Arc::new(change))]
        });
    }
}

/// The answer's view of entries.
pub fn entry_refs(entries: &[SealedEntry]) -> Vec<EntryRef> {
    entries.iter().map(|e| EntryRef { entry_hash: e.hash(), kind: e.entry().kind.clone(), seq: e.seq() }).collect()
}

/// An entry as answers name it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryRef {
    entry_hash: EntryHash,
    kind: Kind,
    seq: Seq,
}

/// What one posted event did, as its answer shows it.
#[derive(Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
enum EventResult {
    Stepped { entries: Vec<EntryRef>, event_seq: u64, messages: Vec<Message>, transitions: Vec<TransitionRecord> },
    Queued { entries: Vec<EntryRef>, queue_position: u64, queued: bool, seq: Seq },
}

/// The execution after a request, closing its answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct After<'a> {
    head_hash: EntryHash,
    head_seq: Seq,
    state: &'a ExecState,
    status: Status,
}

struct Lane {
    lanes: Arc<Lanes>,
    counters: Arc<Counters>,
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
    async fn run(mut self, mut rx: mpsc::Receiver<Work>) {
        // A control or recording taken off the queue while gathering a group of events waits
        // for that group's write: they are ordered with events and committed on their own.
        let mut pending: Option<Work> = None;
        loop {
            let first = match pending.take() {
                Some(w) => w,
                None => match tokio::time::timeout(IDLE, rx.recv()).await {
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
                },
            };
            let first = match first {
                Work::Control(c) => {
                    let answer = self.control(c.request, c.idem).await;
                    let _ = c.reply.send(answer);
                    continue;
                }
                Work::Record(r) => {
                    let answer = self.record(r.recorder).await;
                    let _ = r.reply.send(answer);
                    continue;
                }
                Work::Timer(t) => {
                    let answer = self.timer(&t.transition_id, t.due_micros).await;
                    let _ = t.reply.send(answer);
                    continue;
                }
                Work::Ingest(i) => i,
            };
            let mut group = vec![first];
            let mut events = group[0].events.len();
            while events < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(Work::Ingest(job)) => {
                        events += job.events.len();
                        group.push(job);
                    }
                    Ok(other) => {
                        pending = Some(other);
                        break;
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
                        Ok(Some(Answer { replayed: true, ..answer.clone() }))
                    }
                    Some(_) => Err(i.conflict()),
                    None => i.lookup_record(&store).map(|r| {
                        r.map(|r| Answer {
                            status: StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK),
                            body: r.body.into(),
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
            // Work on copies and on a write set of its own: a request that fails leaves
            // nothing behind.
            let (mut h, mut l, mut w) = (head, live.clone(), WriteSet::new());
            let first_new = entries.len();
            let mut mine = Vec::new();
            match self.apply(events, &mut h, &mut l, &mut mine, &mut w, &mut ai_fresh).await {
                Ok(results) => {
                    // `w` holds only this request's writes: an error drops them with it.
                    let written = answer_body(batch, results, &h, &l).and_then(|body| {
                        let answer = Answer { status: StatusCode::CREATED, body, replayed: false };
                        if let Some(i) = &idem {
                            w = i.record(std::mem::take(&mut w), answer.status, &*answer.body, None)?;
                        }
                        Ok(answer)
                    });
                    let answer = match written {
                        Ok(answer) => answer,
                        Err(e) => {
                            staged.push(Staged { reply, answer: Err(e) });
                            continue;
                        }
                    };
                    if let Some(i) = idem {
                        fresh.insert(i.lock_key(), (i, answer.clone()));
                    }
                    head = h;
                    live = l;
                    ws = ws.merge(w);
                    entries.extend(mine);
                    debug_assert!(entries.len() >= first_new);
                    staged.push(Staged { reply, answer: Ok(answer) });
                }
                Err(e) => staged.push(Staged { reply, answer: Err(e) }),
            }
        }

        if let Err(e) = self.write(ws, entries, head, live).await {
            return fail_all(staged, e);
        }
        for s in staged {
            let _ = s.reply.send(s.answer);
        }
    }

    /// Writes a group's entries (with the new state, and a snapshot if the write crosses a
    /// multiple of `snapshot_every`) and the rest of its write set in one atomic write; then
    /// publishes and moves the lane's head. On failure, reloads the head from the store.
    async fn write(
        &mut self,
        mut ws: WriteSet,
        entries: Vec<SealedEntry>,
        head: ChainHead,
        live: LiveState,
    ) -> Result<(), ApiError> {
        let store = self.lanes.store.clone();
        if !entries.is_empty() {
            let append = Append::new(entries.clone()).map_err(|e| ApiError::Internal(e.to_string()))?;
            ws = ws.append(append.with_state(live.to_bytes()));
            if snapshots::periodic_due(self.lanes.snapshot_every(), self.head.seq, head.seq) {
                ws = snapshots::put(ws, self.record.id, &SnapshotRecord::new(&head, &live, Trigger::Periodic))?;
            }
        }
        let (ws, timers_changed) =
            crate::timers::reindex(ws, &self.record.org, self.record.id, Some(&self.live), &live);
        if let Err(e) = store.write(ws).await {
            // What the store holds is the truth: reload before the next group.
            if let Ok(Some((h, l))) = crate::repo::executions::live(&store, self.record.id) {
                self.head = h;
                self.live = l;
            }
            return Err(e.into());
        }
        if timers_changed {
            self.lanes.wake_timers.notify_one();
        }
        if entries.iter().any(|e| crate::actions::QUEUEING_KINDS.contains(&e.entry().kind.as_str())) {
            self.lanes.wake_jobs.notify_one();
        }
        if !entries.is_empty() {
            self.counters.entries_appended.increment(entries.len() as u64);
            self.lanes.publish(self.record.id, entries, &head, &live);
        }
        self.head = head;
        self.live = live;
        Ok(())
    }

    /// The outputs of an event's AI rules (this group's fresh ones, the cache, the provider).
    async fn ai_outputs(
        &self,
        live: &LiveState,
        event: &Event,
        ai_fresh: &mut HashMap<String, Value>,
        ws: &mut WriteSet,
    ) -> Result<AiOutputs, ApiError> {
        let requests = self.machine.ai_requests(&live.exec, event).map_err(bad_event)?;
        if requests.is_empty() {
            return Ok(AiOutputs::new());
        }
        let lanes = &self.lanes;
        crate::ai::resolve(&lanes.store, lanes.ai.as_deref(), &self.record.org, &requests, ai_fresh, ws).await
    }

    /// Steps one event through the engine (the next event seq, received at `received_at`),
    /// sealing its entries onto `head` and adding its jobs to `ws`.
    async fn step_event(
        &self,
        ev: QueuedEvent,
        head: &mut ChainHead,
        live: &mut LiveState,
        ws: &mut WriteSet,
        ai_fresh: &mut HashMap<String, Value>,
    ) -> Result<apply::Stepped, ApiError> {
        let event = Event {
            event_seq: live.exec.event_count + 1,
            r#type: ev.kind,
            payload: ev.payload,
            source: ev.source,
            occurred_at: ev.occurred_at,
            received_at: ev.received_at.to_string(),
        };
        let ai = self.ai_outputs(live, &event, ai_fresh, ws).await?;
        let stepped = apply::event(&self.machine, live, head, &event, &ai).map_err(step_error)?;
        *ws =
            enqueue_jobs(std::mem::take(ws), &self.record, &stepped.actions, &stepped.entries[stepped.drafts_from..])?;
        let counters = &self.counters;
        counters.events_ingested.increment(1);
        counters.messages_derived.increment(stepped.messages.len() as u64);
        counters.transitions_fired.increment(stepped.transitions.len() as u64);
        Ok(stepped)
    }

    /// Steps events through the engine, sealing their entries onto `head`; while paused,
    /// queues them instead (`event.queued`).
    async fn apply(
        &self,
        events: Vec<NewEvent>,
        head: &mut ChainHead,
        live: &mut LiveState,
        out: &mut Vec<SealedEntry>,
        ws: &mut WriteSet,
        ai_fresh: &mut HashMap<String, Value>,
    ) -> Result<Vec<EventResult>, ApiError> {
        if !live.status.accepts_events() {
            return Err(ApiError::Conflict {
                detail: format!("execution {} is {} and takes no more events", self.record.id, live.status.as_str()),
                extra: Some(serde_json::Map::from_iter([("executionStatus".to_owned(), json!(live.status))])),
            });
        }
        let count = events.len();
        let mut results = Vec::with_capacity(count);
        for NewEvent { kind, payload, source, occurred_at } in events {
            let ev = QueuedEvent { kind, payload, source, occurred_at, received_at: RecordedAt::now() };
            if live.status == Status::Paused {
                let (entry, position) = apply::queue(live, head, &ev).map_err(step_error)?;
                results.push(EventResult::Queued {
                    entries: entry_refs(std::slice::from_ref(&entry)),
                    queue_position: position,
                    queued: true,
                    seq: entry.seq(),
                });
                out.push(entry);
                continue;
            }
            let stepped = self.step_event(ev, head, live, ws, ai_fresh).await?;
            results.push(EventResult::Stepped {
                entries: entry_refs(&stepped.entries),
                event_seq: live.exec.event_count,
                messages: stepped.messages,
                transitions: stepped.transitions,
            });
            out.extend(stepped.entries);
            if !live.status.accepts_events() && count > results.len() {
                return Err(ApiError::conflict(format!(
                    "event {} of the batch completed the execution; the remaining {} cannot be applied",
                    results.len(),
                    count - results.len()
                )));
            }
        }
        Ok(results)
    }

    /// Applies an operator control: its `admin.*` entry (and the engine's entries for a
    /// forced transition or action), for resume the queued events, the audit record and the
    /// idempotency record, in one atomic write.
    async fn control(&mut self, req: ControlRequest, idem: Option<Idempotency>) -> Result<Answer, ApiError> {
        let store = self.lanes.store.clone();
        if let Some(i) = &idem
            && let Some(r) = i.lookup_record(&store)?
        {
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
            return Ok(Answer { status, body: r.body.into(), replayed: true });
        }
        let (mut head, mut live) = (self.head, self.live.clone());
        let at = RecordedAt::now();
        let mut ws = WriteSet::new();
        let discarded = live.queue.map_or(0, |q| q.length);
        // Every event before this control is durable (controls are committed on their own),
        // so the queue can be read from the store.
        let queued = match (&req.control, live.queue) {
            (ControlInput::Resume { .. }, Some(q)) => read_queue(&store, self.record.id, q)?,
            _ => Vec::new(),
        };
        let control = match req.control {
            ControlInput::Pause => Control::Pause,
            ControlInput::Resume { approval } => {
                Control::Resume { approval, applied: queued.iter().map(|(seq, _)| *seq).collect() }
            }
            ControlInput::Cancel => Control::Cancel { discarded },
            ControlInput::Complete => Control::Complete { discarded },
            ControlInput::ForceTransition { target, data } => Control::ForceTransition { target, data },
            ControlInput::ForceAction { action_id, input } => Control::ForceAction { action_id, input },
        };
        let action = AdminAction { actor: req.actor, reason: req.reason, control };
        let stepped = apply::control(&self.machine, &mut live, &mut head, &action, &at).map_err(step_error)?;
        ws = enqueue_jobs(ws, &self.record, &stepped.actions, &stepped.entries[stepped.drafts_from..])?;
        let admin_seq = stepped.entries[0].seq().get();
        let first = json!({
            "entries": entry_refs(&stepped.entries),
            "transitions": stepped.transitions,
        });
        let mut entries = stepped.entries;
        // Resume: the queued events, in order, received now.
        let mut applied = Vec::with_capacity(queued.len());
        let mut ai_fresh = HashMap::new();
        for (queued_seq, q) in queued {
            let q = QueuedEvent { received_at: at.clone(), ..q };
            let s = self.step_event(q, &mut head, &mut live, &mut ws, &mut ai_fresh).await?;
            applied.push(json!({
                "queuedSeq": queued_seq,
                "eventSeq": live.exec.event_count,
                "entries": entry_refs(&s.entries),
                "messages": s.messages,
                "transitions": s.transitions,
            }));
            entries.extend(s.entries);
        }
        let mut details = action.body();
        details["seq"] = json!(admin_seq);
        ws = audit::record(
            ws,
            &self.record.org,
            &action.actor,
            &action.audit_action(),
            &self.record.id.to_string(),
            details,
        )?;
        let mut body = json!({
            "executionId": self.record.id,
            "action": action.kind(),
            "seq": admin_seq,
            "entries": first["entries"],
            "transitions": first["transitions"],
            "headSeq": head.seq,
            "headHash": head.hash,
            "status": live.status,
            "state": live.exec,
        });
        if matches!(action.control, Control::Resume { .. }) {
            body["applied"] = Value::Array(applied);
        }
        let answer = Answer::ok(&body)?;
        if let Some(i) = &idem {
            ws = i.record(ws, StatusCode::OK, &*answer.body, None)?;
        }
        self.write(ws, entries, head, live).await?;
        Ok(answer)
    }
}

impl Lane {
    /// Runs a recorder and writes what it returns.
    async fn record(&mut self, recorder: Recorder) -> Result<Answer, ApiError> {
        let mut head = self.head;
        let body = |entries: &[SealedEntry], head: &ChainHead| json!({ "entries": entry_refs(entries), "headSeq": head.seq, "headHash": head.hash });
        let Some(rec) = recorder(&self.lanes.store, &head)? else {
            return Answer::ok(&body(&[], &head));
        };
        let at = RecordedAt::now();
        let mut entries: Vec<SealedEntry> =
            rec.entries.into_iter().map(|(kind, b)| apply::seal_one(&mut head, kind, &at, b)).collect();
        let mut live = self.live.clone();
        let mut ws = rec.ws;
        if let Some(ev) = rec.event
            && live.status.accepts_events()
        {
            // On copies: an event that cannot apply leaves the recording as it was.
            let (mut h, mut l, mut w, mut out) = (head, live.clone(), WriteSet::new(), Vec::new());
            let kind = ev.kind.clone();
            match self.apply(vec![ev], &mut h, &mut l, &mut out, &mut w, &mut HashMap::new()).await {
                Ok(_) => {
                    (head, live, ws) = (h, l, ws.merge(w));
                    entries.extend(out);
                }
                Err(e) => {
                    tracing::warn!(execution_id = %self.record.id, error = %e, %kind, "result event not applied")
                }
            }
        }
        let answer = Answer::ok(&body(&entries, &head))?;
        self.write(ws, entries, head, live).await?;
        Ok(answer)
    }

    /// Fires a timer if it is still armed and the execution is created or running. A timer
    /// that is not (cancelled, or the execution paused or finished) writes nothing: its key
    /// in the timer index is already gone, or goes now.
    async fn timer(&mut self, transition_id: &str, due_micros: i64) -> Result<Answer, ApiError> {
        let armed = self.live.exec.timers.iter().any(|t| {
            t.transition_id == transition_id
                && RecordedAt::parse(&t.due_at).is_ok_and(|d| d.unix_micros() == due_micros)
        });
        let runs = matches!(self.live.status, Status::Created | Status::Running);
        let mut head = self.head;
        if !armed || !runs {
            let ws = crate::timers::unindex(WriteSet::new(), self.record.id, transition_id, due_micros);
            self.lanes.store.write(ws).await?;
            return Answer::ok(&json!({ "fired": false, "entries": [], "headSeq": head.seq, "headHash": head.hash }));
        }
        // Never before it is due (the engine refuses that): the clock may lag the index.
        let now = RecordedAt::now();
        let fired_at = if now.unix_micros() < due_micros {
            RecordedAt::from_unix_micros(due_micros).map_err(|e| ApiError::Internal(e.to_string()))?
        } else {
            now
        };
        let mut live = self.live.clone();
        let stepped =
            apply::timer(&self.machine, &mut live, &mut head, transition_id, fired_at.as_str()).map_err(step_error)?;
        let ws =
            enqueue_jobs(WriteSet::new(), &self.record, &stepped.actions, &stepped.entries[stepped.drafts_from..])?;
        self.counters.timers_fired.increment(1);
        self.counters.transitions_fired.increment(stepped.transitions.len() as u64);
        let answer = Answer::ok(&json!({
            "fired": true,
            "entries": entry_refs(&stepped.entries),
            "transitions": stepped.transitions,
            "headSeq": head.seq,
            "headHash": head.hash,
        }))?;
        self.write(ws, stepped.entries, head, live).await?;
        Ok(answer)
    }
}

/// The events queued since a pause: the `event.queued` entries after `since_seq`, in order.
fn read_queue(store: &Store, id: ExecutionId, q: PauseQueue) -> Result<Vec<(u64, QueuedEvent)>, ApiError> {
    let mut out = Vec::with_capacity(q.length as usize);
    for e in store.iter_entries(id, Seq::new(q.since_seq + 1)) {
        let e = e?;
        if e.entry().kind.as_str() != apply::kinds::EVENT_QUEUED {
            continue;
        }
        let body = e.entry().body.to_value().map_err(|err| ApiError::Internal(err.to_string()))?;
        let (_, ev) = QueuedEvent::parse(&body).map_err(|err| ApiError::Internal(err.to_string()))?;
        out.push((e.seq().get(), ev));
    }
    if out.len() as u64 != q.length {
        return Err(ApiError::Internal(format!(
            "execution {id}: {} queued events on the ledger, the state says {}",
            out.len(),
            q.length
        )));
    }
    Ok(out)
}

fn bad_event(e: pled_engine::EngineError) -> ApiError {
    ApiError::bad_field("/", e.to_string())
}

/// The answer to a step that could not apply.
pub fn step_error(e: StepError) -> ApiError {
    match e {
        StepError::Conflict(detail) => ApiError::conflict(detail),
        StepError::Refused { code, reason } => {
            ApiError::Unprocessable { code: "force_refused", detail: format!("{code}: {reason}"), errors: vec![] }
        }
        StepError::Engine(e) => bad_event(e),
        StepError::Corrupt(detail) => ApiError::Internal(detail),
    }
}

/// An ingest request's answer: its one event's result, or (for a batch) `events`, then the
/// execution after it. Written straight from the typed results.
fn answer_body(
    batch: bool,
    results: Vec<EventResult>,
    head: &ChainHead,
    live: &LiveState,
) -> Result<Arc<RawValue>, ApiError> {
    #[derive(Serialize)]
    struct One<'a> {
        #[serde(flatten)]
        result: &'a EventResult,
        #[serde(flatten)]
        after: After<'a>,
    }
    #[derive(Serialize)]
    struct Many<'a> {
        events: &'a [EventResult],
        #[serde(flatten)]
        after: After<'a>,
    }
    let after = After { head_hash: head.hash, head_seq: head.seq, state: &live.exec, status: live.status };
    let body = match results.as_slice() {
        [one] if !batch => raw_json(&One { result: one, after }),
        many => raw_json(&Many { events: many, after }),
    };
    Ok(body?.into())
}

fn fail_all(staged: Vec<Staged>, e: ApiError) {
    let msg = e.to_string();
    for s in staged {
        let answer = match &s.answer {
            // Replays did not depend on this write.
            Ok(a) if a.replayed => Ok(a.clone()),
            _ => Err(match &e {
                ApiError::Unavailable(_) => ApiError::Unavailable(msg.clone()),
                _ => ApiError::Internal(msg.clone()),
            }),
        };
        let _ = s.reply.send(answer);
    }
}
