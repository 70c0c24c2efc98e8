//! `pled proof verify FILE`: checks a proof document offline (entry → hash → leaf → root).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use pled_core::proof::ProofDocument;

use super::EXIT_INVALID;

#[derive(Subcommand, Debug)]
pub(crate) enum ProofCommand {
    /// Verify a proof document (as served by GET /v1/executions/{id}/ledger/{seq}/proof).
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The proof JSON file (`-` for stdin).
    file: PathBuf,
}

pub(crate) fn run(cmd: ProofCommand) -> anyhow::Result<ExitCode> {
    let ProofCommand::Verify(a) = cmd;
    let text = if a.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?
    };
    let doc: ProofDocument = serde_json::from_str(&text).context("not a proof document")?;
    match doc.verify() {
        Ok(v) => {
            let e = v.entry.entry();
            println!("ok: entry {} of execution {} ({}) hashes to {}", e.seq, e.execution_id, e.kind, v.entry.hash());
            println!("    leaf {} is included under root {}", doc.leaf.hash, doc.root);
            println!("    scope: {}", serde_json::to_string(&doc.scope)?);
            println!("    anchor: {}", doc.anchor);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}
