//! `pled replay`: replay an execution from a data directory, with progress on stderr
//! and the report (JSON) on stdout. Exit 0 when the replay is identical to the ledger, 1 when
//! it differs (the report names the first seq and how), 2 on usage errors.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use pled_api::replay::{ReplayOptions, Stop};
use pled_api::repo::{executions, templates};
use pled_core::ExecutionId;

use super::{DataDir, EXIT_INVALID};
use crate::cli::ledger::read_store;

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    dir: DataDir,
    /// The execution.
    #[arg(long)]
    execution: String,
    /// Stop at the last input boundary at or before this seq (default: the head).
    #[arg(long)]
    up_to: Option<u64>,
    /// Start from this snapshot (its id, the seq it was taken at) instead of genesis.
    #[arg(long)]
    from_snapshot: Option<u64>,
    /// Print a progress line to stderr every this many inputs (0: never).
    #[arg(long, default_value_t = 10_000)]
    progress_every: u64,
}

pub(crate) fn run(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let id: ExecutionId = a.execution.parse().with_context(|| format!("--execution {:?}", a.execution))?;
    let store = read_store(&a.dir)?;
    let record = executions::find(&store, id)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("execution {id} has no ledger in {}", a.dir.data_dir.display()))?;
    let version = templates::get_version(&store, &record.org, &record.template_id, record.version)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("template version {}/{} not found", record.template_id, record.version))?;
    let machine = pled_engine::compile(&version.template)
        .machine
        .with_context(|| format!("template version {}/{} does not compile", record.template_id, record.version))?;
    let opts = ReplayOptions { up_to: a.up_to, from_snapshot: a.from_snapshot, progress_every: a.progress_every };
    let started = Instant::now();
    let report = pled_api::replay::replay(&store, &machine, id, &opts, Stop::default(), &mut |p| {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "replayed {} inputs ({} events), seq {} of {} ({:.0}%), {:.1} s",
            p.inputs,
            p.events,
            p.seq,
            p.target_seq,
            if p.target_seq == 0 { 100.0 } else { p.seq as f64 * 100.0 / p.target_seq as f64 },
            secs
        );
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.identical {
        eprintln!("identical: head {} at seq {}", report.head_hash, report.head_seq);
        Ok(ExitCode::SUCCESS)
    } else {
        match &report.divergence {
            Some(d) => eprintln!("DIFFERS at seq {} ({}): {}", d.seq, d.field, d.detail),
            None => eprintln!("DIFFERS: a snapshot on the way does not match the replayed state"),
        }
        Ok(ExitCode::from(EXIT_INVALID))
    }
}
