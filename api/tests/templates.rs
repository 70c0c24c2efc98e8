//! Template endpoints: create, read, list (paginated), edit the draft, publish immutable
//! versions, compile, duplicate, delete, rules and rule tests, with audit records.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, assert_problem, example};
use serde_json::json;

#[tokio::test]
async fn a_template_lifecycle() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (template, _) = example("approval");

    let created = t.post("/v1/templates", admin, template.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.headers.get("location").unwrap(), &format!("/v1/templates/{id}"));
    assert_eq!(created.body["validation"]["problems"], json!([]));
    assert_eq!(created.body["versions"], json!([]));

    // Not published yet: executions refuse it.
    let r = t.post("/v1/executions", admin, json!({ "templateId": id, "name": "x" })).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "not_published");

    let v1 = t.call(Method::POST, &format!("/v1/templates/{id}/versions"), Some(admin), None).await;
    assert_eq!((v1.status, v1.body["version"].as_u64()), (StatusCode::CREATED, Some(1)));
    let hash1 = v1.body["templateHash"].as_str().unwrap().to_owned();

    // Editing the draft never changes version 1.
    let mut edited = template.clone();
    edited["description"] = json!("edited");
    let r = t.call(Method::PUT, &format!("/v1/templates/{id}"), Some(admin), Some(edited)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(r.body["draftHash"].as_str().unwrap(), hash1);
    let v = t.get(&format!("/v1/templates/{id}/versions/1"), admin).await;
    assert_eq!(v.body["templateHash"], hash1.as_str());
    assert_eq!(v.body["template"]["description"], template["description"]);
    let v2 = t.post(&format!("/v1/templates/{id}/versions"), admin, json!({})).await;
    assert_eq!(v2.body["version"], 2);
    let versions = t.get(&format!("/v1/templates/{id}/versions"), admin).await;
    assert_eq!(versions.body.as_array().unwrap().len(), 2);

    // Publishing with a stale expected hash is refused.
    let r = t.post(&format!("/v1/templates/{id}/versions"), admin, json!({ "expectedDraftHash": hash1 })).await;
    assert_problem(&r, StatusCode::CONFLICT, "conflict");

    let compiled = t.get(&format!("/v1/templates/{id}/compile?version=1"), admin).await;
    assert_eq!(compiled.status, StatusCode::OK);
    assert!(compiled.body["machine"].is_object());
    assert_eq!(compiled.body["templateHash"], hash1.as_str());

    let dup = t.post(&format!("/v1/templates/{id}/duplicate"), admin, json!({ "name": "Copy" })).await;
    assert_eq!(dup.status, StatusCode::CREATED);
    assert_eq!(dup.body["name"], "Copy");
    assert_eq!(dup.body["duplicatedFrom"], id.as_str());
    assert_eq!(dup.body["versions"], json!([]));
    let dup_id = dup.body["id"].as_str().unwrap().to_owned();

    // A used template cannot be deleted; an unused one can.
    t.execution("acme", &id).await;
    assert_problem(
        &t.call(Method::DELETE, &format!("/v1/templates/{id}"), Some(admin), None).await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_eq!(
        t.call(Method::DELETE, &format!("/v1/templates/{dup_id}"), Some(admin), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_problem(&t.get(&format!("/v1/templates/{dup_id}"), admin).await, StatusCode::NOT_FOUND, "not_found");

    // Every change left an audit record.
    let audit = t.get("/v1/audit", admin).await;
    let actions: Vec<_> =
        audit.body["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap().to_owned()).collect();
    for a in ["template.created", "template.published", "template.updated", "template.duplicated", "template.deleted"] {
        assert!(actions.iter().any(|x| x == a), "{a} not audited: {actions:?}");
    }
}

#[tokio::test]
async fn a_draft_with_errors_is_stored_but_cannot_be_published() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (mut template, _) = example("approval");
    template["transitions"][0]["to"] = json!("nowhere");
    let r = t.post("/v1/templates", admin, template).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let problems = r.body["validation"]["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["path"] == "/transitions/0/to" && p["code"] == "unknown_state"), "{problems:?}");
    let id = r.body["id"].as_str().unwrap();
    let r = t.call(Method::POST, &format!("/v1/templates/{id}/versions"), Some(admin), None).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.body["errors"][0]["path"], "/transitions/0/to");
    let c = t.get(&format!("/v1/templates/{id}/compile"), admin).await;
    assert!(c.body["machine"].is_null());
}

#[tokio::test]
async fn lists_paginate() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (template, _) = example("approval");
    for i in 0..5 {
        let mut x = template.clone();
        x["name"] = json!(format!("t{i}"));
        t.post("/v1/templates", admin, x).await;
    }
    let p1 = t.get("/v1/templates?limit=2", admin).await;
    let c1 = p1.body["nextCursor"].as_str().unwrap();
    let p2 = t.get(&format!("/v1/templates?limit=2&cursor={c1}"), admin).await;
    let c2 = p2.body["nextCursor"].as_str().unwrap();
    let p3 = t.get(&format!("/v1/templates?limit=2&cursor={c2}"), admin).await;
    assert!(p3.body.get("nextCursor").is_none());
    let names: Vec<_> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| p.body["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(names, ["t0", "t1", "t2", "t3", "t4"]);
}

#[tokio::test]
async fn rules_are_added_and_tested_without_writing() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (template, _) = example("approval");
    let id = t.post("/v1/templates", admin, template).await.body["id"].as_str().unwrap().to_owned();
    let rule = json!({ "id": "big-order", "on": "order.created", "when": "event.payload.total > 100", "emit": { "type": "order.big", "data": { "total": "event.payload.total" } } });
    let r = t.post(&format!("/v1/templates/{id}/rules"), admin, rule.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_problem(&t.post(&format!("/v1/templates/{id}/rules"), admin, rule).await, StatusCode::CONFLICT, "conflict");

    let test = |total: i64| json!({ "event": { "type": "order.created", "payload": { "total": total } } });
    let hit = t.post(&format!("/v1/rules/{id}:big-order/test"), admin, test(500)).await;
    assert_eq!(hit.status, StatusCode::OK, "{:?}", hit.body);
    assert_eq!(hit.body["messages"][0]["type"], "order.big");
    assert_eq!(hit.body["messages"][0]["data"]["total"], 500);
    let again = t.post(&format!("/v1/rules/{id}:big-order/test"), admin, test(500)).await;
    assert_eq!(again.body, hit.body, "deterministic rules give identical messages");
    let miss = t.post(&format!("/v1/rules/{id}:big-order/test"), admin, test(5)).await;
    assert_eq!(miss.body["messages"], json!([]));
    assert_problem(
        &t.post(&format!("/v1/rules/{id}:nope/test"), admin, test(5)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(&t.post("/v1/rules/garbage/test", admin, test(5)).await, StatusCode::BAD_REQUEST, "bad_request");
}
