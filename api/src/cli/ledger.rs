//! `pled ledger append` and `pled ledger export`.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use pled_core::{Body, ExecutionId, Kind, RecordedAt, Seq};
use pled_store::{Append, Store, StoreError, StoreOptions};

use super::DataDir;

#[derive(Subcommand, Debug)]
pub(crate) enum LedgerCommand {
    /// Append one entry to an execution's chain; prints its seq and hash as JSON.
    Append(AppendArgs),
    /// Export entries as JSON Lines: per line the hashed entry object plus `entry_hash`.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub(crate) struct AppendArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Execution id (a UUID in canonical form).
    #[arg(long)]
    execution: String,
    /// Entry kind, e.g. `note.added`.
    #[arg(long)]
    kind: String,
    /// The body: a JSON object, `@FILE` to read it from a file, or `-` for stdin.
    #[arg(long, default_value = "{}")]
    body: String,
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Only this execution (default: every execution, in id order).
    #[arg(long)]
    execution: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(cmd: LedgerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LedgerCommand::Append(a) => append(a),
        LedgerCommand::Export(e) => export(e),
    }
}

/// Opens a store for a CLI command, saying which directory when it fails.
pub(crate) fn open_store(dir: &DataDir, must_exist: bool) -> anyhow::Result<Store> {
    if must_exist {
        exists(dir)?;
    }
    Ok(Store::open(&dir.data_dir, StoreOptions::default())?)
}

/// Opens the store only to read it, also while `pled serve` runs on it: a consistent view
/// as of now, and nothing is ever written to the data directory.
pub(crate) fn read_store(dir: &DataDir) -> anyhow::Result<Store> {
    exists(dir)?;
    Ok(Store::open_read_only(&dir.data_dir)?)
}

fn exists(dir: &DataDir) -> anyhow::Result<()> {
    if !dir.data_dir.join("CURRENT").exists() {
        bail!(
            "no PLED store in {} (run `pled serve` or `pled ledger append` first, or pass --data-dir)",
            dir.data_dir.display()
        );
    }
    Ok(())
}

fn read_body(arg: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the body from stdin")?;
        Ok(s)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("reading the body from {path}"))
    } else {
        Ok(arg.to_owned())
    }
}

fn append(a: AppendArgs) -> anyhow::Result<ExitCode> {
    let id: ExecutionId = a.execution.parse()?;
    let kind = Kind::new(&a.kind)?;
    let body = Body::from_json_str(&read_body(&a.body)?)?;
    let store = open_store(&a.dir, false)?;
    let head = store.chain_head(id)?;
    let entry = head.next_entry(kind, RecordedAt::now(), body);
    match store.write_blocking(pled_store::WriteSet::new().append(Append::new(vec![entry.clone()])?)) {
        Ok(_) => {}
        // The data dir is locked while open, so only a bug could race us here.
        Err(e @ StoreError::SeqConflict { .. }) => bail!("{e}"),
        Err(e) => return Err(e.into()),
    }
    let out = serde_json::json!({
        "execution_id": id,
        "seq": entry.seq(),
        "entry_hash": entry.hash(),
    });
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// Report progress on stderr every this many entries.
const PROGRESS_EVERY: u64 = 100_000;

fn export(e: ExportArgs) -> anyhow::Result<ExitCode> {
    let only: Option<ExecutionId> = e.execution.as_deref().map(str::parse).transpose()?;
    let store = read_store(&e.dir)?;
    let sink: Box<dyn Write> = match &e.out {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let started = Instant::now();
    let mut written = 0u64;
    let mut write_chain = |id: ExecutionId, out: &mut BufWriter<Box<dyn Write>>| -> anyhow::Result<()> {
        for entry in store.iter_entries(id, Seq::FIRST) {
            out.write_all(&entry?.export_json())?;
            out.write_all(b"\n")?;
            written += 1;
            if written.is_multiple_of(PROGRESS_EVERY) {
                eprintln!("exported {written} entries ({:.1} s)", started.elapsed().as_secs_f64());
            }
        }
        Ok(())
    };
    match only {
        Some(id) => {
            if store.head(id)?.is_none() {
                bail!("execution {id} has no entries in {}", e.dir.data_dir.display());
            }
            write_chain(id, &mut out)?;
        }
        None => {
            let mut after = None;
            loop {
                let page = store.heads(after, 1024)?;
                let Some(last) = page.last() else { break };
                after = Some(last.chain.execution_id);
                for h in &page {
                    write_chain(h.chain.execution_id, &mut out)?;
                }
            }
        }
    }
    out.flush().context("writing the export")?;
    if written >= PROGRESS_EVERY {
        eprintln!("exported {written} entries in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
