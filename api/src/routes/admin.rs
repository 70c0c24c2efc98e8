//! Access tokens and the audit log (admin only).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Permission, Principal, Role};
use crate::config::parse_duration;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::idempotency::{self, Created, Idempotency};
use crate::repo::Page;
use crate::repo::audit::{self, AuditRecord};
use crate::repo::tokens::{self, TokenRecord};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(list_audit))
}

/// A new access token for the caller's org.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct NewToken {
    /// Its role.
    role: Role,
    /// What it is for (shown in listings; 1-200 characters).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
    /// How long it works: `90d`, `12h`, `30m`, `45s`. Without it, the server's
    /// `--token-max-lifetime` if set, else until revoked; longer than that limit is refused.
    #[schema(pattern = r"^[0-9]+(ms|s|m|h|d)?$", example = "90d")]
    expires_in: Option<String>,
}

/// An issued token: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IssuedToken {
    /// The bearer token. Store it now: PLED keeps only its hash.
    token: String,
    /// The stored record.
    record: TokenRecord,
}

/// Issue an access token in the caller's org (admin).
#[utoipa::path(post, path = "/v1/tokens", tag = "admin", request_body = NewToken,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 201, body = IssuedToken), (status = 403, body = crate::error::Problem),
        (status = 422, description = "`expiresIn` is longer than the server's `--token-max-lifetime`", body = crate::error::Problem)))]
pub(crate) async fn create_token(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    body: ApiJson<NewToken>,
) -> ApiResult<Response> {
    who.require(Permission::Administer)?;
    let req = body.value;
    ApiError::check_text("/name", &req.name, 200)?;
    let max = *s.token_max_lifetime.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let lifetime = lifetime(req.expires_in.as_deref(), max)?;
    let idem = Idempotency::from_request(&headers, &who.org, "tokens", "/v1/tokens", &body.raw)?;
    idempotency::create(&s, idem, || async {
        let (token, record, ws) =
            tokens::issue(&who.org, req.role, &req.name, &who.subject, lifetime, pled_store::WriteSet::new())?;
        let detail = serde_json::json!({ "role": req.role, "name": req.name, "expiresAt": record.expires_at });
        let ws = audit::by(ws, &who, "token.issued", &record.id, detail)?;
        let location = format!("/v1/tokens/{}", record.id);
        let body = serde_json::to_value(IssuedToken { token, record: record.public() })
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Created { status: StatusCode::CREATED, body, location: Some(location), writes: ws })
    })
    .await
}

/// A new token's lifetime: `expiresIn` within the server's limit, or the limit, or none.
fn lifetime(expires_in: Option<&str>, max: Option<Duration>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = expires_in else { return Ok(max) };
    let asked = parse_duration(text).map_err(|e| ApiError::bad_field("/expiresIn", e))?;
    match max {
        Some(max) if asked > max => Err(ApiError::Unprocessable {
            code: "validation_failed",
            detail: format!(
                "/expiresIn: {text} is longer than this server's token lifetime limit ({}s)",
                max.as_secs()
            ),
            errors: vec![FieldError { path: "/expiresIn".into(), message: "longer than --token-max-lifetime".into() }],
        }),
        _ => Ok(Some(asked)),
    }
}

/// The org's access tokens (never their secrets).
#[utoipa::path(get, path = "/v1/tokens", tag = "admin", responses((status = 200, body = Vec<TokenRecord>)))]
pub(crate) async fn list_tokens(State(s): State<AppState>, who: Principal) -> ApiResult<axum::Json<Vec<TokenRecord>>> {
    who.require(Permission::Administer)?;
    let mut records = tokens::list(&s.store, &who.org)?;
    s.tokens.with_recent_uses(&mut records);
    Ok(axum::Json(records))
}

/// Revoke an access token; it stops working at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "admin", params(("id" = String, Path, description = "Token id")),
    responses((status = 200, body = TokenRecord), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn revoke_token(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<TokenRecord>> {
    who.require(Permission::Administer)?;
    let _guard = s.locks.lock(&format!("pat/{id}")).await;
    let record = tokens::get(&s.store, &who.org, &id)?.ok_or_else(|| ApiError::not_found("token", &id))?;
    let mut record = if record.revoked_at.is_some() {
        record.public()
    } else {
        let (record, ws) = tokens::revoke(record, pled_store::WriteSet::new())?;
        let ws = audit::by(ws, &who, "token.revoked", &id, serde_json::json!({}))?;
        s.store.write(ws).await?;
        s.tokens.forget_all();
        record
    };
    record.last_used_at = tokens::last_use(&s.store, &id)?;
    s.tokens.with_recent_uses(std::slice::from_mut(&mut record));
    Ok(axum::Json(record))
}

/// Which audit records to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Items per page (1-500, default 50).
    limit: Option<usize>,
    /// `nextCursor` of the previous page (with the same filters).
    cursor: Option<String>,
    /// This action only (`token.issued`, `template.published`, …).
    action: Option<String>,
    /// This actor only (`pat:<token id>`, `jwt:<sub>`, `cli`).
    actor: Option<String>,
    /// On this target only (a template id, a token id, …).
    target: Option<String>,
    /// At or after this instant (RFC 3339, e.g. `2026-11-01T00:00:00Z`).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Before this instant (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
}

/// An RFC 3339 query parameter as Unix µs.
fn instant(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map_err(|e| ApiError::bad_field(name, format!("{v:?} is not an RFC 3339 time ({e})")))?;
            i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| ApiError::bad_field(name, "out of range"))
        })
        .transpose()
}

/// The org's audit log, oldest first, filtered by action, actor, target and time.
#[utoipa::path(get, path = "/v1/audit", tag = "admin", params(AuditQuery), responses((status = 200, body = Page<AuditRecord>)))]
pub(crate) async fn list_audit(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<axum::Json<Page<AuditRecord>>> {
    who.require(Permission::Administer)?;
    let filter = audit::AuditFilter {
        since: instant("since", q.since.as_deref())?,
        until: instant("until", q.until.as_deref())?,
        action: q.action,
        actor: q.actor,
        target: q.target,
    };
    Ok(axum::Json(audit::list(&s.store, &who.org, q.cursor.as_deref(), q.limit, &filter)?))
}
