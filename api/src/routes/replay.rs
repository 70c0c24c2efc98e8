//! Snapshots, replay and the comparison of template versions on an execution's stored
//! inputs. Replay and comparison only read: they never fire an action, arm a timer or append
//! to the live ledger (they leave an audit record).
//!
//! A replay (or comparison) runs on a blocking thread once it has one of the replay slots
//! ([`crate::runs`]). Answered within its request, it has a deadline just inside the request
//! time-out and a cancellation flag that is raised when the request goes away (the client
//! disconnects or the time-out layer drops it) or the server shuts down: the fold checks both
//! every 256 inputs and stops. With `background: true` it is a run instead: answered 202 at
//! once, without a deadline, followed and cancelled at `/v1/replays/{runId}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::{JoinError, JoinHandle};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::{SeqQuery, load};
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, parse_json};
use crate::idempotency::{self, Created, Idempotency};
use crate::replay::{CompareReport, ReplayError, ReplayOptions, ReplayReport, Stop};
use crate::repo::audit;
use crate::repo::snapshots::{self, SnapshotRecord, Trigger};
use crate::runs::{Run, RunKind, RunStatus, RunView};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(take_snapshot))
        .routes(routes!(list_snapshots))
        .routes(routes!(get_snapshot))
        .routes(routes!(replay))
        .routes(routes!(compare))
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
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
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ReplayRequest {
    /// Stop at the last input boundary at or before this seq (default: the head).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default, deserialize_with = "pled_core::de::exact_integer")]
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    up_to_seq: Option<u64>,
    /// Start from this snapshot (its id, i.e. seq) instead of genesis.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default, deserialize_with = "pled_core::de::exact_integer")]
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    from_snapshot_id: Option<u64>,
    /// Must be absent or `false`: replay is always a dry run (see docs/operations.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    write: Option<bool>,
    /// `true`: answer 202 at once with a run to follow at `/v1/replays/{runId}`, instead of
    /// answering the report within the request time-out.
    #[serde(default)]
    background: bool,
}

/// Re-run the execution's stored inputs (events, timer firings, operator controls, with the
/// AI outputs recorded for them) through its pinned template version, from genesis or a
/// snapshot, and compare the entries and state it reaches with the stored chain. A dry run:
/// nothing is appended, no action fires, no timer is armed, no model is called. With
/// `background: true`, answers 202 with a run to follow instead (for replays longer than the
/// request time-out).
#[utoipa::path(post, path = "/v1/executions/{id}/replay", tag = "executions", request_body(content = Option<ReplayRequest>),
    params(("id" = String, Path)),
    responses((status = 200, body = ReplayReport), (status = 202, body = RunView, description = "`background: true`: the run, queued; `Location` is its URL"),
        (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem), (status = 429, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)))]
pub(crate) async fn replay(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    raw: Bytes,
) -> ApiResult<Response> {
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
    let store = s.store.clone();
    let work = move |stop: Stop<'_>| crate::replay::replay(&store, &machine, rec.id, &opts, stop, &mut |_| {});
    let run = Launch { kind: RunKind::Replay, background: req.background, request: &req };
    run.start(&s, &who, &id, work).await
}

/// Which version to compare with.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CompareRequest {
    /// A published version of the execution's template.
    version: u32,
    /// Only the inputs up to this seq (default: all).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default, deserialize_with = "pled_core::de::exact_integer")]
    #[schema(maximum = 9_007_199_254_740_991_u64)]
    up_to_seq: Option<u64>,
    /// `true`: answer 202 at once with a run to follow at `/v1/replays/{runId}`.
    #[serde(default)]
    background: bool,
}

/// Run the execution's stored inputs through another published version of its template, side
/// by side with its pinned version: where the states first diverge, which inputs give other
/// messages, transitions or states, and both final states. Nothing is written to the
/// execution. With `background: true`, answers 202 with a run to follow instead.
#[utoipa::path(post, path = "/v1/executions/{id}/compare", tag = "executions", request_body = CompareRequest,
    params(("id" = String, Path)),
    responses((status = 200, body = CompareReport), (status = 202, body = RunView, description = "`background: true`: the run, queued; `Location` is its URL"),
        (status = 400, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 429, body = crate::error::Problem), (status = 503, body = crate::error::Problem)))]
pub(crate) async fn compare(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<CompareRequest>,
) -> ApiResult<Response> {
    who.require(Permission::Run)?;
    let rec = load(&s, &who, &id)?;
    let req = body.value;
    let base = s.lanes.machine(&rec.org, &rec.template_id, rec.version)?;
    let candidate = s.lanes.machine(&rec.org, &rec.template_id, req.version)?;
    let (store, org, version) = (s.store.clone(), rec.org.clone(), rec.version);
    let (to, up_to) = (req.version, req.up_to_seq);
    let work = move |stop: Stop<'_>| {
        crate::replay::compare(&store, &org, rec.id, (&base, version), (&candidate, to), up_to, stop)
    };
    let run = Launch { kind: RunKind::Compare, background: req.background, request: &req };
    run.start(&s, &who, &id, work).await
}

/// What a replay or a comparison found: the answer, and the audit record it leaves.
trait Found: Serialize + Send + Sync + 'static {
    /// The audit action and its details.
    fn audit(&self) -> (&'static str, Value);
}

impl Found for ReplayReport {
    fn audit(&self) -> (&'static str, Value) {
        let details = json!({
            "fromSnapshotId": self.from_snapshot_id,
            "upToSeq": self.up_to_seq,
            "headSeq": self.head_seq,
            "identical": self.identical,
        });
        ("execution.replayed", details)
    }
}

impl Found for CompareReport {
    fn audit(&self) -> (&'static str, Value) {
        let details = json!({
            "baseVersion": self.base_version,
            "version": self.version,
            "inputs": self.inputs,
            "identical": self.identical,
        });
        ("execution.compared", details)
    }
}

/// How a replay or a comparison was asked for.
struct Launch<'a, R> {
    kind: RunKind,
    background: bool,
    /// The request body, as the run shows it.
    request: &'a R,
}

impl<R: Serialize> Launch<'_, R> {
    /// Runs `work` within the request (with a slot, a deadline and the request's
    /// cancellation), or as a background run answered 202.
    async fn start<T: Found>(
        self,
        s: &AppState,
        who: &Principal,
        id: &str,
        work: impl FnOnce(Stop<'_>) -> Result<T, ReplayError> + Send + 'static,
    ) -> ApiResult<Response> {
        if self.background {
            let request = serde_json::to_value(self.request).map_err(|e| ApiError::Internal(e.to_string()))?;
            let run = s.runs.submit(who, self.kind, id, request)?;
            let view = run.view();
            tokio::spawn(in_background(s.clone(), who.clone(), id.to_owned(), (self.kind, run), work));
            let location = format!("/v1/replays/{}", view.id);
            return Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], axum::Json(view)).into_response());
        }
        let deadline = Instant::now() + super::answer_within(&s.config);
        // Waiting for a slot must not hold up a shutdown either. A free slot is taken first
        // (then the fold stops at its first check): one outcome, whatever the timing.
        let _slot = s.hub.unless_closing(s.runs.slot_until(deadline)).await??;
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let flag = cancel.clone();
        let task = tokio::task::spawn_blocking(move || {
            work(Stop { cancel: Some(&flag), deadline: Some(deadline), progress: None })
        });
        let found = until_done(s, &cancel, task).await.map_err(|e| task_failed(self.kind, e))??;
        audit_found(s, who, id, &found).await?;
        Ok(axum::Json(found).into_response())
    }
}

fn task_failed(kind: RunKind, e: JoinError) -> ApiError {
    ApiError::Internal(format!("{kind:?} task failed: {e}"))
}

async fn audit_found(s: &AppState, who: &Principal, id: &str, found: &impl Found) -> ApiResult<()> {
    let (action, details) = found.audit();
    s.store.write(audit::by(pled_store::WriteSet::new(), who, action, id, details)?).await?;
    Ok(())
}

/// A background run: waits for a slot (or its cancellation, or the shutdown), folds without
/// a deadline, and records what it found or what stopped it.
async fn in_background<T: Found>(
    s: AppState,
    who: Principal,
    id: String,
    (kind, run): (RunKind, Arc<Run>),
    work: impl FnOnce(Stop<'_>) -> Result<T, ReplayError> + Send + 'static,
) {
    // A run cancelled (or shut down) while queued ends without starting, even if a slot is
    // free at the same moment.
    let slot = tokio::select! {
        biased;
        () = run.cancelled() => {
            run.finished(Err(ApiError::Unavailable("cancelled before it started".into())));
            return;
        }
        () = s.hub.closed() => {
            run.cancel();
            run.finished(Err(ApiError::Unavailable("the server shut down before the run started".into())));
            return;
        }
        slot = s.runs.slot() => slot,
    };
    run.started();
    let folding = run.clone();
    let task = tokio::task::spawn_blocking(move || {
        let stop = Stop { cancel: Some(folding.cancel_flag()), deadline: None, progress: Some(folding.progress()) };
        work(stop)
    });
    let outcome = match until_done(&s, run.cancel_flag(), task).await {
        Ok(Ok(found)) => match audit_found(&s, &who, &id, &found).await {
            Ok(()) => serde_json::value::to_raw_value(&found).map_err(|e| ApiError::Internal(e.to_string())),
            Err(e) => Err(e),
        },
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(task_failed(kind, e)),
    };
    drop(slot);
    if let Err(ApiError::Internal(cause)) = &outcome {
        tracing::error!(run = %run.id(), error = %cause, "background replay failed");
    }
    run.finished(outcome);
}

/// The org's replay and comparison runs, newest first (the last 100; they are kept in memory,
/// so a restart forgets them).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunList {
    /// Newest first.
    items: Vec<RunView>,
}

/// Which runs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsQuery {
    /// Only the runs on this execution.
    execution_id: Option<String>,
}

/// The org's background replays and comparisons, newest first: the last 100 since the
/// server started.
#[utoipa::path(get, path = "/v1/replays", tag = "executions", params(RunsQuery),
    responses((status = 200, body = RunList), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)))]
pub(crate) async fn list_runs(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> ApiResult<axum::Json<RunList>> {
    who.require(Permission::Read)?;
    let mut items = s.runs.list(&who.org);
    if let Some(e) = &q.execution_id {
        items.retain(|r| &r.execution_id == e);
    }
    Ok(axum::Json(RunList { items }))
}

fn find_run(s: &AppState, who: &Principal, run_id: &str) -> ApiResult<Arc<Run>> {
    s.runs.get(&who.org, run_id).ok_or_else(|| ApiError::not_found("replay run", run_id))
}

/// A background replay or comparison: its status, progress (every 256 inputs), and once it
/// has ended its report or the problem that stopped it.
#[utoipa::path(get, path = "/v1/replays/{runId}", tag = "executions", params(("runId" = String, Path)),
    responses((status = 200, body = RunView), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_run(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(run_id): ApiPath<String>,
) -> ApiResult<axum::Json<RunView>> {
    who.require(Permission::Read)?;
    Ok(axum::Json(find_run(&s, &who, &run_id)?.view()))
}

/// Stop a background replay or comparison: a queued one ends at once, a running one at its
/// next check (within 256 inputs); it ends `cancelled`. 409 once it has succeeded or failed.
#[utoipa::path(post, path = "/v1/replays/{runId}/cancel", tag = "executions", params(("runId" = String, Path)),
    responses((status = 202, body = RunView), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn cancel_run(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(run_id): ApiPath<String>,
) -> ApiResult<Response> {
    who.require(Permission::Run)?;
    let run = find_run(&s, &who, &run_id)?;
    let ended = match run.view().status {
        RunStatus::Succeeded => Some("succeeded"),
        RunStatus::Failed => Some("failed"),
        RunStatus::Queued | RunStatus::Running | RunStatus::Cancelled => None,
    };
    if let Some(how) = ended {
        return Err(ApiError::conflict(format!("run {run_id} has already {how}")));
    }
    run.cancel();
    Ok((StatusCode::ACCEPTED, axum::Json(run.view())).into_response())
}
