//! A PLED app over a temporary store, with access tokens for two orgs in every role, driven
//! without a port (`oneshot`).
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use pled_api::auth::{JwtConfig, Role};
use pled_api::config::ServeConfig;
use pled_api::repo::tokens;
use pled_core::OrgId;
use pled_store::{Store, WriteSet};
use serde_json::{Value, json};
use tower::ServiceExt;

pub mod server;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";
pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "pled";
pub const ORGS: [&str; 2] = ["acme", "globex"];
pub const ROLES: [Role; 4] = [Role::Admin, Role::Editor, Role::Operator, Role::Viewer];

pub struct TestApp {
    pub app: Router,
    pub state: pled_api::AppState,
    pub committer: std::sync::Arc<pled_committer::Committer>,
    pub store: Store,
    pub dir: tempfile::TempDir,
    pub tokens: HashMap<(String, Role), String>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn problem_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }
}

pub fn repo_root() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn example(name: &str) -> (Value, Vec<Value>) {
    let dir = repo_root().join("examples").join(name);
    let template = serde_json::from_str(&std::fs::read_to_string(dir.join("template.json")).unwrap()).unwrap();
    let events = std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (template, events)
}

impl TestApp {
    pub fn new() -> Self {
        Self::with_config(|_| {})
    }

    pub fn with_config(tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig {
            data_dir: dir.path().to_path_buf(),
            body_limit: 64 * 1024,
            chain: pled_api::config::ChainMode::Off,
            ..Default::default()
        };
        tweak(&mut config);
        let store = Store::open(dir.path(), pled_api::server::store_options(&config)).unwrap();
        let jwt = JwtConfig {
            hs256_secret: Some(JWT_SECRET.as_bytes().to_vec()),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            ..Default::default()
        };
        let mut tokens = HashMap::new();
        let mut ws = WriteSet::new();
        for org in ORGS {
            for role in ROLES {
                let (t, _, next) = tokens::issue(&OrgId::new(org).unwrap(), role, "test", "test", None, ws).unwrap();
                ws = next;
                tokens.insert((org.to_owned(), role), t);
            }
        }
        // Tests run inside a runtime, where blocking on the writer is not allowed.
        std::thread::scope(|sc| sc.spawn(|| store.write_blocking(ws)).join().unwrap()).unwrap();
        let state = pled_api::server::state(store.clone(), config, jwt).unwrap();
        let committer = state.committer.clone();
        let app = pled_api::app(state.clone());
        Self { app, state, committer, store, dir, tokens }
    }

    /// Starts the action runner and the timer service (as `pled serve` does); they stop
    /// when the returned sender is dropped or sends `true`.
    pub fn start_workers(&self) -> tokio::sync::watch::Sender<bool> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(self.state.runner.clone().run(rx.clone()));
        tokio::spawn(self.state.timers.clone().run(rx.clone()));
        tokio::spawn(pled_api::schedules::ScheduleService::new(self.state.clone()).run(rx));
        tx
    }

    pub fn token(&self, org: &str, role: Role) -> &str {
        &self.tokens[&(org.to_owned(), role)]
    }

    pub fn admin(&self, org: &str) -> &str {
        self.token(org, Role::Admin)
    }

    /// A JWT signed with the test secret, expiring `exp_in` seconds from now.
    pub fn jwt(org: &str, role: &str, exp_in: i64, iss: &str, aud: &str) -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let claims = json!({ "sub": "user-1", "org": org, "role": role, "exp": now + exp_in, "iss": iss, "aud": aud });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    }

    pub async fn raw(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply { status, headers, body }
    }

    /// Closes a commit round now (as the committer's loop would).
    pub async fn close_round(&self) -> Option<pled_committer::RoundRecord> {
        let c = self.committer.clone();
        tokio::task::spawn_blocking(move || c.close_round()).await.unwrap().unwrap()
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        self.raw(req).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// Creates and publishes a template; returns its id.
    pub async fn published_template(&self, org: &str, template: &Value) -> String {
        let r = self.post("/v1/templates", self.admin(org), template.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let r = self.call(Method::POST, &format!("/v1/templates/{id}/versions"), Some(self.admin(org)), None).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        id
    }

    /// Starts an execution of a published template; returns its id.
    pub async fn execution(&self, org: &str, template_id: &str) -> String {
        let r = self
            .post("/v1/executions", self.admin(org), json!({ "templateId": template_id, "name": "test run" }))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }
}

/// Asserts an RFC 9457 problem with the given status and code.
pub fn assert_problem(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(
        r.headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/problem+json"),
        "{:?}",
        r.body
    );
    assert_eq!(r.problem_type(), format!("urn:pled:problem:{code}"), "{:?}", r.body);
    assert_eq!(r.body["status"], status.as_u16());
    assert!(
        r.body["title"].is_string() && r.body["detail"].is_string() && r.body["instance"].is_string(),
        "{:?}",
        r.body
    );
    assert!(r.body["traceId"].as_str().is_some_and(|t| !t.is_empty()), "{:?}", r.body);
}
