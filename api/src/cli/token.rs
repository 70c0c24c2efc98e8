//! `pled token create|list|revoke`: access tokens in the store. Create and revoke write, so
//! they need it stopped (the running server offers the same under `/v1/tokens`); list reads it
//! read-only, also while the server runs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use pled_api::auth::Role;
use pled_api::repo::{audit, tokens};
use pled_core::OrgId;
use pled_store::WriteSet;

use super::DataDir;
use crate::cli::ledger::{open_store, read_store};

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Issue a token; prints it once (only its hash is stored).
    Create(CreateArgs),
    /// List an org's tokens.
    List(ListArgs),
    /// Revoke a token by id.
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Org slug.
    #[arg(long)]
    org: String,
    /// admin, editor, operator or viewer.
    #[arg(long)]
    role: String,
    /// What the token is for.
    #[arg(long, default_value = "cli")]
    name: String,
    /// How long it works: `90d`, `12h` [default: until revoked].
    #[arg(long, value_parser = pled_api::config::parse_duration)]
    expires_in: Option<Duration>,
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Org slug.
    #[arg(long)]
    org: String,
}

#[derive(Args, Debug)]
pub(crate) struct RevokeArgs {
    #[command(flatten)]
    dir: DataDir,
    /// Org slug.
    #[arg(long)]
    org: String,
    /// Token id (the hex after `pled_pat_`).
    #[arg(long)]
    id: String,
}

fn err(e: pled_api::error::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub(crate) fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create(a) => {
            let org = OrgId::new(&a.org)?;
            let role: Role = a.role.parse().map_err(anyhow::Error::msg)?;
            let store = open_store(&a.dir, false)?;
            let (token, record, ws) =
                tokens::issue(&org, role, &a.name, "cli", a.expires_in, WriteSet::new()).map_err(err)?;
            let ws = audit::record(
                ws,
                &org,
                "cli",
                "token.issued",
                &record.id,
                serde_json::json!({ "role": role, "name": a.name, "expiresAt": record.expires_at }),
            )
            .map_err(err)?;
            store.write_blocking(ws)?;
            let until = record.expires_at.as_ref().map_or(String::new(), |t| format!(", valid until {t}"));
            eprintln!("issued {role} token {} for org {org}{until}; it is shown only now:", record.id);
            println!("{token}");
        }
        TokenCommand::List(a) => {
            let org = OrgId::new(&a.org)?;
            let store = read_store(&a.dir)?;
            let now = pled_core::RecordedAt::now().unix_micros();
            for r in tokens::list(&store, &org).map_err(err)? {
                let state = match &r.expires_at {
                    _ if r.revoked_at.is_some() => "revoked",
                    Some(t) if t.unix_micros() <= now => "expired",
                    _ => "active",
                };
                let expires = r.expires_at.as_ref().map_or("-", |t| t.as_str());
                let used = r.last_used_at.as_ref().map_or("-", |t| t.as_str());
                println!("{}\t{}\t{}\t{}\t{expires}\t{used}\t{}", r.id, r.role, state, r.created_at, r.name);
            }
        }
        TokenCommand::Revoke(a) => {
            let org = OrgId::new(&a.org)?;
            let store = open_store(&a.dir, true)?;
            let Some(record) = tokens::get(&store, &org, &a.id).map_err(err)? else {
                bail!("no token {} in org {org}", a.id);
            };
            let (_, ws) = tokens::revoke(record, WriteSet::new()).map_err(err)?;
            let ws = audit::record(ws, &org, "cli", "token.revoked", &a.id, serde_json::json!({})).map_err(err)?;
            store.write_blocking(ws)?;
            println!("revoked {}", a.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
