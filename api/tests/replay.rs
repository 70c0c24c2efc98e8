//! Snapshots and replay through the router: generated streams of events, batches, pauses,
//! resumes, forced transitions and actions, on-demand and periodic snapshots; replay from
//! genesis and from every snapshot reproduces the identical head hash and state; replay
//! appends nothing and enqueues no job; a different machine is caught at the first entry
//! that differs; `write: true` is refused.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::{TestApp, assert_problem, example};
use pled_api::auth::Role;
use pled_api::replay::{ReplayOptions, Stop};
use pled_core::ExecutionId;
use pled_store::Table;
use proptest::prelude::*;
use serde_json::{Value, json};

fn template() -> Value {
    json!({
        "name": "determinism",
        "variables": [
            {"name": "n", "type": "int", "default": 0},
            {"name": "total", "type": "double", "default": 0},
            {"name": "tags", "type": "any"}
        ],
        "states": [
            {"id": "idle", "initial": true, "onEnter": ["ping"]},
            {"id": "busy", "onEnter": ["work"], "onExit": ["bye"]},
            {"id": "hold"},
            {"id": "done", "final": true}
        ],
        "transitions": [
            {"id": "start", "from": "idle", "to": "busy", "on": "go", "guard": "msg.data.x > 0",
             "assign": {"n": "vars.n + 1", "total": "vars.total + double(msg.data.x) * 1.5"},
             "tokens": [{"mint": {"node": "src", "amount": "msg.data.x"}}]},
            {"id": "tick", "from": "busy", "to": "busy", "on": "go", "assign": {"n": "vars.n + msg.data.x", "tags": "[msg.type, vars.n]"}},
            {"id": "park", "from": "busy", "to": "hold", "on": "park", "tokens": [{"consume": {"node": "sink", "amount": "1"}}]},
            {"id": "unpark", "from": "hold", "to": "busy", "on": "go"},
            {"id": "timeout", "from": "busy", "to": "hold", "after": "1h"},
            {"id": "finish", "from": "hold", "to": "done", "on": "finish", "guard": "vars.n > 12"}
        ],
        "rules": [
            {"id": "double", "on": "raw", "when": "event.payload.x != 0", "emit": {"type": "go", "data": {"x": "event.payload.x * 2"}}},
            {"id": "then-park", "on": "raw", "emit": {"type": "park"}}
        ],
        "actions": [
            {"id": "ping", "type": "webhook", "input": {"n": "=vars.n"}},
            {"id": "work", "type": "webhook", "input": {"total": "=vars.total", "s": "=state"}},
            {"id": "bye", "type": "emit_event", "input": {"lit": [1, "x"]}}
        ],
        "tokens": {
            "types": [{"id": "credit"}],
            "nodes": [{"id": "src", "kind": "source", "token": "credit"}, {"id": "sink", "kind": "sink", "token": "credit"}]
        }
    })
}

const EVENT_TYPES: [&str; 5] = ["go", "park", "raw", "finish", "noise"];
const STATES: [&str; 4] = ["idle", "busy", "hold", "done"];
const TRANSITIONS: [&str; 4] = ["start", "tick", "park", "unpark"];

#[derive(Debug, Clone)]
enum Op {
    Event(usize, i64),
    Batch(Vec<(usize, i64)>),
    Pause,
    Resume,
    ForceState(usize),
    ForceTransition(usize, i64),
    ForceAction,
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    let ev = (0..EVENT_TYPES.len(), -3i64..8);
    prop_oneof![
        8 => ev.clone().prop_map(|(k, x)| Op::Event(k, x)),
        2 => prop::collection::vec(ev, 1..5).prop_map(Op::Batch),
        2 => Just(Op::Pause),
        2 => Just(Op::Resume),
        1 => (0..STATES.len() - 1).prop_map(Op::ForceState),
        1 => (0..TRANSITIONS.len(), 0i64..5).prop_map(|(t, x)| Op::ForceTransition(t, x)),
        1 => Just(Op::ForceAction),
        1 => Just(Op::Snapshot),
    ]
}

fn event(kind: usize, x: i64) -> Value {
    json!({"type": EVENT_TYPES[kind], "payload": {"x": x, "note": format!("x={x}")}, "source": "gen"})
}

async fn replay(t: &TestApp, eid: &str, body: Value) -> Value {
    let r = t.post(&format!("/v1/executions/{eid}/replay"), t.token("acme", Role::Operator), body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

/// Drives one execution with `ops`; returns its id.
async fn drive(t: &TestApp, ops: &[Op]) -> String {
    let tid = t.published_template("acme", &template()).await;
    let eid = t.execution("acme", &tid).await;
    let admin = t.admin("acme");
    for op in ops {
        let (path, body) = match op {
            Op::Event(k, x) => ("events", event(*k, *x)),
            Op::Batch(evs) => {
                ("events/batch", json!({"events": evs.iter().map(|(k, x)| event(*k, *x)).collect::<Vec<_>>()}))
            }
            Op::Pause => ("pause", json!({"reason": "p"})),
            Op::Resume => ("resume", json!({"reason": "r", "approval": {"ok": true}})),
            Op::ForceState(s) => ("force-transition", json!({"toState": STATES[*s], "reason": "f"})),
            Op::ForceTransition(tr, x) => {
                ("force-transition", json!({"transitionId": TRANSITIONS[*tr], "data": {"x": x}, "reason": "f"}))
            }
            Op::ForceAction => ("force-action", json!({"actionId": "work", "reason": "a"})),
            Op::Snapshot => ("snapshot", json!({"description": "gen"})),
        };
        let r = t.post(&format!("/v1/executions/{eid}/{path}"), admin, body).await;
        // Refusals (a conflict, a refused force) are part of the stream; failures are not.
        assert!(r.status.is_success() || r.status.is_client_error(), "{op:?}: {:?}", r.body);
        assert_ne!(r.status, StatusCode::BAD_REQUEST, "{op:?}: {:?}", r.body);
    }
    eid
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn replay_from_genesis_and_every_snapshot_reproduces_the_head_hash_and_state(
        ops in prop::collection::vec(op(), 1..28),
        every in 3u64..12,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let t = TestApp::with_config(|c| c.snapshot_every = every);
            let eid = drive(&t, &ops).await;
            let state = t.get(&format!("/v1/executions/{eid}/state"), t.admin("acme")).await.body;
            let full = replay(&t, &eid, json!({})).await;
            prop_assert_eq!(&full["identical"], &json!(true), "{:#}", full);
            prop_assert_eq!(&full["headHash"], &state["headHash"]);
            prop_assert_eq!(&full["headSeq"], &state["headSeq"]);
            prop_assert_eq!(&full["stateMatchesHead"], &json!(true));
            prop_assert_eq!(&full["state"]["status"], &state["status"]);
            prop_assert_eq!(&full["state"]["exec"]["vars"], &state["vars"]);
            let snaps = t.get(&format!("/v1/executions/{eid}/snapshots"), t.admin("acme")).await.body;
            let ids: Vec<u64> = snaps["items"].as_array().unwrap().iter().map(|s| s["id"].as_u64().unwrap()).collect();
            let checked: Vec<u64> = full["snapshots"].as_array().unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect();
            prop_assert_eq!(&checked, &ids, "every snapshot is checked on the way");
            let (mut paged, mut after) = (Vec::new(), 0);
            loop {
                let path = format!("/v1/executions/{eid}/snapshots?afterSeq={after}&limit=2");
                let page = t.get(&path, t.admin("acme")).await.body;
                paged.extend(page["items"].as_array().unwrap().iter().map(|s| s["id"].as_u64().unwrap()));
                match page["nextAfterSeq"].as_u64() {
                    Some(next) => after = next,
                    None => break,
                }
            }
            prop_assert_eq!(&paged, &ids, "pages of two list the same snapshots");
            let head = state["headSeq"].as_u64().unwrap();
            prop_assert!(
                every > head || ids.iter().any(|&s| s >= every),
                "a periodic snapshot once {} entries are crossed: {:?} (head {})", every, ids, head
            );
            for id in ids {
                let from = replay(&t, &eid, json!({"fromSnapshotId": id})).await;
                prop_assert_eq!(&from["identical"], &json!(true), "from {}: {:#}", id, from);
                prop_assert_eq!(&from["headHash"], &full["headHash"]);
                prop_assert_eq!(&from["state"], &full["state"]);
                prop_assert_eq!(from["fromSeq"].as_u64(), Some(id));
                let later: Vec<u64> = checked.iter().copied().filter(|&s| s > id).collect();
                let from_checked: Vec<u64> =
                    from["snapshots"].as_array().unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect();
                prop_assert_eq!(from_checked, later, "from {}: the snapshots after it are checked", id);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn replay_is_a_dry_run_appending_nothing_and_enqueueing_no_job() {
    let t = TestApp::new();
    let ops = [
        Op::Event(0, 3),
        Op::Event(2, 2),
        Op::Pause,
        Op::Event(0, 1),
        Op::Resume,
        Op::ForceAction,
        Op::Event(0, 4),
        Op::Snapshot,
        Op::Event(1, 0),
    ];
    let eid = drive(&t, &ops).await;
    let id: ExecutionId = eid.parse().unwrap();
    let count_jobs = || t.store.scan(Table::Jobs, b"", b"", 1_000_000).unwrap().len();
    let (jobs, head) = (count_jobs(), t.store.chain_head(id).unwrap());
    assert!(jobs > 3, "the stream scheduled actions: {jobs}");
    let feed = t.store.feed_head();
    let full = replay(&t, &eid, json!({"write": false})).await;
    assert_eq!(full["identical"], true, "{full:#}");
    let snapshot = t.get(&format!("/v1/executions/{eid}/snapshots"), t.admin("acme")).await.body["items"][0]["id"]
        .as_u64()
        .unwrap();
    let part = replay(&t, &eid, json!({"fromSnapshotId": snapshot, "upToSeq": head.seq.get() - 1})).await;
    assert_eq!(part["identical"], true, "{part:#}");
    assert!(part["headSeq"].as_u64().unwrap() < head.seq.get());
    assert_eq!(count_jobs(), jobs, "replay enqueues no job");
    assert_eq!(t.store.chain_head(id).unwrap(), head, "replay appends nothing");
    assert_eq!(t.store.feed_head(), feed, "nothing at all was appended");
    let audit = t.get("/v1/audit?limit=500", t.admin("acme")).await;
    assert!(audit.body["items"].as_array().unwrap().iter().any(|a| a["action"] == "execution.replayed"));

    // `write: true` is refused: 403 below admin, 422 for an admin.
    let path = format!("/v1/executions/{eid}/replay");
    let r = t.post(&path, t.token("acme", Role::Operator), json!({"write": true})).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = t.post(&path, t.admin("acme"), json!({"write": true})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "replay_is_dry_run");
    let r = t.post(&path, t.token("acme", Role::Viewer), json!({})).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = t.post(&path, t.admin("acme"), json!({"fromSnapshotId": 99_999})).await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    let r = t.post(&path, t.admin("acme"), json!({"upToSeq": head.seq.get() + 1})).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = t.post(&path, t.admin("acme"), json!({"upToSeq": 1, "fromSnapshotId": snapshot})).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(count_jobs(), jobs);
    assert_eq!(t.store.chain_head(id).unwrap(), head);
}

#[tokio::test]
async fn a_different_machine_is_caught_at_the_first_entry_that_differs() {
    let t = TestApp::new();
    let (tpl, events) = example("approval");
    let tid = t.published_template("acme", &tpl).await;
    let eid = t.execution("acme", &tid).await;
    for ev in &events {
        t.post(&format!("/v1/executions/{eid}/events"), t.admin("acme"), ev.clone()).await;
    }
    // The same template with the order-created rule doubling the amount.
    let mut changed = tpl.clone();
    changed["rules"][0]["emit"]["data"]["amount"] = json!("event.payload.total * 2");
    let m = pled_engine::compile(&pled_engine::Template::from_value(changed).unwrap()).machine.unwrap();
    let id: ExecutionId = eid.parse().unwrap();
    let report =
        pled_api::replay::replay(&t.store, &m, id, &ReplayOptions::default(), Stop::default(), &mut |_| {}).unwrap();
    assert!(!report.identical);
    let d = report.divergence.unwrap();
    let ledger = t.get(&format!("/v1/executions/{eid}/ledger?limit=100"), t.admin("acme")).await.body;
    let first_message =
        ledger["entries"].as_array().unwrap().iter().find(|e| e["kind"] == "message.derived").unwrap().clone();
    assert_eq!(d.seq, first_message["seq"].as_u64().unwrap());
    assert_eq!(d.field, "body");
    assert_eq!(d.stored.unwrap().body["data"]["amount"], 1250);
    assert_eq!(d.replayed.unwrap().body["data"]["amount"], 2500);
    // The pinned machine replays identically, also offline from the store.
    let pinned = pled_engine::compile(&pled_engine::Template::from_value(tpl).unwrap()).machine.unwrap();
    let ok = pled_api::replay::replay(&t.store, &pinned, id, &ReplayOptions::default(), Stop::default(), &mut |_| {})
        .unwrap();
    assert!(ok.identical, "{:?}", ok.divergence);
    assert_eq!(ok.events, 3);
    // A raised cancellation flag stops a replay between inputs; how far it got is shown.
    let flag = std::sync::atomic::AtomicBool::new(true);
    let shown = std::sync::Mutex::default();
    let stop = Stop { cancel: Some(&flag), deadline: None, progress: Some(&shown) };
    let many = drive(&t, &vec![Op::Event(4, 1); 300]).await;
    let r = pled_api::replay::replay(
        &t.store,
        &pinned,
        many.parse().unwrap(),
        &ReplayOptions::default(),
        stop,
        &mut |_| {},
    );
    let Err(pled_api::replay::ReplayError::Cancelled(at)) = r else { panic!("{r:?}") };
    assert_eq!(at.inputs, 256);
    assert_eq!(shown.lock().unwrap().inputs, 256);
}

#[tokio::test]
async fn on_demand_snapshots_are_listed_and_readable() {
    let t = TestApp::with_config(|c| c.snapshot_every = 0);
    let eid = drive(&t, &[Op::Event(0, 2), Op::Event(0, 1)]).await;
    let admin = t.admin("acme");
    let op = t.token("acme", Role::Operator);
    let none = t.get(&format!("/v1/executions/{eid}/snapshots"), admin).await;
    assert_eq!(none.body["items"], json!([]), "snapshot_every = 0: on demand only");
    let path = format!("/v1/executions/{eid}/snapshot");
    let r = t.post(&path, t.token("acme", Role::Viewer), json!({})).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = t
        .call_with(
            axum::http::Method::POST,
            &path,
            Some(op),
            Some(json!({"description": "before migration"})),
            &[("idempotency-key", "snap-1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let state = t.get(&format!("/v1/executions/{eid}/state"), admin).await.body;
    assert_eq!(r.body["seq"], state["headSeq"]);
    assert_eq!(r.body["headHash"], state["headHash"]);
    assert_eq!(r.body["eventCount"], 2);
    assert_eq!(r.body["state"]["exec"]["state"], state["state"]);
    assert_eq!(r.body["trigger"], "on_demand");
    let list = t.get(&format!("/v1/executions/{eid}/snapshots"), admin).await.body;
    assert_eq!(list["items"][0]["description"], "before migration");
    assert_eq!(list["items"][0]["id"], r.body["seq"]);
    let one = t.get(&format!("/v1/executions/{eid}/snapshots/{}", r.body["seq"]), admin).await;
    assert_eq!(one.body, r.body);
    let missing = t.get(&format!("/v1/executions/{eid}/snapshots/999"), admin).await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "not_found");
    // No body at all works too.
    let bare = t.call(axum::http::Method::POST, &path, Some(op), None).await;
    assert_eq!(bare.status, StatusCode::CREATED, "{:?}", bare.body);
}

/// An execution of a one-state template (version 2 published too) with `n` ping events:
/// more than one check interval (256) makes a fold look at its flag.
async fn pings(t: &TestApp, n: usize) -> String {
    let admin = t.admin("acme");
    let pings = json!({
        "name": "pings",
        "states": [{"id": "open", "initial": true}],
        "transitions": [{"id": "count", "from": "open", "to": "open", "on": "ping"}]
    });
    let tid = t.published_template("acme", &pings).await;
    t.post(&format!("/v1/templates/{tid}/versions"), admin, json!({})).await;
    let eid = t.execution("acme", &tid).await;
    let all: Vec<Value> = (0..n).map(|i| json!({"type": "ping", "payload": {"i": i}, "source": "t"})).collect();
    for events in all.chunks(100) {
        let r = t.post(&format!("/v1/executions/{eid}/events/batch"), admin, json!({"events": events})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    eid
}

/// A replay or a comparison running when the server shuts down stops at its next check and
/// answers 503 with its progress, instead of holding the shutdown up to the request time-out.
#[tokio::test]
async fn replay_and_comparison_stop_when_the_server_shuts_down() {
    let t = TestApp::new();
    let admin = t.admin("acme");
    let eid = pings(&t, 300).await;
    assert_eq!(replay(&t, &eid, json!({})).await["identical"], true);

    t.state.hub.close();
    let r = t.post(&format!("/v1/executions/{eid}/replay"), admin, json!({})).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(r.body["detail"].as_str().unwrap().contains("replay cancelled after 256 inputs"), "{}", r.body);
    let r = t.post(&format!("/v1/executions/{eid}/compare"), admin, json!({"version": 2})).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
}

/// Polls a run until it has ended (or fails the test after 20 s).
async fn ended(t: &TestApp, run: &str) -> Value {
    for _ in 0..2_000 {
        let r = t.get(&format!("/v1/replays/{run}"), t.token("acme", Role::Viewer)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if !["queued", "running"].contains(&r.body["status"].as_str().unwrap()) {
            return r.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("run {run} did not end");
}

/// `background: true` answers 202 with a run; the run ends with the very report the request
/// would have answered, leaves the same audit record, and is visible only in its org.
#[tokio::test]
async fn a_background_replay_or_comparison_ends_with_the_report_the_request_would_answer() {
    let t = TestApp::new();
    let operator = t.token("acme", Role::Operator);
    let eid = pings(&t, 300).await;
    let direct = replay(&t, &eid, json!({"upToSeq": 200})).await;

    let r =
        t.post(&format!("/v1/executions/{eid}/replay"), operator, json!({"upToSeq": 200, "background": true})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["location"], format!("/v1/replays/{run}").as_str());
    assert_eq!((r.body["kind"].as_str(), r.body["executionId"].as_str()), (Some("replay"), Some(eid.as_str())));
    assert_eq!(r.body["request"], json!({"upToSeq": 200, "background": true}));
    let done = ended(&t, &run).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let mut report = done["report"].clone();
    report["elapsedMs"] = direct["elapsedMs"].clone();
    assert_eq!(report, direct);
    assert_eq!(done["progress"]["seq"], direct["headSeq"]);
    assert_eq!(done["progress"]["inputs"], direct["inputs"]);
    assert!(done["startedAt"].is_string() && done["finishedAt"].is_string(), "{done:#}");

    let r = t.post(&format!("/v1/executions/{eid}/compare"), operator, json!({"version": 2, "background": true})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let compared = ended(&t, r.body["id"].as_str().unwrap()).await;
    assert_eq!((compared["status"].as_str(), compared["kind"].as_str()), (Some("succeeded"), Some("compare")));
    assert_eq!(compared["report"]["identical"], true, "{compared:#}");
    assert_eq!(compared["report"]["inputs"], 301);

    let list = t.get("/v1/replays", t.token("acme", Role::Viewer)).await;
    let ids: Vec<&str> = list.body["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [compared["id"].as_str().unwrap(), run.as_str()], "newest first");
    assert!(list.body["items"][0].get("report").is_none(), "listings leave reports out: {}", list.body);
    let r = t.get(&format!("/v1/replays?executionId={eid}"), t.token("acme", Role::Viewer)).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    let r = t.get(&format!("/v1/replays?executionId={}", ExecutionId::new_v7()), t.token("acme", Role::Viewer)).await;
    assert_eq!(r.body["items"], json!([]));
    assert_problem(&t.get("/v1/replays?status=queued", operator).await, StatusCode::BAD_REQUEST, "bad_request");
    let audit = t.get("/v1/audit?limit=500", t.admin("acme")).await;
    let actions: Vec<&str> =
        audit.body["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "execution.replayed").count(), 2, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "execution.compared").count(), 1, "{actions:?}");

    // Another org sees nothing; a viewer cannot start or cancel; an ended run cannot be
    // cancelled.
    let other = t.admin("globex");
    assert_problem(&t.get(&format!("/v1/replays/{run}"), other).await, StatusCode::NOT_FOUND, "not_found");
    let r = t.post(&format!("/v1/replays/{run}/cancel"), other, json!({})).await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(t.get("/v1/replays", other).await.body["items"], json!([]));
    let r = t.post(&format!("/v1/executions/{eid}/replay"), other, json!({"background": true})).await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not_found");
    let viewer = t.token("acme", Role::Viewer);
    let r = t.post(&format!("/v1/executions/{eid}/replay"), viewer, json!({"background": true})).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = t.post(&format!("/v1/replays/{run}/cancel"), viewer, json!({})).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = t.post(&format!("/v1/replays/{run}/cancel"), operator, json!({})).await;
    assert_problem(&r, StatusCode::CONFLICT, "conflict");
    let r = t.post(&format!("/v1/executions/{eid}/replay"), operator, json!({"background": "yes"})).await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "bad_request");

    // A run that cannot run fails with the problem the request would have answered.
    let r = t
        .post(&format!("/v1/executions/{eid}/replay"), operator, json!({"fromSnapshotId": 7, "background": true}))
        .await;
    let failed = ended(&t, r.body["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["type"], "urn:pled:problem:not_found", "{failed:#}");
}

/// Replays share a fixed number of slots: a background run waits `queued` for one, a replay
/// answered in its request gives up with 503 before its time-out, a queued run is cancelled
/// at once and so are queued runs at shutdown, and an org cannot queue without bound.
#[tokio::test]
async fn replays_wait_for_a_slot_and_queued_runs_can_be_cancelled() {
    let t = TestApp::with_config(|c| {
        c.replay_concurrency = 1;
        c.request_timeout = std::time::Duration::from_millis(1_500);
    });
    let operator = t.token("acme", Role::Operator);
    let eid = pings(&t, 10).await;
    let slot = t.state.runs.slot().await;

    let path = format!("/v1/executions/{eid}/replay");
    let start = |body: Value| t.post(&path, operator, body);
    let first = start(json!({"background": true})).await.body["id"].as_str().unwrap().to_owned();
    let second = start(json!({"background": true})).await.body["id"].as_str().unwrap().to_owned();
    let r = start(json!({})).await;
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(r.body["detail"].as_str().unwrap().contains("all 1 replay slots stayed busy"), "{}", r.body);
    let r = t.get(&format!("/v1/replays/{first}"), operator).await;
    assert_eq!(r.body["status"], "queued", "{}", r.body);
    let r = t.post(&format!("/v1/replays/{first}/cancel"), operator, json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let cancelled = ended(&t, &first).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    assert!(cancelled.get("startedAt").is_none(), "it never ran: {cancelled:#}");
    // The slot comes free: the queued run takes it and succeeds.
    drop(slot);
    assert_eq!(ended(&t, &second).await["status"], "succeeded");

    // At most 100 runs per org; the oldest ended ones make room, queued ones never do.
    let slot = t.state.runs.slot().await;
    let mut waiting = Vec::new();
    for _ in 0..100 {
        let r = start(json!({"background": true})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        waiting.push(r.body["id"].as_str().unwrap().to_owned());
    }
    assert_problem(&start(json!({"background": true})).await, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    for gone in [&first, &second] {
        assert_problem(&t.get(&format!("/v1/replays/{gone}"), operator).await, StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(t.get("/v1/replays", operator).await.body["items"].as_array().unwrap().len(), 100);
    let metrics = t.call(axum::http::Method::GET, "/metrics", None, None).await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("pled_replay_slots_busy 1\n"), "{metrics}");
    assert!(metrics.contains("pled_replay_runs_queued 100\n"), "{metrics}");

    // Shutdown: queued runs end at once, cancelled, and so does a request waiting for a slot
    // (not at its deadline, which is the request time-out).
    let close_soon = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        t.state.hub.close();
    };
    // Its deadline is 1 s away (the request time-out less 0.5 s).
    let both = async { tokio::join!(start(json!({})), close_soon).0 };
    let r = tokio::time::timeout(std::time::Duration::from_millis(800), both).await.expect("answered at the shutdown");
    assert_problem(&r, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(r.body["detail"].as_str().unwrap().contains("shutting down"), "{}", r.body);
    for run in [&waiting[0], &waiting[99]] {
        let last = ended(&t, run).await;
        assert_eq!(last["status"], "cancelled", "{last:#}");
        assert!(last["error"]["detail"].as_str().unwrap().contains("shut down"), "{last:#}");
    }
    drop(slot);
}
