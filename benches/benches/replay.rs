//! Replay of one execution with 100,000 events (`pled_api::replay::replay`, what
//! `POST /v1/executions/{id}/replay` and `pled replay` run): from genesis, from a snapshot
//! 1,000 events before the head, and from a snapshot at the head (nothing to replay: what
//! every replay costs besides its inputs). The ledger is built the way the lane builds it (the same
//! `pled_api::apply` functions), in a RocksDB store on this disk.
//!
//! The template is a typical integration: a CEL rule turns each `line.added` event into a
//! message with two computed fields, a guarded self-loop counts lines and sums amounts, and
//! every 100th event closes a batch (a second transition with an action). About three
//! entries per event.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pled_api::apply;
use pled_api::config::ServeConfig;
use pled_api::replay::{ReplayOptions, Stop, replay};
use pled_api::repo::executions::LiveState;
use pled_api::repo::snapshots::{self, SnapshotRecord, Trigger};
use pled_benches::execution;
use pled_core::{Body, ChainHead, Kind, RecordedAt};
use pled_engine::{AiOutputs, Event, Machine, Template, compile};
use pled_store::{Append, Store, StoreOptions, WriteSet};
use serde_json::json;

const EVENTS: u64 = 100_000;
const SNAPSHOT_BEFORE_HEAD: u64 = 1_000;

fn machine() -> Machine {
    let t = Template::from_value(json!({
        "name": "order lines",
        "variables": [
            {"name": "lines", "type": "int", "default": 0},
            {"name": "total", "type": "int", "default": 0},
            {"name": "batches", "type": "int", "default": 0}
        ],
        "states": [{"id": "open", "initial": true}, {"id": "closed", "final": true}],
        "transitions": [
            {"id": "close-batch", "from": "open", "to": "open", "on": "line", "guard": "msg.data.n % 100 == 0",
             "assign": {"batches": "vars.batches + 1", "lines": "vars.lines + 1"}, "actions": ["notify"]},
            {"id": "add", "from": "open", "to": "open", "on": "line", "guard": "msg.data.amount > 0",
             "assign": {"lines": "vars.lines + 1", "total": "vars.total + msg.data.amount"}},
            {"id": "close", "from": "open", "to": "closed", "on": "close"}
        ],
        "rules": [
            {"id": "line", "on": "line.added", "when": "event.payload.qty > 0",
             "emit": {"type": "line", "data": {"n": "event.payload.n", "amount": "event.payload.qty * event.payload.price"}}}
        ],
        "actions": [{"id": "notify", "type": "webhook", "input": {"batches": "=vars.batches"}}]
    }))
    .unwrap();
    compile(&t).machine.unwrap()
}

fn at(i: u64) -> RecordedAt {
    RecordedAt::from_unix_micros(1_767_225_600_000_000 + i as i64 * 1_000).unwrap()
}

/// Builds the ledger: `execution.created`, then `EVENTS` events, written in runs of 10,000
/// events, with the periodic snapshots the lane takes (every `snapshot_every` entries, ~30
/// here) and on-demand snapshots `SNAPSHOT_BEFORE_HEAD` events before the head and at the
/// head. Returns the id of the one before the head.
fn build(store: &Store, m: &Machine) -> u64 {
    let id = execution(1);
    let mut head = ChainHead::genesis(id);
    let created = Body::from_value(&json!({"org": "bench", "templateId": "t", "version": 1, "variables": {}})).unwrap();
    let mut entries = vec![apply::seal_one(&mut head, Kind::new("execution.created").unwrap(), &at(0), created)];
    let start = m.initial_state(Some(&json!({})), at(0).as_str()).unwrap();
    entries.extend(apply::seal(&mut head, start.drafts, &at(0)));
    let mut live = LiveState::started(start.state);
    let every = ServeConfig::default().snapshot_every;
    let (mut snapshot, mut ws) = (0, WriteSet::new());
    for i in 1..=EVENTS {
        let e = Event {
            event_seq: i,
            r#type: "line.added".into(),
            payload: json!({"n": i, "sku": format!("SKU-{:06}", i % 5000), "qty": 1 + i % 7, "price": 3}),
            source: "erp".into(),
            occurred_at: None,
            received_at: at(i).to_string(),
        };
        let before = head.seq;
        entries.extend(apply::event(m, &mut live, &mut head, &e, &AiOutputs::new()).unwrap().entries);
        if snapshots::periodic_due(every, before, head.seq) {
            ws = snapshots::put(ws, id, &SnapshotRecord::new(&head, &live, Trigger::Periodic)).unwrap();
        }
        if i == EVENTS - SNAPSHOT_BEFORE_HEAD {
            snapshot = head.seq.get();
            ws = snapshots::put(ws, id, &SnapshotRecord::new(&head, &live, Trigger::OnDemand)).unwrap();
        }
        if i % 10_000 == 0 || i == EVENTS - SNAPSHOT_BEFORE_HEAD {
            let run = std::mem::take(&mut entries);
            let full = std::mem::take(&mut ws).append(Append::new(run).unwrap().with_state(live.to_bytes()));
            store.write_blocking(full).unwrap();
        }
    }
    let ws = snapshots::put(WriteSet::new(), id, &SnapshotRecord::new(&head, &live, Trigger::OnDemand)).unwrap();
    store.write_blocking(ws).unwrap();
    snapshot
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let m = machine();
    let snapshot = build(&store, &m);
    let id = execution(1);
    let head = store.chain_head(id).unwrap();
    let run = |opts: &ReplayOptions| {
        let r = replay(&store, &m, id, opts, Stop::default(), &mut |_| {}).unwrap();
        assert!(r.identical, "{:?}", r.divergence);
        assert_eq!(r.head_hash, head.hash.to_hex());
        r
    };
    let full = run(&ReplayOptions::default());
    eprintln!(
        "replay bench: {} events, {} entries, {} snapshots checked, replays from the one at seq {snapshot} of {}",
        full.events,
        full.entries,
        full.snapshots.len(),
        head.seq
    );

    let mut g = c.benchmark_group("replay");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(EVENTS));
    g.bench_function(BenchmarkId::from_parameter(format!("events={EVENTS}/from=genesis")), |b| {
        b.iter(|| run(&ReplayOptions::default()))
    });
    let from_snapshot = ReplayOptions { from_snapshot: Some(snapshot), ..ReplayOptions::default() };
    g.throughput(Throughput::Elements(SNAPSHOT_BEFORE_HEAD));
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function(
        BenchmarkId::from_parameter(format!("events={EVENTS}/from=snapshot-{SNAPSHOT_BEFORE_HEAD}")),
        |b| b.iter(|| run(&from_snapshot)),
    );
    let at_head = ReplayOptions { from_snapshot: Some(head.seq.get()), ..ReplayOptions::default() };
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::from_parameter(format!("events={EVENTS}/from=snapshot-0")), |b| {
        b.iter(|| run(&at_head))
    });
    g.finish();
}

criterion_group!(replay_benches, benches);
criterion_main!(replay_benches);
