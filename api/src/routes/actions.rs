//! Actions for operators: the action catalog, jobs (per execution, per org, one with its
//! attempts), re-running a dead or failed job, running an action on demand, and the org's
//! webhook signing secret.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pled_core::{Body, ChainHead, ExecutionId, Kind};
use pled_store::{Store, Table, WriteSet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::load;
use crate::actions::jobs::{self, JobRecord, JobStatus};
use crate::actions::{kinds, signing};
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::idempotency::{self, Created, Idempotency};
use crate::lanes::Recording;
use crate::repo::executions::ExecutionRecord;
use crate::repo::{DEFAULT_PAGE, MAX_PAGE, Page, audit};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(catalog))
        .routes(routes!(execution_jobs))
        .routes(routes!(org_jobs))
        .routes(routes!(get_job))
        .routes(routes!(rerun_job))
        .routes(routes!(run_action))
        .routes(routes!(rotate_signing_secret))
}

/// An action type and the schema of its input.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActionTypeView {
    /// The name templates use as an action's `type`.
    r#type: String,
    /// What it does.
    description: String,
    /// JSON schema of its input (after `=` expressions are evaluated).
    #[schema(value_type = Object)]
    input_schema: Value,
}

/// The action types this service runs, with their input schemas.
#[utoipa::path(get, path = "/v1/catalog/actions", tag = "actions",
    responses((status = 200, body = Page<ActionTypeView>)))]
pub(crate) async fn catalog(State(s): State<AppState>, who: Principal) -> ApiResult<axum::Json<Page<ActionTypeView>>> {
    who.require(Permission::Read)?;
    let items = s
        .runner
        .registry()
        .iter()
        .map(|t| ActionTypeView {
            r#type: t.name().to_owned(),
            description: t.description().to_owned(),
            input_schema: t.input_schema(),
        })
        .collect();
    Ok(axum::Json(Page { items, next_cursor: None }))
}

/// Filters and pagination of job lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct JobQuery {
    /// Only jobs in this status.
    #[param(value_type = Option<JobStatus>)]
    status: Option<String>,
    /// Items per page (1-500, default 50).
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

fn status_filter(q: &JobQuery) -> ApiResult<Option<JobStatus>> {
    q.status
        .as_deref()
        .map(|s| {
            JobStatus::parse(s).ok_or_else(|| {
                ApiError::bad_field("status", "one of pending, running, retrying, succeeded, failed, dead")
            })
        })
        .transpose()
}

/// Jobs of one execution after `after` (a job table key; empty: from the first).
fn scan_execution(
    store: &Store,
    id: ExecutionId,
    after: &[u8],
    want: Option<JobStatus>,
    limit: usize,
    out: &mut Vec<JobRecord>,
) -> ApiResult<()> {
    let mut after = after.to_vec();
    loop {
        let batch = store.scan(Table::Jobs, id.as_bytes(), &after, 512)?;
        let n = batch.len();
        for (k, v) in batch {
            let job: JobRecord =
                serde_json::from_slice(&v).map_err(|e| ApiError::Internal(format!("corrupt job record: {e}")))?;
            after = k;
            if want.is_none_or(|w| w == job.status) {
                out.push(job);
                if out.len() > limit {
                    return Ok(());
                }
            }
        }
        if n < 512 {
            return Ok(());
        }
    }
}

fn page(mut items: Vec<JobRecord>, limit: usize) -> Page<JobRecord> {
    let next_cursor = (items.len() > limit).then(|| {
        items.truncate(limit);
        items.last().map(|j| j.id.clone()).unwrap_or_default()
    });
    Page { items, next_cursor }
}

fn limit(l: Option<usize>) -> usize {
    l.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

/// The jobs of an execution, in creation order within each input (job key order).
#[utoipa::path(get, path = "/v1/executions/{id}/jobs", tag = "actions", params(("id" = String, Path), JobQuery),
    responses((status = 200, body = Page<JobRecord>), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn execution_jobs(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<axum::Json<Page<JobRecord>>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let want = status_filter(&q)?;
    let after = match q.cursor.as_deref().map(jobs::key_of_id) {
        Some(Some((exec, key))) if exec == rec.id => key,
        Some(_) => return Err(ApiError::bad_field("cursor", "not a cursor of this list")),
        None => Vec::new(),
    };
    let n = limit(q.limit);
    let mut out = Vec::new();
    scan_execution(&s.store, rec.id, &after, want, n, &mut out)?;
    Ok(axum::Json(page(out, n)))
}

/// The org's jobs in job id order (by execution, then job key), optionally only those in one
/// status (e.g. `dead`: the dead-letter queue). Both read the org's status index, so a page
/// costs what it shows, not what the org has ever run.
#[utoipa::path(get, path = "/v1/jobs", tag = "actions", params(JobQuery),
    responses((status = 200, body = Page<JobRecord>), (status = 400, body = crate::error::Problem)))]
pub(crate) async fn org_jobs(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<axum::Json<Page<JobRecord>>> {
    who.require(Permission::Read)?;
    let want = status_filter(&q)?;
    let n = limit(q.limit);
    if q.cursor.as_deref().is_some_and(|c| jobs::key_of_id(c).is_none()) {
        return Err(ApiError::bad_field("cursor", "not a cursor"));
    }
    let org = who.org.to_string();
    Ok(axum::Json(match want {
        Some(status) => jobs_in_status(&s.store, &org, status, q.cursor.as_deref(), n)?,
        None => all_jobs(&s.store, &org, q.cursor.as_deref(), n)?,
    }))
}

/// One page of all the org's jobs: the first `n + 1` ids after the cursor in each status of
/// the index, merged. The page's jobs are among them whatever the statuses hold.
fn all_jobs(store: &Store, org: &str, cursor: Option<&str>, n: usize) -> ApiResult<Page<JobRecord>> {
    let mut ids = Vec::new();
    for status in JobStatus::ALL {
        let prefix = jobs::status_prefix(org, status);
        let after = cursor.map(|c| jobs::status_key(org, status, c)).unwrap_or_default();
        for (k, _) in store.scan(Table::Meta, &prefix, &after, n + 1)? {
            ids.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
    }
    // A job that changed status between two of the scans can be met twice.
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let Some((_, key)) = jobs::key_of_id(&id) else { continue };
        if let Some(job) = jobs::load(store, &key)? {
            out.push(job);
            if out.len() > n {
                break;
            }
        }
    }
    Ok(page(out, n))
}

/// One page of the org's jobs in `status`, from the status index (so the dead-letter queue
/// costs what it holds, not what the org has ever run).
fn jobs_in_status(
    store: &Store,
    org: &str,
    status: JobStatus,
    cursor: Option<&str>,
    n: usize,
) -> ApiResult<Page<JobRecord>> {
    let prefix = jobs::status_prefix(org, status);
    let mut after = cursor.map(|c| jobs::status_key(org, status, c)).unwrap_or_default();
    let mut out = Vec::new();
    while out.len() <= n {
        let batch = store.scan(Table::Meta, &prefix, &after, n + 1)?;
        for (k, _) in &batch {
            after.clone_from(k);
            let id = std::str::from_utf8(&k[prefix.len()..]).unwrap_or_default();
            let Some((_, key)) = jobs::key_of_id(id) else { continue };
            // The index moves with the record in one write; a record in another status would
            // be an index the write did not finish, so it is skipped, never shown.
            if let Some(job) = jobs::load(store, &key)?.filter(|j| j.status == status) {
                out.push(job);
            }
        }
        if batch.len() <= n {
            break;
        }
    }
    Ok(page(out, n))
}

/// A job of the caller's org by id (another org's answers 404).
fn load_job(s: &AppState, who: &Principal, id: &str) -> ApiResult<(Arc<ExecutionRecord>, JobRecord, Vec<u8>)> {
    let missing = || ApiError::not_found("job", id);
    let (exec, key) = jobs::key_of_id(id).ok_or_else(missing)?;
    let rec = s.records.get(&s.store, &who.org, exec)?.ok_or_else(missing)?;
    let job = jobs::load(&s.store, &key)?.ok_or_else(missing)?;
    Ok((rec, job, key))
}

/// A job with its attempts (each with its outcome, status, error and the seq of its
/// `action.attempted` entry) and its result. The id is `<executionId>/<jobKey>`; send the
/// `/` as `%2F`.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "actions", params(("id" = String, Path, description = "Job id, URL-encoded")),
    responses((status = 200, body = JobRecord), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_job(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<JobRecord>> {
    who.require(Permission::Read)?;
    Ok(axum::Json(load_job(&s, &who, &id)?.1))
}

/// Why an operator acts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RerunBody {
    /// Why (required): recorded on the ledger and in the audit log.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 2000, pattern = r"\S")]
    reason: Option<String>,
}

type Built = (Recording, Value);

/// Appends service entries through the execution's lane with an idempotency record in the
/// same write; `build` returns `None` when the state no longer allows it (409 `conflict`).
async fn record_once(
    s: &AppState,
    rec: &ExecutionRecord,
    idem: Option<Idempotency>,
    status: StatusCode,
    conflict: String,
    build: impl FnOnce(&Store, &ChainHead) -> Result<Option<Built>, ApiError> + Send + 'static,
) -> ApiResult<Response> {
    let (_guards, stored) = crate::idempotency::hold(s, idem.as_ref(), None).await?;
    if let Some(r) = stored {
        return Ok(r);
    }
    let slot: Arc<Mutex<Option<Value>>> = Arc::default();
    let out = slot.clone();
    s.lanes
        .record(
            rec,
            Box::new(move |store, head| {
                let Some((mut r, body)) = build(store, head)? else {
                    return Ok(None);
                };
                if let Some(i) = &idem {
                    r.ws = i.record(r.ws, status, &body, None)?;
                }
                *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
                Ok(Some(r))
            }),
        )
        .await?;
    let body = slot.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or_else(|| ApiError::conflict(conflict))?;
    Ok((status, axum::Json(body)).into_response())
}

fn kind(k: &str) -> Kind {
    #[allow(clippy::unwrap_used)] // INVARIANT: the kinds of `actions::kinds` are valid kind literals.
    Kind::new(k).unwrap()
}

fn body(v: &Value) -> Result<Body, ApiError> {
    Body::from_value(v).map_err(|e| ApiError::bad_field("/", e.to_string()))
}

/// Re-run a dead or failed job (operate): it gets a fresh budget of attempts, and its
/// attempts go on numbering from where they were. Writes `action.rerun` on the execution's
/// ledger and an audit record, atomically with the job's return to `pending`. 409 if the job
/// is not dead or failed.
#[utoipa::path(post, path = "/v1/jobs/{id}/rerun", tag = "actions", request_body = RerunBody,
    params(("id" = String, Path, description = "Job id, URL-encoded"), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 200, body = JobRecord), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn rerun_job(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    req: ApiJson<RerunBody>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    let (rec, job, key) = load_job(&s, &who, &id)?;
    let reason = super::controls::reason(req.value.reason)?;
    let idem = Idempotency::from_request(
        &headers,
        &who.org,
        &format!("rerun:{id}"),
        &format!("/v1/jobs/{id}/rerun"),
        &req.raw,
    )?;
    let conflict = format!("job {id} is {}: only a dead or failed job can be re-run", job.status.as_str());
    let actor = who.subject.clone();
    let org = who.org.clone();
    let out = record_once(&s, &rec, idem, StatusCode::OK, conflict, move |store, head| {
        let Some(mut job) = jobs::load(store, &key)? else {
            return Ok(None);
        };
        if !matches!(job.status, JobStatus::Dead | JobStatus::Failed) {
            return Ok(None);
        }
        let previous = job.status;
        let entry = json!({
            "jobId": job.id,
            "actionId": job.action_id,
            "actor": actor,
            "reason": reason,
            "previousStatus": previous.as_str(),
            "attempts": job.attempts,
        });
        job.status = JobStatus::Pending;
        job.run_start = job.attempts;
        job.result = None;
        job.result_seq = None;
        job.updated_at = pled_core::RecordedAt::now().as_str().to_owned();
        let ws = job.put(WriteSet::new(), Some(pled_core::RecordedAt::now().unix_micros()))?;
        let mut details = entry.clone();
        details["seq"] = json!(head.seq.get() + 1);
        let ws = audit::record(ws, &org, &actor, "job.rerun", &job.id, details)?;
        let answer = serde_json::to_value(&job).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Some((Recording { entries: vec![(kind(kinds::ACTION_RERUN), body(&entry)?)], ws, event: None }, answer)))
    })
    .await?;
    Ok(out)
}

/// Run an action now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunActionBody {
    /// An action type of the catalog.
    r#type: String,
    /// Its input (checked against the type).
    #[schema(value_type = Object)]
    input: Value,
    /// Why (required).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 2000, pattern = r"\S")]
    reason: Option<String>,
}

/// Run an action of any catalog type on demand for an execution (operate). Writes
/// `action.requested` (actor, reason, type, input, job key `ondemand.<seq>`) and creates the
/// job in the same write, with an audit record; the runner picks it up like any other.
#[utoipa::path(post, path = "/v1/executions/{id}/actions", tag = "actions", request_body = RunActionBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 201, body = JobRecord), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub(crate) async fn run_action(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    req: ApiJson<RunActionBody>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    let rec = load(&s, &who, &id)?;
    let RunActionBody { r#type, input, reason: why } = req.value;
    let reason = super::controls::reason(why)?;
    let ty = s.runner.registry().get(&r#type).ok_or_else(|| {
        ApiError::bad_field("/type", format!("unknown action type {type:?} (see GET /v1/catalog/actions)"))
    })?;
    ty.check(&input).map_err(|e| ApiError::Unprocessable {
        code: "validation_failed",
        detail: format!("invalid input for {type}: {e}"),
        errors: vec![],
    })?;
    body(&json!({ "input": input }))?;
    let idem = Idempotency::from_request(
        &headers,
        &who.org,
        &format!("actions:{id}"),
        &format!("/v1/executions/{id}/actions"),
        &req.raw,
    )?;
    let actor = who.subject.clone();
    let record = rec.clone();
    record_once(&s, &rec, idem, StatusCode::CREATED, "not recorded".into(), move |_, head| {
        let seq = head.seq.get() + 1;
        let job_key = format!("ondemand.{seq}");
        let entry = json!({ "actor": actor, "reason": reason, "type": r#type, "input": input, "jobKey": job_key });
        let mut job = jobs::new_job(&record, &job_key, "ondemand", &r#type, input.clone(), seq);
        let ws = job.put(WriteSet::new(), Some(pled_core::RecordedAt::now().unix_micros()))?;
        let mut details = entry.clone();
        details["seq"] = json!(seq);
        let ws = audit::record(ws, &record.org, &actor, "execution.action_requested", &record.id.to_string(), details)?;
        let answer = serde_json::to_value(&job).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Some((Recording { entries: vec![(kind(kinds::ACTION_REQUESTED), body(&entry)?)], ws, event: None }, answer)))
    })
    .await
}

/// A new signing secret: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SigningSecret {
    /// `whsec_…`: the HMAC-SHA256 key of `Pled-Signature` (see docs/api.md).
    secret: String,
    /// When it was created.
    created_at: String,
}

/// Create (or replace) the org's outbound webhook signing secret (admin). Webhooks sent from
/// now on are signed with it. Audited; the secret is shown only in this answer.
#[utoipa::path(post, path = "/v1/webhooks/signing-secret", tag = "actions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer (with the same secret)")),
    responses((status = 201, body = SigningSecret), (status = 403, body = crate::error::Problem)))]
pub(crate) async fn rotate_signing_secret(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who.require(Permission::Administer)?;
    let idem = Idempotency::from_request(&headers, &who.org, "signing-secret", "/v1/webhooks/signing-secret", b"")?;
    idempotency::create(&s, idem, || async {
        let (ws, rec) = signing::rotate_outbound(WriteSet::new(), &who.org, &who.subject)?;
        let ws = audit::by(ws, &who, "webhooks.signing_secret_rotated", "outbound", json!({}))?;
        let body = serde_json::to_value(SigningSecret { secret: rec.secret, created_at: rec.created_at })
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Created { status: StatusCode::CREATED, body, location: None, writes: ws })
    })
    .await
}
