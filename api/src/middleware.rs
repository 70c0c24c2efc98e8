//! Cross-cutting request handling: request ids, problem+json for every error (including
//! those produced by layers and the router), request metrics.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{PROBLEM_JSON, Problem, problem_response};

/// The request id header (set by the request-id layer, echoed in responses).
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// Gives every error response a complete problem document: fills `instance` and `traceId`
/// into problems from handlers, and turns bare error responses (405 from the router, 408/503
/// from the timeout layer, 413 from the body limit) into problems.
pub(crate) async fn problems(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let trace_id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let mut problem = match res.extensions().get::<Problem>() {
        Some(p) => p.clone(),
        None => {
            let is_problem =
                res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
            if is_problem {
                return res;
            }
            bare_problem(status)
        }
    };
    problem.instance = Some(path);
    problem.trace_id = trace_id;
    let (parts, _) = res.into_parts();
    let mut out = problem_response(problem);
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn bare_problem(status: StatusCode) -> Problem {
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this route does not accept that method"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body is larger than the limit"),
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            ("timeout", "the request took longer than the server's request timeout")
        }
        _ => ("error", "the request failed"),
    };
    Problem {
        kind: format!("urn:pled:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail.to_owned(),
        instance: None,
        trace_id: None,
        errors: Vec::new(),
        extra: None,
    }
}

/// Records `pled_http_request_duration_seconds{method, route, status}`.
pub(crate) async fn metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!("pled_http_request_duration_seconds", "method" => method, "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    res
}

/// The router's fallback: an unknown route is a 404 problem.
pub(crate) async fn not_found() -> Response {
    let mut res = StatusCode::NOT_FOUND.into_response();
    *res.body_mut() = Body::empty();
    res
}
