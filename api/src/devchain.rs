//! The dev default chain: with no `--rpc-url`, `pled serve` starts anvil itself on a free
//! loopback port (binary from `$PLED_ANVIL`, `hardhat/node_modules`, or `PATH`), deploys the
//! contracts with anvil's well-known first dev key, anchors there, and stops anvil on
//! shutdown. Anvil keeps its state in `<data dir>/anvil-state.json`, so a restart finds the
//! same chain, contracts and anchored roots.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use pled_committer::chain::{self, Deployed};
use pled_store::{Store, Table};
use serde_json::json;

/// Anvil's first dev account key: public knowledge, for local chains only.
pub const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

const ADDRESSES_KEY: &[u8] = b"chain/dev";

/// The address of [`DEV_KEY`].
pub fn dev_address() -> String {
    DEV_KEY.parse::<alloy::signers::local::PrivateKeySigner>().map(|s| s.address().to_string()).unwrap_or_default()
}

/// A running local chain.
pub struct DevChain {
    child: tokio::process::Child,
    /// Its JSON-RPC URL.
    pub rpc_url: String,
    /// The deployed contracts.
    pub deployed: Deployed,
}

/// Where the anvil binary is.
pub fn find_anvil() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PLED_ANVIL") {
        return Some(PathBuf::from(p));
    }
    let rel = Path::new("hardhat/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    // The working directory, then the directories above the executable (a checkout's target).
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    // Under `cargo test` (set at run time, then where this was built).
    let manifest_dirs = [
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
        option_env!("CARGO_MANIFEST_DIR").map(PathBuf::from),
    ];
    roots.extend(manifest_dirs.into_iter().flatten().map(|d| d.join("..")));
    for root in roots {
        let p = root.join(rel);
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("anvil")).find(|p| p.is_file()))
}

impl DevChain {
    /// Starts anvil and makes sure the contracts are deployed.
    pub async fn start(data_dir: &Path, store: &Store) -> anyhow::Result<Self> {
        let anvil = find_anvil().context(
            "no anvil binary: run scripts/setup-hardhat.sh (it installs anvil into hardhat/node_modules), \
             set PLED_ANVIL, or pass --chain off or --rpc-url",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let state = data_dir.join("anvil-state.json");
        let mut cmd = tokio::process::Command::new(&anvil);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--block-time",
            "1",
            "--state-interval",
            "5",
            "--silent",
        ])
        .arg("--state")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
        // If pled dies without cleaning up, anvil dies with it.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", anvil.display()))?;
        let rpc_url = format!("http://127.0.0.1:{port}");
        let mut chain = Self {
            child,
            rpc_url,
            deployed: Deployed { chain_id: 0, registry: Default::default(), token: Default::default() },
        };
        let provider = chain::connect(&chain.rpc_url)?;
        let mut up = false;
        for _ in 0..200 {
            use alloy::providers::Provider;
            if provider.get_chain_id().await.is_ok() {
                up = true;
                break;
            }
            if let Ok(Some(status)) = chain.child.try_wait() {
                bail!("anvil exited at start ({status})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !up {
            bail!("anvil did not answer on {} within 10 s", chain.rpc_url);
        }
        chain.deployed = chain.contracts(store).await?;
        Ok(chain)
    }

    /// The contracts of the chain: the remembered ones if their code is there, else new ones.
    async fn contracts(&self, store: &Store) -> anyhow::Result<Deployed> {
        if let Some(bytes) = store.get(Table::Meta, ADDRESSES_KEY)? {
            let v: serde_json::Value = serde_json::from_slice(&bytes)?;
            if let (Some(r), Some(t), Some(id)) = (v["registry"].as_str(), v["token"].as_str(), v["chainId"].as_u64()) {
                let (registry, token) = (r.parse()?, t.parse()?);
                if chain::has_code(&self.rpc_url, registry).await? && chain::has_code(&self.rpc_url, token).await? {
                    return Ok(Deployed { chain_id: id, registry, token });
                }
            }
        }
        let signer: alloy::signers::local::PrivateKeySigner = DEV_KEY.parse()?;
        let d = chain::deploy(&self.rpc_url, signer).await?;
        let record = json!({ "chainId": d.chain_id, "registry": d.registry.to_string(), "token": d.token.to_string() });
        store
            .write(pled_store::WriteSet::new().put(Table::Meta, ADDRESSES_KEY.to_vec(), serde_json::to_vec(&record)?))
            .await?;
        Ok(d)
    }

    /// Stops anvil (SIGTERM, so it writes its state), waiting up to 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}
