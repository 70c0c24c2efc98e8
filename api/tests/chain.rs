//! On-chain anchoring against a real anvil started by the test: events in -> round ->
//! transaction -> confirmed -> proof verified on-chain (`verifyInclusion`, via `pled proof
//! verify --rpc-url`) and off-chain with OpenZeppelin's JS library; a mint succeeds once and a
//! second attempt fails at the API and at the contract. Faults: anvil stopped and restarted
//! (ingest goes on, anchoring catches up, no round twice); `anvil_reorg` removing an included
//! root's block (it is published again and confirmed); the server killed right after sending
//! (no second transaction after restart).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use alloy::primitives::{Address, B256, FixedBytes, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use common::repo_root;
use common::server::{Anvil, PLED, Server};
use pled_contracts::{PLEDRegistry, PLEDToken};
use serde_json::{Value, json};

const DEV_KEY: &str = pled_api::devchain::DEV_KEY;

/// Deploys the contracts with `pled chain deploy`; returns (registry, token).
fn deploy(anvil: &Anvil) -> (String, String) {
    let out = Command::new(PLED)
        .args(["chain", "deploy", "--rpc-url", &anvil.url])
        .env("PLED_SIGNER_KEY", DEV_KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["registry"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
}

fn chain_args<'a>(anvil: &'a Anvil, registry: &'a str, token: &'a str, confirmations: &'a str) -> Vec<&'a str> {
    vec![
        "--rpc-url",
        &anvil.url,
        "--registry",
        registry,
        "--token-contract",
        token,
        "--confirmations",
        confirmations,
        "--commit-interval",
        "300ms",
    ]
}

/// Polls a proof until its anchor reaches `status` (or panics after `secs`).
async fn proof_when(server: &Server, eid: &str, seq: u64, status: &str, secs: u64) -> Value {
    let mut last = Value::Null;
    for _ in 0..secs * 10 {
        last = server.get(&format!("/v1/executions/{eid}/ledger/{seq}/proof")).await;
        if last["anchor"]["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("proof of {eid}/{seq} never reached {status}: {last}");
}

/// `RoundCommitted` events on the canonical chain: round id -> count.
async fn round_events(url: &str, registry: &str) -> BTreeMap<u64, usize> {
    let provider = ProviderBuilder::new().connect_http(url.parse().unwrap());
    let filter = Filter::new()
        .address(registry.parse::<Address>().unwrap())
        .event_signature(PLEDRegistry::RoundCommitted::SIGNATURE_HASH)
        .from_block(0);
    let mut counts = BTreeMap::new();
    for log in provider.get_logs(&filter).await.unwrap() {
        let e = PLEDRegistry::RoundCommitted::decode_log_data(log.data()).unwrap();
        *counts.entry(e.roundId).or_insert(0) += 1;
    }
    counts
}

async fn run_tokens_example(server: &Server) -> String {
    let (eid, events) = server.started_execution("tokens").await;
    for ev in events {
        server.post(&format!("/v1/executions/{eid}/events"), ev).await;
    }
    eid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_anchored_confirmed_and_verified_on_chain_and_minted_once() {
    let anvil = Anvil::start(0, None);
    let (registry, token) = deploy(&anvil);
    let server = Server::start_env(&chain_args(&anvil, &registry, &token, "1"), &[("PLED_SIGNER_KEY", DEV_KEY)]);
    let eid = run_tokens_example(&server).await;
    let proof = proof_when(&server, &eid, 2, "confirmed", 30).await;
    assert_eq!(proof["anchor"]["chainId"], 31337);
    assert!(proof["anchor"]["txHash"].as_str().unwrap().starts_with("0x"));
    assert!(proof["anchor"]["blockNumber"].as_u64().unwrap() > 0);

    // On-chain: the registry holds the root and its own verifyInclusion accepts the proof.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proof.json");
    std::fs::write(&file, proof.to_string()).unwrap();
    let out = Command::new(PLED).args(["proof", "verify", "--rpc-url", &anvil.url]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // Off-chain: OpenZeppelin's StandardMerkleTree.verify.
    let docs = dir.path().join("docs.json");
    std::fs::write(&docs, json!([proof]).to_string()).unwrap();
    let hardhat = repo_root().join("hardhat");
    let out = Command::new(hardhat.join(".node/node_modules/.bin/node"))
        .arg("scripts/verify-proofs.mjs")
        .arg(&docs)
        .current_dir(&hardhat)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"ok":true,"leafHashMatches":true}"#);

    // Mint for the sink entry: once.
    let tokens = server.get(&format!("/v1/executions/{eid}/tokens")).await;
    let sink = tokens["movements"].as_array().unwrap().iter().find(|m| m["kind"] == "token.consumed").unwrap().clone();
    let request = json!({ "type": sink["token"], "quantity": sink["amount"], "sinkNodeId": sink["node"] });
    let _ = proof_when(&server, &eid, sink["seq"].as_u64().unwrap(), "confirmed", 30).await;
    let r = server
        .client()
        .post(format!("{}/v1/executions/{eid}/tokens/mint", server.base))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let seq = sink["seq"].as_u64().unwrap();
    let mut mint = Value::Null;
    for _ in 0..300 {
        mint = server.get(&format!("/v1/executions/{eid}/tokens/mints/{seq}")).await;
        if mint["anchor"]["status"] == "confirmed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mint["anchor"]["status"], "confirmed", "{mint}");

    // The confirmed mint goes on the execution's ledger once, with its transaction.
    for _ in 0..100 {
        mint = server.get(&format!("/v1/executions/{eid}/tokens/mints/{seq}")).await;
        if mint["ledgerSeq"].is_u64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at = mint["ledgerSeq"].as_u64().unwrap_or_else(|| panic!("the mint never reached the ledger: {mint}"));
    let ledger = server.get(&format!("/v1/executions/{eid}/ledger?afterSeq={}&limit=1000", at - 1)).await;
    let onchain: Vec<&Value> =
        ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "token.minted_onchain").collect();
    assert_eq!(onchain.len(), 1, "{ledger}");
    let body = &onchain[0]["body"];
    assert_eq!(onchain[0]["seq"], at);
    assert_eq!(body["sinkSeq"], seq);
    assert_eq!(body["txHash"], mint["anchor"]["txHash"]);
    assert_eq!(body["blockNumber"], mint["anchor"]["blockNumber"]);
    assert_eq!(body["quantity"], sink["amount"]);

    let again = server
        .client()
        .post(format!("{}/v1/executions/{eid}/tokens/mint", server.base))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    // The contract refuses a second mint for the entry too.
    let provider = ProviderBuilder::new()
        .wallet(DEV_KEY.parse::<alloy::signers::local::PrivateKeySigner>().unwrap())
        .connect_http(anvil.url.parse().unwrap());
    let token_c = PLEDToken::new(token.parse::<Address>().unwrap(), &provider);
    let exec = FixedBytes::<16>(*eid.parse::<pled_core::ExecutionId>().unwrap().as_bytes());
    assert!(token_c.isMinted(exec, seq).call().await.unwrap());
    let p: Value = server.get(&format!("/v1/executions/{eid}/ledger/{seq}/proof")).await;
    let path: Vec<B256> = p["proof"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().parse().unwrap()).collect();
    let err = token_c
        .mintForSinkEntry(
            mint["to"].as_str().unwrap().parse().unwrap(),
            sink["token"].as_str().unwrap().to_owned(),
            U256::from_str_radix(sink["amount"].as_str().unwrap(), 10).unwrap(),
            p["scope"]["round"].as_u64().unwrap(),
            exec,
            seq,
            p["leaf"]["values"][2].as_str().unwrap().parse().unwrap(),
            path,
        )
        .call()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AlreadyMinted") || err.to_string().contains("revert"), "{err}");
    let rounds = round_events(&anvil.url, &registry).await;
    assert!(rounds.values().all(|&n| n == 1), "{rounds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_queues_rounds_and_anchoring_catches_up_in_order() {
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("anvil.json");
    let anvil = Anvil::start(0, Some(&state));
    let (port, url) = (anvil.port, anvil.url.clone());
    let (registry, token) = deploy(&anvil);
    let server = Server::start_env(&chain_args(&anvil, &registry, &token, "1"), &[("PLED_SIGNER_KEY", DEV_KEY)]);
    let first = run_tokens_example(&server).await;
    proof_when(&server, &first, 1, "confirmed", 30).await;

    anvil.stop(); // the chain goes away (state saved)
    let during = run_tokens_example(&server).await; // ingest goes on
    let pending = proof_when(&server, &during, 1, "built", 10).await;
    assert!(pending["anchor"]["txHash"].is_null() || pending["anchor"]["status"] == "built");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let also = run_tokens_example(&server).await;

    let anvil = Anvil::start(port, Some(&state)); // back, with its state
    assert_eq!(anvil.url, url);
    proof_when(&server, &during, 1, "confirmed", 60).await;
    proof_when(&server, &also, 2, "confirmed", 60).await;
    let rounds = round_events(&anvil.url, &registry).await;
    assert!(rounds.values().all(|&n| n == 1), "a round was published twice: {rounds:?}");
    let ids: Vec<u64> = rounds.keys().copied().collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "rounds are anchored in order, none missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_removing_an_included_root_publishes_it_again() {
    let anvil = Anvil::start(0, None);
    let (registry, token) = deploy(&anvil);
    // Three confirmations: an included root stays unconfirmed until we mine more blocks.
    let server = Server::start_env(&chain_args(&anvil, &registry, &token, "3"), &[("PLED_SIGNER_KEY", DEV_KEY)]);
    let eid = run_tokens_example(&server).await;
    let included = proof_when(&server, &eid, 1, "included", 30).await;
    let block = included["anchor"]["blockNumber"].as_u64().unwrap();
    let head = u64::from_str_radix(
        anvil.rpc("eth_blockNumber", json!([])).unwrap().as_str().unwrap().trim_start_matches("0x"),
        16,
    )
    .unwrap();
    // Replace every block from the root's block on with empty ones.
    anvil.rpc("anvil_reorg", json!([head - block + 1, []])).unwrap();
    // The publisher notices, sends the same signed transaction again, and it lands in a new block.
    let mut republished = Value::Null;
    for _ in 0..300 {
        republished = server.get(&format!("/v1/executions/{eid}/ledger/1/proof")).await;
        if republished["anchor"]["status"] == "included"
            && republished["anchor"]["blockHash"] != included["anchor"]["blockHash"]
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(republished["anchor"]["status"], "included", "{republished}");
    assert_ne!(republished["anchor"]["blockHash"], included["anchor"]["blockHash"]);
    anvil.rpc("anvil_mine", json!([5])).unwrap();
    let confirmed = proof_when(&server, &eid, 1, "confirmed", 30).await;
    assert_eq!(
        confirmed["anchor"]["txHash"], included["anchor"]["txHash"],
        "the same signed transaction, not a new one"
    );
    let rounds = round_events(&anvil.url, &registry).await;
    assert!(rounds.values().all(|&n| n == 1), "{rounds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_after_sending_sends_no_second_transaction() {
    let anvil = Anvil::start(0, None);
    let (registry, token) = deploy(&anvil);
    let env = [("PLED_SIGNER_KEY", DEV_KEY)];
    let server = Server::start_env(&chain_args(&anvil, &registry, &token, "1"), &env);
    let eid = run_tokens_example(&server).await;
    // Kill as soon as the transaction is out.
    let mut sent = Value::Null;
    for _ in 0..300 {
        sent = server.get(&format!("/v1/executions/{eid}/ledger/1/proof")).await;
        if sent["anchor"]["txHash"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token_text = server.token.clone();
    let dir = server.kill();
    let server = Server::start_on(dir, token_text, &chain_args(&anvil, &registry, &token, "1"), &env);
    let done = proof_when(&server, &eid, 1, "confirmed", 30).await;
    assert_eq!(done["anchor"]["txHash"], sent["anchor"]["txHash"]);
    let rounds = round_events(&anvil.url, &registry).await;
    assert!(rounds.values().all(|&n| n == 1), "{rounds:?}");
    // Every transaction of the signer is a deploy (2) or a distinct round.
    let nonce = anvil.rpc("eth_getTransactionCount", json!([pled_api::devchain::dev_address(), "latest"])).unwrap();
    let nonce = u64::from_str_radix(nonce.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(nonce, 2 + rounds.len() as u64);
}
