//! Command-line interface: argument parsing and dispatch. Each subcommand lives in its own
//! module; all of them print one clear line on bad input and exit non-zero, never panic.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod audit;
mod backup;
mod chain;
pub(crate) mod ledger;
mod proof;
mod replay;
mod serve;
mod token;
mod verify;

/// Exit code for "the data is bad" (a chain does not verify).
pub(crate) const EXIT_INVALID: u8 = 1;
/// Exit code for usage errors and operational failures.
pub(crate) const EXIT_ERROR: u8 = 2;

/// PLED: the system of record for process executions, on a verifiable hash-chained ledger.
#[derive(Parser, Debug)]
#[command(name = "pled", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append entries to a stopped store; export them (also from a running server's store).
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Verify every hash chain in a store (also a running server's); names the first bad entry.
    Verify(verify::VerifyArgs),
    /// Run the PLED service.
    Serve(Box<pled_api::config::ServeArgs>),
    /// Create and revoke access tokens on a stopped store; list them on any.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Check inclusion proofs offline.
    #[command(subcommand)]
    Proof(proof::ProofCommand),
    /// Export and verify evidence bundles.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Deploy the contracts to an EVM chain.
    #[command(subcommand)]
    Chain(chain::ChainCommand),
    /// Replay an execution from a store (also a running server's) and compare it with its
    /// ledger (a dry run).
    Replay(replay::ReplayArgs),
    /// Copy a whole store (also a running server's, as of the command's start) into a new
    /// directory.
    Backup(backup::BackupArgs),
}

/// Where the store lives.
#[derive(Args, Debug, Clone)]
pub(crate) struct DataDir {
    /// Data directory of the RocksDB store.
    #[arg(long, env = "PLED_DATA_DIR", default_value = "./data")]
    pub(crate) data_dir: PathBuf,
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ledger(cmd) => ledger::run(cmd),
        Command::Verify(args) => verify::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Token(cmd) => token::run(cmd),
        Command::Proof(cmd) => proof::run(cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Chain(cmd) => chain::run(cmd),
        Command::Replay(args) => replay::run(args),
        Command::Backup(args) => backup::run(args),
    }
}
