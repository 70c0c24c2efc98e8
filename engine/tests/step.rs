//! The state-machine step: guards (first match in template order), assignments (against
//! pre-transition values), unmatched reasons, completion, actions in the documented order
//! with evaluated `=` inputs, self-loops, several messages per event, and start.

mod common;

use common::{at, bodies, body, event, kinds, machine, process, start};
use pled_engine::{AiOutputs, EngineError, ExecState, Machine, kinds as k};
use serde_json::{Value, json};

fn flow() -> Machine {
    machine(json!({
        "name": "flow",
        "variables": [
            {"name": "a", "type": "int", "default": 1},
            {"name": "b", "type": "int", "default": 2},
            {"name": "note", "type": "string", "default": ""},
            {"name": "ratio", "type": "double", "default": 1}
        ],
        "states": [
            {"id": "s0", "initial": true, "onEnter": ["hello"], "onExit": ["bye-s0"]},
            {"id": "s1", "onEnter": ["enter-s1"], "onExit": ["bye-s1"]},
            {"id": "s2"},
            {"id": "end", "final": true, "onEnter": ["enter-end"]}
        ],
        "transitions": [
            {"id": "big", "from": "s0", "to": "s1", "on": "go", "guard": "msg.data.n > 10",
             "assign": {"a": "vars.b", "b": "vars.a", "note": "'big ' + string(msg.data.n)"}, "actions": ["during"]},
            {"id": "small", "from": "s0", "to": "s2", "on": "go", "guard": "msg.data.n > 0"},
            {"id": "any", "from": "s0", "to": "s2", "on": "go-any", "guard": "msg.data.n > 100"},
            {"id": "also", "from": "s0", "to": "s1", "on": "go-any", "guard": "msg.data.n > 200"},
            {"id": "err", "from": "s0", "to": "s1", "on": "go-err", "guard": "msg.data.missing > 1"},
            {"id": "typed", "from": "s0", "to": "s1", "on": "go-typed", "assign": {"a": "msg.data.v"}},
            {"id": "ratio", "from": "s0", "to": "s0", "on": "scale", "assign": {"ratio": "vars.ratio * 1.5"}},
            {"id": "loop", "from": "s1", "to": "s1", "on": "again", "assign": {"a": "vars.a + 1"}},
            {"id": "finish", "from": "s1", "to": "end", "on": "finish"},
            {"id": "finish2", "from": "s2", "to": "end", "on": "finish"},
            {"id": "bad-input", "from": "s2", "to": "s1", "on": "go-bad", "actions": ["broken"]}
        ],
        "actions": [
            {"id": "hello", "type": "webhook", "input": {"state": "=state", "a": "=vars.a"}},
            {"id": "bye-s0", "type": "webhook", "input": {"left": "=\"s0\"", "a": "=vars.a", "literal": "==not an expression", "n": 5}},
            {"id": "bye-s1", "type": "webhook", "input": {"left": "s1"}},
            {"id": "during", "type": "emit_event", "input": {"type": "noted", "payload": {"note": "=vars.note", "list": ["=vars.a", "x", "=msg.data.n"]}}},
            {"id": "enter-s1", "type": "webhook", "input": {"state": "=state", "a": "=vars.a", "b": "=vars.b", "seq": "=event.eventSeq"}},
            {"id": "enter-end", "type": "webhook"},
            {"id": "broken", "type": "webhook", "input": {"x": "=vars.nope.deeper"}}
        ]
    }))
}

fn go(m: &Machine, s: &ExecState, seq: u64, kind: &str, data: Value) -> pled_engine::Outcome {
    process(m, s, &event(seq, kind, data))
}

#[test]
fn start_uses_defaults_inputs_and_schedules_initial_actions() {
    let m = flow();
    let o = m.initial_state(Some(&json!({"b": 7, "note": "hi"})), &at(0)).unwrap();
    assert_eq!(o.state.state, "s0");
    assert_eq!(o.state.vars["a"], json!(1));
    assert_eq!(o.state.vars["b"], json!(7));
    assert_eq!(o.state.vars["note"], json!("hi"));
    assert!(o.state.vars["ratio"].is_f64());
    assert_eq!(o.state.event_count, 0);
    assert!(!o.state.completed);
    assert_eq!(kinds(&o), [k::ACTION_SCHEDULED]);
    assert_eq!(
        body(&o, k::ACTION_SCHEDULED),
        json!({"actionId": "hello", "type": "webhook", "input": {"state": "s0", "a": 1}, "jobKey": "start:0:hello"})
    );
    assert_eq!(o.actions.len(), 1);
    assert_eq!(o.actions[0].job_key, "start:0:hello");

    assert!(matches!(m.initial_state(Some(&json!({"zzz": 1})), &at(0)), Err(EngineError::InvalidInputs(_))));
    assert!(matches!(m.initial_state(Some(&json!({"a": "one"})), &at(0)), Err(EngineError::InvalidInputs(_))));
    assert!(matches!(m.initial_state(Some(&json!([1])), &at(0)), Err(EngineError::InvalidInputs(_))));
    assert!(matches!(m.initial_state(None, "now"), Err(EngineError::Time(_))));
}

#[test]
fn the_first_transition_whose_guard_holds_wins_in_template_order() {
    let m = flow();
    let s = start(&m);
    let o = go(&m, &s, 1, "go", json!({"n": 50}));
    assert_eq!(o.state.state, "s1");
    assert_eq!(body(&o, k::TRANSITION_FIRED)["transitionId"], "big");
    let o = go(&m, &s, 1, "go", json!({"n": 5}));
    assert_eq!(o.state.state, "s2");
    assert_eq!(body(&o, k::TRANSITION_FIRED)["transitionId"], "small");
    // Both guards hold: the first in template order wins.
    let o = go(&m, &s, 1, "go-any", json!({"n": 500}));
    assert_eq!(body(&o, k::TRANSITION_FIRED)["transitionId"], "any");
    assert_eq!(o.transitions.len(), 1);
    assert_eq!(o.transitions[0].transition_id, "any");
    assert_eq!(o.transitions[0].message_index, Some(0));
}

#[test]
fn unmatched_messages_say_why_and_change_nothing() {
    let m = flow();
    let s = start(&m);
    let unmatched = |kind: &str, data: Value| {
        let o = go(&m, &s, 9, kind, data);
        assert_eq!(o.state.state, "s0");
        assert_eq!(o.state.vars, s.vars);
        assert!(o.actions.is_empty() && o.transitions.is_empty());
        assert_eq!(o.state.event_count, 1);
        body(&o, k::MESSAGE_UNMATCHED)
    };
    let u = unmatched("go", json!({"n": -1}));
    assert_eq!(u["code"], "guards_false");
    assert_eq!(u["reason"], "every guard was false: big, small");
    assert_eq!(
        (u["eventSeq"].clone(), u["messageIndex"].clone(), u["type"].clone(), u["state"].clone()),
        (json!(9), json!(0), json!("go"), json!("s0"))
    );
    let u = unmatched("nothing", json!({}));
    assert_eq!(u["code"], "no_transition");
    assert_eq!(u["reason"], r#"no transition on "nothing" from state "s0""#);
    let u = unmatched("go-err", json!({}));
    assert_eq!(u["code"], "guard_error");
    let reason = u["reason"].as_str().unwrap();
    assert!(reason.contains("guard of transition \"err\" failed") && reason.contains("missing"), "{reason}");
    let u = unmatched("go", json!({"n": "ten"}));
    assert_eq!(u["code"], "guard_error", "a non-comparable guard is an error: {u}");
    let u = unmatched("go-typed", json!({"v": "not an int"}));
    assert_eq!(u["code"], "assign_error");
    assert!(u["reason"].as_str().unwrap().contains("expected int, got string"), "{u}");
}

#[test]
fn assignments_see_pre_transition_values() {
    let m = flow();
    let o = go(&m, &start(&m), 1, "go", json!({"n": 42}));
    assert_eq!(o.state.vars["a"], json!(2));
    assert_eq!(o.state.vars["b"], json!(1));
    assert_eq!(o.state.vars["note"], json!("big 42"));
    assert_eq!(
        body(&o, k::TRANSITION_FIRED),
        json!({"eventSeq": 1, "messageIndex": 0, "transitionId": "big", "from": "s0", "to": "s1",
               "assigned": {"a": 2, "b": 1, "note": "big 42"}})
    );
    // A double variable stays a double through CEL.
    let o = go(&m, &start(&m), 1, "scale", json!({}));
    let o = go(&m, &o.state, 2, "scale", json!({}));
    assert_eq!(o.state.vars["ratio"].as_f64(), Some(2.25));
}

#[test]
fn actions_are_scheduled_on_exit_then_transition_then_on_enter_with_evaluated_inputs() {
    let m = flow();
    let o = go(&m, &start(&m), 7, "go", json!({"n": 42}));
    assert_eq!(
        kinds(&o),
        [
            k::EVENT_RECEIVED,
            k::MESSAGE_DERIVED,
            k::TRANSITION_FIRED,
            k::ACTION_SCHEDULED,
            k::ACTION_SCHEDULED,
            k::ACTION_SCHEDULED
        ]
    );
    let scheduled = bodies(&o, k::ACTION_SCHEDULED);
    // Inputs are evaluated against the post-transition values (a and b swapped, note set).
    assert_eq!(
        scheduled[0],
        json!({"actionId": "bye-s0", "type": "webhook", "jobKey": "7:3:bye-s0",
        "input": {"left": "s0", "a": 2, "literal": "=not an expression", "n": 5}})
    );
    assert_eq!(
        scheduled[1],
        json!({"actionId": "during", "type": "emit_event", "jobKey": "7:4:during",
        "input": {"type": "noted", "payload": {"note": "big 42", "list": [2, "x", 42]}}})
    );
    assert_eq!(
        scheduled[2],
        json!({"actionId": "enter-s1", "type": "webhook", "jobKey": "7:5:enter-s1",
        "input": {"state": "s1", "a": 2, "b": 1, "seq": 7}})
    );
    let jobs: Vec<(&str, usize, &str)> =
        o.actions.iter().map(|a| (a.action_id.as_str(), a.draft_index, a.job_key.as_str())).collect();
    assert_eq!(jobs, [("bye-s0", 3, "7:3:bye-s0"), ("during", 4, "7:4:during"), ("enter-s1", 5, "7:5:enter-s1")]);
    for job in &o.actions {
        assert_eq!(o.drafts[job.draft_index].body.to_value().unwrap()["input"], job.input);
    }
    // An action without input has a null input.
    let o = go(&m, &o.state, 8, "finish", json!({}));
    assert_eq!(bodies(&o, k::ACTION_SCHEDULED)[1]["input"], Value::Null);
}

#[test]
fn a_failing_action_input_refuses_the_whole_transition() {
    let m = flow();
    let s = go(&m, &start(&m), 1, "go", json!({"n": 5})).state;
    assert_eq!(s.state, "s2");
    let o = go(&m, &s, 2, "go-bad", json!({}));
    assert_eq!(o.state.state, "s2");
    assert!(o.actions.is_empty());
    let u = body(&o, k::MESSAGE_UNMATCHED);
    assert_eq!(u["code"], "action_input_error");
    assert!(u["reason"].as_str().unwrap().contains("/actions/6/input/x"), "{u}");
}

#[test]
fn a_self_loop_leaves_and_re_enters_its_state() {
    let m = flow();
    let s = go(&m, &start(&m), 1, "go", json!({"n": 42})).state;
    let o = go(&m, &s, 2, "again", json!({}));
    assert_eq!(o.state.state, "s1");
    assert_eq!(o.state.vars["a"], json!(3));
    let ids: Vec<&str> = o.actions.iter().map(|a| a.action_id.as_str()).collect();
    assert_eq!(ids, ["bye-s1", "enter-s1"]);
}

#[test]
fn entering_a_final_state_completes_the_execution() {
    let m = flow();
    let s = go(&m, &start(&m), 1, "go", json!({"n": 42})).state;
    let o = go(&m, &s, 2, "finish", json!({}));
    assert_eq!(o.state.state, "end");
    assert!(o.state.completed);
    assert_eq!(*kinds(&o).last().unwrap(), k::EXECUTION_COMPLETED);
    assert_eq!(body(&o, k::EXECUTION_COMPLETED), json!({"state": "end"}));
    // Later events are recorded, their messages unmatched.
    let o = go(&m, &o.state, 3, "finish", json!({}));
    let u = body(&o, k::MESSAGE_UNMATCHED);
    assert_eq!(u["code"], "completed");
    assert!(u["reason"].as_str().unwrap().contains("execution already completed"));
    assert_eq!(o.state.event_count, 3);
}

#[test]
fn several_messages_of_one_event_step_in_order() {
    let m = machine(json!({
        "name": "multi",
        "states": [{"id": "a", "initial": true}, {"id": "b"}, {"id": "c", "final": true}],
        "transitions": [
            {"id": "ab", "from": "a", "to": "b", "on": "first"},
            {"id": "bc", "from": "b", "to": "c", "on": "second"}
        ],
        "rules": [
            {"id": "r2", "on": "both", "emit": {"type": "second"}},
            {"id": "r1", "on": "both", "emit": {"type": "first"}},
            {"id": "r3", "on": "both", "emit": {"type": "second"}}
        ]
    }));
    let o = process(&m, &start(&m), &event(1, "both", json!({})));
    // Messages first, then steps: "second" (from a: nothing), "first" (a -> b), "second" (b -> c).
    assert_eq!(
        kinds(&o),
        [
            k::EVENT_RECEIVED,
            k::MESSAGE_DERIVED,
            k::MESSAGE_DERIVED,
            k::MESSAGE_DERIVED,
            k::MESSAGE_UNMATCHED,
            k::TRANSITION_FIRED,
            k::TRANSITION_FIRED,
            k::EXECUTION_COMPLETED
        ]
    );
    let fired: Vec<(Option<usize>, &str)> =
        o.transitions.iter().map(|t| (t.message_index, t.transition_id.as_str())).collect();
    assert_eq!(fired, [(Some(1), "ab"), (Some(2), "bc")]);
    assert_eq!(o.state.state, "c");
}

#[test]
fn a_state_from_elsewhere_is_refused() {
    let m = flow();
    let mut s = start(&m);
    s.state = "nowhere".into();
    let e = event(1, "go", json!({"n": 1}));
    assert!(matches!(m.process_event(&s, &e, &AiOutputs::new()), Err(EngineError::CorruptState(_))));
    let mut s = start(&m);
    s.balances.insert("credit".into(), [("main".to_owned(), "-3".to_owned())].into());
    assert!(matches!(m.process_event(&s, &e, &AiOutputs::new()), Err(EngineError::CorruptState(_))));
}

#[test]
fn exec_state_serialises_in_camel_case() {
    let m = flow();
    let s = go(&m, &start(&m), 1, "go", json!({"n": 42})).state;
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["state"], "s1");
    assert_eq!(v["eventCount"], 1);
    assert_eq!(v["completed"], false);
    let back: ExecState = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);
}
