//! Inclusion proofs, commit rounds, per-execution commitments and evidence bundles.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pled_committer::{CommitError, CommitmentRecord, ProofAnswer, RoundRecord};
use pled_core::Seq;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::load;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery, parse_json};
use crate::idempotency::{self, Created, Idempotency};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(proof))
        .routes(routes!(create_commitment, list_commitments))
        .routes(routes!(get_round))
        .routes(routes!(list_rounds))
        .routes(routes!(evidence))
}

impl From<CommitError> for ApiError {
    fn from(e: CommitError) -> Self {
        match e {
            CommitError::Store(s) => s.into(),
            CommitError::NotFound(m) => ApiError::NotFound(m),
            CommitError::Invalid(m) => ApiError::bad_field("/", m),
            CommitError::Corrupt(m) => ApiError::Internal(m),
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, CommitError> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(e.to_string()))?.map_err(Into::into)
}

/// Which proof.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ProofQuery {
    /// Prove against this per-execution commitment instead of the entry's round.
    commitment_id: Option<u64>,
}

/// A pending answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PendingProof {
    /// `pending`.
    status: &'static str,
    /// The entry will be in this round once it closes.
    until_round: u64,
    /// For people.
    detail: String,
}

/// The inclusion proof of one entry: the entry (export form), its hash, the OpenZeppelin
/// leaf values and leaf hash, the sibling path, the root, the round (or commitment) and its
/// anchoring. Everything needed to verify with no other call (docs/ledger-format.md §9). An
/// entry not yet in a closed round answers `{"status": "pending", "untilRound": N}`.
#[utoipa::path(get, path = "/v1/executions/{id}/ledger/{seq}/proof", tag = "ledger",
    params(("id" = String, Path), ("seq" = u64, Path), ProofQuery),
    responses((status = 200, description = "A proof document (format pled-proof-v1) or a pending answer", body = Object), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn proof(
    State(s): State<AppState>,
    who: Principal,
    ApiPath((id, seq)): ApiPath<(String, u64)>,
    ApiQuery(q): ApiQuery<ProofQuery>,
) -> ApiResult<Response> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let c = s.committer.clone();
    let answer = blocking(move || match q.commitment_id {
        Some(cid) => c.commitment_proof(rec.id, Seq::new(seq), cid),
        None => c.proof(rec.id, Seq::new(seq)),
    })
    .await?;
    Ok(match answer {
        ProofAnswer::Included(doc) => axum::Json(doc).into_response(),
        ProofAnswer::Pending { until_round } => axum::Json(PendingProof {
            status: "pending",
            until_round,
            detail: format!("entry {seq} is not in a closed round yet; it will be in round {until_round}"),
        })
        .into_response(),
    })
}

/// A commitment request.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CommitRange {
    /// First seq (default: after the previous commitment, or 1).
    #[serde(default, deserialize_with = "pled_core::de::exact_integer")]
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    range_start: Option<u64>,
    /// Last seq (default: the head).
    #[serde(default, deserialize_with = "pled_core::de::exact_integer")]
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    range_end: Option<u64>,
}

/// Commit one execution's seq range now: its Merkle root, stored and (with a chain)
/// anchored with `commitLedgerRoot(executionId, rangeStart, rangeEnd, merkleRoot)`.
#[utoipa::path(post, path = "/v1/executions/{id}/commitments", tag = "ledger", request_body(content = Option<CommitRange>, description = "Optional; an empty body commits what follows the previous commitment, up to the head"),
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 201, body = Object), (status = 400, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn create_commitment(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    let rec = load(&s, &who, &id)?;
    let req: CommitRange =
        if body.iter().all(u8::is_ascii_whitespace) { CommitRange::default() } else { parse_json(&body)? };
    let idem = Idempotency::from_request(
        &headers,
        &who.org,
        &format!("commitments:{id}"),
        &format!("/v1/executions/{id}/commitments"),
        &body,
    )?;
    idempotency::create(&s, idem, || async {
        let c = s.committer.clone();
        let by = who.subject.clone();
        let made: CommitmentRecord =
            blocking(move || c.commit_range(rec.id, req.range_start, req.range_end, &by)).await?;
        Ok(Created {
            status: StatusCode::CREATED,
            body: serde_json::to_value(&made).map_err(|e| ApiError::Internal(e.to_string()))?,
            location: Some(format!("/v1/executions/{id}/commitments")),
            writes: pled_store::WriteSet::new(),
        })
    })
    .await
}

/// The execution's commitments, oldest first.
#[utoipa::path(get, path = "/v1/executions/{id}/commitments", tag = "ledger", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Object>), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn list_commitments(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<Vec<CommitmentRecord>>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    Ok(axum::Json(s.committer.commitments(rec.id)?))
}

/// One commit round: its feed range, leaf count, root and anchoring. Rounds cover entries of
/// every org; they reveal roots and counts, never content.
#[utoipa::path(get, path = "/v1/rounds/{round}", tag = "ledger", params(("round" = u64, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_round(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(round): ApiPath<u64>,
) -> ApiResult<axum::Json<RoundRecord>> {
    who.require(Permission::Read)?;
    s.committer.round(round)?.map(axum::Json).ok_or_else(|| ApiError::not_found("round", round))
}

/// Round listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct RoundQuery {
    /// Rounds after this id (default 0).
    after: Option<u64>,
    /// At most this many (1-500, default 50).
    limit: Option<usize>,
}

/// Commit rounds, oldest first.
#[utoipa::path(get, path = "/v1/rounds", tag = "ledger", params(RoundQuery), responses((status = 200, body = Vec<Object>)))]
pub(crate) async fn list_rounds(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<RoundQuery>,
) -> ApiResult<axum::Json<Vec<RoundRecord>>> {
    who.require(Permission::Read)?;
    Ok(axum::Json(s.committer.rounds_after(q.after.unwrap_or(0), q.limit.unwrap_or(50).clamp(1, 500))?))
}

/// A channel writer: the bundle is produced on a blocking thread and streamed as it goes.
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>, Vec<u8>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        if self.1.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.1.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.1));
            self.0
                .blocking_send(Ok(chunk))
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        }
        Ok(())
    }
}

/// The execution's evidence bundle (JSON Lines, streamed): template version, every entry with
/// its inclusion proof, the rounds and commitments, and a digest trailer. `pled audit verify
/// FILE` checks all of it offline.
#[utoipa::path(get, path = "/v1/executions/{id}/evidence", tag = "ledger", params(("id" = String, Path)),
    responses((status = 200, content_type = "application/x-ndjson", body = String), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn evidence(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (store, committer) = (s.store.clone(), s.committer.clone());
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter(tx.clone(), Vec::new());
        let result = crate::evidence::export(&store, &committer, &rec, &mut w, |_| {}).and_then(|_| Ok(w.flush()?));
        if let Err(e) = result {
            tracing::error!(error = %e, "evidence export failed");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let filename = format!("attachment; filename=\"evidence-{id}.jsonl\"");
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson".to_owned()), (header::CONTENT_DISPOSITION, filename)], body)
        .into_response())
}
