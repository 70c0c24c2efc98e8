//! Schedules: create, list, read, delete (see [`crate::schedules`] for how they run).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use pled_core::ExecutionId;
use pled_store::WriteSet;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageQuery;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::idempotency::{self, Created, Idempotency};
use crate::repo::{Page, audit, templates};
use crate::schedules::{self, Schedule, Target};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_schedule, list_schedules)).routes(routes!(get_schedule, delete_schedule))
}

/// A new schedule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSchedule {
    /// Cron pattern, UTC: 5 fields (minute hour day-of-month month day-of-week) or 6
    /// (seconds first).
    cron: String,
    /// What each run does.
    #[serde(deserialize_with = "pled_core::de::object")]
    target: Target,
}

/// Create a schedule (operate; audited). Its first run is the pattern's first occurrence
/// after now. Missed occurrences (downtime) collapse into one run when the service is back.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = NewSchedule,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 201, body = Schedule), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)))]
pub(crate) async fn create_schedule(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    body: ApiJson<NewSchedule>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    let idem = Idempotency::from_request(&headers, &who.org, "schedules", "/v1/schedules", &body.raw)?;
    let NewSchedule { cron, target } = body.value;
    match &target {
        Target::StartExecution { template_id, name, variables, .. } => {
            templates::get(&s.store, &who.org, template_id)?
                .ok_or_else(|| ApiError::not_found("template", template_id))?;
            ApiError::check_text("/target/name", name, 200)?;
            if let Some(v) = variables {
                pled_core::Body::from_value(v).map_err(|e| ApiError::bad_field("/target/variables", e.to_string()))?;
            }
        }
        Target::PostEvent { execution_id, event_type, payload } => {
            let id: ExecutionId = execution_id.parse().map_err(|_| ApiError::not_found("execution", execution_id))?;
            s.records.get(&s.store, &who.org, id)?.ok_or_else(|| ApiError::not_found("execution", execution_id))?;
            ApiError::check_text("/target/type", event_type, 200)?;
            if let Some(p) = payload {
                if !p.is_object() {
                    return Err(ApiError::bad_field("/target/payload", "must be a JSON object"));
                }
                pled_core::Body::from_value(p).map_err(|e| ApiError::bad_field("/target/payload", e.to_string()))?;
            }
        }
    }
    let sched = Schedule::new(&who.org, cron, target, &who.subject).map_err(|e| ApiError::bad_field("/cron", e))?;
    idempotency::create(&s, idem, || async {
        let ws = sched.put(WriteSet::new(), None)?;
        let ws =
            audit::by(ws, &who, "schedule.created", &sched.id, json!({ "cron": sched.cron, "target": sched.target }))?;
        Ok(Created {
            status: StatusCode::CREATED,
            body: serde_json::to_value(&sched).map_err(|e| ApiError::Internal(e.to_string()))?,
            location: Some(format!("/v1/schedules/{}", sched.id)),
            writes: ws,
        })
    })
    .await
}

/// The org's schedules, oldest first.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", params(PageQuery), responses((status = 200, body = Page<Schedule>)))]
pub(crate) async fn list_schedules(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<axum::Json<Page<Schedule>>> {
    who.require(Permission::Read)?;
    Ok(axum::Json(schedules::list(&s.store, &who.org, q.cursor.as_deref(), q.limit)?))
}

/// A schedule, with its next run, run count, missed runs and last result.
#[utoipa::path(get, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path)),
    responses((status = 200, body = Schedule), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_schedule(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<Schedule>> {
    who.require(Permission::Read)?;
    Ok(axum::Json(schedules::get(&s.store, &who.org, &id)?.ok_or_else(|| ApiError::not_found("schedule", &id))?))
}

/// Delete a schedule (operate; audited): no further runs.
#[utoipa::path(delete, path = "/v1/schedules/{id}", tag = "schedules", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn delete_schedule(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    who.require(Permission::Operate)?;
    let _guard = s.locks.lock(&format!("sched/{}/{id}", who.org)).await;
    let sched = schedules::get(&s.store, &who.org, &id)?.ok_or_else(|| ApiError::not_found("schedule", &id))?;
    let ws = audit::by(sched.delete(WriteSet::new()), &who, "schedule.deleted", &id, json!({ "cron": sched.cron }))?;
    s.store.write(ws).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
