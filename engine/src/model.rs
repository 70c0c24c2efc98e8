//! The values the engine consumes and produces: execution state, events, messages, drafts
//! of ledger entries, action jobs, AI requests, and the outcome of one step.

use std::collections::BTreeMap;

use pled_core::{Body, Kind, Member, RecordedAt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::EngineError;

/// The state of one execution between two steps. The service stores it (as JSON) after every
/// step and in snapshots; handing it back unchanged continues the execution exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecState {
    /// The current state id.
    pub state: String,
    /// Variable values (every declared variable is present; `null` when unset).
    pub vars: BTreeMap<String, Value>,
    /// Token balances: token type -> account -> amount as a decimal string (a `u128`).
    pub balances: BTreeMap<String, BTreeMap<String, String>>,
    /// Whether a final state has been entered.
    pub completed: bool,
    /// How many events have been processed.
    pub event_count: u64,
    /// Timers armed for the current state, in template order.
    pub timers: Vec<ArmedTimer>,
}

/// A timer armed for an `after` transition of the current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArmedTimer {
    /// The `after` transition it fires.
    pub transition_id: String,
    /// When it is due: RFC 3339 UTC with microseconds (a [`RecordedAt`]).
    pub due_at: String,
    /// The `eventSeq` of the event whose processing armed it; 0 when armed at start. A timer
    /// re-armed by a timer firing keeps the value of the timer that fired.
    pub armed_at_event: u64,
}

/// An event posted to an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    /// Its position among the execution's events (unique per execution).
    pub event_seq: u64,
    /// Its type, matched against rules' `on`.
    pub r#type: String,
    /// Its payload: a JSON object.
    pub payload: Value,
    /// Who sent it.
    pub source: String,
    /// When it happened, as the sender says (free text, copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// When PLED received it: RFC 3339 UTC with microseconds. Timer due times count from it.
    pub received_at: String,
}

impl Event {
    /// Checks the fields the engine relies on and returns the payload in canonical form
    /// (numbers as JCS writes them, so that evaluating the live event and the event read
    /// back from its ledger body give the same results).
    pub(crate) fn canonical_payload(&self) -> Result<(Value, RecordedAt), EngineError> {
        let received_at = self.validate()?;
        let payload = Body::from_value(&self.payload)?.to_value()?;
        Ok((payload, received_at))
    }

    /// Checks the fields the engine relies on; returns the receive time.
    pub(crate) fn validate(&self) -> Result<RecordedAt, EngineError> {
        if self.r#type.is_empty() {
            return Err(EngineError::InvalidEvent("type is empty".into()));
        }
        if !self.payload.is_object() {
            return Err(EngineError::InvalidEvent("payload must be a JSON object".into()));
        }
        Ok(RecordedAt::parse(&self.received_at)?)
    }

    /// The `event` variable of CEL expressions, as a record borrowing the event: its fields,
    /// with `payload` as given (the canonical payload) and `occurredAt` null when absent.
    pub(crate) fn cel_record<'a>(&'a self, payload: &'a Value) -> [(&'a str, Member<'a>); 6] {
        [
            ("eventSeq", Member::UInt(self.event_seq)),
            ("occurredAt", Member::opt_str(self.occurred_at.as_deref())),
            ("payload", Member::Json(payload)),
            ("receivedAt", Member::Str(&self.received_at)),
            ("source", Member::Str(&self.source)),
            ("type", Member::Str(&self.r#type)),
        ]
    }
}

/// A message derived from an event by a rule (or passed through).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Message {
    /// Its index among the messages of its event, from 0.
    pub index: usize,
    /// Its type, matched against transitions' `on`.
    pub r#type: String,
    /// Its data.
    pub data: Value,
    /// The rule that derived it; `None` for a pass-through.
    pub rule_id: Option<String>,
    /// `false` for messages whose data came from a model.
    pub deterministic: bool,
    /// How an AI rule derived it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai: Option<AiProvenance>,
}

/// The model call behind an AI rule's message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiProvenance {
    /// The model.
    pub model: String,
    /// The prompt, with its `{{input}}` placeholders filled in.
    pub prompt: String,
    /// The evaluated inputs.
    pub inputs: Value,
    /// The cache key of the output ([`AiRequest::input_hash`]).
    pub input_hash: String,
}

/// A model call an event needs before it can be processed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AiRequest {
    /// The AI rule.
    pub rule_id: String,
    /// The model.
    pub model: String,
    /// The prompt, with its `{{input}}` placeholders filled in.
    pub prompt: String,
    /// The evaluated inputs (a JSON object).
    pub inputs: Value,
    /// BLAKE3 (hex) of the RFC 8785 canonical JSON of `{model, prompt, inputs}`: the key under
    /// which the service caches the output and hands it back in [`AiOutputs`].
    pub input_hash: String,
}

/// Model outputs by [`AiRequest::input_hash`].
pub type AiOutputs = BTreeMap<String, Value>;

/// A ledger entry before the store gives it a seq, a time and a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draft {
    /// What it records.
    pub kind: Kind,
    /// Its canonical body.
    pub body: Body,
}

impl Draft {
    pub(crate) fn new(kind: &str, body: &Value) -> Result<Draft, EngineError> {
        Ok(Draft { kind: Kind::new(kind)?, body: Body::from_value(body)? })
    }
}

/// An action to run: the service's action runner picks it up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionJob {
    /// The template action.
    pub action_id: String,
    /// Its type (`webhook`, `emit_event`, …).
    pub action_type: String,
    /// Its input, with `=` expressions evaluated.
    pub input: Value,
    /// The index, in [`Outcome::drafts`], of its `action.scheduled` draft.
    pub draft_index: usize,
    /// A deterministic idempotency key, unique within the execution (the service prefixes the
    /// execution id): `{eventSeq}:{draftIndex}:{actionId}` for an event,
    /// `start:{draftIndex}:{actionId}` at start, and
    /// `timer.{armedAtEvent}.{dueAtMicros}.{transitionId}:{draftIndex}:{actionId}` for a timer.
    pub job_key: String,
}

/// A transition that fired during a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransitionRecord {
    /// The index of the message that triggered it; `None` for a timer.
    pub message_index: Option<usize>,
    /// The transition.
    pub transition_id: String,
    /// The state left.
    pub from: String,
    /// The state entered.
    pub to: String,
}

/// Everything one step (start, event, timer) produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The state after the step.
    pub state: ExecState,
    /// The ledger entries to append, in order.
    pub drafts: Vec<Draft>,
    /// The messages derived from the event.
    pub messages: Vec<Message>,
    /// The action jobs to enqueue (one per `action.scheduled` draft).
    pub actions: Vec<ActionJob>,
    /// Timers armed during the step, in order. Some may have been cancelled again later in
    /// the same step: the timers to schedule are exactly `state.timers`.
    pub timers_armed: Vec<ArmedTimer>,
    /// Transition ids of timers cancelled during the step, in order.
    pub timers_cancelled: Vec<String>,
    /// Transitions that fired, in order.
    pub transitions: Vec<TransitionRecord>,
}
