//! Timers: armed when their state is entered (due = receivedAt + duration), cancelled when it
//! is left first, fired once, ignored when stale, refused before they are due.

mod common;

use common::{at, bodies, body, event, kinds, machine, process, start};
use pled_engine::{EngineError, ExecState, Machine, kinds as k};
use serde_json::json;

const HOUR: i64 = 3600;

fn review() -> Machine {
    machine(json!({
        "name": "review",
        "variables": [{"name": "reminders", "type": "int", "default": 0}],
        "states": [
            {"id": "draft", "initial": true},
            {"id": "review", "onEnter": ["ping"]},
            {"id": "approved", "final": true},
            {"id": "expired", "final": true, "onEnter": ["ping"]}
        ],
        "transitions": [
            {"id": "submit", "from": "draft", "to": "review", "on": "submit"},
            {"id": "approve", "from": "review", "to": "approved", "on": "approve"},
            {"id": "remind", "from": "review", "to": "review", "after": "1h", "guard": "vars.reminders < 2",
             "assign": {"reminders": "vars.reminders + 1"}},
            {"id": "expire", "from": "review", "to": "expired", "after": "2d",
             "actions": ["log"]}
        ],
        "actions": [
            {"id": "ping", "type": "webhook", "input": {"state": "=state", "why": "=msg == null ? 'event' : msg.type"}},
            {"id": "log", "type": "webhook", "input": {"timer": "=msg.data.transitionId", "due": "=msg.data.dueAt"}}
        ]
    }))
}

fn in_review(m: &Machine) -> ExecState {
    process(m, &start(m), &event(1, "submit", json!({}))).state
}

#[test]
fn timers_are_armed_when_their_state_is_entered() {
    let m = review();
    let o = process(&m, &start(&m), &event(1, "submit", json!({})));
    assert_eq!(
        kinds(&o),
        [
            k::EVENT_RECEIVED,
            k::MESSAGE_DERIVED,
            k::TRANSITION_FIRED,
            k::ACTION_SCHEDULED,
            k::TIMER_ARMED,
            k::TIMER_ARMED
        ]
    );
    let armed = bodies(&o, k::TIMER_ARMED);
    assert_eq!(armed[0], json!({"transitionId": "remind", "dueAt": at(1 + HOUR), "after": "1h"}));
    assert_eq!(armed[1], json!({"transitionId": "expire", "dueAt": at(1 + 48 * HOUR), "after": "2d"}));
    let timers: Vec<(&str, &str, u64)> =
        o.state.timers.iter().map(|t| (t.transition_id.as_str(), t.due_at.as_str(), t.armed_at_event)).collect();
    assert_eq!(timers, [("remind", at(1 + HOUR).as_str(), 1), ("expire", at(1 + 48 * HOUR).as_str(), 1)]);
    assert_eq!(o.timers_armed, o.state.timers);
}

#[test]
fn timers_are_cancelled_when_their_state_is_left_first() {
    let m = review();
    let o = process(&m, &in_review(&m), &event(2, "approve", json!({})));
    assert_eq!(o.state.state, "approved");
    assert_eq!(bodies(&o, k::TIMER_CANCELLED), [json!({"transitionId": "remind"}), json!({"transitionId": "expire"})]);
    assert_eq!(o.timers_cancelled, ["remind", "expire"]);
    assert!(o.state.timers.is_empty());
    // The stale timer fires later: ignored, nothing changes.
    let late = m.fire_timer(&o.state, "expire", &at(1 + 48 * HOUR)).unwrap();
    assert_eq!(kinds(&late), [k::TIMER_IGNORED]);
    assert_eq!(body(&late, k::TIMER_IGNORED)["transitionId"], "expire");
    assert_eq!(late.state, o.state);
}

#[test]
fn a_timer_fires_once() {
    let m = review();
    let s = in_review(&m);
    let due = at(1 + 48 * HOUR);
    let o = m.fire_timer(&s, "expire", &due).unwrap();
    assert_eq!(
        kinds(&o),
        [
            k::TIMER_FIRED,
            k::TRANSITION_FIRED,
            k::TIMER_CANCELLED,
            k::ACTION_SCHEDULED,
            k::ACTION_SCHEDULED,
            k::EXECUTION_COMPLETED
        ]
    );
    assert_eq!(body(&o, k::TIMER_FIRED), json!({"transitionId": "expire", "dueAt": due, "firedAt": due}));
    assert_eq!(
        body(&o, k::TRANSITION_FIRED),
        json!({"eventSeq": null, "messageIndex": null, "transitionId": "expire", "from": "review", "to": "expired", "assigned": {}})
    );
    // The remaining timer of the left state is cancelled (the fired one is spent).
    assert_eq!(body(&o, k::TIMER_CANCELLED), json!({"transitionId": "remind"}));
    let scheduled = bodies(&o, k::ACTION_SCHEDULED);
    assert_eq!(scheduled[0]["input"], json!({"timer": "expire", "due": due}));
    assert_eq!(scheduled[1]["input"], json!({"state": "expired", "why": "timer.fired"}));
    let due_micros = common::T0 + (1 + 48 * HOUR) * 1_000_000;
    assert_eq!(o.actions[0].job_key, format!("timer.1.{due_micros}.expire:3:log"));
    assert_eq!(o.transitions[0].message_index, None);
    assert!(o.state.completed);
    assert_eq!(o.state.event_count, s.event_count, "a timer is not an event");

    let again = m.fire_timer(&o.state, "expire", &due).unwrap();
    assert_eq!(kinds(&again), [k::TIMER_IGNORED]);
    assert_eq!(again.state, o.state);
}

#[test]
fn a_self_loop_timer_re_arms_with_a_later_due_time_and_fresh_job_keys() {
    let m = review();
    let s = in_review(&m);
    let first = m.fire_timer(&s, "remind", &at(1 + HOUR)).unwrap();
    assert_eq!(first.state.state, "review");
    assert_eq!(first.state.vars["reminders"], json!(1));
    // Re-entering review cancels expire and re-arms both, counted from the firing.
    assert_eq!(first.timers_cancelled, ["expire"]);
    let due: Vec<&str> = first.state.timers.iter().map(|t| t.due_at.as_str()).collect();
    assert_eq!(due, [at(1 + 2 * HOUR), at(1 + HOUR + 48 * HOUR)]);
    let second = m.fire_timer(&first.state, "remind", &at(1 + 2 * HOUR)).unwrap();
    assert_ne!(first.actions[0].job_key, second.actions[0].job_key);
    // The guard is false on the third reminder: the timer is spent, nothing else happens.
    let third = m.fire_timer(&second.state, "remind", &at(1 + 3 * HOUR)).unwrap();
    assert_eq!(kinds(&third), [k::TIMER_FIRED, k::MESSAGE_UNMATCHED]);
    let u = body(&third, k::MESSAGE_UNMATCHED);
    assert_eq!(u["code"], "guards_false");
    assert_eq!((u["type"].clone(), u["eventSeq"].clone()), (json!("timer.fired"), json!(null)));
    assert_eq!(third.state.timers.iter().map(|t| t.transition_id.as_str()).collect::<Vec<_>>(), ["expire"]);
}

#[test]
fn a_timer_cannot_fire_early_and_must_exist() {
    let m = review();
    let s = in_review(&m);
    let err = m.fire_timer(&s, "expire", &at(HOUR)).unwrap_err();
    assert!(matches!(err, EngineError::TimerNotDue { .. }), "{err}");
    assert!(matches!(m.fire_timer(&s, "approve", &at(HOUR)), Err(EngineError::UnknownTransition(_))));
    assert!(matches!(m.fire_timer(&s, "nope", &at(HOUR)), Err(EngineError::UnknownTransition(_))));
    assert!(matches!(m.fire_timer(&s, "expire", "soon"), Err(EngineError::Time(_))));
    // Not armed (still in draft).
    let o = m.fire_timer(&start(&m), "expire", &at(HOUR)).unwrap();
    assert_eq!(body(&o, k::TIMER_IGNORED)["reason"], "timer is not armed");
}

#[test]
fn timers_of_the_initial_state_are_armed_at_start() {
    let m = machine(json!({
        "name": "t",
        "states": [{"id": "waiting", "initial": true}, {"id": "done", "final": true}],
        "transitions": [{"id": "timeout", "from": "waiting", "to": "done", "after": "15m"}]
    }));
    let o = m.initial_state(None, &at(0)).unwrap();
    assert_eq!(body(&o, k::TIMER_ARMED), json!({"transitionId": "timeout", "dueAt": at(900), "after": "15m"}));
    assert_eq!(o.state.timers[0].armed_at_event, 0);
    let o = m.fire_timer(&o.state, "timeout", &at(1000)).unwrap();
    assert!(o.state.completed);
    assert_eq!(body(&o, k::TIMER_FIRED)["firedAt"], at(1000));
}
