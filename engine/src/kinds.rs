//! The kinds of the ledger entries the engine drafts. Their bodies are documented in
//! `docs/templates.md`.

/// The event, as received. First entry of every event.
pub const EVENT_RECEIVED: &str = "event.received";
/// A message derived from the event (by a rule, or passed through).
pub const MESSAGE_DERIVED: &str = "message.derived";
/// A rule failed; other rules and the step went on.
pub const RULE_FAILED: &str = "rule.failed";
/// A transition fired.
pub const TRANSITION_FIRED: &str = "transition.fired";
/// A message (or a timer) moved nothing, with the reason.
pub const MESSAGE_UNMATCHED: &str = "message.unmatched";
/// Tokens were minted at a source node.
pub const TOKEN_MINTED: &str = "token.minted";
/// Tokens moved between two accounts.
pub const TOKEN_TRANSFERRED: &str = "token.transferred";
/// Tokens were consumed at a sink node.
pub const TOKEN_CONSUMED: &str = "token.consumed";
/// An action job was scheduled.
pub const ACTION_SCHEDULED: &str = "action.scheduled";
/// A timer of a left state was cancelled.
pub const TIMER_CANCELLED: &str = "timer.cancelled";
/// A timer of an entered state was armed.
pub const TIMER_ARMED: &str = "timer.armed";
/// A timer fired.
pub const TIMER_FIRED: &str = "timer.fired";
/// A timer firing was ignored (not armed, stale, execution completed).
pub const TIMER_IGNORED: &str = "timer.ignored";
/// A final state was entered.
pub const EXECUTION_COMPLETED: &str = "execution.completed";
/// An operator forced a transition (or a move to a state), guard not evaluated.
pub const TRANSITION_FORCED: &str = "transition.forced";

/// The kinds that begin the entries of one input: an event (`event.received`) or a timer
/// firing (`timer.fired`, `timer.ignored`). Every other kind above is an effect that follows
/// one of them (or the service's own entry for start and operator actions).
pub const INPUTS: &[&str] = &[EVENT_RECEIVED, TIMER_FIRED, TIMER_IGNORED];

/// Every kind above.
pub const ALL: &[&str] = &[
    EVENT_RECEIVED,
    MESSAGE_DERIVED,
    RULE_FAILED,
    TRANSITION_FIRED,
    MESSAGE_UNMATCHED,
    TOKEN_MINTED,
    TOKEN_TRANSFERRED,
    TOKEN_CONSUMED,
    ACTION_SCHEDULED,
    TIMER_CANCELLED,
    TIMER_ARMED,
    TIMER_FIRED,
    TIMER_IGNORED,
    EXECUTION_COMPLETED,
    TRANSITION_FORCED,
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_is_a_valid_ledger_kind() {
        for kind in super::ALL {
            assert!(pled_core::Kind::new(kind).is_ok(), "{kind}");
        }
    }
}
