//! Signed inbound webhooks: a good signature is applied through the normal ingest path; a
//! bad, stale, foreign or missing one is a 401 problem and writes nothing; a replayed request
//! applies once; secrets are admin-managed, rotated with a grace period, deletable.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{TestApp, assert_problem};
use hmac::{Hmac, Mac};
use pled_api::auth::Role;
use serde_json::{Value, json};
use sha2::Sha256;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn sign(secret: &str, ts: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn hook(t: &TestApp, path: &str, body: &[u8], headers: &[(&str, String)]) -> common::Reply {
    let mut req = Request::builder().method(Method::POST).uri(path).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    t.raw(req.body(Body::from(body.to_vec())).unwrap()).await
}

fn signed(secret: &str, ts: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![("pled-timestamp", ts.to_string()), ("pled-signature", sign(secret, ts, body))]
}

async fn head(t: &TestApp, eid: &str) -> u64 {
    t.get(&format!("/v1/executions/{eid}/state"), t.admin("acme")).await.body["headSeq"].as_u64().unwrap()
}

async fn source(t: &TestApp, org: &str, name: &str) -> String {
    let r = t.call(Method::POST, &format!("/v1/hooks/sources/{name}"), Some(t.admin(org)), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["secret"].as_str().unwrap().to_owned()
}

async fn execution(t: &TestApp) -> String {
    let tpl = json!({
        "name": "crm",
        "states": [{"id": "open", "initial": true}, {"id": "won", "final": true}],
        "transitions": [{"id": "win", "from": "open", "to": "won", "on": "deal.won"}]
    });
    let tid = t.published_template("acme", &tpl).await;
    t.execution("acme", &tid).await
}

#[tokio::test]
async fn a_good_signature_is_applied_once_and_everything_else_is_refused_without_a_write() {
    let t = TestApp::new();
    let eid = execution(&t).await;
    let path = format!("/v1/hooks/{eid}/crm");
    let body = br#"{"deal": 42}"#;

    // Before the source exists: refused like anything else.
    assert_problem(
        &hook(&t, &path, body, &signed("whsec_x", now(), body)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_problem(
        &t.call(Method::POST, "/v1/hooks/sources/crm", Some(t.token("acme", Role::Operator)), None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let secret = source(&t, "acme", "crm").await;
    let globex_secret = source(&t, "globex", "crm").await;
    let start = head(&t, &eid).await;

    for (why, headers) in [
        ("no headers", vec![]),
        ("bad signature", vec![("pled-timestamp", now().to_string()), ("pled-signature", "v1=00".to_owned())]),
        ("signed by another org's secret", signed(&globex_secret, now(), body)),
        ("stale", signed(&secret, now() - 301, body)),
        ("from the future", signed(&secret, now() + 301, body)),
        ("another body", signed(&secret, now(), br#"{"deal": 43}"#)),
        ("not a number", vec![("pled-timestamp", "soon".to_owned()), ("pled-signature", sign(&secret, 0, body))]),
    ] {
        let r = hook(&t, &path, body, &headers).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(head(&t, &eid).await, start, "{why}: nothing written");
    }
    for other in [
        format!("/v1/hooks/{eid}/erp"),
        "/v1/hooks/nope/crm".to_owned(),
        format!("/v1/hooks/{}/crm", pled_core::ExecutionId::new_v7()),
    ] {
        assert_problem(
            &hook(&t, &other, body, &signed(&secret, now(), body)).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }

    // Good: applied through the ingest path, as hook.crm from hook:crm.
    let headers = signed(&secret, now(), body);
    let r = hook(&t, &path, body, &headers).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["eventSeq"], 1);
    // The same signed request again: the stored answer, nothing applied twice.
    let again = hook(&t, &path, body, &headers).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers.get("idempotency-replayed").unwrap(), "true");
    let events = t.get(&format!("/v1/executions/{eid}/events"), t.admin("acme")).await;
    let items = events.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["type"], "hook.crm");
    assert_eq!(items[0]["source"], "hook:crm");
    assert_eq!(items[0]["payload"], json!({"deal": 42}));

    // An event type from the header; a non-object body is wrapped.
    let body = b"[1,2]";
    let mut headers = signed(&secret, now(), body);
    headers.push(("pled-event-type", "deal.won".to_owned()));
    let r = hook(&t, &path, body, &headers).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["state"]["state"], "won");
    let events = t.get(&format!("/v1/executions/{eid}/events"), t.admin("acme")).await;
    assert_eq!(events.body["items"][1]["payload"], json!({"body": [1, 2]}));
    // Authentic but not JSON: a 400, nothing written.
    let h = head(&t, &eid).await;
    let r = hook(&t, &path, b"nope", &signed(&secret, now(), b"nope")).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(head(&t, &eid).await, h);
}

#[tokio::test]
async fn rotation_keeps_the_previous_secret_for_a_while_and_deletion_refuses_everything() {
    let t = TestApp::new();
    let eid = execution(&t).await;
    let path = format!("/v1/hooks/{eid}/crm");
    let old = source(&t, "acme", "crm").await;
    let new = source(&t, "acme", "crm").await;
    assert_ne!(old, new);
    let list = t.get("/v1/hooks/sources", t.admin("acme")).await;
    assert_eq!(list.body[0]["source"], "crm");
    assert!(list.body[0]["previousValidUntil"].as_i64().unwrap() > now());
    assert!(!list.body.to_string().contains("whsec_"), "secrets are never listed");
    for (n, secret) in [&old, &new].into_iter().enumerate() {
        let body = json!({"n": n}).to_string();
        let r = hook(&t, &path, body.as_bytes(), &signed(secret, now(), body.as_bytes())).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let r = t.call(Method::DELETE, "/v1/hooks/sources/crm", Some(t.admin("acme")), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let body = br#"{"n": 9}"#;
    assert_problem(&hook(&t, &path, body, &signed(&new, now(), body)).await, StatusCode::UNAUTHORIZED, "unauthorized");
    let audit = t.get("/v1/audit?limit=500", t.admin("acme")).await;
    let actions: Vec<&str> =
        audit.body["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"hooks.source_secret_rotated") && actions.contains(&"hooks.source_deleted"),
        "{actions:?}"
    );
    let _: Value = list.body;
}

#[tokio::test]
async fn webhooks_count_against_their_orgs_rate() {
    // One request per 100 s after the burst: nothing refills during the test.
    let t = TestApp::with_config(|c| {
        c.org_rate_limit = 0.01;
        c.org_burst = 10;
    });
    let eid = execution(&t).await;
    let secret = source(&t, "acme", "crm").await;
    let body = br#"{"deal": 42}"#;
    let path = format!("/v1/hooks/{eid}/crm");
    assert_eq!(hook(&t, &path, body, &signed(&secret, now(), body)).await.status, StatusCode::CREATED);
    // Spend what is left of acme's burst.
    while t.get("/v1/templates", t.admin("acme")).await.status == StatusCode::OK {}

    let other = br#"{"deal": 43}"#;
    let r = hook(&t, &path, other, &signed(&secret, now(), other)).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(r.headers.get("retry-after").unwrap(), "100");
    // A bad signature is still a 401: the limit applies only to authentic requests.
    let r = hook(&t, &path, other, &signed("whsec_wrong", now(), other)).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let unlimited =
        pled_api::app(pled_api::server::state(t.store.clone(), Default::default(), Default::default()).unwrap());
    let t2 = TestApp { app: unlimited, ..t };
    let events = t2.get(&format!("/v1/executions/{eid}/events"), t2.admin("acme")).await;
    assert_eq!(
        events.body["items"].as_array().unwrap().len(),
        1,
        "the limited webhook wrote nothing: {:?}",
        events.body
    );
}
