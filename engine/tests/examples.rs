//! The examples users run (`examples/*/template.json` + `events.jsonl`) compile without
//! problems and drive an execution to completion; the complete template in
//! `docs/templates.md` is the reference fixture and compiles too.

mod common;

use common::{at, bodies, body, repo};
use pled_engine::{AiOutputs, Event, ExecState, Machine, Outcome, Template, compile, kinds as k};
use serde_json::{Value, json};

fn load(name: &str) -> (Machine, Vec<Value>) {
    let text = std::fs::read_to_string(repo().join(format!("examples/{name}/template.json"))).expect("load");
    let t = Template::from_json(&text).expect("load");
    let compiled = compile(&t);
    assert_eq!(compiled.report.problems, vec![], "{name}: {:#?}", compiled.report);
    let events = std::fs::read_to_string(repo().join(format!("examples/{name}/events.jsonl"))).expect("load");
    let events =
        events.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("load")).collect();
    (compiled.machine.expect("load"), events)
}

/// One `POST /v1/executions/:id/events` body as the service turns it into an event.
fn to_event(seq: u64, body: &Value) -> Event {
    let obj = body.as_object().expect("to_event");
    assert!(obj.keys().all(|k| ["type", "payload", "source"].contains(&k.as_str())), "{body}");
    Event {
        event_seq: seq,
        r#type: body["type"].as_str().expect("to_event").to_owned(),
        payload: body["payload"].clone(),
        source: body["source"].as_str().expect("to_event").to_owned(),
        occurred_at: None,
        received_at: at(seq as i64 * 60),
    }
}

fn run(m: &Machine, events: &[Value]) -> (ExecState, Vec<Outcome>) {
    let mut outcomes = vec![m.initial_state(None, &at(0)).expect("run")];
    let mut state = outcomes[0].state.clone();
    for (i, e) in events.iter().enumerate() {
        let o = m.process_event(&state, &to_event(i as u64 + 1, e), &AiOutputs::new()).expect("run");
        state = o.state.clone();
        outcomes.push(o);
    }
    (state, outcomes)
}

#[test]
fn the_approval_example_runs_to_completion() {
    let (m, events) = load("approval");
    let (state, outcomes) = run(&m, &events);
    assert!(state.completed);
    assert_eq!(state.state, "approved");
    assert_eq!(state.vars["approver"], json!("bob"));
    assert_eq!(state.vars["amount"], json!(1250));
    assert!(state.timers.is_empty());
    // Submitting armed the escalation timer and notified the reviewers.
    let submitted = &outcomes[1];
    assert_eq!(body(submitted, k::TIMER_ARMED)["transitionId"], "escalate");
    assert_eq!(submitted.actions[0].action_id, "notify-reviewers");
    assert_eq!(submitted.actions[0].input["body"]["text"], "Order PO-1042 of 1250 needs a review");
    // The comment passed through and moved nothing.
    assert_eq!(body(&outcomes[2], k::MESSAGE_UNMATCHED)["code"], "no_transition");
    // Approval cancelled the timer and told the requester.
    let approved = &outcomes[3];
    assert_eq!(body(approved, k::TIMER_CANCELLED)["transitionId"], "escalate");
    assert_eq!(approved.actions[0].input["body"], json!({"orderId": "PO-1042", "outcome": "approved", "by": "bob"}));
}

#[test]
fn the_approval_example_escalates_when_the_review_takes_too_long() {
    let (m, events) = load("approval");
    let (state, _) = run(&m, &events[..1]);
    let timer = state.timers[0].clone();
    assert_eq!(timer.due_at, at(60 + 48 * 3600));
    let o = m.fire_timer(&state, &timer.transition_id, &timer.due_at).unwrap();
    assert_eq!(o.state.state, "escalated");
    assert_eq!(o.state.vars["escalated"], json!(true));
    assert_eq!(o.actions[0].action_id, "notify-director");
    // A manager can no longer approve; a director can.
    let manager = json!({"type": "review.completed", "payload": {"decision": "approve", "reviewer": "bob", "role": "manager"}, "source": "portal"});
    let o2 = m.process_event(&o.state, &to_event(2, &manager), &AiOutputs::new()).unwrap();
    assert_eq!(body(&o2, k::MESSAGE_UNMATCHED)["code"], "guards_false");
    let director = json!({"type": "review.completed", "payload": {"decision": "reject", "reviewer": "carol", "role": "director", "reason": "budget"}, "source": "portal"});
    let o3 = m.process_event(&o2.state, &to_event(3, &director), &AiOutputs::new()).unwrap();
    assert_eq!(o3.state.state, "rejected");
    assert!(o3.state.completed);
}

#[test]
fn the_tokens_example_runs_to_completion() {
    let (m, events) = load("tokens");
    let (state, outcomes) = run(&m, &events);
    assert!(state.completed);
    assert_eq!(state.state, "settled");
    let credit = &state.balances["credit"];
    assert_eq!((credit["main"].as_str(), credit["reserve"].as_str()), ("85", "0"));
    let all: Vec<&Outcome> = outcomes.iter().collect();
    let minted: Vec<Value> = all.iter().flat_map(|o| bodies(o, k::TOKEN_MINTED)).collect();
    assert_eq!(minted.iter().map(|b| b["amount"].clone()).collect::<Vec<_>>(), [json!("100"), json!("25")]);
    // The 500 reservation overdrew and was refused; the 40 one went through.
    assert_eq!(
        body(all[3], k::MESSAGE_UNMATCHED)["reason"],
        "insufficient balance: account main holds 125 credit, transfer needs 500"
    );
    assert_eq!(body(all[4], k::TOKEN_TRANSFERRED)["toBalance"], "40");
    assert_eq!(
        body(all[5], k::TOKEN_CONSUMED),
        json!({"node": "redemption", "token": "credit", "account": "reserve", "amount": "40", "balance": "0"})
    );
    assert_eq!(
        all[5].actions[0].input,
        json!({"type": "credits.settled", "payload": {"customer": "acme", "orderId": "SO-7", "redeemed": "40", "remaining": "85"}})
    );
}

#[test]
fn the_complete_template_in_the_docs_is_the_reference_fixture() {
    let docs = std::fs::read_to_string(repo().join("docs/templates.md")).unwrap();
    let marker = "<!-- reference-template -->";
    let start = docs.find(marker).expect("docs/templates.md has the reference template marker") + marker.len();
    let block = &docs[start..];
    let open = block.find("```json").unwrap() + "```json".len();
    let close = block[open..].find("```").unwrap();
    let from_docs: Value = serde_json::from_str(&block[open..open + close]).unwrap();
    assert_eq!(from_docs, common::read_json("engine/tests/fixtures/reference.json"));
    let compiled = compile(&Template::from_value(from_docs).unwrap());
    assert!(compiled.report.problems.is_empty(), "{:#?}", compiled.report);
}
