//! Timer scheduling with many pending timers: `PENDING` executions (default 1,000,000; set
//! `PLED_BENCH_PENDING_TIMERS`) each hold a timer armed for tomorrow, written the way
//! `POST /v1/executions` writes them (record, `execution.created`, `timer.armed`, head state,
//! timer index key). Then `DUE` executions get a timer due two seconds later and the timer
//! service fires them through their lanes. Reported: the seeding rate, the process's
//! resident memory before and after seeding and after firing (the service keeps no per-timer
//! state in memory; RocksDB's memtables and caches are in the figure), and the firing delay
//! (`firedAt - dueAt` of each `timer.fired` entry): p50, p99, max, and how long the whole
//! batch took (after a settle pause, `PLED_BENCH_SETTLE_SECS`, default 5); then the cost of
//! the one-time index backfill an older store gets at start. Not criterion: memory and a
//! latency distribution are the point here.
//!
//! `cargo bench -p pled-benches --bench timers`

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use pled_api::hub::Hub;
use pled_api::lanes::Lanes;
use pled_api::repo::executions::{self, ExecutionRecord, LiveState};
use pled_api::repo::templates::{self, TemplateVersion};
use pled_api::timers::TimerService;
// Links the benches' shared global allocator (mimalloc, as `pled` uses).
use pled_benches as _;
use pled_core::{Body, ChainHead, ExecutionId, Kind, OrgId, RecordedAt};
use pled_engine::{Machine, Template, compile, template_hash};
use pled_store::{Append, Store, StoreOptions, Table, WriteSet};
use serde_json::json;

const DUE: usize = 10_000;
const CHUNK: usize = 5_000;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn template(id: &str, after: &str) -> Template {
    Template::from_value(json!({
        "name": id,
        "states": [{"id": "waiting", "initial": true}, {"id": "expired", "final": true}],
        "transitions": [{"id": "expire", "from": "waiting", "to": "expired", "after": after}]
    }))
    .unwrap()
}

async fn publish(store: &Store, org: &OrgId, id: &str, t: Template) -> (Machine, String) {
    let hash = template_hash(&t).unwrap();
    let machine = compile(&t).machine.unwrap();
    let v = TemplateVersion {
        template_id: id.into(),
        version: 1,
        template: t,
        template_hash: hash.clone(),
        published_at: RecordedAt::now(),
        published_by: "bench".into(),
    };
    store.write(templates::put_version(WriteSet::new(), org, &v).unwrap()).await.unwrap();
    (machine, hash)
}

/// Starts `n` executions of a template (as the route does); returns their ids.
async fn start(store: &Store, org: &OrgId, tid: &str, m: &Machine, hash: &str, n: usize) -> Vec<ExecutionId> {
    let mut ids = Vec::with_capacity(n);
    let mut pending = Vec::new();
    for chunk in 0..n.div_ceil(CHUNK) {
        let mut ws = WriteSet::new();
        for _ in 0..CHUNK.min(n - chunk * CHUNK) {
            let id = ExecutionId::new_v7();
            let now = RecordedAt::now();
            let out = m.initial_state(None, now.as_str()).unwrap();
            let record = ExecutionRecord {
                id,
                org: org.clone(),
                template_id: tid.into(),
                version: 1,
                template_hash: hash.into(),
                name: "bench".into(),
                description: None,
                created_at: now.clone(),
                created_by: "bench".into(),
            };
            let mut head = ChainHead::genesis(id);
            let created = Body::from_value(&json!({"org": "bench", "templateId": tid, "version": 1})).unwrap();
            let mut entries =
                vec![pled_api::apply::seal_one(&mut head, Kind::new("execution.created").unwrap(), &now, created)];
            entries.extend(pled_api::apply::seal(&mut head, out.drafts, &now));
            let live = LiveState::started(out.state);
            ws = ws.append(Append::new(entries).unwrap().with_state(live.to_bytes()));
            ws = executions::put(ws, &record).unwrap();
            ws = pled_api::timers::reindex(ws, org, id, None, &live).0;
            ids.push(id);
        }
        pending.push(tokio::spawn({
            let store = store.clone();
            async move { store.write(ws).await.unwrap() }
        }));
        if pending.len() >= 8 {
            for p in pending.drain(..) {
                p.await.unwrap();
            }
        }
    }
    for p in pending {
        p.await.unwrap();
    }
    ids
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` (criterion's discovery) lists nothing here
    }
    let pending: usize =
        std::env::var("PLED_BENCH_PENDING_TIMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let org = OrgId::new("bench").unwrap();
        let rss0 = rss_mib();
        let (later, later_hash) = publish(&store, &org, "later", template("later", "1d")).await;
        let t0 = Instant::now();
        start(&store, &org, "later", &later, &later_hash, pending).await;
        let seeded = t0.elapsed();
        let rss1 = rss_mib();
        println!(
            "timers/pending={pending}: seeded in {:.1} s ({:.0} executions/s); RSS {rss0:.0} MiB -> {rss1:.0} MiB",
            seeded.as_secs_f64(),
            pending as f64 / seeded.as_secs_f64()
        );

        // Let RocksDB finish flushing and compacting the seed (about 1 GB for a million
        // executions) so that the firing is measured in a steady state, not against it.
        let settle: u64 = std::env::var("PLED_BENCH_SETTLE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
        tokio::time::sleep(Duration::from_secs(settle)).await;
        let (soon, soon_hash) = publish(&store, &org, "soon", template("soon", "2s")).await;
        // Seeded the way this version writes (index included): skip the one-time upgrade
        // backfill, whose cost is measured on its own below.
        let marker = pled_api::repo::executions::BACKFILLED.to_vec();
        store.write(WriteSet::new().put(Table::Meta, marker.clone(), b"1".to_vec())).await.unwrap();
        let lanes = Lanes::new(store.clone(), Arc::new(Hub::default()), None);
        let service = TimerService::new(store.clone(), lanes.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(service.run(stopped));
        let t1 = Instant::now();
        let ids = start(&store, &org, "soon", &soon, &soon_hash, DUE).await;
        let armed = t1.elapsed();
        // Wait until every due timer fired (or give up after a minute): the index's first key
        // is then one of the timers due tomorrow.
        let tomorrow = RecordedAt::now().unix_micros() + 3_600_000_000;
        let deadline = Instant::now() + Duration::from_secs(60);
        let first_due = || {
            let first = store.scan(Table::Queue, b"t", b"", 1).unwrap();
            first.first().and_then(|(k, _)| pled_api::timers::parse_timer_key(k)).map_or(i64::MAX, |(d, _, _)| d)
        };
        while first_due() < tomorrow && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all_fired = t1.elapsed();
        let rss2 = rss_mib();
        let mut delays = Vec::with_capacity(DUE);
        for id in &ids {
            for e in store.iter_entries(*id, pled_core::Seq::FIRST) {
                let e = e.unwrap();
                if e.entry().kind.as_str() == "timer.fired" {
                    let b = e.entry().body.to_value().unwrap();
                    let due = RecordedAt::parse(b["dueAt"].as_str().unwrap()).unwrap().unix_micros();
                    let fired = RecordedAt::parse(b["firedAt"].as_str().unwrap()).unwrap().unix_micros();
                    delays.push((fired - due) as f64 / 1000.0);
                }
            }
        }
        let _ = stop.send(true);
        let _ = task.await;
        // The upgrade path: a store from before the timer index is indexed once at start.
        store.write(WriteSet::new().delete(Table::Meta, marker)).await.unwrap();
        let (stop2, stopped2) = tokio::sync::watch::channel(false);
        let t2 = Instant::now();
        let task2 = tokio::spawn(TimerService::new(store.clone(), lanes).run(stopped2));
        while store.get(Table::Meta, pled_api::repo::executions::BACKFILLED).unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let backfill = t2.elapsed();
        let _ = stop2.send(true);
        let _ = task2.await;
        println!(
            "timers/pending={pending}: one-time index backfill of {} executions at start took {:.1} s",
            pending + DUE,
            backfill.as_secs_f64()
        );
        delays.sort_by(f64::total_cmp);
        assert_eq!(delays.len(), DUE, "every due timer fired once");
        println!(
            "timers/pending={pending}/due={DUE}: armed in {:.2} s, all fired {:.2} s after the first was armed; \
             firing delay ms p50 {:.1} p99 {:.1} max {:.1}; RSS after firing {rss2:.0} MiB",
            armed.as_secs_f64(),
            all_fired.as_secs_f64(),
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays[delays.len() - 1],
        );
    });
}
