//! API conventions on every route: RFC 9457 problems for every kind of bad input,
//! idempotency keys, health, metrics, OpenAPI and its docs page.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{TestApp, assert_problem, example};
use pled_api::idempotency::Idempotency;
use serde_json::{Value, json};

fn raw_post(path: &str, token: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn bad_bodies_are_problems_with_paths_and_change_nothing() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let r = t.raw(raw_post("/v1/templates", admin, "application/json", "{\"name\": ")).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert!(r.body["detail"].as_str().unwrap().contains("malformed JSON"), "{:?}", r.body);

    let r = t.post("/v1/templates", admin, json!({ "name": 5, "states": [] })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(r.body["errors"][0]["path"], "/name");

    let (mut template, _) = example("approval");
    template["states"][1]["colour"] = json!("red");
    let r = t.post("/v1/templates", admin, template).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(r.body["errors"][0]["path"], "/states/1/colour", "{:?}", r.body);
    assert!(r.body["errors"][0]["message"].as_str().unwrap().contains("unknown field"));

    // A struct's fields as an array are not an object.
    let r = t.post("/v1/tokens", admin, json!(["viewer", "from an array"])).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(r.body["errors"][0]["path"], "/");
    assert!(!t.get("/v1/tokens", admin).await.body.to_string().contains("from an array"));

    let r = t.raw(raw_post("/v1/templates", admin, "text/plain", "{}")).await;
    assert_problem(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    let huge = json!({ "name": "x".repeat(100 * 1024), "states": [] });
    let r = t.post("/v1/templates", admin, huge).await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let r = t.get("/v1/templates?limit=abc", admin).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = t.get("/v1/templates?colour=red", admin).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");

    // Nothing was created by any of it.
    assert_eq!(t.get("/v1/templates", admin).await.body["items"], json!([]));
}

/// Nested structs are objects too: serde would fill one from an array of its fields in order
/// (and a tagged enum from an array starting with its tag), so each such array is refused with
/// its path, and nothing is written.
#[tokio::test]
async fn nested_objects_given_as_arrays_are_refused_with_their_path() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let refused = |r: &common::Reply, path: &str| {
        assert_problem(r, StatusCode::BAD_REQUEST, "bad_request");
        assert_eq!(r.body["errors"][0]["path"], path, "{:?}", r.body);
        assert!(r.body["errors"][0]["message"].as_str().unwrap().contains("invalid type: sequence"), "{:?}", r.body);
    };

    // Templates: a state, a rule's emit, the token section, a token node and a token operation.
    let (approval, _) = example("approval");
    let (tokens, _) = example("tokens");
    let cases = [
        (&approval, "/states/1", json!(["review", ["notify-reviewers"]])),
        (&approval, "/rules/0/emit", json!(["order.created"])),
        (&tokens, "/tokens", json!([[{ "id": "credit" }], []])),
        (&tokens, "/tokens/nodes/0", json!(["issuer", "source", "credit"])),
        (&tokens, "/transitions/0/tokens/0/mint", json!(["issuer", "msg.data.amount"])),
    ];
    for (template, path, array) in cases {
        let mut bad = template.clone();
        *bad.pointer_mut(path).unwrap() = array;
        refused(&t.post("/v1/templates", admin, bad).await, path);
    }
    assert_eq!(t.get("/v1/templates", admin).await.body["items"], json!([]));

    let tid = t.published_template("acme", &approval).await;
    let eid = t.execution("acme", &tid).await;
    let positional = json!(["order.created", { "orderId": "PO-1" }, "erp"]);
    let good = json!({ "type": "order.created", "payload": { "orderId": "PO-1" }, "source": "erp" });
    let batch = json!({ "events": [good, positional] });
    refused(&t.post(&format!("/v1/executions/{eid}/events/batch"), admin, batch).await, "/events/1");
    assert_eq!(t.get(&format!("/v1/executions/{eid}/events"), admin).await.body["items"], json!([]));

    let test = json!({ "event": ["order.created", {}] });
    refused(&t.post(&format!("/v1/rules/{tid}:order-created/test"), admin, test).await, "/event");

    let schedule = json!({ "cron": "0 * * * *", "target": ["post_event", eid, "order.created"] });
    refused(&t.post("/v1/schedules", admin, schedule).await, "/target");
    let extra = json!({ "kind": "post_event", "executionId": eid, "type": "order.created", "colour": "red" });
    let r = t.post("/v1/schedules", admin, json!({ "cron": "0 * * * *", "target": extra })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(r.body["errors"][0]["path"], "/target", "{:?}", r.body);
    assert_eq!(t.get("/v1/schedules", admin).await.body["items"], json!([]));
}

/// Names, event types, sources and reasons are bounded in characters, as the messages and the
/// OpenAPI document (`maxLength`) say, not in UTF-8 bytes; white space alone is refused.
#[tokio::test]
async fn text_fields_are_bounded_in_characters_and_must_not_be_blank() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let (template, _) = example("approval");
    let tid = t.published_template("acme", &template).await;
    let start = |name: String| json!({ "templateId": tid, "name": name });
    // 200 three-byte characters: 600 bytes, within the bound.
    let r = t.post("/v1/executions", admin, start("ü€".repeat(100))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let eid = r.body["id"].as_str().unwrap().to_owned();
    let r = t.post("/v1/executions", admin, start("€".repeat(201))).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(r.body["errors"][0]["path"], "/name");
    assert_problem(
        &t.post("/v1/executions", admin, start(" \t ".into())).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    let events = format!("/v1/executions/{eid}/events");
    let event = |kind: &str| json!({ "type": kind, "payload": {}, "source": "s" });
    let r = t.post(&events, admin, event("  ")).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(r.body["errors"][0]["path"], "/type");
    let r = t.post(&events, admin, event(&"é".repeat(200))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    let pause = format!("/v1/executions/{eid}/pause");
    let r = t.post(&pause, admin, json!({ "reason": "ж".repeat(2001) })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(r.body["errors"][0]["path"], "/reason");
    let r = t.post(&pause, admin, json!({ "reason": "ж".repeat(2000) })).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let r = t.post("/v1/tokens", admin, json!({ "role": "viewer", "name": "\u{3000}" })).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");

    // Template names, when created, replaced and copied (a copy's default name included).
    let named = |name: String| {
        let mut named = template.clone();
        named["name"] = json!(name);
        named
    };
    let r = t.post("/v1/templates", admin, named(" ".into())).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(r.body["errors"][0]["path"], "/name");
    let r = t.post("/v1/templates", admin, named("ü".repeat(200))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let long = r.body["id"].as_str().unwrap().to_owned();
    let r = t.call(Method::PUT, &format!("/v1/templates/{long}"), Some(admin), Some(named("x".repeat(201)))).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(t.get(&format!("/v1/templates/{long}"), admin).await.body["name"], "ü".repeat(200));
    let copy = format!("/v1/templates/{long}/duplicate");
    assert_problem(&t.post(&copy, admin, json!({})).await, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(t.post(&copy, admin, json!({ "name": "short" })).await.status, StatusCode::CREATED);
}

/// A request that changes a record under its lock (a template's draft, an inbound source's
/// secret) and an idempotency key whose lock falls on the same stripe: it must not wait for
/// itself. Keys are searched until one collides.
#[tokio::test]
async fn an_idempotency_key_sharing_a_lock_with_its_record_does_not_hang() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let org = pled_core::OrgId::new("acme").unwrap();
    let colliding = |scope: &str, record: &str| {
        (0..)
            .map(|n| format!("key-{n}"))
            .find(|key| {
                let mut headers = axum::http::HeaderMap::new();
                headers.insert("idempotency-key", key.parse().unwrap());
                let idem = Idempotency::from_request(&headers, &org, scope, "/", b"").unwrap().unwrap();
                t.state.locks.stripe(&idem.lock_key()) == t.state.locks.stripe(record)
            })
            .unwrap()
    };
    let patience = std::time::Duration::from_secs(10);

    let key = colliding("hook-source:src", "hooksec/acme/src");
    let headers = [("idempotency-key", key.as_str())];
    let r =
        tokio::time::timeout(patience, t.call_with(Method::POST, "/v1/hooks/sources/src", Some(admin), None, &headers))
            .await
            .expect("rotating a source's secret hung");
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    let (template, _) = example("approval");
    let tid = t.post("/v1/templates", admin, template).await.body["id"].as_str().unwrap().to_owned();
    let key = colliding(&format!("publish:{tid}"), &format!("tpl/acme/{tid}"));
    let publish = format!("/v1/templates/{tid}/versions");
    let headers = [("idempotency-key", key.as_str())];
    let r = tokio::time::timeout(patience, t.call_with(Method::POST, &publish, Some(admin), None, &headers))
        .await
        .expect("publishing hung");
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn routing_errors_are_problems_too() {
    let t = TestApp::new();
    assert_problem(&t.get("/v1/nope", t.admin("acme")).await, StatusCode::NOT_FOUND, "not_found");
    let r = t.call(Method::PATCH, "/v1/templates", Some(t.admin("acme")), None).await;
    assert_problem(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_problem(&t.get("/v1/executions/not-a-uuid", t.admin("acme")).await, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn idempotency_keys_replay_or_conflict_and_survive_a_restart() {
    let t = TestApp::new();
    let admin = t.admin("acme").to_owned();
    let (template, _) = example("approval");
    let key = [("idempotency-key", "create-approval-1")];
    let first = t.call_with(Method::POST, "/v1/templates", Some(&admin), Some(template.clone()), &key).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = t.call_with(Method::POST, "/v1/templates", Some(&admin), Some(template.clone()), &key).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.headers.get("idempotency-replayed").unwrap(), "true");
    // The same body in other bytes (indented, with its members in reverse order) is the same request.
    let reordered = {
        let members: Vec<String> =
            template.as_object().unwrap().iter().rev().map(|(k, v)| format!("  {}: {v:#}", json!(k))).collect();
        format!("{{\n{}\n}}", members.join(",\n"))
    };
    assert_ne!(reordered, template.to_string());
    let req = Request::post("/v1/templates")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .header("idempotency-key", "create-approval-1")
        .body(Body::from(reordered))
        .unwrap();
    let same = t.raw(req).await;
    assert_eq!((same.status, &same.body["id"]), (StatusCode::CREATED, &first.body["id"]), "{:?}", same.body);
    assert_eq!(same.headers.get("idempotency-replayed").unwrap(), "true");
    let mut other = template.clone();
    other["name"] = json!("something else");
    let r = t.call_with(Method::POST, "/v1/templates", Some(&admin), Some(other), &key).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict");
    assert_eq!(t.get("/v1/templates", &admin).await.body["items"].as_array().unwrap().len(), 1);

    // The same key in another org is another key.
    let g = t.call_with(Method::POST, "/v1/templates", Some(t.admin("globex")), Some(template.clone()), &key).await;
    assert_eq!(g.status, StatusCode::CREATED);
    assert_ne!(g.body["id"], first.body["id"]);

    // Records are in the store: a new app over the same store replays.
    let store = t.store.clone();
    let app2 = pled_api::app(pled_api::server::state(store, Default::default(), Default::default()).unwrap());
    let t2 = common::TestApp { app: app2, ..t };
    let replay = t2.call_with(Method::POST, "/v1/templates", Some(&admin), Some(template), &key).await;
    assert_eq!(replay.body["id"], first.body["id"]);
}

#[tokio::test]
async fn an_idempotency_key_is_answered_from_its_record_until_the_ttl_then_is_new_again() {
    // Long enough that the first two posts fall inside it on a loaded machine.
    let ttl = std::time::Duration::from_secs(2);
    let t = TestApp::with_config(|c| c.idempotency_ttl = ttl);
    let admin = t.admin("acme");
    let (template, events) = example("approval");
    let eid = t.execution("acme", &t.published_template("acme", &template).await).await;
    let path = format!("/v1/executions/{eid}/events");
    let key = [("idempotency-key", "event-1")];
    let post = || t.call_with(Method::POST, &path, Some(admin), Some(events[0].clone()), &key);
    let first = post().await;
    assert_eq!((first.status, &first.body["eventSeq"]), (StatusCode::CREATED, &json!(1)), "{:?}", first.body);
    let again = post().await;
    assert_eq!(again.headers.get("idempotency-replayed").unwrap(), "true");
    assert_eq!(again.body, first.body);

    tokio::time::sleep(ttl + std::time::Duration::from_millis(100)).await;
    let later = post().await;
    assert_eq!(later.status, StatusCode::CREATED, "{:?}", later.body);
    assert!(later.headers.get("idempotency-replayed").is_none(), "the record has expired");
    assert_eq!(later.body["eventSeq"], 2, "a new request: the event is recorded again");
    let events = t.get(&format!("/v1/executions/{eid}/events"), admin).await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn health_metrics_openapi_and_docs() {
    let t = TestApp::new();
    let r = t.call(Method::GET, "/health", None, None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let r = t.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    t.get("/v1/templates", t.admin("acme")).await;
    // The lanes' counters count into the recorder /metrics renders.
    let (template, events) = example("approval");
    let eid = t.execution("acme", &t.published_template("acme", &template).await).await;
    let r = t.post(&format!("/v1/executions/{eid}/events"), t.admin("acme"), events[0].clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = t.call(Method::GET, "/metrics", None, None).await;
    let text = r.body.as_str().unwrap();
    assert!(text.contains("pled_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("route=\"/v1/templates\""), "{text}");
    let value = |counter: &str| text.lines().find_map(|l| l.strip_prefix(counter)?.trim().parse::<u64>().ok());
    for counter in [
        "pled_ledger_entries_appended_total{org=\"acme\"}",
        "pled_transitions_fired_total{org=\"acme\"}",
        "pled_store_keys{table=\"entries\"}",
    ] {
        assert!(value(counter).is_some_and(|n| n > 0), "{counter} not counted: {text}");
    }
    // Each org's work is counted apart (usage per tenant).
    assert_eq!(value("pled_events_ingested_total{org=\"acme\"}"), Some(1), "{text}");
    assert_eq!(value("pled_events_ingested_total{org=\"globex\"}"), None, "{text}");
    let spec = t.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(spec.status, StatusCode::OK);
    for path in [
        "/v1/templates",
        "/v1/templates/{id}/versions",
        "/v1/executions/{id}/events",
        "/v1/executions/{id}/stream",
        "/v1/rules/{rule}/test",
    ] {
        assert!(spec.body["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    assert!(spec.body["components"]["securitySchemes"]["bearer"].is_object());
    // Templates are typed by the engine's model, not "an object".
    let create = &spec.body["paths"]["/v1/templates"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(create["schema"]["$ref"], "#/components/schemas/Template");
    let limited = &spec.body["components"]["responses"]["Problem429"];
    assert_eq!(limited["headers"]["Retry-After"]["schema"]["type"], "integer", "{limited}");
    let create_responses = &spec.body["paths"]["/v1/templates"]["post"]["responses"];
    assert_eq!(create_responses["429"]["$ref"], "#/components/responses/Problem429");
    let model = &spec.body["components"]["schemas"]["Template"];
    assert_eq!(model["required"], json!(["name", "states"]), "{model}");
    assert_eq!(model["additionalProperties"], false);
    // A schedule's target refuses unknown members, and the document says so for each kind.
    let kinds = spec.body["components"]["schemas"]["Target"]["oneOf"].as_array().unwrap();
    assert!(kinds.len() >= 2 && kinds.iter().all(|k| k["additionalProperties"] == false), "{kinds:?}");
    assert_reference_matches(&spec.body);
    let docs = t.call(Method::GET, "/docs", None, None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.body.as_str().unwrap().contains("/openapi.json"));
}

#[tokio::test]
async fn readiness_fails_when_the_store_refuses_writes() {
    let t = TestApp::new();
    t.store.inject_write_failure("IO error: disk gone");
    let (template, _) = example("approval");
    let r = t.post("/v1/templates", t.admin("acme"), template).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let r = t.call(Method::GET, "/health/ready", None, None).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
}

/// The layers around the router: every answer carries a request id (the caller's, or a new
/// one), errors from routing included; a configured origin passes a CORS preflight.
#[tokio::test]
async fn request_ids_and_cors_wrap_every_answer() {
    let t = TestApp::with_config(|c| c.cors_origins = vec!["https://app.example".into()]);
    let given =
        t.call_with(Method::GET, "/v1/templates", Some(t.admin("acme")), None, &[("x-request-id", "req-42")]).await;
    assert_eq!(given.status, StatusCode::OK);
    assert_eq!(given.headers["x-request-id"], "req-42");
    let fresh = t.call(Method::GET, "/no/such/route", None, None).await;
    assert_problem(&fresh, StatusCode::NOT_FOUND, "not_found");
    let id = fresh.headers["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/templates")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, idempotency-key")
        .body(Body::empty())
        .unwrap();
    let r = t.raw(preflight).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["access-control-allow-origin"], "https://app.example");
    let allowed = r.headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("idempotency-key"), "{allowed}");
    let other = t
        .call_with(Method::GET, "/v1/templates", Some(t.admin("acme")), None, &[("origin", "https://evil.example")])
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(other.headers.get("access-control-allow-origin").is_none());
}

/// docs/api.md's route tables and the OpenAPI document list the same routes (method and path,
/// parameter names aside), and every parameter the document puts in a path is one of its
/// `{…}` segments and every operation id is unique: generated clients build their URLs and
/// method names from them.
fn assert_reference_matches(spec: &Value) {
    let shape = |path: &str| {
        let mut out = String::new();
        let mut in_param = false;
        for c in path.split('?').next().unwrap_or_default().chars() {
            match c {
                '{' => (in_param, out) = (true, out + "{}"),
                '}' => in_param = false,
                c if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    };
    let mut in_spec = std::collections::BTreeSet::new();
    let mut operation_ids = std::collections::BTreeSet::new();
    for (path, ops) in spec["paths"].as_object().unwrap() {
        let segments: Vec<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        for (method, op) in ops.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: Vec<&str> =
                params.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect();
            let mut declared = in_path.clone();
            declared.sort_unstable();
            let mut expected = segments.clone();
            expected.sort_unstable();
            assert_eq!(declared, expected, "{method} {path}: path parameters {in_path:?}");
            in_spec.insert(format!("{} {}", method.to_uppercase(), shape(path)));
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(operation_ids.insert(id.to_owned()), "{method} {path}: operationId {id:?} is not unique");
        }
    }
    let doc = std::fs::read_to_string(common::repo_root().join("docs/api.md")).unwrap();
    let mut documented = std::collections::BTreeSet::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = line[2..].split(" | ").next().unwrap_or_default();
        for route in first_cell.split('`').skip(1).step_by(2) {
            if let Some((method, path)) = route.split_once(' ')
                && ["GET", "POST", "PUT", "DELETE"].contains(&method)
                && !["/openapi.json", "/docs"].contains(&path)
            {
                documented.insert(format!("{method} {}", shape(path)));
            }
        }
    }
    let undocumented: Vec<_> = in_spec.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&in_spec).collect();
    assert!(undocumented.is_empty(), "routes missing from docs/api.md's tables: {undocumented:?}");
    assert!(unserved.is_empty(), "docs/api.md documents routes the OpenAPI document lacks: {unserved:?}");
}

/// Every flag of `pled serve` is in docs/api.md's configuration table, with its environment
/// variable, and the table names no flag the server lacks.
#[test]
fn the_configuration_table_lists_every_serve_flag() {
    use clap::Args;
    let serve = pled_api::config::ServeArgs::augment_args(clap::Command::new("serve"));
    let doc = std::fs::read_to_string(common::repo_root().join("docs/api.md")).unwrap();
    let table: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `--")).collect();
    let mut flags = Vec::new();
    for arg in serve.get_arguments() {
        let flag = format!("`--{}`", arg.get_long().unwrap());
        let env = format!("`{}`", arg.get_env().unwrap().to_str().unwrap());
        assert!(
            table.iter().any(|row| row.split(" | ").next().unwrap().contains(&flag) && row.contains(&env)),
            "{flag} ({env}) is missing from docs/api.md's configuration table"
        );
        flags.push(flag);
    }
    for row in table {
        let first_cell = row[2..].split(" | ").next().unwrap();
        for flag in first_cell.split(", ") {
            assert!(flags.iter().any(|f| f == flag), "docs/api.md documents {flag}, which `pled serve` lacks");
        }
    }
}
