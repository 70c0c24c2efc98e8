//! PLED personal access tokens: `pled_pat_<id>_<secret>`, printed once, stored as the
//! SHA-256 of the whole token, revocable, and expiring if issued with a lifetime. Records live
//! under `pat/<id>` with an org index under `pat-org/<org>/<id>`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pled_core::{OrgId, RecordedAt, unix_micros_now};
use pled_store::{Store, WriteSet};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
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
    /// When it was last used; none if never (since uses were recorded). Kept in its own record
    /// (`pat-used/<id>`, written every minute), so it is not part of the stored token; the
    /// API's answers add the uses the server has not written yet.
    #[serde(default, skip_deserializing)]
    #[schema(value_type = Option<String>)]
    pub last_used_at: Option<RecordedAt>,
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
        last_used_at: None,
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

/// A valid, unrevoked token: its id, principal and expiry (microseconds, and the text to report).
struct Verified {
    id: String,
    principal: Principal,
    expires: Option<(i64, RecordedAt)>,
}

impl Verified {
    fn check_expiry(&self, now_us: i64) -> Result<(), ApiError> {
        match &self.expires {
            Some((us, at)) if now_us >= *us => Err(ApiError::Unauthorized(format!("access token expired at {at}"))),
            _ => Ok(()),
        }
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
    Ok(Verified {
        id: id.to_owned(),
        principal: Principal { org: record.org, role: record.role, subject: format!("pat:{id}") },
        expires: record.expires_at.map(|at| (at.unix_micros(), at)),
    })
}

/// How often [`Verifier::record_uses`] writes when tokens were last used.
pub const USES_WRITTEN_EVERY: Duration = Duration::from_secs(60);

/// Tokens verified by this process, by digest, so a request does not read and parse the
/// token's record every time (that was about 7% of the server's CPU under ingest). Only the
/// running server writes token records while it runs (`pled token` needs the store
/// stopped), and it calls [`Verifier::forget_all`] after every revocation; a lookup that
/// raced with a revocation is not cached (a generation counter, checked under the lock).
/// Expiry is checked on every request, cached or not.
///
/// It also notes when each token was last used, in memory on each request, and
/// [`Verifier::record_uses`] writes that to `pat-used/<id>` every [`USES_WRITTEN_EVERY`] and at
/// shutdown: a token's own record is not rewritten on every request, and a revocation never
/// races with a use.
#[derive(Default)]
pub struct Verifier {
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    generation: u64,
    verified: HashMap<String, Verified>,
    /// By token id: the last use (Unix µs), and the last one written.
    used: HashMap<String, (i64, i64)>,
}

/// Notes a use of token `id` in [`Cache::used`].
fn note_use(used: &mut HashMap<String, (i64, i64)>, id: &str, now_us: i64) {
    match used.get_mut(id) {
        Some((last, _)) => *last = now_us,
        None => {
            used.insert(id.to_owned(), (now_us, 0));
        }
    }
}

/// Cached principals before the cache is emptied and refilled.
const VERIFIED_MAX: usize = 10_000;

impl Verifier {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a presented token (its hash, revocation and expiry) and returns its principal.
    pub fn verify(&self, store: &Store, token: &str) -> Result<Principal, ApiError> {
        let d = digest(token);
        let now = unix_micros_now();
        let generation = {
            let mut guard = self.lock();
            let cache = &mut *guard;
            if let Some(v) = cache.verified.get(&d) {
                v.check_expiry(now)?;
                note_use(&mut cache.used, &v.id, now);
                return Ok(v.principal.clone());
            }
            cache.generation
        };
        let verified = verify_digest(store, token, &d)?;
        verified.check_expiry(now)?;
        let principal = verified.principal.clone();
        let mut cache = self.lock();
        note_use(&mut cache.used, &verified.id, now);
        if cache.generation == generation {
            if cache.verified.len() >= VERIFIED_MAX {
                cache.verified.clear();
            }
            cache.verified.insert(d, verified);
        }
        Ok(principal)
    }

    /// Forgets every verified token (after a revocation is durable).
    pub fn forget_all(&self) {
        let mut cache = self.lock();
        cache.generation += 1;
        cache.verified.clear();
    }

    /// Sets `lastUsedAt` of the listed tokens this process saw used (as recent as, or more
    /// recent than, what the store holds).
    pub fn with_recent_uses(&self, records: &mut [TokenRecord]) {
        let cache = self.lock();
        for r in records {
            if let Some(&(last, _)) = cache.used.get(&r.id) {
                r.last_used_at = RecordedAt::from_unix_micros(last).ok();
            }
        }
    }

    /// Writes the uses noted since the last call; returns how many tokens it wrote.
    pub async fn write_uses(&self, store: &Store) -> Result<usize, ApiError> {
        let fresh: Vec<(String, i64)> = self
            .lock()
            .used
            .iter()
            .filter(|(_, (last, written))| last > written)
            .map(|(id, (last, _))| (id.clone(), *last))
            .collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut ws = WriteSet::new();
        for (id, last) in &fresh {
            if let Ok(last_used_at) = RecordedAt::from_unix_micros(*last) {
                ws = put_json(ws, &used_key(id), &LastUse { last_used_at })?;
            }
        }
        store.write(ws).await?;
        let mut cache = self.lock();
        for (id, last) in &fresh {
            if let Some((_, written)) = cache.used.get_mut(id) {
                *written = (*written).max(*last);
            }
        }
        Ok(fresh.len())
    }

    /// Writes when tokens were last used every [`USES_WRITTEN_EVERY`], and once more when
    /// `stopped`.
    pub async fn record_uses(self: std::sync::Arc<Self>, store: Store, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(USES_WRITTEN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stopped.changed() => true,
            };
            if let Err(e) = self.write_uses(&store).await {
                tracing::warn!(error = %e, "could not record when access tokens were last used");
            }
            if stopping {
                return;
            }
        }
    }
}

/// The record under `pat-used/<id>`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LastUse {
    last_used_at: RecordedAt,
}

fn used_key(id: &str) -> String {
    format!("pat-used/{id}")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The org's tokens (without hashes), by id, with their last use as written (see
/// [`Verifier::with_recent_uses`] for uses not yet written).
pub fn list(store: &Store, org: &OrgId) -> Result<Vec<TokenRecord>, ApiError> {
    let prefix = format!("pat-org/{org}/");
    let ids: Vec<(String, serde_json::Value)> = scan_json(store, &prefix, None, usize::MAX)?;
    let mut out = Vec::with_capacity(ids.len());
    for (k, _) in ids {
        let id = &k[prefix.len()..];
        if let Some(mut r) = get_json::<TokenRecord>(store, &key(id))? {
            r.last_used_at = last_use(store, id)?;
            out.push(r.public());
        }
    }
    Ok(out)
}

/// When token `id` was last used, as written (see [`Verifier::with_recent_uses`]).
pub fn last_use(store: &Store, id: &str) -> Result<Option<RecordedAt>, ApiError> {
    Ok(get_json::<LastUse>(store, &used_key(id))?.map(|u| u.last_used_at))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use pled_store::StoreOptions;

    use super::*;

    #[tokio::test]
    async fn uses_are_noted_for_valid_tokens_only_and_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let acme = OrgId::new("acme").unwrap();
        let (live, live_rec, ws) = issue(&acme, Role::Viewer, "live", "test", None, WriteSet::new()).unwrap();
        let (short, _, ws) = issue(&acme, Role::Viewer, "short", "test", Some(Duration::from_millis(1)), ws).unwrap();
        let (_, idle_rec, ws) = issue(&acme, Role::Viewer, "idle", "test", None, ws).unwrap();
        store.write(ws).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));

        let verifier = Verifier::default();
        let before = unix_micros_now();
        for _ in 0..2 {
            assert_eq!(verifier.verify(&store, &live).unwrap().subject, format!("pat:{}", live_rec.id));
        }
        assert!(verifier.verify(&store, &short).unwrap_err().to_string().starts_with("access token expired at"));
        let mut forged = live.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert!(verifier.verify(&store, &forged).is_err());

        // Listed before they are written: only in memory.
        let mut listed = list(&store, &acme).unwrap();
        assert!(listed.iter().all(|r| r.last_used_at.is_none()));
        verifier.with_recent_uses(&mut listed);
        let used: Vec<_> = listed.iter().filter(|r| r.last_used_at.is_some()).map(|r| r.name.as_str()).collect();
        assert_eq!(used, ["live"]);

        assert_eq!(verifier.write_uses(&store).await.unwrap(), 1);
        assert_eq!(verifier.write_uses(&store).await.unwrap(), 0, "nothing new to write");
        let written = last_use(&store, &live_rec.id).unwrap().unwrap();
        assert!(written.unix_micros() >= before);
        assert_eq!(last_use(&store, &idle_rec.id).unwrap(), None);
        // Another process reads it from the store; the token's own record is untouched.
        let relisted = list(&store, &acme).unwrap();
        assert_eq!(relisted.iter().find(|r| r.name == "live").unwrap().last_used_at.as_ref(), Some(&written));
        assert!(get_json::<serde_json::Value>(&store, &key(&live_rec.id)).unwrap().unwrap()["lastUsedAt"].is_null());

        // A later use is written again.
        std::thread::sleep(Duration::from_millis(2));
        verifier.verify(&store, &live).unwrap();
        assert_eq!(verifier.write_uses(&store).await.unwrap(), 1);
        assert!(last_use(&store, &live_rec.id).unwrap().unwrap().unix_micros() > written.unix_micros());
    }
}
