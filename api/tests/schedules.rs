//! Schedules: post events and start executions on a cron pattern, stop when deleted, are
//! org-scoped and role-checked, and collapse missed occurrences into one run.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{TestApp, assert_problem};
use pled_api::auth::Role;
use pled_api::schedules::Schedule;
use pled_core::RecordedAt;
use serde_json::{Value, json};

fn counter() -> Value {
    json!({
        "name": "counter",
        "variables": [{"name": "n", "type": "int", "default": 0}],
        "states": [{"id": "on", "initial": true}],
        "transitions": [{"id": "tick", "from": "on", "to": "on", "on": "tick", "assign": {"n": "vars.n + 1"}}]
    })
}

async fn ticks(t: &TestApp, eid: &str) -> Vec<Value> {
    let r = t.get(&format!("/v1/executions/{eid}/events?limit=500"), t.admin("acme")).await;
    r.body["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_posts_events_until_it_is_deleted() {
    let t = TestApp::new();
    let _workers = t.start_workers();
    let tid = t.published_template("acme", &counter()).await;
    let eid = t.execution("acme", &tid).await;
    let body = json!({"cron": "* * * * * *", "target": {"kind": "post_event", "executionId": eid, "type": "tick", "payload": {"k": 1}}});
    assert_problem(
        &t.post("/v1/schedules", t.token("acme", Role::Viewer), body.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_problem(&t.post("/v1/schedules", t.admin("globex"), body.clone()).await, StatusCode::NOT_FOUND, "not_found");
    let bad = json!({"cron": "every minute", "target": body["target"]});
    assert_problem(&t.post("/v1/schedules", t.admin("acme"), bad).await, StatusCode::BAD_REQUEST, "bad_request");
    let r = t.post("/v1/schedules", t.token("acme", Role::Operator), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();

    let mut items = Vec::new();
    for _ in 0..200 {
        items = ticks(&t, &eid).await;
        if items.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(items.len() >= 2, "{items:?}");
    assert_eq!(items[0]["type"], "tick");
    assert_eq!(items[0]["source"], format!("schedule:{id}"));
    assert_eq!(items[0]["payload"], json!({"k": 1}));

    // The schedule's record is updated after its run's event is written: it may lag the
    // events by one run for a moment.
    let path = format!("/v1/schedules/{id}");
    let mut one = t.get(&path, t.token("acme", Role::Viewer)).await;
    for _ in 0..100 {
        if one.body["runs"].as_u64().unwrap() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        one = t.get(&path, t.token("acme", Role::Viewer)).await;
    }
    assert_eq!(one.status, StatusCode::OK);
    assert!(one.body["runs"].as_u64().unwrap() >= 2, "{:?}", one.body);
    assert_eq!(one.body["lastResult"]["ok"], true);
    assert_problem(&t.get(&path, t.admin("globex")).await, StatusCode::NOT_FOUND, "not_found");
    let list = t.get("/v1/schedules", t.admin("acme")).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert!(t.get("/v1/schedules", t.admin("globex")).await.body["items"].as_array().unwrap().is_empty());

    assert_problem(
        &t.call(Method::DELETE, &path, Some(t.token("acme", Role::Viewer)), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t.call(Method::DELETE, &path, Some(t.token("acme", Role::Operator)), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = ticks(&t, &eid).await.len();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(ticks(&t, &eid).await.len(), after, "no run after delete");
    assert!(t.store.scan(pled_store::Table::Queue, b"s", b"", 10).unwrap().is_empty());
    let audit = t.get("/v1/audit?limit=500", t.admin("acme")).await;
    let actions: Vec<&str> =
        audit.body["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"schedule.created") && actions.contains(&"schedule.deleted"), "{actions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_starts_executions() {
    let t = TestApp::new();
    let _workers = t.start_workers();
    let tid = t.published_template("acme", &counter()).await;
    let body = json!({"cron": "* * * * * *", "target": {"kind": "start_execution", "templateId": tid, "name": "nightly", "variables": {"n": 5}}});
    let r = t.post("/v1/schedules", t.admin("acme"), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let mut started = Vec::new();
    for _ in 0..200 {
        let list = t.get("/v1/executions", t.admin("acme")).await;
        started = list.body["items"].as_array().unwrap().clone();
        if !started.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!started.is_empty());
    assert_eq!(started[0]["createdBy"], format!("schedule:{id}"));
    assert_eq!(started[0]["name"], "nightly");
    let eid = started[0]["id"].as_str().unwrap();
    let state = t.get(&format!("/v1/executions/{eid}/state"), t.admin("acme")).await;
    assert_eq!(state.body["vars"]["n"], 5, "{:?}", state.body);
    t.call(Method::DELETE, &format!("/v1/schedules/{id}"), Some(t.admin("acme")), None).await;
}

/// Ten missed minutes (the service was down) make one run, then the schedule goes on from
/// the next occurrence after now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_occurrences_collapse_into_one_run() {
    let t = TestApp::new();
    let tid = t.published_template("acme", &counter()).await;
    let eid = t.execution("acme", &tid).await;
    let body = json!({"cron": "* * * * *", "target": {"kind": "post_event", "executionId": eid, "type": "tick"}});
    let r = t.post("/v1/schedules", t.admin("acme"), body).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    // As if the service had been down since ten minutes before its first occurrence.
    let key = format!("sched/acme/{id}");
    let mut sched: Schedule =
        serde_json::from_slice(&t.store.get(pled_store::Table::Meta, key.as_bytes()).unwrap().unwrap()).unwrap();
    let old = sched.next_due;
    let minute = 60_000_000;
    sched.next_due = (RecordedAt::now().unix_micros() / minute - 10) * minute;
    t.store.write(sched.put(pled_store::WriteSet::new(), Some(old)).unwrap()).await.unwrap();

    let _workers = t.start_workers();
    let mut one = Value::Null;
    for _ in 0..200 {
        one = t.get(&format!("/v1/schedules/{id}"), t.admin("acme")).await.body;
        if one["runs"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(one["runs"], 1, "{one}");
    let missed = one["missedRuns"].as_u64().unwrap();
    assert!((9..=11).contains(&missed), "{one}");
    assert!(
        RecordedAt::parse(one["nextRunAt"].as_str().unwrap()).unwrap().unix_micros() > RecordedAt::now().unix_micros()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ticks(&t, &eid).await.len(), 1, "one run for all the missed ones");
}
