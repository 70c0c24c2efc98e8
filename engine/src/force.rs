//! Operator overrides: a forced transition (or a move straight to a state) and a forced
//! action. Pure like the step: same state and same arguments, same drafts.
//!
//! A forced transition does everything the transition does when a message fires it —
//! assignments, token operations, `timer.cancelled`, onExit / transition / onEnter actions,
//! `timer.armed`, `execution.completed` — except that its guard is not evaluated and its
//! first entry is `transition.forced` instead of `transition.fired`. If any part of it fails
//! (an assignment, a token operation, an action input), nothing applies and the call is a
//! [`EngineError::ForceRefused`], never a half-applied state.

use serde_json::{Value, json};

use crate::EngineError;
use crate::kinds;
use crate::machine::Machine;
use crate::model::{Draft, ExecState, Outcome, TransitionRecord};
use crate::step::{Prepared, ReadyAction, Run, StepCtx, eval_input, msg_record, ready_actions, scope_for};
use pled_core::RecordedAt;

/// What an operator forces the execution into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceTarget {
    /// A transition of the template that leaves the current state (any trigger, guard
    /// ignored).
    Transition(String),
    /// A state: leave the current one (onExit actions, timers cancelled) and enter this one
    /// (onEnter actions, timers armed, completion if final), with no assignment and no token
    /// operation.
    State(String),
}

/// The message type a forced transition's expressions see as `msg.type`.
pub const FORCED_MESSAGE_TYPE: &str = "transition.forced";

fn refuse(code: &str, reason: impl Into<String>) -> EngineError {
    EngineError::ForceRefused { code: code.to_owned(), reason: reason.into() }
}

impl Machine {
    /// Forces a transition (or a move to a state) at `now`, without evaluating any guard.
    ///
    /// Expressions see `msg = {type: "transition.forced", data}` and `event = null`; timers
    /// armed count from `now`; `key` prefixes the job keys of the actions it schedules
    /// (`{key}:{draftIndex}:{actionId}`: the caller makes it unique within the execution; the
    /// service uses `forced.{seq of its admin entry}`). Drafts `transition.forced`
    /// (`transitionId` — `null` for a move to a state —, `from`, `to`, `assigned`), then
    /// exactly what [`Machine::process_event`] drafts after a `transition.fired`.
    pub fn force_transition(
        &self,
        state: &ExecState,
        target: &ForceTarget,
        data: &Value,
        now: &str,
        key: &str,
    ) -> Result<Outcome, EngineError> {
        let now_at = RecordedAt::parse(now)?;
        if !data.is_object() {
            return Err(refuse("bad_data", "data must be a JSON object"));
        }
        // The data as a ledger body holds it, so replay from the admin entry evaluates alike.
        let data = pled_core::Body::from_value(data)?.to_value()?;
        let mut run = Run::new(self, state)?;
        if run.state.completed {
            return Err(refuse(
                "completed",
                format!("execution already completed (final state {:?})", run.state.state),
            ));
        }
        let ctx = StepCtx {
            event: None,
            event_seq: None,
            job_prefix: key.to_owned(),
            base_micros: now_at.unix_micros(),
            armed_at_event: run.state.event_count,
        };
        let msg = msg_record(FORCED_MESSAGE_TYPE, &data);
        let from = run.current;
        let (to, transition_id, prepared) = match target {
            ForceTarget::Transition(id) => {
                let t = *self
                    .transition_index
                    .get(id)
                    .ok_or_else(|| refuse("unknown_transition", format!("no transition {id:?} in this template")))?;
                let tr = &self.transitions[t];
                if tr.from != from {
                    return Err(refuse(
                        "wrong_state",
                        format!(
                            "transition {id:?} leaves state {:?}; the execution is in {:?}",
                            self.states[tr.from].id, run.state.state
                        ),
                    ));
                }
                let prepared = {
                    let scope = run.scope(&ctx, Some(&msg));
                    run.prepare(t, &scope, &ctx, &msg).map_err(|(code, reason)| refuse(code, reason))?
                };
                (tr.to, Some(tr.id.clone()), prepared)
            }
            ForceTarget::State(id) => {
                let to = *self
                    .state_index
                    .get(id)
                    .ok_or_else(|| refuse("unknown_state", format!("no state {id:?} in this template")))?;
                let (left, entered) = (&self.states[from], &self.states[to]);
                let ids = left.on_exit.iter().chain(&entered.on_enter);
                let actions = ready_actions(self, ids, || {
                    scope_for(&run.state.vars, &entered.id, ctx.event, Some(&msg), &run.balances)
                })
                .map_err(|reason| refuse("action_input_error", reason))?;
                let prepared = Prepared {
                    assigned: Default::default(),
                    balances: run.balances.clone(),
                    token_bodies: Vec::new(),
                    actions,
                };
                (to, None, prepared)
            }
        };
        let (from_id, to_id) = (self.states[from].id.clone(), self.states[to].id.clone());
        let body = json!({
            "transitionId": transition_id,
            "from": from_id,
            "to": to_id,
            "assigned": prepared.assigned,
        });
        if let Some(id) = &transition_id {
            run.transitions.push(TransitionRecord {
                message_index: None,
                transition_id: id.clone(),
                from: from_id,
                to: to_id,
            });
        }
        run.move_to(to, Draft::new(kinds::TRANSITION_FORCED, &body)?, prepared, &ctx)?;
        Ok(run.finish())
    }

    /// Schedules action `action_id` now, outside any transition: one `action.scheduled`
    /// draft and its job, with job key `{key}:0:{actionId}`. `input` replaces the template's
    /// input as literal JSON; without it the template's input is evaluated (its `=`
    /// expressions see `vars`, `state`, `balances`, and `event` / `msg` as `null`). The state
    /// does not change.
    pub fn force_action(
        &self,
        state: &ExecState,
        action_id: &str,
        input: Option<&Value>,
        key: &str,
    ) -> Result<Outcome, EngineError> {
        let action = self
            .actions
            .get(action_id)
            .ok_or_else(|| refuse("unknown_action", format!("no action {action_id:?} in this template")))?;
        let mut run = Run::new(self, state)?;
        let input = match input {
            // Canonical, as the ledger will hold it (wrapped: a body must be an object).
            Some(v) => match pled_core::Body::from_value(&json!({ "v": v }))?.to_value()? {
                Value::Object(mut o) => o.remove("v").unwrap_or(Value::Null),
                _ => Value::Null,
            },
            None => {
                let scope = action
                    .input
                    .needs_scope()
                    .then(|| scope_for(&run.state.vars, &run.state.state, None, None, &run.balances));
                eval_input(&action.input, scope.as_ref()).map_err(|(path, err)| {
                    refuse("action_input_error", format!("input of action {action_id:?} at {path} failed: {err}"))
                })?
            }
        };
        let ctx = StepCtx {
            event: None,
            event_seq: None,
            job_prefix: key.to_owned(),
            base_micros: 0,
            armed_at_event: run.state.event_count,
        };
        let ready = ReadyAction { id: action.id.clone(), action_type: action.action_type.clone(), input };
        run.schedule(vec![ready], &ctx)?;
        Ok(run.finish())
    }
}
