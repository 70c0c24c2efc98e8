//! The OpenAPI document against the real server. Schemathesis generates requests from
//! `/openapi.json` for every operation: the document's examples and boundary values, random
//! valid and invalid requests, then stateful sequences that follow created resources. For each
//! answer it checks that the status, content type, headers and body are the ones the document
//! declares, that no request gets a 5xx, that invalid input and missing credentials are refused,
//! and that what a POST created can be found. A client generated from the document then knows
//! every answer it can get.
//!
//! One failure is excused, in openapi_fuzz_hooks.py: a create replayed for a reused
//! `Idempotency-Key` names what it created even when that was deleted since, as docs/api.md
//! says; a GET on it is a 404 that Schemathesis takes for a resource that was never created.
//!
//! Not checked: that every schema-valid request is accepted (`positive_data_acceptance`). The
//! API refuses, with a 4xx, input JSON Schema cannot describe: an unknown state or action, an
//! idempotency key reused with another body, `1.0` where an integer is due, a template that
//! does not compile.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::server::Server;

/// The seed of Schemathesis's generator: fixed, so a run can be repeated; set
/// `PLED_SCHEMATHESIS_SEED` to explore others.
const SEED: &str = "20261203";

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_the_server_gives_is_in_its_openapi_document() {
    let server = Server::start(&["--chain", "off"]);
    // A published template and an execution, so operations on ids also reach real records.
    server.started_execution("approval").await;
    let st = schemathesis();
    let seed = std::env::var("PLED_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let args = [
        "run".to_owned(),
        format!("{}/openapi.json", server.base),
        format!("--header=Authorization: Bearer {}", server.token),
        "--checks=all".into(),
        "--exclude-checks=positive_data_acceptance".into(),
        // Streams and the long-poll hold their answer open; streams.rs and executions.rs test them.
        "--exclude-path-regex=/(stream|ws|wait)$".into(),
        // It would revoke the token the run authenticates with.
        "--exclude-operation-id=revoke_token".into(),
        "--max-examples=25".into(),
        format!("--seed={seed}"),
        "--request-timeout=20".into(),
        "--continue-on-failure".into(),
        "--no-color".into(),
    ];
    // Schemathesis keeps the failures it found in `.schemathesis/` of its working directory and
    // tries them first next time: a fresh one keeps a seeded run repeatable.
    let work = tempfile::tempdir().unwrap();
    let cwd = work.path().to_owned();
    // openapi_fuzz_hooks.py excuses the one answer the document allows but Schemathesis cannot
    // expect: a replayed create naming what was deleted since (see its docstring).
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let python_path = match std::env::var("PYTHONPATH") {
        Ok(p) if !p.is_empty() => format!("{hooks}:{p}"),
        _ => hooks.to_owned(),
    };
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&st)
            .args(&args)
            .current_dir(cwd)
            .env("PYTHONPATH", python_path)
            .env("SCHEMATHESIS_HOOKS", "openapi_fuzz_hooks")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Schemathesis found answers the OpenAPI document does not declare (seed {seed}):\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains(" passed"), "{report}");
    server.stop();
}

/// `st`, installed by scripts/setup.sh with the `python3` on PATH: in its scripts directory,
/// or the user's one when pip installed it with `--user`.
fn schemathesis() -> std::path::PathBuf {
    const FIND: &str = "import os, sysconfig\n\
        dirs = [sysconfig.get_path('scripts'), sysconfig.get_path('scripts', os.name + '_user')]\n\
        print(next((d for d in dirs if os.path.exists(os.path.join(d, 'st'))), ''))";
    let out = Command::new("python3").args(["-c", FIND]).output().expect("python3 is needed: run scripts/setup.sh");
    let dir = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!dir.is_empty(), "Schemathesis's `st` is missing: run scripts/setup.sh (pip install schemathesis)");
    std::path::Path::new(&dir).join("st")
}
