//! Replay: re-run an execution's stored inputs through a compiled template version and
//! compare what comes out with the stored chain; and the comparison of two versions on the
//! same inputs.
//!
//! The stored ledger is read as a sequence of *inputs*, each followed by its effects: an
//! input is every entry whose kind is not an engine effect ([`apply::is_effect`]) —
//! `execution.created`, `event.received`, `timer.fired` / `timer.ignored`, `event.queued`,
//! `admin.*`, and any other kind the service may write (replayed verbatim). Each input goes
//! through the same functions the lane uses ([`crate::apply`]): events are rebuilt from their
//! `event.received` bodies (AI outputs from the event's own `message.derived` entries — never
//! a model), timers from `transitionId` / `firedAt`, operator controls from their `admin.*`
//! bodies. The entries are sealed exactly as the lane seals them, chained from genesis or from
//! a snapshot's head, and compared with the stored ones: identical, or the first seq where
//! they differ and how.
//!
//! Everything here only reads: no entry is appended, no job enqueued, no model called.
//! Replay is a fold, so it is cancellable between inputs ([`Stop`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use pled_core::{ChainHead, EntryHash, ExecutionId, OrgId, SealedEntry, Seq};
use pled_engine::{AiOutputs, Event, Machine, TransitionRecord};
use pled_store::{Cursor, Store, StoreError, StoredRef};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::apply::{self, AdminAction, Chain, Drafting, QueuedEvent, StepError, Stepped, Unsealed, kinds};
use crate::error::ApiError;
use crate::repo::executions::LiveState;
use crate::repo::snapshots::{self, SnapshotRecord};

/// Where to start and stop.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Stop at the last input boundary at or before this seq (default: the head when the
    /// replay starts).
    pub up_to: Option<u64>,
    /// Start from this snapshot (its seq) instead of genesis.
    pub from_snapshot: Option<u64>,
    /// Report progress every this many inputs (0: never).
    pub progress_every: u64,
}

/// How far a replay is.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The last stored seq read.
    pub seq: u64,
    /// The seq it runs to.
    pub target_seq: u64,
    /// Inputs replayed.
    pub inputs: u64,
    /// Events among them.
    pub events: u64,
}

/// What a fold checks every 256 inputs: whether to stop early (a cancellation flag raised
/// when the HTTP request goes away, a deadline), and where to show how far it got.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stop<'a> {
    /// Set by someone else to stop the replay.
    pub cancel: Option<&'a AtomicBool>,
    /// Give up at this instant.
    pub deadline: Option<Instant>,
    /// Updated at every check and at the end (a background run's progress).
    pub progress: Option<&'a Mutex<Progress>>,
}

impl Stop<'_> {
    fn check(&self, progress: &Progress) -> Result<(), ReplayError> {
        self.show(progress);
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(ReplayError::Cancelled(*progress));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ReplayError::TimedOut(*progress));
        }
        Ok(())
    }

    fn show(&self, progress: &Progress) {
        if let Some(p) = self.progress {
            *p.lock().unwrap_or_else(|e| e.into_inner()) = *progress;
        }
    }
}

/// Why a replay could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A bad request (up-to before the snapshot, beyond the head, …).
    #[error("{0}")]
    Invalid(String),
    /// No such snapshot.
    #[error("snapshot {0} not found")]
    SnapshotNotFound(u64),
    /// The execution has no ledger.
    #[error("execution {0} has no ledger")]
    NoLedger(ExecutionId),
    /// Cancelled (the client went away).
    #[error("replay cancelled after {} inputs (seq {} of {})", .0.inputs, .0.seq, .0.target_seq)]
    Cancelled(Progress),
    /// The deadline passed.
    #[error(
        "replay did not finish in time: {} inputs replayed (seq {} of {}); start it with \"background\": true, or replay from a snapshot",
        .0.inputs, .0.seq, .0.target_seq
    )]
    TimedOut(Progress),
    /// A store read failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something else (corrupt records).
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Invalid(d) => ApiError::BadRequest { detail: d, errors: vec![] },
            ReplayError::SnapshotNotFound(s) => ApiError::not_found("snapshot", s),
            ReplayError::NoLedger(id) => ApiError::Internal(format!("execution {id} has no ledger")),
            e @ (ReplayError::Cancelled(_) | ReplayError::TimedOut(_)) => ApiError::Unavailable(e.to_string()),
            ReplayError::Store(e) => e.into(),
            ReplayError::Api(e) => e,
        }
    }
}

/// One entry, as a divergence shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    /// Seq.
    pub seq: u64,
    /// Kind.
    pub kind: String,
    /// Body.
    #[schema(value_type = Object)]
    pub body: Value,
    /// Recorded time.
    pub recorded_at: String,
    /// Previous hash.
    pub prev_hash: String,
    /// Its hash (stored: as claimed).
    pub entry_hash: String,
}

impl EntryView {
    fn of(e: &SealedEntry) -> Self {
        let x = e.entry();
        Self {
            seq: x.seq.get(),
            kind: x.kind.as_str().to_owned(),
            body: x.body.to_value().unwrap_or(Value::Null),
            recorded_at: x.recorded_at.as_str().to_owned(),
            prev_hash: x.prev_hash.to_hex(),
            entry_hash: e.hash().to_hex(),
        }
    }
}

/// Where a replay first differs from the stored chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Divergence {
    /// The first seq that differs.
    pub seq: u64,
    /// The seq of the input whose effects differ there.
    pub input_seq: u64,
    /// What differs: `kind`, `body`, `recordedAt`, `prevHash`, `hash` (the stored hash is
    /// not the hash of the stored content), `missing` (the stored chain has an entry replay
    /// does not produce), `extra` (replay produces one the stored chain lacks), `refused`
    /// (replay could not apply the stored input), `snapshot` (the snapshot's head hash is
    /// not the stored entry's), `state` (same entries, different state).
    pub field: String,
    /// In words.
    pub detail: String,
    /// The stored entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<EntryView>,
    /// The replayed entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<EntryView>,
}

/// A snapshot met on the way, checked against the replayed state.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCheck {
    /// Its id (seq).
    pub id: u64,
    /// Whether its state and head hash equal the replay's at that seq.
    pub matches: bool,
}

/// What a replay found.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// The execution.
    #[schema(value_type = String)]
    pub execution_id: ExecutionId,
    /// The snapshot it started from (`null`: genesis).
    pub from_snapshot_id: Option<u64>,
    /// The seq it started after (0: genesis).
    pub from_seq: u64,
    /// The seq it was asked to reach.
    pub up_to_seq: u64,
    /// The seq it reached (the last input boundary at or before `upToSeq`).
    pub head_seq: u64,
    /// The replayed chain's hash at `headSeq`.
    pub head_hash: String,
    /// The stored chain's hash at `headSeq`.
    pub stored_head_hash: String,
    /// Whether every replayed entry is byte-identical to the stored one (and the state,
    /// where a stored state exists to compare with).
    pub identical: bool,
    /// The first difference, if any.
    pub divergence: Option<Divergence>,
    /// Status, engine state and pause queue after the replay.
    #[schema(value_type = Object)]
    pub state: LiveState,
    /// When the replay reached the stored head: whether its state equals the stored one.
    pub state_matches_head: Option<bool>,
    /// Snapshots on the way.
    pub snapshots: Vec<SnapshotCheck>,
    /// Inputs replayed.
    pub inputs: u64,
    /// Events among them.
    pub events: u64,
    /// Entries replayed.
    pub entries: u64,
    /// Wall time.
    pub elapsed_ms: f64,
}

/// One stored input as replay reads it. An event is read straight from its `event.received`
/// body into an [`Event`], with the AI outputs its `message.derived` entries recorded; any
/// other input entry is built. Its effects are kept by seq and hash only: the comparison
/// needs no more, and where a hash differs that entry is read again. The event's `eventSeq`
/// is set by the fold that applies it (the lane numbers events itself).
struct Input {
    stored: StoredInput,
    event: Option<Result<Event, String>>,
    /// By input hash; an error names the entry that does not read.
    ai: Result<AiOutputs, String>,
}

impl Input {
    /// An input starting at `e`, its effects still to come.
    fn start(e: StoredRef<'_>) -> Result<Self, StoreError> {
        let (seq, hash) = (e.seq(), e.hash());
        let (entry, event) = if e.kind() == pled_engine::kinds::EVENT_RECEIVED {
            (None, Some(stored_event(seq, e.body_bytes())))
        } else {
            (Some(e.to_sealed()?), None)
        };
        let stored = StoredInput { seq, hash, entry, effects: Vec::new() };
        Ok(Self { stored, event, ai: Ok(AiOutputs::new()) })
    }
}

/// An input's stored entries: the input entry (built unless it is an event) and its
/// effects' seqs and stored hashes.
struct StoredInput {
    seq: Seq,
    hash: EntryHash,
    /// `None` for an event (read into [`Input::event`]).
    entry: Option<SealedEntry>,
    effects: Vec<(Seq, EntryHash)>,
}

impl StoredInput {
    /// The input entry's kind.
    fn kind(&self) -> &str {
        self.entry.as_ref().map_or(pled_engine::kinds::EVENT_RECEIVED, |e| e.entry().kind.as_str())
    }

    /// Every entry's seq and stored hash, the input entry's first.
    fn hashes(&self) -> impl Iterator<Item = (Seq, EntryHash)> + '_ {
        std::iter::once((self.seq, self.hash)).chain(self.effects.iter().copied())
    }

    /// The last entry's seq and stored hash.
    fn last(&self) -> (Seq, EntryHash) {
        self.effects.last().copied().unwrap_or((self.seq, self.hash))
    }

    /// Its entry at `seq`, built: the input entry if it was, else read again.
    fn read(&self, store: &Store, execution: ExecutionId, seq: Seq) -> Result<SealedEntry, StoreError> {
        if let Some(e) = self.entry.as_ref().filter(|e| e.seq() == seq) {
            return Ok(e.clone());
        }
        store.entry(execution, seq)?.ok_or_else(|| StoreError::Corrupt {
            what: format!("entry {seq} of execution {execution}"),
            detail: "read once by the replay, then not found".into(),
        })
    }
}

/// Groups stored entries into inputs (an input entry and its effects), up to `up_to`.
struct Inputs<'s> {
    cursor: Cursor<'s>,
    up_to: u64,
    /// The input whose entry ended the previous one, or the error there.
    next: Option<Result<Input, StoreError>>,
}

impl<'s> Inputs<'s> {
    fn new(store: &'s Store, execution: ExecutionId, from: Seq, up_to: u64) -> Self {
        Self { cursor: store.cursor(execution, from), up_to, next: None }
    }
}

impl Iterator for Inputs<'_> {
    type Item = Result<Input, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let input = match self.next.take() {
            Some(read) => read,
            None => self.cursor.next()?.and_then(Input::start),
        };
        let mut input = match input {
            Ok(input) => input,
            Err(e) => return Some(Err(e)),
        };
        if input.stored.seq.get() > self.up_to {
            return None;
        }
        while let Some(read) = self.cursor.next() {
            let e = match read {
                Ok(e) if apply::is_effect(e.kind()) => e,
                other => {
                    self.next = Some(other.and_then(Input::start));
                    break;
                }
            };
            input.stored.effects.push((e.seq(), e.hash()));
            if input.event.is_some()
                && e.kind() == pled_engine::kinds::MESSAGE_DERIVED
                && memchr::memmem::find(e.body_bytes(), br#""deterministic":false"#).is_some()
                && let Ok(outputs) = &mut input.ai
                && let Err(err) = record_ai(outputs, e)
            {
                input.ai = Err(err);
            }
        }
        // An input whose effects run past `up_to` is not replayed: states exist only
        // between inputs.
        if input.stored.last().0.get() > self.up_to {
            return None;
        }
        Some(Ok(input))
    }
}

fn body_value(e: &SealedEntry) -> Result<Value, StepError> {
    e.entry().body.to_value().map_err(|err| StepError::Corrupt(format!("entry {}: {err}", e.seq())))
}

/// Adds the AI output a stored `message.derived` entry recorded to `outputs`, by its input
/// hash.
fn record_ai(outputs: &mut AiOutputs, message: StoredRef<'_>) -> Result<(), String> {
    let e = message.to_sealed().map_err(|e| e.to_string())?;
    let b = body_value(&e).map_err(|e| e.to_string())?;
    if let (Some(hash), Some(data)) = (b["ai"]["inputHash"].as_str(), b.get("data")) {
        outputs.insert(hash.to_owned(), data.clone());
    }
    Ok(())
}

/// Rebuilds an event from the stored body of its `event.received` entry at `seq`, which has
/// exactly an [`Event`]'s members (`event_seq` 0: the fold numbers it).
fn stored_event(seq: Seq, body: &[u8]) -> Result<Event, String> {
    let unreadable = |err: &dyn std::fmt::Display| format!("event.received at seq {seq}: {err}");
    // The whole body checked as text, then parsed as text: serde_json's byte reader checks
    // each string's UTF-8 as it goes, which costs more.
    let text = std::str::from_utf8(body).map_err(|e| unreadable(&e))?;
    let mut event: Event = serde_json::from_str(text).map_err(|e| unreadable(&e))?;
    event.event_seq = 0;
    Ok(event)
}

/// Folds inputs through one machine, the way the lane does, drafting the entries (replay
/// links and hashes them on its sealing thread; a comparison needs no hashes).
struct Fold<'a> {
    machine: &'a Machine,
    live: Option<LiveState>,
    head: Drafting,
    /// Where to look up AI outputs an event's own entries do not carry (comparison only:
    /// another version may ask other questions).
    ai_cache: Option<(&'a Store, &'a OrgId)>,
    events: u64,
}

impl<'a> Fold<'a> {
    fn new(machine: &'a Machine, after: Seq, live: Option<LiveState>) -> Self {
        Self { machine, live, head: Drafting { seq: after }, ai_cache: None, events: 0 }
    }

    /// Applies one stored input; returns what it produced.
    fn step(&mut self, input: &mut Input) -> Result<Stepped<Unsealed>, StepError> {
        let (seq, kind) = (input.stored.seq, input.stored.kind());
        if kind == kinds::EXECUTION_CREATED
            && let Some(created) = &input.stored.entry
        {
            return self.start(created);
        }
        let live = self
            .live
            .as_mut()
            .ok_or_else(|| StepError::Corrupt(format!("seq {seq}: {kind} before execution.created")))?;
        let head = &mut self.head;
        let Some(first) = &input.stored.entry else {
            let event = match &mut input.event {
                Some(Ok(event)) => event,
                Some(Err(e)) => return Err(StepError::Corrupt(e.clone())),
                None => return Err(StepError::Corrupt(format!("seq {seq}: no event read"))),
            };
            event.event_seq = live.exec.event_count + 1;
            let event = &*event;
            let mut ai = input.ai.clone().map_err(StepError::Corrupt)?;
            if let Some((store, org)) = self.ai_cache {
                for r in self.machine.ai_requests(&live.exec, event)? {
                    if ai.contains_key(&r.input_hash) {
                        continue;
                    }
                    let key = format!("ai/{org}/{}", r.input_hash);
                    if let Ok(Some(c)) = crate::repo::get_json::<crate::ai::CachedOutput>(store, &key) {
                        ai.insert(r.input_hash, c.output);
                    }
                }
            }
            self.events += 1;
            return apply::event(self.machine, live, head, event, &ai);
        };
        let x = first.entry();
        match kind {
            pled_engine::kinds::TIMER_FIRED | pled_engine::kinds::TIMER_IGNORED => {
                let b = body_value(first)?;
                let field = |n: &str| {
                    b.get(n)
                        .and_then(Value::as_str)
                        .ok_or_else(|| StepError::Corrupt(format!("{kind} at seq {}: {n}", x.seq)))
                };
                apply::timer(self.machine, live, head, field("transitionId")?, field("firedAt")?)
            }
            kinds::EVENT_QUEUED => {
                let (_, ev) = QueuedEvent::parse(&body_value(first)?)?;
                let (entry, _) = apply::queue(live, head, &ev)?;
                Ok(Stepped { entries: vec![entry], ..Stepped::default() })
            }
            k if k.starts_with("admin.") => {
                let action = AdminAction::parse(k, &body_value(first)?)?;
                apply::control(self.machine, live, head, &action, &x.recorded_at)
            }
            // A kind the service writes that is not an input of the machine: copied as is.
            _ => Ok(Stepped {
                entries: vec![apply::seal_one(head, x.kind.clone(), &x.recorded_at, x.body.clone())],
                ..Stepped::default()
            }),
        }
    }

    /// `execution.created`: the initial state from its variables, started at its time.
    fn start(&mut self, created: &SealedEntry) -> Result<Stepped<Unsealed>, StepError> {
        let x = created.entry();
        if x.seq != Seq::FIRST || self.live.is_some() {
            return Err(StepError::Corrupt(format!("execution.created at seq {}", x.seq)));
        }
        let b = body_value(created)?;
        let mut vars = b.get("variables").cloned().unwrap_or_else(|| json!({}));
        // Another version may declare other variables: keep the ones it knows.
        if let Value::Object(m) = &mut vars {
            let known: Vec<&str> = self.machine.template().variables.iter().map(|v| v.name.as_str()).collect();
            m.retain(|k, _| known.contains(&k.as_str()));
        }
        let outcome = self.machine.initial_state(Some(&vars), x.recorded_at.as_str())?;
        let mut entries = vec![apply::seal_one(&mut self.head, x.kind.clone(), &x.recorded_at, x.body.clone())];
        entries.extend(apply::seal(&mut self.head, outcome.drafts, &x.recorded_at));
        self.live = Some(LiveState::started(outcome.state));
        Ok(Stepped { entries, drafts_from: 1, actions: outcome.actions, ..Stepped::default() })
    }
}

/// Compares replayed entries with the stored ones of the same input by hash; `None` if
/// identical. Where they first differ the stored entry is read again (an input carries only
/// its effects' hashes) to say how.
fn compare_entries(
    store: &Store,
    execution: ExecutionId,
    stored: &StoredInput,
    replayed: &[SealedEntry],
) -> Result<Option<Divergence>, StoreError> {
    let mut hashes = stored.hashes();
    let mut i = 0;
    let differs = loop {
        match (hashes.next(), replayed.get(i)) {
            (None, None) => return Ok(None),
            (Some((_, h)), Some(r)) if h == r.hash() => i += 1,
            (s, _) => break s.map(|(seq, _)| seq),
        }
    };
    let s = differs.map(|seq| stored.read(store, execution, seq)).transpose()?;
    let r = replayed.get(i);
    let (field, detail) = match (&s, r) {
        (Some(s), Some(r)) => {
            let (a, b) = (s.entry(), r.entry());
            if a.seq != b.seq {
                ("seq", format!("stored seq {}, replayed seq {}", a.seq, b.seq))
            } else if a.kind != b.kind {
                ("kind", format!("stored {}, replayed {}", a.kind, b.kind))
            } else if a.body != b.body {
                ("body", format!("the {} bodies differ", a.kind))
            } else if a.recorded_at != b.recorded_at {
                ("recordedAt", format!("stored {}, replayed {}", a.recorded_at, b.recorded_at))
            } else if a.prev_hash != b.prev_hash {
                ("prevHash", "the previous entries' hashes differ".to_owned())
            } else {
                ("hash", "same content, but the stored hash is not the hash of the stored entry".to_owned())
            }
        }
        (Some(s), None) => ("missing", format!("the stored {} has no counterpart in the replay", s.entry().kind)),
        (None, Some(r)) => ("extra", format!("the replay produces a {} the stored chain lacks", r.entry().kind)),
        (None, None) => return Ok(None),
    };
    Ok(Some(Divergence {
        seq: s.as_ref().or(r).map_or(0, |e| e.seq().get()),
        input_seq: stored.seq.get(),
        field: field.to_owned(),
        detail,
        stored: s.as_ref().map(EntryView::of),
        replayed: r.map(EntryView::of),
    }))
}

/// The stored snapshots in (after, up_to], read a page at a time as the fold reaches them:
/// a long replay holds at most a page of full states, however many snapshots it passes.
struct Checks<'a> {
    store: &'a Store,
    execution: ExecutionId,
    /// Pages start after this seq; `up_to` once the last page is read.
    after: u64,
    up_to: u64,
    page_size: usize,
    page: std::collections::VecDeque<SnapshotRecord>,
}

impl<'a> Checks<'a> {
    fn new(store: &'a Store, execution: ExecutionId, after: u64, up_to: u64, page_size: usize) -> Self {
        Self { store, execution, after, up_to, page_size, page: Default::default() }
    }

    /// The next snapshot at or before `seq`, if any.
    fn next_at_or_before(&mut self, seq: u64) -> Result<Option<SnapshotRecord>, ApiError> {
        if self.page.is_empty() && self.after < self.up_to {
            let page = snapshots::between(self.store, self.execution, self.after, self.up_to, self.page_size)?;
            self.after = match page.last() {
                Some(last) if page.len() == self.page_size => last.seq,
                _ => self.up_to,
            };
            self.page = page.into();
        }
        Ok(if self.page.front().is_some_and(|s| s.seq <= seq) { self.page.pop_front() } else { None })
    }
}

/// Snapshots read per page by [`Checks`].
const SNAPSHOT_PAGE: usize = 16;

fn thread_error(e: std::io::Error) -> ReplayError {
    ReplayError::Api(ApiError::Internal(format!("cannot start a replay thread: {e}")))
}

/// Stored inputs travel from the reading thread in batches that start at `FIRST_BATCH`
/// inputs and double up to `PIPELINE_BATCH` (the fold starts early, then channel traffic
/// stays small); replayed inputs go to the sealing thread `SEAL_BATCH` at a time (it
/// finishes soon after the fold).
const FIRST_BATCH: usize = 8;
const PIPELINE_BATCH: usize = 128;
const SEAL_BATCH: usize = 32;

/// One input as the fold replayed it, on its way to the sealing thread.
struct Replayed {
    /// The stored entries.
    stored: StoredInput,
    /// The drafted entries, or why the input could not apply.
    entries: Result<Vec<Unsealed>, String>,
    /// Snapshots passed after this input: (id, whether the replayed state and seq are the
    /// snapshot's, its recorded head hash).
    at_snapshots: Vec<(u64, bool, String)>,
}

/// Links and hashes replayed entries exactly as the lane does ([`Chain::push`] onto a
/// [`ChainHead`]) and compares them with the stored ones.
struct Sealer<'a> {
    store: &'a Store,
    execution: ExecutionId,
    head: ChainHead,
    divergence: Option<Divergence>,
    /// A stored entry that could not be read again to explain a difference.
    failed: Option<StoreError>,
    snapshots: Vec<SnapshotCheck>,
}

impl Sealer<'_> {
    fn take(&mut self, r: Replayed) {
        match r.entries {
            Ok(drafted) => {
                let sealed: Vec<SealedEntry> = drafted
                    .into_iter()
                    .map(|u| {
                        debug_assert_eq!(u.seq, self.head.seq.next(), "the fold and the sealer number alike");
                        self.head.push(u.kind, u.recorded_at, u.body)
                    })
                    .collect();
                if self.divergence.is_none() && self.failed.is_none() {
                    match compare_entries(self.store, self.execution, &r.stored, &sealed) {
                        Ok(d) => self.divergence = d,
                        Err(e) => self.failed = Some(e),
                    }
                }
            }
            Err(detail) => {
                if self.divergence.is_none() && self.failed.is_none() {
                    let seq = r.stored.seq;
                    match r.stored.read(self.store, self.execution, seq) {
                        Ok(stored) => {
                            self.divergence = Some(Divergence {
                                seq: seq.get(),
                                input_seq: seq.get(),
                                field: "refused".into(),
                                detail,
                                stored: Some(EntryView::of(&stored)),
                                replayed: None,
                            });
                        }
                        Err(e) => self.failed = Some(e),
                    }
                }
            }
        }
        for (id, state_matches, head_hash) in r.at_snapshots {
            let matches = state_matches && head_hash == self.head.hash.to_hex();
            self.snapshots.push(SnapshotCheck { id, matches });
        }
    }
}

/// Replays an execution's stored inputs through `machine` (its pinned version) and compares
/// the result with the stored chain. Reads only.
pub fn replay(
    store: &Store,
    machine: &Machine,
    execution: ExecutionId,
    opts: &ReplayOptions,
    stop: Stop<'_>,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let stored_head = store.head(execution)?.ok_or(ReplayError::NoLedger(execution))?;
    let head_seq = stored_head.chain.seq.get();
    let up_to = opts.up_to.unwrap_or(head_seq);
    if up_to > head_seq {
        return Err(ReplayError::Invalid(format!("upToSeq {up_to} is beyond the ledger's head {head_seq}")));
    }
    let mut divergence = None;
    let (start, live, from_seq) = match opts.from_snapshot {
        None => (ChainHead::genesis(execution), None, 0),
        Some(id) => {
            let snap = snapshots::get(store, execution, id)?.ok_or(ReplayError::SnapshotNotFound(id))?;
            if id > up_to {
                return Err(ReplayError::Invalid(format!("snapshot {id} is after upToSeq {up_to}")));
            }
            let head = snap.head(execution)?;
            if let Some(stored) = store.entry(execution, head.seq)?
                && stored.hash() != head.hash
            {
                divergence = Some(Divergence {
                    seq: id,
                    input_seq: id,
                    field: "snapshot".into(),
                    detail: format!(
                        "snapshot {id} records head hash {}, the stored entry has {}",
                        head.hash,
                        stored.hash()
                    ),
                    stored: Some(EntryView::of(&stored)),
                    replayed: None,
                });
            }
            (head, Some(snap.state), id)
        }
    };
    let mut fold = Fold::new(machine, start.seq, live);
    let mut checks = Checks::new(store, execution, from_seq, up_to, SNAPSHOT_PAGE);
    let mut progress = Progress { seq: from_seq, target_seq: up_to, ..Progress::default() };
    let mut entries = 0u64;
    let mut stored_hash_at_head = start.hash;
    // Three threads: one reads and groups the stored entries, this one folds them through
    // the machine, and a third links, hashes and compares what the fold drafts.
    let sealed = std::thread::scope(|scope| -> Result<Sealer<'_>, ReplayError> {
        let (groups_tx, groups_rx) = std::sync::mpsc::sync_channel::<Vec<Result<Input, StoreError>>>(4);
        let reader = std::thread::Builder::new().name("pled-replay-read".into());
        reader
            .spawn_scoped(scope, move || {
                let mut size = FIRST_BATCH;
                let mut batch = Vec::with_capacity(size);
                let inputs = Inputs::new(store, execution, Seq::new(from_seq + 1), up_to);
                for group in inputs {
                    let failed = group.is_err();
                    batch.push(group);
                    if batch.len() == size || failed {
                        size = (size * 2).min(PIPELINE_BATCH);
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(size));
                        if groups_tx.send(full).is_err() || failed {
                            return;
                        }
                    }
                }
                let _ = groups_tx.send(batch);
            })
            .map_err(thread_error)?;
        let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Vec<Replayed>>(4);
        let sealer = std::thread::Builder::new()
            .name("pled-replay-seal".into())
            .spawn_scoped(scope, move || {
                let mut sealer =
                    Sealer { store, execution, head: start, divergence, failed: None, snapshots: Vec::new() };
                for batch in work_rx {
                    batch.into_iter().for_each(|r| sealer.take(r));
                }
                sealer
            })
            .map_err(thread_error)?;
        let mut out = Vec::with_capacity(SEAL_BATCH);
        'read: for batch in groups_rx {
            for input in batch {
                let mut input = input?;
                let (entries_of, refused) = match fold.step(&mut input) {
                    Ok(stepped) => (Ok(stepped.entries), false),
                    Err(e) => {
                        let kind = input.stored.kind();
                        (Err(format!("replay cannot apply the stored {kind}: {e}")), true)
                    }
                };
                entries += entries_of.as_ref().map_or(0, |e| e.len() as u64);
                progress.inputs += 1;
                let stored = input.stored;
                let last;
                (last, stored_hash_at_head) = stored.last();
                progress.seq = last.get();
                progress.events = fold.events;
                let mut at_snapshots = Vec::new();
                let seq = fold.head.seq().get();
                while let Some(s) = checks.next_at_or_before(seq)? {
                    let state_matches = s.seq == seq && fold.live.as_ref() == Some(&s.state);
                    at_snapshots.push((s.seq, state_matches, s.head_hash));
                }
                out.push(Replayed { stored, entries: entries_of, at_snapshots });
                if refused {
                    break 'read;
                }
                if out.len() == SEAL_BATCH {
                    let full = std::mem::replace(&mut out, Vec::with_capacity(SEAL_BATCH));
                    if work_tx.send(full).is_err() {
                        break 'read;
                    }
                }
                if progress.inputs.is_multiple_of(256) {
                    stop.check(&progress)?;
                }
                if opts.progress_every > 0 && progress.inputs.is_multiple_of(opts.progress_every) {
                    on_progress(&progress);
                }
            }
        }
        let _ = work_tx.send(out);
        drop(work_tx);
        Ok(sealer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })?;
    let Sealer { head: sealed_head, mut divergence, failed, snapshots: snapshot_checks, .. } = sealed;
    if let Some(e) = failed {
        return Err(e.into());
    }
    let live = fold.live.ok_or_else(|| ReplayError::Invalid("nothing to replay: no execution.created".into()))?;
    let reached = fold.head.seq().get();
    let state_matches_head = if reached == head_seq && divergence.is_none() {
        let stored = LiveState::from_bytes(&stored_head.state)?;
        let matches = stored == live;
        if !matches {
            divergence = Some(Divergence {
                seq: reached,
                input_seq: reached,
                field: "state".into(),
                detail: "every entry is identical, but the replayed state is not the stored head state".into(),
                stored: None,
                replayed: None,
            });
        }
        Some(matches)
    } else {
        None
    };
    if opts.progress_every > 0 {
        on_progress(&progress);
    }
    stop.show(&progress);
    let identical = divergence.is_none() && snapshot_checks.iter().all(|c| c.matches);
    Ok(ReplayReport {
        execution_id: execution,
        from_snapshot_id: opts.from_snapshot,
        from_seq,
        up_to_seq: up_to,
        head_seq: reached,
        head_hash: sealed_head.hash.to_hex(),
        stored_head_hash: stored_hash_at_head.to_hex(),
        identical,
        divergence,
        state: live,
        state_matches_head,
        snapshots: snapshot_checks,
        inputs: progress.inputs,
        events: progress.events,
        entries,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// A message as the comparison shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Data.
    #[schema(value_type = Object)]
    pub data: Value,
    /// The rule (`null`: passed through).
    pub rule_id: Option<String>,
}

/// One side of one input in a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    /// Messages derived.
    pub messages: Vec<MessageView>,
    /// Transitions that fired.
    #[schema(value_type = Vec<Object>)]
    pub transitions: Vec<TransitionRecord>,
    /// Entry kinds written, in order.
    pub kinds: Vec<String>,
    /// State id after.
    pub state: String,
    /// Variables after.
    #[schema(value_type = Object)]
    pub vars: BTreeMap<String, Value>,
    /// Balances after.
    #[schema(value_type = Object)]
    pub balances: BTreeMap<String, BTreeMap<String, String>>,
    /// Status after.
    pub status: String,
    /// Why this side could not apply the input (it is skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How the two versions differ on one input.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InputDiff {
    /// Seq of the stored input entry.
    pub input_seq: u64,
    /// Its kind.
    pub kind: String,
    /// The event's seq and type, for events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<u64>,
    /// The event's type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Whether the messages differ.
    pub messages_differ: bool,
    /// Whether the transitions differ.
    pub transitions_differ: bool,
    /// Whether the state after differs (state id, variables, balances, status).
    pub state_differs: bool,
    /// The pinned version.
    pub base: Side,
    /// The other version.
    pub candidate: Side,
}

/// A comparison of two versions on an execution's stored inputs.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompareReport {
    /// The execution.
    #[schema(value_type = String)]
    pub execution_id: ExecutionId,
    /// Its pinned version.
    pub base_version: u32,
    /// The version compared.
    pub version: u32,
    /// Inputs run through both.
    pub inputs: u64,
    /// Events among them.
    pub events: u64,
    /// Whether both versions behave the same on every input.
    pub identical: bool,
    /// The first input after which the two states differ.
    pub first_divergence: Option<InputDiff>,
    /// Every input where messages, transitions or the state differ (at most 100).
    pub differences: Vec<InputDiff>,
    /// How many inputs differ in all.
    pub differences_total: u64,
    /// Final state of the pinned version.
    #[schema(value_type = Object)]
    pub base_final: LiveState,
    /// Final state of the other version.
    #[schema(value_type = Object)]
    pub candidate_final: LiveState,
}

/// How many differing inputs a comparison lists.
pub const MAX_DIFFERENCES: usize = 100;

fn side(fold: &Fold<'_>, stepped: Result<Stepped<Unsealed>, StepError>) -> Side {
    let (stepped, error) = match stepped {
        Ok(s) => (s, None),
        Err(e) => (Stepped::default(), Some(e.to_string())),
    };
    let (state, vars, balances, status) = match &fold.live {
        Some(l) => (l.exec.state.clone(), l.exec.vars.clone(), l.exec.balances.clone(), l.status.as_str().to_owned()),
        None => Default::default(),
    };
    Side {
        messages: stepped
            .messages
            .into_iter()
            .map(|m| MessageView { kind: m.r#type, data: m.data, rule_id: m.rule_id })
            .collect(),
        transitions: stepped.transitions,
        kinds: stepped.entries.iter().map(|e| e.kind.as_str().to_owned()).collect(),
        state,
        vars,
        balances,
        status,
        error,
    }
}

/// Runs an execution's stored inputs through its pinned version (`base`) and another
/// version (`candidate`) side by side, and lists where they differ. Reads only; AI outputs
/// come from the recorded messages, then the org's cache; a model is never called.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    store: &Store,
    org: &OrgId,
    execution: ExecutionId,
    base: (&Machine, u32),
    candidate: (&Machine, u32),
    up_to: Option<u64>,
    stop: Stop<'_>,
) -> Result<CompareReport, ReplayError> {
    let head_seq = store.chain_head(execution)?.seq.get();
    let up_to = up_to.unwrap_or(head_seq).min(head_seq);
    let mut a = Fold::new(base.0, Seq::ZERO, None);
    let mut b = Fold::new(candidate.0, Seq::ZERO, None);
    b.ai_cache = Some((store, org));
    let mut differences = Vec::new();
    let (mut total, mut first_divergence) = (0u64, None);
    let mut progress = Progress { target_seq: up_to, ..Progress::default() };
    let inputs = Inputs::new(store, execution, Seq::FIRST, up_to);
    for input in inputs {
        let mut input = input?;
        let ra = a.step(&mut input);
        let rb = b.step(&mut input);
        let stored = &input.stored;
        if ra.is_err() && a.live.is_none() {
            return Err(ReplayError::Invalid(format!("the pinned version cannot start the execution: {:?}", ra.err())));
        }
        let (sa, sb) = (side(&a, ra), side(&b, rb));
        progress.inputs += 1;
        progress.seq = stored.seq.get();
        progress.events = a.events;
        let messages_differ = sa.messages != sb.messages;
        let transitions_differ = sa.transitions != sb.transitions;
        let state_differs = (&sa.state, &sa.vars, &sa.balances, &sa.status)
            != (&sb.state, &sb.vars, &sb.balances, &sb.status)
            || sb.error.is_some();
        let differs = messages_differ || transitions_differ || state_differs;
        total += u64::from(differs);
        // Only a difference the report shows is written out (an event's entry read again).
        let first = state_differs && first_divergence.is_none();
        let listed = differs && differences.len() < MAX_DIFFERENCES;
        if first || listed {
            let body = match &stored.entry {
                None => stored.read(store, execution, stored.seq)?.entry().body.to_value().ok(),
                Some(_) => None,
            };
            let diff = InputDiff {
                input_seq: stored.seq.get(),
                kind: stored.kind().to_owned(),
                event_seq: body.as_ref().and_then(|b| b["eventSeq"].as_u64()),
                event_type: body.as_ref().and_then(|b| b["type"].as_str().map(str::to_owned)),
                messages_differ,
                transitions_differ,
                state_differs,
                base: sa,
                candidate: sb,
            };
            if first {
                first_divergence = Some(diff.clone());
            }
            if listed {
                differences.push(diff);
            }
        }
        if progress.inputs.is_multiple_of(256) {
            stop.check(&progress)?;
        }
    }
    stop.show(&progress);
    let none = || ReplayError::Invalid("nothing to compare: no execution.created".into());
    let base_final = a.live.ok_or_else(none)?;
    let candidate_final = b.live.ok_or_else(none)?;
    Ok(CompareReport {
        execution_id: execution,
        base_version: base.1,
        version: candidate.1,
        inputs: progress.inputs,
        events: progress.events,
        identical: total == 0,
        first_divergence,
        differences,
        differences_total: total,
        base_final,
        candidate_final,
    })
}

#[cfg(test)]
mod tests {
    use pled_core::{Body, Entry, Kind, RecordedAt};
    use pled_store::{Append, StoreOptions, WriteSet};

    use super::*;
    use crate::repo::executions::Status;

    fn machine() -> Machine {
        machine_with(|_| {})
    }

    /// [`machine`]'s template changed by `change` first.
    fn machine_with(change: impl FnOnce(&mut Value)) -> Machine {
        let mut t = json!({
            "name": "timers",
            "variables": [{"name": "n", "type": "int", "default": 0}],
            "states": [{"id": "wait", "initial": true}, {"id": "late", "onEnter": ["ping"]}, {"id": "done", "final": true}],
            "transitions": [
                {"id": "expire", "from": "wait", "to": "late", "after": "1h", "assign": {"n": "vars.n + 1"}},
                {"id": "bump", "from": "wait", "to": "wait", "on": "bump", "assign": {"n": "vars.n + msg.data.by"}},
                {"id": "close", "from": "late", "to": "done", "on": "close"}
            ],
            "actions": [{"id": "ping", "type": "webhook", "input": {"n": "=vars.n"}}]
        });
        change(&mut t);
        pled_engine::compile(&pled_engine::Template::from_value(t).unwrap()).machine.unwrap()
    }

    fn at(secs: i64) -> RecordedAt {
        RecordedAt::from_unix_micros(1_767_225_600_000_000 + secs * 1_000_000).unwrap()
    }

    fn event(m: &Machine, live: &mut LiveState, head: &mut ChainHead, kind: &str, data: Value, secs: i64) -> Stepped {
        let e = Event {
            event_seq: live.exec.event_count + 1,
            r#type: kind.into(),
            payload: data,
            source: "test".into(),
            occurred_at: None,
            received_at: at(secs).to_string(),
        };
        apply::event(m, live, head, &e, &AiOutputs::new()).unwrap()
    }

    /// Builds a ledger the way the lane would, with a timer firing in the middle (the lane
    /// does not fire timers yet; replay must already handle `timer.fired`).
    fn ledger(m: &Machine, id: ExecutionId) -> (Vec<SealedEntry>, ChainHead, LiveState) {
        let mut head = ChainHead::genesis(id);
        let body = Body::from_value(&json!({"org": "acme", "variables": {"n": 2}})).unwrap();
        let created = apply::seal_one(&mut head, Kind::new(kinds::EXECUTION_CREATED).unwrap(), &at(0), body);
        let start = m.initial_state(Some(&json!({"n": 2})), at(0).as_str()).unwrap();
        let mut entries = vec![created];
        entries.extend(apply::seal(&mut head, start.drafts, &at(0)));
        let mut live = LiveState::started(start.state);
        entries.extend(event(m, &mut live, &mut head, "bump", json!({"by": 3}), 10).entries);
        let due = live.exec.timers[0].due_at.clone();
        let fired = apply::timer(m, &mut live, &mut head, "expire", &due).unwrap();
        entries.extend(fired.entries);
        entries.extend(event(m, &mut live, &mut head, "close", json!({}), 7200).entries);
        (entries, head, live)
    }

    fn store_with(entries: Vec<SealedEntry>, live: &LiveState) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let append = Append::new(entries).unwrap().with_state(live.to_bytes());
        store.write_blocking(WriteSet::new().append(append)).unwrap();
        (dir, store)
    }

    /// Changes the body of the first stored `kind` entry but keeps its claimed hash (and so
    /// the link); returns its seq.
    fn change_body(entries: &mut [SealedEntry], kind: &str, change: impl FnOnce(&mut Value)) -> u64 {
        let i = entries.iter().position(|e| e.entry().kind.as_str() == kind).unwrap();
        let mut changed: Entry = entries[i].entry().clone();
        let mut body = changed.body.to_value().unwrap();
        change(&mut body);
        changed.body = Body::from_value(&body).unwrap();
        entries[i] = SealedEntry::from_stored(changed, entries[i].hash());
        entries[i].seq().get()
    }

    fn run(store: &Store, m: &Machine, id: ExecutionId) -> ReplayReport {
        replay(store, m, id, &ReplayOptions::default(), Stop::default(), &mut |_| {}).unwrap()
    }

    #[test]
    fn timer_firings_replay_to_the_same_chain() {
        let (m, id) = (machine(), ExecutionId::new_v7());
        let (entries, head, live) = ledger(&m, id);
        assert!(entries.iter().any(|e| e.entry().kind.as_str() == "timer.fired"));
        assert_eq!(live.status, Status::Completed);
        let (_dir, store) = store_with(entries, &live);
        let r = run(&store, &m, id);
        assert!(r.identical, "{:?}", r.divergence);
        assert_eq!(r.head_hash, head.hash.to_hex());
        assert_eq!((r.inputs, r.events), (4, 2));
        assert_eq!(r.state, live);
        assert_eq!(r.state_matches_head, Some(true));
    }

    #[test]
    fn a_changed_byte_in_a_stored_entry_is_named() {
        let (m, id) = (machine(), ExecutionId::new_v7());
        let (mut entries, _, live) = ledger(&m, id);
        // Change the payload of the `bump` event.
        let seq = change_body(&mut entries, "event.received", |b| b["payload"]["by"] = json!(4));
        let (_dir, store) = store_with(entries, &live);
        let r = run(&store, &m, id);
        assert!(!r.identical);
        let d = r.divergence.unwrap();
        // Replay applies the stored (changed) input: its own entry is sealed from the changed
        // body, so the first difference is that input's hash against the claimed one.
        assert_eq!((d.seq, d.field.as_str()), (seq, "hash"), "{d:?}");
    }

    #[test]
    fn a_difference_in_an_effect_is_shown_with_the_stored_entry_read_again() {
        let (m, id) = (machine(), ExecutionId::new_v7());
        let (entries, _, live) = ledger(&m, id);
        let (_dir, store) = store_with(entries.clone(), &live);
        let view = |seq: u64| serde_json::to_value(EntryView::of(&entries[seq as usize - 1])).unwrap();
        let kind_at = |seq: u64| entries[seq as usize - 1].entry().kind.as_str().to_owned();

        // `bump` adds twice as much: its event entry is the same, an effect of it is not.
        let doubled = machine_with(|t| t["transitions"][1]["assign"]["n"] = json!("vars.n + 2 * msg.data.by"));
        let d = run(&store, &doubled, id).divergence.unwrap();
        assert_eq!(kind_at(d.input_seq), "event.received", "{d:?}");
        assert!(d.seq > d.input_seq, "{d:?}");
        assert_eq!(d.field, "body", "{d:?}");
        assert_eq!(serde_json::to_value(d.stored.unwrap()).unwrap(), view(d.seq));

        // The late state enters without its action: the timer's input ends early.
        let quiet = machine_with(|t| t["states"][1].as_object_mut().unwrap().retain(|k, _| k != "onEnter"));
        let d = run(&store, &quiet, id).divergence.unwrap();
        assert_eq!(kind_at(d.input_seq), "timer.fired", "{d:?}");
        assert_eq!(d.field, "missing", "{d:?}");
        assert!(d.replayed.is_none());
        assert_eq!(serde_json::to_value(d.stored.unwrap()).unwrap(), view(d.seq));
    }

    #[test]
    fn a_stored_input_the_machine_refuses_is_named_and_ends_the_replay() {
        let (m, id) = (machine(), ExecutionId::new_v7());
        let (mut entries, _, live) = ledger(&m, id);
        let seq = change_body(&mut entries, "timer.fired", |b| b["transitionId"] = json!("nope"));
        let (_dir, store) = store_with(entries, &live);
        let r = run(&store, &m, id);
        let d = r.divergence.unwrap();
        assert_eq!((d.seq, d.field.as_str()), (seq, "refused"), "{d:?}");
        assert_eq!(r.head_seq, seq - 1, "the replay stops before the refused input");
        assert!(!r.identical);
    }

    #[test]
    fn a_stored_event_that_does_not_read_is_refused_and_shown_as_stored() {
        let (m, id) = (machine(), ExecutionId::new_v7());
        let (mut entries, _, live) = ledger(&m, id);
        let seq = change_body(&mut entries, "event.received", |b| *b = json!({"type": "bump", "payload": {"by": 3}}));
        let view = serde_json::to_value(EntryView::of(&entries[seq as usize - 1])).unwrap();
        let (_dir, store) = store_with(entries, &live);
        let r = run(&store, &m, id);
        let d = r.divergence.unwrap();
        assert_eq!((d.seq, d.field.as_str()), (seq, "refused"), "{d:?}");
        assert!(d.detail.contains(&format!("event.received at seq {seq}")), "{d:?}");
        assert_eq!(serde_json::to_value(d.stored.unwrap()).unwrap(), view);
        assert_eq!(r.head_seq, seq - 1);
    }

    #[test]
    fn snapshots_are_read_a_page_at_a_time_as_the_fold_reaches_them() {
        let (m, id) = (machine(), ExecutionId::new_v7());
        let (entries, _, live) = ledger(&m, id);
        let (_dir, store) = store_with(entries, &live);
        let mut ws = WriteSet::new();
        for seq in [10, 20, 30, 40, 50] {
            let head = ChainHead { seq: Seq::new(seq), ..ChainHead::genesis(id) };
            ws = snapshots::put(ws, id, &SnapshotRecord::new(&head, &live, snapshots::Trigger::Periodic)).unwrap();
        }
        store.write_blocking(ws).unwrap();
        for page_size in [1, 2, 3, 16] {
            let mut checks = Checks::new(&store, id, 10, 45, page_size);
            let mut next = |seq| checks.next_at_or_before(seq).unwrap().map(|s| s.seq);
            let seen = [next(19), next(20), next(20), next(100), next(100), next(100), next(100)];
            assert_eq!(seen, [None, Some(20), None, Some(30), Some(40), None, None], "pages of {page_size}");
        }
    }

    /// Hundreds of inputs cross the batches replay's threads pass along; a snapshot whose
    /// state was tampered with is caught, one with the true state is not.
    #[test]
    fn long_replays_check_every_snapshot_on_the_way() {
        let (m, id) = (machine(), ExecutionId::new_v7());
        let mut head = ChainHead::genesis(id);
        let body = Body::from_value(&json!({"org": "acme", "variables": {"n": 0}})).unwrap();
        let mut entries = vec![apply::seal_one(&mut head, Kind::new(kinds::EXECUTION_CREATED).unwrap(), &at(0), body)];
        let start = m.initial_state(Some(&json!({"n": 0})), at(0).as_str()).unwrap();
        entries.extend(apply::seal(&mut head, start.drafts, &at(0)));
        let mut live = LiveState::started(start.state);
        let mut ws = WriteSet::new();
        let (mut good, mut bad) = (0, 0);
        for i in 1..=1000 {
            entries.extend(event(&m, &mut live, &mut head, "bump", json!({"by": 1}), i).entries);
            if i == 300 {
                good = head.seq.get();
                ws = snapshots::put(ws, id, &SnapshotRecord::new(&head, &live, snapshots::Trigger::OnDemand)).unwrap();
            }
            if i == 700 {
                bad = head.seq.get();
                let mut wrong = live.clone();
                wrong.exec.vars.insert("n".into(), json!(1));
                ws = snapshots::put(ws, id, &SnapshotRecord::new(&head, &wrong, snapshots::Trigger::OnDemand)).unwrap();
            }
        }
        let append = Append::new(entries).unwrap().with_state(live.to_bytes());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.write_blocking(ws.append(append)).unwrap();
        let r = run(&store, &m, id);
        assert_eq!(r.head_hash, head.hash.to_hex());
        assert_eq!((r.events, r.divergence.is_none(), r.state_matches_head), (1000, true, Some(true)));
        let checks: Vec<(u64, bool)> = r.snapshots.iter().map(|c| (c.id, c.matches)).collect();
        assert_eq!(checks, vec![(good, true), (bad, false)]);
        assert!(!r.identical, "a snapshot that does not match makes the replay not identical");
        let from_good = ReplayOptions { from_snapshot: Some(good), ..ReplayOptions::default() };
        let r = replay(&store, &m, id, &from_good, Stop::default(), &mut |_| {}).unwrap();
        assert_eq!((r.head_hash.clone(), r.events), (head.hash.to_hex(), 700));
        let checked = |r: &ReplayReport| r.snapshots.iter().map(|c| (c.id, c.matches)).collect::<Vec<_>>();
        assert_eq!(checked(&r), [(bad, false)], "only snapshots after the start are checked");
        let before_bad = ReplayOptions { up_to: Some(bad - 1), ..ReplayOptions::default() };
        let r = replay(&store, &m, id, &before_bad, Stop::default(), &mut |_| {}).unwrap();
        assert_eq!(checked(&r), [(good, true)], "and none after upToSeq");
        assert!(r.identical);
    }
}
