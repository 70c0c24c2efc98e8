//! Compile and validate: the reference template compiles cleanly, and a table of broken
//! templates (the reference with one thing broken each) reports each problem with its code
//! and JSON path.

mod common;

use pled_engine::{Severity, Template, compile};
use serde_json::{Value, json};

fn reference() -> Value {
    common::read_json("engine/tests/fixtures/reference.json")
}

/// Sets the value at `pointer`, creating the last object key if needed.
fn set(v: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("set");
    match v.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}")) {
        Value::Object(map) => {
            map.insert(key.to_owned(), new);
        }
        Value::Array(items) => items[key.parse::<usize>().expect("set")] = new,
        other => panic!("{parent} is {other}"),
    }
}

fn push(v: &mut Value, pointer: &str, new: Value) {
    v.pointer_mut(pointer).expect("push").as_array_mut().expect("push").push(new);
}

fn remove(v: &mut Value, pointer: &str, key: &str) {
    v.pointer_mut(pointer).expect("remove").as_object_mut().expect("remove").remove(key);
}

#[test]
fn the_reference_template_compiles_without_problems() {
    let t = Template::from_value(reference()).unwrap();
    let compiled = compile(&t);
    assert_eq!(compiled.report.problems, vec![], "{:#?}", compiled.report);
    let m = compiled.machine.unwrap();
    assert_eq!(m.initial_state_id(), "draft");
    assert_eq!(m.template_hash(), pled_engine::template_hash(&t).unwrap());
}

type Break = fn(&mut Value);

/// (what, how to break the reference, expected code, expected path, severity).
fn cases() -> Vec<(&'static str, Break, &'static str, &'static str, Severity)> {
    use Severity::{Error, Warning};
    vec![
        ("no initial state", |v| set(v, "/states/0/initial", json!(false)), "no_initial_state", "/states", Error),
        (
            "two initial states",
            |v| set(v, "/states/1/initial", json!(true)),
            "multiple_initial_states",
            "/states/1/initial",
            Error,
        ),
        (
            "duplicate state id",
            |v| set(v, "/states/3/id", json!("review")),
            "duplicate_state_id",
            "/states/3/id",
            Error,
        ),
        (
            "duplicate transition id",
            |v| set(v, "/transitions/2/id", json!("submit")),
            "duplicate_transition_id",
            "/transitions/2/id",
            Error,
        ),
        (
            "duplicate rule id",
            |v| set(v, "/rules/1/id", json!("submit-rule")),
            "duplicate_rule_id",
            "/rules/1/id",
            Error,
        ),
        (
            "duplicate action id",
            |v| push(v, "/actions", json!({"id": "notify", "type": "webhook"})),
            "duplicate_action_id",
            "/actions/1/id",
            Error,
        ),
        (
            "duplicate variable",
            |v| push(v, "/variables", json!({"name": "amount", "type": "int"})),
            "duplicate_variable",
            "/variables/2/name",
            Error,
        ),
        (
            "duplicate token type",
            |v| push(v, "/tokens/types", json!({"id": "credit"})),
            "duplicate_token_type",
            "/tokens/types/1/id",
            Error,
        ),
        (
            "duplicate token node",
            |v| set(v, "/tokens/nodes/1/id", json!("grant")),
            "duplicate_token_node",
            "/tokens/nodes/1/id",
            Error,
        ),
        (
            "unknown from",
            |v| set(v, "/transitions/0/from", json!("nowhere")),
            "unknown_state",
            "/transitions/0/from",
            Error,
        ),
        ("unknown to", |v| set(v, "/transitions/2/to", json!("nowhere")), "unknown_state", "/transitions/2/to", Error),
        (
            "unknown transition action",
            |v| set(v, "/transitions/0/actions/0", json!("nope")),
            "unknown_action",
            "/transitions/0/actions/0",
            Error,
        ),
        (
            "unknown onEnter action",
            |v| set(v, "/states/1/onEnter/0", json!("nope")),
            "unknown_action",
            "/states/1/onEnter/0",
            Error,
        ),
        (
            "unknown onExit action",
            |v| set(v, "/states/1/onExit", json!(["nope"])),
            "unknown_action",
            "/states/1/onExit/0",
            Error,
        ),
        (
            "unknown token node",
            |v| set(v, "/transitions/0/tokens/0/mint/node", json!("nope")),
            "unknown_token_node",
            "/transitions/0/tokens/0/mint/node",
            Error,
        ),
        (
            "node of an unknown token type",
            |v| set(v, "/tokens/nodes/0/token", json!("gold")),
            "unknown_token_type",
            "/tokens/nodes/0/token",
            Error,
        ),
        (
            "transfer of an unknown token type",
            |v| {
                push(
                    v,
                    "/transitions/0/tokens",
                    json!({"transfer": {"token": "gold", "from": "main", "to": "b", "amount": "1"}}),
                )
            },
            "unknown_token_type",
            "/transitions/0/tokens/1/transfer/token",
            Error,
        ),
        (
            "mint at a sink",
            |v| set(v, "/transitions/0/tokens/0/mint/node", json!("redeem")),
            "mint_at_sink",
            "/transitions/0/tokens/0/mint/node",
            Error,
        ),
        (
            "consume at a source",
            |v| set(v, "/transitions/2/tokens/0/consume/node", json!("grant")),
            "consume_at_source",
            "/transitions/2/tokens/0/consume/node",
            Error,
        ),
        (
            "both on and after",
            |v| set(v, "/transitions/1/on", json!("order.expired")),
            "conflicting_triggers",
            "/transitions/1",
            Error,
        ),
        ("neither on nor after", |v| remove(v, "/transitions/1", "after"), "missing_trigger", "/transitions/1", Error),
        (
            "bad duration",
            |v| set(v, "/transitions/1/after", json!("48 hours")),
            "bad_duration",
            "/transitions/1/after",
            Error,
        ),
        (
            "zero duration",
            |v| set(v, "/transitions/1/after", json!("0s")),
            "bad_duration",
            "/transitions/1/after",
            Error,
        ),
        (
            "bad CEL in a guard",
            |v| set(v, "/transitions/0/guard", json!("msg.data.amount >")),
            "cel_parse_error",
            "/transitions/0/guard",
            Error,
        ),
        (
            "bad CEL in an assignment",
            |v| set(v, "/transitions/0/assign/amount", json!("msg.data.(")),
            "cel_parse_error",
            "/transitions/0/assign/amount",
            Error,
        ),
        (
            "bad CEL in a rule's when",
            |v| set(v, "/rules/0/when", json!("event.payload.total >")),
            "cel_parse_error",
            "/rules/0/when",
            Error,
        ),
        (
            "bad CEL in emit data fields",
            |v| set(v, "/rules/0/emit/data/amount", json!("event.payload.")),
            "cel_parse_error",
            "/rules/0/emit/data/amount",
            Error,
        ),
        (
            "bad CEL as emit data",
            |v| set(v, "/rules/0/emit/data", json!("{'a': }")),
            "cel_parse_error",
            "/rules/0/emit/data",
            Error,
        ),
        (
            "bad CEL in an AI input",
            |v| set(v, "/rules/1/inputs/text", json!("event.payload[")),
            "cel_parse_error",
            "/rules/1/inputs/text",
            Error,
        ),
        (
            "bad CEL in a token amount",
            |v| set(v, "/transitions/0/tokens/0/mint/amount", json!("1 +")),
            "cel_parse_error",
            "/transitions/0/tokens/0/mint/amount",
            Error,
        ),
        (
            "bad CEL in an action input",
            |v| set(v, "/actions/0/input/body/amount", json!("=vars.amount +")),
            "cel_parse_error",
            "/actions/0/input/body/amount",
            Error,
        ),
        (
            "assignment to an undeclared variable",
            |v| set(v, "/transitions/0/assign", json!({"total": "1"})),
            "unknown_variable",
            "/transitions/0/assign/total",
            Error,
        ),
        (
            "default of the wrong type",
            |v| set(v, "/variables/0/default", json!("zero")),
            "default_type_mismatch",
            "/variables/0/default",
            Error,
        ),
        (
            "default that is not an integer",
            |v| set(v, "/variables/0/default", json!(1.5)),
            "default_type_mismatch",
            "/variables/0/default",
            Error,
        ),
        (
            "guard that is a literal int",
            |v| set(v, "/transitions/0/guard", json!("1")),
            "guard_not_bool",
            "/transitions/0/guard",
            Error,
        ),
        (
            "guard that is a literal string",
            |v| set(v, "/transitions/2/guard", json!("'yes'")),
            "guard_not_bool",
            "/transitions/2/guard",
            Error,
        ),
        (
            "duplicate message transition",
            |v| {
                let mut copy = v["transitions"][0].clone();
                copy["id"] = json!("submit-again");
                copy["to"] = json!("approved");
                push(v, "/transitions", copy);
            },
            "duplicate_transition",
            "/transitions/3",
            Error,
        ),
        (
            "duplicate timer transition",
            |v| push(v, "/transitions", json!({"id": "expire-2", "from": "review", "to": "approved", "after": "2d"})),
            "duplicate_transition",
            "/transitions/3",
            Error,
        ),
        (
            "transition out of a final state",
            |v| {
                push(
                    v,
                    "/transitions",
                    json!({"id": "reopen", "from": "approved", "to": "review", "on": "order.reopened"}),
                )
            },
            "transition_from_final",
            "/transitions/3/from",
            Error,
        ),
        (
            "AI rule without a model",
            |v| remove(v, "/rules/1", "model"),
            "ai_rule_missing_model",
            "/rules/1/model",
            Error,
        ),
        (
            "AI rule without a prompt",
            |v| remove(v, "/rules/1", "prompt"),
            "ai_rule_missing_prompt",
            "/rules/1/prompt",
            Error,
        ),
        (
            "AI rule with emit data",
            |v| set(v, "/rules/1/emit/data", json!({"x": "1"})),
            "ai_rule_emit_data",
            "/rules/1/emit/data",
            Error,
        ),
        (
            "AI prompt with an unknown placeholder",
            |v| set(v, "/rules/1/prompt", json!("Classify {{body}}")),
            "unknown_prompt_input",
            "/rules/1/prompt",
            Error,
        ),
        (
            "model on a CEL rule",
            |v| set(v, "/rules/0/model", json!("gpt-x")),
            "ai_field_on_cel_rule",
            "/rules/0/model",
            Error,
        ),
        (
            "invalid state id",
            |v| {
                set(v, "/states/3/id", json!("ex pired"));
                set(v, "/transitions/1/to", json!("ex pired"));
            },
            "invalid_id",
            "/states/3/id",
            Error,
        ),
        (
            "invalid variable name",
            |v| set(v, "/variables/1/name", json!("my-label")),
            "invalid_variable_name",
            "/variables/1/name",
            Error,
        ),
        (
            "invalid account",
            |v| set(v, "/transitions/0/tokens/0/mint/account", json!("a:b")),
            "invalid_account",
            "/transitions/0/tokens/0/mint/account",
            Error,
        ),
        ("empty message type", |v| set(v, "/rules/0/on", json!("")), "empty_message_type", "/rules/0/on", Error),
        ("empty action type", |v| set(v, "/actions/0/type", json!(" ")), "empty_action_type", "/actions/0/type", Error),
        (
            "integer beyond 2^53",
            |v| set(v, "/variables/0/default", json!(9_007_199_254_740_993_u64)),
            "unsafe_integer",
            "/variables/0/default",
            Error,
        ),
        (
            "unreachable state",
            |v| push(v, "/states", json!({"id": "limbo"})),
            "unreachable_state",
            "/states/4",
            Warning,
        ),
        (
            "no final state",
            |v| {
                set(v, "/states/2/final", json!(false));
                set(v, "/states/3/final", json!(false));
            },
            "no_final_state",
            "/states",
            Warning,
        ),
        (
            "guard that is always false",
            |v| set(v, "/transitions/2/guard", json!("false")),
            "guard_always_false",
            "/transitions/2/guard",
            Warning,
        ),
    ]
}

#[test]
fn every_broken_template_reports_its_problem_at_its_path() {
    for (what, break_it, code, path, severity) in cases() {
        let mut v = reference();
        break_it(&mut v);
        // Straight through serde: `Template::from_value` would refuse the unsafe integer first.
        let t: Template = serde_json::from_value(v).unwrap_or_else(|e| panic!("{what}: {e}"));
        let compiled = compile(&t);
        let found = compiled.report.problems.iter().find(|p| p.code == code && p.path == path);
        let Some(problem) = found else {
            panic!("{what}: no {code} at {path} in {:#?}", compiled.report.problems);
        };
        assert_eq!(problem.severity, severity, "{what}");
        assert!(!problem.message.is_empty(), "{what}");
        match severity {
            Severity::Error => {
                assert!(!compiled.report.is_ok(), "{what}");
                assert!(compiled.machine.is_none(), "{what}: a machine was built despite errors");
            }
            Severity::Warning => {
                assert!(compiled.report.is_ok(), "{what}: {:#?}", compiled.report);
                assert!(compiled.machine.is_some(), "{what}");
            }
        }
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let mut v = reference();
    set(&mut v, "/transitions/0/from", json!("nowhere"));
    set(&mut v, "/transitions/2/guard", json!("1 +"));
    set(&mut v, "/rules/1/model", json!(""));
    let compiled = compile(&serde_json::from_value(v).unwrap());
    let codes: Vec<(&str, &str)> = compiled.report.errors().map(|p| (p.code, p.path.as_str())).collect();
    assert!(codes.contains(&("unknown_state", "/transitions/0/from")), "{codes:?}");
    assert!(codes.contains(&("cel_parse_error", "/transitions/2/guard")), "{codes:?}");
    assert!(codes.contains(&("ai_rule_missing_model", "/rules/1/model")), "{codes:?}");
}

#[test]
fn the_report_serialises_for_the_api() {
    let mut v = reference();
    set(&mut v, "/transitions/0/to", json!("nowhere"));
    let compiled = compile(&serde_json::from_value(v).unwrap());
    let json = serde_json::to_value(&compiled.report).unwrap();
    assert_eq!(json["problems"][0]["code"], "unknown_state");
    assert_eq!(json["problems"][0]["path"], "/transitions/0/to");
    assert_eq!(json["problems"][0]["severity"], "error");
}

#[test]
fn json_errors_and_unsafe_numbers_are_refused_before_compiling() {
    let err = Template::from_json(r#"{"name": "t", "states": [], "extra": 1}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    let mut v = reference();
    set(&mut v, "/variables/0/default", json!(9_007_199_254_740_993_u64));
    let err = Template::from_value(v).unwrap_err();
    assert!(err.to_string().contains("/variables/0/default"), "{err}");
}

#[test]
fn describe_is_the_canonical_machine() {
    let m = common::machine(reference());
    let d = m.describe();
    assert_eq!(d["initial"], "draft");
    assert_eq!(d["final"], json!(["approved", "expired"]));
    assert_eq!(d["states"][1]["id"], "review");
    assert_eq!(d["states"][1]["timers"], json!(["expire"]));
    assert_eq!(d["states"][1]["transitions"], json!(["expire", "approve"]));
    assert_eq!(d["transitions"][0]["trigger"], json!({"on": "order.submitted"}));
    assert_eq!(d["transitions"][1]["trigger"], json!({"after": "2d", "afterMicros": 172_800_000_000_u64}));
    assert_eq!(
        d["timers"],
        json!([{"transitionId": "expire", "state": "review", "after": "2d", "afterMicros": 172_800_000_000_u64}])
    );
    assert_eq!(d["rules"][1]["kind"], "ai");
    assert_eq!(d["rules"][1]["deterministic"], false);
    assert_eq!(d["rules"][0]["data"], json!({"amount": "event.payload.total"}));
    assert_eq!(d["tokens"]["nodes"][1], json!({"id": "redeem", "kind": "sink", "token": "credit"}));
    assert_eq!(d["passThrough"]["handledEventTypes"], json!(["doc.uploaded", "order.created"]));
    assert_eq!(d["templateHash"], m.template_hash());
    // Deterministic and a valid ledger body (no unsafe numbers).
    assert_eq!(d, common::machine(reference()).describe());
    assert!(pled_core::Body::from_value(&d).is_ok());
}
