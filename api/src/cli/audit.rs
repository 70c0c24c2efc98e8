//! `pled audit export` and `pled audit verify`: evidence bundles (see `pled_api::evidence`).

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use pled_api::repo::executions;
use pled_core::ExecutionId;

use super::{DataDir, EXIT_INVALID};
use crate::cli::ledger::read_store;

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Write an execution's evidence bundle (JSON Lines) from a store (also a running server's).
    Export(ExportArgs),
    /// Check an evidence bundle offline and print a summary an auditor can file.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    dir: DataDir,
    /// The execution.
    #[arg(long)]
    execution: String,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The bundle.
    file: PathBuf,
}

pub(crate) fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Export(a) => export(a),
        AuditCommand::Verify(a) => verify(a),
    }
}

fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let id: ExecutionId = a.execution.parse()?;
    let store = read_store(&a.dir)?;
    let record = executions::find(&store, id)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("execution {id} has no ledger in {}", a.dir.data_dir.display()))?;
    let committer = pled_committer::Committer::open(store.clone(), Default::default(), false)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let file = std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let started = Instant::now();
    let n = pled_api::evidence::export(&store, &committer, &record, &mut out, |n| {
        if n > 0 {
            eprintln!("exported {n} entries ({:.1} s)", started.elapsed().as_secs_f64());
        }
    })?;
    out.flush()?;
    println!("wrote {} ({n} entries)", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    if text.is_empty() {
        bail!("{} is empty", a.file.display());
    }
    match pled_api::evidence::verify(&text) {
        Ok(summary) => {
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e:#}");
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}
