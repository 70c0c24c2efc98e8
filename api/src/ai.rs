//! Outputs of AI rules: looked up in a per-org cache by input hash, else asked of the
//! configured provider (an OpenAI-compatible chat-completions endpoint) and cached in the same
//! write as the event they serve. Replay reads the cache and never calls a model, so an AI
//! rule replays to the message it produced.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use pled_core::{OrgId, RecordedAt};
use pled_engine::{AiOutputs, AiRequest};
use pled_store::{Store, WriteSet};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::repo::{get_json, put_json};

/// A model that completes prompts.
pub trait AiProvider: Send + Sync {
    /// The model's output for a request: a JSON value (an object becomes message data as is;
    /// anything else is wrapped as `{"text": ...}`).
    fn complete<'a>(&'a self, req: &'a AiRequest) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>>;
}

/// A cached output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedOutput {
    /// Model.
    pub model: String,
    /// Prompt, placeholders filled.
    pub prompt: String,
    /// Evaluated inputs.
    pub inputs: Value,
    /// The output.
    pub output: Value,
    /// When it was produced.
    pub at: RecordedAt,
}

fn key(org: &OrgId, input_hash: &str) -> String {
    format!("ai/{org}/{input_hash}")
}

/// Resolves an event's AI requests: this group's fresh outputs, then the cache, then the
/// provider. New outputs are added to `ws` and to `fresh`. A request nobody can answer is left
/// out (the engine records `rule.failed` for it).
pub async fn resolve(
    store: &Store,
    provider: Option<&dyn AiProvider>,
    org: &OrgId,
    requests: &[AiRequest],
    fresh: &mut HashMap<String, Value>,
    ws: &mut WriteSet,
) -> Result<AiOutputs, ApiError> {
    let mut out = AiOutputs::new();
    for r in requests {
        if let Some(v) = fresh.get(&r.input_hash) {
            out.insert(r.input_hash.clone(), v.clone());
            continue;
        }
        if let Some(c) = get_json::<CachedOutput>(store, &key(org, &r.input_hash))? {
            out.insert(r.input_hash.clone(), c.output);
            continue;
        }
        let Some(p) = provider else { continue };
        match p.complete(r).await {
            Ok(output) => {
                let output = if output.is_object() { output } else { json!({ "text": output }) };
                let cached = CachedOutput {
                    model: r.model.clone(),
                    prompt: r.prompt.clone(),
                    inputs: r.inputs.clone(),
                    output: output.clone(),
                    at: RecordedAt::now(),
                };
                *ws = put_json(std::mem::take(ws), &key(org, &r.input_hash), &cached)?;
                fresh.insert(r.input_hash.clone(), output.clone());
                out.insert(r.input_hash.clone(), output);
            }
            Err(e) => {
                tracing::warn!(rule = %r.rule_id, error = %e, "AI provider failed; the rule is recorded as failed")
            }
        }
    }
    Ok(out)
}

/// An OpenAI-compatible chat-completions endpoint. The API key comes from `PLED_AI_API_KEY`.
pub struct HttpProvider {
    client: reqwest::Client,
    endpoint: String,
    api_key: Option<String>,
}

impl HttpProvider {
    /// A provider at `endpoint` (e.g. `http://127.0.0.1:11434/v1/chat/completions`).
    pub fn new(endpoint: String, api_key: Option<String>) -> Self {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build().unwrap_or_default();
        Self { client, endpoint, api_key }
    }
}

impl AiProvider for HttpProvider {
    fn complete<'a>(&'a self, req: &'a AiRequest) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>> {
        Box::pin(async move {
            let body = json!({ "model": req.model, "messages": [{ "role": "user", "content": req.prompt }], "temperature": 0 });
            let mut call = self.client.post(&self.endpoint).json(&body);
            if let Some(k) = &self.api_key {
                call = call.bearer_auth(k);
            }
            let res = call.send().await.map_err(|e| e.to_string())?;
            let status = res.status();
            let v: Value = res.json().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("provider answered {status}: {v}"));
            }
            let text =
                v["choices"][0]["message"]["content"].as_str().ok_or("no choices[0].message.content in the answer")?;
            Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
        })
    }
}
