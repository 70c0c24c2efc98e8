//! Operator controls through the router: roles (403), reasons (400), `admin.*` entries with
//! the actor and reason plus an audit record, the paused queue applied in order on resume,
//! 409 once cancelled or completed, forced transitions and actions, and 404 across orgs for
//! every new endpoint.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, assert_problem, example};
use pled_api::auth::Role;
use pled_core::ExecutionId;
use pled_store::Table;
use serde_json::{Value, json};

async fn approval(t: &TestApp) -> String {
    let (template, _) = example("approval");
    let tid = t.published_template("acme", &template).await;
    t.execution("acme", &tid).await
}

async fn ledger(t: &TestApp, eid: &str) -> Vec<Value> {
    let r = t.get(&format!("/v1/executions/{eid}/ledger?limit=1000"), t.admin("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["entries"].as_array().unwrap().clone()
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["kind"].as_str().unwrap()).collect()
}

fn jobs(t: &TestApp, eid: &str) -> Vec<(String, Value)> {
    let id: ExecutionId = eid.parse().unwrap();
    t.store
        .scan(Table::Jobs, id.as_bytes(), b"", 100_000)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k[16..]).into_owned(), serde_json::from_slice(&v).unwrap()))
        .collect()
}

async fn head(t: &TestApp, eid: &str) -> u64 {
    t.get(&format!("/v1/executions/{eid}/state"), t.admin("acme")).await.body["headSeq"].as_u64().unwrap()
}

const CONTROLS: [&str; 6] = ["pause", "resume", "cancel", "complete", "force-transition", "force-action"];

fn valid_body(op: &str) -> Value {
    match op {
        "force-transition" => json!({"toState": "review", "reason": "stuck"}),
        "force-action" => json!({"actionId": "notify-reviewers", "reason": "resend"}),
        _ => json!({"reason": "maintenance window"}),
    }
}

#[tokio::test]
async fn controls_need_the_right_role_and_a_reason_and_refusals_write_nothing() {
    let t = TestApp::new();
    let eid = approval(&t).await;
    let before = head(&t, &eid).await;
    for op in CONTROLS {
        let path = format!("/v1/executions/{eid}/{op}");
        for role in [Role::Viewer, Role::Editor] {
            let r = t.post(&path, t.token("acme", role), valid_body(op)).await;
            assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
        }
        if op == "force-transition" {
            // Operators operate; forcing a transition is an admin action.
            let r = t.post(&path, t.token("acme", Role::Operator), valid_body(op)).await;
            assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
        }
        let mut no_reason = valid_body(op);
        no_reason.as_object_mut().unwrap().remove("reason");
        for body in [no_reason.clone(), {
            let mut b = no_reason.clone();
            b["reason"] = json!("   ");
            b
        }] {
            let r = t.post(&path, t.admin("acme"), body).await;
            assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
            assert_eq!(r.body["errors"][0]["path"], "/reason", "{op}: {:?}", r.body);
        }
    }
    let r = t.post(&format!("/v1/executions/{eid}/force-transition"), t.admin("acme"), json!({"reason": "x"})).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(head(&t, &eid).await, before, "refused controls write nothing");
}

#[tokio::test]
async fn pause_is_an_admin_entry_with_actor_and_reason_and_an_audit_record() {
    let t = TestApp::new();
    let eid = approval(&t).await;
    let op = t.token("acme", Role::Operator);
    let r = t.post(&format!("/v1/executions/{eid}/pause"), op, json!({"reason": "supplier audit"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "paused");
    assert_eq!(r.body["action"], "admin.paused");
    let entries = ledger(&t, &eid).await;
    let last = entries.last().unwrap();
    assert_eq!(last["kind"], "admin.paused");
    assert_eq!(last["seq"], r.body["seq"]);
    let actor = last["body"]["actor"].as_str().unwrap();
    assert!(actor.starts_with("pat:"), "{actor}");
    assert_eq!(last["body"]["reason"], "supplier audit");
    let audit = t.get("/v1/audit?limit=500", t.admin("acme")).await;
    let rec = audit.body["items"].as_array().unwrap().iter().find(|a| a["action"] == "execution.paused").unwrap();
    assert_eq!(rec["target"], eid.as_str());
    assert_eq!(rec["actor"], actor);
    assert_eq!(rec["details"]["reason"], "supplier audit");
    assert_eq!(rec["details"]["seq"], r.body["seq"]);
    // Pausing twice is a conflict; so is resuming a running execution.
    let again = t.post(&format!("/v1/executions/{eid}/pause"), op, json!({"reason": "again"})).await;
    assert_problem(&again, StatusCode::CONFLICT, "conflict");
    let state = t.get(&format!("/v1/executions/{eid}/state"), op).await;
    assert_eq!(state.body["status"], "paused");
}

#[tokio::test]
async fn events_to_a_paused_execution_queue_in_order_and_apply_on_resume() {
    let t = TestApp::new();
    let eid = approval(&t).await;
    let (_, events) = example("approval");
    let op = t.token("acme", Role::Operator);
    let r = t.post(&format!("/v1/executions/{eid}/resume"), op, json!({"reason": "not paused"})).await;
    assert_problem(&r, StatusCode::CONFLICT, "conflict");
    t.post(&format!("/v1/executions/{eid}/pause"), op, json!({"reason": "hold"})).await;
    let mut queued = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let r = t.post(&format!("/v1/executions/{eid}/events"), op, ev.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.body["queued"], true);
        assert_eq!(r.body["queuePosition"], i as u64 + 1);
        assert_eq!(r.body["status"], "paused");
        queued.push(r.body["seq"].as_u64().unwrap());
    }
    let state = t.get(&format!("/v1/executions/{eid}/state"), op).await;
    assert_eq!((state.body["state"].as_str(), state.body["eventCount"].as_u64()), (Some("draft"), Some(0)));
    let listed = t.get(&format!("/v1/executions/{eid}/events"), op).await;
    assert!(listed.body["items"].as_array().unwrap().is_empty(), "queued events are not applied");

    let headers = [("idempotency-key", "resume-1")];
    let body = json!({"reason": "audit done", "approval": {"by": "cfo", "ticket": 42}});
    let path = format!("/v1/executions/{eid}/resume");
    let r = t.call_with(Method::POST, &path, Some(op), Some(body.clone()), &headers).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "completed", "the queued events drove the example to its end");
    let applied = r.body["applied"].as_array().unwrap();
    let order: Vec<(u64, u64)> =
        applied.iter().map(|a| (a["queuedSeq"].as_u64().unwrap(), a["eventSeq"].as_u64().unwrap())).collect();
    assert_eq!(order, queued.iter().enumerate().map(|(i, q)| (*q, i as u64 + 1)).collect::<Vec<_>>());
    // The same key and body: the stored answer, nothing applied twice.
    let again = t.call_with(Method::POST, &path, Some(op), Some(body), &headers).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers.get("idempotency-replayed").unwrap(), "true");
    assert_eq!(again.body, r.body);

    let entries = ledger(&t, &eid).await;
    let resumed = entries.iter().position(|e| e["kind"] == "admin.resumed").unwrap();
    assert_eq!(entries[resumed]["body"]["applied"], json!(queued));
    assert_eq!(entries[resumed]["body"]["approval"], json!({"by": "cfo", "ticket": 42}));
    let received: Vec<&Value> = entries[resumed..].iter().filter(|e| e["kind"] == "event.received").collect();
    let types: Vec<&str> = received.iter().map(|e| e["body"]["type"].as_str().unwrap()).collect();
    let sent: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, sent, "applied in the order they were queued");
    for e in &received {
        assert_eq!(e["recorded_at"], entries[resumed]["recorded_at"], "applied when resumed");
    }
    let queued_entries: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "event.queued").collect();
    assert_eq!(queued_entries.len(), 3);
    assert_eq!(queued_entries[1]["body"]["payload"], events[1]["payload"]);
}

#[tokio::test]
async fn cancelled_and_completed_executions_refuse_events_and_controls_with_409() {
    let t = TestApp::new();
    let (_, events) = example("approval");
    let op = t.token("acme", Role::Operator);
    for end in ["cancel", "complete"] {
        let eid = approval(&t).await;
        t.post(&format!("/v1/executions/{eid}/pause"), op, json!({"reason": "hold"})).await;
        t.post(&format!("/v1/executions/{eid}/events"), op, events[0].clone()).await;
        let r = t.post(&format!("/v1/executions/{eid}/{end}"), op, json!({"reason": "customer withdrew"})).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let status = if end == "cancel" { "cancelled" } else { "completed" };
        assert_eq!(r.body["status"], status);
        let entries = ledger(&t, &eid).await;
        assert_eq!(entries.last().unwrap()["kind"], format!("admin.{status}"));
        assert_eq!(entries.last().unwrap()["body"]["discarded"], 1, "the queued event is dropped");
        let before = head(&t, &eid).await;
        let r = t.post(&format!("/v1/executions/{eid}/events"), op, events[0].clone()).await;
        assert_problem(&r, StatusCode::CONFLICT, "conflict");
        assert_eq!(r.body["executionStatus"], status);
        for other in CONTROLS {
            let r = t.post(&format!("/v1/executions/{eid}/{other}"), t.admin("acme"), valid_body(other)).await;
            assert_problem(&r, StatusCode::CONFLICT, "conflict");
        }
        assert_eq!(head(&t, &eid).await, before);
    }
}

#[tokio::test]
async fn forced_transitions_and_actions_apply_like_the_engine_and_create_jobs() {
    let t = TestApp::new();
    let eid = approval(&t).await;
    let admin = t.admin("acme");
    let path = format!("/v1/executions/{eid}/force-transition");
    // `submit` assigns from msg.data: without it, nothing applies.
    let r = t.post(&path, admin, json!({"transitionId": "submit", "reason": "manual"})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "force_refused");
    let r = t.post(&path, admin, json!({"transitionId": "approve", "reason": "manual"})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "force_refused");
    assert!(r.body["detail"].as_str().unwrap().contains("wrong_state"), "{:?}", r.body);
    let jobs_before = jobs(&t, &eid).len();
    let data = json!({"orderId": "PO-9", "amount": -5, "requester": "eve"});
    let r = t.post(&path, admin, json!({"transitionId": "submit", "data": data, "reason": "guard bypass"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"]["state"], "review");
    assert_eq!(r.body["state"]["vars"]["amount"], -5, "the guard (amount > 0) was not evaluated");
    let entries = ledger(&t, &eid).await;
    let at = entries.iter().position(|e| e["kind"] == "admin.transition_forced").unwrap();
    assert_eq!(
        kinds(&entries[at..]),
        ["admin.transition_forced", "transition.forced", "action.scheduled", "timer.armed"]
    );
    assert_eq!(entries[at]["body"]["transitionId"], "submit");
    assert_eq!(entries[at]["body"]["data"], data);
    let key = format!("forced.{}:1:notify-reviewers", entries[at]["seq"]);
    assert_eq!(entries[at + 2]["body"]["jobKey"], key);
    let all = jobs(&t, &eid);
    assert_eq!(all.len(), jobs_before + 1);
    assert!(all.iter().any(|(k, j)| *k == key && j["actionId"] == "notify-reviewers"), "{all:?}");

    // An operator re-sends a notification.
    let op = t.token("acme", Role::Operator);
    let r = t
        .post(
            &format!("/v1/executions/{eid}/force-action"),
            op,
            json!({"actionId": "notify-reviewers", "reason": "reviewer missed it"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let entries = ledger(&t, &eid).await;
    let n = entries.len();
    assert_eq!(kinds(&entries[n - 2..]), ["admin.action_forced", "action.scheduled"]);
    assert_eq!(entries[n - 1]["body"]["input"]["body"]["orderId"], "PO-9");
    assert_eq!(jobs(&t, &eid).len(), jobs_before + 2);
    let r = t.post(&format!("/v1/executions/{eid}/force-action"), op, json!({"actionId": "nope", "reason": "x"})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "force_refused");

    // A move to a final state completes the execution.
    let r = t.post(&path, admin, json!({"toState": "rejected", "reason": "fraud"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "completed");
    let audit = t.get("/v1/audit?limit=500", admin).await;
    let actions: Vec<&str> =
        audit.body["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"execution.transition_forced") && actions.contains(&"execution.action_forced"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn every_new_endpoint_answers_404_for_another_orgs_execution() {
    let t = TestApp::new();
    let eid = approval(&t).await;
    let other = t.admin("globex");
    let posts = [
        ("pause", json!({"reason": "x"})),
        ("resume", json!({"reason": "x"})),
        ("cancel", json!({"reason": "x"})),
        ("complete", json!({"reason": "x"})),
        ("force-transition", json!({"toState": "review", "reason": "x"})),
        ("force-action", json!({"actionId": "notify-reviewers", "reason": "x"})),
        ("snapshot", json!({})),
        ("replay", json!({})),
        ("compare", json!({"version": 1})),
    ];
    for (op, body) in posts {
        let r = t.post(&format!("/v1/executions/{eid}/{op}"), other, body).await;
        assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    }
    for path in ["snapshots", "snapshots/1"] {
        let r = t.get(&format!("/v1/executions/{eid}/{path}"), other).await;
        assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    }
    // And the owner sees them.
    assert_eq!(t.get(&format!("/v1/executions/{eid}/snapshots"), t.admin("acme")).await.status, StatusCode::OK);
}
