//! `emit_event`: posts an event to this execution or another one of the same org, through
//! the normal ingest path (its lane, its rules, its state machine).
//!
//! Input: `{type, payload?, executionId?, source?}`; `payload` defaults to `{}`, `executionId`
//! to the job's own execution, `source` to `action:<actionId>`. The post carries the
//! idempotency key `pled-action:<job id>`, so an attempt repeated after a crash applies the
//! event once. An execution of another org is never reached: it is "not found", like a
//! missing one, and the job fails.

use futures_util::future::BoxFuture;
use pled_core::{ExecutionId, OrgId};
use serde_json::{Value, json};

use super::{ActionType, Context, Outcome, only, text};
use crate::error::ApiError;
use crate::idempotency::Idempotency;
use crate::lanes::NewEvent;

/// The `emit_event` type.
pub struct EmitEvent;

impl ActionType for EmitEvent {
    fn name(&self) -> &'static str {
        "emit_event"
    }

    fn description(&self) -> &'static str {
        "Posts an event to this execution or another execution of the same org (applied once per job, whatever the retries)."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["type"],
            "additionalProperties": false,
            "properties": {
                "type": {"type": "string", "minLength": 1, "description": "The event type"},
                "payload": {"type": "object", "description": "The event payload (default {})"},
                "executionId": {"type": "string", "description": "The target execution, of the same org (default: this one)"},
                "source": {"type": "string", "description": "The event's source (default action:<actionId>)"}
            }
        })
    }

    fn check(&self, input: &Value) -> Result<(), String> {
        only(input, &["type", "payload", "executionId", "source"])?;
        if text(input, "type")?.is_none_or(str::is_empty) {
            return Err("/type is required".into());
        }
        text(input, "source")?;
        if let Some(id) = text(input, "executionId")? {
            id.parse::<ExecutionId>().map_err(|_| format!("/executionId {id:?} is not an execution id"))?;
        }
        match input.get("payload") {
            None | Some(Value::Null | Value::Object(_)) => Ok(()),
            Some(_) => Err("/payload must be an object".into()),
        }
    }

    fn run<'a>(&'a self, cx: Context<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(run(cx))
    }
}

async fn run(cx: Context<'_>) -> Outcome {
    let input = &cx.job.input;
    let target = text(input, "executionId").ok().flatten().unwrap_or(&cx.job.execution_id).to_owned();
    let kind = text(input, "type").ok().flatten().unwrap_or_default().to_owned();
    let source = match text(input, "source").ok().flatten() {
        Some(s) => s.to_owned(),
        None => format!("action:{}", cx.job.action_id),
    };
    let payload = input.get("payload").filter(|p| p.is_object()).cloned().unwrap_or_else(|| json!({}));
    let (Ok(org), Ok(id)) = (OrgId::new(&cx.job.org), target.parse::<ExecutionId>()) else {
        return Outcome::failed(format!("execution {target} not found"));
    };
    let record = match crate::repo::executions::get(cx.store, &org, id) {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::failed(format!("execution {target} not found")),
        Err(e) => return Outcome::retry(e.to_string()),
    };
    let body = json!({"type": kind, "payload": payload, "source": source});
    let mut headers = axum::http::HeaderMap::new();
    let key = format!("pled-action:{}", cx.job.id);
    let Ok(v) = key.parse() else {
        return Outcome::failed("the job id is not a valid idempotency key");
    };
    headers.insert(crate::idempotency::HEADER, v);
    let path = format!("/v1/executions/{target}/events");
    let raw = serde_json::to_vec(&body).unwrap_or_default();
    let idem = match Idempotency::from_request(&headers, &org, &format!("events:{target}"), &path, &raw) {
        Ok(i) => i,
        Err(e) => return Outcome::failed(e.to_string()),
    };
    let event = NewEvent { kind, payload, source, occurred_at: None };
    match cx.lanes.ingest(&record, vec![event], false, idem).await {
        Ok(a) => {
            let body = a.value();
            Outcome::Succeeded {
                response: json!({
                    "executionId": target,
                    "eventSeq": body.get("eventSeq"),
                    "headSeq": body.get("headSeq"),
                    "replayed": a.replayed,
                }),
                status: None,
            }
        }
        Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => Outcome::retry(e.to_string()),
        Err(e) => Outcome::failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked() {
        let t = EmitEvent;
        assert!(t.check(&json!({"type": "x"})).is_ok());
        assert!(t.check(&json!({"type": "x", "payload": {"a": 1}, "source": "s"})).is_ok());
        for bad in [
            json!({}),
            json!({"type": ""}),
            json!({"type": "x", "payload": 1}),
            json!({"type": "x", "executionId": "nope"}),
            json!({"type": "x", "other": 1}),
        ] {
            assert!(t.check(&bad).is_err(), "{bad}");
        }
    }
}
