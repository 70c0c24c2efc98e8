//! Snapshots, replay and the comparison of template versions on an execution's stored
//! inputs. Replay and comparison only read: they never fire an action, arm a timer or append
//! to the live ledger (they leave an audit record).
//!
//! A replay runs on a blocking thread with a deadline just inside the request time-out and a
//! cancellation flag that is raised when the request goes away (the client disconnects or the
//! time-out layer drops it) or the server shuts down: the fold checks both every 256 inputs
//! and stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::{JoinError, JoinHandle};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::{SeqQuery, load};
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, parse_json};
use crate::idempotency::{self, Created, Idempotency};
use crate::replay::{CompareReport, ReplayOptions, ReplayReport, Stop};
use crate::repo::audit;
use crate::repo::snapshots::{self, SnapshotRecord, Trigger};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(take_snapshot))
        .routes(routes!(list_snapshots))
        .routes(routes!(get_snapshot))
        .routes(routes!(replay))
        .routes(routes!(compare))
}

/// Raises the flag when dropped: the request future went away.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Waits for a replay's (or comparison's) task. If the server shuts down meanwhile, raises
/// its cancellation flag: it stops at its next check and answers 503 with its progress.
async fn until_done<T>(s: &AppState, cancel: &AtomicBool, task: JoinHandle<T>) -> Result<T, JoinError> {
    tokio::pin!(task);
    tokio::select! {
        done = &mut task => done,
        () = s.hub.closed() => {
            cancel.store(true, Ordering::Relaxed);
            task.await
        }
    }
}

/// How long a replay may run: it answers (503 with its progress) before the time-out layer
/// drops the request.
fn deadline(s: &AppState) -> Instant {
    Instant::now() + super::answer_within(&s.config)
}

/// Take a snapshot.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotRequest {
    /// Free text, kept with the snapshot.
    description: Option<String>,
}

/// A snapshot without its state (listings).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SnapshotSummary {
    /// Its id: the seq it was taken at.
    id: u64,
    /// The seq of the last entry it includes.
    seq: u64,
    /// That entry's hash.
    head_hash: String,
    /// Events applied up to there.
    event_count: u64,
    /// Status at `seq`.
    status: String,
    /// State id at `seq`.
    state: String,
    /// When it was taken.
    taken_at: String,
    /// `periodic` or `on_demand`.
    trigger: Trigger,
    /// Who asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    taken_by: Option<String>,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

fn summary(r: SnapshotRecord) -> SnapshotSummary {
    SnapshotSummary {
        id: r.seq,
        seq: r.seq,
        head_hash: r.head_hash,
        event_count: r.event_count,
        status: r.state.status.as_str().to_owned(),
        state: r.state.exec.state,
        taken_at: r.taken_at.to_string(),
        trigger: r.trigger,
        taken_by: r.taken_by,
        description: r.description,
    }
}

/// Snapshot the execution's full state at its head (status, engine state, pause queue, head
/// hash); replay and late joiners can start there. Its id is the head seq.
#[utoipa::path(post, path = "/v1/executions/{id}/snapshot", tag = "executions", request_body(content = Option<SnapshotRequest>),
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 201, body = SnapshotRecord), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn take_snapshot(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    raw: Bytes,
) -> ApiResult<Response> {
    who.require(Permission::Run)?;
    let rec = load(&s, &who, &id)?;
    let req: SnapshotRequest =
        if raw.iter().all(u8::is_ascii_whitespace) { Default::default() } else { parse_json(&raw)? };
    if req.description.as_ref().is_some_and(|d| d.len() > 2_000) {
        return Err(ApiError::bad_field("/description", "at most 2000 bytes"));
    }
    let idem = Idempotency::from_request(
        &headers,
        &who.org,
        &format!("snapshot:{id}"),
        &format!("/v1/executions/{id}/snapshot"),
        &raw,
    )?;
    idempotency::create(&s, idem, || async {
        // The head record holds the chain head and the state it belongs to, read together.
        let (head, live) = crate::repo::executions::live(&s.store, rec.id)?
            .ok_or_else(|| ApiError::Internal(format!("execution {} has no ledger", rec.id)))?;
        let mut snap = SnapshotRecord::new(&head, &live, Trigger::OnDemand);
        snap.taken_by = Some(who.subject.clone());
        snap.description = req.description.clone();
        let ws = snapshots::put(pled_store::WriteSet::new(), rec.id, &snap)?;
        let ws = audit::by(ws, &who, "execution.snapshot_taken", &id, json!({ "seq": snap.seq }))?;
        Ok(Created {
            status: StatusCode::CREATED,
            body: serde_json::to_value(&snap).map_err(|e| ApiError::Internal(e.to_string()))?,
            location: Some(format!("/v1/executions/{id}/snapshots/{}", snap.seq)),
            writes: ws,
        })
    })
    .await
}

/// A page of an execution's snapshots.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SnapshotList {
    /// Oldest first.
    items: Vec<SnapshotSummary>,
    /// Pass as `afterSeq` for the next page; absent after the last snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after_seq: Option<u64>,
}

/// An execution's snapshots (periodic and on demand), oldest first, a page at a time; `id`
/// is the seq.
#[utoipa::path(get, path = "/v1/executions/{id}/snapshots", tag = "executions", params(("id" = String, Path), SeqQuery),
    responses((status = 200, body = SnapshotList), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn list_snapshots(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeqQuery>,
) -> ApiResult<axum::Json<SnapshotList>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let items: Vec<SnapshotSummary> =
        snapshots::between(&s.store, rec.id, q.after(), u64::MAX, q.limit())?.into_iter().map(summary).collect();
    let next_after_seq = q.next_after(items.len(), items.last().map(|i| i.seq));
    Ok(axum::Json(SnapshotList { items, next_after_seq }))
}

/// One snapshot, with its full state.
#[utoipa::path(get, path = "/v1/executions/{id}/snapshots/{snapshotId}", tag = "executions",
    params(("id" = String, Path), ("snapshotId" = u64, Path, description = "The seq it was taken at")),
    responses((status = 200, body = SnapshotRecord), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_snapshot(
    State(s): State<AppState>,
    who: Principal,
    ApiPath((id, snapshot_id)): ApiPath<(String, u64)>,
) -> ApiResult<axum::Json<SnapshotRecord>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    Ok(axum::Json(
        snapshots::get(&s.store, rec.id, snapshot_id)?.ok_or_else(|| ApiError::not_found("snapshot", snapshot_id))?,
    ))
}

/// What to replay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ReplayRequest {
    /// Stop at the last input boundary at or before this seq (default: the head).
    up_to_seq: Option<u64>,
    /// Start from this snapshot (its id, i.e. seq) instead of genesis.
    from_snapshot_id: Option<u64>,
    /// Must be absent or `false`: replay is always a dry run (see docs/operations.md).
    write: Option<bool>,
}

/// Re-run the execution's stored inputs (events, timer firings, operator controls, with the
/// AI outputs recorded for them) through its pinned template version, from genesis or a
/// snapshot, and compare the entries and state it reaches with the stored chain. A dry run:
/// nothing is appended, no action fires, no timer is armed, no model is called.
#[utoipa::path(post, path = "/v1/executions/{id}/replay", tag = "executions", request_body(content = Option<ReplayRequest>),
    params(("id" = String, Path)),
    responses((status = 200, body = ReplayReport), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem), (status = 503, body = crate::error::Problem)))]
pub(crate) async fn replay(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    raw: Bytes,
) -> ApiResult<axum::Json<ReplayReport>> {
    who.require(Permission::Run)?;
    let rec = load(&s, &who, &id)?;
    let req: ReplayRequest =
        if raw.iter().all(u8::is_ascii_whitespace) { Default::default() } else { parse_json(&raw)? };
    if req.write == Some(true) {
        who.require(Permission::Administer)?;
        return Err(ApiError::Unprocessable {
            code: "replay_is_dry_run",
            detail: "replay is always a dry run in this version: it compares a re-run with the ledger and never \
                     appends, fires actions or arms timers (an append-only ledger cannot be rewritten). Omit \
                     `write` or set it to false"
                .into(),
            errors: vec![crate::error::FieldError { path: "/write".into(), message: "must be false".into() }],
        });
    }
    let machine = s.lanes.machine(&rec.org, &rec.template_id, rec.version)?;
    let opts = ReplayOptions { up_to: req.up_to_seq, from_snapshot: req.from_snapshot_id, progress_every: 0 };
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let (store, deadline) = (s.store.clone(), deadline(&s));
    let flag = cancel.clone();
    let task = tokio::task::spawn_blocking(move || {
        let stop = Stop { cancel: Some(&flag), deadline: Some(deadline) };
        crate::replay::replay(&store, &machine, rec.id, &opts, stop, &mut |_| {})
    });
    let report =
        until_done(&s, &cancel, task).await.map_err(|e| ApiError::Internal(format!("replay task failed: {e}")))??;
    let details = json!({
        "fromSnapshotId": report.from_snapshot_id,
        "upToSeq": report.up_to_seq,
        "headSeq": report.head_seq,
        "identical": report.identical,
    });
    s.store.write(audit::by(pled_store::WriteSet::new(), &who, "execution.replayed", &id, details)?).await?;
    Ok(axum::Json(report))
}

/// Which version to compare with.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CompareRequest {
    /// A published version of the execution's template.
    version: u32,
    /// Only the inputs up to this seq (default: all).
    up_to_seq: Option<u64>,
}

/// Run the execution's stored inputs through another published version of its template, side
/// by side with its pinned version: where the states first diverge, which inputs give other
/// messages, transitions or states, and both final states. Nothing is written.
#[utoipa::path(post, path = "/v1/executions/{id}/compare", tag = "executions", request_body = CompareRequest,
    params(("id" = String, Path)),
    responses((status = 200, body = CompareReport), (status = 400, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 503, body = crate::error::Problem)))]
pub(crate) async fn compare(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<CompareRequest>,
) -> ApiResult<axum::Json<CompareReport>> {
    who.require(Permission::Run)?;
    let rec = load(&s, &who, &id)?;
    let req = body.value;
    let base = s.lanes.machine(&rec.org, &rec.template_id, rec.version)?;
    let candidate = s.lanes.machine(&rec.org, &rec.template_id, req.version)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let (store, deadline, flag) = (s.store.clone(), deadline(&s), cancel.clone());
    let (org, version) = (rec.org.clone(), rec.version);
    let task = tokio::task::spawn_blocking(move || {
        let stop = Stop { cancel: Some(&flag), deadline: Some(deadline) };
        crate::replay::compare(&store, &org, rec.id, (&base, version), (&candidate, req.version), req.up_to_seq, stop)
    });
    let report = until_done(&s, &cancel, task)
        .await
        .map_err(|e| ApiError::Internal(format!("comparison task failed: {e}")))??;
    Ok(axum::Json(report))
}
