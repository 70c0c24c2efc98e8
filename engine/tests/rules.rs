//! Rules: events become messages. Pass-through, `when`, the three forms of `emit.data`,
//! failures recorded with their context while the other rules run, AI rules with and
//! without their output, input hashes, `test_rule`, and determinism over generated payloads.

mod common;

use std::collections::BTreeMap;

use common::{bodies, body, event, kinds, machine, process, start};
use pled_engine::{AiOutputs, EngineError, Machine, ai_input_hash, kinds as k};
use proptest::prelude::*;
use serde_json::{Value, json};

fn rules_machine() -> Machine {
    machine(json!({
        "name": "rules",
        "variables": [{"name": "threshold", "type": "int", "default": 10}],
        "states": [{"id": "idle", "initial": true}, {"id": "done", "final": true}],
        "transitions": [{"id": "finish", "from": "idle", "to": "done", "on": "finish"}],
        "rules": [
            {"id": "big", "on": "order.created", "when": "event.payload.total > vars.threshold",
             "emit": {"type": "order.big", "data": {"total": "event.payload.total", "src": "event.source", "state": "state"}}},
            {"id": "all", "on": "order.created", "emit": {"type": "order.seen"}},
            {"id": "whole", "on": "order.created",
             "emit": {"type": "order.copy", "data": "{'keys': event.payload.map(k, k), 'n': size(event.payload)}"}},
            {"id": "broken", "on": "order.broken", "emit": {"type": "x", "data": {"v": "event.payload.missing + 1"}}},
            {"id": "after-broken", "on": "order.broken", "emit": {"type": "y", "data": {"ok": "true"}}},
            {"id": "bad-when", "on": "order.broken", "when": "event.payload.size()", "emit": {"type": "z"}},
            {"id": "not-map", "on": "order.broken", "emit": {"type": "w", "data": "[1, 2]"}},
            {"id": "classify", "on": "doc.uploaded", "kind": "ai", "model": "m1",
             "prompt": "Classify: {{text}}", "inputs": {"text": "event.payload.text", "lang": "'en'"},
             "emit": {"type": "doc.classified"}},
            {"id": "also-cel", "on": "doc.uploaded", "emit": {"type": "doc.seen"}}
        ]
    }))
}

#[test]
fn an_event_no_rule_handles_passes_through() {
    let m = rules_machine();
    let o = process(&m, &start(&m), &event(1, "something.else", json!({"a": 1, "b": [true]})));
    assert_eq!(kinds(&o), [k::EVENT_RECEIVED, k::MESSAGE_DERIVED, k::MESSAGE_UNMATCHED]);
    assert_eq!(
        body(&o, k::MESSAGE_DERIVED),
        json!({"eventSeq": 1, "index": 0, "type": "something.else", "data": {"a": 1, "b": [true]},
               "ruleId": null, "deterministic": true})
    );
    assert_eq!(o.messages.len(), 1);
    assert_eq!(o.messages[0].rule_id, None);
    // The pass-through message steps like any other.
    let o = process(&m, &start(&m), &event(1, "finish", json!({})));
    assert_eq!(o.state.state, "done");
}

#[test]
fn rules_run_in_template_order_and_when_filters() {
    let m = rules_machine();
    let mut e = event(1, "order.created", json!({"total": 50, "b": 2, "a": 1}));
    e.source = "erp".into();
    e.occurred_at = Some("2025-12-31T23:59:59Z".into());
    let o = process(&m, &start(&m), &e);
    assert_eq!(
        body(&o, k::EVENT_RECEIVED),
        json!({"eventSeq": 1, "type": "order.created", "payload": {"total": 50, "b": 2, "a": 1},
               "source": "erp", "occurredAt": "2025-12-31T23:59:59Z", "receivedAt": common::at(1)})
    );
    let derived = bodies(&o, k::MESSAGE_DERIVED);
    assert_eq!(derived.len(), 3);
    assert_eq!(derived[0]["ruleId"], "big");
    assert_eq!(derived[0]["data"], json!({"total": 50, "src": "erp", "state": "idle"}));
    assert_eq!(derived[1]["ruleId"], "all");
    assert_eq!(derived[1]["data"], json!({"total": 50, "b": 2, "a": 1}));
    assert_eq!(derived[2]["data"], json!({"keys": ["a", "b", "total"], "n": 3}));
    assert_eq!(derived.iter().map(|d| d["index"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);

    // `when` false: no message, no failure, and no pass-through either.
    let o = process(&m, &start(&m), &event(2, "order.created", json!({"total": 5})));
    let derived = bodies(&o, k::MESSAGE_DERIVED);
    assert_eq!(derived.iter().map(|d| d["ruleId"].clone()).collect::<Vec<_>>(), [json!("all"), json!("whole")]);
    assert!(bodies(&o, k::RULE_FAILED).is_empty());
}

#[test]
fn a_failing_rule_is_recorded_with_context_and_the_others_still_run() {
    let m = rules_machine();
    let o = process(&m, &start(&m), &event(3, "order.broken", json!({"total": 1})));
    assert_eq!(
        kinds(&o),
        [k::EVENT_RECEIVED, k::RULE_FAILED, k::MESSAGE_DERIVED, k::RULE_FAILED, k::RULE_FAILED, k::MESSAGE_UNMATCHED]
    );
    let failed = bodies(&o, k::RULE_FAILED);
    assert_eq!(failed[0]["eventSeq"], 3);
    assert_eq!(failed[0]["ruleId"], "broken");
    assert_eq!(failed[0]["stage"], "emit.data.v");
    assert_eq!(failed[0]["expression"], "event.payload.missing + 1");
    assert!(failed[0]["error"].as_str().unwrap().contains("missing"), "{}", failed[0]);
    assert_eq!(failed[1]["ruleId"], "bad-when");
    assert_eq!(failed[1]["stage"], "when");
    assert!(failed[1]["error"].as_str().unwrap().contains("expected a bool, got int"), "{}", failed[1]);
    assert_eq!(failed[2]["ruleId"], "not-map");
    assert!(failed[2]["error"].as_str().unwrap().contains("must evaluate to a map, got a list"));
    let derived = body(&o, k::MESSAGE_DERIVED);
    assert_eq!((derived["ruleId"].clone(), derived["index"].clone()), (json!("after-broken"), json!(0)));
    assert_eq!(body(&o, k::MESSAGE_UNMATCHED)["code"], "no_transition");
}

#[test]
fn an_ai_rule_uses_the_output_for_its_input_hash() {
    let m = rules_machine();
    let s = start(&m);
    let e = event(4, "doc.uploaded", json!({"text": "hello"}));
    let requests = m.ai_requests(&s, &e).unwrap();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.rule_id.as_str(), r.model.as_str(), r.prompt.as_str()), ("classify", "m1", "Classify: hello"));
    assert_eq!(r.inputs, json!({"lang": "en", "text": "hello"}));
    assert_eq!(r.input_hash, ai_input_hash("m1", "Classify: hello", &r.inputs).unwrap());

    let outputs: AiOutputs = [(r.input_hash.clone(), json!({"label": "invoice", "score": 0.5}))].into();
    let o = m.process_event(&s, &e, &outputs).unwrap();
    let derived = bodies(&o, k::MESSAGE_DERIVED);
    assert_eq!(
        derived[0],
        json!({"eventSeq": 4, "index": 0, "type": "doc.classified", "data": {"label": "invoice", "score": 0.5},
               "ruleId": "classify", "deterministic": false,
               "ai": {"model": "m1", "prompt": "Classify: hello", "inputs": {"lang": "en", "text": "hello"},
                      "inputHash": r.input_hash}})
    );
    assert_eq!(derived[1]["ruleId"], "also-cel");
    assert_eq!(derived[1]["index"], 1);
    assert!(!o.messages[0].deterministic);
    assert!(o.messages[1].deterministic);
    // Outputs for other hashes are ignored.
    let mut more = outputs.clone();
    more.insert("ff".repeat(32), json!("other"));
    assert_eq!(m.process_event(&s, &e, &more).unwrap().drafts, o.drafts);
}

#[test]
fn a_missing_ai_output_is_a_rule_failure_not_an_error() {
    let m = rules_machine();
    let s = start(&m);
    let e = event(4, "doc.uploaded", json!({"text": "hello"}));
    let hash = m.ai_requests(&s, &e).unwrap()[0].input_hash.clone();
    let o = process(&m, &s, &e);
    let failed = body(&o, k::RULE_FAILED);
    assert_eq!(failed["ruleId"], "classify");
    assert_eq!(failed["stage"], "ai.output");
    assert_eq!(failed["expression"], Value::Null);
    assert!(failed["error"].as_str().unwrap().contains(&hash));
    let derived = body(&o, k::MESSAGE_DERIVED);
    assert_eq!((derived["ruleId"].clone(), derived["index"].clone()), (json!("also-cel"), json!(0)));
    // An output a ledger body cannot hold is refused the same way.
    let outputs: AiOutputs = [(hash, json!({"n": 9_007_199_254_740_993_u64}))].into();
    let o = m.process_event(&s, &e, &outputs).unwrap();
    assert_eq!(body(&o, k::RULE_FAILED)["stage"], "ai.output");
}

#[test]
fn the_same_inputs_give_the_same_input_hash() {
    let m = rules_machine();
    let s = start(&m);
    let hash = |seq: u64, text: &str| {
        let mut e = event(seq, "doc.uploaded", json!({"text": text, "noise": seq}));
        e.source = format!("source-{seq}");
        m.ai_requests(&s, &e).unwrap()[0].input_hash.clone()
    };
    assert_eq!(hash(1, "hello"), hash(2, "hello"));
    assert_ne!(hash(1, "hello"), hash(1, "hello!"));
    // A rule whose `when` is false or whose event type differs asks for nothing.
    assert!(m.ai_requests(&s, &event(1, "order.created", json!({"total": 1}))).unwrap().is_empty());
}

#[test]
fn test_rule_runs_one_rule() {
    let m = rules_machine();
    let vars: BTreeMap<String, Value> = [("threshold".to_owned(), json!(100))].into();
    let e = event(1, "order.created", json!({"total": 150}));
    let msgs = m.test_rule("big", &e, &vars).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].data, json!({"total": 150, "src": "test", "state": "idle"}));
    assert!(m.test_rule("big", &event(1, "order.created", json!({"total": 50})), &vars).unwrap().is_empty());
    assert!(m.test_rule("big", &event(1, "other", json!({})), &vars).unwrap().is_empty());
    assert!(matches!(m.test_rule("nope", &e, &vars), Err(EngineError::UnknownRule(_))));
    let err = m.test_rule("broken", &event(1, "order.broken", json!({})), &vars).unwrap_err();
    assert!(
        matches!(&err, EngineError::RuleFailed { rule_id, stage, .. } if rule_id == "broken" && stage == "emit.data.v"),
        "{err}"
    );
    let err = m.test_rule("classify", &event(1, "doc.uploaded", json!({"text": "x"})), &vars).unwrap_err();
    assert!(matches!(&err, EngineError::RuleFailed { stage, .. } if stage == "ai.output"), "{err}");
}

#[test]
fn a_bad_event_is_an_error_not_an_entry() {
    let m = rules_machine();
    let s = start(&m);
    assert!(matches!(
        m.process_event(&s, &event(1, "x", json!([1])), &AiOutputs::new()),
        Err(EngineError::InvalidEvent(_))
    ));
    assert!(matches!(
        m.process_event(&s, &event(1, "", json!({})), &AiOutputs::new()),
        Err(EngineError::InvalidEvent(_))
    ));
    let mut e = event(1, "x", json!({}));
    e.received_at = "yesterday".into();
    assert!(matches!(m.process_event(&s, &e, &AiOutputs::new()), Err(EngineError::Time(_))));
    let e = event(1, "x", json!({"n": 9_007_199_254_740_993_u64}));
    assert!(matches!(m.process_event(&s, &e, &AiOutputs::new()), Err(EngineError::Body(_))));
}

fn payload() -> impl Strategy<Value = Value> {
    (
        -1000i64..1000,
        "[a-z]{0,8}",
        prop::collection::vec(any::<bool>(), 0..4),
        prop::collection::btree_map("[a-z]{1,3}", -5i64..5, 0..6),
        prop::option::of(-1.0e6f64..1.0e6),
    )
        .prop_map(|(total, name, flags, m, f)| {
            let mut p = json!({"total": total, "name": name, "flags": flags, "m": m});
            if let Some(f) = f {
                p["f"] = json!(f);
            }
            p
        })
}

proptest! {
    /// Deterministic rules give identical messages (and entry bytes) for identical events,
    /// whatever order the payload's keys came in.
    #[test]
    fn deterministic_rules_are_deterministic(p in payload(), seq in 1u64..1000) {
        let m = rules_machine();
        let s = start(&m);
        let a = process(&m, &s, &event(seq, "order.created", p.clone()));
        let b = process(&m, &s, &event(seq, "order.created", p.clone()));
        prop_assert_eq!(&a.messages, &b.messages);
        prop_assert_eq!(&a.drafts, &b.drafts);
        // Same payload, keys in reverse order.
        let reversed: serde_json::Map<String, Value> =
            p.as_object().unwrap().iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
        let c = process(&m, &s, &event(seq, "order.created", Value::Object(reversed)));
        prop_assert_eq!(&a.drafts, &c.drafts);
        // The event read back from its own ledger body gives the same entries (replay).
        let stored = a.drafts[0].body.to_value().unwrap();
        let d = process(&m, &s, &event(seq, "order.created", stored["payload"].clone()));
        prop_assert_eq!(&a.drafts, &d.drafts);
    }
}
