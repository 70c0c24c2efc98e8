//! Audit records of admin actions (template edits, publishing, token issuance, revocation),
//! written in the same atomic write as the change they describe. Actions on an execution are
//! also recorded on its ledger. Keys `audit/<org>/<uuid v7>` keep them in time order.

use pled_core::{OrgId, RecordedAt};
use pled_store::{Store, WriteSet};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Page, page, put_json};
use crate::auth::Principal;
use crate::error::ApiError;

/// One admin action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Time-ordered id.
    pub id: String,
    /// When.
    #[schema(value_type = String)]
    pub at: RecordedAt,
    /// Who (`jwt:<sub>`, `pat:<id>`, `cli`).
    pub actor: String,
    /// What (`template.created`, `template.published`, `token.issued`, …).
    pub action: String,
    /// On what (a template id, a token id, …).
    pub target: String,
    /// Action-specific details.
    pub details: serde_json::Value,
}

/// Adds an audit record to a write set.
pub fn record(
    ws: WriteSet,
    org: &OrgId,
    actor: &str,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<WriteSet, ApiError> {
    let id = uuid::Uuid::now_v7().hyphenated().to_string();
    let rec = AuditRecord {
        id: id.clone(),
        at: RecordedAt::now(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        details,
    };
    put_json(ws, &format!("audit/{org}/{id}"), &rec)
}

/// Shorthand for a principal's action.
pub fn by(
    ws: WriteSet,
    who: &Principal,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> Result<WriteSet, ApiError> {
    record(ws, &who.org, &who.subject, action, target, details)
}

/// Which audit records to list: all given conditions hold.
#[derive(Debug, Default)]
pub struct AuditFilter {
    /// This action only (`token.issued`, …).
    pub action: Option<String>,
    /// This actor only (`pat:<id>`, `jwt:<sub>`, `cli`).
    pub actor: Option<String>,
    /// On this target only (a template id, a token id, …).
    pub target: Option<String>,
    /// At or after this instant (Unix µs).
    pub since: Option<i64>,
    /// Before this instant (Unix µs).
    pub until: Option<i64>,
}

impl AuditFilter {
    fn keeps(&self, r: &AuditRecord) -> bool {
        let at = || r.at.unix_micros();
        self.action.as_ref().is_none_or(|a| *a == r.action)
            && self.actor.as_ref().is_none_or(|a| *a == r.actor)
            && self.target.as_ref().is_none_or(|t| *t == r.target)
            && self.since.is_none_or(|s| at() >= s)
            && self.until.is_none_or(|u| at() < u)
    }
}

/// A page of the org's audit records that `filter` keeps, oldest first.
pub fn list(
    store: &Store,
    org: &OrgId,
    cursor: Option<&str>,
    limit: Option<usize>,
    filter: &AuditFilter,
) -> Result<Page<AuditRecord>, ApiError> {
    // Ids are UUIDv7, in time order: with `since`, start after every id of earlier milliseconds.
    let start = filter.since.and_then(last_id_before);
    let cursor = match (cursor, start.as_deref()) {
        (Some(c), Some(s)) => Some(c.max(s)),
        (c, s) => c.or(s),
    };
    page(store, &format!("audit/{org}/"), cursor, limit, |r| filter.keeps(r))
}

/// The greatest UUIDv7 of the millisecond before the one of `micros` (none before 1970):
/// every id made in that millisecond or later sorts after it.
fn last_id_before(micros: i64) -> Option<String> {
    let ms = u64::try_from(micros.div_euclid(1000)).ok()?.checked_sub(1)?.min((1 << 48) - 1);
    let mut bytes = [0xffu8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x7f;
    Some(uuid::Uuid::from_bytes(bytes).hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ids_of_a_millisecond_sort_after_the_bound_and_earlier_ones_not_after() {
        let ms = 1_795_312_110_123u64;
        let id_at = |ms: u64| {
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
            uuid::Uuid::new_v7(ts).hyphenated().to_string()
        };
        let bound = last_id_before(ms as i64 * 1000 + 456).unwrap();
        for _ in 0..100 {
            assert!(id_at(ms) > bound && id_at(ms + 1) > bound && id_at(ms - 1) <= bound);
        }
        assert_eq!(last_id_before(0), None);
        assert_eq!(last_id_before(-5), None);
    }
}
