//! Timers fire durably: once, after a restart of the real binary; never once their state was
//! left; not while the execution is paused (on resume instead); replay stays pure.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::TestApp;
use pled_store::Table;
use serde_json::{Value, json};

/// `waiting` (initial) --after 1s--> `expired` (final); `waiting` --answer--> `answered`.
fn template() -> Value {
    json!({
        "name": "deadline",
        "states": [{"id": "waiting", "initial": true}, {"id": "answered"}, {"id": "expired", "final": true}],
        "transitions": [
            {"id": "expire", "from": "waiting", "to": "expired", "after": "1s"},
            {"id": "answer", "from": "waiting", "to": "answered", "on": "answer"}
        ]
    })
}

async fn ledger_kinds(t: &TestApp, eid: &str) -> Vec<String> {
    let r = t.get(&format!("/v1/executions/{eid}/ledger?limit=1000"), t.admin("acme")).await;
    r.body["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

fn count(kinds: &[String], k: &str) -> usize {
    kinds.iter().filter(|x| *x == k).count()
}

fn timer_keys(t: &TestApp) -> usize {
    t.store.scan(Table::Queue, b"t", b"", 100).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_timer_fires_once_and_replay_fires_nothing() {
    let t = TestApp::new();
    let _workers = t.start_workers();
    let tid = t.published_template("acme", &template()).await;
    let eid = t.execution("acme", &tid).await;
    assert_eq!(timer_keys(&t), 1, "armed at start, indexed with the start");
    let r = t.get(&format!("/v1/executions/{eid}/wait?state=expired&timeoutMs=10000"), t.admin("acme")).await;
    assert_eq!(r.body["reached"], true, "{:?}", r.body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kinds = ledger_kinds(&t, &eid).await;
    assert_eq!(count(&kinds, "timer.armed"), 1);
    assert_eq!(count(&kinds, "timer.fired"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "timer.ignored"), 0);
    assert_eq!(count(&kinds, "execution.completed"), 1);
    assert_eq!(timer_keys(&t), 0);

    let head = t.store.feed_head();
    let r = t.post(&format!("/v1/executions/{eid}/replay"), t.admin("acme"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["identical"], true, "{:#}", r.body);
    assert_eq!(t.store.feed_head(), head, "replay appends nothing");
    assert_eq!(timer_keys(&t), 0, "replay arms no timer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_whose_state_was_left_first_never_fires() {
    let t = TestApp::new();
    let _workers = t.start_workers();
    let tid = t.published_template("acme", &template()).await;
    let eid = t.execution("acme", &tid).await;
    let r = t
        .post(
            &format!("/v1/executions/{eid}/events"),
            t.admin("acme"),
            json!({"type": "answer", "payload": {}, "source": "t"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(timer_keys(&t), 0, "cancelled in the same write");
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let kinds = ledger_kinds(&t, &eid).await;
    assert_eq!(count(&kinds, "timer.cancelled"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "timer.fired") + count(&kinds, "timer.ignored"), 0, "{kinds:?}");
    let state = t.get(&format!("/v1/executions/{eid}/state"), t.admin("acme")).await;
    assert_eq!(state.body["state"], "answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_execution_fires_its_due_timer_on_resume() {
    let t = TestApp::new();
    let _workers = t.start_workers();
    let tid = t.published_template("acme", &template()).await;
    let eid = t.execution("acme", &tid).await;
    let r = t.post(&format!("/v1/executions/{eid}/pause"), t.admin("acme"), json!({"reason": "hold"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(timer_keys(&t), 0, "a paused execution's timers are out of the index");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(count(&ledger_kinds(&t, &eid).await, "timer.fired"), 0);
    let r = t.post(&format!("/v1/executions/{eid}/resume"), t.admin("acme"), json!({"reason": "go"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = t.get(&format!("/v1/executions/{eid}/wait?state=expired&timeoutMs=10000"), t.admin("acme")).await;
    assert_eq!(r.body["reached"], true, "{:?}", r.body);
    assert_eq!(count(&ledger_kinds(&t, &eid).await, "timer.fired"), 1);
}

/// Armed, then the server is SIGKILLed before the timer is due; after a restart (past the due
/// time) it fires exactly once, and the chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_fires_once_after_a_restart() {
    use common::server::{PLED, Server};
    let server = Server::start(&["--chain", "off"]);
    let tid = server.post("/v1/templates", template()).await["id"].as_str().unwrap().to_owned();
    server.post(&format!("/v1/templates/{tid}/versions"), json!({})).await;
    let eid =
        server.post("/v1/executions", json!({"templateId": tid, "name": "t"})).await["id"].as_str().unwrap().to_owned();
    let token = server.token.clone();
    let dir = server.kill();
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    let server = Server::start_on(dir, token, &["--chain", "off"], &[]);
    let mut state = Value::Null;
    for _ in 0..200 {
        state = server.get(&format!("/v1/executions/{eid}/state")).await;
        if state["state"] == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(state["state"], "expired", "{state}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = server.get(&format!("/v1/executions/{eid}/ledger?limit=1000")).await;
    let fired = page["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "timer.fired").count();
    assert_eq!(fired, 1);
    let dir = server.stop();
    let out = std::process::Command::new(PLED).args(["verify", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// A store from before the timer index (armed timers only in the states) gets its index
/// built once at start, and the timers fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_armed_before_the_index_existed_are_indexed_at_start() {
    let t = TestApp::new();
    let tid = t.published_template("acme", &template()).await;
    let eid = t.execution("acme", &tid).await;
    let keys = t.store.scan(Table::Queue, b"t", b"", 100).unwrap();
    assert_eq!(keys.len(), 1);
    let mut ws = pled_store::WriteSet::new();
    for (k, _) in keys {
        ws = ws.delete(Table::Queue, k);
    }
    t.store.write(ws).await.unwrap();
    let _workers = t.start_workers();
    let r = t.get(&format!("/v1/executions/{eid}/wait?state=expired&timeoutMs=10000"), t.admin("acme")).await;
    assert_eq!(r.body["reached"], true, "{:?}", r.body);
    assert!(t.store.get(Table::Meta, b"index/backfill-v1").unwrap().is_some());
}
