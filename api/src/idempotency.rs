//! `Idempotency-Key` on creating POSTs: the same key with the same body gets the stored
//! answer (status and body, with `Idempotency-Replayed: true`); the same key with a different
//! body is a 422. Records are written in the same atomic write as the change they answer for,
//! so they survive restarts and can never disagree with the data.
//!
//! Bodies are compared as canonical JSON (whitespace and key order do not matter). Canonical
//! text costs a parse and a write, so a record keeps the request as it came ([`Record::request`])
//! and a repeat with the same bytes, the usual retry, is recognised by comparing them; only a
//! repeat with other bytes is canonicalised, both sides. A large body (over
//! [`RAW_REQUEST_MAX`]) is kept as the SHA-256 of its canonical form instead, as every record
//! was before 2026-12-04.

use std::borrow::Cow;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pled_core::{OrgId, RecordedAt};
use pled_store::{Store, Table, WriteSet};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The header's name as the OpenAPI document spells it.
pub const HEADER_NAME: &str = "Idempotency-Key";
/// What a key may be: 1-255 visible ASCII characters (the pattern in the OpenAPI document).
pub const KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// The largest request body a record keeps as it came; a larger one is kept as a hash.
pub const RAW_REQUEST_MAX: usize = 8 << 10;

/// A stored answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The request as it came: `POST <path>`, a newline, the body (bodies up to
    /// [`RAW_REQUEST_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Otherwise SHA-256 (hex) over `POST <path>`, a newline and the canonical JSON of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    /// The answer's status.
    pub status: u16,
    /// The answer's body, as it was sent.
    pub body: Box<RawValue>,
    /// The answer's `Location`, if any.
    pub location: Option<String>,
    /// When it was first answered.
    pub at: RecordedAt,
}

/// A [`Record`] being written, borrowing its body.
#[derive(Serialize)]
struct NewRecord<'a, B: Serialize + ?Sized> {
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_hash: Option<&'a str>,
    status: u16,
    body: &'a B,
    location: Option<&'a str>,
    at: RecordedAt,
}

/// `value` written as JSON once, to be sent and stored as it is.
pub(crate) fn raw_json(value: &impl Serialize) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(value).map_err(|e| ApiError::Internal(format!("cannot write the answer: {e}")))
}

/// The idempotency context of one request.
#[derive(Debug, Clone)]
pub struct Idempotency {
    key: Vec<u8>,
    request: Fingerprint,
}

/// What identifies a request under its key: the request as it came, or the hash of its
/// canonical form.
#[derive(Debug, Clone, PartialEq)]
enum Fingerprint {
    /// `POST <path>\n<body>`.
    Raw(String),
    /// SHA-256 (hex) of `POST <path>\n<canonical body>`.
    Hashed(String),
}

impl Fingerprint {
    fn of(path: &str, body: &[u8]) -> Self {
        match std::str::from_utf8(body) {
            Ok(text) if body.len() <= RAW_REQUEST_MAX => Self::Raw(format!("POST {path}\n{text}")),
            _ => Self::Hashed(canonical_hash(path, body)),
        }
    }

    fn of_record(rec: &Record) -> Option<Self> {
        match (&rec.request, &rec.request_hash) {
            (Some(raw), _) => Some(Self::Raw(raw.clone())),
            (None, Some(hash)) => Some(Self::Hashed(hash.clone())),
            (None, None) => None,
        }
    }

    fn hash(&self) -> Cow<'_, str> {
        match self {
            Self::Hashed(h) => Cow::Borrowed(h),
            Self::Raw(raw) => {
                let (line, body) = raw.split_once('\n').unwrap_or((raw, ""));
                Cow::Owned(canonical_hash(line.strip_prefix("POST ").unwrap_or(line), body.as_bytes()))
            }
        }
    }

    /// Whether two requests are the same: the same bytes, or the same canonical form.
    fn same(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Raw(a), Self::Raw(b)) if a == b => true,
            _ => self.hash() == other.hash(),
        }
    }
}

/// SHA-256 (hex) over `POST <path>`, a newline and the canonical JSON of `body` (the body as it
/// is when it is not JSON).
fn canonical_hash(path: &str, body: &[u8]) -> String {
    let canonical = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let mut out = Vec::with_capacity(body.len());
            pled_core::jcs::write_value(&v, &mut out);
            Cow::Owned(out)
        }
        Err(_) => Cow::Borrowed(body),
    };
    let mut h = Sha256::new();
    h.update(b"POST ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(&canonical);
    hex::encode(h.finalize())
}

impl Idempotency {
    /// Reads the header; `None` when the request has none. `scope` names the operation and
    /// the resource (e.g. `events:<execution id>`), so a key can be reused across operations.
    pub fn from_request(
        headers: &HeaderMap,
        org: &OrgId,
        scope: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Option<Self>, ApiError> {
        let Some(v) = headers.get(HEADER) else {
            return Ok(None);
        };
        let key = v
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| ApiError::bad_field("Idempotency-Key", "must be 1-255 visible ASCII characters"))?;
        Ok(Some(Self { key: format!("{org}/{scope}/{key}").into_bytes(), request: Fingerprint::of(path, body) }))
    }

    /// The lock key for serialising retries of this request.
    pub fn lock_key(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }

    /// The stored record for this key: `Ok(Some(record))` to replay it, a 422 if the key was
    /// used with another body, `Ok(None)` if it is new.
    pub fn lookup_record(&self, store: &Store) -> Result<Option<Record>, ApiError> {
        let Some(bytes) = store.get(Table::Idempotency, &self.key)? else {
            return Ok(None);
        };
        let rec: Record = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Internal(format!("corrupt idempotency record: {e}")))?;
        if !Fingerprint::of_record(&rec).is_some_and(|stored| stored.same(&self.request)) {
            return Err(self.conflict());
        }
        Ok(Some(rec))
    }

    /// [`Idempotency::lookup_record`], as the response to replay.
    pub fn lookup(&self, store: &Store) -> Result<Option<Response>, ApiError> {
        Ok(self.lookup_record(store)?.map(|r| replay(&r)))
    }

    /// Whether two requests carry the same key and the same body.
    pub fn same_request(&self, other: &Idempotency) -> bool {
        self.key == other.key && self.request.same(&other.request)
    }

    /// The answer to a key reused with another body.
    pub fn conflict(&self) -> ApiError {
        ApiError::Unprocessable {
            code: "idempotency_conflict",
            detail: "this Idempotency-Key was already used with a different request body".into(),
            errors: vec![],
        }
    }

    /// Adds the answer's record to the write set that makes the change.
    pub fn record(
        &self,
        ws: WriteSet,
        status: StatusCode,
        body: &(impl Serialize + ?Sized),
        location: Option<&str>,
    ) -> Result<WriteSet, ApiError> {
        let (request, request_hash) = match &self.request {
            Fingerprint::Raw(raw) => (Some(raw.as_str()), None),
            Fingerprint::Hashed(hash) => (None, Some(hash.as_str())),
        };
        let rec = NewRecord { request, request_hash, status: status.as_u16(), body, location, at: RecordedAt::now() };
        let bytes = serde_json::to_vec(&rec).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(ws.put(Table::Idempotency, self.key.clone(), bytes))
    }
}

/// A JSON answer already written, marked `Idempotency-Replayed: true` when it is a stored
/// answer given again.
pub(crate) fn json_answer(status: StatusCode, body: &RawValue, replayed: bool) -> Response {
    let bytes = body.get().as_bytes().to_vec();
    let mut res = (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    if replayed {
        res.headers_mut().insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    res
}

fn replay(rec: &Record) -> Response {
    let status = StatusCode::from_u16(rec.status).unwrap_or(StatusCode::OK);
    let mut res = json_answer(status, &rec.body, true);
    if let Some(loc) = rec.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    res
}

/// What a creating handler produced: the answer and the writes that make it true.
pub struct Created {
    /// Usually 201.
    pub status: StatusCode,
    /// The answer body.
    pub body: serde_json::Value,
    /// `Location` of the created resource.
    pub location: Option<String>,
    /// The change, written atomically with the idempotency record.
    pub writes: WriteSet,
}

/// Locks the request's key and `resource` (the record the request rewrites) at once
/// ([`crate::state::KeyLocks::lock_all`]), and reads the answer stored for the key: replay it
/// if there is one, otherwise run the request before the guards are dropped.
pub async fn hold<'a>(
    state: &'a crate::state::AppState,
    idem: Option<&Idempotency>,
    resource: Option<&str>,
) -> Result<(Vec<tokio::sync::MutexGuard<'a, ()>>, Option<Response>), ApiError> {
    let idem_key = idem.map(Idempotency::lock_key);
    let keys: Vec<&str> = resource.into_iter().chain(idem_key.as_deref()).collect();
    let guards = state.locks.lock_all(&keys).await;
    let stored = match idem {
        Some(i) => i.lookup(&state.store)?,
        None => None,
    };
    Ok((guards, stored))
}

/// Runs a creating operation under its idempotency key (if the request has one): replays a
/// stored answer, refuses a reused key with another body, or runs `make`, then writes its
/// changes and the record in one durable write.
pub async fn create<F, Fut>(
    state: &crate::state::AppState,
    idem: Option<Idempotency>,
    make: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Created, ApiError>>,
{
    create_holding(state, idem, None, make).await
}

/// [`create`], holding also the lock of `resource`, the record `make` reads and rewrites
/// (see [`hold`]).
pub async fn create_holding<F, Fut>(
    state: &crate::state::AppState,
    idem: Option<Idempotency>,
    resource: Option<&str>,
    make: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Created, ApiError>>,
{
    let (_guards, stored) = hold(state, idem.as_ref(), resource).await?;
    if let Some(stored) = stored {
        return Ok(stored);
    }
    let created = make().await?;
    let mut writes = created.writes;
    let body = raw_json(&created.body)?;
    if let Some(i) = &idem {
        writes = i.record(writes, created.status, &*body, created.location.as_deref())?;
    }
    state.store.write(writes).await?;
    let mut res = json_answer(created.status, &body, false);
    if let Some(loc) = created.location.as_deref().and_then(|l| HeaderValue::from_str(l).ok()) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record_of(f: &Fingerprint) -> Record {
        let (request, request_hash) = match f {
            Fingerprint::Raw(r) => (Some(r.clone()), None),
            Fingerprint::Hashed(h) => (None, Some(h.clone())),
        };
        let body = RawValue::from_string("{}".into()).unwrap();
        Record { request, request_hash, status: 201, body, location: None, at: RecordedAt::now() }
    }

    #[test]
    fn the_same_request_in_other_bytes_is_the_same_and_another_body_or_path_is_not() {
        let path = "/v1/executions/e/events";
        let first = Fingerprint::of(path, br#"{"type":"submit","payload":{"a":1,"b":[1,2]}}"#);
        assert!(matches!(first, Fingerprint::Raw(_)), "small bodies are kept as they came");
        let reordered = Fingerprint::of(path, b"{ \"payload\": {\"b\": [1, 2], \"a\": 1},\n  \"type\": \"submit\" }");
        assert!(first.same(&first.clone()) && first.same(&reordered) && reordered.same(&first));
        assert!(!first.same(&Fingerprint::of(path, br#"{"type":"submit","payload":{"a":2,"b":[1,2]}}"#)));
        assert!(!first.same(&Fingerprint::of(path, br#"{"type":"submit","payload":{"a":1,"b":[2,1]}}"#)));
        assert!(
            !first
                .same(&Fingerprint::of("/v1/executions/f/events", br#"{"type":"submit","payload":{"a":1,"b":[1,2]}}"#))
        );
        // Bodies that are not JSON compare as bytes.
        assert!(Fingerprint::of(path, b"not json").same(&Fingerprint::of(path, b"not json")));
        assert!(!Fingerprint::of(path, b"not json").same(&Fingerprint::of(path, b"not  json")));
    }

    #[test]
    fn large_bodies_are_kept_as_hashes_and_compare_with_kept_ones_and_old_records() {
        let path = "/v1/templates";
        let big = serde_json::json!({ "name": "x".repeat(RAW_REQUEST_MAX), "n": 1 });
        let compact = serde_json::to_vec(&big).unwrap();
        let pretty = serde_json::to_vec_pretty(&big).unwrap();
        let hashed = Fingerprint::of(path, &compact);
        assert_eq!(hashed, Fingerprint::Hashed(canonical_hash(path, &pretty)));
        assert!(hashed.same(&Fingerprint::of(path, &pretty)));

        // A record from before raw requests were kept holds the hash only: it still matches.
        let small = br#"{"b":1,"a":2}"#;
        let old = Fingerprint::of_record(&record_of(&Fingerprint::Hashed(canonical_hash(path, small)))).unwrap();
        assert!(old.same(&Fingerprint::of(path, br#"{"a":2,"b":1}"#)));
        assert!(!old.same(&Fingerprint::of(path, br#"{"a":3,"b":1}"#)));
        // A kept request, read back from its record, matches a repeat.
        let kept = Fingerprint::of(path, small);
        let stored: Record = serde_json::from_slice(&serde_json::to_vec(&record_of(&kept)).unwrap()).unwrap();
        assert!(Fingerprint::of_record(&stored).unwrap().same(&kept));
        assert!(stored.request_hash.is_none(), "only one of the two is written");
    }
}
