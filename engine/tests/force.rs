//! Operator overrides: a forced transition applies like a fired one without its guard
//! (assignments, tokens, timers, actions, completion), refuses as a whole when any part
//! fails, and a move to a state runs exit/entry without assignments; a forced action
//! schedules one job. Both are deterministic and survive the state's JSON round trip.

mod common;

use common::{at, body, event, kinds, machine, process, start};
use pled_engine::{EngineError, ForceTarget, Machine, kinds as k};
use serde_json::{Value, json};

fn flow() -> Machine {
    machine(json!({
        "name": "force",
        "variables": [
            {"name": "amount", "type": "int", "default": 0},
            {"name": "note", "type": "string", "default": ""}
        ],
        "states": [
            {"id": "draft", "initial": true, "onExit": ["bye"]},
            {"id": "review", "onEnter": ["hello"]},
            {"id": "done", "final": true}
        ],
        "transitions": [
            {"id": "submit", "from": "draft", "to": "review", "on": "submit", "guard": "msg.data.amount > 1000",
             "assign": {"amount": "msg.data.amount", "note": "'forced? ' + msg.type"},
             "actions": ["during"], "tokens": [{"mint": {"node": "grant", "amount": "msg.data.amount"}}]},
            {"id": "expire", "from": "review", "to": "done", "after": "1h"},
            {"id": "approve", "from": "review", "to": "done", "on": "approve", "guard": "false",
             "tokens": [{"consume": {"node": "redeem", "amount": "vars.amount + 1"}}]},
            {"id": "typed", "from": "draft", "to": "review", "on": "typed", "assign": {"amount": "msg.data.label"}}
        ],
        "actions": [
            {"id": "bye", "type": "webhook", "input": {"left": "=state"}},
            {"id": "hello", "type": "webhook", "input": {"amount": "=vars.amount"}},
            {"id": "during", "type": "emit_event", "input": {"n": "=msg.data.amount"}}
        ],
        "tokens": {
            "types": [{"id": "credit"}],
            "nodes": [{"id": "grant", "kind": "source", "token": "credit"}, {"id": "redeem", "kind": "sink", "token": "credit"}]
        }
    }))
}

fn transition(id: &str) -> ForceTarget {
    ForceTarget::Transition(id.to_owned())
}

fn refused_code(r: Result<pled_engine::Outcome, EngineError>) -> String {
    match r {
        Err(EngineError::ForceRefused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_forced_transition_skips_its_guard_and_does_everything_else() {
    let m = flow();
    let s = start(&m);
    // The guard (amount > 1000) would refuse 5; forcing ignores it.
    let o = m.force_transition(&s, &transition("submit"), &json!({"amount": 5}), &at(10), "forced.9").unwrap();
    assert_eq!(
        kinds(&o),
        [
            k::TRANSITION_FORCED,
            k::TOKEN_MINTED,
            k::ACTION_SCHEDULED,
            k::ACTION_SCHEDULED,
            k::ACTION_SCHEDULED,
            k::TIMER_ARMED
        ]
    );
    assert_eq!(
        body(&o, k::TRANSITION_FORCED),
        json!({"transitionId": "submit", "from": "draft", "to": "review",
               "assigned": {"amount": 5, "note": "forced? transition.forced"}})
    );
    assert_eq!(o.state.state, "review");
    assert_eq!(o.state.vars["amount"], json!(5));
    assert_eq!(o.state.balances["credit"]["main"], "5");
    assert_eq!(o.state.event_count, 0, "a forced transition is not an event");
    let keys: Vec<&str> = o.actions.iter().map(|a| a.job_key.as_str()).collect();
    assert_eq!(keys, ["forced.9:2:bye", "forced.9:3:during", "forced.9:4:hello"]);
    assert_eq!(o.actions[1].input, json!({"n": 5}));
    // Timers count from `now`.
    assert_eq!(o.state.timers[0].due_at, at(10 + 3600));
    assert_eq!(o.transitions.len(), 1);
    assert_eq!(o.transitions[0].transition_id, "submit");
}

#[test]
fn a_forced_transition_into_a_final_state_completes_and_cancels_timers() {
    let m = flow();
    let s = process(&m, &start(&m), &event(1, "submit", json!({"amount": 2000}))).state;
    assert_eq!(s.state, "review");
    // `approve` consumes amount + 1 credits: the balance (2000) is short, so even forced it
    // refuses as a whole.
    let r = m.force_transition(&s, &transition("approve"), &json!({}), &at(20), "forced.20");
    assert_eq!(refused_code(r), "insufficient_balance");
    // The `after` transition can be forced before it is due.
    let o = m.force_transition(&s, &transition("expire"), &json!({}), &at(20), "forced.21").unwrap();
    assert_eq!(kinds(&o), [k::TRANSITION_FORCED, k::TIMER_CANCELLED, k::EXECUTION_COMPLETED]);
    assert!(o.state.completed && o.state.timers.is_empty());
    let again = m.force_transition(&o.state, &ForceTarget::State("draft".into()), &json!({}), &at(30), "forced.30");
    assert_eq!(refused_code(again), "completed");
}

#[test]
fn refusals_name_the_problem_and_change_nothing() {
    let m = flow();
    let s = start(&m);
    let code = |t: ForceTarget, data: Value| refused_code(m.force_transition(&s, &t, &data, &at(1), "forced.1"));
    assert_eq!(code(transition("approve"), json!({})), "wrong_state");
    assert_eq!(code(transition("nope"), json!({})), "unknown_transition");
    assert_eq!(code(ForceTarget::State("nowhere".into()), json!({})), "unknown_state");
    assert_eq!(code(transition("typed"), json!({"label": "ten"})), "assign_error");
    assert_eq!(code(transition("submit"), json!({})), "assign_error");
    assert_eq!(code(transition("submit"), json!([1])), "bad_data");
    assert!(matches!(
        m.force_transition(&s, &transition("submit"), &json!({}), "yesterday", "k"),
        Err(EngineError::Time(_))
    ));
}

#[test]
fn a_move_to_a_state_runs_exit_and_entry_without_assignments() {
    let m = flow();
    let s = start(&m);
    let o = m.force_transition(&s, &ForceTarget::State("review".into()), &json!({}), &at(5), "forced.2").unwrap();
    assert_eq!(kinds(&o), [k::TRANSITION_FORCED, k::ACTION_SCHEDULED, k::ACTION_SCHEDULED, k::TIMER_ARMED]);
    assert_eq!(
        body(&o, k::TRANSITION_FORCED),
        json!({"transitionId": null, "from": "draft", "to": "review", "assigned": {}})
    );
    assert_eq!(o.state.vars, s.vars);
    assert!(o.transitions.is_empty());
    let ids: Vec<&str> = o.actions.iter().map(|a| a.action_id.as_str()).collect();
    assert_eq!(ids, ["bye", "hello"]);
    assert_eq!(o.actions[0].input, json!({"left": "review"}), "inputs see the entered state");
}

#[test]
fn a_forced_action_schedules_one_job() {
    let m = flow();
    let s = process(&m, &start(&m), &event(1, "submit", json!({"amount": 2000}))).state;
    let o = m.force_action(&s, "hello", None, "forced.12").unwrap();
    assert_eq!(kinds(&o), [k::ACTION_SCHEDULED]);
    assert_eq!(
        body(&o, k::ACTION_SCHEDULED),
        json!({"actionId": "hello", "type": "webhook", "input": {"amount": 2000}, "jobKey": "forced.12:0:hello"})
    );
    assert_eq!(o.state, s, "the state does not change");
    let o = m.force_action(&s, "hello", Some(&json!(["literal", 1.5])), "forced.13").unwrap();
    assert_eq!(o.actions[0].input, json!(["literal", 1.5]));
    // `during` reads msg.data: there is no message outside a transition.
    assert_eq!(refused_code(m.force_action(&s, "during", None, "k")), "action_input_error");
    assert_eq!(refused_code(m.force_action(&s, "nope", None, "k")), "unknown_action");
}

#[test]
fn forcing_is_deterministic_and_continues_from_a_json_round_trip() {
    let m = flow();
    let s = start(&m);
    let a = m.force_transition(&s, &transition("submit"), &json!({"amount": 7.0}), &at(3), "forced.4").unwrap();
    let b = m.force_transition(&s, &transition("submit"), &json!({"amount": 7}), &at(3), "forced.4").unwrap();
    assert_eq!(a, b, "data is canonicalised as the ledger holds it");
    let text = serde_json::to_string(&a.state).unwrap();
    let back = serde_json::from_str(&text).unwrap();
    let next = |st| m.force_transition(st, &transition("expire"), &json!({}), &at(9), "forced.5").unwrap();
    assert_eq!(next(&a.state), next(&back));
}
