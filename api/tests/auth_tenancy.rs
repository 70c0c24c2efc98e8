//! Authentication (tokens and JWTs), the role table, and org isolation.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{AUDIENCE, ISSUER, TestApp, assert_problem, example};
use pled_api::auth::Role;
use serde_json::json;

#[tokio::test]
async fn missing_malformed_invalid_expired_and_revoked_credentials_are_401() {
    let t = TestApp::new();
    let r = t.call(Method::GET, "/v1/templates", None, None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = t.call_with(Method::GET, "/v1/templates", None, None, &[("authorization", "Basic abc")]).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    for bad in ["pled_pat_0000000000000000_00", "pled_pat_nonsense", "not.a.jwt"] {
        let r = t.call(Method::GET, "/v1/templates", Some(bad), None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // A real token with one character changed.
    let mut forged = t.admin("acme").to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    assert_problem(
        &t.call(Method::GET, "/v1/templates", Some(&forged), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    let expired = TestApp::jwt("acme", "admin", -3600, ISSUER, AUDIENCE);
    let r = t.call(Method::GET, "/v1/templates", Some(&expired), None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(r.body["detail"].as_str().unwrap().contains("xpired"), "{:?}", r.body);
    let wrong_iss = TestApp::jwt("acme", "admin", 3600, "https://evil.test", AUDIENCE);
    assert_problem(
        &t.call(Method::GET, "/v1/templates", Some(&wrong_iss), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let wrong_aud = TestApp::jwt("acme", "admin", 3600, ISSUER, "other");
    assert_problem(
        &t.call(Method::GET, "/v1/templates", Some(&wrong_aud), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let bad_role = TestApp::jwt("acme", "root", 3600, ISSUER, AUDIENCE);
    assert_problem(
        &t.call(Method::GET, "/v1/templates", Some(&bad_role), None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );

    // A valid JWT works.
    let good = TestApp::jwt("acme", "viewer", 3600, ISSUER, AUDIENCE);
    assert_eq!(t.get("/v1/templates", &good).await.status, StatusCode::OK);

    // Revoke a token through the API: it stops working at once.
    let issued = t.post("/v1/tokens", t.admin("acme"), json!({ "role": "viewer", "name": "temp" })).await;
    assert_eq!(issued.status, StatusCode::CREATED);
    let token = issued.body["token"].as_str().unwrap().to_owned();
    assert_eq!(t.get("/v1/templates", &token).await.status, StatusCode::OK);
    let id = issued.body["record"]["id"].as_str().unwrap();
    let r = t.call(Method::DELETE, &format!("/v1/tokens/{id}"), Some(t.admin("acme")), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_problem(&t.get("/v1/templates", &token).await, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_role_table_is_enforced() {
    let t = TestApp::new();
    let (template, _) = example("approval");
    // Viewers and operators cannot edit templates; editors can.
    for role in [Role::Viewer, Role::Operator] {
        let r = t.post("/v1/templates", t.token("acme", role), template.clone()).await;
        assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(
        t.post("/v1/templates", t.token("acme", Role::Editor), template.clone()).await.status,
        StatusCode::CREATED
    );
    let tid = t.published_template("acme", &template).await;
    // Viewers cannot start executions or post events; operators can.
    let body = json!({ "templateId": tid, "name": "x" });
    assert_problem(
        &t.post("/v1/executions", t.token("acme", Role::Viewer), body.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = t.post("/v1/executions", t.token("acme", Role::Operator), body).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let eid = r.body["id"].as_str().unwrap();
    let ev = json!({ "type": "order.submitted", "payload": {}, "source": "t" });
    assert_problem(
        &t.post(&format!("/v1/executions/{eid}/events"), t.token("acme", Role::Viewer), ev).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // Only admins manage tokens and read the audit log.
    for role in [Role::Editor, Role::Operator, Role::Viewer] {
        assert_problem(&t.get("/v1/tokens", t.token("acme", role)).await, StatusCode::FORBIDDEN, "forbidden");
        assert_problem(&t.get("/v1/audit", t.token("acme", role)).await, StatusCode::FORBIDDEN, "forbidden");
        let r = t.post("/v1/tokens", t.token("acme", role), json!({ "role": "admin", "name": "escalate" })).await;
        assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    }
    // Everyone reads.
    for role in common::ROLES {
        assert_eq!(t.get(&format!("/v1/executions/{eid}"), t.token("acme", role)).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn another_orgs_resources_are_404_everywhere() {
    let t = TestApp::new();
    let (template, events) = example("approval");
    let tid = t.published_template("acme", &template).await;
    let eid = t.execution("acme", &tid).await;
    t.post(&format!("/v1/executions/{eid}/events"), t.admin("acme"), events[0].clone()).await;
    // globex has data of its own.
    let gtid = t.published_template("globex", &template).await;
    t.execution("globex", &gtid).await;

    let other = t.admin("globex");
    let gets = [
        format!("/v1/templates/{tid}"),
        format!("/v1/templates/{tid}/versions"),
        format!("/v1/templates/{tid}/versions/1"),
        format!("/v1/templates/{tid}/compile"),
        format!("/v1/executions/{eid}"),
        format!("/v1/executions/{eid}/state"),
        format!("/v1/executions/{eid}/ledger"),
        format!("/v1/executions/{eid}/events"),
        format!("/v1/executions/{eid}/messages"),
        format!("/v1/executions/{eid}/tokens"),
        format!("/v1/executions/{eid}/wait?seq=1&timeoutMs=10"),
        format!("/v1/executions/{eid}/stream"),
        format!("/v1/executions/{eid}/ws"),
    ];
    for path in &gets {
        assert_problem(&t.get(path, other).await, StatusCode::NOT_FOUND, "not_found");
    }
    let posts = [
        (format!("/v1/templates/{tid}/versions"), json!({})),
        (format!("/v1/templates/{tid}/duplicate"), json!({})),
        (format!("/v1/templates/{tid}/rules"), json!({ "id": "r", "on": "x", "emit": { "type": "y" } })),
        (format!("/v1/rules/{tid}:submit/test"), json!({ "event": { "type": "x", "payload": {} } })),
        (format!("/v1/executions/{eid}/events"), events[1].clone()),
        (format!("/v1/executions/{eid}/events/batch"), json!({ "events": [events[1].clone()] })),
        ("/v1/executions".to_owned(), json!({ "templateId": tid, "name": "steal" })),
    ];
    for (path, body) in &posts {
        assert_problem(&t.post(path, other, body.clone()).await, StatusCode::NOT_FOUND, "not_found");
    }
    assert_problem(
        &t.call(Method::PUT, &format!("/v1/templates/{tid}"), Some(other), Some(template.clone())).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &t.call(Method::DELETE, &format!("/v1/templates/{tid}"), Some(other), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Lists show only the caller's org.
    let list = t.get("/v1/executions", other).await;
    assert!(list.body["items"].as_array().unwrap().iter().all(|e| e["org"] == "globex"));
    let list = t.get("/v1/templates", other).await;
    assert!(list.body["items"].as_array().unwrap().iter().all(|e| e["id"] != tid.as_str()));
    // And nothing changed for acme.
    let state = t.get(&format!("/v1/executions/{eid}/state"), t.admin("acme")).await;
    assert_eq!(state.body["eventCount"], 1);
}

#[tokio::test]
async fn an_org_over_its_rate_is_told_when_to_retry_and_other_orgs_keep_their_own_budget() {
    // Bursts of 3, then one request per 100 s: nothing refills during the test.
    let t = TestApp::with_config(|c| {
        c.org_rate_limit = 0.01;
        c.org_burst = 3;
    });
    let acme = t.admin("acme");
    // Refused credentials name no org and take nothing.
    for _ in 0..3 {
        let r = t.call(Method::GET, "/v1/templates", Some("pled_pat_nonsense"), None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    for _ in 0..3 {
        assert_eq!(t.get("/v1/templates", acme).await.status, StatusCode::OK);
    }
    let (template, _) = example("approval");
    let r = t.post("/v1/templates", acme, template).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(r.headers.get("retry-after").unwrap(), "100");
    assert!(
        r.body["detail"].as_str().unwrap().contains("org acme is over its 0.01 requests per second"),
        "{:?}",
        r.body
    );
    assert_problem(
        &t.get("/v1/templates", t.token("acme", Role::Viewer)).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );

    // Other orgs have their own budget; health and metrics need none.
    assert_eq!(t.get("/v1/templates", t.admin("globex")).await.status, StatusCode::OK);
    assert_eq!(t.call(Method::GET, "/health", None, None).await.status, StatusCode::OK);
    let metrics = t.call(Method::GET, "/metrics", None, None).await;
    assert!(metrics.body.as_str().unwrap().contains("pled_rate_limited_total{org=\"acme\"} 2"), "{:?}", metrics.body);

    // The refused create wrote nothing: an unlimited app over the same store finds no template.
    let unlimited =
        pled_api::app(pled_api::server::state(t.store.clone(), Default::default(), Default::default()).unwrap());
    let t2 = common::TestApp { app: unlimited, ..t };
    let list = t2.get("/v1/templates", t2.admin("acme")).await;
    assert_eq!(list.body["items"], json!([]), "{:?}", list.body);
}

/// Microseconds between two of a record's timestamps.
fn micros_between(from: &serde_json::Value, to: &serde_json::Value) -> i64 {
    let at = |v: &serde_json::Value| pled_core::RecordedAt::parse(v.as_str().unwrap()).unwrap().unix_micros();
    at(to) - at(from)
}

#[tokio::test]
async fn an_access_token_works_until_its_lifetime_ends_and_the_server_caps_lifetimes() {
    let t = TestApp::with_config(|c| c.token_max_lifetime = Some(std::time::Duration::from_secs(30 * 86_400)));
    let admin = t.admin("acme");

    let issued = t.post("/v1/tokens", admin, json!({ "role": "viewer", "name": "ci", "expiresIn": "2s" })).await;
    assert_eq!(issued.status, StatusCode::CREATED, "{:?}", issued.body);
    let record = &issued.body["record"];
    assert_eq!(micros_between(&record["createdAt"], &record["expiresAt"]), 2_000_000);
    let short = issued.body["token"].as_str().unwrap().to_owned();
    // Used once, so the server has it cached: expiry must be checked on cached tokens too.
    assert_eq!(t.get("/v1/templates", &short).await.status, StatusCode::OK);

    // Without expiresIn a token gets the server's limit; beyond the limit it is refused.
    let capped = t.post("/v1/tokens", admin, json!({ "role": "viewer", "name": "default" })).await;
    let record = &capped.body["record"];
    assert_eq!(micros_between(&record["createdAt"], &record["expiresAt"]), 30 * 86_400 * 1_000_000);
    let r = t.post("/v1/tokens", admin, json!({ "role": "viewer", "name": "long", "expiresIn": "31d" })).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.body["errors"][0]["path"], "/expiresIn");
    for bad in ["soon", "0s", "2w", "-1d", ""] {
        let r = t.post("/v1/tokens", admin, json!({ "role": "viewer", "name": "bad", "expiresIn": bad })).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(r.body["errors"][0]["path"], "/expiresIn", "{bad}: {:?}", r.body);
    }
    // Without a limit, a lifetime past what a timestamp holds is refused too.
    let other = TestApp::new();
    let r = other
        .post("/v1/tokens", other.admin("acme"), json!({ "role": "viewer", "name": "far", "expiresIn": "4000000d" }))
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    // Refused requests wrote nothing: besides the test's own tokens, the two issued above.
    let list = t.get("/v1/tokens", admin).await;
    let issued: Vec<_> = list.body.as_array().unwrap().iter().filter(|r| r["createdBy"] != "test").collect();
    let mut names: Vec<_> = issued.iter().map(|r| r["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["ci", "default"]);
    assert!(issued.iter().all(|r| r["expiresAt"].is_string()), "{issued:?}");

    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let r = t.get("/v1/templates", &short).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(r.body["detail"].as_str().unwrap().starts_with("access token expired at 20"), "{:?}", r.body);
    // The capped one still works.
    assert_eq!(t.get("/v1/templates", capped.body["token"].as_str().unwrap()).await.status, StatusCode::OK);
}

#[test]
fn pled_token_create_takes_a_lifetime_and_list_shows_which_tokens_expired() {
    let dir = tempfile::tempdir().unwrap();
    let pled = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pled"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = pled(&["token", "create", "--org", "acme", "--role", "viewer", "--name", "short", "--expires-in", "1s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(", valid until 20"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pled(&["token", "create", "--org", "acme", "--role", "admin", "--name", "forever"]).status.success());
    let out = pled(&["token", "create", "--org", "acme", "--role", "viewer", "--expires-in", "soon"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a duration"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let out = pled(&["token", "list", "--org", "acme"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8(out.stdout).unwrap();
    let state = |name: &str| {
        let line = listing.lines().find(|l| l.ends_with(&format!("\t{name}"))).unwrap();
        line.split('\t').nth(2).unwrap().to_owned()
    };
    assert_eq!((state("short").as_str(), state("forever").as_str()), ("expired", "active"), "{listing}");
}

#[tokio::test]
async fn the_token_list_says_when_each_token_was_last_used() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let issued = t.post("/v1/tokens", admin, json!({ "role": "viewer", "name": "reporting" })).await;
    let (id, token) = (issued.body["record"]["id"].as_str().unwrap(), issued.body["token"].as_str().unwrap());
    assert!(issued.body["record"]["lastUsedAt"].is_null());
    let find = |list: &serde_json::Value| list.as_array().unwrap().iter().find(|r| r["id"] == id).unwrap().clone();
    assert!(find(&t.get("/v1/tokens", admin).await.body)["lastUsedAt"].is_null(), "not used yet");

    assert_eq!(t.get("/v1/templates", token).await.status, StatusCode::OK);
    let used = find(&t.get("/v1/tokens", admin).await.body);
    assert!(micros_between(&used["createdAt"], &used["lastUsedAt"]) > 0, "{used:?}");
    // A request its role forbids still authenticated with it: a use.
    assert_problem(
        &t.post("/v1/tokens", token, json!({ "role": "admin", "name": "x" })).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let after = find(&t.get("/v1/tokens", admin).await.body);
    assert!(micros_between(&used["lastUsedAt"], &after["lastUsedAt"]) > 0, "{after:?}");

    // Revoking answers the record with its last use; the token is refused and not noted again.
    let revoked = t.call(Method::DELETE, &format!("/v1/tokens/{id}"), Some(admin), None).await;
    assert_eq!(revoked.body["lastUsedAt"], after["lastUsedAt"]);
    assert_problem(&t.get("/v1/templates", token).await, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(find(&t.get("/v1/tokens", admin).await.body)["lastUsedAt"], after["lastUsedAt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orgs_own_limit_given_as_a_flag_overrides_the_default() {
    let server =
        common::server::Server::start(&["--chain", "off", "--org-rate-limit", "1000", "--org-limit", "acme=0.01/2"]);
    let client = server.client();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(client.get(format!("{}/v1/templates", server.base)).send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429], "acme's own burst of 2, not the default's 100");
    server.stop();

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::server::PLED)
        .args(["serve", "--chain", "off", "--org-limit", "acme=fast", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--org-limit") && stderr.contains("ORG=RATE/BURST"), "{stderr}");
}

#[tokio::test]
async fn a_reload_changes_rate_limits_and_the_token_lifetime_limit_at_once() {
    let t = TestApp::new();
    let loaded = (*t.state.config).clone();
    for _ in 0..5 {
        assert_eq!(t.get("/v1/templates", t.admin("acme")).await.status, StatusCode::OK, "no limits at start");
    }
    let mut new = loaded.clone();
    let acme = pled_core::OrgId::new("acme").unwrap();
    new.org_limits.insert(acme, pled_api::config::OrgLimit { rate: 0.01, burst: Some(1) });
    new.token_max_lifetime = Some(std::time::Duration::from_secs(3600));
    assert!(!pled_api::server::reconfigure(&t.state, &loaded, &new), "nothing else changed");

    assert_eq!(t.get("/v1/templates", t.admin("acme")).await.status, StatusCode::OK);
    assert_problem(&t.get("/v1/templates", t.admin("acme")).await, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(t.get("/v1/templates", t.admin("globex")).await.status, StatusCode::OK, "only acme is limited");
    let r = t.post("/v1/tokens", t.admin("globex"), json!({ "role": "viewer", "name": "n", "expiresIn": "2h" })).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");

    // Settings a running service cannot change are reported, and the others still apply.
    let mut restart = loaded.clone();
    restart.body_limit = 1;
    assert!(pled_api::server::reconfigure(&t.state, &loaded, &restart));
    assert_eq!(t.get("/v1/templates", t.admin("acme")).await.status, StatusCode::OK, "acme's limit is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pled.toml");
    std::fs::write(&file, "[org_limits]\nacme = { rate = 0.01, burst = 2 }\n").unwrap();
    let server = common::server::Server::start(&["--chain", "off", "--config", file.to_str().unwrap()]);
    let client = server.client();
    let status =
        || async { client.get(format!("{}/v1/templates", server.base)).send().await.unwrap().status().as_u16() };
    assert_eq!([status().await, status().await, status().await], [200, 200, 429]);

    let hangup = || {
        let pid = server.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    };
    std::fs::write(&file, "[org_limits]\nacme = { rate = 0 }\n").unwrap();
    hangup();
    let mut waited = 0;
    while status().await == 429 {
        assert!(waited < 100, "the reload did not lift acme's limit");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        waited += 1;
    }
    // A file that does not load, or holds a bad value, leaves the running settings alone (each
    // would limit every org to one request per 100 s if it were applied).
    for bad in ["org_rate_limit = 0.01\n[org_limits\n", "org_rate_limit = 0.01\norg_burst = 0\n"] {
        std::fs::write(&file, bad).unwrap();
        hangup();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for _ in 0..5 {
            assert_eq!(status().await, 200, "after {bad:?}");
        }
    }
    server.stop();
}

#[tokio::test]
async fn the_audit_log_filters_by_action_actor_target_and_time() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let issued = t.post("/v1/tokens", admin, json!({ "role": "viewer", "name": name })).await;
        ids.push(issued.body["record"]["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let r = t.call(Method::DELETE, &format!("/v1/tokens/{}", ids[1]), Some(admin), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let (template, _) = example("approval");
    assert_eq!(t.post("/v1/templates", t.admin("acme"), template).await.status, StatusCode::CREATED);
    let jwt = TestApp::jwt("acme", "admin", 3600, ISSUER, AUDIENCE);
    t.post("/v1/tokens", &jwt, json!({ "role": "viewer", "name": "by-jwt" })).await;

    let app = &t;
    let list = |query: String| async move {
        let r = app.get(&format!("/v1/audit?{query}"), admin).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {:?}", r.body);
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["action"].clone(), i["target"].clone()))
            .collect::<Vec<_>>()
    };
    let all = t.get("/v1/audit?limit=500", admin).await.body["items"].as_array().unwrap().clone();
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(list("action=token.revoked".into()).await, [(json!("token.revoked"), json!(ids[1]))]);
    assert_eq!(list(format!("target={}", ids[0])).await, [(json!("token.issued"), json!(ids[0]))]);
    assert_eq!(list("actor=jwt:user-1".into()).await.len(), 1);
    assert_eq!(list("action=template.created&actor=jwt:tester".into()).await, []);

    // Time: since is inclusive, until exclusive, both RFC 3339 in any offset.
    let at = |i: usize| all[i]["at"].as_str().unwrap().to_owned();
    let since = list(format!("action=token.issued&since={}", at(1))).await;
    assert_eq!(since.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>()[..2], [json!(ids[1]), json!(ids[2])]);
    let until = list(format!("action=token.issued&until={}", at(1))).await;
    assert_eq!(until, [(json!("token.issued"), json!(ids[0]))]);
    let in_offset = at(1).replace('Z', "+00:00").replace("+00:00", "%2B00:00");
    assert_eq!(list(format!("action=token.issued&since={in_offset}")).await, since);
    assert_eq!(list("since=2999-01-01T00:00:00Z".into()).await, []);

    // Filters page: one at a time, following the cursor.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = t.get(&format!("/v1/audit?action=token.issued&limit=1{cursor}"), admin).await;
        seen.extend(r.body["items"].as_array().unwrap().iter().map(|i| i["target"].clone()));
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    for bad in ["since=yesterday", "until=2026-13-01T00:00:00Z", "colour=red"] {
        assert_problem(&t.get(&format!("/v1/audit?{bad}"), admin).await, StatusCode::BAD_REQUEST, "bad_request");
    }
}
