#![doc = include_str!("../README.md")]

mod compile;
mod duration;
mod error;
mod expr;
mod force;
pub mod kinds;
mod machine;
mod model;
mod rules;
mod step;
mod template;
mod values;

pub use compile::{Compiled, Problem, Severity, ValidationReport, compile};
pub use duration::{MAX_TIMER_DAYS, TimerDuration};
pub use error::EngineError;
pub use force::{FORCED_MESSAGE_TYPE, ForceTarget};
pub use machine::Machine;
pub use model::{
    ActionJob, AiOutputs, AiProvenance, AiRequest, ArmedTimer, Draft, Event, ExecState, Message, Outcome,
    TransitionRecord,
};
pub use rules::ai_input_hash;
pub use template::{
    Action, Emit, EmitData, NodeKind, NodeOp, Rule, RuleKind, State, Template, TokenNode, TokenOp, TokenType, Tokens,
    TransferOp, Transition, VarType, Variable, template_hash,
};
