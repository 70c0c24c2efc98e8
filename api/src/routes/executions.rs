//! Executions: start one from a published template version, post events (one or a batch),
//! read state, the ledger, events, messages and token balances, and wait for a state.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use pled_core::{ExecutionId, Kind, OrgId, RecordedAt, SealedEntry, Seq};
use pled_store::{Append, WriteSet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::apply;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::hub::Update;
use crate::idempotency::{self, Created, Idempotency};
use crate::lanes::{self, NewEvent};
use crate::repo::executions::{self as repo, ExecutionRecord, LiveState, Status};
use crate::repo::{Page, templates};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_execution, list_executions))
        .routes(routes!(get_execution))
        .routes(routes!(get_state))
        .routes(routes!(post_event))
        .routes(routes!(post_events_batch))
        .routes(routes!(get_ledger))
        .routes(routes!(list_events))
        .routes(routes!(list_messages))
        .routes(routes!(get_tokens))
        .routes(routes!(wait))
}

/// Loads an execution of the caller's org; another org's answers 404 exactly like a missing one.
pub(crate) fn load(s: &AppState, who: &Principal, id: &str) -> ApiResult<Arc<ExecutionRecord>> {
    let parsed: ExecutionId = id.parse().map_err(|_| ApiError::not_found("execution", id))?;
    tracing::Span::current().record("execution_id", id);
    s.records.get(&s.store, &who.org, parsed)?.ok_or_else(|| ApiError::not_found("execution", id))
}

fn live(s: &AppState, rec: &ExecutionRecord) -> ApiResult<(pled_core::ChainHead, LiveState)> {
    repo::live(&s.store, rec.id)?.ok_or_else(|| ApiError::Internal(format!("execution {} has no ledger", rec.id)))
}

/// Start an execution.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NewExecution {
    /// The template.
    pub(crate) template_id: String,
    /// A published version (default: the latest).
    pub(crate) version: Option<u32>,
    /// Name (1-200 characters).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub(crate) name: String,
    /// Description.
    pub(crate) description: Option<String>,
    /// Initial variable values (default: the template's defaults).
    #[schema(value_type = Option<Object>)]
    pub(crate) variables: Option<Value>,
}

/// An execution: its record, status and where its chain is.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecutionView {
    #[serde(flatten)]
    record: ExecutionRecord,
    /// Lifecycle status.
    status: Status,
    /// Current state id.
    state: String,
    /// Last ledger seq.
    head_seq: u64,
    /// Last ledger entry hash.
    head_hash: String,
}

fn exec_view(record: ExecutionRecord, head: &pled_core::ChainHead, live: &LiveState) -> ExecutionView {
    ExecutionView {
        record,
        status: live.status,
        state: live.exec.state.clone(),
        head_seq: head.seq.get(),
        head_hash: head.hash.to_hex(),
    }
}

/// Start an execution of a published template version. Its ledger begins with an
/// `execution.created` entry naming the org, template, version and template hash.
#[utoipa::path(post, path = "/v1/executions", tag = "executions", request_body = NewExecution,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 201, body = ExecutionView), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub(crate) async fn create_execution(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    body: ApiJson<NewExecution>,
) -> ApiResult<Response> {
    who.require(Permission::Run)?;
    let idem = Idempotency::from_request(&headers, &who.org, "executions", "/v1/executions", &body.raw)?;
    let req = body.value;
    ApiError::check_text("/name", &req.name, 200)?;
    idempotency::create(&s, idem, || async { start_execution(&s, &who.org, &who.subject, &req) }).await.inspect(|_| {
        // The start may have queued onEnter actions and armed timers.
        s.lanes.jobs_wake().notify_one();
        s.lanes.timers_wake().notify_one();
    })
}

/// Starts an execution of `org` (a published version of a template): the writes of its
/// first entries, record, jobs and timers, and the answer. Nothing is written here.
pub(crate) fn start_execution(s: &AppState, org: &OrgId, created_by: &str, req: &NewExecution) -> ApiResult<Created> {
    let tpl = templates::get(&s.store, org, &req.template_id)?
        .ok_or_else(|| ApiError::not_found("template", &req.template_id))?;
    let version = match req.version {
        Some(v) => tpl
            .versions
            .iter()
            .find(|x| x.version == v)
            .ok_or_else(|| ApiError::not_found("template version", format!("{}/{v}", tpl.id)))?,
        None => tpl.versions.last().ok_or_else(|| ApiError::Unprocessable {
            code: "not_published",
            detail: format!(
                "template {} has no published version; publish one first (POST /v1/templates/{}/versions)",
                tpl.id, tpl.id
            ),
            errors: vec![],
        })?,
    };
    let machine = s.lanes.machine(org, &tpl.id, version.version)?;
    let id = ExecutionId::new_v7();
    let now = RecordedAt::now();
    let outcome = machine
        .initial_state(req.variables.as_ref(), now.as_str())
        .map_err(|e| ApiError::bad_field("/variables", e.to_string()))?;
    let record = ExecutionRecord {
        id,
        org: org.clone(),
        template_id: tpl.id.clone(),
        version: version.version,
        template_hash: version.template_hash.clone(),
        name: req.name.clone(),
        description: req.description.clone(),
        created_at: now.clone(),
        created_by: created_by.to_owned(),
    };
    let created_body = pled_core::Body::from_value(&json!({
        "org": org,
        "templateId": tpl.id,
        "version": version.version,
        "templateHash": version.template_hash,
        "name": req.name,
        "description": req.description,
        "createdBy": created_by,
        "variables": outcome.state.vars,
    }))
    .map_err(|e| ApiError::bad_field("/variables", e.to_string()))?;
    let mut head = pled_core::ChainHead::genesis(id);
    #[allow(clippy::unwrap_used)] // INVARIANT: a valid kind literal.
    let mut entries = vec![apply::seal_one(&mut head, Kind::new("execution.created").unwrap(), &now, created_body)];
    let sealed = apply::seal(&mut head, outcome.drafts, &now);
    let live = LiveState::started(outcome.state);
    let ws = lanes::enqueue_jobs(WriteSet::new(), &record, &outcome.actions, &sealed)?;
    entries.extend(sealed);
    let ws =
        ws.append(Append::new(entries).map_err(|e| ApiError::Internal(e.to_string()))?.with_state(live.to_bytes()));
    let ws = repo::put(ws, &record)?;
    let ws = templates::mark_used(ws, org, &tpl.id, &id.to_string())?;
    let (ws, _) = crate::timers::reindex(ws, org, id, None, &live);
    let view = exec_view(record, &head, &live);
    Ok(Created {
        status: StatusCode::CREATED,
        body: serde_json::to_value(&view).map_err(|e| ApiError::Internal(e.to_string()))?,
        location: Some(format!("/v1/executions/{id}")),
        writes: ws,
    })
}

/// Filters and pagination of the execution list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct ExecutionQuery {
    /// Only executions of this template.
    template_id: Option<String>,
    /// Only executions in this status.
    status: Option<Status>,
    /// Items per page (1-500, default 50).
    limit: Option<usize>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The org's executions, oldest first, filtered by template and status.
#[utoipa::path(get, path = "/v1/executions", tag = "executions", params(ExecutionQuery),
    responses((status = 200, body = Page<ExecutionView>)))]
pub(crate) async fn list_executions(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ExecutionQuery>,
) -> ApiResult<axum::Json<Page<ExecutionView>>> {
    who.require(Permission::Read)?;
    let limit = q.limit.unwrap_or(crate::repo::DEFAULT_PAGE).clamp(1, crate::repo::MAX_PAGE);
    let mut items = Vec::new();
    let mut cursor = q.cursor.clone();
    // Scan in id order, filtering; stop once the page is full (and one more proves a next page).
    loop {
        let batch = repo::scan(&s.store, &who.org, cursor.as_deref(), 256)?;
        let exhausted = batch.len() < 256;
        for rec in batch {
            cursor = Some(rec.id.to_string());
            if q.template_id.as_deref().is_some_and(|t| t != rec.template_id) {
                continue;
            }
            let (head, live) = live(&s, &rec)?;
            if q.status.is_some_and(|st| st != live.status) {
                continue;
            }
            if items.len() == limit {
                let next = items.last().map(|v: &ExecutionView| v.record.id.to_string());
                return Ok(axum::Json(Page { items, next_cursor: next }));
            }
            items.push(exec_view(rec, &head, &live));
        }
        if exhausted {
            return Ok(axum::Json(Page { items, next_cursor: None }));
        }
    }
}

/// One execution.
#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions", params(("id" = String, Path)),
    responses((status = 200, body = ExecutionView), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_execution(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<ExecutionView>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let (head, live) = live(&s, &rec)?;
    Ok(axum::Json(exec_view(Arc::unwrap_or_clone(rec), &head, &live)))
}

/// The current state of an execution.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StateView {
    /// The execution.
    execution_id: String,
    /// Lifecycle status.
    status: Status,
    /// Engine state: `state`, `vars`, `balances`, `completed`, `eventCount`, `timers`.
    #[schema(value_type = Object)]
    #[serde(flatten)]
    exec: pled_engine::ExecState,
    /// Last ledger seq.
    head_seq: u64,
    /// Last ledger entry hash.
    head_hash: String,
}

/// Current state, variables, token balances, timers, and the head of the ledger.
#[utoipa::path(get, path = "/v1/executions/{id}/state", tag = "executions", params(("id" = String, Path)),
    responses((status = 200, body = StateView), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_state(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<StateView>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let (head, live) = live(&s, &rec)?;
    Ok(axum::Json(StateView {
        execution_id: rec.id.to_string(),
        status: live.status,
        exec: live.exec,
        head_seq: head.seq.get(),
        head_hash: head.hash.to_hex(),
    }))
}

/// One event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct EventBody {
    /// Event type (matched by rules' `on`).
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    kind: String,
    /// Payload: a JSON object. Integers beyond ±(2^53-1) are refused: send them as strings.
    #[schema(value_type = Object)]
    payload: Value,
    /// Who sends it.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    source: String,
    /// When it happened, as the sender says (any string; recorded as given).
    occurred_at: Option<String>,
}

fn to_new_event(e: EventBody, at: &str) -> ApiResult<NewEvent> {
    ApiError::check_text(&format!("{at}/type"), &e.kind, 200)?;
    ApiError::check_text(&format!("{at}/source"), &e.source, 200)?;
    pled_core::Body::check(&e.payload).map_err(|err| ApiError::bad_field(format!("{at}/payload"), err.to_string()))?;
    Ok(NewEvent { kind: e.kind, payload: e.payload, source: e.source, occurred_at: e.occurred_at })
}

pub(crate) fn answer(a: lanes::Answer) -> Response {
    idempotency::json_answer(a.status, &a.body, a.replayed)
}

/// Post an event. It gets the execution's next event seq; rules derive messages; the state
/// machine steps; everything is appended in one atomic, synced write before the answer,
/// which lists the entries (seq, kind, hash) and the new state.
#[utoipa::path(post, path = "/v1/executions/{id}/events", tag = "executions", request_body = EventBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 201, description = "Applied", body = Object), (status = 400, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub(crate) async fn post_event(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<EventBody>,
) -> ApiResult<Response> {
    who.require(Permission::Run)?;
    let rec = load(&s, &who, &id)?;
    let idem = Idempotency::from_request(
        &headers,
        &who.org,
        &format!("events:{id}"),
        &format!("/v1/executions/{id}/events"),
        &body.raw,
    )?;
    let event = to_new_event(body.value, "")?;
    Ok(answer(s.lanes.ingest(&rec, vec![event], false, idem).await?))
}

/// Several events for one execution.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventBatch {
    /// The events, applied in order, all or none (1-1000).
    #[schema(min_items = 1, max_items = 1000)]
    #[serde(deserialize_with = "pled_core::de::objects")]
    events: Vec<EventBody>,
}

/// Post up to 1,000 events in one request: applied in order, written in one atomic write
/// (all or none).
#[utoipa::path(post, path = "/v1/executions/{id}/events/batch", tag = "executions", request_body = EventBatch,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 201, description = "Applied", body = Object), (status = 400, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn post_events_batch(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<EventBatch>,
) -> ApiResult<Response> {
    who.require(Permission::Run)?;
    let rec = load(&s, &who, &id)?;
    let idem = Idempotency::from_request(
        &headers,
        &who.org,
        &format!("events:{id}"),
        &format!("/v1/executions/{id}/events/batch"),
        &body.raw,
    )?;
    let n = body.value.events.len();
    if !(1..=1000).contains(&n) {
        return Err(ApiError::bad_field("/events", format!("must hold 1-1000 events, got {n}")));
    }
    let events = body
        .value
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| to_new_event(e, &format!("/events/{i}")))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(answer(s.lanes.ingest(&rec, events, true, idem).await?))
}

/// A ledger page request.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct SeqQuery {
    /// Return items after this seq (default 0: from the start).
    after_seq: Option<u64>,
    /// At most this many (1-1000, default 100).
    limit: Option<usize>,
}

impl SeqQuery {
    pub(crate) fn after(&self) -> u64 {
        self.after_seq.unwrap_or(0)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }

    /// A page's `nextAfterSeq`: its last seq when it is full (more may follow).
    pub(crate) fn next_after(&self, len: usize, last: Option<u64>) -> Option<u64> {
        (len == self.limit()).then_some(last).flatten()
    }
}

/// A page of ledger entries in export form (docs/ledger-format.md).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LedgerPage {
    /// Entries: the hashed entry object plus `entry_hash`.
    #[schema(value_type = Vec<Object>)]
    entries: Vec<SealedEntry>,
    /// Pass as `afterSeq` for the next page; absent at the head.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after_seq: Option<u64>,
}

/// Ledger entries, in the export form an auditor re-hashes (docs/ledger-format.md).
#[utoipa::path(get, path = "/v1/executions/{id}/ledger", tag = "ledger", params(("id" = String, Path), SeqQuery),
    responses((status = 200, body = LedgerPage), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_ledger(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeqQuery>,
) -> ApiResult<axum::Json<LedgerPage>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let entries = s.store.entries(rec.id, Seq::new(q.after()), q.limit())?;
    let next_after_seq = q.next_after(entries.len(), entries.last().map(|e| e.seq().get()));
    Ok(axum::Json(LedgerPage { entries, next_after_seq }))
}

/// Entries of some kinds, with their seq: events or messages.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KindPage {
    /// The entries' bodies, each with its ledger `seq` and `kind`.
    #[schema(value_type = Vec<Object>)]
    items: Vec<Value>,
    /// Pass as `afterSeq` to continue; absent at the head.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after_seq: Option<u64>,
}

/// Reads up to `limit` entries of the given kinds after `after`, scanning at most a bounded
/// number of entries per request (the cursor then points past what was scanned).
fn by_kind(s: &AppState, id: ExecutionId, kinds: &[&str], q: &SeqQuery) -> ApiResult<KindPage> {
    const SCAN: usize = 5_000;
    let limit = q.limit();
    let mut items = Vec::new();
    let mut last = q.after();
    let mut scanned = 0;
    for e in s.store.iter_entries(id, Seq::new(last).next()) {
        let e = e?;
        scanned += 1;
        last = e.seq().get();
        if kinds.contains(&e.entry().kind.as_str()) {
            let mut body = e.entry().body.to_value().map_err(|err| ApiError::Internal(err.to_string()))?;
            if let Some(o) = body.as_object_mut() {
                o.insert("seq".into(), json!(last));
                o.insert("kind".into(), json!(e.entry().kind));
            }
            items.push(body);
            if items.len() == limit {
                break;
            }
        }
        if scanned == SCAN {
            break;
        }
    }
    let at_head = s.store.chain_head(id)?.seq.get() <= last;
    Ok(KindPage { items, next_after_seq: (!at_head).then_some(last) })
}

/// The execution's events (`event.received` entries), oldest first.
#[utoipa::path(get, path = "/v1/executions/{id}/events", tag = "executions", params(("id" = String, Path), SeqQuery),
    responses((status = 200, body = KindPage), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn list_events(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeqQuery>,
) -> ApiResult<axum::Json<KindPage>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    Ok(axum::Json(by_kind(&s, rec.id, &["event.received"], &q)?))
}

/// Messages derived from events (`message.derived`, and `rule.failed` for rules that erred).
#[utoipa::path(get, path = "/v1/executions/{id}/messages", tag = "executions", params(("id" = String, Path), SeqQuery),
    responses((status = 200, body = KindPage), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn list_messages(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeqQuery>,
) -> ApiResult<axum::Json<KindPage>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    Ok(axum::Json(by_kind(&s, rec.id, &["message.derived", "rule.failed"], &q)?))
}

/// Token balances and movements.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokensView {
    /// token type -> account -> amount (decimal string).
    #[schema(value_type = Object)]
    balances: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// `token.minted`, `token.transferred` and `token.consumed` entries, oldest first.
    #[schema(value_type = Vec<Object>)]
    movements: Vec<Value>,
    /// Pass as `afterSeq` to continue listing movements.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after_seq: Option<u64>,
}

/// Token balances (off-chain accounting) and the movements that made them.
#[utoipa::path(get, path = "/v1/executions/{id}/tokens", tag = "executions", params(("id" = String, Path), SeqQuery),
    responses((status = 200, body = TokensView), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_tokens(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SeqQuery>,
) -> ApiResult<axum::Json<TokensView>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    let (_, live) = live(&s, &rec)?;
    let page = by_kind(&s, rec.id, &["token.minted", "token.transferred", "token.consumed"], &q)?;
    Ok(axum::Json(TokensView {
        balances: live.exec.balances,
        movements: page.items,
        next_after_seq: page.next_after_seq,
    }))
}

/// What to wait for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitQuery {
    /// Until the execution is in this state, one of its template version's (another is a 400).
    state: Option<String>,
    /// Until the execution has this status.
    status: Option<Status>,
    /// Until the ledger head reaches this seq.
    seq: Option<u64>,
    /// Give up after this many milliseconds: default 30,000, at most 120,000, and at most
    /// the server's request time-out less 0.5 s (so 29,500 with the default time-out).
    timeout_ms: Option<u64>,
}

/// The result of a wait.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WaitResult {
    /// Whether the condition holds (false after a time-out).
    reached: bool,
    /// The state when the wait ended.
    state: StateView,
}

/// Long-poll until the execution reaches a state, a status or a ledger seq (all given
/// conditions must hold), or the time-out passes (`reached: false`; call again). Answers at
/// once when it already holds, and 503 when the server shuts down meanwhile.
#[utoipa::path(get, path = "/v1/executions/{id}/wait", tag = "executions", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = WaitResult), (status = 404, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)))]
pub(crate) async fn wait(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<axum::Json<WaitResult>> {
    who.require(Permission::Read)?;
    let rec = load(&s, &who, &id)?;
    if q.state.is_none() && q.status.is_none() && q.seq.is_none() {
        return Err(ApiError::bad_field("query", "give at least one of state, status, seq"));
    }
    // A state the execution's machine does not have is never reached: say so now, rather than
    // let a typo wait out every time-out.
    if let Some(st) = q.state.as_deref() {
        let machine = s.lanes.machine(&rec.org, &rec.template_id, rec.version)?;
        if !machine.has_state(st) {
            let states = machine.state_ids().collect::<Vec<_>>().join(", ");
            return Err(ApiError::bad_field(
                "state",
                format!(
                    "template {} version {} has no state {st:?} (its states: {states})",
                    rec.template_id, rec.version
                ),
            ));
        }
    }
    let holds = |head: &pled_core::ChainHead, live: &LiveState| {
        q.state.as_deref().is_none_or(|st| live.exec.state == st)
            && q.status.is_none_or(|st| live.status == st)
            && q.seq.is_none_or(|n| head.seq.get() >= n)
    };
    let wait = Duration::from_millis(q.timeout_ms.unwrap_or(30_000).min(120_000)).min(super::answer_within(&s.config));
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribe before reading, so a change between the read and the wait is not missed.
    let mut rx = s.hub.subscribe(rec.id);
    let view = |head: pled_core::ChainHead, live: LiveState| StateView {
        execution_id: rec.id.to_string(),
        status: live.status,
        exec: live.exec,
        head_seq: head.seq.get(),
        head_hash: head.hash.to_hex(),
    };
    let (mut head, mut current) = live(&s, &rec)?;
    loop {
        if holds(&head, &current) {
            return Ok(axum::Json(WaitResult { reached: true, state: view(head, current) }));
        }
        match s.hub.unless_closing(tokio::time::timeout_at(deadline, rx.recv())).await? {
            Err(_) => {
                return Ok(axum::Json(WaitResult { reached: false, state: view(head, current) }));
            }
            Ok(Ok(Update::State(change))) => {
                head.seq = Seq::new(change.head_seq);
                head.hash = change.head_hash.parse().unwrap_or(head.hash);
                current = change.live.clone();
            }
            Ok(Ok(Update::Entries(_))) => {}
            // Lagged or closed: re-read the truth.
            Ok(Err(_)) => {
                (head, current) = live(&s, &rec)?;
                rx = s.hub.subscribe(rec.id);
            }
        }
    }
}
