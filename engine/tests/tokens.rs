//! Token accounting: mint at a source, transfer between accounts, consume at a sink;
//! balances as decimal strings up to 2^128-1; an overdraw refuses the whole transition;
//! conservation over generated operation sequences.

mod common;

use common::{bodies, body, event, kinds, machine, process, start};
use pled_engine::{ExecState, Machine, kinds as k};
use proptest::prelude::*;
use serde_json::{Value, json};

fn bank() -> Machine {
    machine(json!({
        "name": "bank",
        "variables": [{"name": "ops", "type": "int", "default": 0}],
        "states": [{"id": "open", "initial": true}, {"id": "closed", "final": true}],
        "transitions": [
            {"id": "mint", "from": "open", "to": "open", "on": "mint", "assign": {"ops": "vars.ops + 1"},
             "tokens": [{"mint": {"node": "src", "amount": "msg.data.amount"}}]},
            {"id": "mint-to", "from": "open", "to": "open", "on": "mint-b",
             "tokens": [{"mint": {"node": "src", "amount": "msg.data.amount", "account": "b"}}]},
            {"id": "move", "from": "open", "to": "open", "on": "move", "assign": {"ops": "vars.ops + 1"},
             "tokens": [{"transfer": {"token": "credit", "from": "main", "to": "b", "amount": "msg.data.amount"}}]},
            {"id": "move-back", "from": "open", "to": "open", "on": "move-back",
             "tokens": [{"transfer": {"token": "credit", "from": "b", "to": "main", "amount": "msg.data.amount"}}]},
            {"id": "burn", "from": "open", "to": "open", "on": "burn", "assign": {"ops": "vars.ops + 1"},
             "tokens": [{"consume": {"node": "sink", "amount": "msg.data.amount"}}]},
            {"id": "burn-b", "from": "open", "to": "open", "on": "burn-b",
             "tokens": [{"consume": {"node": "sink", "amount": "msg.data.amount", "account": "b"}}]},
            {"id": "two-step", "from": "open", "to": "open", "on": "two-step", "assign": {"ops": "100"},
             "tokens": [
                 {"mint": {"node": "src", "amount": "1"}},
                 {"consume": {"node": "sink", "amount": "msg.data.amount"}}
             ]},
            {"id": "rich", "from": "open", "to": "closed", "on": "close",
             "guard": "int(balances.credit.main) >= 100"}
        ],
        "tokens": {
            "types": [{"id": "credit"}],
            "nodes": [{"id": "src", "kind": "source", "token": "credit"}, {"id": "sink", "kind": "sink", "token": "credit"}]
        }
    }))
}

fn send(m: &Machine, s: &ExecState, kind: &str, amount: Value) -> pled_engine::Outcome {
    process(m, s, &event(s.event_count + 1, kind, json!({"amount": amount})))
}

fn balance(s: &ExecState, account: &str) -> String {
    s.balances.get("credit").and_then(|a| a.get(account)).cloned().unwrap_or_else(|| "0".into())
}

#[test]
fn mint_transfer_and_consume_move_balances() {
    let m = bank();
    let o = send(&m, &start(&m), "mint", json!(10));
    assert_eq!(kinds(&o), [k::EVENT_RECEIVED, k::MESSAGE_DERIVED, k::TRANSITION_FIRED, k::TOKEN_MINTED]);
    assert_eq!(
        body(&o, k::TOKEN_MINTED),
        json!({"node": "src", "token": "credit", "account": "main", "amount": "10", "balance": "10"})
    );
    let o = send(&m, &o.state, "move", json!(4));
    assert_eq!(
        body(&o, k::TOKEN_TRANSFERRED),
        json!({"token": "credit", "from": "main", "to": "b", "amount": "4", "fromBalance": "6", "toBalance": "4"})
    );
    let o = send(&m, &o.state, "burn", json!("6"));
    assert_eq!(
        body(&o, k::TOKEN_CONSUMED),
        json!({"node": "sink", "token": "credit", "account": "main", "amount": "6", "balance": "0"})
    );
    assert_eq!(balance(&o.state, "main"), "0");
    assert_eq!(balance(&o.state, "b"), "4");
    assert_eq!(o.state.vars["ops"], json!(3));
}

#[test]
fn an_overdraw_refuses_the_whole_transition() {
    let m = bank();
    let s = send(&m, &start(&m), "mint", json!(3)).state;
    let o = send(&m, &s, "burn", json!(5));
    let u = body(&o, k::MESSAGE_UNMATCHED);
    assert_eq!(u["code"], "insufficient_balance");
    assert_eq!(u["reason"], "insufficient balance: account main holds 3 credit, consume needs 5");
    assert_eq!(o.state.balances, s.balances);
    assert_eq!(o.state.vars, s.vars, "the assignment of the refused transition does not apply");
    assert!(o.transitions.is_empty());
    assert!(bodies(&o, k::TOKEN_CONSUMED).is_empty());

    // A later operation of the same transition overdraws: the earlier one is undone too.
    let o = send(&m, &s, "two-step", json!(10));
    assert_eq!(
        body(&o, k::MESSAGE_UNMATCHED)["reason"],
        "insufficient balance: account main holds 4 credit, consume needs 10"
    );
    assert_eq!(o.state.balances, s.balances);
    assert_eq!(o.state.vars["ops"], json!(1));
    assert!(bodies(&o, k::TOKEN_MINTED).is_empty());

    let o = send(&m, &s, "move", json!(4));
    assert_eq!(
        body(&o, k::MESSAGE_UNMATCHED)["reason"],
        "insufficient balance: account main holds 3 credit, transfer needs 4"
    );
}

#[test]
fn amounts_may_be_big_decimal_strings_but_not_negative_or_fractional() {
    let m = bank();
    let big = "300000000000000000000000000000000000000"; // > 2^64, < 2^128
    let o = send(&m, &start(&m), "mint", json!(big));
    assert_eq!(balance(&o.state, "main"), big);
    let o2 = send(&m, &o.state, "mint", json!(big));
    let u = body(&o2, k::MESSAGE_UNMATCHED);
    assert_eq!(u["code"], "token_overflow");
    assert_eq!(o2.state.balances, o.state.balances);
    for bad in [json!(-1), json!(1.5), json!("01"), json!("1e3"), json!(true), json!(null)] {
        let o = send(&m, &start(&m), "mint", bad.clone());
        assert_eq!(body(&o, k::MESSAGE_UNMATCHED)["code"], "token_error", "{bad}");
    }
}

#[test]
fn guards_can_read_balances() {
    let m = bank();
    let s = send(&m, &start(&m), "mint", json!(99)).state;
    assert_eq!(body(&process(&m, &s, &event(9, "close", json!({}))), k::MESSAGE_UNMATCHED)["code"], "guards_false");
    let s = send(&m, &s, "mint", json!(1)).state;
    assert_eq!(process(&m, &s, &event(9, "close", json!({}))).state.state, "closed");
}

fn op() -> impl Strategy<Value = (&'static str, u64)> {
    (prop::sample::select(vec!["mint", "mint-b", "move", "move-back", "burn", "burn-b"]), 0u64..50)
}

proptest! {
    /// Whatever the operations, balances never go negative (an overdraw is refused), every
    /// entry's balance matches the state, and what is held equals what was minted minus what
    /// was consumed.
    #[test]
    fn tokens_are_conserved(ops in prop::collection::vec(op(), 1..40)) {
        let m = bank();
        let mut s = start(&m);
        let (mut minted, mut consumed) = (0u128, 0u128);
        for (kind, amount) in ops {
            let o = send(&m, &s, kind, json!(amount));
            for b in bodies(&o, k::TOKEN_MINTED) {
                minted += b["amount"].as_str().unwrap().parse::<u128>().unwrap();
                prop_assert_eq!(b["balance"].as_str().unwrap(), balance(&o.state, b["account"].as_str().unwrap()));
            }
            for b in bodies(&o, k::TOKEN_CONSUMED) {
                consumed += b["amount"].as_str().unwrap().parse::<u128>().unwrap();
                prop_assert_eq!(b["balance"].as_str().unwrap(), balance(&o.state, b["account"].as_str().unwrap()));
            }
            if !bodies(&o, k::MESSAGE_UNMATCHED).is_empty() {
                prop_assert_eq!(&o.state.balances, &s.balances);
            }
            s = o.state;
            let held: u128 = s.balances.values().flat_map(|a| a.values()).map(|v| v.parse::<u128>().unwrap()).sum();
            prop_assert_eq!(held, minted - consumed);
        }
    }
}
