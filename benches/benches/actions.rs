//! Action runner throughput against a local HTTP receiver: `JOBS` executions are started
//! (each schedules one signed `webhook` job at start, written the way `POST /v1/executions`
//! writes it), then the runner drains the queue: per job, the `running` mark, the signed
//! HTTP request, and `action.attempted` + `action.succeeded` with the job's final status
//! through the execution's lane, every write synced (group commit). The receiver (axum, in
//! the same process, so on the same 2 cores) answers 200 at once. A sample is the time from
//! starting the runner until the queue is empty.

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
// Links the benches' shared global allocator (mimalloc, as `pled` uses).
use pled_api::actions::types::Registry;
use pled_api::actions::{Runner, RunnerConfig};
use pled_api::hub::Hub;
use pled_api::lanes::{self, Lanes};
use pled_api::repo::executions::{self, ExecutionRecord, LiveState};
use pled_api::repo::templates::{self, TemplateVersion};
use pled_benches as _;
use pled_core::{Body, ChainHead, ExecutionId, Kind, OrgId, RecordedAt};
use pled_engine::{Template, compile, template_hash};
use pled_store::{Append, Store, StoreOptions, Table, WriteSet};
use serde_json::json;

const JOBS: u64 = 10_000;

fn template(url: &str) -> Template {
    Template::from_value(json!({
        "name": "notify on start",
        "variables": [{"name": "n", "type": "int", "default": 0}],
        "states": [{"id": "started", "initial": true, "onEnter": ["notify"]}],
        "actions": [{"id": "notify", "type": "webhook", "input": {"url": url, "body": {"n": "=vars.n"}}}]
    }))
    .unwrap()
}

/// Publishes the template and starts `JOBS` executions; returns when all are durable.
async fn seed(store: &Store, url: &str) {
    let org = OrgId::new("bench").unwrap();
    let t = template(url);
    let hash = template_hash(&t).unwrap();
    let machine = compile(&t).machine.unwrap();
    let version = TemplateVersion {
        template_id: "t".into(),
        version: 1,
        template: t,
        template_hash: hash.clone(),
        published_at: RecordedAt::now(),
        published_by: "bench".into(),
    };
    store.write(templates::put_version(WriteSet::new(), &org, &version).unwrap()).await.unwrap();
    let mut writes = Vec::new();
    for chunk in 0..JOBS / 500 {
        let mut ws = WriteSet::new();
        for i in 0..500 {
            let id = ExecutionId::new_v7();
            let now = RecordedAt::now();
            let out = machine.initial_state(Some(&json!({"n": chunk * 500 + i})), now.as_str()).unwrap();
            let record = ExecutionRecord {
                id,
                org: org.clone(),
                template_id: "t".into(),
                version: 1,
                template_hash: hash.clone(),
                name: "bench".into(),
                description: None,
                created_at: now.clone(),
                created_by: "bench".into(),
            };
            let mut head = ChainHead::genesis(id);
            let created = Body::from_value(&json!({"org": "bench", "templateId": "t", "version": 1})).unwrap();
            let mut entries =
                vec![pled_api::apply::seal_one(&mut head, Kind::new("execution.created").unwrap(), &now, created)];
            let sealed = pled_api::apply::seal(&mut head, out.drafts, &now);
            ws = lanes::enqueue_jobs(ws, &record, &out.actions, &sealed).unwrap();
            entries.extend(sealed);
            let live = LiveState::started(out.state);
            ws = ws.append(Append::new(entries).unwrap().with_state(live.to_bytes()));
            ws = executions::put(ws, &record).unwrap();
        }
        writes.push(store.write(ws));
    }
    for w in writes {
        w.await.unwrap();
    }
}

fn queue_len(store: &Store) -> usize {
    store.scan(Table::Queue, b"j", b"", 1_000_000).unwrap().len()
}

async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { axum::Json(json!({"ok": true})) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let url = rt.block_on(receiver());
    let mut g = c.benchmark_group("actions");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(JOBS));
    for concurrency in [64usize, 256] {
        g.bench_function(BenchmarkId::from_parameter(format!("webhooks={JOBS}/concurrency={concurrency}")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rt.block_on(async {
                        let dir = tempfile::tempdir().unwrap();
                        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
                        seed(&store, &url).await;
                        assert_eq!(queue_len(&store), JOBS as usize);
                        let lanes = Lanes::new(store.clone(), Arc::new(Hub::default()), None);
                        let config = RunnerConfig {
                            concurrency,
                            timeout: Duration::from_secs(10),
                            max_attempts: 3,
                            backoff: Duration::from_millis(100),
                        };
                        let runner = Runner::new(store.clone(), lanes, Registry::builtin(), config);
                        let (stop, stopped) = tokio::sync::watch::channel(false);
                        let start = Instant::now();
                        let task = tokio::spawn(runner.run(stopped));
                        while queue_len(&store) > 0 {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        let took = start.elapsed();
                        let _ = stop.send(true);
                        let _ = task.await;
                        took
                    });
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(action_benches, benches);
criterion_main!(action_benches);
