//! Comparing template versions on an execution's stored events: a version with a changed
//! transition is named at the first event where it behaves differently, with both outcomes
//! and both final states; nothing is written.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, assert_problem, example};
use pled_api::auth::Role;
use serde_json::json;

#[tokio::test]
async fn a_changed_transition_is_named_at_the_first_diverging_event_with_both_outcomes() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (tpl, events) = example("approval");
    let tid = t.published_template("acme", &tpl).await;
    let eid = t.execution("acme", &tid).await;
    for ev in &events {
        let r = t.post(&format!("/v1/executions/{eid}/events"), admin, ev.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    // Version 2: managers may approve only up to 1000 (the order is 1250).
    let mut v2 = tpl.clone();
    v2["transitions"][1]["guard"] = json!("vars.amount <= 1000 || msg.data.role == 'director'");
    assert_eq!(
        t.call(Method::PUT, &format!("/v1/templates/{tid}"), Some(admin), Some(v2)).await.status,
        StatusCode::OK
    );
    let r = t.call(Method::POST, &format!("/v1/templates/{tid}/versions"), Some(admin), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let head = t.get(&format!("/v1/executions/{eid}/state"), admin).await.body["headSeq"].clone();

    let r =
        t.post(&format!("/v1/executions/{eid}/compare"), t.token("acme", Role::Operator), json!({"version": 2})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let c = &r.body;
    assert_eq!((c["baseVersion"].as_u64(), c["version"].as_u64()), (Some(1), Some(2)));
    assert_eq!(c["identical"], false);
    assert_eq!(c["events"], 3);
    let first = &c["firstDivergence"];
    assert_eq!(first["eventSeq"], 3, "{c:#}");
    assert_eq!(first["eventType"], "review.completed");
    assert_eq!(first["kind"], "event.received");
    assert_eq!(first["messagesDiffer"], false, "the rules did not change");
    assert_eq!(first["transitionsDiffer"], true);
    assert_eq!(first["base"]["transitions"][0]["transitionId"], "approve");
    assert_eq!(first["candidate"]["transitions"], json!([]));
    assert_eq!(first["base"]["state"], "approved");
    assert_eq!(first["candidate"]["state"], "review");
    assert!(first["candidate"]["kinds"].as_array().unwrap().contains(&json!("message.unmatched")));
    assert_eq!(c["differencesTotal"], 1);
    assert_eq!(c["baseFinal"]["status"], "completed");
    assert_eq!(c["candidateFinal"]["status"], "running");
    assert_eq!(c["candidateFinal"]["exec"]["state"], "review");

    // The same version compares identical; nothing was written either way.
    let same = t.post(&format!("/v1/executions/{eid}/compare"), admin, json!({"version": 1})).await;
    assert_eq!(same.body["identical"], true, "{:#}", same.body);
    assert_eq!(same.body["firstDivergence"], json!(null));
    assert_eq!(t.get(&format!("/v1/executions/{eid}/state"), admin).await.body["headSeq"], head);
    let missing = t.post(&format!("/v1/executions/{eid}/compare"), admin, json!({"version": 9})).await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "not_found");
    let viewer =
        t.post(&format!("/v1/executions/{eid}/compare"), t.token("acme", Role::Viewer), json!({"version": 2})).await;
    assert_problem(&viewer, StatusCode::FORBIDDEN, "forbidden");
}
