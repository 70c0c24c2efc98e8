//! The real `pled serve` binary on 127.0.0.1, driven over HTTP: the examples end to end, the
//! ledger re-hashed by an independent implementation (Python blake3 + rfc8785), live streams
//! over real sockets (late joiners, Last-Event-ID resume, a slow WebSocket client), graceful
//! shutdown, and `pled verify` on the store afterwards.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::repo_root;
use common::server::{PLED, Server};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_the_examples_and_an_independent_verifier_accepts_its_ledger() {
    let server = Server::start(&["--chain", "off", "--commit-interval", "200ms"]);
    assert_eq!(server.get("/health/ready").await["status"], "ok");
    let mut executions: Vec<String> = Vec::new();
    for name in ["approval", "tokens"] {
        let (eid, events) = server.started_execution(name).await;
        for ev in &events {
            server.post(&format!("/v1/executions/{eid}/events"), ev.clone()).await;
        }
        assert_eq!(server.get(&format!("/v1/executions/{eid}/state")).await["status"], "completed");
        let page = server.get(&format!("/v1/executions/{eid}/ledger?limit=1000")).await;
        let lines: Vec<String> = page["entries"].as_array().unwrap().iter().map(Value::to_string).collect();
        let file = server.dir.as_ref().unwrap().path().join(format!("{name}.jsonl"));
        std::fs::write(&file, lines.join("\n")).unwrap();
        let out = Command::new("python3")
            .arg(repo_root().join("tools/auditor/verify_ledger.py"))
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("ok: {} entries in 1 executions", lines.len()));
        executions.push(eid);
    }

    // Within a commit interval the entries are in a round; `pled proof verify` checks a
    // served proof offline, and refuses it once tampered with.
    let eid = &executions[0];
    let mut proof = server.get(&format!("/v1/executions/{eid}/ledger/2/proof")).await;
    for _ in 0..100 {
        if proof["status"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        proof = server.get(&format!("/v1/executions/{eid}/ledger/2/proof")).await;
    }
    assert_eq!(proof["format"], "pled-proof-v1", "{proof}");
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("proof.json");
    std::fs::write(&file, proof.to_string()).unwrap();
    let out = Command::new(PLED).args(["proof", "verify"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    proof["entry"]["body"]["eventSeq"] = json!(99);
    std::fs::write(&file, proof.to_string()).unwrap();
    let out = Command::new(PLED).args(["proof", "verify"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("entry hash mismatch"));

    // While the server runs on it, the store verifies and replays (a read-only view as of
    // the command's start), and the server goes on writing.
    let data = server.dir.as_ref().unwrap().path().to_owned();
    let out = Command::new(PLED).args(["verify", "--data-dir"]).arg(&data).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("ok: 2 execution(s)"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(PLED).args(["replay", "--execution", eid, "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The server may have appended since (an action's attempt): compare with the entry at the
    // head the replay reached.
    let seq = report["headSeq"].as_u64().unwrap();
    let page = server.get(&format!("/v1/executions/{eid}/ledger?afterSeq={}&limit=1", seq - 1)).await;
    assert_eq!((report["identical"].as_bool(), &report["headHash"]), (Some(true), &page["entries"][0]["entry_hash"]));
    let live_bundle = work.path().join("live.jsonl");
    let out = Command::new(PLED)
        .args(["audit", "export", "--execution", eid, "--out"])
        .arg(&live_bundle)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(PLED).args(["audit", "verify"]).arg(&live_bundle).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let (running, _) = server.started_execution("approval").await;
    assert_eq!(server.get(&format!("/v1/executions/{running}/state")).await["headSeq"], 1);

    let dir = server.stop();
    // After a graceful stop the store verifies offline, and evidence exports and verifies.
    let out = Command::new(PLED).args(["verify", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let bundle = work.path().join("evidence.jsonl");
    let out = Command::new(PLED)
        .args(["audit", "export", "--execution", eid, "--out"])
        .arg(&bundle)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(PLED).args(["audit", "verify"]).arg(&bundle).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && report.contains("VERIFIED"), "{report}");
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(text.contains("Checking the supplier"));
    std::fs::write(&bundle, text.replacen("Checking the supplier", "Checking the supplies", 1)).unwrap();
    let out = Command::new(PLED).args(["audit", "verify"]).arg(&bundle).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
}

/// A one-state template that counts `ping` messages.
fn pings() -> Value {
    json!({
        "name": "pings",
        "states": [{ "id": "open", "initial": true }],
        "transitions": [{ "id": "count", "from": "open", "to": "open", "on": "ping" }]
    })
}

/// Reads SSE events (name, id, data) until `stop` says so.
async fn read_sse(
    res: reqwest::Response,
    mut stop: impl FnMut(&str, Option<u64>, &Value) -> bool,
) -> Vec<(String, Option<u64>, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut stream = res.bytes_stream();
    let (mut name, mut id, mut data) = (String::new(), None, String::new());
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("SSE stalled") {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() {
                    let v: Value = serde_json::from_str(&data).unwrap();
                    let done = stop(&name, id, &v);
                    out.push((std::mem::take(&mut name), id.take(), v));
                    data.clear();
                    if done {
                        return out;
                    }
                }
            } else if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_sse_joiner_gets_every_entry_once_and_resumes_with_last_event_id() {
    let server = std::sync::Arc::new(Server::start(&["--chain", "off", "--commit-interval", "200ms"]));
    let eid = server.execution_of(pings(), "race").await;

    // Appends race the connection.
    let writer = {
        let (server, eid) = (server.clone(), eid.clone());
        tokio::spawn(async move {
            for i in 0..150 {
                server
                    .post(
                        &format!("/v1/executions/{eid}/events"),
                        json!({ "type": "ping", "payload": { "i": i }, "source": "race" }),
                    )
                    .await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let res = server.client().get(format!("{}/v1/executions/{eid}/stream", server.base)).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    writer.await.unwrap();
    let final_head = server.get(&format!("/v1/executions/{eid}/state")).await["headSeq"].as_u64().unwrap();
    let events = read_sse(res, |name, id, _| name == "state" && id == Some(final_head)).await;
    assert_eq!(events[0].0, "snapshot");
    let from = events[0].1.unwrap();
    let seqs: Vec<u64> = events.iter().filter(|e| e.0 == "entry").map(|e| e.2["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (from + 1..=final_head).collect::<Vec<_>>(),
        "entries after the snapshot, each exactly once, in order"
    );
    // Entries arrive in export form and chain from the snapshot's head hash.
    let first = events.iter().find(|e| e.0 == "entry").unwrap();
    assert_eq!(first.2["prev_hash"], events[0].2["headHash"]);

    // Resume: Last-Event-ID = a seq in the middle gives exactly the entries after it.
    let resume_at = final_head - 10;
    let res = server
        .client()
        .get(format!("{}/v1/executions/{eid}/stream", server.base))
        .header("last-event-id", resume_at.to_string())
        .send()
        .await
        .unwrap();
    let events = read_sse(res, |name, id, _| name == "entry" && id == Some(final_head)).await;
    let seqs: Vec<u64> = events.iter().filter(|e| e.0 == "entry").map(|e| e.1.unwrap()).collect();
    assert_eq!(seqs, (resume_at + 1..=final_head).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_websocket_client_is_told_it_lagged_while_ingest_goes_on() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let server = Server::start(&["--chain", "off", "--commit-interval", "200ms"]);
    let eid = server.execution_of(pings(), "slow").await;

    let mut req =
        format!("{}/v1/executions/{eid}/ws", server.base.replace("http", "ws")).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", server.token).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();

    // The client reads nothing while ~50 MB of entries are appended: far more than the
    // socket buffers and the subscriber's bound.
    let pad = "x".repeat(3000);
    for b in 0..30 {
        let events: Vec<Value> = (0..200)
            .map(|i| json!({ "type": "ping", "payload": { "b": b, "i": i, "pad": pad }, "source": "slow" }))
            .collect();
        let r = server.post(&format!("/v1/executions/{eid}/events/batch"), json!({ "events": events })).await;
        assert_eq!(r["events"].as_array().unwrap().len(), 200, "ingest must go on");
    }
    let mut seen_snapshot = false;
    let lagged = loop {
        let msg =
            tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("no lag signal").unwrap().unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            match v["type"].as_str().unwrap() {
                "snapshot" => seen_snapshot = true,
                "lagged" => break v,
                _ => {}
            }
        }
    };
    assert!(seen_snapshot);
    let resume = lagged["resumeAfterSeq"].as_u64().unwrap();
    let head = server.get(&format!("/v1/executions/{eid}/state")).await["headSeq"].as_u64().unwrap();
    assert!(resume < head, "lagged at {resume}, head {head}");
    // Resuming from the signal's seq picks up exactly where the client was.
    let mut req = format!("{}/v1/executions/{eid}/ws?afterSeq={resume}", server.base.replace("http", "ws"))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", server.token).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut next = None;
    while next.is_none() {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = ws.next().await.unwrap().unwrap() {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "entry" {
                next = v["entry"]["seq"].as_u64();
            }
        }
    }
    assert_eq!(next, Some(resume + 1));
}

/// A graceful shutdown does not wait for the clients that hold requests open: an SSE stream
/// and a WebSocket get `closing` with the seq to resume after and end (the socket with 1001,
/// going away), a long-poll answers 503, and the process exits 0 at once, leaving a store that
/// `pled verify` accepts. Before, one open stream kept the server running until its client
/// went away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_and_long_polls_instead_of_waiting_for_their_clients() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let mut server = Server::start(&["--chain", "off"]);
    let eid = server.execution_of(pings(), "stop").await;
    for i in 0..3 {
        server
            .post(
                &format!("/v1/executions/{eid}/events"),
                json!({ "type": "ping", "payload": { "i": i }, "source": "t" }),
            )
            .await;
    }
    let head = server.get(&format!("/v1/executions/{eid}/state")).await["headSeq"].as_u64().unwrap();

    let sse = server.client().get(format!("{}/v1/executions/{eid}/stream", server.base)).send().await.unwrap();
    let mut req =
        format!("{}/v1/executions/{eid}/ws", server.base.replace("http", "ws")).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", server.token).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let poll = tokio::spawn(
        server
            .client()
            .get(format!("{}/v1/executions/{eid}/wait?status=completed&timeoutMs=25000", server.base))
            .send(),
    );
    // The snapshot on the socket says the stream is live; give the long-poll a moment to start.
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    assert!(first.to_text().unwrap().contains(r#""type":"snapshot""#), "{first:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.terminate();
    // The SSE body ends (read_sse returns at its end; keep-alives would hold it open).
    let events = tokio::time::timeout(Duration::from_secs(10), read_sse(sse, |_, _, _| false))
        .await
        .expect("the SSE stream did not end when the server shut down");
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["snapshot", "closing"]);
    assert_eq!(events[1].2, json!({ "resumeAfterSeq": head }));
    // The socket: `closing`, then a close frame "going away".
    let mut texts = Vec::new();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("socket stalled") {
            Some(Ok(Message::Text(t))) => texts.push(serde_json::from_str::<Value>(&t).unwrap()),
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(texts, [json!({ "type": "closing", "resumeAfterSeq": head })]);
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    let answer = poll.await.unwrap().unwrap();
    assert_eq!(answer.status(), 503);
    let problem: Value = answer.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("shutting down"), "{problem}");

    let status = server.exited_within(Duration::from_secs(10)).expect("the server did not exit");
    assert!(status.success(), "{status}");
    let out =
        Command::new(PLED).arg("verify").arg("--data-dir").arg(server.dir.as_ref().unwrap().path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// With `--backup-dir`, the server writes whole-store backups at start and every interval,
/// keeps the newest `--backup-keep`, and each one verifies and replays as a store of its own.
#[tokio::test]
async fn backups_are_whole_stores_taken_on_schedule_and_pruned() {
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_str().unwrap().to_owned();
    let server =
        Server::start(&["--chain", "off", "--backup-dir", &dir, "--backup-every", "300ms", "--backup-keep", "2"]);
    let eid = server.execution_of(pings(), "backed up").await;
    let events: Vec<Value> = (0..50).map(|i| json!({"type": "ping", "payload": {"i": i}, "source": "t"})).collect();
    server.post(&format!("/v1/executions/{eid}/events/batch"), json!({"events": events})).await;
    let state = server.get(&format!("/v1/executions/{eid}/state")).await;
    let last =
        server.get(&format!("/v1/executions/{eid}/ledger?afterSeq={}", state["headSeq"].as_u64().unwrap() - 1)).await;
    // Backup names are the UTC time without ":" and ".", as in the entries' recorded_at.
    let after_events = format!("pled-{}", last["entries"][0]["recorded_at"].as_str().unwrap().replace([':', '.'], ""));
    let finished = || {
        let mut names: Vec<String> = std::fs::read_dir(backups.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("pled-"))
            .collect();
        names.sort();
        names
    };
    let mut waited = 0;
    while finished().last().is_none_or(|newest| *newest <= after_events) {
        assert!(waited < 200, "no backup after the events: {:?}", finished());
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    let dir = server.stop();
    let names = finished();
    assert_eq!(names.len(), 2, "the newest --backup-keep: {names:?}");
    assert!(
        std::fs::read_dir(backups.path()).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.'))
    );
    // The newest holds every event: it replays to the live head and verifies.
    let newest = backups.path().join(names.last().unwrap());
    let out = Command::new(PLED)
        .args(["replay", "--execution", &eid, "--progress-every", "0", "--data-dir"])
        .arg(&newest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["headHash"], state["headHash"]);
    let out = Command::new(PLED).args(["verify", "--data-dir"]).arg(&newest).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("ok: 1 execution(s)"), "{text}");
    drop(dir);
}

/// `pled backup` copies the store of a running server, as of its start, into a directory
/// that verifies and replays as a store of its own, and never writes into an existing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pled_backup_copies_a_running_servers_store() {
    let server = Server::start(&["--chain", "off"]);
    let eid = server.execution_of(pings(), "backed up by hand").await;
    let events: Vec<Value> = (0..40).map(|i| json!({"type": "ping", "payload": {"i": i}, "source": "t"})).collect();
    server.post(&format!("/v1/executions/{eid}/events/batch"), json!({"events": events})).await;
    let state = server.get(&format!("/v1/executions/{eid}/state")).await;

    let backups = tempfile::tempdir().unwrap();
    let out = backups.path().join("before-upgrade");
    let data = server.dir.as_ref().unwrap().path().to_owned();
    let backup =
        || Command::new(PLED).args(["backup", "--data-dir"]).arg(&data).arg("--out").arg(&out).output().unwrap();
    let run = backup();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "{stderr}");
    assert!(stdout.starts_with(&format!("backup of {} written to {}", data.display(), out.display())), "{stdout}");
    assert!(stderr.contains("     entries: ") && stderr.contains("check it with: pled verify"), "{stderr}");
    // The server goes on while the copy stands on its own.
    server.post(&format!("/v1/executions/{eid}/events"), json!({"type": "ping", "payload": {}, "source": "t"})).await;

    let again = backup();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let left: Vec<_> = std::fs::read_dir(backups.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["before-upgrade"], "no partial copy left behind");

    // With --verify the command re-hashes the copy's chains, as `pled verify` does.
    let checked = tempfile::tempdir().unwrap();
    let run = Command::new(PLED)
        .args(["backup", "--verify", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(checked.path().join("checked"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    let entries = state["headSeq"].as_u64().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(text.lines().nth(1).unwrap().starts_with("ok: 1 execution(s), "), "{text}");
    let verify = Command::new(PLED).args(["verify", "--data-dir"]).arg(&out).output().unwrap();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(text.starts_with(&format!("ok: 1 execution(s), {entries} entries")), "{text}");
    let replay = Command::new(PLED)
        .args(["replay", "--execution", &eid, "--progress-every", "0", "--data-dir"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&replay.stdout).unwrap()["headHash"], state["headHash"]);
    server.stop();
}

/// A token's last use is kept in memory and written at shutdown (and every minute), so the
/// command line sees it once the server has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_last_use_is_listed_and_written_by_a_graceful_shutdown() {
    let server = Server::start(&["--chain", "off"]);
    let listed = server.get("/v1/tokens").await;
    let ours = listed.as_array().unwrap().iter().find(|r| r["name"] == "e2e").unwrap();
    // Listing it was a use.
    let at = ours["lastUsedAt"].as_str().unwrap().to_owned();
    assert!(at.as_str() > ours["createdAt"].as_str().unwrap(), "{ours}");

    let dir = server.stop();
    let out =
        Command::new(PLED).args(["token", "list", "--org", "acme", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8(out.stdout).unwrap();
    let line = listing.lines().find(|l| l.ends_with("\te2e")).unwrap();
    assert_eq!(line.split('\t').nth(5), Some(at.as_str()), "{listing}");
}
