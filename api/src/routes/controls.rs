//! Operator controls: pause, resume, cancel, complete, force a transition, force an action.
//!
//! Each needs a `reason`, is restricted by role (operate; forcing a transition: administer),
//! goes through the execution's lane (ordered with its events, atomic), and is recorded on
//! the ledger as an `admin.*` entry naming the actor and the reason, with an audit record in
//! the same write. Every one honours `Idempotency-Key`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use pled_engine::ForceTarget;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::{answer, load};
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::idempotency::Idempotency;
use crate::lanes::{ControlInput, ControlRequest};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
        .routes(routes!(complete))
        .routes(routes!(force_transition))
        .routes(routes!(force_action))
}

/// The longest reason accepted.
const MAX_REASON: usize = 2_000;

/// Why an operator acts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    /// Why (required, 1-2000 characters): recorded on the ledger and in the audit log.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 2000, pattern = r"\S")]
    reason: Option<String>,
}

/// Resume a paused execution.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResumeBody {
    /// Why (required).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 2000, pattern = r"\S")]
    reason: Option<String>,
    /// Approval data (any JSON), recorded on the ledger as given.
    approval: Option<Value>,
}

/// Force a transition, or a move to a state.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ForceTransitionBody {
    /// A transition leaving the current state (its guard is not evaluated).
    transition_id: Option<String>,
    /// Or a state to move to (onExit/onEnter actions and timers; no assignment, no tokens).
    to_state: Option<String>,
    /// `msg.data` for the transition's expressions (default `{}`).
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
    /// Why (required).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 2000, pattern = r"\S")]
    reason: Option<String>,
}

/// Schedule an action now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ForceActionBody {
    /// A template action.
    action_id: String,
    /// Literal input replacing the template's (any JSON; default: the template's, evaluated now).
    input: Option<Value>,
    /// Why (required).
    #[schema(value_type = String, required = true, min_length = 1, max_length = 2000, pattern = r"\S")]
    reason: Option<String>,
}

/// An operator's reason: required, and bounded like every text field.
pub(crate) fn reason(r: Option<String>) -> ApiResult<String> {
    match r {
        Some(r) if !r.trim().is_empty() => ApiError::check_text("/reason", &r, MAX_REASON).map(|()| r),
        _ => Err(ApiError::bad_field("/reason", "a reason is required: say why (it is recorded on the ledger)")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    s: AppState,
    who: Principal,
    headers: &HeaderMap,
    id: &str,
    op: &str,
    raw: &[u8],
    reason_text: Option<String>,
    control: ControlInput,
) -> ApiResult<Response> {
    let rec = load(&s, &who, id)?;
    let reason = reason(reason_text)?;
    let idem =
        Idempotency::from_request(headers, &who.org, &format!("{op}:{id}"), &format!("/v1/executions/{id}/{op}"), raw)?;
    let request = ControlRequest { actor: who.subject.clone(), reason, control };
    Ok(answer(s.lanes.control(&rec, request, idem).await?))
}

/// Pause an execution: later events are accepted (201, `queued: true`) and recorded as
/// `event.queued`, not applied, until it is resumed. Writes `admin.paused`.
#[utoipa::path(post, path = "/v1/executions/{id}/pause", tag = "executions", request_body = ReasonBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 200, description = "Paused", body = Object), (status = 400, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn pause(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<ReasonBody>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    run(s, who, &headers, &id, "pause", &body.raw, body.value.reason, ControlInput::Pause).await
}

/// Resume a paused execution: writes `admin.resumed` (with the optional approval), then
/// applies every queued event in order, in the same write.
#[utoipa::path(post, path = "/v1/executions/{id}/resume", tag = "executions", request_body = ResumeBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 200, description = "Resumed; `applied` lists the queued events", body = Object), (status = 400, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn resume(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<ResumeBody>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    let ResumeBody { reason, approval } = body.value;
    run(s, who, &headers, &id, "resume", &body.raw, reason, ControlInput::Resume { approval }).await
}

/// Cancel an execution for good (queued events are dropped). Writes `admin.cancelled`.
#[utoipa::path(post, path = "/v1/executions/{id}/cancel", tag = "executions", request_body = ReasonBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 200, description = "Cancelled", body = Object), (status = 400, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn cancel(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<ReasonBody>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    run(s, who, &headers, &id, "cancel", &body.raw, body.value.reason, ControlInput::Cancel).await
}

/// Mark an execution completed without entering a final state (queued events are dropped).
/// Writes `admin.completed`.
#[utoipa::path(post, path = "/v1/executions/{id}/complete", tag = "executions", request_body = ReasonBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 200, description = "Completed", body = Object), (status = 400, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn complete(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<ReasonBody>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    run(s, who, &headers, &id, "complete", &body.raw, body.value.reason, ControlInput::Complete).await
}

/// Force a transition (guard not evaluated; assignments, tokens, actions and timers apply as
/// usual) or a move to a state (admin). Writes `admin.transition_forced`, then the engine's
/// `transition.forced` and what follows it. 422 `force_refused` if it cannot apply (nothing
/// is written).
#[utoipa::path(post, path = "/v1/executions/{id}/force-transition", tag = "executions", request_body = ForceTransitionBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 200, description = "Forced", body = Object), (status = 400, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub(crate) async fn force_transition(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<ForceTransitionBody>,
) -> ApiResult<Response> {
    who.require(Permission::Administer)?;
    let ForceTransitionBody { transition_id, to_state, data, reason } = body.value;
    let target = match (transition_id, to_state) {
        (Some(t), None) => ForceTarget::Transition(t),
        (None, Some(st)) => ForceTarget::State(st),
        _ => return Err(ApiError::bad_field("/", "give exactly one of transitionId and toState")),
    };
    let data = data.unwrap_or_else(|| json!({}));
    if !data.is_object() {
        return Err(ApiError::bad_field("/data", "must be a JSON object"));
    }
    pled_core::Body::from_value(&data).map_err(|e| ApiError::bad_field("/data", e.to_string()))?;
    let control = ControlInput::ForceTransition { target, data };
    run(s, who, &headers, &id, "force-transition", &body.raw, reason, control).await
}

/// Schedule a template action now, outside any transition (its job is created like any
/// other). Writes `admin.action_forced`, then `action.scheduled`.
#[utoipa::path(post, path = "/v1/executions/{id}/force-action", tag = "executions", request_body = ForceActionBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 200, description = "Scheduled", body = Object), (status = 400, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub(crate) async fn force_action(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<ForceActionBody>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    let ForceActionBody { action_id, input, reason } = body.value;
    if let Some(i) = &input {
        pled_core::Body::from_value(&json!({ "input": i }))
            .map_err(|e| ApiError::bad_field("/input", e.to_string()))?;
    }
    let control = ControlInput::ForceAction { action_id, input };
    run(s, who, &headers, &id, "force-action", &body.raw, reason, control).await
}
