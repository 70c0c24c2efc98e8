//! Helpers shared by the test files.
#![allow(dead_code)] // each test file uses a subset

use std::path::PathBuf;

use pled_core::RecordedAt;
use pled_engine::{AiOutputs, Event, ExecState, Machine, Outcome, Template, compile};
use serde_json::Value;

/// 2026-01-01T00:00:00Z in microseconds.
pub(crate) const T0: i64 = 1_767_225_600_000_000;

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("..")
}

/// The time `secs` seconds after [`T0`].
pub(crate) fn at(secs: i64) -> String {
    RecordedAt::from_unix_micros(T0 + secs * 1_000_000).expect("at").as_str().to_owned()
}

/// Compiles a template given as JSON; panics with the report if it has errors.
pub(crate) fn machine(template: Value) -> Machine {
    let t = Template::from_value(template).expect("machine");
    let compiled = compile(&t);
    assert!(compiled.report.is_ok(), "{:#?}", compiled.report);
    compiled.machine.expect("machine")
}

/// An event received `seq` seconds after [`T0`].
pub(crate) fn event(seq: u64, kind: &str, payload: Value) -> Event {
    Event {
        event_seq: seq,
        r#type: kind.to_owned(),
        payload,
        source: "test".to_owned(),
        occurred_at: None,
        received_at: at(seq as i64),
    }
}

/// The initial state, started at [`T0`].
pub(crate) fn start(m: &Machine) -> ExecState {
    m.initial_state(None, &at(0)).expect("start").state
}

/// Processes an event without AI outputs.
pub(crate) fn process(m: &Machine, s: &ExecState, e: &Event) -> Outcome {
    m.process_event(s, e, &AiOutputs::new()).expect("process")
}

/// The kinds of an outcome's drafts.
pub(crate) fn kinds(o: &Outcome) -> Vec<&str> {
    o.drafts.iter().map(|d| d.kind.as_str()).collect()
}

/// The bodies of the drafts of one kind.
pub(crate) fn bodies(o: &Outcome, kind: &str) -> Vec<Value> {
    o.drafts.iter().filter(|d| d.kind.as_str() == kind).map(|d| d.body.to_value().expect("bodies")).collect()
}

/// The one body of a kind.
pub(crate) fn body(o: &Outcome, kind: &str) -> Value {
    let all = bodies(o, kind);
    assert_eq!(all.len(), 1, "expected one {kind} in {:?}", kinds(o));
    all.into_iter().next().expect("body")
}

/// Reads a JSON file of the repository.
pub(crate) fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).expect("read_json");
    serde_json::from_str(&text).expect("read_json")
}
