//! Determinism, the property replay relies on: generated templates (small random state
//! machines with guards, assignments, rules, actions, tokens and timers) driven by generated
//! streams of events and timer firings. Folding the same inputs twice gives identical
//! entries (kinds and body bytes) and states; serialising the `ExecState` to JSON and back
//! at any point of the stream (what a snapshot does) changes nothing.

mod common;

use common::{at, event};
use pled_engine::{AiOutputs, ExecState, Machine, Template, compile};
use proptest::prelude::*;
use serde_json::{Value, json};

const MESSAGE_TYPES: &[&str] = &["a", "b", "c", "e1.out"];
const EVENT_TYPES: &[&str] = &["a", "b", "c", "e1", "e2", "a", "b", "z"];
const DURATIONS: &[&str] = &["30m", "1h", "2d"];
const GUARDS: &[&str] = &[
    "msg.data.x > 3",
    "vars.counter % 2 == 0",
    "msg.data.x > vars.counter",
    "size(msg.data) > 1",
    "has(msg.data.m) && size(msg.data.m.filter(k, msg.data.m[k] > 0)) > 1",
    "msg.data.x / (msg.data.x - 3) > 0",
];
const ASSIGNS: &[(&str, &str)] = &[
    ("counter", "vars.counter + 1"),
    ("label", "msg.type + ':' + string(vars.counter)"),
    ("tags", "has(msg.data.m) ? msg.data.m.map(k, k) : []"),
    ("ratio", "vars.ratio * 1.1"),
    ("counter", "vars.counter + msg.data.x"),
];
const TOKEN_OPS: &[&str] = &[
    r#"{"mint": {"node": "src", "amount": "msg.data.x"}}"#,
    r#"{"mint": {"node": "src", "amount": "'5'"}}"#,
    r#"{"consume": {"node": "sink", "amount": "1"}}"#,
    r#"{"transfer": {"token": "credit", "from": "main", "to": "b", "amount": "2"}}"#,
    r#"{"consume": {"node": "sink", "account": "b", "amount": "string(vars.counter)"}}"#,
];

#[derive(Debug, Clone)]
struct GenTransition {
    from: usize,
    to: usize,
    on: Option<usize>,
    after: usize,
    guard: Option<usize>,
    assign: Vec<usize>,
    token: Option<usize>,
    action: bool,
}

fn gen_transition(n: usize) -> impl Strategy<Value = GenTransition> {
    (
        0..n,
        0..n,
        prop::option::weighted(0.8, 0..MESSAGE_TYPES.len()),
        0..DURATIONS.len(),
        prop::option::of(0..GUARDS.len()),
        prop::collection::vec(0..ASSIGNS.len(), 0..3),
        prop::option::of(0..TOKEN_OPS.len()),
        any::<bool>(),
    )
        .prop_map(|(from, to, on, after, guard, assign, token, action)| GenTransition {
            from,
            to,
            on,
            after,
            guard,
            assign,
            token,
            action,
        })
}

/// A small random template that compiles.
fn gen_template() -> impl Strategy<Value = Value> {
    (2usize..6)
        .prop_flat_map(|n| {
            (
                Just(n),
                any::<bool>(),
                prop::collection::vec(gen_transition(n), 3..16),
                prop::collection::vec(any::<bool>(), 4),
            )
        })
        .prop_map(|(n, last_is_final, transitions, rule_flags)| {
            // Only the last state may be final, so that executions run for a while.
            let finals: Vec<bool> = (0..n).map(|i| i == n - 1 && last_is_final).collect();
            let states: Vec<Value> = (0..n)
                .map(|i| {
                    json!({
                        "id": format!("s{i}"),
                        "initial": i == 0,
                        "final": i > 0 && finals[i],
                        "onEnter": if i % 2 == 1 { vec!["enter"] } else { vec![] },
                        "onExit": if i % 3 == 0 { vec!["exit"] } else { vec![] },
                    })
                })
                .collect();
            let mut seen = std::collections::BTreeSet::new();
            let mut ts = Vec::new();
            for (i, t) in transitions.iter().enumerate() {
                if t.from > 0 && finals[t.from] {
                    continue; // no transitions out of a final state
                }
                let key = match t.on {
                    Some(on) => format!("{}|on|{}|{:?}", t.from, on, t.guard),
                    None => format!("{}|after|{}", t.from, t.after),
                };
                if !seen.insert(key) {
                    continue; // would be a duplicate transition
                }
                let mut tr = json!({"id": format!("t{i}"), "from": format!("s{}", t.from), "to": format!("s{}", t.to)});
                match t.on {
                    Some(on) => tr["on"] = json!(MESSAGE_TYPES[on]),
                    None => tr["after"] = json!(DURATIONS[t.after]),
                }
                if let Some(g) = t.guard {
                    tr["guard"] = json!(GUARDS[g]);
                }
                let assign: serde_json::Map<String, Value> =
                    t.assign.iter().map(|&a| (ASSIGNS[a].0.to_owned(), json!(ASSIGNS[a].1))).collect();
                tr["assign"] = Value::Object(assign);
                if let Some(op) = t.token {
                    tr["tokens"] = json!([serde_json::from_str::<Value>(TOKEN_OPS[op]).expect("gen_template")]);
                }
                if t.action {
                    tr["actions"] = json!(["act"]);
                }
                ts.push(tr);
            }
            let all_rules = [
                json!({"id": "r1", "on": "e1", "when": "event.payload.x != 0",
                       "emit": {"type": "e1.out", "data": {"x": "event.payload.x * 2", "m": "event.payload.m",
                                                           "keys": "event.payload.m.map(k, k)"}}}),
                json!({"id": "r2", "on": "e1", "emit": {"type": "a",
                       "data": "{'x': event.payload.x, 'pairs': event.payload.m.map(k, [k, event.payload.m[k]])}"}}),
                json!({"id": "r3", "on": "e2", "emit": {"type": "b", "data": {"x": "100 / event.payload.x"}}}),
                json!({"id": "r4", "on": "e2", "when": "vars.counter > 2", "emit": {"type": "c"}}),
            ];
            let rules: Vec<Value> =
                all_rules.into_iter().zip(rule_flags).filter(|(_, keep)| *keep).map(|(r, _)| r).collect();
            json!({
                "name": "generated",
                "variables": [
                    {"name": "counter", "type": "int", "default": 0},
                    {"name": "label", "type": "string", "default": ""},
                    {"name": "tags", "type": "any"},
                    {"name": "ratio", "type": "double", "default": 1}
                ],
                "states": states,
                "transitions": ts,
                "rules": rules,
                "actions": [
                    {"id": "act", "type": "webhook", "input": {"c": "=vars.counter", "state": "=state",
                        "keys": "=has(msg.data.m) ? msg.data.m.filter(k, k > 'b') : []"}},
                    {"id": "enter", "type": "webhook", "input": {"tags": "=vars.tags", "b": "=balances"}},
                    {"id": "exit", "type": "emit_event", "input": {"label": "=vars.label", "lit": [1, "x"]}}
                ],
                "tokens": {
                    "types": [{"id": "credit"}],
                    "nodes": [{"id": "src", "kind": "source", "token": "credit"}, {"id": "sink", "kind": "sink", "token": "credit"}]
                }
            })
        })
}

#[derive(Debug, Clone)]
enum Input {
    Event {
        kind: usize,
        x: i64,
        m: Vec<(String, i64)>,
    },
    /// Fire the armed timer at this index (modulo the number armed), at its due time.
    Fire(usize),
}

fn gen_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => (0..EVENT_TYPES.len(), -5i64..10, prop::collection::vec(("[a-e]", -3i64..4), 0..5))
            .prop_map(|(kind, x, m)| Input::Event { kind, x, m }),
        1 => any::<usize>().prop_map(Input::Fire),
    ]
}

type Entries = Vec<(String, String)>;

/// Starts an execution and feeds it the inputs; at `snapshot`, the state goes through JSON.
fn fold(m: &Machine, inputs: &[Input], snapshot: Option<usize>) -> (Entries, ExecState) {
    let mut entries = Vec::new();
    let mut record = |o: &pled_engine::Outcome| {
        for d in &o.drafts {
            entries.push((d.kind.as_str().to_owned(), d.body.as_str().to_owned()));
        }
    };
    let first = m.initial_state(None, &at(0)).expect("fold");
    record(&first);
    let mut state = first.state;
    let mut seq = 0;
    for (i, input) in inputs.iter().enumerate() {
        if snapshot == Some(i) {
            let text = serde_json::to_string(&state).expect("fold");
            state = serde_json::from_str(&text).expect("fold");
        }
        let outcome = match input {
            Input::Event { kind, x, m: pairs } => {
                seq += 1;
                let map: serde_json::Map<String, Value> = pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                let e = event(seq, EVENT_TYPES[*kind], json!({"x": x, "m": map, "s": format!("s{seq}")}));
                m.process_event(&state, &e, &AiOutputs::new()).expect("fold")
            }
            Input::Fire(pick) => {
                if state.timers.is_empty() {
                    continue;
                }
                let timer = state.timers[pick % state.timers.len()].clone();
                m.fire_timer(&state, &timer.transition_id, &timer.due_at).expect("fold")
            }
        };
        record(&outcome);
        state = outcome.state;
    }
    (entries, state)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn replay_and_snapshots_reproduce_every_entry(
        template in gen_template(),
        inputs in prop::collection::vec(gen_input(), 0..25),
        cut in any::<prop::sample::Index>(),
    ) {
        let t = Template::from_value(template).unwrap();
        let compiled = compile(&t);
        prop_assert!(compiled.report.is_ok(), "{:#?}", compiled.report);
        let m = compiled.machine.unwrap();
        let (entries, state) = fold(&m, &inputs, None);
        // Recompiling is part of replay too.
        let m2 = compile(&t).machine.unwrap();
        let (again, state2) = fold(&m2, &inputs, None);
        prop_assert_eq!(&entries, &again);
        prop_assert_eq!(&state, &state2);
        let at_ = if inputs.is_empty() { 0 } else { cut.index(inputs.len()) };
        let (snap, state3) = fold(&m, &inputs, Some(at_));
        prop_assert_eq!(&entries, &snap);
        prop_assert_eq!(&state, &state3);
    }
}
