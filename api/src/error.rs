//! One error type for every route, rendered as RFC 9457 `application/problem+json`.
//!
//! Clients get a stable `type` (`urn:pled:problem:<code>`), a human `title` and `detail`, the
//! request path as `instance`, the request id as `traceId`, and for validation errors the
//! JSON paths of the offending fields. Internal details (store errors, panics) go to the log,
//! never to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// JSON pointer to the field (`/transitions/2/to`), or the parameter name.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// The members every [`Problem`] has; problem-specific members take other names.
const STANDARD_MEMBERS: [&str; 7] = ["type", "title", "status", "detail", "instance", "traceId", "errors"];

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// `urn:pled:problem:<code>`: stable, for programs.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for people.
    pub detail: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id (also in the `x-request-id` header and in the server's logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// For validation errors: every invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Problem-specific members (e.g. the current head for a conflict).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (syntax, wrong types, unknown fields, bad parameters).
    #[error("{detail}")]
    BadRequest {
        /// What is wrong.
        detail: String,
        /// Which fields.
        errors: Vec<FieldError>,
    },
    /// 401: no or invalid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource in the caller's org.
    #[error("{0}")]
    NotFound(String),
    /// 409: the resource's state does not allow this now.
    #[error("{detail}")]
    Conflict {
        /// What conflicts.
        detail: String,
        /// Machine-readable context.
        extra: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// 413: the body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but semantically invalid (validation report, idempotency conflict).
    #[error("{detail}")]
    Unprocessable {
        /// Stable code (`validation_failed`, `idempotency_conflict`, …).
        code: &'static str,
        /// What is wrong.
        detail: String,
        /// Which fields.
        errors: Vec<FieldError>,
    },
    /// 429: too much of something is already in progress for the caller's org.
    #[error("{0}")]
    TooManyRequests(String),
    /// 429: the caller's org is over its request rate ([`crate::ratelimit`]).
    #[error("{detail}")]
    RateLimited {
        /// Which limit.
        detail: String,
        /// Seconds until a request will be taken again (`Retry-After`).
        retry_after: u64,
    },
    /// 503: the service cannot take writes now (store poisoned, shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an I/O failure; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with one field error.
    pub fn bad_field(path: impl Into<String>, message: impl Into<String>) -> Self {
        let (path, message) = (path.into(), message.into());
        Self::BadRequest { detail: format!("{path}: {message}"), errors: vec![FieldError { path, message }] }
    }

    /// Checks a text field bounded in characters (names, event types, reasons): at least one
    /// character that is not white space, at most `max` characters. The request schemas
    /// declare the same bounds (`minLength`, `maxLength`, `pattern: \\S`).
    pub fn check_text(path: &str, value: &str, max: usize) -> Result<(), Self> {
        if value.trim().is_empty() || value.chars().count() > max {
            return Err(Self::bad_field(path, format!("must be 1-{max} characters, not only white space")));
        }
        Ok(())
    }

    /// A 404 for a resource kind and id (the same answer whether it does not exist or
    /// belongs to another org).
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} {id} not found"))
    }

    /// A 409 without extra members.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict { detail: detail.into(), extra: None }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request", "Bad request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            Self::Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type")
            }
            Self::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code, "Unprocessable request"),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "Too many requests"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Rate limited"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
        }
    }

    /// The problem document (without instance and trace id, which the middleware adds).
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        let detail = match self {
            Self::Internal(_) => {
                "the server failed to handle the request; the trace id locates it in the logs".to_owned()
            }
            other => other.to_string(),
        };
        let (errors, extra) = match self {
            Self::BadRequest { errors, .. } | Self::Unprocessable { errors, .. } => (errors.clone(), None),
            Self::Conflict { extra, .. } => {
                // A member named like one of RFC 9457's would be written twice, and clients
                // read the last one.
                debug_assert!(
                    extra.iter().flat_map(|m| m.keys()).all(|k| !STANDARD_MEMBERS.contains(&k.as_str())),
                    "{extra:?} shadows a problem document member"
                );
                (Vec::new(), extra.clone())
            }
            _ => (Vec::new(), None),
        };
        Problem {
            kind: format!("urn:pled:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            instance: None,
            trace_id: None,
            errors,
            extra,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = %cause, "internal error");
        }
        let mut res = problem_response(self.problem());
        if let Self::RateLimited { retry_after, .. } = self {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        res
    }
}

/// Renders a problem; the problem middleware fills in `instance` and `traceId`.
pub fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res.extensions_mut().insert(problem);
    res
}

impl From<pled_store::StoreError> for ApiError {
    fn from(e: pled_store::StoreError) -> Self {
        use pled_store::StoreError as E;
        match e {
            E::Poisoned(_) | E::Closed => Self::Unavailable(e.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// A route's result.
pub type ApiResult<T> = Result<T, ApiError>;
