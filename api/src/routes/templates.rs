//! Templates: create, read, edit the draft, publish immutable versions, compile, duplicate,
//! delete; rules and rule tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use pled_core::RecordedAt;
use pled_engine::{Machine, Rule, Template, ValidationReport, compile, template_hash};
use pled_store::WriteSet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageQuery;
use crate::auth::{Permission, Principal};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, parse_json};
use crate::idempotency::{self, Created, Idempotency};
use crate::repo::templates::{self as repo, TemplateRecord, TemplateVersion, VersionSummary};
use crate::repo::{Page, audit};
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_template, list_templates))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(publish_version, list_versions))
        .routes(routes!(get_version))
        .routes(routes!(compile_template))
        .routes(routes!(duplicate_template))
        .routes(routes!(add_rule))
        .routes(routes!(test_rule))
}

/// A template with the validation report of its draft.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TemplateView {
    #[serde(flatten)]
    template: TemplateRecord,
    /// Problems of the draft, with JSON paths (a draft may have errors; publishing needs none).
    #[schema(value_type = Object)]
    validation: ValidationReport,
}

fn view(template: TemplateRecord) -> TemplateView {
    let validation = validation(&template);
    TemplateView { template, validation }
}

/// The draft's validation report. Compiling is a pure function of the draft, and the record
/// carries the draft's hash, so reports are remembered by that hash: reading a template does
/// not compile it again (a compile is hundreds of microseconds for a real template).
fn validation(template: &TemplateRecord) -> ValidationReport {
    const REMEMBERED: usize = 1024;
    static REPORTS: OnceLock<Mutex<HashMap<String, ValidationReport>>> = OnceLock::new();
    let reports = REPORTS.get_or_init(Mutex::default);
    if let Some(r) = reports.lock().unwrap_or_else(|p| p.into_inner()).get(&template.draft_hash) {
        return r.clone();
    }
    let report = compile(&template.draft).report;
    let mut reports = reports.lock().unwrap_or_else(|p| p.into_inner());
    if reports.len() >= REMEMBERED {
        reports.clear();
    }
    reports.insert(template.draft_hash.clone(), report.clone());
    report
}

fn to_json<T: Serialize>(v: &T) -> ApiResult<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| ApiError::Internal(e.to_string()))
}

fn hash_of(t: &Template) -> ApiResult<String> {
    template_hash(t).map_err(|e| ApiError::bad_field("/", e.to_string()))
}

fn load(s: &AppState, who: &Principal, id: &str) -> ApiResult<TemplateRecord> {
    repo::get(&s.store, &who.org, id)?.ok_or_else(|| ApiError::not_found("template", id))
}

fn new_record(who: &Principal, draft: Template, duplicated_from: Option<String>) -> ApiResult<TemplateRecord> {
    let now = RecordedAt::now();
    Ok(TemplateRecord {
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        name: draft.name.clone(),
        description: draft.description.clone(),
        draft_hash: hash_of(&draft)?,
        draft,
        versions: Vec::new(),
        created_at: now.clone(),
        updated_at: now,
        created_by: who.subject.clone(),
        duplicated_from,
    })
}

fn created(who: &Principal, rec: &TemplateRecord, action: &str, details: serde_json::Value) -> ApiResult<Created> {
    let ws = repo::put(WriteSet::new(), &who.org, rec)?;
    let ws = audit::by(ws, who, action, &rec.id, details)?;
    Ok(Created {
        status: StatusCode::CREATED,
        body: to_json(&view(rec.clone()))?,
        location: Some(format!("/v1/templates/{}", rec.id)),
        writes: ws,
    })
}

/// Create a template. The body is the template model (docs/templates.md); the draft is
/// stored even if it does not compile yet, with its validation report.
#[utoipa::path(post, path = "/v1/templates", tag = "templates",
    request_body(content = Template, description = "A template (docs/templates.md); a draft may have errors"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    responses((status = 201, body = TemplateView), (status = 400, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub(crate) async fn create_template(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    body: ApiJson<Template>,
) -> ApiResult<Response> {
    who.require(Permission::EditTemplates)?;
    let idem = Idempotency::from_request(&headers, &who.org, "templates", "/v1/templates", &body.raw)?;
    let draft = body.value;
    ApiError::check_text("/name", &draft.name, 200)?;
    idempotency::create(&s, idem, || async move {
        let rec = new_record(&who, draft, None)?;
        created(&who, &rec, "template.created", serde_json::json!({ "name": rec.name }))
    })
    .await
}

/// The org's templates, in creation order.
#[utoipa::path(get, path = "/v1/templates", tag = "templates", params(PageQuery),
    responses((status = 200, body = Page<TemplateRecord>)))]
pub(crate) async fn list_templates(
    State(s): State<AppState>,
    who: Principal,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<axum::Json<Page<TemplateRecord>>> {
    who.require(Permission::Read)?;
    Ok(axum::Json(repo::list(&s.store, &who.org, q.cursor.as_deref(), q.limit)?))
}

/// One template, with its draft's validation report.
#[utoipa::path(get, path = "/v1/templates/{id}", tag = "templates", params(("id" = String, Path)),
    responses((status = 200, body = TemplateView), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_template(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<TemplateView>> {
    who.require(Permission::Read)?;
    Ok(axum::Json(view(load(&s, &who, &id)?)))
}

/// Replace the draft. Published versions never change.
#[utoipa::path(put, path = "/v1/templates/{id}", tag = "templates", params(("id" = String, Path)),
    request_body(content = Template, description = "A template (docs/templates.md); a draft may have errors"),
    responses((status = 200, body = TemplateView), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn update_template(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<Template>,
) -> ApiResult<axum::Json<TemplateView>> {
    who.require(Permission::EditTemplates)?;
    ApiError::check_text("/name", &body.value.name, 200)?;
    let _guard = s.locks.lock(&format!("tpl/{}/{id}", who.org)).await;
    let mut rec = load(&s, &who, &id)?;
    let draft = body.value;
    rec.draft_hash = hash_of(&draft)?;
    rec.name = draft.name.clone();
    rec.description = draft.description.clone();
    rec.draft = draft;
    rec.updated_at = RecordedAt::now();
    let ws = repo::put(WriteSet::new(), &who.org, &rec)?;
    let ws = audit::by(ws, &who, "template.updated", &id, serde_json::json!({ "draftHash": rec.draft_hash }))?;
    s.store.write(ws).await?;
    Ok(axum::Json(view(rec)))
}

/// Delete a template that no execution uses (409 otherwise).
#[utoipa::path(delete, path = "/v1/templates/{id}", tag = "templates", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn delete_template(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    who.require(Permission::EditTemplates)?;
    let _guard = s.locks.lock(&format!("tpl/{}/{id}", who.org)).await;
    let rec = load(&s, &who, &id)?;
    if repo::in_use(&s.store, &who.org, &id)? {
        return Err(ApiError::conflict(format!("template {id} is used by executions and cannot be deleted")));
    }
    let ws = repo::delete(WriteSet::new(), &who.org, &rec);
    let ws = audit::by(ws, &who, "template.deleted", &id, serde_json::json!({ "name": rec.name }))?;
    s.store.write(ws).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What to publish.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct PublishRequest {
    /// Publish only if the draft still has this hash (guards against publishing someone
    /// else's newer edit).
    expected_draft_hash: Option<String>,
}

fn report_errors(report: &ValidationReport) -> Vec<FieldError> {
    report
        .errors()
        .map(|p| FieldError { path: p.path.clone(), message: format!("{}: {}", p.code, p.message) })
        .collect()
}

/// Publish the current draft as the next immutable version. The draft must compile
/// without errors (422 with every problem otherwise).
#[utoipa::path(post, path = "/v1/templates/{id}/versions", tag = "templates", params(("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    request_body(content = Option<PublishRequest>, description = "Optional; an empty body publishes the current draft"),
    responses((status = 201, body = TemplateVersion), (status = 404, body = crate::error::Problem),
        (status = 409, description = "`expectedDraftHash` is not the draft's hash", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub(crate) async fn publish_version(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> ApiResult<Response> {
    who.require(Permission::EditTemplates)?;
    let req: PublishRequest =
        if body.iter().all(u8::is_ascii_whitespace) { PublishRequest::default() } else { parse_json(&body)? };
    let path = format!("/v1/templates/{id}/versions");
    let idem = Idempotency::from_request(&headers, &who.org, &format!("publish:{id}"), &path, &body)?;
    let lock = format!("tpl/{}/{id}", who.org);
    idempotency::create_holding(&s, idem, Some(&lock), || async {
        let mut rec = load(&s, &who, &id)?;
        if let Some(expected) = &req.expected_draft_hash
            && expected != &rec.draft_hash
        {
            return Err(ApiError::conflict(format!("the draft changed: its hash is now {}", rec.draft_hash)));
        }
        let compiled = compile(&rec.draft);
        if !compiled.report.is_ok() {
            return Err(ApiError::Unprocessable {
                code: "validation_failed",
                detail: format!("the draft does not compile ({} errors)", compiled.report.errors().count()),
                errors: report_errors(&compiled.report),
            });
        }
        let version = rec.versions.last().map_or(1, |v| v.version + 1);
        let now = RecordedAt::now();
        let v = TemplateVersion {
            template_id: id.clone(),
            version,
            template: rec.draft.clone(),
            template_hash: rec.draft_hash.clone(),
            published_at: now.clone(),
            published_by: who.subject.clone(),
        };
        rec.versions.push(VersionSummary {
            version,
            template_hash: v.template_hash.clone(),
            published_at: now,
            published_by: who.subject.clone(),
        });
        let ws = repo::put_version(WriteSet::new(), &who.org, &v)?;
        let ws = repo::put(ws, &who.org, &rec)?;
        let ws = audit::by(
            ws,
            &who,
            "template.published",
            &id,
            serde_json::json!({ "version": version, "templateHash": v.template_hash }),
        )?;
        Ok(Created {
            status: StatusCode::CREATED,
            body: to_json(&v)?,
            location: Some(format!("{path}/{version}")),
            writes: ws,
        })
    })
    .await
}

/// The template's published versions.
#[utoipa::path(get, path = "/v1/templates/{id}/versions", tag = "templates", params(("id" = String, Path)),
    responses((status = 200, body = Vec<VersionSummary>), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn list_versions(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<Vec<VersionSummary>>> {
    who.require(Permission::Read)?;
    Ok(axum::Json(load(&s, &who, &id)?.versions))
}

/// One published version.
#[utoipa::path(get, path = "/v1/templates/{id}/versions/{version}", tag = "templates",
    params(("id" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = TemplateVersion), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn get_version(
    State(s): State<AppState>,
    who: Principal,
    ApiPath((id, version)): ApiPath<(String, u32)>,
) -> ApiResult<axum::Json<TemplateVersion>> {
    who.require(Permission::Read)?;
    repo::get_version(&s.store, &who.org, &id, version)?
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found("template version", format!("{id}/{version}")))
}

/// Which template text to use.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionQuery {
    /// A published version (default: the draft).
    version: Option<u32>,
}

/// The compiled machine and the validation report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CompileView {
    /// The canonical state machine; absent when the template has errors.
    #[schema(value_type = Option<Object>)]
    machine: Option<serde_json::Value>,
    /// Every problem, with its JSON path.
    #[schema(value_type = Object)]
    report: ValidationReport,
    /// BLAKE3 of the compiled template's canonical JSON.
    template_hash: String,
}

async fn template_text(s: &AppState, who: &Principal, id: &str, version: Option<u32>) -> ApiResult<Template> {
    match version {
        None => Ok(load(s, who, id)?.draft),
        Some(v) => Ok(repo::get_version(&s.store, &who.org, id, v)?
            .ok_or_else(|| ApiError::not_found("template version", format!("{id}/{v}")))?
            .template),
    }
}

/// Compile the draft (or a version) into a state machine, with a validation report listing
/// every problem with its JSON path.
#[utoipa::path(get, path = "/v1/templates/{id}/compile", tag = "templates", params(("id" = String, Path), VersionQuery),
    responses((status = 200, body = CompileView), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn compile_template(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult<axum::Json<CompileView>> {
    who.require(Permission::Read)?;
    let t = template_text(&s, &who, &id, q.version).await?;
    let compiled = compile(&t);
    Ok(axum::Json(CompileView {
        machine: compiled.machine.as_ref().map(Machine::describe),
        report: compiled.report,
        template_hash: hash_of(&t)?,
    }))
}

/// A duplicate's name.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DuplicateRequest {
    /// Name of the copy, 1-200 characters (default: "<name> (copy)").
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: Option<String>,
}

/// Copy a template's draft (or a version) into a new template.
#[utoipa::path(post, path = "/v1/templates/{id}/duplicate", tag = "templates",
    params(("id" = String, Path), VersionQuery, ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    request_body(content = Option<DuplicateRequest>, description = "Optional"),
    responses((status = 201, body = TemplateView), (status = 404, body = crate::error::Problem)))]
pub(crate) async fn duplicate_template(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    who.require(Permission::EditTemplates)?;
    let req: DuplicateRequest =
        if body.iter().all(u8::is_ascii_whitespace) { DuplicateRequest::default() } else { parse_json(&body)? };
    let idem = Idempotency::from_request(
        &headers,
        &who.org,
        &format!("duplicate:{id}"),
        &format!("/v1/templates/{id}/duplicate"),
        &body,
    )?;
    idempotency::create(&s, idem, || async {
        let mut draft = template_text(&s, &who, &id, q.version).await?;
        draft.name = req.name.clone().unwrap_or_else(|| format!("{} (copy)", draft.name));
        ApiError::check_text("/name", &draft.name, 200)?;
        let rec = new_record(&who, draft, Some(id.clone()))?;
        created(&who, &rec, "template.duplicated", serde_json::json!({ "from": id, "version": q.version }))
    })
    .await
}

/// Add a rule to the draft (409 if a rule with its id exists).
#[utoipa::path(post, path = "/v1/templates/{id}/rules", tag = "rules",
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for the same body")),
    request_body(content = Rule, description = "A rule (docs/templates.md#rules)"),
    responses((status = 201, body = TemplateView), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub(crate) async fn add_rule(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    body: ApiJson<Rule>,
) -> ApiResult<Response> {
    who.require(Permission::EditTemplates)?;
    let idem = Idempotency::from_request(
        &headers,
        &who.org,
        &format!("rules:{id}"),
        &format!("/v1/templates/{id}/rules"),
        &body.raw,
    )?;
    let lock = format!("tpl/{}/{id}", who.org);
    let rule = body.value;
    idempotency::create_holding(&s, idem, Some(&lock), || async {
        let mut rec = load(&s, &who, &id)?;
        if rec.draft.rules.iter().any(|r| r.id == rule.id) {
            return Err(ApiError::conflict(format!("the draft already has a rule {:?}", rule.id)));
        }
        let rule_id = rule.id.clone();
        rec.draft.rules.push(rule);
        rec.draft_hash = hash_of(&rec.draft)?;
        rec.updated_at = RecordedAt::now();
        let ws = repo::put(WriteSet::new(), &who.org, &rec)?;
        let ws = audit::by(ws, &who, "template.rule_added", &id, serde_json::json!({ "ruleId": rule_id }))?;
        Ok(Created {
            status: StatusCode::CREATED,
            body: to_json(&view(rec))?,
            location: Some(format!("/v1/rules/{id}:{rule_id}")),
            writes: ws,
        })
    })
    .await
}

/// A sample event for a rule test.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SampleEvent {
    /// Event type.
    #[serde(rename = "type")]
    kind: String,
    /// Payload (a JSON object).
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    /// Sender (default `rule-test`).
    source: Option<String>,
    /// When it happened, as the sender says.
    occurred_at: Option<String>,
}

/// A rule test.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RuleTest {
    /// The event to run the rule on.
    #[serde(deserialize_with = "pled_core::de::object")]
    event: SampleEvent,
    /// Variable values (default: the template's defaults).
    #[serde(default)]
    #[schema(value_type = Object)]
    vars: BTreeMap<String, serde_json::Value>,
    /// A published version (default: the draft).
    version: Option<u32>,
    /// For AI rules: model outputs by input hash.
    #[serde(default)]
    #[schema(value_type = Object)]
    ai_outputs: BTreeMap<String, serde_json::Value>,
}

/// Messages a rule derived.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RuleTestResult {
    /// Zero or more messages.
    #[schema(value_type = Vec<Object>)]
    messages: Vec<pled_engine::Message>,
}

/// Run one rule on a sample event and return the messages it derives. The rule is named
/// `<template id>:<rule id>`. Nothing is written.
#[utoipa::path(post, path = "/v1/rules/{rule}/test", tag = "rules", params(("rule" = String, Path, description = "<template id>:<rule id>", pattern = "^[^:]+:.+$")),
    request_body = RuleTest,
    responses((status = 200, body = RuleTestResult), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub(crate) async fn test_rule(
    State(s): State<AppState>,
    who: Principal,
    ApiPath(rule): ApiPath<String>,
    body: ApiJson<RuleTest>,
) -> ApiResult<axum::Json<RuleTestResult>> {
    who.require(Permission::Read)?;
    let (template_id, rule_id) =
        rule.split_once(':').ok_or_else(|| ApiError::bad_field("rule", "must be <template id>:<rule id>"))?;
    let t = template_text(&s, &who, template_id, body.value.version).await?;
    let compiled = compile(&t);
    let machine = compiled.machine.ok_or_else(|| ApiError::Unprocessable {
        code: "validation_failed",
        detail: "the template does not compile".into(),
        errors: report_errors(&compiled.report),
    })?;
    let req = body.value;
    let event = pled_engine::Event {
        event_seq: 1,
        r#type: req.event.kind,
        payload: req.event.payload,
        source: req.event.source.unwrap_or_else(|| "rule-test".into()),
        occurred_at: req.event.occurred_at,
        received_at: RecordedAt::now().to_string(),
    };
    let mut vars: BTreeMap<String, serde_json::Value> =
        t.variables.iter().map(|v| (v.name.clone(), v.default.clone().unwrap_or(serde_json::Value::Null))).collect();
    vars.extend(req.vars);
    let messages = machine.test_rule_with_ai(rule_id, &event, &vars, &req.ai_outputs).map_err(|e| match e {
        pled_engine::EngineError::UnknownRule(_) => ApiError::not_found("rule", &rule),
        other => ApiError::Unprocessable { code: "rule_failed", detail: other.to_string(), errors: vec![] },
    })?;
    Ok(axum::Json(RuleTestResult { messages }))
}
