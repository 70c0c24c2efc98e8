//! Puts on-chain mints on their execution's ledger once the chain confirms them: one
//! `token.minted_onchain` entry per mint, naming the sink entry, the token, the recipient and
//! the transaction. The entry goes through the execution's lane, in the same atomic write as
//! the mark that it was written, so a mint is recorded once even across crashes. A mint whose
//! transaction failed is marked and left off the ledger (its record says why).

use std::sync::Arc;
use std::time::Duration;

use pled_committer::{AnchorStatus, Committer, MintRecord};
use pled_core::{Body, ChainHead, Kind};
use pled_store::{Store, WriteSet};
use serde_json::json;
use tokio::sync::watch;

use crate::apply::kinds::TOKEN_MINTED_ONCHAIN;
use crate::error::ApiError;
use crate::lanes::{Lanes, Recorder, Recording};
use crate::repo::executions;

/// How often the recorder looks for newly confirmed mints.
const POLL: Duration = Duration::from_secs(1);
/// Mints looked at per pass.
const BATCH: usize = 256;

/// Records confirmed mints until `shutdown`.
pub async fn run(committer: Arc<Committer>, lanes: Arc<Lanes>, store: Store, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = record_confirmed(&committer, &lanes, &store).await {
            tracing::warn!(error = %e, "recording confirmed mints on the ledger; retrying");
        }
    }
}

/// One pass: every confirmed mint not on its ledger yet goes there. Returns how many.
pub async fn record_confirmed(
    committer: &Arc<Committer>,
    lanes: &Arc<Lanes>,
    store: &Store,
) -> Result<usize, ApiError> {
    let c = committer.clone();
    let mints = tokio::task::spawn_blocking(move || c.unrecorded_mints(BATCH))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut recorded = 0;
    for mint in mints {
        match mint.anchor.status {
            AnchorStatus::Confirmed => {}
            AnchorStatus::Failed => {
                store.write(committer.mint_recorded(WriteSet::new(), &mint, None)?).await?;
                continue;
            }
            _ => continue,
        }
        let Some(exec) = executions::find(store, mint.execution_id)? else {
            return Err(ApiError::Internal(format!("mint of {}/{}: no such execution", mint.execution_id, mint.seq)));
        };
        let answer = lanes.record(&exec, recorder(committer.clone(), mint)).await?;
        recorded += answer.value()["entries"].as_array().map_or(0, Vec::len);
    }
    Ok(recorded)
}

/// Builds the entry inside the lane, unless the mint is on the ledger already.
fn recorder(committer: Arc<Committer>, mint: MintRecord) -> Recorder {
    Box::new(move |_store: &Store, head: &ChainHead| {
        let current = committer.mint(mint.execution_id, mint.seq)?;
        let Some(current) = current.filter(|m| m.ledger_seq.is_none()) else {
            return Ok(None);
        };
        let a = &current.anchor;
        let body = json!({
            "sinkSeq": current.seq,
            "token": current.token_type,
            "quantity": current.quantity,
            "to": current.to,
            "round": current.round,
            "requestedBy": current.requested_by,
            "chainId": a.chain_id,
            "contract": a.contract,
            "txHash": a.tx_hash,
            "blockNumber": a.block_number,
            "blockHash": a.block_hash,
        });
        let body = Body::from_value(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
        let kind = Kind::new(TOKEN_MINTED_ONCHAIN).map_err(|e| ApiError::Internal(e.to_string()))?;
        let ws = committer.mint_recorded(WriteSet::new(), &current, Some(head.seq.get() + 1))?;
        Ok(Some(Recording { entries: vec![(kind, body)], ws, event: None }))
    })
}
