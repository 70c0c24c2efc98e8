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
    /// Also check on this chain: the registry's anchored root, and `verifyInclusion`.
    #[arg(long)]
    rpc_url: Option<String>,
    /// The registry to ask (default: the document's `anchor.contract`).
    #[arg(long)]
    registry: Option<String>,
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
            let Some(rpc_url) = a.rpc_url else { return Ok(ExitCode::SUCCESS) };
            let registry = a
                .registry
                .or_else(|| doc.anchor["contract"].as_str().map(str::to_owned))
                .context("no registry: pass --registry (the document's anchor names none yet)")?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let on_chain = rt.block_on(pled_committer::chain::verify_on_chain(&rpc_url, registry.parse()?, &doc))?;
            let same_root = on_chain.anchored_root.eq_ignore_ascii_case(&doc.root);
            println!(
                "    on chain: registry {registry} holds root {} ({}); verifyInclusion: {}",
                on_chain.anchored_root,
                if same_root { "the same" } else { "DIFFERENT" },
                on_chain.included
            );
            if same_root && on_chain.included {
                Ok(ExitCode::SUCCESS)
            } else {
                println!("FAILED: the chain does not anchor this proof");
                Ok(ExitCode::from(EXIT_INVALID))
            }
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}
