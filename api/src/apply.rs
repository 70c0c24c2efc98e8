//! How one input of an execution becomes sealed ledger entries and a new live state.
//!
//! The execution's lane (live) and replay (dry) both go through these functions, so they seal
//! the same kinds with the same bodies at the same times, and an untouched execution replays
//! to the identical head hash. Nothing here does I/O: callers read what they need (AI outputs,
//! queued events) and write what comes out.
//!
//! Entries go onto a [`Chain`]. The lane's chain is its [`ChainHead`], which links and
//! hashes each entry as it is made. Replay and comparison draft onto [`Drafting`] instead,
//! which only numbers the entries; replay then links and hashes them on another thread with
//! the same [`Chain::push`] of a `ChainHead`, so the bytes and hashes are the lane's.
//!
//! Inputs and the entries they write:
//!
//! | input | entries | sealed at |
//! | --- | --- | --- |
//! | an event | the engine's `event.received` … | the event's `receivedAt` |
//! | an event while paused | `event.queued` | when it was received |
//! | a timer firing | the engine's `timer.fired` / `timer.ignored` … | `firedAt` |
//! | an operator control | `admin.*`, then the engine's entries for a forced transition or action | when it was applied |

use pled_core::{Body, ChainHead, Kind, RecordedAt, SealedEntry, Seq};
use pled_engine::{
    ActionJob, AiOutputs, EngineError, Event, ExecState, ForceTarget, Machine, Message, Outcome, TransitionRecord,
};
use serde_json::{Value, json};

use crate::repo::executions::{LiveState, PauseQueue, Status};

/// The kinds of the entries the service writes itself (the engine's are in
/// `pled_engine::kinds`).
pub mod kinds {
    /// First entry of every execution (org, template pin, initial variables).
    pub const EXECUTION_CREATED: &str = "execution.created";
    /// An event accepted while the execution is paused; applied on resume.
    pub const EVENT_QUEUED: &str = "event.queued";
    /// An operator paused the execution.
    pub const ADMIN_PAUSED: &str = "admin.paused";
    /// An operator resumed it; the queued events follow.
    pub const ADMIN_RESUMED: &str = "admin.resumed";
    /// An operator cancelled it.
    pub const ADMIN_CANCELLED: &str = "admin.cancelled";
    /// An operator completed it.
    pub const ADMIN_COMPLETED: &str = "admin.completed";
    /// An operator forced a transition (the engine's `transition.forced` … follow).
    pub const ADMIN_TRANSITION_FORCED: &str = "admin.transition_forced";
    /// An operator forced an action (the engine's `action.scheduled` follows).
    pub const ADMIN_ACTION_FORCED: &str = "admin.action_forced";
    /// A mint against a sink entry was confirmed on-chain (the transaction and block).
    pub const TOKEN_MINTED_ONCHAIN: &str = "token.minted_onchain";

    /// Every kind above.
    pub const ALL: &[&str] = &[
        EXECUTION_CREATED,
        EVENT_QUEUED,
        ADMIN_PAUSED,
        ADMIN_RESUMED,
        ADMIN_CANCELLED,
        ADMIN_COMPLETED,
        ADMIN_TRANSITION_FORCED,
        ADMIN_ACTION_FORCED,
        TOKEN_MINTED_ONCHAIN,
    ];
}

/// Whether an entry of this kind is an effect drafted by the engine after the entry that
/// began its input (so not itself the start of an input).
pub fn is_effect(kind: &str) -> bool {
    pled_engine::kinds::ALL.contains(&kind) && !pled_engine::kinds::INPUTS.contains(&kind)
}

/// Why an input cannot apply.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The execution's status does not allow it (409).
    #[error("{0}")]
    Conflict(String),
    /// The engine refused a forced transition or action (422), nothing applied.
    #[error("{reason}")]
    Refused {
        /// Stable code (see [`EngineError::ForceRefused`]).
        code: String,
        /// Why.
        reason: String,
    },
    /// The engine refused the input (bad event, corrupt state, …).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A stored input could not be read back (replay only).
    #[error("{0}")]
    Corrupt(String),
}

/// Where an input's entries go, in seq order.
pub trait Chain {
    /// What an entry becomes on this chain.
    type Entry;

    /// Appends an entry recorded at `at`.
    fn push(&mut self, kind: Kind, at: RecordedAt, body: Body) -> Self::Entry;

    /// The last seq (0 for an empty chain).
    fn seq(&self) -> Seq;
}

/// The live chain: each entry is linked to the previous one and hashed.
impl Chain for ChainHead {
    type Entry = SealedEntry;

    fn push(&mut self, kind: Kind, at: RecordedAt, body: Body) -> SealedEntry {
        let e = self.next_entry(kind, at, body);
        self.advance(&e);
        e
    }

    fn seq(&self) -> Seq {
        self.seq
    }
}

/// An entry as drafted onto [`Drafting`]: everything but the link and the hash, which
/// [`Chain::push`] onto a [`ChainHead`] adds.
#[derive(Debug, Clone)]
pub struct Unsealed {
    /// Its seq.
    pub seq: Seq,
    /// Its kind.
    pub kind: Kind,
    /// When it is recorded.
    pub recorded_at: RecordedAt,
    /// Its body.
    pub body: Body,
}

/// A chain that numbers entries without linking or hashing them (replay seals them
/// elsewhere; a comparison needs no hashes).
#[derive(Debug, Clone, Copy)]
pub struct Drafting {
    /// The last seq.
    pub seq: Seq,
}

impl Chain for Drafting {
    type Entry = Unsealed;

    fn push(&mut self, kind: Kind, at: RecordedAt, body: Body) -> Unsealed {
        self.seq = self.seq.next();
        Unsealed { seq: self.seq, kind, recorded_at: at, body }
    }

    fn seq(&self) -> Seq {
        self.seq
    }
}

/// What one input produced.
#[derive(Debug)]
pub struct Stepped<E = SealedEntry> {
    /// The entries, in seq order.
    pub entries: Vec<E>,
    /// Index in `entries` of the first engine draft (action jobs' `draft_index` counts from
    /// here): 1 after an `admin.*` entry, 0 otherwise.
    pub drafts_from: usize,
    /// Messages derived (events).
    pub messages: Vec<Message>,
    /// Action jobs to enqueue (the lane does; replay never does).
    pub actions: Vec<ActionJob>,
    /// Transitions that fired (or were forced).
    pub transitions: Vec<TransitionRecord>,
}

impl<E> Default for Stepped<E> {
    fn default() -> Self {
        Self { entries: Vec::new(), drafts_from: 0, messages: Vec::new(), actions: Vec::new(), transitions: Vec::new() }
    }
}

/// Puts engine drafts onto a chain, all recorded at `at`.
pub fn seal<C: Chain>(head: &mut C, drafts: Vec<pled_engine::Draft>, at: &RecordedAt) -> Vec<C::Entry> {
    drafts.into_iter().map(|d| head.push(d.kind, at.clone(), d.body)).collect()
}

/// Puts one entry onto a chain.
pub fn seal_one<C: Chain>(head: &mut C, kind: Kind, at: &RecordedAt, body: Body) -> C::Entry {
    head.push(kind, at.clone(), body)
}

fn kind(k: &str) -> Kind {
    #[allow(clippy::unwrap_used)] // INVARIANT: the kinds of this module are valid kind literals.
    Kind::new(k).unwrap()
}

/// Takes the outcome of an engine step: its state becomes the live state, its drafts are
/// sealed onto `head` at `at` after `out.entries`.
fn take<C: Chain>(out: &mut Stepped<C::Entry>, live: &mut LiveState, head: &mut C, outcome: Outcome, at: &RecordedAt) {
    let Outcome { state, drafts, messages, actions, transitions, .. } = outcome;
    out.entries.extend(seal(head, drafts, at));
    out.messages = messages;
    out.actions = actions;
    out.transitions = transitions;
    live.exec = state;
}

/// Applies an event: the engine's step, sealed at the event's `receivedAt`.
pub fn event<C: Chain>(
    machine: &Machine,
    live: &mut LiveState,
    head: &mut C,
    event: &Event,
    ai: &AiOutputs,
) -> Result<Stepped<C::Entry>, StepError> {
    let at = RecordedAt::parse(&event.received_at).map_err(EngineError::from)?;
    let outcome = machine.process_event(&live.exec, event, ai)?;
    let mut out = Stepped::default();
    take(&mut out, live, head, outcome, &at);
    live.status = if live.exec.completed { Status::Completed } else { Status::Running };
    Ok(out)
}

/// Applies a timer firing, sealed at `fired_at`.
pub fn timer<C: Chain>(
    machine: &Machine,
    live: &mut LiveState,
    head: &mut C,
    transition_id: &str,
    fired_at: &str,
) -> Result<Stepped<C::Entry>, StepError> {
    let at = RecordedAt::parse(fired_at).map_err(EngineError::from)?;
    let outcome = machine.fire_timer(&live.exec, transition_id, fired_at)?;
    let mut out = Stepped::default();
    take(&mut out, live, head, outcome, &at);
    if live.exec.completed {
        live.status = Status::Completed;
        live.queue = None;
    }
    Ok(out)
}

/// An event accepted while paused, as its `event.queued` entry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    /// Event type.
    pub kind: String,
    /// Payload (a JSON object).
    pub payload: Value,
    /// Sender.
    pub source: String,
    /// When it happened, as the sender says.
    pub occurred_at: Option<String>,
    /// When PLED accepted it (also the entry's `recorded_at`).
    pub received_at: RecordedAt,
}

impl QueuedEvent {
    fn body(&self, position: u64) -> Value {
        let mut b = json!({
            "queuePosition": position,
            "type": self.kind,
            "payload": self.payload,
            "source": self.source,
            "receivedAt": self.received_at.as_str(),
        });
        if let Some(at) = &self.occurred_at {
            b["occurredAt"] = json!(at);
        }
        b
    }

    /// Reads an `event.queued` body back.
    pub fn parse(body: &Value) -> Result<(u64, Self), StepError> {
        let bad = |what: &str| StepError::Corrupt(format!("event.queued body: {what}"));
        let text = |name: &str| body.get(name).and_then(Value::as_str).ok_or_else(|| bad(name));
        let position = body.get("queuePosition").and_then(Value::as_u64).ok_or_else(|| bad("queuePosition"))?;
        let ev = QueuedEvent {
            kind: text("type")?.to_owned(),
            payload: body.get("payload").cloned().ok_or_else(|| bad("payload"))?,
            source: text("source")?.to_owned(),
            occurred_at: body.get("occurredAt").and_then(Value::as_str).map(str::to_owned),
            received_at: RecordedAt::parse(text("receivedAt")?).map_err(|_| bad("receivedAt"))?,
        };
        Ok((position, ev))
    }
}

/// Queues an event of a paused execution: one `event.queued` entry, sealed at its receive
/// time. Returns the entry and its position in the queue (from 1).
pub fn queue<C: Chain>(live: &mut LiveState, head: &mut C, ev: &QueuedEvent) -> Result<(C::Entry, u64), StepError> {
    let q = match (&mut live.queue, live.status) {
        (Some(q), Status::Paused) => q,
        _ => return Err(StepError::Conflict("the execution is not paused".into())),
    };
    q.length += 1;
    let position = q.length;
    let body = Body::from_value(&ev.body(position)).map_err(EngineError::from)?;
    Ok((seal_one(head, kind(kinds::EVENT_QUEUED), &ev.received_at, body), position))
}

/// An operator control, as its `admin.*` entry records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// Stop applying events; accept and queue them.
    Pause,
    /// Apply the queued events (their `event.queued` seqs, in order) and go on.
    Resume {
        /// Optional approval data, recorded as given.
        approval: Option<Value>,
        /// Seqs of the `event.queued` entries applied after this entry, in order.
        applied: Vec<u64>,
    },
    /// Stop for good; queued events are dropped.
    Cancel {
        /// Queued events dropped.
        discarded: u64,
    },
    /// Mark completed (without a final state); queued events are dropped.
    Complete {
        /// Queued events dropped.
        discarded: u64,
    },
    /// Force a transition (or a move to a state).
    ForceTransition {
        /// What to force.
        target: ForceTarget,
        /// `msg.data` for the transition's expressions.
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

/// An operator control with who did it and why: the body of its `admin.*` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminAction {
    /// `principal.subject` of the operator.
    pub actor: String,
    /// Why (required, non-empty).
    pub reason: String,
    /// What.
    pub control: Control,
}

impl AdminAction {
    /// The entry kind.
    pub fn kind(&self) -> &'static str {
        match self.control {
            Control::Pause => kinds::ADMIN_PAUSED,
            Control::Resume { .. } => kinds::ADMIN_RESUMED,
            Control::Cancel { .. } => kinds::ADMIN_CANCELLED,
            Control::Complete { .. } => kinds::ADMIN_COMPLETED,
            Control::ForceTransition { .. } => kinds::ADMIN_TRANSITION_FORCED,
            Control::ForceAction { .. } => kinds::ADMIN_ACTION_FORCED,
        }
    }

    /// The audit action name (`execution.paused`, …).
    pub fn audit_action(&self) -> String {
        format!("execution.{}", &self.kind()["admin.".len()..])
    }

    /// The entry body: `actor`, `reason` and the control's details (every member always
    /// present, `null` when absent, so that reading it back and writing it again gives the
    /// same bytes).
    pub fn body(&self) -> Value {
        let mut b = json!({ "actor": self.actor, "reason": self.reason });
        let details = match &self.control {
            Control::Pause => json!({}),
            Control::Resume { approval, applied } => json!({ "approval": approval, "applied": applied }),
            Control::Cancel { discarded } | Control::Complete { discarded } => json!({ "discarded": discarded }),
            Control::ForceTransition { target, data } => {
                let (t, s) = match target {
                    ForceTarget::Transition(t) => (Some(t), None),
                    ForceTarget::State(s) => (None, Some(s)),
                };
                json!({ "transitionId": t, "toState": s, "data": data })
            }
            Control::ForceAction { action_id, input } => json!({ "actionId": action_id, "input": input }),
        };
        if let (Some(b), Value::Object(d)) = (b.as_object_mut(), details) {
            b.extend(d);
        }
        b
    }

    /// Reads an `admin.*` entry back.
    pub fn parse(kind: &str, body: &Value) -> Result<Self, StepError> {
        let bad = |what: &str| StepError::Corrupt(format!("{kind} body: {what}"));
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        let opt = |name: &str| body.get(name).filter(|v| !v.is_null()).cloned();
        let count = |name: &str| body.get(name).and_then(Value::as_u64).ok_or_else(|| bad(name));
        let control = match kind {
            kinds::ADMIN_PAUSED => Control::Pause,
            kinds::ADMIN_RESUMED => Control::Resume {
                approval: opt("approval"),
                applied: body
                    .get("applied")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("applied"))?
                    .iter()
                    .map(|v| v.as_u64().ok_or_else(|| bad("applied")))
                    .collect::<Result<_, _>>()?,
            },
            kinds::ADMIN_CANCELLED => Control::Cancel { discarded: count("discarded")? },
            kinds::ADMIN_COMPLETED => Control::Complete { discarded: count("discarded")? },
            kinds::ADMIN_TRANSITION_FORCED => Control::ForceTransition {
                target: match (text("transitionId"), text("toState")) {
                    (Some(t), None) => ForceTarget::Transition(t),
                    (None, Some(s)) => ForceTarget::State(s),
                    _ => return Err(bad("exactly one of transitionId and toState")),
                },
                data: opt("data").unwrap_or_else(|| json!({})),
            },
            kinds::ADMIN_ACTION_FORCED => Control::ForceAction {
                action_id: text("actionId").ok_or_else(|| bad("actionId"))?,
                input: opt("input"),
            },
            other => return Err(StepError::Corrupt(format!("{other} is not an operator control"))),
        };
        Ok(Self {
            actor: text("actor").ok_or_else(|| bad("actor"))?,
            reason: text("reason").ok_or_else(|| bad("reason"))?,
            control,
        })
    }
}

/// The status an execution settles in when nothing holds it (after resume).
fn settled(exec: &ExecState) -> Status {
    if exec.completed {
        Status::Completed
    } else if exec.event_count > 0 {
        Status::Running
    } else {
        Status::Created
    }
}

/// The job-key prefix of a forced transition or action: `forced.{seq of its admin entry}`.
pub fn forced_key(admin_seq: u64) -> String {
    format!("forced.{admin_seq}")
}

/// Applies an operator control at `at`: its `admin.*` entry, then (for a forced transition
/// or action) the engine's entries, all sealed at `at`. The status must allow it:
/// pause from created/running; resume from paused; cancel, complete and the forced ones
/// from created/running/paused. Resume only records itself: the caller applies the queued
/// events after it (with [`event`], received at `at`).
pub fn control<C: Chain>(
    machine: &Machine,
    live: &mut LiveState,
    head: &mut C,
    action: &AdminAction,
    at: &RecordedAt,
) -> Result<Stepped<C::Entry>, StepError> {
    let status = live.status;
    let what = &action.kind()["admin.".len()..];
    let conflict = |why: &str| StepError::Conflict(format!("cannot apply {what}: the execution is {why}"));
    match (&action.control, status) {
        (_, Status::Completed | Status::Cancelled | Status::Failed) => return Err(conflict(status.as_str())),
        (Control::Pause, Status::Paused) => return Err(conflict("already paused")),
        (Control::Resume { .. }, s) if s != Status::Paused => return Err(conflict("not paused")),
        _ => {}
    }
    let body = Body::from_value(&action.body()).map_err(EngineError::from)?;
    let mut out = Stepped { drafts_from: 1, ..Stepped::default() };
    // Compute the engine's part first: if it refuses, nothing is sealed.
    let admin_seq = head.seq().get() + 1;
    let outcome = match &action.control {
        Control::ForceTransition { target, data } => Some(
            machine.force_transition(&live.exec, target, data, at.as_str(), &forced_key(admin_seq)).map_err(refused)?,
        ),
        Control::ForceAction { action_id, input } => {
            Some(machine.force_action(&live.exec, action_id, input.as_ref(), &forced_key(admin_seq)).map_err(refused)?)
        }
        _ => None,
    };
    out.entries.push(seal_one(head, kind(action.kind()), at, body));
    match &action.control {
        Control::Pause => {
            live.status = Status::Paused;
            live.queue = Some(PauseQueue { since_seq: admin_seq, length: 0 });
        }
        Control::Resume { .. } => {
            live.queue = None;
            live.status = settled(&live.exec);
        }
        Control::Cancel { .. } => {
            live.queue = None;
            live.status = Status::Cancelled;
        }
        Control::Complete { .. } => {
            live.queue = None;
            live.status = Status::Completed;
        }
        Control::ForceTransition { .. } | Control::ForceAction { .. } => {}
    }
    if let Some(outcome) = outcome {
        take(&mut out, live, head, outcome, at);
        if live.exec.completed {
            // A forced move into a final state completes the execution, paused or not.
            live.status = Status::Completed;
            live.queue = None;
        }
    }
    Ok(out)
}

fn refused(e: EngineError) -> StepError {
    match e {
        EngineError::ForceRefused { code, reason } => StepError::Refused { code, reason },
        other => StepError::Engine(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_bodies_read_back_to_the_same_bytes() {
        let cases = [
            Control::Pause,
            Control::Resume { approval: Some(json!({"by": "cfo"})), applied: vec![7, 9] },
            Control::Resume { approval: None, applied: vec![] },
            Control::Cancel { discarded: 2 },
            Control::Complete { discarded: 0 },
            Control::ForceTransition { target: ForceTarget::Transition("t".into()), data: json!({"x": 1}) },
            Control::ForceTransition { target: ForceTarget::State("s".into()), data: json!({}) },
            Control::ForceAction { action_id: "notify".into(), input: Some(json!({"a": [1]})) },
            Control::ForceAction { action_id: "notify".into(), input: None },
        ];
        for control in cases {
            let a = AdminAction { actor: "pat:1".into(), reason: "because".into(), control };
            let body = Body::from_value(&a.body()).unwrap();
            let back = AdminAction::parse(a.kind(), &body.to_value().unwrap()).unwrap();
            assert_eq!(back, a);
            assert_eq!(Body::from_value(&back.body()).unwrap(), body);
        }
    }

    #[test]
    fn every_service_kind_is_a_valid_kind_and_no_engine_kind() {
        for k in kinds::ALL {
            assert!(Kind::new(k).is_ok(), "{k}");
            assert!(!pled_engine::kinds::ALL.contains(k), "{k}");
            assert!(!is_effect(k), "{k}");
        }
        assert!(is_effect("transition.forced") && is_effect("action.scheduled"));
        assert!(!is_effect("event.received") && !is_effect("timer.fired") && !is_effect("note.added"));
    }
}
