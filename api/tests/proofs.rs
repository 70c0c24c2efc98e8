//! Proofs, rounds, commitments and evidence bundles through the API.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, assert_problem, example};
use pled_core::proof::ProofDocument;
use serde_json::json;

async fn executed(t: &TestApp) -> String {
    let (template, events) = example("approval");
    let tid = t.published_template("acme", &template).await;
    let eid = t.execution("acme", &tid).await;
    t.post(&format!("/v1/executions/{eid}/events/batch"), t.admin("acme"), json!({ "events": events })).await;
    eid
}

#[tokio::test]
async fn proofs_are_pending_until_their_round_then_verify_offline() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let eid = executed(&t).await;
    let r = t.get(&format!("/v1/executions/{eid}/ledger/3/proof"), admin).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "pending");
    let until = r.body["untilRound"].as_u64().unwrap();

    let round = t.close_round().await.unwrap();
    assert_eq!(round.id, until);
    let head = t.get(&format!("/v1/executions/{eid}/state"), admin).await.body["headSeq"].as_u64().unwrap();
    for seq in 1..=head {
        let r = t.get(&format!("/v1/executions/{eid}/ledger/{seq}/proof"), admin).await;
        assert_eq!(r.status, StatusCode::OK);
        let doc: ProofDocument = serde_json::from_value(r.body.clone()).unwrap();
        let v = doc.verify().unwrap();
        assert_eq!(v.entry.seq().get(), seq);
        assert_eq!(Some(doc.root.clone()), round.root);
        assert_eq!(r.body["anchor"]["status"], "unanchored");
        assert_eq!(r.body["scope"]["kind"], "round");
        assert_eq!(r.body["scope"]["round"], round.id);
    }
    let r = t.get(&format!("/v1/rounds/{}", round.id), admin).await;
    assert_eq!(r.body["root"], round.root.clone().unwrap().as_str());
    assert_eq!(t.get("/v1/rounds", admin).await.body.as_array().unwrap().len(), 1);
    assert_problem(
        &t.get(&format!("/v1/executions/{eid}/ledger/999/proof"), admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(&t.get("/v1/rounds/99", admin).await, StatusCode::NOT_FOUND, "not_found");
}

/// With the chain off there is no anchored root to mint against: a 409 whose members say so
/// without shadowing the problem document's own `status`.
#[tokio::test]
async fn minting_with_the_chain_off_is_a_conflict_that_says_why() {
    let t = TestApp::new();
    let eid = executed(&t).await;
    let mint = json!({ "type": "credit", "quantity": "5", "sinkNodeId": "done" });
    let r = t.post(&format!("/v1/executions/{eid}/tokens/mint"), t.admin("acme"), mint).await;
    assert_problem(&r, StatusCode::CONFLICT, "conflict");
    assert_eq!(r.body["status"], 409);
    assert_eq!(r.body["anchorStatus"], "unanchored", "{:?}", r.body);
}

#[tokio::test]
async fn per_execution_commitments_are_made_on_demand_and_prove() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let eid = executed(&t).await;
    let r =
        t.post(&format!("/v1/executions/{eid}/commitments"), admin, json!({ "rangeStart": 2, "rangeEnd": 6 })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!((r.body["id"].as_u64(), r.body["leafCount"].as_u64()), (Some(1), Some(5)));
    let root = r.body["root"].as_str().unwrap().to_owned();
    let p = t.get(&format!("/v1/executions/{eid}/ledger/4/proof?commitmentId=1"), admin).await;
    let doc: ProofDocument = serde_json::from_value(p.body).unwrap();
    doc.verify().unwrap();
    assert_eq!(doc.root, root);
    assert_problem(
        &t.get(&format!("/v1/executions/{eid}/ledger/9/proof?commitmentId=1"), admin).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_problem(
        &t.post(&format!("/v1/executions/{eid}/commitments"), admin, json!({ "rangeStart": 5, "rangeEnd": 500 })).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let viewer = t.token("acme", pled_api::auth::Role::Viewer);
    assert_problem(
        &t.post(&format!("/v1/executions/{eid}/commitments"), viewer, json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(t.get(&format!("/v1/executions/{eid}/commitments"), viewer).await.body.as_array().unwrap().len(), 1);
    // Another org sees none of it.
    let other = t.admin("globex");
    for path in [
        format!("/v1/executions/{eid}/ledger/1/proof"),
        format!("/v1/executions/{eid}/commitments"),
        format!("/v1/executions/{eid}/evidence"),
    ] {
        assert_problem(&t.get(&path, other).await, StatusCode::NOT_FOUND, "not_found");
    }
    assert_problem(
        &t.post(&format!("/v1/executions/{eid}/commitments"), other, json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn an_evidence_bundle_verifies_and_any_changed_byte_fails() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let eid = executed(&t).await;
    t.close_round().await.unwrap();
    t.post(&format!("/v1/executions/{eid}/commitments"), admin, json!({})).await;
    // A range that starts past seq 1: its leaves are numbered from its own start.
    t.post(&format!("/v1/executions/{eid}/commitments"), admin, json!({ "rangeStart": 2, "rangeEnd": 4 })).await;
    let r = t.call(Method::GET, &format!("/v1/executions/{eid}/evidence"), Some(admin), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    let text = r.body.as_str().unwrap().to_owned();
    let summary = pled_api::evidence::verify(&text).unwrap();
    assert_eq!(summary.proven, summary.entries);
    assert_eq!(summary.commitments, 2);

    let bytes = text.as_bytes();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed % bytes.len() as u64) as usize;
        let mut changed = bytes.to_vec();
        changed[at] = if changed[at] == b'0' {
            b'1'
        } else if changed[at].is_ascii_alphanumeric() {
            b'0'
        } else {
            b'x'
        };
        let Ok(changed) = String::from_utf8(changed) else { continue };
        let err = pled_api::evidence::verify(&changed);
        assert!(err.is_err(), "a change at byte {at} went unnoticed");
    }
    // The message names what failed.
    let entry_line =
        text.lines().position(|l| l.contains("\"type\":\"entry\"") && l.contains("event.received")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[entry_line] = lines[entry_line].replacen("\"source\":\"", "\"source\":\"X", 1);
    let err = pled_api::evidence::verify(&(lines.join("\n") + "\n")).unwrap_err().to_string();
    assert!(err.contains(&format!("line {}", entry_line + 1)) && err.contains("hash mismatch"), "{err}");
}
