//! PLED personal access tokens: `pled_pat_<id>_<secret>`, printed once, stored as the
//! SHA-256 of the whole token, revocable, and expiring if issued with a lifetime. Records live
//! under `pat/<id>` with an org index under `pat-org/<org>/<id>`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pled_core::{OrgId, RecordedAt, unix_millis_now};
use pled_store::{Store, WriteSet};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{get_json, put_json, scan_json};
use crate::auth::{Principal, Role};
use crate::error::ApiError;

/// Every access token starts with this.
pub const PREFIX: &str = "pled_pat_";

/// A stored access token (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// The token's public id (the part after `pled_pat_`).
    pub id: String,
    /// Its org.
    #[schema(value_type = String)]
    pub org: OrgId,
    /// Its role.
    pub role: Role,
    /// What it is for.
    pub name: String,
    /// When it was issued.
    #[schema(value_type = String)]
    pub created_at: RecordedAt,
    /// Who issued it (`cli` for `pled token create`).
    pub created_by: String,
    /// When it was revoked, if it was.
    #[schema(value_type = Option<String>)]
    pub revoked_at: Option<RecordedAt>,
    /// When it stops working, if it was issued with a lifetime (records from before
    /// lifetimes existed have none).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<RecordedAt>,
    /// SHA-256 of the whole token, hex.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    #[schema(ignore)]
    pub hash: String,
}

impl TokenRecord {
    /// The record without its hash, for API answers.
    pub fn public(mut self) -> Self {
        self.hash.clear();
        self
    }
}

fn key(id: &str) -> String {
    format!("pat/{id}")
}

fn org_key(org: &OrgId, id: &str) -> String {
    format!("pat-org/{org}/{id}")
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Issues a token that works for `lifetime` (for ever without one): returns the token text
/// (to show once) and the write set that stores it.
pub fn issue(
    org: &OrgId,
    role: Role,
    name: &str,
    created_by: &str,
    lifetime: Option<Duration>,
    ws: WriteSet,
) -> Result<(String, TokenRecord, WriteSet), ApiError> {
    let created_at = RecordedAt::now();
    let expires_at = lifetime.map(|d| expiry(&created_at, d)).transpose()?;
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let id = hex::encode(id);
    let token = format!("{PREFIX}{id}_{}", hex::encode(secret));
    let record = TokenRecord {
        id: id.clone(),
        org: org.clone(),
        role,
        name: name.to_owned(),
        created_at,
        created_by: created_by.to_owned(),
        revoked_at: None,
        expires_at,
        hash: digest(&token),
    };
    let ws = put_json(ws, &key(&id), &record)?;
    let ws = put_json(ws, &org_key(org, &id), &serde_json::json!({}))?;
    Ok((token, record, ws))
}

/// `from + lifetime`, or a 400 naming `/expiresIn` when that is past what a timestamp holds.
fn expiry(from: &RecordedAt, lifetime: Duration) -> Result<RecordedAt, ApiError> {
    i64::try_from(lifetime.as_micros())
        .ok()
        .and_then(|us| from.unix_micros().checked_add(us))
        .and_then(|us| RecordedAt::from_unix_micros(us).ok())
        .ok_or_else(|| ApiError::bad_field("/expiresIn", "the token would expire after the year 9999"))
}

/// A token's expiry: the instant in microseconds, to compare, and its text, to report.
type Expiry = (i64, RecordedAt);

/// A valid, unrevoked token's principal and expiry (not yet checked).
type Verified = (Principal, Option<Expiry>);

fn check_expiry(expires: Option<&Expiry>) -> Result<(), ApiError> {
    match expires {
        Some((us, at)) if i64::try_from(unix_millis_now()).unwrap_or(i64::MAX).saturating_mul(1000) >= *us => {
            Err(ApiError::Unauthorized(format!("access token expired at {at}")))
        }
        _ => Ok(()),
    }
}

fn verify_digest(store: &Store, token: &str, digest: &str) -> Result<Verified, ApiError> {
    let invalid = || ApiError::Unauthorized("invalid or revoked access token".into());
    let rest = token.strip_prefix(PREFIX).ok_or_else(invalid)?;
    let (id, _) = rest.split_once('_').ok_or_else(invalid)?;
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let record: TokenRecord = get_json(store, &key(id))?.ok_or_else(invalid)?;
    if !constant_time_eq(record.hash.as_bytes(), digest.as_bytes()) || record.revoked_at.is_some() {
        return Err(invalid());
    }
    let principal = Principal { org: record.org, role: record.role, subject: format!("pat:{id}") };
    Ok((principal, record.expires_at.map(|at| (at.unix_micros(), at))))
}

/// Tokens verified by this process, by digest, so a request does not read and parse the
/// token's record every time (that was about 7% of the server's CPU under ingest). Only the
/// running server writes token records while it runs (`pled token` needs the store
/// stopped), and it calls [`Verifier::forget_all`] after every revocation; a lookup that
/// raced with a revocation is not cached (a generation counter, checked under the lock).
/// Expiry is checked on every request, cached or not.
#[derive(Default)]
pub struct Verifier {
    cache: Mutex<(u64, HashMap<String, Verified>)>,
}

/// Cached principals before the cache is emptied and refilled.
const VERIFIED_MAX: usize = 10_000;

impl Verifier {
    /// Checks a presented token (its hash, revocation and expiry) and returns its principal.
    pub fn verify(&self, store: &Store, token: &str) -> Result<Principal, ApiError> {
        let d = digest(token);
        let generation = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((p, expires)) = cache.1.get(&d) {
                check_expiry(expires.as_ref())?;
                return Ok(p.clone());
            }
            cache.0
        };
        let (principal, expires) = verify_digest(store, token, &d)?;
        check_expiry(expires.as_ref())?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 == generation {
            if cache.1.len() >= VERIFIED_MAX {
                cache.1.clear();
            }
            cache.1.insert(d, (principal.clone(), expires));
        }
        Ok(principal)
    }

    /// Forgets every verified token (after a revocation is durable).
    pub fn forget_all(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.0 += 1;
        cache.1.clear();
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The org's tokens (without hashes), oldest id first.
pub fn list(store: &Store, org: &OrgId) -> Result<Vec<TokenRecord>, ApiError> {
    let prefix = format!("pat-org/{org}/");
    let ids: Vec<(String, serde_json::Value)> = scan_json(store, &prefix, None, usize::MAX)?;
    let mut out = Vec::with_capacity(ids.len());
    for (k, _) in ids {
        if let Some(r) = get_json::<TokenRecord>(store, &key(&k[prefix.len()..]))? {
            out.push(r.public());
        }
    }
    Ok(out)
}

/// One of the org's tokens.
pub fn get(store: &Store, org: &OrgId, id: &str) -> Result<Option<TokenRecord>, ApiError> {
    Ok(get_json::<TokenRecord>(store, &key(id))?.filter(|r| &r.org == org))
}

/// Marks a token revoked.
pub fn revoke(mut record: TokenRecord, ws: WriteSet) -> Result<(TokenRecord, WriteSet), ApiError> {
    record.revoked_at = Some(RecordedAt::now());
    let ws = put_json(ws, &key(&record.id), &record)?;
    Ok((record.public(), ws))
}

/// Whether any token was ever issued (first-start detection).
pub fn any(store: &Store) -> Result<bool, ApiError> {
    Ok(!scan_json::<serde_json::Value>(store, "pat/", None, 1)?.is_empty())
}
