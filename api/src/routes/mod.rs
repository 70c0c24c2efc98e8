//! The router: every route, with its OpenAPI description collected from the handlers.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, header};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::middleware::{self, REQUEST_ID};
use crate::openapi::ApiDoc;
use crate::state::AppState;

pub(crate) mod actions;
pub(crate) mod admin;
pub(crate) mod controls;
pub(crate) mod executions;
pub(crate) mod health;
pub(crate) mod hooks;
pub(crate) mod mint;
pub(crate) mod proofs;
pub(crate) mod replay;
pub(crate) mod schedules;
pub(crate) mod streams;
pub(crate) mod templates;

/// Pagination of list endpoints.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Items per page (1-500, default 50).
    pub(crate) limit: Option<usize>,
    /// `nextCursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// How long a handler that holds its request open (a long-poll, a replay) may take: just
/// inside the request time-out, so that it answers itself before the time-out layer would
/// answer 503 for it.
pub(crate) fn answer_within(config: &crate::config::ServeConfig) -> Duration {
    config.request_timeout.saturating_sub(Duration::from_millis(500)).max(Duration::from_millis(100))
}

/// All `/v1` routes and their OpenAPI description.
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::routes())
        .merge(templates::routes())
        .merge(executions::routes())
        .merge(controls::routes())
        .merge(replay::routes())
        .merge(streams::routes())
        .merge(proofs::routes())
        .merge(mint::routes())
        .merge(admin::routes())
        .merge(actions::routes())
        .merge(hooks::routes())
        .merge(schedules::routes())
}

/// The whole service: routes, docs, and the layers every request passes through.
pub fn app(state: AppState) -> Router {
    // The lanes are built before the configuration is at hand in every caller; the
    // snapshot interval is part of the app's configuration.
    state.lanes.set_snapshot_every(state.config.snapshot_every);
    let (router, spec) = api_routes().split_for_parts();
    let config = state.config.clone();
    // Only the metrics layer needs the matched route, so only it goes on the routes:
    // `Router::layer` gives every route its own copy of the stack, which is cloned on every
    // request. The rest wraps the router once.
    let routes = router
        .merge(crate::openapi::docs_routes(&crate::openapi::complete(&spec)))
        .fallback(middleware::not_found)
        .layer(axum::middleware::from_fn(middleware::metrics))
        .with_state(state);
    wrap(routes, &config)
}

/// The layers every request passes through, outermost first.
fn wrap(routes: Router, config: &crate::config::ServeConfig) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID);
    let service = ServiceBuilder::new()
        .option_layer(cors(&config.cors_origins))
        .layer(tower_http::map_response_body::MapResponseBodyLayer::new(axum::body::Body::new))
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path(), org = tracing::field::Empty, execution_id = tracing::field::Empty)
        }))
        .layer(axum::middleware::from_fn(middleware::problems))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::SERVICE_UNAVAILABLE, config.request_timeout))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(CatchPanicLayer::custom(panic_answer))
        .service(routes);
    Router::new().fallback_service(service)
}

/// A handler that panicked answers 500 like any internal error (logged, with its trace id),
/// instead of the connection closing without an answer.
fn panic_answer(panic: Box<dyn std::any::Any + Send>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    axum::response::IntoResponse::into_response(crate::error::ApiError::Internal(format!("handler panicked: {what}")))
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([HeaderName::from_static(REQUEST_ID), header::LOCATION])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_handler_that_panics_answers_a_500_problem() {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let routes = axum::Router::new().route("/boom", get(boom));
        let app = super::wrap(routes, &crate::config::ServeConfig::default());
        let res = app.oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["type"], "urn:pled:problem:internal");
        assert_eq!(problem["traceId"], id.as_str());
        assert_eq!(problem["instance"], "/boom");
        // The cause is logged, not shown.
        assert!(!problem["detail"].as_str().unwrap().contains("boom"), "{problem}");
    }
}
