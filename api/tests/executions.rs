//! Executions through the router: state and ledger as the examples say, idempotency and
//! ordering under concurrency, tokens, batches, bad input that writes nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{TestApp, assert_problem, example};
use pled_core::{ExecutionId, SealedEntry, verify_chain};
use serde_json::{Value, json};

fn ledger(v: &Value) -> Vec<SealedEntry> {
    v["entries"].as_array().unwrap().iter().map(|e| SealedEntry::from_export_value(e).unwrap()).collect()
}

#[tokio::test]
async fn the_examples_run_to_completion_and_their_ledgers_verify() {
    for name in ["approval", "tokens"] {
        let t = TestApp::new();
        let admin = t.admin("acme");
        let (template, events) = example(name);
        let tid = t.published_template("acme", &template).await;
        let eid = t.execution("acme", &tid).await;
        let mut last_seq = 0;
        for (i, ev) in events.iter().enumerate() {
            let r = t.post(&format!("/v1/executions/{eid}/events"), admin, ev.clone()).await;
            assert_eq!(r.status, StatusCode::CREATED, "{name} event {i}: {:?}", r.body);
            assert_eq!(r.body["eventSeq"], i as u64 + 1);
            let entries = r.body["entries"].as_array().unwrap();
            assert_eq!(entries[0]["kind"], "event.received");
            assert_eq!(
                entries[0]["seq"].as_u64().unwrap(),
                last_seq + if i == 0 { entries[0]["seq"].as_u64().unwrap() - last_seq } else { 1 }
            );
            last_seq = r.body["headSeq"].as_u64().unwrap();
        }
        let state = t.get(&format!("/v1/executions/{eid}/state"), admin).await;
        assert_eq!(state.body["status"], "completed", "{name}: {:?}", state.body);
        assert_eq!(state.body["headSeq"].as_u64(), Some(last_seq));
        let page = t.get(&format!("/v1/executions/{eid}/ledger?limit=1000"), admin).await;
        let chain = ledger(&page.body);
        let head = verify_chain(eid.parse::<ExecutionId>().unwrap(), &chain).unwrap();
        assert_eq!(head.hash.to_hex(), state.body["headHash"].as_str().unwrap());
        assert_eq!(chain[0].entry().kind.as_str(), "execution.created");
        // Events and messages read back from the ledger.
        let evs = t.get(&format!("/v1/executions/{eid}/events"), admin).await;
        assert_eq!(evs.body["items"].as_array().unwrap().len(), events.len());
        assert_eq!(evs.body["items"][0]["type"], events[0]["type"]);
        let msgs = t.get(&format!("/v1/executions/{eid}/messages"), admin).await;
        assert!(!msgs.body["items"].as_array().unwrap().is_empty());
        // Completed: further events are refused and nothing is written.
        let r = t.post(&format!("/v1/executions/{eid}/events"), admin, events[0].clone()).await;
        assert_problem(&r, StatusCode::CONFLICT, "conflict");
        let after = t.get(&format!("/v1/executions/{eid}/state"), admin).await;
        assert_eq!(after.body["headSeq"].as_u64(), Some(last_seq));
    }
}

#[tokio::test]
async fn token_accounting_is_listed_and_conserved() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (template, events) = example("tokens");
    let tid = t.published_template("acme", &template).await;
    let eid = t.execution("acme", &tid).await;
    for ev in &events {
        t.post(&format!("/v1/executions/{eid}/events"), admin, ev.clone()).await;
    }
    let tokens = t.get(&format!("/v1/executions/{eid}/tokens"), admin).await;
    assert_eq!(tokens.status, StatusCode::OK);
    let movements = tokens.body["movements"].as_array().unwrap();
    let kinds: HashSet<_> = movements.iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains("token.minted") && kinds.contains("token.consumed"), "{kinds:?}");
    // Conservation: every balance is what was minted minus what left.
    let minted: u128 = movements
        .iter()
        .filter(|m| m["kind"] == "token.minted")
        .map(|m| m["amount"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    let consumed: u128 = movements
        .iter()
        .filter(|m| m["kind"] == "token.consumed")
        .map(|m| m["amount"].as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    let held: u128 = tokens.body["balances"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|accts| accts.as_object().unwrap().values())
        .map(|v| v.as_str().unwrap().parse::<u128>().unwrap())
        .sum();
    assert_eq!(minted, consumed + held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_posted_50_times_in_parallel_is_applied_once() {
    let t = Arc::new(TestApp::new());
    let (template, events) = example("approval");
    let tid = t.published_template("acme", &template).await;
    let eid = t.execution("acme", &tid).await;
    let before = t.get(&format!("/v1/executions/{eid}/state"), t.admin("acme")).await.body["headSeq"].as_u64().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (t, eid, ev) = (t.clone(), eid.clone(), events[0].clone());
        tasks.push(tokio::spawn(async move {
            t.call_with(
                Method::POST,
                &format!("/v1/executions/{eid}/events"),
                Some(t.admin("acme")),
                Some(ev),
                &[("idempotency-key", "submit-once")],
            )
            .await
        }));
    }
    let mut bodies = Vec::new();
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        bodies.push(r.body);
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]), "every caller gets the same answer");
    let state = t.get(&format!("/v1/executions/{eid}/state"), t.admin("acme")).await;
    assert_eq!(state.body["eventCount"], 1);
    let added = state.body["headSeq"].as_u64().unwrap() - before;
    assert_eq!(added as usize, bodies[0]["entries"].as_array().unwrap().len());
    // Same key, other body: 422, nothing written.
    let r = t
        .call_with(
            Method::POST,
            &format!("/v1/executions/{eid}/events"),
            Some(t.admin("acme")),
            Some(events[1].clone()),
            &[("idempotency-key", "submit-once")],
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_events_get_contiguous_seqs_and_one_chain() {
    let t = Arc::new(TestApp::new());
    // A template where any "ping" is recorded and changes nothing.
    let template = json!({
        "name": "pings",
        "variables": [{ "name": "n", "type": "int", "default": 0 }],
        "states": [{ "id": "open", "initial": true }, { "id": "closed", "final": true }],
        "transitions": [
            { "id": "count", "from": "open", "to": "open", "on": "ping", "assign": { "n": "vars.n + 1" } },
            { "id": "close", "from": "open", "to": "closed", "on": "close" }
        ]
    });
    let tid = t.published_template("acme", &template).await;
    let eid = t.execution("acme", &tid).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (t, eid) = (t.clone(), eid.clone());
        tasks.push(tokio::spawn(async move {
            t.post(
                &format!("/v1/executions/{eid}/events"),
                t.admin("acme"),
                json!({ "type": "ping", "payload": { "i": i }, "source": "test" }),
            )
            .await
        }));
    }
    let mut event_seqs = HashSet::new();
    for task in tasks {
        let r = task.await.unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        event_seqs.insert(r.body["eventSeq"].as_u64().unwrap());
    }
    assert_eq!(event_seqs, (1..=40).collect());
    let state = t.get(&format!("/v1/executions/{eid}/state"), t.admin("acme")).await;
    assert_eq!(state.body["vars"]["n"], 40);
    let page = t.get(&format!("/v1/executions/{eid}/ledger?limit=1000"), t.admin("acme")).await;
    let chain = ledger(&page.body);
    verify_chain(eid.parse().unwrap(), &chain).unwrap();
    assert_eq!(chain.len() as u64, state.body["headSeq"].as_u64().unwrap());
}

#[tokio::test]
async fn batches_are_all_or_nothing() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (template, events) = example("approval");
    let tid = t.published_template("acme", &template).await;
    let eid = t.execution("acme", &tid).await;
    let head = |b: &Value| b["headSeq"].as_u64().unwrap();
    let before = head(&t.get(&format!("/v1/executions/{eid}/state"), admin).await.body);
    // One bad event (integer too large) refuses the whole batch.
    let bad = json!({ "events": [events[0].clone(), { "type": "x", "payload": { "n": 9007199254740993u64 }, "source": "t" }] });
    let r = t.post(&format!("/v1/executions/{eid}/events/batch"), admin, bad).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(r.body["errors"][0]["path"], "/events/1/payload");
    assert_eq!(head(&t.get(&format!("/v1/executions/{eid}/state"), admin).await.body), before);
    let ok = t.post(&format!("/v1/executions/{eid}/events/batch"), admin, json!({ "events": events.clone() })).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
    assert_eq!(ok.body["events"].as_array().unwrap().len(), events.len());
    assert_eq!(ok.body["status"], "completed");
    assert_problem(
        &t.post(&format!("/v1/executions/{eid}/events/batch"), admin, json!({ "events": [] })).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

/// Pages after the largest seq a client can send are empty: reading "after u64::MAX" must not
/// wrap round to the chain's start (or, in a debug build, panic and drop the connection).
#[tokio::test]
async fn pages_after_the_largest_seq_are_empty() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (template, events) = example("approval");
    let eid = t.execution("acme", &t.published_template("acme", &template).await).await;
    t.post(&format!("/v1/executions/{eid}/events/batch"), admin, json!({ "events": events })).await;
    let max = u64::MAX;
    for (list, field) in [("ledger", "entries"), ("events", "items"), ("messages", "items"), ("snapshots", "items")] {
        let r = t.get(&format!("/v1/executions/{eid}/{list}?afterSeq={max}"), admin).await;
        assert_eq!(r.status, StatusCode::OK, "{list}: {:?}", r.body);
        assert_eq!(r.body[field], json!([]), "{list}: {:?}", r.body);
        assert!(r.body.get("nextAfterSeq").is_none(), "{list}: {:?}", r.body);
    }
}

#[tokio::test]
async fn bad_event_input_is_refused_and_writes_nothing() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (template, _) = example("approval");
    let tid = t.published_template("acme", &template).await;
    let eid = t.execution("acme", &tid).await;
    let unknown = ExecutionId::new_v7();
    let ev = json!({ "type": "order.submitted", "payload": {}, "source": "t" });
    assert_problem(
        &t.post(&format!("/v1/executions/{unknown}/events"), admin, ev).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    for (body, path) in [
        (json!({ "type": "x", "payload": [1], "source": "t" }), "/payload"),
        (json!({ "type": "", "payload": {}, "source": "t" }), "/type"),
        (json!({ "type": "x", "payload": {}, "source": "" }), "/source"),
        (json!({ "type": "x", "payload": { "big": 18446744073709551615u64 }, "source": "t" }), "/payload"),
        (json!({ "type": "x", "payload": {}, "source": "t", "extra": 1 }), "/extra"),
        (json!({ "payload": {}, "source": "t" }), "/"),
    ] {
        let r = t.post(&format!("/v1/executions/{eid}/events"), admin, body).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
        assert!(r.body["errors"][0]["path"].as_str().unwrap_or("/").starts_with(path), "{path}: {:?}", r.body);
    }
    // Integers of request bodies, like those of payloads, stay within ±(2^53-1).
    let beyond = pled_core::MAX_SAFE_INTEGER + 1;
    for (route, body, path) in [
        ("replay", json!({ "upToSeq": beyond }), "/upToSeq"),
        ("replay", json!({ "fromSnapshotId": beyond, "background": true }), "/fromSnapshotId"),
        ("compare", json!({ "version": 1, "upToSeq": beyond }), "/upToSeq"),
        ("commitments", json!({ "rangeEnd": beyond }), "/rangeEnd"),
    ] {
        let r = t.post(&format!("/v1/executions/{eid}/{route}"), admin, body).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(r.body["errors"][0]["path"], path, "{route}: {:?}", r.body);
    }
    assert_eq!(t.get(&format!("/v1/executions/{eid}/commitments"), admin).await.body, json!([]));
    assert_eq!(t.get("/v1/replays", admin).await.body["items"], json!([]));
    let state = t.get(&format!("/v1/executions/{eid}/state"), admin).await;
    assert_eq!(state.body["eventCount"], 0);
    // Unknown template, unknown version.
    assert_problem(
        &t.post("/v1/executions", admin, json!({ "templateId": "nope", "name": "x" })).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &t.post("/v1/executions", admin, json!({ "templateId": tid, "version": 9, "name": "x" })).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn lists_filter_by_template_and_status_and_wait_returns_when_reached() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (template, events) = example("approval");
    let tid = t.published_template("acme", &template).await;
    let done = t.execution("acme", &tid).await;
    let open = t.execution("acme", &tid).await;
    t.post(&format!("/v1/executions/{done}/events/batch"), admin, json!({ "events": events })).await;
    let completed = t.get("/v1/executions?status=completed", admin).await;
    let ids: Vec<_> =
        completed.body["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, std::slice::from_ref(&done));
    let by_template = t.get(&format!("/v1/executions?templateId={tid}"), admin).await;
    assert_eq!(by_template.body["items"].as_array().unwrap().len(), 2);
    let r = t.get(&format!("/v1/executions/{done}/wait?status=completed&timeoutMs=10"), admin).await;
    assert_eq!(r.body["reached"], true);
    let r = t.get(&format!("/v1/executions/{open}/wait?status=completed&timeoutMs=50"), admin).await;
    assert_eq!(r.body["reached"], false);
    assert_problem(&t.get(&format!("/v1/executions/{open}/wait"), admin).await, StatusCode::BAD_REQUEST, "bad_request");
    // A state the template does not have would never be reached: refused at once, naming them.
    for missing in ["aproved", ""] {
        let r = t.get(&format!("/v1/executions/{open}/wait?state={missing}&timeoutMs=60000"), admin).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(r.body["errors"][0]["path"], "state");
        assert!(r.body["detail"].as_str().unwrap().contains("(its states: draft, "), "{}", r.body);
    }
    let r = t.get(&format!("/v1/executions/{open}/wait?state=draft&timeoutMs=10"), admin).await;
    assert_eq!(r.body["reached"], true, "{}", r.body);
}

/// A long-poll asked to wait longer than the request time-out still answers itself
/// (`reached: false`, just inside the time-out), never the time-out layer's 503: with the
/// defaults (30 s both) every wait that timed out used to be a 503.
#[tokio::test]
async fn a_wait_longer_than_the_request_timeout_answers_not_reached_in_time() {
    let t = TestApp::with_config(|c| c.request_timeout = std::time::Duration::from_millis(1500));
    let admin = t.admin("acme");
    let (template, _) = example("approval");
    let tid = t.published_template("acme", &template).await;
    let open = t.execution("acme", &tid).await;
    let started = std::time::Instant::now();
    let r = t.get(&format!("/v1/executions/{open}/wait?status=completed&timeoutMs=120000"), admin).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["reached"], false);
    assert_eq!(r.body["state"]["executionId"], open.as_str());
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900) && waited < std::time::Duration::from_millis(1500),
        "{waited:?}"
    );
}
