//! Anchoring on an EVM chain: one sending task (the [`Publisher`]) with its own nonces takes
//! outbox items in order, signs each transaction locally, persists it, then broadcasts it, and
//! follows it to `submitted` → `included` → `confirmed`. It polls receipts and block hashes
//! itself (no subscriptions, no `with_required_confirmations`):
//!
//! - RPC errors and outages: the tick fails, is retried with backoff; ingest and rounds go on,
//!   the outbox grows and is worked off in order when the chain answers again.
//! - A transaction that is not mined within `stuck_after` is replaced: same nonce, fees ×1.25.
//!   Every attempt is kept; whichever gets mined counts.
//! - A reorg that removes an included transaction's block (its receipt disappears, or the
//!   block at its height has another hash) sends the item back to `submitted`; the same signed
//!   bytes are broadcast again. Items stay watched until `confirmations + REORG_WINDOW` deep.
//! - A crash at any point resumes from the persisted state by re-broadcasting the same signed
//!   transaction: one nonce per item, never a second transaction for a round. The registry is
//!   idempotent for the same root besides.

use std::sync::Arc;
use std::time::Duration;

use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, FixedBytes, U256};
use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use pled_contracts::{PLEDRegistry, PLEDToken};
use pled_core::Seq;
use pled_core::merkle::from_0x;
use pled_core::proof::Scope;

use crate::outbox::{Item, Target, TxState};
use crate::rounds::{Anchor, AnchorStatus, Committer, ProofAnswer};

/// Blocks an included transaction stays watched beyond its confirmations, for reorgs.
pub const REORG_WINDOW: u64 = 12;
/// Transactions in flight at once (consecutive nonces).
const MAX_IN_FLIGHT: usize = 16;
/// A pending transaction's bytes are broadcast again this often (dropped from a mempool,
/// node restarted, reorged out).
const REBROADCAST_MS: u64 = 3_000;

/// Where and how to anchor.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// JSON-RPC URL.
    pub rpc_url: String,
    /// `PLEDRegistry`.
    pub registry: Address,
    /// `PLEDToken` (mints are refused without it).
    pub token: Option<Address>,
    /// The sender (holds the committer and minter roles).
    pub signer: PrivateKeySigner,
    /// Blocks (including the one with the transaction) before `confirmed`.
    pub confirmations: u64,
    /// How often to look at the chain.
    pub poll: Duration,
    /// Replace a transaction not mined after this long.
    pub stuck_after: Duration,
}

/// A chain failure: always retried (the outbox keeps what must be sent).
#[derive(Debug, Clone, thiserror::Error)]
#[error("chain: {0}")]
pub struct ChainError(pub String);

impl From<crate::CommitError> for ChainError {
    fn from(e: crate::CommitError) -> Self {
        Self(e.to_string())
    }
}

fn rpc(e: impl std::fmt::Display) -> ChainError {
    ChainError(e.to_string())
}

/// Contracts deployed by [`deploy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployed {
    /// Chain id.
    pub chain_id: u64,
    /// `PLEDRegistry`.
    pub registry: Address,
    /// `PLEDToken`.
    pub token: Address,
}

/// Deploys `PLEDRegistry` and `PLEDToken` (the signer gets every role).
pub async fn deploy(rpc_url: &str, signer: PrivateKeySigner) -> Result<Deployed, ChainError> {
    let url = rpc_url.parse().map_err(rpc)?;
    let provider = ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(url);
    let chain_id = provider.get_chain_id().await.map_err(rpc)?;
    let registry = PLEDRegistry::deploy(&provider).await.map_err(rpc)?;
    let token = PLEDToken::deploy(&provider, *registry.address(), "pled://token/{id}".to_owned()).await.map_err(rpc)?;
    Ok(Deployed { chain_id, registry: *registry.address(), token: *token.address() })
}

/// A read-only connection.
pub fn connect(rpc_url: &str) -> Result<RootProvider, ChainError> {
    Ok(RootProvider::new_http(rpc_url.parse().map_err(rpc)?))
}

/// Whether contract code exists at `address`.
pub async fn has_code(rpc_url: &str, address: Address) -> Result<bool, ChainError> {
    Ok(!connect(rpc_url)?.get_code_at(address).await.map_err(rpc)?.is_empty())
}

/// The one sending task.
pub struct Publisher {
    committer: Arc<Committer>,
    cfg: ChainConfig,
    provider: RootProvider,
    wallet: EthereumWallet,
    chain_id: Option<u64>,
    next_nonce: Option<u64>,
}

/// Runs a committer call on a blocking thread (the store's writes block).
async fn blocking<T: Send + 'static>(
    c: &Arc<Committer>,
    f: impl FnOnce(&Committer) -> Result<T, crate::CommitError> + Send + 'static,
) -> Result<T, ChainError> {
    let c = c.clone();
    tokio::task::spawn_blocking(move || f(&c)).await.map_err(rpc)?.map_err(Into::into)
}

impl Publisher {
    /// A publisher for `committer`'s outbox.
    pub fn new(committer: Arc<Committer>, cfg: ChainConfig) -> Result<Self, ChainError> {
        let provider = connect(&cfg.rpc_url)?;
        let wallet = EthereumWallet::from(cfg.signer.clone());
        Ok(Self { committer, cfg, provider, wallet, chain_id: None, next_nonce: None })
    }

    /// Works the outbox until `shutdown` says stop. Failures are logged and retried with
    /// backoff (up to 10 s); they never stop the service.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = self.cfg.poll;
        let mut failing = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            match self.tick().await {
                Ok(()) => {
                    if failing {
                        tracing::info!("chain reachable again; anchoring resumes");
                    }
                    failing = false;
                    backoff = self.cfg.poll;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "anchoring paused: the chain is not answering; rounds queue up and are published in order when it does");
                    }
                    failing = true;
                    // Nonces are re-read from the chain and the outbox after an outage.
                    self.next_nonce = None;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// One look at the chain and the outbox.
    pub async fn tick(&mut self) -> Result<(), ChainError> {
        let head = self.provider.get_block_number().await.map_err(rpc)?;
        if self.chain_id.is_none() {
            self.chain_id = Some(self.provider.get_chain_id().await.map_err(rpc)?);
        }
        let items = blocking(&self.committer, |c| c.outbox(MAX_IN_FLIGHT * 4)).await?;
        if self.next_nonce.is_none() {
            let on_chain =
                self.provider.get_transaction_count(self.cfg.signer.address()).pending().await.map_err(rpc)?;
            let recorded = items.iter().filter_map(|i| i.tx.as_ref()).map(|t| t.nonce + 1).max().unwrap_or(0);
            self.next_nonce = Some(on_chain.max(recorded));
        }
        let mut in_flight = 0;
        for item in items {
            match &item.tx {
                Some(tx) => {
                    in_flight += 1;
                    self.track(&item, tx.clone(), head).await?;
                }
                None if in_flight < MAX_IN_FLIGHT => {
                    in_flight += 1;
                    self.send(&item).await?;
                }
                None => break,
            }
        }
        Ok(())
    }

    /// The call an item makes, and the contract and gas limit it goes to.
    async fn call_of(&self, target: &Target) -> Result<Option<(Address, Bytes, u64)>, ChainError> {
        Ok(match target {
            Target::Round { round } => {
                let id = *round;
                let r = blocking(&self.committer, move |c| c.round(id))
                    .await?
                    .ok_or_else(|| ChainError(format!("round {id} is missing")))?;
                let root = r
                    .root
                    .as_deref()
                    .and_then(from_0x::<32>)
                    .ok_or_else(|| ChainError(format!("round {id} has no root")))?;
                let call =
                    PLEDRegistry::commitRoundCall { roundId: id, root: B256::from(root), leafCount: r.leaf_count };
                Some((self.cfg.registry, call.abi_encode().into(), 150_000))
            }
            Target::Commitment { execution_id, id } => {
                let (e, cid) = (*execution_id, *id);
                let c = blocking(&self.committer, move |c| c.commitment(e, cid))
                    .await?
                    .ok_or_else(|| ChainError(format!("commitment {cid} is missing")))?;
                let root = from_0x::<32>(&c.root).ok_or_else(|| ChainError("commitment root".into()))?;
                let call = PLEDRegistry::commitLedgerRootCall {
                    executionId: FixedBytes::<16>(*e.as_bytes()),
                    rangeStart: c.range_start,
                    rangeEnd: c.range_end,
                    merkleRoot: B256::from(root),
                };
                Some((self.cfg.registry, call.abi_encode().into(), 120_000))
            }
            Target::Mint { execution_id, seq, token_type, quantity, to } => {
                let Some(token) = self.cfg.token else {
                    return Err(ChainError("no PLEDToken configured: mints cannot be sent".into()));
                };
                let (e, s) = (*execution_id, *seq);
                let ProofAnswer::Included(doc) = blocking(&self.committer, move |c| c.proof(e, Seq::new(s))).await?
                else {
                    return Ok(None); // not yet in a round: wait
                };
                let Scope::Round { round, .. } = doc.scope else { return Ok(None) };
                let proof = doc.proof.iter().filter_map(|p| from_0x::<32>(p)).map(B256::from).collect();
                let entry_hash = from_0x::<32>(&doc.leaf.values[2]).ok_or_else(|| ChainError("leaf value".into()))?;
                let call = PLEDToken::mintForSinkEntryCall {
                    to: to.parse().map_err(rpc)?,
                    tokenType: token_type.clone(),
                    quantity: quantity.parse::<U256>().map_err(rpc)?,
                    roundId: round,
                    executionId: FixedBytes::<16>(*e.as_bytes()),
                    seq: s,
                    entryHash: B256::from(entry_hash),
                    proof,
                };
                Some((token, call.abi_encode().into(), 250_000))
            }
        })
    }

    async fn sign(
        &self,
        to: Address,
        input: Bytes,
        gas: u64,
        nonce: u64,
        max_fee: u128,
        priority_fee: u128,
    ) -> Result<(String, String), ChainError> {
        use alloy::eips::eip2718::Encodable2718;
        let tx = TransactionRequest::default()
            .with_from(self.cfg.signer.address())
            .with_to(to)
            .with_input(input)
            .with_nonce(nonce)
            .with_chain_id(self.chain_id.unwrap_or_default())
            .with_gas_limit(gas)
            .with_max_fee_per_gas(max_fee)
            .with_max_priority_fee_per_gas(priority_fee);
        let envelope = tx.build(&self.wallet).await.map_err(rpc)?;
        let raw = envelope.encoded_2718();
        Ok((format!("0x{}", alloy::primitives::hex::encode(&raw)), envelope.tx_hash().to_string()))
    }

    async fn broadcast(&self, raw: &str) {
        let Ok(bytes) = alloy::primitives::hex::decode(raw) else { return };
        if let Err(e) = self.provider.send_raw_transaction(&bytes).await {
            let msg = e.to_string();
            // Already in the pool or already mined: nothing to do.
            if !(msg.contains("already known") || msg.contains("nonce too low") || msg.contains("already imported")) {
                tracing::warn!(error = %msg, "broadcast failed; will retry");
            }
        }
    }

    fn contract_of(&self, target: &Target) -> Address {
        match target {
            Target::Mint { .. } => self.cfg.token.unwrap_or(self.cfg.registry),
            _ => self.cfg.registry,
        }
    }

    async fn set_anchor(&self, target: &Target, anchor: Anchor) -> Result<(), ChainError> {
        let t = target.clone();
        blocking(&self.committer, move |c| c.set_target_anchor(&t, anchor)).await
    }

    async fn anchor(&self, target: &Target) -> Result<Anchor, ChainError> {
        let t = target.clone();
        Ok(blocking(&self.committer, move |c| c.anchor_of(&t)).await?.unwrap_or_default())
    }

    /// Signs, persists, then broadcasts an item's first transaction.
    async fn send(&mut self, item: &Item) -> Result<(), ChainError> {
        let Some((to, input, gas)) = self.call_of(&item.target).await? else { return Ok(()) };
        let fees = self.provider.estimate_eip1559_fees().await.map_err(rpc)?;
        let nonce = self.next_nonce.unwrap_or_default();
        let (raw, hash) = self.sign(to, input, gas, nonce, fees.max_fee_per_gas, fees.max_priority_fee_per_gas).await?;
        let now = pled_core::unix_millis_now();
        let tx = TxState {
            nonce,
            raw: vec![raw.clone()],
            hashes: vec![hash.clone()],
            max_fee: fees.max_fee_per_gas,
            priority_fee: fees.max_priority_fee_per_gas,
            last_sent_ms: now,
            last_bump_ms: now,
        };
        let seq = item.seq;
        let saved = tx.clone();
        blocking(&self.committer, move |c| c.save_tx(seq, &saved)).await?;
        self.next_nonce = Some(nonce + 1);
        let anchor = Anchor {
            status: AnchorStatus::Submitted,
            chain_id: self.chain_id,
            contract: Some(self.contract_of(&item.target).to_string()),
            tx_hash: Some(hash.clone()),
            nonce: Some(nonce),
            ..Anchor::default()
        };
        self.set_anchor(&item.target, anchor).await?;
        tracing::info!(target = ?item.target, tx = %hash, nonce, "anchoring transaction sent");
        self.broadcast(&raw).await;
        Ok(())
    }

    /// Follows an item's transaction: receipts, confirmations, reorgs, replacement.
    async fn track(&mut self, item: &Item, mut tx: TxState, head: u64) -> Result<(), ChainError> {
        let mut receipt = None;
        for h in tx.hashes.iter().rev() {
            let hash: B256 = h.parse().map_err(rpc)?;
            if let Some(r) = self.provider.get_transaction_receipt(hash).await.map_err(rpc)? {
                receipt = Some(r);
                break;
            }
        }
        let mut anchor = self.anchor(&item.target).await?;
        if let Some(r) = receipt
            && let (Some(block), Some(block_hash)) = (r.block_number, r.block_hash)
        {
            let canonical = self.provider.get_block_by_number(block.into()).await.map_err(rpc)?.map(|b| b.header.hash);
            if canonical == Some(block_hash) {
                if !r.status() {
                    anchor.status = AnchorStatus::Failed;
                    anchor.error = Some(format!("transaction {} reverted", r.transaction_hash));
                    tracing::error!(target = ?item.target, tx = %r.transaction_hash, "anchoring transaction reverted");
                    self.set_anchor(&item.target, anchor).await?;
                    let seq = item.seq;
                    return blocking(&self.committer, move |c| c.finish(seq)).await;
                }
                let depth = head.saturating_sub(block) + 1;
                let status =
                    if depth >= self.cfg.confirmations { AnchorStatus::Confirmed } else { AnchorStatus::Included };
                let next = Anchor {
                    status,
                    tx_hash: Some(r.transaction_hash.to_string()),
                    block_number: Some(block),
                    block_hash: Some(block_hash.to_string()),
                    confirmations: Some(depth),
                    error: None,
                    ..anchor.clone()
                };
                if next != anchor {
                    if anchor.status != status {
                        tracing::info!(target = ?item.target, block, depth, ?status, "anchoring progressed");
                    }
                    self.set_anchor(&item.target, next).await?;
                }
                if depth >= self.cfg.confirmations + REORG_WINDOW {
                    let seq = item.seq;
                    blocking(&self.committer, move |c| c.finish(seq)).await?;
                }
                return Ok(());
            }
        }
        // Not (or no longer) in the canonical chain.
        if matches!(anchor.status, AnchorStatus::Included | AnchorStatus::Confirmed) {
            tracing::warn!(target = ?item.target, block = ?anchor.block_number, "reorg: the anchoring transaction left the chain; publishing it again");
            anchor.status = AnchorStatus::Submitted;
            anchor.block_number = None;
            anchor.block_hash = None;
            anchor.confirmations = None;
            self.set_anchor(&item.target, anchor.clone()).await?;
        }
        let now = pled_core::unix_millis_now();
        if now.saturating_sub(tx.last_bump_ms) >= self.cfg.stuck_after.as_millis() as u64 {
            // Stuck: replace it with the same nonce and higher fees.
            let Some((to, input, gas)) = self.call_of(&item.target).await? else { return Ok(()) };
            let fees = self.provider.estimate_eip1559_fees().await.map_err(rpc)?;
            let max_fee = (tx.max_fee * 5 / 4 + 1).max(fees.max_fee_per_gas);
            let priority = (tx.priority_fee * 5 / 4 + 1).max(fees.max_priority_fee_per_gas).min(max_fee);
            let (raw, hash) = self.sign(to, input, gas, tx.nonce, max_fee, priority).await?;
            tx.raw.push(raw.clone());
            tx.hashes.push(hash.clone());
            tx.max_fee = max_fee;
            tx.priority_fee = priority;
            tx.last_bump_ms = now;
            tx.last_sent_ms = now;
            let (seq, saved) = (item.seq, tx.clone());
            blocking(&self.committer, move |c| c.save_tx(seq, &saved)).await?;
            anchor.tx_hash = Some(hash.clone());
            self.set_anchor(&item.target, anchor).await?;
            tracing::warn!(target = ?item.target, tx = %hash, nonce = tx.nonce, max_fee, "replaced a stuck transaction with higher fees");
            self.broadcast(&raw).await;
        } else if now.saturating_sub(tx.last_sent_ms) >= REBROADCAST_MS {
            if let Some(raw) = tx.raw.last().cloned() {
                self.broadcast(&raw).await;
            }
            tx.last_sent_ms = now;
            let (seq, saved) = (item.seq, tx);
            blocking(&self.committer, move |c| c.save_tx(seq, &saved)).await?;
        }
        Ok(())
    }
}

/// What the chain says about a proof document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnChain {
    /// The root the registry holds for the proof's round or range.
    pub anchored_root: String,
    /// `verifyInclusion` / `verifyRangeInclusion` answered true.
    pub included: bool,
}

/// Checks a proof document against the registry: the anchored root and the contract's own
/// inclusion check.
pub async fn verify_on_chain(
    rpc_url: &str,
    registry: Address,
    doc: &pled_core::proof::ProofDocument,
) -> Result<OnChain, ChainError> {
    let provider = connect(rpc_url)?;
    let reg = PLEDRegistry::new(registry, &provider);
    let values = &doc.leaf.values;
    let execution = from_0x::<16>(&values[0]).ok_or_else(|| ChainError("leaf execution id".into()))?;
    let seq: u64 = values[1].parse().map_err(rpc)?;
    let entry_hash = B256::from(from_0x::<32>(&values[2]).ok_or_else(|| ChainError("leaf entry hash".into()))?);
    let proof: Vec<B256> = doc.proof.iter().filter_map(|p| from_0x::<32>(p)).map(B256::from).collect();
    let (root, included) = match doc.scope {
        Scope::Round { round, .. } => {
            let r = reg.roundOf(round).call().await.map_err(rpc)?;
            let ok =
                reg.verifyInclusion(round, FixedBytes(execution), seq, entry_hash, proof).call().await.map_err(rpc)?;
            (r.root, ok)
        }
        Scope::Commitment { range_start, range_end, .. } => {
            let root = reg.rangeRootOf(FixedBytes(execution), range_start, range_end).call().await.map_err(rpc)?;
            let ok = reg
                .verifyRangeInclusion(FixedBytes(execution), range_start, range_end, seq, entry_hash, proof)
                .call()
                .await
                .map_err(rpc)?;
            (root, ok)
        }
    };
    Ok(OnChain { anchored_root: root.to_string(), included })
}
