//! On-chain token mints against verified sink entries (`token.consumed` at a sink node): the
//! entry's round must be confirmed on-chain; the one sending task submits
//! `PLEDToken.mintForSinkEntry` with the entry's inclusion proof; one mint per entry.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pled_committer::{AnchorStatus, MintRecord, ProofAnswer};
use pled_core::{RecordedAt, Seq};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::load;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(mint)).routes(routes!(get_mint))
}

/// A mint request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct MintRequest {
    /// Token type (as the template names it).
    #[serde(rename = "type")]
    token_type: String,
    /// Quantity: a decimal string (or an integer below 2^53).
    #[schema(value_type = String)]
    quantity: Value,
    /// The sink node whose `token.consumed` entry is redeemed.
    sink_node_id: String,
    /// Recipient address (default: the signer's).
    to: Option<String>,
    /// The sink entry's seq, when several match.
    #[serde(default, deserialize_with = "pled_core::de::exact_integer")]
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    seq: Option<u64>,
}

/// A 409 with `extra` members: `anchorStatus` says where the round stands (`status` is the
/// problem document's HTTP status).
fn conflict(detail: String, extra: Value) -> ApiError {
    ApiError::Conflict { detail, extra: extra.as_object().cloned() }
}

/// Mint tokens on-chain for a sink entry whose round is confirmed. Answers 202 with the mint
/// record (its `anchor` follows the transaction: submitted, included, confirmed); 409 before
/// the round is confirmed (with its status), for an entry already minted, or with the chain
/// off.
#[utoipa::path(post, path = "/v1/executions/{id}/tokens/mint", tag = "ledger", request_body = MintRequest,
    params(("id" = String, Path)),
    responses((status = 202, body = Object), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn mint(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<MintRequest>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    let rec = load(&s, &who, &id)?;
    let req = body.value;
    let quantity = match &req.quantity {
        Value::String(q) if !q.is_empty() && q.bytes().all(|b| b.is_ascii_digit()) => {
            q.trim_start_matches('0').to_owned()
        }
        Value::Number(n) if n.as_u64().is_some_and(|v| v <= pled_core::MAX_SAFE_INTEGER) => n.to_string(),
        _ => return Err(ApiError::bad_field("/quantity", "must be a positive decimal string")),
    };
    if quantity.is_empty() {
        return Err(ApiError::bad_field("/quantity", "must be positive"));
    }
    if !s.committer.anchoring() || s.config.token_contract.is_none() {
        return Err(conflict(
            "the chain is off: there is no anchored root to mint against".into(),
            json!({ "anchorStatus": "unanchored" }),
        ));
    }
    let to = match &req.to {
        Some(a) => a
            .parse::<alloy::primitives::Address>()
            .map_err(|_| ApiError::bad_field("/to", "not an address"))?
            .to_string(),
        None => match s.config.signer_address.clone() {
            Some(a) => a,
            None => return Err(ApiError::bad_field("/to", "give the recipient address")),
        },
    };
    // The sink entry: token.consumed at that node, of that type and quantity.
    let mut candidate = None;
    for e in s.store.iter_entries(rec.id, Seq::FIRST) {
        let e = e?;
        if e.entry().kind.as_str() != "token.consumed" || req.seq.is_some_and(|q| q != e.seq().get()) {
            continue;
        }
        let b = e.entry().body.to_value().map_err(|err| ApiError::Internal(err.to_string()))?;
        if b["node"] == req.sink_node_id.as_str()
            && b["token"] == req.token_type.as_str()
            && b["amount"] == quantity.as_str()
        {
            let minted = s.committer.mint(rec.id, e.seq().get())?;
            if minted.is_none() || candidate.is_none() {
                candidate = Some((e.seq(), minted));
            }
            if candidate.as_ref().is_some_and(|(_, m)| m.is_none()) {
                break;
            }
        }
    }
    let Some((seq, minted)) = candidate else {
        return Err(ApiError::NotFound(format!(
            "no token.consumed entry at sink node {:?} for {quantity} {}",
            req.sink_node_id, req.token_type
        )));
    };
    if let Some(existing) = minted {
        return Err(conflict(format!("sink entry {seq} was already minted"), json!({ "mint": existing })));
    }
    let committer = s.committer.clone();
    let exec = rec.id;
    let answer = tokio::task::spawn_blocking(move || committer.proof(exec, seq))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let round = match answer {
        ProofAnswer::Pending { until_round } => {
            return Err(conflict(
                format!("sink entry {seq} is not in a closed round yet (round {until_round})"),
                json!({ "anchorStatus": "pending", "untilRound": until_round }),
            ));
        }
        ProofAnswer::Included(doc) => {
            let status = doc.anchor["status"].as_str().unwrap_or("").to_owned();
            let pled_core::proof::Scope::Round { round, .. } = doc.scope else {
                return Err(ApiError::Internal("round proof expected".into()));
            };
            if status != "confirmed" {
                return Err(conflict(
                    format!("round {round} holding sink entry {seq} is {status}; minting needs a confirmed root"),
                    json!({ "anchorStatus": status, "round": round }),
                ));
            }
            round
        }
    };
    let record = MintRecord {
        execution_id: rec.id,
        seq: seq.get(),
        token_type: req.token_type,
        quantity,
        to,
        round,
        requested_at: RecordedAt::now(),
        requested_by: who.subject.clone(),
        anchor: pled_committer::Anchor { status: AnchorStatus::Built, ..Default::default() },
        ledger_seq: None,
    };
    let committer = s.committer.clone();
    match tokio::task::spawn_blocking(move || committer.request_mint(record))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??
    {
        Ok(r) => Ok((StatusCode::ACCEPTED, axum::Json(r)).into_response()),
        Err(existing) => Err(conflict(format!("sink entry {seq} was already minted"), json!({ "mint": existing }))),
    }
}

/// A mint and its transaction's progress.
#[utoipa::path(get, path = "/v1/executions/{id}/tokens/mints/{seq}", tag = "ledger", params(("id" = String, Path), ("seq" = u64, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_mint(
    State(s): State<AppState>,
    who: Principal,
    ApiPath((id, seq)): ApiPath<(String, u64)>,
) -> ApiResult<axum::Json<MintRecord>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    s.committer.mint(rec.id, seq)?.map(axum::Json).ok_or_else(|| ApiError::not_found("mint of sink entry", seq))
}
