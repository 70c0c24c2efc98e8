//! Extractors whose rejections are RFC 9457 problems with field paths, instead of axum's
//! plain-text defaults: malformed JSON, wrong types, unknown fields, oversized bodies, bad
//! path and query parameters.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};

/// A JSON body, parsed into `T`, with its raw bytes kept (idempotency hashes them).
#[derive(Debug, Clone)]
pub struct ApiJson<T> {
    /// The parsed body.
    pub value: T,
    /// The bytes as received.
    pub raw: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json") || (m.starts_with("application/") && m.ends_with("+json"))
            });
        if json_type != Some(true) {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be JSON (Content-Type: application/json)".into(),
            ));
        }
        let raw = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        let value = parse_json(&raw)?;
        Ok(Self { value, raw })
    }
}

/// Parses a JSON object into `T`, naming the path of the first bad field. Every request body
/// is an object: serde would also fill a struct from an array of its fields in order
/// (`["viewer", "ci"]` as a new token), which no client means and the documents do not allow.
/// Nested structs say so with [`pled_core::de`].
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_field("/", "the body must be a JSON object"));
    }
    // Tracking the path costs an allocation per object member, so a body is parsed plainly
    // first; only a refused one is parsed again, to name where it went wrong.
    serde_json::from_slice(raw).map_err(|plain| match parse_json_with_path::<T>(raw) {
        Err(e) => e,
        Ok(_) => ApiError::BadRequest { detail: format!("malformed JSON: {plain}"), errors: vec![] },
    })
}

fn parse_json_with_path<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        let pointer = to_pointer(&e.path().to_string());
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest { detail: format!("malformed JSON: {inner}"), errors: vec![] }
        } else {
            let message = inner.to_string();
            // serde's message ends with " at line L column C"; the path says more.
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            ApiError::BadRequest {
                detail: format!("invalid body at {pointer}: {message}"),
                errors: vec![FieldError { path: pointer, message }],
            }
        }
    })?;
    de.end().map_err(|e| ApiError::BadRequest { detail: format!("malformed JSON: {e}"), errors: vec![] })?;
    Ok(value)
}

/// `a.b[2].c` (serde_path_to_error's form) -> `/a/b/2/c`.
fn to_pointer(path: &str) -> String {
    if path == "." || path.is_empty() {
        return "/".into();
    }
    let mut out = String::new();
    for seg in path.split('.') {
        let mut rest = seg;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push('/');
                out.push_str(&rest[..i]);
            }
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                out.push('/');
                out.push_str(&rest[1..end]);
                rest = &rest[end + 1..];
            }
        } else {
            out.push('/');
            out.push_str(rest);
        }
    }
    out
}

fn body_rejection(e: BytesRejection) -> ApiError {
    // The only buffering failure a client can cause is exceeding the body limit.
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!("request body is larger than the limit: {e}"))
    } else {
        ApiError::BadRequest { detail: format!("could not read the request body: {e}"), errors: vec![] }
    }
}

/// Path parameters, with problem rejections.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| Self(p.0)).map_err(|e| {
            ApiError::BadRequest { detail: format!("invalid path parameter: {}", e.body_text()), errors: vec![] }
        })
    }
}

/// Query parameters, with problem rejections (unknown parameters are refused when `T` says
/// `deny_unknown_fields`).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded_de(q);
        de.map(Self)
    }
}

fn serde_urlencoded_de<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}").parse().map_err(|_| ApiError::bad_field("query", "unparseable query string"))?,
    )
    .map(|v| v.0)
    .map_err(|e| {
        let text = e.body_text();
        let message = text.trim_start_matches("Failed to deserialize query string: ").to_owned();
        ApiError::BadRequest {
            detail: format!("invalid query parameter: {message}"),
            errors: vec![FieldError { path: "query".into(), message }],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_paths_become_json_pointers() {
        assert_eq!(to_pointer("states[2].id"), "/states/2/id");
        assert_eq!(to_pointer("a.b"), "/a/b");
        assert_eq!(to_pointer("."), "/");
        assert_eq!(to_pointer("[0][1]"), "/0/1");
    }
}
