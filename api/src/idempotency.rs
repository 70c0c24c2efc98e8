//! `Idempotency-Key` on creating POSTs: the same key with the same body gets the stored
//! answer (status and body, with `Idempotency-Replayed: true`); the same key with a different
//! body is a 422. Records are written in the same atomic write as the change they answer for,
//! so they survive restarts and can never disagree with the data.

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

/// A stored answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// SHA-256 (hex) over method, path and the canonical JSON of the body.
    pub request_hash: String,
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
    request_hash: &'a str,
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
    request_hash: String,
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
        // Hash the canonical form of the body, so whitespace or key order do not matter.
        let canonical = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) => {
                let mut out = Vec::with_capacity(body.len());
                pled_core::jcs::write_value(&v, &mut out);
                out
            }
            Err(_) => body.to_vec(),
        };
        let mut h = Sha256::new();
        h.update(b"POST ");
        h.update(path.as_bytes());
        h.update(b"\n");
        h.update(&canonical);
        Ok(Some(Self { key: format!("{org}/{scope}/{key}").into_bytes(), request_hash: hex::encode(h.finalize()) }))
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
        if rec.request_hash != self.request_hash {
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
        self.key == other.key && self.request_hash == other.request_hash
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
        let rec = NewRecord {
            request_hash: &self.request_hash,
            status: status.as_u16(),
            body,
            location,
            at: RecordedAt::now(),
        };
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
