//! `pled replay` on a stopped store: from genesis, from a snapshot and up to a seq, with
//! progress on stderr and the report on stdout; exit 0 when identical, 2 on bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use axum::http::StatusCode;
use common::{TestApp, example};
use serde_json::{Value, json};

const PLED: &str = env!("CARGO_BIN_EXE_pled");

struct Stopped {
    dir: tempfile::TempDir,
    execution: String,
    snapshot: u64,
    head_seq: u64,
    head_hash: String,
}

/// Runs the approval example with a pause and a forced action, takes a snapshot, and stops
/// everything that holds the store (lanes, committer, writer).
fn stopped_store() -> Stopped {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (t, execution, snapshot, state) = rt.block_on(async {
        let t = TestApp::new();
        let admin = t.admin("acme").to_owned();
        let (tpl, events) = example("approval");
        let tid = t.published_template("acme", &tpl).await;
        let eid = t.execution("acme", &tid).await;
        let post = |path: String, body: Value| {
            let (t, admin) = (&t, admin.clone());
            async move {
                let r = t.post(&path, &admin, body).await;
                assert!(r.status.is_success(), "{path}: {:?}", r.body);
                r.body
            }
        };
        post(format!("/v1/executions/{eid}/events"), events[0].clone()).await;
        let snap = post(format!("/v1/executions/{eid}/snapshot"), json!({})).await;
        post(format!("/v1/executions/{eid}/pause"), json!({"reason": "hold"})).await;
        post(format!("/v1/executions/{eid}/events"), events[1].clone()).await;
        post(format!("/v1/executions/{eid}/resume"), json!({"reason": "go on"})).await;
        post(format!("/v1/executions/{eid}/force-action"), json!({"actionId": "notify-reviewers", "reason": "resend"}))
            .await;
        post(format!("/v1/executions/{eid}/events"), events[2].clone()).await;
        let state = t.get(&format!("/v1/executions/{eid}/state"), &admin).await;
        assert_eq!(state.status, StatusCode::OK);
        (t, eid, snap["seq"].as_u64().unwrap(), state.body)
    });
    // Stopping the runtime ends the lanes; dropping the rest closes the store.
    drop(rt);
    let TestApp { app, committer, store, dir, .. } = t;
    drop((app, committer, store));
    Stopped {
        dir,
        execution,
        snapshot,
        head_seq: state["headSeq"].as_u64().unwrap(),
        head_hash: state["headHash"].as_str().unwrap().to_owned(),
    }
}

fn replay(s: &Stopped, extra: &[&str]) -> (i32, Value, String) {
    let out = Command::new(PLED)
        .args(["replay", "--data-dir"])
        .arg(s.dir.path())
        .args(["--execution", &s.execution])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, stderr)
}

#[test]
fn pled_replay_reproduces_a_stopped_stores_chain_from_genesis_and_from_a_snapshot() {
    let s = stopped_store();
    let (code, report, stderr) = replay(&s, &["--progress-every", "1"]);
    assert_eq!(code, 0, "{stderr}\n{report:#}");
    assert_eq!(report["identical"], true);
    assert_eq!(report["headSeq"], s.head_seq);
    assert_eq!(report["headHash"], s.head_hash.as_str());
    assert_eq!(report["stateMatchesHead"], true);
    assert_eq!(report["events"], 3);
    assert_eq!(report["snapshots"], json!([{"id": s.snapshot, "matches": true}]));
    assert!(stderr.lines().filter(|l| l.starts_with("replayed ")).count() >= 5, "progress lines: {stderr}");
    assert!(stderr.contains("identical"), "{stderr}");

    let snap = s.snapshot.to_string();
    let (code, from, stderr) = replay(&s, &["--from-snapshot", &snap]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(from["identical"], true);
    assert_eq!(from["fromSeq"], s.snapshot);
    assert_eq!(from["headHash"], report["headHash"]);
    assert_eq!(from["state"], report["state"]);

    let up_to = (s.head_seq - 1).to_string();
    let (code, part, stderr) = replay(&s, &["--up-to", &up_to, "--progress-every", "0"]);
    assert_eq!(code, 0);
    assert!(!stderr.contains("replayed "), "--progress-every 0 prints no progress: {stderr}");
    assert_eq!(part["identical"], true);
    assert!(part["headSeq"].as_u64().unwrap() < s.head_seq);
    assert_eq!(part["storedHeadHash"], part["headHash"]);

    // Bad input: one clear line, exit 2, nothing else.
    let (code, _, stderr) = replay(&s, &["--from-snapshot", "424242"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("snapshot 424242 not found"), "{stderr}");
    let (code, _, stderr) = replay(&Stopped { execution: "not-an-id".into(), ..s }, &[]);
    assert_eq!(code, 2, "{stderr}");
}
