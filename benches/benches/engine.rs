//! Template compile and rule evaluation, and one full engine step, on the approval example;
//! and the canonical body writing every step does (an `event.received` body).

#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
// Links the benches' shared global allocator (mimalloc, as `pled` uses).
use pled_benches as _;
use pled_core::{Body, Member};
use pled_engine::{AiOutputs, Event, Template, compile};

fn example() -> (Template, Vec<serde_json::Value>) {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../examples/approval");
    let t = Template::from_json(&std::fs::read_to_string(dir.join("template.json")).unwrap()).unwrap();
    let events = std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (t, events)
}

fn event(v: &serde_json::Value, seq: u64) -> Event {
    Event {
        event_seq: seq,
        r#type: v["type"].as_str().unwrap().to_owned(),
        payload: v["payload"].clone(),
        source: v["source"].as_str().unwrap().to_owned(),
        occurred_at: None,
        received_at: "2026-11-22T01:48:30.123456Z".to_owned(),
    }
}

fn benches(c: &mut Criterion) {
    let (template, events) = example();
    c.bench_function("engine/compile/approval", |b| b.iter(|| compile(&template)));

    let machine = compile(&template).machine.unwrap();
    let first = event(&events[0], 1);
    let rule = template.rules.iter().find(|r| r.on == first.r#type).map(|r| r.id.clone()).unwrap();
    let vars: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    c.bench_function("engine/rule/approval", |b| b.iter(|| machine.test_rule(&rule, &first, &vars).unwrap()));

    let start = machine.initial_state(None, "2026-11-22T01:48:30.000000Z").unwrap().state;
    let mut g = c.benchmark_group("engine/step");
    g.throughput(Throughput::Elements(1));
    g.bench_function("approval/first_event", |b| {
        b.iter(|| machine.process_event(&start, &first, &AiOutputs::new()).unwrap())
    });
    g.finish();

    // The members of the first event's `event.received` body, as the step writes them.
    let mut g = c.benchmark_group("engine/body");
    g.throughput(Throughput::Elements(1));
    g.bench_function("event.received", |b| {
        b.iter(|| {
            Body::from_members(&mut [
                ("eventSeq", Member::UInt(first.event_seq)),
                ("payload", Member::Json(&first.payload)),
                ("receivedAt", Member::Str(&first.received_at)),
                ("source", Member::Str(&first.source)),
                ("type", Member::Str(&first.r#type)),
            ])
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
