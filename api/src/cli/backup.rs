//! `pled backup`: a consistent copy of a whole store, also of one a running server writes
//! (read through a read-only handle, as of the command's start), with progress on stderr.
//! The copy is written under `.partial-<name>` beside `--out` and renamed when complete, so a
//! directory named `--out` is always a whole store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::DataDir;
use crate::cli::ledger::read_store;

#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Directory to write the copy to; it must not exist yet.
    #[arg(long)]
    out: PathBuf,
    /// Then re-hash every chain of the copy, as `pled verify` does (exit 1 if one fails).
    #[arg(long)]
    verify: bool,
}

const MIB: f64 = (1 << 20) as f64;

pub(crate) fn run(a: BackupArgs) -> anyhow::Result<ExitCode> {
    if a.out.exists() {
        bail!("{} already exists: a backup never writes into an existing directory", a.out.display());
    }
    let partial = partial_path(&a.out)?;
    let store = read_store(&a.dir)?;
    // What an interrupted earlier run left.
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("removing {}", partial.display()))?;
    }
    let started = Instant::now();
    let mut last_report = Instant::now();
    let copied = store.copy_to(&partial, |p| {
        if p.table_done || last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let state = if p.table_done { "copied" } else { "so far" };
            eprintln!(
                "{:>12}: {} records {state} ({} records, {:.1} MiB in all)",
                p.table,
                p.table_records,
                p.records,
                p.bytes as f64 / MIB
            );
        }
    });
    let (records, bytes) = match copied {
        Ok(totals) => totals,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e).context(format!("copying {} to {}", a.dir.data_dir.display(), partial.display()));
        }
    };
    std::fs::rename(&partial, &a.out)
        .with_context(|| format!("renaming {} to {}", partial.display(), a.out.display()))?;
    sync_dir(a.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?;
    println!(
        "backup of {} written to {}: {records} records, {:.1} MiB in {:.2} s, as of the command's start",
        a.dir.data_dir.display(),
        a.out.display(),
        bytes as f64 / MIB,
        started.elapsed().as_secs_f64()
    );
    if !a.verify {
        eprintln!("check it with: pled verify --data-dir {}", a.out.display());
        return Ok(ExitCode::SUCCESS);
    }
    drop(store);
    super::verify::check(&pled_store::Store::open_read_only(&a.out)?, None)
}

/// `.partial-<name>` beside `out`.
fn partial_path(out: &Path) -> anyhow::Result<PathBuf> {
    let name = out.file_name().with_context(|| format!("--out {} names no directory", out.display()))?;
    Ok(out.with_file_name(format!(".partial-{}", name.to_string_lossy())))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))
}
