//! Template records: an editable draft plus immutable published versions.
//! Keys: `tpl/<org>/<id>` (the record), `tplv/<org>/<id>/<version, 10 digits>` (a version),
//! `tpl-use/<org>/<id>/<execution id>` (one per execution started from the template, so
//! deleting a used template is refused without a read-modify-write counter).

use pled_core::{OrgId, RecordedAt};
use pled_engine::Template;
use pled_store::{Store, WriteSet};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Page, get_json, page, put_json, scan_json};
use crate::error::ApiError;

/// A template: its editable draft and the versions published from it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRecord {
    /// Id (UUID v7).
    pub id: String,
    /// Name (from the draft).
    pub name: String,
    /// Description (from the draft).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The editable draft: the template model of docs/templates.md.
    pub draft: Template,
    /// BLAKE3 of the draft's canonical JSON.
    pub draft_hash: String,
    /// Published versions, oldest first.
    pub versions: Vec<VersionSummary>,
    /// When created.
    #[schema(value_type = String)]
    pub created_at: RecordedAt,
    /// When the draft last changed.
    #[schema(value_type = String)]
    pub updated_at: RecordedAt,
    /// Who created it.
    pub created_by: String,
    /// The template it was duplicated from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicated_from: Option<String>,
}

/// A published version, in brief.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    /// 1, 2, 3, …
    pub version: u32,
    /// BLAKE3 of the version's canonical template JSON (pinned by its executions).
    pub template_hash: String,
    /// When published.
    #[schema(value_type = String)]
    pub published_at: RecordedAt,
    /// Who published it.
    pub published_by: String,
}

/// A published, immutable version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateVersion {
    /// The template.
    pub template_id: String,
    /// The version number.
    pub version: u32,
    /// The template as published.
    pub template: Template,
    /// BLAKE3 of its canonical JSON.
    pub template_hash: String,
    /// When published.
    #[schema(value_type = String)]
    pub published_at: RecordedAt,
    /// Who published it.
    pub published_by: String,
}

fn key(org: &OrgId, id: &str) -> String {
    format!("tpl/{org}/{id}")
}

fn version_key(org: &OrgId, id: &str, version: u32) -> String {
    format!("tplv/{org}/{id}/{version:010}")
}

fn use_prefix(org: &OrgId, id: &str) -> String {
    format!("tpl-use/{org}/{id}/")
}

/// One template of the org.
pub fn get(store: &Store, org: &OrgId, id: &str) -> Result<Option<TemplateRecord>, ApiError> {
    get_json(store, &key(org, id))
}

/// Adds a (new or changed) template record to a write set.
pub fn put(ws: WriteSet, org: &OrgId, rec: &TemplateRecord) -> Result<WriteSet, ApiError> {
    put_json(ws, &key(org, &rec.id), rec)
}

/// A page of the org's templates, in id (= creation) order.
pub fn list(
    store: &Store,
    org: &OrgId,
    cursor: Option<&str>,
    limit: Option<usize>,
) -> Result<Page<TemplateRecord>, ApiError> {
    page(store, &format!("tpl/{org}/"), cursor, limit, |_| true)
}

/// One published version.
pub fn get_version(store: &Store, org: &OrgId, id: &str, version: u32) -> Result<Option<TemplateVersion>, ApiError> {
    get_json(store, &version_key(org, id, version))
}

/// Adds a published version to a write set.
pub fn put_version(ws: WriteSet, org: &OrgId, v: &TemplateVersion) -> Result<WriteSet, ApiError> {
    put_json(ws, &version_key(org, &v.template_id, v.version), v)
}

/// Removes a template and its versions.
pub fn delete(ws: WriteSet, org: &OrgId, rec: &TemplateRecord) -> WriteSet {
    let mut ws = ws.delete(pled_store::Table::Meta, key(org, &rec.id).into_bytes());
    for v in &rec.versions {
        ws = ws.delete(pled_store::Table::Meta, version_key(org, &rec.id, v.version).into_bytes());
    }
    ws
}

/// Records that an execution runs from the template.
pub fn mark_used(ws: WriteSet, org: &OrgId, id: &str, execution: &str) -> Result<WriteSet, ApiError> {
    put_json(ws, &format!("{}{execution}", use_prefix(org, id)), &serde_json::json!({}))
}

/// Whether any execution runs from the template.
pub fn in_use(store: &Store, org: &OrgId, id: &str) -> Result<bool, ApiError> {
    Ok(!scan_json::<serde_json::Value>(store, &use_prefix(org, id), None, 1)?.is_empty())
}
