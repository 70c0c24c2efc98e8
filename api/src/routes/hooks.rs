//! Inbound webhooks: `POST /v1/hooks/{executionId}/{source}`, authenticated by an HMAC
//! signature with the source's secret (no bearer token), turned into an event and applied
//! through the normal ingest path. Sources and their secrets are managed by admins.
//!
//! Every refusal (no such execution, no such source, missing, bad or stale signature) is the
//! same 401, so an unsigned caller learns nothing about what exists, and nothing is written.
//! A request without `Idempotency-Key` is deduplicated by its signature: a captured request
//! replayed inside the window gets the stored answer and applies nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pled_core::ExecutionId;
use pled_store::WriteSet;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::answer;
use crate::actions::signing::{self, InboundSource};
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::idempotency::{self, Created, Idempotency};
use crate::lanes::NewEvent;
use crate::repo::audit;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(receive))
        .routes(routes!(list_sources))
        .routes(routes!(rotate_source, delete_source))
}

/// The header naming the event type (default `hook.<source>`).
const EVENT_TYPE_HEADER: &str = "pled-event-type";

fn unauthorized() -> ApiError {
    ApiError::Unauthorized(
        "webhook refused: unknown execution or source, or a missing, invalid or stale signature (see Pled-Signature in docs/api.md)"
            .into(),
    )
}

fn valid_source(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

/// Receive a signed webhook for an execution. Headers: `Pled-Timestamp` (unix seconds, within
/// 5 minutes of the server's clock), `Pled-Signature: v1=<hex HMAC-SHA256(secret,
/// "<timestamp>.<raw body>")>`, optional `Pled-Event-Type` (default `hook.<source>`) and
/// `Idempotency-Key`. The body is JSON: an object becomes the event's payload, anything else
/// is wrapped as `{"body": …}`; the event's source is `hook:<source>`. 401 for any refusal,
/// with nothing written.
#[utoipa::path(post, path = "/v1/hooks/{executionId}/{source}", tag = "hooks", security(()),
    params(("executionId" = String, Path), ("source" = String, Path),
        ("Pled-Timestamp" = String, Header, description = "Unix seconds"),
        ("Pled-Signature" = String, Header, description = "v1=<hex HMAC-SHA256 of timestamp.body>"),
        ("Pled-Event-Type" = Option<String>, Header, description = "Event type (default hook.<source>)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    request_body(content = Object, description = "Any JSON"),
    responses((status = 201, description = "Applied (as POST /v1/executions/{id}/events answers)", body = Object),
        (status = 400, body = crate::error::Problem),
        (status = 401, description = "Unknown execution or source, or a missing, invalid or stale signature", body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 429, body = crate::error::Problem)))]
pub(crate) async fn receive(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiPath((execution_id, source)): ApiPath<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let refused = || {
        metrics::counter!("pled_inbound_webhooks_total", "result" => "refused").increment(1);
        unauthorized()
    };
    let id: ExecutionId = execution_id.parse().map_err(|_| refused())?;
    if !valid_source(&source) {
        return Err(refused());
    }
    let rec = s.records.find(&s.store, id)?.ok_or_else(refused)?;
    let org = rec.org.clone();
    let src = signing::inbound(&s.store, &org, &source)?.ok_or_else(refused)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ts: i64 = header(signing::TIMESTAMP_HEADER).and_then(|t| t.trim().parse().ok()).ok_or_else(refused)?;
    let signature = header(signing::SIGNATURE_HEADER).ok_or_else(refused)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if !src.accepts(ts, now, &body, signature) {
        return Err(refused());
    }
    tracing::Span::current().record("org", org.as_str());
    tracing::Span::current().record("execution_id", execution_id.as_str());
    s.limits.check(&org)?;
    // Authentic from here on: bad input is a 4xx with a reason.
    let value: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad_field("/", format!("not JSON: {e}")))?;
    let payload = if value.is_object() { value } else { json!({ "body": value }) };
    pled_core::Body::from_value(&payload).map_err(|e| ApiError::bad_field("/", e.to_string()))?;
    let kind = match header(EVENT_TYPE_HEADER) {
        Some(t) => ApiError::check_text("Pled-Event-Type", t, 200).map(|()| t.to_owned())?,
        None => format!("hook.{source}"),
    };
    let mut idem_headers = headers.clone();
    if !idem_headers.contains_key(idempotency::HEADER) {
        // The signature identifies this exact request: a replay inside the window is a repeat.
        let key = format!("sig:{}", signature.trim());
        let key = HeaderValue::from_str(&key[..key.len().min(255)]).map_err(|_| refused())?;
        idem_headers.insert(idempotency::HEADER, key);
    }
    let idem = Idempotency::from_request(
        &idem_headers,
        &org,
        &format!("hooks:{id}:{source}"),
        &format!("/v1/hooks/{id}/{source}"),
        &[kind.as_bytes(), b"\n", &body].concat(),
    )?;
    let event = NewEvent { kind, payload, source: format!("hook:{source}"), occurred_at: None };
    let a = s.lanes.ingest(&rec, vec![event], false, idem).await?;
    metrics::counter!("pled_inbound_webhooks_total", "result" => "accepted").increment(1);
    Ok(answer(a))
}

/// An inbound source (never its secret).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceView {
    /// The name.
    source: String,
    /// When its current secret was created.
    created_at: String,
    /// Who created it.
    created_by: String,
    /// Until when (unix seconds) the previous secret is still accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_valid_until: Option<i64>,
}

fn view(s: &InboundSource) -> SourceView {
    SourceView {
        source: s.source.clone(),
        created_at: s.created_at.clone(),
        created_by: s.created_by.clone(),
        previous_valid_until: s.previous_until,
    }
}

/// The org's inbound webhook sources (admin; no secrets).
#[utoipa::path(get, path = "/v1/hooks/sources", tag = "hooks", responses((status = 200, body = Vec<SourceView>)))]
pub(crate) async fn list_sources(State(s): State<AppState>, who: Principal) -> ApiResult<axum::Json<Vec<SourceView>>> {
    who.require(Permission::Administer)?;
    Ok(axum::Json(signing::inbound_sources(&s.store, &who.org)?.iter().map(view).collect()))
}

/// A source's new secret: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceSecret {
    /// The source.
    source: String,
    /// `whsec_…`: the HMAC-SHA256 key senders sign with.
    secret: String,
    /// Until when (unix seconds) the previous secret is still accepted (after a rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_valid_until: Option<i64>,
}

/// Create an inbound source's secret, or rotate it (admin, audited). After a rotation the
/// previous secret is accepted for 24 hours more. The secret is shown only in this answer.
#[utoipa::path(post, path = "/v1/hooks/sources/{source}", tag = "hooks",
    params(("source" = String, Path, description = "1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit",
            pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer (with the same secret)")),
    responses((status = 201, body = SourceSecret), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)))]
pub(crate) async fn rotate_source(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(source): ApiPath<String>,
) -> ApiResult<Response> {
    who.require(Permission::Administer)?;
    if !valid_source(&source) {
        return Err(ApiError::bad_field(
            "source",
            "1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit",
        ));
    }
    let idem =
        Idempotency::from_request(&headers, &who.org, &format!("hook-source:{source}"), "/v1/hooks/sources", b"")?;
    let lock = format!("hooksec/{}/{source}", who.org);
    idempotency::create_holding(&s, idem, Some(&lock), || async {
        let (ws, rec) = signing::rotate_inbound(WriteSet::new(), &s.store, &who.org, &source, &who.subject)?;
        let ws =
            audit::by(ws, &who, "hooks.source_secret_rotated", &source, json!({ "rotated": rec.previous.is_some() }))?;
        let body = serde_json::to_value(SourceSecret {
            source: rec.source,
            secret: rec.secret,
            previous_valid_until: rec.previous_until,
        })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Created { status: StatusCode::CREATED, body, location: None, writes: ws })
    })
    .await
}

/// Delete an inbound source (admin, audited): its webhooks are refused from now on.
#[utoipa::path(delete, path = "/v1/hooks/sources/{source}", tag = "hooks", params(("source" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn delete_source(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(source): ApiPath<String>,
) -> ApiResult<Response> {
    who.require(Permission::Administer)?;
    signing::inbound(&s.store, &who.org, &source)?.ok_or_else(|| ApiError::not_found("hook source", &source))?;
    let ws = signing::delete_inbound(WriteSet::new(), &who.org, &source);
    let ws = audit::by(ws, &who, "hooks.source_deleted", &source, json!({}))?;
    s.store.write(ws).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
