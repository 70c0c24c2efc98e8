//! The OpenAPI document (generated from the handlers with utoipa) and `/docs`, a
//! self-contained page that renders it (no CDN: it works on machines without internet).

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::state::AppState;

/// The parts of the document not derived from a handler.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "PLED API",
        description = "The system of record for process executions. Errors are RFC 9457 problem documents \
            (application/problem+json). Creating POSTs honour Idempotency-Key. Authenticate with \
            `Authorization: Bearer <JWT or PLED access token>`; the org comes from the token. See docs/api.md.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "templates", description = "Versioned process templates, compiled to state machines"),
        (name = "rules", description = "Rules turning events into messages"),
        (name = "executions", description = "Executions: start, post events, state, events, messages, tokens, wait"),
        (name = "ledger", description = "The hash-chained ledger, in the auditor's export form"),
        (name = "streams", description = "Live entries and state over SSE and WebSocket"),
        (name = "admin", description = "Access tokens and the audit log"),
        (name = "schedules", description = "Cron schedules that start executions or post events"),
        (name = "hooks", description = "Signed inbound webhooks and their sources"),
        (name = "actions", description = "Action jobs, the action catalog, on-demand actions, webhook secrets"),
        (name = "operations", description = "Health, readiness, metrics"),
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// `/openapi.json` and `/docs`.
pub(crate) fn docs_routes(spec: utoipa::openapi::OpenApi) -> Router<AppState> {
    let json = spec.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json).into_response() }),
        )
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
}

const DOCS_PAGE: &str = include_str!("docs.html");
