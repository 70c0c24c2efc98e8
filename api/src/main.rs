//! `pled`: the PLED service and its command-line tools.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// mimalloc: under ingest, glibc malloc/free took about a fifth of the server's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pled: error: {e:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
