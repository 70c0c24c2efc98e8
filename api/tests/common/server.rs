//! The real `pled serve` binary (and anvil) on 127.0.0.1, for end-to-end tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::example;

pub const PLED: &str = env!("CARGO_BIN_EXE_pled");

pub struct Server {
    pub child: Child,
    pub base: String,
    pub token: String,
    pub dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    /// A test that fails (or never calls `stop`) must not leave a server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// A fresh store with an admin token, served with `args` (e.g. `--chain off`).
    pub fn start(args: &[&str]) -> Self {
        Self::start_env(args, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(PLED)
            .args(["token", "create", "--org", "acme", "--role", "admin", "--name", "e2e", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Self::start_on(dir, token, args, env)
    }

    /// Serves an existing store (a restart).
    pub fn start_on(dir: tempfile::TempDir, token: String, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(PLED)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if let Some(a) = v["fields"]["addr"].as_str() {
                break a.to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Self { child, base: format!("http://{addr}"), token, dir: Some(dir) }
    }

    pub fn client(&self) -> reqwest::Client {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("authorization", format!("Bearer {}", self.token).parse().unwrap());
        reqwest::Client::builder().default_headers(h).build().unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self.client().post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    pub async fn get(&self, path: &str) -> Value {
        self.client().get(format!("{}{path}", self.base)).send().await.unwrap().json().await.unwrap()
    }

    /// Sends SIGTERM (a graceful shutdown), without waiting.
    pub fn terminate(&self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
    }

    /// The exit status, if the process exits within `limit`.
    pub fn exited_within(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait: a graceful shutdown exits 0.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.terminate();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "pled serve exited with {status}");
        self.dir.take().unwrap()
    }

    pub async fn started_execution(&self, example_name: &str) -> (String, Vec<Value>) {
        let (template, events) = example(example_name);
        (self.execution_of(template, "e2e").await, events)
    }

    /// Creates and publishes `template`, then starts an execution of it; returns its id.
    pub async fn execution_of(&self, template: Value, name: &str) -> String {
        let tid = self.post("/v1/templates", template).await["id"].as_str().unwrap().to_owned();
        self.post(&format!("/v1/templates/{tid}/versions"), json!({})).await;
        self.post("/v1/executions", json!({ "templateId": tid, "name": name })).await["id"].as_str().unwrap().to_owned()
    }
}

impl Server {
    /// SIGKILL, keeping the store (a crash).
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().unwrap()
    }
}

/// A real anvil on a free loopback port (binary from hardhat/node_modules).
pub struct Anvil {
    pub child: Child,
    pub port: u16,
    pub url: String,
}

impl Anvil {
    pub fn binary() -> std::path::PathBuf {
        super::repo_root().join("hardhat/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
    }

    /// Starts anvil (automine) on `port` (0 = a free one), with `--state FILE` if given.
    pub fn start(port: u16, state: Option<&std::path::Path>) -> Self {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
        } else {
            port
        };
        let mut cmd = Command::new(Self::binary());
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"]);
        if let Some(s) = state {
            cmd.arg("--state").arg(s);
        }
        let child =
            cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("anvil (run scripts/setup-hardhat.sh)");
        let url = format!("http://127.0.0.1:{port}");
        let a = Self { child, port, url };
        for _ in 0..200 {
            if a.rpc("eth_chainId", json!([])).is_ok() {
                return a;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("anvil did not start");
    }

    /// A JSON-RPC call.
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, String> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let out = Command::new("curl")
            .args(["-s", "-m", "5", "-H", "content-type: application/json", "-d", &body.to_string(), &self.url])
            .output()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))?;
        if v["error"].is_object() {
            return Err(v["error"].to_string());
        }
        Ok(v["result"].clone())
    }

    /// SIGTERM (anvil writes its `--state` file), then wait.
    pub fn stop(mut self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
