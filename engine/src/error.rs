//! The engine's one error type.
//!
//! An [`EngineError`] means the *caller* handed the engine something it cannot work with (a
//! template that is not JSON, an event whose payload is not an object, an execution state that
//! does not belong to this machine, a timer fired before it is due). Everything that can go
//! wrong *inside* a template while an event is processed (a failing rule, a guard error, an
//! overdraw) is not an error: it is recorded on the ledger (`rule.failed`,
//! `message.unmatched`) and processing goes on.

use pled_core::{BodyError, EntryError, TimeError};

/// Why the engine refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The template is not valid JSON for the template model (unknown field, wrong type, …).
    #[error("template is not valid: {0}")]
    TemplateJson(String),
    /// A value could not become a ledger body (e.g. an integer beyond ±(2^53-1)).
    #[error(transparent)]
    Body(#[from] BodyError),
    /// An entry kind was refused (never happens for the kinds the engine writes).
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// A time was not canonical RFC 3339 UTC with microseconds, or out of range.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A duration (`30s`, `1h30m`, …) could not be parsed.
    #[error("duration {text:?}: {reason}")]
    Duration {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The event handed to the engine is malformed.
    #[error("event is invalid: {0}")]
    InvalidEvent(String),
    /// Initial variable values are malformed (not an object, unknown variable, wrong type).
    #[error("initial inputs are invalid: {0}")]
    InvalidInputs(String),
    /// The execution state does not fit this machine (unknown state id, bad balance text, …).
    #[error("execution state does not fit this machine: {0}")]
    CorruptState(String),
    /// No rule has this id.
    #[error("unknown rule {0:?}")]
    UnknownRule(String),
    /// No transition has this id, or it is not a timer (`after`) transition.
    #[error("unknown timer transition {0:?}")]
    UnknownTransition(String),
    /// A timer was fired before its due time.
    #[error("timer {transition_id:?} is due at {due_at}, it cannot fire at {now}")]
    TimerNotDue {
        /// The timer's transition.
        transition_id: String,
        /// When it is due.
        due_at: String,
        /// When the caller tried to fire it.
        now: String,
    },
    /// A rule failed while being tested (`Machine::test_rule`).
    #[error("rule {rule_id:?} failed at {stage}: {error}")]
    RuleFailed {
        /// The rule.
        rule_id: String,
        /// Where it failed (`when`, `emit.data`, `inputs.text`, `ai.output`).
        stage: String,
        /// The error.
        error: String,
    },
    /// An operator's forced transition or forced action cannot apply (nothing was drafted):
    /// the execution is completed, the transition does not leave the current state, an
    /// assignment, token operation or action input failed, or an id is unknown.
    #[error("cannot force ({code}): {reason}")]
    ForceRefused {
        /// Stable code: `completed`, `unknown_transition`, `unknown_state`, `unknown_action`,
        /// `wrong_state`, `bad_data`, or the refusal code of the step (`assign_error`,
        /// `token_error`, `insufficient_balance`, `token_overflow`, `action_input_error`).
        code: String,
        /// Why.
        reason: String,
    },
    /// A value could not be serialised to JSON.
    #[error("JSON serialisation failed: {0}")]
    Json(String),
}
