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

/// A page of the org's audit records, oldest first.
pub fn list(
    store: &Store,
    org: &OrgId,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<AuditRecord>, ApiError> {
    page(store, &format!("audit/{org}/"), cursor, limit, |_| true)
}
