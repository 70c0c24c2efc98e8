//! `pled verify`: walk every chain of a store and name the first bad entry.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use pled_core::ExecutionId;
use pled_store::Store;
use pled_store::verify::{VerifyError, verify_execution, verify_store};

use super::{DataDir, EXIT_INVALID};
use crate::cli::ledger::read_store;

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Only this execution.
    #[arg(long)]
    execution: Option<String>,
}

pub(crate) fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let only: Option<ExecutionId> = a.execution.as_deref().map(str::parse).transpose()?;
    check(&read_store(&a.dir)?, only)
}

/// Verifies `only` or every chain of `store`, with progress on stderr, and prints the result:
/// exit 0, or the first bad entry and [`EXIT_INVALID`].
pub(crate) fn check(store: &Store, only: Option<ExecutionId>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let result = match only {
        Some(id) => verify_execution(store, id).map(|h| (1, h.seq.get())),
        None => verify_store(store, |p| {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "verified {} entries, {} execution(s) complete ({:.0} entries/s)",
                p.entries,
                p.executions,
                p.entries as f64 / secs.max(1e-9)
            );
        })
        .map(|p| (p.executions, p.entries)),
    };
    match result {
        Ok((executions, entries)) => {
            println!(
                "ok: {executions} execution(s), {entries} entries verified in {:.2} s",
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Chain(e)) => {
            println!("FAILED: execution {} seq {}: {}", e.execution_id, e.seq, e.problem);
            Ok(ExitCode::from(EXIT_INVALID))
        }
        Err(VerifyError::Store(e)) => Err(e.into()),
    }
}
