//! AI rules in the service: the output comes from the provider once, is cached by input hash
//! in the store, and every later identical input (and replay) uses the cache; without an
//! output the rule is recorded as failed and the pipeline goes on.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use common::TestApp;
use serde_json::{Value, json};

/// A stand-in model on 127.0.0.1 (OpenAI chat-completions shape) that counts its calls.
async fn stub_provider() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let prompt = body["messages"][0]["content"].as_str().unwrap_or("");
                let category = if prompt.contains("invoice") { "invoice" } else { "other" };
                axum::Json(
                    json!({ "choices": [{ "message": { "content": json!({ "category": category }).to_string() } }] }),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1/chat/completions"), calls)
}

fn template() -> Value {
    json!({
        "name": "classify documents",
        "states": [{ "id": "inbox", "initial": true }, { "id": "invoices", "final": true }, { "id": "other", "final": true }],
        "transitions": [
            { "id": "to-invoices", "from": "inbox", "to": "invoices", "on": "doc.classified", "guard": "msg.data.category == 'invoice'" },
            { "id": "to-other", "from": "inbox", "to": "other", "on": "doc.classified" }
        ],
        "rules": [{ "id": "classify", "on": "doc.uploaded", "kind": "ai", "model": "classifier-1", "prompt": "Classify: {{text}}", "inputs": { "text": "event.payload.text" }, "emit": { "type": "doc.classified" } }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_is_asked_once_and_the_cache_answers_after() {
    let (endpoint, calls) = stub_provider().await;
    let t = TestApp::with_config(|c| c.ai_endpoint = Some(endpoint));
    let admin = t.admin("acme");
    let tid = t.published_template("acme", &template()).await;
    let upload = json!({ "type": "doc.uploaded", "payload": { "text": "invoice #42" }, "source": "scanner" });

    let a = t.execution("acme", &tid).await;
    let r = t.post(&format!("/v1/executions/{a}/events"), admin, upload.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let msg = &r.body["messages"][0];
    assert_eq!(msg["data"]["category"], "invoice");
    assert_eq!(msg["deterministic"], false);
    assert_eq!(msg["ai"]["model"], "classifier-1");
    assert_eq!(msg["ai"]["prompt"], "Classify: invoice #42");
    assert_eq!(r.body["state"]["state"], "invoices");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The same input in another execution: answered from the cache.
    let b = t.execution("acme", &tid).await;
    let r = t.post(&format!("/v1/executions/{b}/events"), admin, upload).await;
    assert_eq!(r.body["messages"][0]["ai"]["inputHash"], msg["ai"]["inputHash"]);
    assert_eq!(r.body["state"]["state"], "invoices");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "cached outputs are not asked for again");

    // Replay takes the output from the recorded message (without it the rule would fail and
    // the chains differ) and never asks the model.
    let replayed = t.post(&format!("/v1/executions/{a}/replay"), admin, json!({})).await;
    assert_eq!(replayed.status, StatusCode::OK, "{:?}", replayed.body);
    assert_eq!(replayed.body["identical"], true, "{:?}", replayed.body["divergence"]);
    assert_eq!(replayed.body["state"]["exec"]["state"], "invoices", "{:?}", replayed.body["state"]);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_an_output_the_rule_fails_visibly_and_the_event_is_still_recorded() {
    let t = TestApp::new(); // no provider, empty cache
    let admin = t.admin("acme");
    let tid = t.published_template("acme", &template()).await;
    let e = t.execution("acme", &tid).await;
    let r = t
        .post(
            &format!("/v1/executions/{e}/events"),
            admin,
            json!({ "type": "doc.uploaded", "payload": { "text": "hello" }, "source": "scanner" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let kinds: Vec<_> =
        r.body["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["event.received", "rule.failed"]);
    assert_eq!(r.body["state"]["state"], "inbox");
}
