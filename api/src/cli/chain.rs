//! `pled chain deploy`: deploys PLEDRegistry and PLEDToken to any EVM chain.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub(crate) enum ChainCommand {
    /// Deploy the contracts (signer key from PLED_SIGNER_KEY) and print their addresses.
    Deploy(DeployArgs),
}

#[derive(Args, Debug)]
pub(crate) struct DeployArgs {
    /// JSON-RPC URL of the chain.
    #[arg(long, env = "PLED_RPC_URL")]
    rpc_url: String,
}

pub(crate) fn run(cmd: ChainCommand) -> anyhow::Result<ExitCode> {
    let ChainCommand::Deploy(a) = cmd;
    let key = std::env::var("PLED_SIGNER_KEY")
        .context("set PLED_SIGNER_KEY to the deployer's private key (it gets the committer and minter roles)")?;
    let signer = key.trim().parse().context("PLED_SIGNER_KEY is not a private key")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let d = rt.block_on(pled_committer::chain::deploy(&a.rpc_url, signer))?;
    println!(
        "{}",
        serde_json::json!({ "chainId": d.chain_id, "registry": d.registry.to_string(), "token": d.token.to_string() })
    );
    eprintln!(
        "serve with: PLED_SIGNER_KEY=... pled serve --rpc-url {} --registry {} --token-contract {}",
        a.rpc_url, d.registry, d.token
    );
    Ok(ExitCode::SUCCESS)
}
