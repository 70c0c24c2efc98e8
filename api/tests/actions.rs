//! The action runner against real HTTP receivers on 127.0.0.1: retries until success with one
//! idempotency key and verifiable signatures, a dead job and its re-run, the operator view
//! and its roles, on-demand actions, emit_event within (never across) orgs, and a SIGKILL of
//! the real binary between a side effect and its record.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use common::{TestApp, assert_problem};
use hmac::{Hmac, Mac};
use pled_api::auth::Role;
use serde_json::{Value, json};
use sha2::Sha256;

/// One request a receiver got: headers and body.
type Hit = (HeaderMap, Vec<u8>);

/// A webhook receiver: answers `fail_status` while `failures` is above zero (counting down),
/// then 200; records every request.
#[derive(Clone)]
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    failures: Arc<AtomicUsize>,
    fail_status: u16,
}

impl Receiver {
    async fn start(failures: usize, fail_status: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let r = Receiver { url, hits: Arc::default(), failures: Arc::new(AtomicUsize::new(failures)), fail_status };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::any(move |headers: HeaderMap, body: axum::body::Bytes| {
                let r = state.clone();
                async move {
                    r.hits.lock().unwrap().push((headers, body.to_vec()));
                    let failing =
                        r.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                    if failing {
                        (StatusCode::from_u16(r.fail_status).unwrap(), axum::Json(json!({"error": "not now"})))
                    } else {
                        (StatusCode::OK, axum::Json(json!({"ok": true})))
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// HMAC-SHA256 over `timestamp.body`, as a receiver would check it.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let ts = header(headers, "pled-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    header(headers, "pled-signature") == format!("v1={expected}")
}

/// idle --go--> waiting (webhook); waiting --action.succeeded--> done (final);
/// waiting --action.failed--> broken; broken --action.succeeded--> done.
fn template(url: &str) -> Value {
    json!({
        "name": "hooks",
        "variables": [{"name": "amount", "type": "int", "default": 7}],
        "states": [{"id": "idle", "initial": true}, {"id": "waiting"}, {"id": "broken"}, {"id": "done", "final": true}],
        "transitions": [
            {"id": "go", "from": "idle", "to": "waiting", "on": "go", "actions": ["notify"]},
            {"id": "ok", "from": "waiting", "to": "done", "on": "action.succeeded"},
            {"id": "ko", "from": "waiting", "to": "broken", "on": "action.failed"},
            {"id": "fixed", "from": "broken", "to": "done", "on": "action.succeeded"}
        ],
        "actions": [{"id": "notify", "type": "webhook", "input": {"url": url, "body": {"amount": "=vars.amount"}}}]
    })
}

fn fast(c: &mut pled_api::config::ServeConfig) {
    c.action_backoff = Duration::from_millis(20);
    c.action_max_attempts = 3;
    c.action_timeout = Duration::from_secs(5);
}

async fn ledger(t: &TestApp, eid: &str) -> Vec<Value> {
    let r = t.get(&format!("/v1/executions/{eid}/ledger?limit=1000"), t.admin("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["entries"].as_array().unwrap().clone()
}

fn of_kind<'a>(entries: &'a [Value], kind: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["kind"] == kind).collect()
}

async fn wait_state(t: &TestApp, eid: &str, state: &str) {
    let r = t.get(&format!("/v1/executions/{eid}/wait?state={state}&timeoutMs=15000"), t.admin("acme")).await;
    assert_eq!(r.body["reached"], true, "{state}: {:?}", r.body);
}

async fn secret(t: &TestApp) -> String {
    let r = t.call(Method::POST, "/v1/webhooks/signing-secret", Some(t.admin("acme")), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["secret"].as_str().unwrap().to_owned()
}

async fn started(t: &TestApp, url: &str) -> String {
    let tid = t.published_template("acme", &template(url)).await;
    let eid = t.execution("acme", &tid).await;
    let r = t
        .post(
            &format!("/v1/executions/{eid}/events"),
            t.admin("acme"),
            json!({"type": "go", "payload": {}, "source": "test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    eid
}

fn enc(id: &str) -> String {
    id.replace('/', "%2F")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failing_twice_is_attempted_three_times_and_succeeds_once() {
    let t = TestApp::with_config(fast);
    let _workers = t.start_workers();
    let secret = secret(&t).await;
    let rx = Receiver::start(2, 503).await;
    let eid = started(&t, &rx.url).await;
    wait_state(&t, &eid, "done").await;

    let entries = ledger(&t, &eid).await;
    let attempts = of_kind(&entries, "action.attempted");
    assert_eq!(attempts.len(), 3, "{entries:#?}");
    let outcomes: Vec<&str> = attempts.iter().map(|e| e["body"]["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["retry", "retry", "succeeded"]);
    assert_eq!(attempts[0]["body"]["status"], 503);
    assert!(attempts[0]["body"]["nextAttemptAt"].is_string());
    assert_eq!(of_kind(&entries, "action.succeeded").len(), 1);
    assert!(of_kind(&entries, "action.failed").is_empty() && of_kind(&entries, "action.dead").is_empty());
    let job_id = attempts[0]["body"]["jobId"].as_str().unwrap().to_owned();
    assert!(job_id.starts_with(&format!("{eid}/")), "{job_id}");
    // The result came back as an event and moved the machine.
    let results: Vec<&Value> =
        of_kind(&entries, "event.received").into_iter().filter(|e| e["body"]["type"] == "action.succeeded").collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["body"]["payload"]["jobId"], job_id.as_str());
    assert_eq!(results[0]["body"]["payload"]["response"]["body"], json!({"ok": true}));

    let hits = rx.hits();
    assert_eq!(hits.len(), 3);
    for (n, (h, body)) in hits.iter().enumerate() {
        assert_eq!(header(h, "idempotency-key"), job_id, "the same key on every attempt");
        assert_eq!(header(h, "pled-attempt"), (n + 1).to_string());
        assert_eq!(header(h, "content-type"), "application/json");
        assert_eq!(serde_json::from_slice::<Value>(body).unwrap(), json!({"amount": 7}));
        assert!(verify(&secret, h, body), "signature of attempt {}", n + 1);
        assert!(!verify("whsec_other", h, body));
    }

    let job = t.get(&format!("/v1/jobs/{}", enc(&job_id)), t.token("acme", Role::Viewer)).await;
    assert_eq!(job.status, StatusCode::OK, "{:?}", job.body);
    assert_eq!(job.body["status"], "succeeded");
    assert_eq!(job.body["attempts"], 3);
    assert_eq!(job.body["attemptLog"].as_array().unwrap().len(), 3);
    assert_eq!(job.body["attemptLog"][0]["error"], "the receiver answered 503");
    assert_eq!(job.body["resultSeq"], of_kind(&entries, "action.succeeded")[0]["seq"]);
    // The queue is empty again.
    assert!(t.store.scan(pled_store::Table::Queue, b"j", b"", 10).unwrap().is_empty());

    // Replay is pure: the attempts, the result and the result event replay to the same chain,
    // and no job is created or touched.
    let jobs_before = t.store.scan(pled_store::Table::Jobs, b"", b"", 1000).unwrap();
    let r = t.post(&format!("/v1/executions/{eid}/replay"), t.admin("acme"), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["identical"], true, "{:#}", r.body);
    assert_eq!(t.store.scan(pled_store::Table::Jobs, b"", b"", 1000).unwrap(), jobs_before);
    assert!(t.store.scan(pled_store::Table::Queue, b"", b"", 10).unwrap().is_empty());
    assert_eq!(rx.hits().len(), 3, "replay sent nothing");

    // Metrics and the API description.
    let text = t.call(Method::GET, "/metrics", None, None).await.body.as_str().unwrap().to_owned();
    for metric in [
        "pled_action_attempts_total{type=\"webhook\",outcome=\"retry\"} 2",
        "pled_action_attempts_total{type=\"webhook\",outcome=\"succeeded\"} 1",
        "pled_action_results_total{type=\"webhook\",result=\"action.succeeded\"} 1",
        "pled_action_latency_seconds_count{type=\"webhook\"} 1",
        "pled_action_attempt_duration_seconds_bucket",
    ] {
        assert!(text.contains(metric), "{metric} in {text}");
    }
    let spec = t.call(Method::GET, "/openapi.json", None, None).await;
    for path in [
        "/v1/catalog/actions",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/rerun",
        "/v1/executions/{id}/jobs",
        "/v1/executions/{id}/actions",
        "/v1/webhooks/signing-secret",
        "/v1/hooks/{executionId}/{source}",
    ] {
        assert!(spec.body["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_webhook_dies_after_the_max_attempts_and_a_rerun_completes_it() {
    let t = TestApp::with_config(fast);
    let _workers = t.start_workers();
    let rx = Receiver::start(usize::MAX, 500).await;
    let eid = started(&t, &rx.url).await;
    wait_state(&t, &eid, "broken").await;

    let entries = ledger(&t, &eid).await;
    assert_eq!(of_kind(&entries, "action.attempted").len(), 3);
    let dead = of_kind(&entries, "action.dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["body"]["attempts"], 3);
    let job_id = dead[0]["body"]["jobId"].as_str().unwrap().to_owned();
    assert_eq!(rx.hits().len(), 3);

    // The dead-letter view, org-scoped.
    let list = t.get("/v1/jobs?status=dead", t.token("acme", Role::Viewer)).await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    let ids: Vec<&str> = list.body["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [job_id.as_str()]);
    assert!(t.get("/v1/jobs?status=dead", t.admin("globex")).await.body["items"].as_array().unwrap().is_empty());
    let per_exec = t.get(&format!("/v1/executions/{eid}/jobs"), t.admin("acme")).await;
    assert_eq!(per_exec.body["items"][0]["status"], "dead");
    assert_problem(&t.get("/v1/jobs?status=zombie", t.admin("acme")).await, StatusCode::BAD_REQUEST, "bad_request");

    // Roles and tenancy: a viewer cannot re-run, another org does not see the job.
    let rerun = format!("/v1/jobs/{}/rerun", enc(&job_id));
    let why = json!({"reason": "receiver fixed"});
    assert_problem(
        &t.post(&rerun, t.token("acme", Role::Viewer), why.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_problem(&t.post(&rerun, t.admin("globex"), why.clone()).await, StatusCode::NOT_FOUND, "not_found");
    assert_problem(
        &t.get(&format!("/v1/jobs/{}", enc(&job_id)), t.admin("globex")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &t.post(&rerun, t.token("acme", Role::Operator), json!({})).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    rx.failures.store(0, Ordering::SeqCst);
    let r = t.post(&rerun, t.token("acme", Role::Operator), why.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    wait_state(&t, &eid, "done").await;
    // A succeeded job is not re-run.
    assert_problem(&t.post(&rerun, t.token("acme", Role::Operator), why).await, StatusCode::CONFLICT, "conflict");
    // The status listings follow the job: out of the dead-letter queue, into succeeded.
    let ids_in = |body: &Value| -> Vec<String> {
        body["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
    };
    assert!(ids_in(&t.get("/v1/jobs?status=dead", t.admin("acme")).await.body).is_empty());
    assert_eq!(ids_in(&t.get("/v1/jobs?status=succeeded", t.admin("acme")).await.body), [job_id.as_str()]);
    assert_problem(
        &t.get("/v1/jobs?status=dead&cursor=nope", t.admin("acme")).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    let entries = ledger(&t, &eid).await;
    let attempts: Vec<u64> =
        of_kind(&entries, "action.attempted").iter().map(|e| e["body"]["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    assert_eq!(of_kind(&entries, "action.rerun").len(), 1);
    assert_eq!(of_kind(&entries, "action.succeeded").len(), 1);
    let hits = rx.hits();
    assert_eq!(hits.len(), 4);
    assert!(hits.iter().all(|(h, _)| header(h, "idempotency-key") == job_id));
    let audit = t.get("/v1/audit?limit=500", t.admin("acme")).await;
    assert!(
        audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "job.rerun" && a["target"] == job_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_fails_at_once_and_the_catalog_and_on_demand_actions_work() {
    let t = TestApp::with_config(fast);
    let _workers = t.start_workers();
    let rx = Receiver::start(usize::MAX, 400).await;
    let eid = started(&t, &rx.url).await;
    wait_state(&t, &eid, "broken").await;
    let entries = ledger(&t, &eid).await;
    assert_eq!(of_kind(&entries, "action.attempted").len(), 1, "no retry after a 400");
    let failed = of_kind(&entries, "action.failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["body"]["status"], 400);
    assert_eq!(failed[0]["body"]["response"]["body"], json!({"error": "not now"}));

    let cat = t.get("/v1/catalog/actions", t.token("acme", Role::Viewer)).await;
    let types: Vec<&str> = cat.body["items"].as_array().unwrap().iter().map(|x| x["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["emit_event", "webhook"]);
    assert_eq!(cat.body["items"][1]["inputSchema"]["required"], json!(["url"]));

    // On demand: operator only, checked input, audited, run by the runner.
    let path = format!("/v1/executions/{eid}/actions");
    rx.failures.store(0, Ordering::SeqCst);
    let body = json!({"type": "webhook", "input": {"url": rx.url, "body": {"hello": 1}}, "reason": "resend"});
    assert_problem(
        &t.post(&path, t.token("acme", Role::Viewer), body.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_problem(&t.post(&path, t.admin("globex"), body.clone()).await, StatusCode::NOT_FOUND, "not_found");
    let bad = json!({"type": "webhook", "input": {"url": "ftp://x"}, "reason": "r"});
    assert_problem(
        &t.post(&path, t.token("acme", Role::Operator), bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let unknown = json!({"type": "fax", "input": {}, "reason": "r"});
    assert_problem(
        &t.post(&path, t.token("acme", Role::Operator), unknown).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let r = t.post(&path, t.token("acme", Role::Operator), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let job_id = r.body["id"].as_str().unwrap().to_owned();
    assert!(job_id.contains("/ondemand."), "{job_id}");
    // The on-demand success comes back as an event too: broken --action.succeeded--> done.
    wait_state(&t, &eid, "done").await;
    let job = t.get(&format!("/v1/jobs/{}", enc(&job_id)), t.admin("acme")).await;
    assert_eq!(job.body["status"], "succeeded", "{:?}", job.body);
    let entries = ledger(&t, &eid).await;
    assert_eq!(of_kind(&entries, "action.requested").len(), 1);
    let audit = t.get("/v1/audit?limit=500", t.admin("acme")).await;
    assert!(audit.body["items"].as_array().unwrap().iter().any(|a| a["action"] == "execution.action_requested"));
}

/// Jobs of several executions in several statuses, and another org's: `GET /v1/jobs` without
/// a status pages through exactly the org's jobs, in id order, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_job_listing_pages_through_every_status_and_only_the_org() {
    let t = TestApp::with_config(fast);
    let _workers = t.start_workers();
    let (ok, bad_request, broken) =
        (Receiver::start(0, 200).await, Receiver::start(usize::MAX, 400).await, Receiver::start(usize::MAX, 500).await);
    let mut eids = Vec::new();
    for (rx, state) in
        [(&ok, "done"), (&bad_request, "broken"), (&broken, "broken"), (&ok, "done"), (&broken, "broken")]
    {
        let eid = started(&t, &rx.url).await;
        wait_state(&t, &eid, state).await;
        eids.push(eid);
    }
    let other = t.published_template("globex", &template(&ok.url)).await;
    let other = t.execution("globex", &other).await;
    let go = json!({"type": "go", "payload": {}, "source": "test"});
    let r = t.post(&format!("/v1/executions/{other}/events"), t.admin("globex"), go).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // What each execution's own listing holds.
    let mut want: Vec<(String, String)> = Vec::new();
    for eid in &eids {
        let jobs = t.get(&format!("/v1/executions/{eid}/jobs"), t.admin("acme")).await;
        for j in jobs.body["items"].as_array().unwrap() {
            want.push((j["id"].as_str().unwrap().to_owned(), j["status"].as_str().unwrap().to_owned()));
        }
    }
    want.sort();
    let statuses: std::collections::BTreeSet<&str> = want.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(statuses, ["dead", "failed", "succeeded"].into(), "{want:?}");

    let mut got = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let page = t.get(&format!("/v1/jobs?limit=2{cursor}"), t.token("acme", Role::Viewer)).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for j in page.body["items"].as_array().unwrap() {
            got.push((j["id"].as_str().unwrap().to_owned(), j["status"].as_str().unwrap().to_owned()));
        }
        match page.body["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={}", enc(next)),
            None => break,
        }
    }
    assert_eq!(got, want, "every job of the org, in id order, once");
    let globex = t.get("/v1/jobs", t.admin("globex")).await;
    let theirs = globex.body["items"].as_array().unwrap();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert!(theirs[0]["id"].as_str().unwrap().starts_with(&other));
    assert_problem(&t.get("/v1/jobs?cursor=nope", t.admin("acme")).await, StatusCode::BAD_REQUEST, "bad_request");
}

/// emit_event posts to another execution of the org, once; another org's execution is "not
/// found" and the job fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_event_reaches_executions_of_the_same_org_only() {
    let t = TestApp::with_config(fast);
    let _workers = t.start_workers();
    let target_tpl = json!({
        "name": "target",
        "states": [{"id": "a", "initial": true}, {"id": "b", "final": true}],
        "transitions": [{"id": "poke", "from": "a", "to": "b", "on": "poked"}]
    });
    let tid = t.published_template("acme", &target_tpl).await;
    let target = t.execution("acme", &tid).await;
    let gtid = t.published_template("globex", &target_tpl).await;
    let r = t.post("/v1/executions", t.admin("globex"), json!({"templateId": gtid, "name": "x"})).await;
    let foreign = r.body["id"].as_str().unwrap().to_owned();

    let path = |eid: &str| format!("/v1/executions/{eid}/actions");
    let op = t.token("acme", Role::Operator).to_owned();
    let poke = |to: &str| json!({"type": "emit_event", "input": {"executionId": to, "type": "poked", "payload": {"n": 1}}, "reason": "r"});
    let r = t.post(&path(&target), &op, poke(&target)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    wait_state(&t, &target, "b").await;
    let entries = ledger(&t, &target).await;
    let received: Vec<&Value> =
        of_kind(&entries, "event.received").into_iter().filter(|e| e["body"]["type"] == "poked").collect();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["body"]["source"], "action:ondemand");

    // Across orgs: the job fails; the other org's execution gets nothing.
    let other = t.execution("acme", &tid).await;
    let r = t.post(&path(&other), &op, poke(&foreign)).await;
    let job_id = r.body["id"].as_str().unwrap().to_owned();
    let mut status = Value::Null;
    for _ in 0..200 {
        status = t.get(&format!("/v1/jobs/{}", enc(&job_id)), &op).await.body["status"].clone();
        if status == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, "failed");
    let g = t.get(&format!("/v1/executions/{foreign}/ledger"), t.admin("globex")).await;
    assert!(g.body["entries"].as_array().unwrap().iter().all(|e| e["kind"] != "event.received"));
}

/// The real binary aborts right after the side effect (the documented test seam
/// `PLED_TEST_ABORT_AFTER_SIDE_EFFECT`, the same as a SIGKILL at that instant); after a
/// restart the attempt runs again with the same idempotency key and is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_side_effect_and_record_is_recorded_exactly_once_after_restart() {
    use common::server::Server;
    let rx = Receiver::start(0, 500).await;
    let args = ["--chain", "off", "--action-backoff", "50ms"];
    let mut server = Server::start_env(&args, &[("PLED_TEST_ABORT_AFTER_SIDE_EFFECT", "1")]);
    let tid = server.post("/v1/templates", template(&rx.url)).await["id"].as_str().unwrap().to_owned();
    server.post(&format!("/v1/templates/{tid}/versions"), json!({})).await;
    let eid = server.post("/v1/executions", json!({"templateId": tid, "name": "crash"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The answer may or may not make it out before the abort; the event is durable either way.
    let _ = server
        .client()
        .post(format!("{}/v1/executions/{eid}/events", server.base))
        .json(&json!({"type": "go", "payload": {}, "source": "test"}))
        .send()
        .await;
    let mut exited = None;
    for _ in 0..400 {
        if let Some(status) = server.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = exited.expect("the server aborted after the side effect");
    assert!(!status.success(), "{status}");
    assert_eq!(rx.hits().len(), 1, "the side effect happened once before the crash");
    let token = server.token.clone();
    let dir = server.kill();

    let server = Server::start_on(dir, token, &args, &[]);
    let mut state = Value::Null;
    for _ in 0..400 {
        state = server.get(&format!("/v1/executions/{eid}/state")).await;
        if state["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(state["state"], "done", "{state}");
    let page = server.get(&format!("/v1/executions/{eid}/ledger?limit=1000")).await;
    let entries = page["entries"].as_array().unwrap();
    let attempts = of_kind(entries, "action.attempted");
    assert_eq!(attempts.len(), 1, "one attempt recorded: {entries:#?}");
    assert_eq!(attempts[0]["body"]["attempt"], 1);
    assert_eq!(of_kind(entries, "action.succeeded").len(), 1);
    let hits = rx.hits();
    assert_eq!(hits.len(), 2, "the interrupted attempt ran again");
    assert_eq!(header(&hits[0].0, "idempotency-key"), header(&hits[1].0, "idempotency-key"));
    assert_eq!(header(&hits[0].0, "pled-attempt"), "1");
    assert_eq!(header(&hits[1].0, "pled-attempt"), "1");
    let dir = server.stop();
    let out = std::process::Command::new(common::server::PLED)
        .args(["verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
