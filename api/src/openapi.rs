//! The OpenAPI document (generated from the handlers with utoipa) and `/docs`, a
//! self-contained page that renders it (no CDN: it works on machines without internet).

use axum::Router;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::{Value, json};
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::error::PROBLEM_JSON;
use crate::state::AppState;

/// The parts of the document not derived from a handler.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "PLED API",
        description = "The system of record for process executions. Errors are RFC 9457 problem documents \
            (application/problem+json). Creating POSTs honour Idempotency-Key. An org over its request \
            rate gets 429 with Retry-After. Authenticate with \
            `Authorization: Bearer <JWT or PLED access token>`; the org comes from the token. See docs/api.md.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "templates", description = "Versioned process templates, compiled to state machines"),
        (name = "rules", description = "Rules turning events into messages"),
        (name = "executions", description = "Executions: start, post events, state, events, messages, tokens, wait"),
        (name = "ledger", description = "The hash-chained ledger, in the auditor's export form"),
        (name = "streams", description = "Live entries and state over SSE and WebSocket"),
        (name = "admin", description = "Access tokens and the audit log"),
        (name = "schedules", description = "Cron schedules that start executions or post events"),
        (name = "hooks", description = "Signed inbound webhooks and their sources"),
        (name = "actions", description = "Action jobs, the action catalog, on-demand actions, webhook secrets"),
        (name = "operations", description = "Health, readiness, metrics"),
    ),
    components(schemas(crate::error::Problem, crate::error::FieldError))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The problem responses the service's layers and extractors can give, with the operations
/// that can meet each. Handlers declare only their own (404 for a missing resource, 409,
/// 422, 429); [`complete`] adds these.
const COMMON_PROBLEMS: &[(&str, &str, Applies)] = &[
    ("400", "Malformed JSON, wrong types, unknown fields, bad path, query or header parameters", Applies::WithInput),
    ("401", "Missing, malformed, invalid, expired or revoked credentials", Applies::Authenticated),
    ("403", "The role does not allow the operation", Applies::Authenticated),
    ("404", "No such resource in the caller's org", Applies::WithPathParameters),
    ("413", "The body is larger than `--body-limit`", Applies::WithBody),
    ("415", "The body is not `application/json`", Applies::WithBody),
    (
        "422",
        "Well-formed but not acceptable; `type` says why (`idempotency_conflict`: the key was used with another body)",
        Applies::WithIdempotencyKey,
    ),
    ("429", RATE_LIMITED, Applies::Authenticated),
    ("500", "A bug or an I/O failure; `traceId` locates it in the server's log", Applies::Always),
    ("503", "The store refuses writes, or the request timed out", Applies::Always),
];

/// The 429 of [`crate::ratelimit`]; an operation's own 429 (too much in progress) says more.
pub(crate) const RATE_LIMITED: &str =
    "`rate_limited`: the org is over `--org-rate-limit`; `Retry-After` says in how many seconds to retry";

#[derive(Clone, Copy)]
enum Applies {
    Always,
    WithInput,
    WithBody,
    WithPathParameters,
    WithIdempotencyKey,
    Authenticated,
}

/// The document served at `/openapi.json`: the one built from the handlers, completed with
/// what no handler states on its own, so that a client generated from it knows every answer
/// the server can give:
/// - every error response is a problem document (`application/problem+json`, `Problem`), and
///   every operation lists the [`COMMON_PROBLEMS`] it can meet (shared `components.responses`);
/// - every response has a description (OpenAPI requires one);
/// - an optional body is an optional `requestBody`, not a body that may be JSON `null`;
/// - unsigned integer parameters range over 0..2^64-1 (utoipa calls them `int64`);
/// - `Idempotency-Key` has the pattern the server checks;
/// - the variants of a tagged enum refuse unknown members, as the server does.
pub(crate) fn complete(spec: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(spec).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let problem_content = json!({ PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } } });
    let global_security = doc["security"].as_array().is_some_and(|s| !s.is_empty());
    let responses = &mut doc["components"]["responses"];
    for (status, description, _) in COMMON_PROBLEMS {
        responses[common_name(status)] = json!({ "description": description, "content": problem_content });
    }
    responses[common_name("429")]["headers"] = json!({ "Retry-After": {
        "description": "Seconds until the org's next request is taken",
        "schema": { "type": "integer", "minimum": 1 },
    }});
    // utoipa keeps `deny_unknown_fields` on structs but drops it on the variants of an
    // internally tagged enum (a schedule's `Target`); every such enum of ours has it.
    let schemas = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut);
    for schema in schemas.into_iter().flat_map(|s| s.values_mut()) {
        let variants = schema.get_mut("oneOf").and_then(Value::as_array_mut).into_iter().flatten();
        for variant in variants.filter_map(Value::as_object_mut).filter(|v| v.contains_key("properties")) {
            variant.entry("additionalProperties").or_insert(json!(false));
        }
    }
    let Some(paths) = doc["paths"].as_object_mut() else { return doc };
    for op in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        // (`op[…]` on a missing member would insert a null: look members up with `get`.)
        let parameters = op.get_mut("parameters").and_then(Value::as_array_mut).map(std::mem::take).unwrap_or_default();
        let parameters: Vec<Value> = parameters.into_iter().map(complete_parameter).collect();
        let has = |place: &str, name: Option<&str>| {
            parameters.iter().any(|p| p["in"] == place && name.is_none_or(|n| p["name"] == n))
        };
        let (with_path, with_key) = (has("path", None), has("header", Some(crate::idempotency::HEADER_NAME)));
        let has_body = op.get("requestBody").is_some();
        let has_input = !parameters.is_empty() || has_body;
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = op.get_mut("requestBody")
            && let Some(schema) = body.pointer_mut("/content/application~1json/schema")
            && let Some([some, null]) = schema.get("oneOf").and_then(Value::as_array).map(Vec::as_slice)
            && null == &json!({ "type": "null" })
        {
            *schema = some.clone();
            body["required"] = json!(false);
        }
        let authenticated = match op.get("security").and_then(Value::as_array) {
            Some(requirements) => requirements.iter().any(|r| r.as_object().is_some_and(|r| !r.is_empty())),
            None => global_security,
        };
        let Some(answers) = op.get_mut("responses").and_then(Value::as_object_mut) else { continue };
        for (status, response) in answers.iter_mut().filter(|(_, r)| r.get("$ref").is_none()) {
            let bare = response["description"].as_str().is_none_or(str::is_empty);
            // A handler naming a common problem without saying more gets the shared answer.
            if bare && COMMON_PROBLEMS.iter().any(|(common, _, _)| common == status) {
                *response = json!({ "$ref": common_ref(status) });
                continue;
            }
            if bare {
                let reason = status.parse().ok().and_then(|s| StatusCode::from_u16(s).ok());
                response["description"] = json!(reason.and_then(|s| s.canonical_reason()).unwrap_or("Answer"));
            }
            if status.as_str() >= "400" {
                response["content"] = problem_content.clone();
            }
        }
        for (status, _, applies) in COMMON_PROBLEMS {
            let meets = match applies {
                Applies::Always => true,
                Applies::WithInput => has_input,
                Applies::WithBody => has_body,
                Applies::WithPathParameters => with_path,
                Applies::WithIdempotencyKey => with_key,
                Applies::Authenticated => authenticated,
            };
            if meets && !answers.contains_key(*status) {
                answers.insert((*status).to_owned(), json!({ "$ref": common_ref(status) }));
            }
        }
    }
    doc
}

fn complete_parameter(mut p: Value) -> Value {
    if p["in"] == "header" && p["name"] == crate::idempotency::HEADER_NAME {
        p["schema"] = json!({ "type": "string", "pattern": crate::idempotency::KEY_PATTERN });
    }
    // utoipa writes u64 as `int64` and usize without a format, both from 0.
    if let Some(schema) = p.get_mut("schema").and_then(Value::as_object_mut)
        && schema.get("type") == Some(&json!("integer"))
        && schema.get("minimum") == Some(&json!(0))
        && schema.get("format").is_none_or(|f| f == "int64")
    {
        schema.remove("format");
        schema.insert("maximum".into(), json!(u64::MAX));
    }
    p
}

fn common_name(status: &str) -> String {
    format!("Problem{status}")
}

fn common_ref(status: &str) -> String {
    format!("#/components/responses/{}", common_name(status))
}

/// `/openapi.json` and `/docs`.
pub(crate) fn docs_routes(spec: &Value) -> Router<AppState> {
    let json = serde_json::to_string_pretty(spec).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    Router::new()
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json).into_response() }),
        )
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
}

const DOCS_PAGE: &str = include_str!("docs.html");
