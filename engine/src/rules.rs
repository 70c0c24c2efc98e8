//! Rules: an event becomes messages.
//!
//! Rules whose `on` equals the event type run in template order, all against the variables
//! as they were when the event arrived. A CEL rule whose `when` holds emits one message; an AI
//! rule emits the model output the service resolved for its input hash. A rule that fails is
//! recorded (`rule.failed`) and the other rules still run. An event type that no rule
//! handles passes through as one message `{type: event.type, data: event.payload}`.

use std::collections::BTreeMap;

use pled_core::Body;
use serde_json::{Value, json};

use crate::EngineError;
use crate::expr::Scope;
use crate::machine::{CEmit, CRule, CRuleBody, Machine};
use crate::model::{AiOutputs, AiProvenance, AiRequest, Event, ExecState, Message};
use crate::step::{Balances, load_state, scope_for};

/// What one rule did with an event.
#[derive(Debug)]
pub(crate) enum RuleResult {
    /// It emitted a message (its `index` is set by the caller).
    Message(Message),
    /// It failed.
    Failed { rule_id: String, stage: String, expression: Option<String>, error: String },
}

/// AI rules either collect their requests or use resolved outputs.
pub(crate) enum AiMode<'a> {
    Collect(&'a mut Vec<AiRequest>),
    Outputs(&'a AiOutputs),
}

impl RuleResult {
    fn failed(rule: &CRule, stage: impl Into<String>, expression: Option<&str>, error: String) -> Self {
        RuleResult::Failed {
            rule_id: rule.id.clone(),
            stage: stage.into(),
            expression: expression.map(str::to_owned),
            error,
        }
    }
}

impl Machine {
    /// Runs the rules for an event. Results are in rule order; messages are numbered from 0.
    pub(crate) fn derive(
        &self,
        scope: &Scope<'_>,
        event: &Event,
        payload: &Value,
        mut ai: AiMode<'_>,
    ) -> Vec<RuleResult> {
        let Some(rules) = self.rules_by_on.get(&event.r#type) else {
            return vec![RuleResult::Message(Message {
                index: 0,
                r#type: event.r#type.clone(),
                data: payload.clone(),
                rule_id: None,
                deterministic: true,
                ai: None,
            })];
        };
        let mut out = Vec::new();
        for &r in rules {
            if let Some(result) = self.run_rule(&self.rules[r], scope, payload, &mut ai) {
                out.push(result);
            }
        }
        let mut index = 0;
        for result in &mut out {
            if let RuleResult::Message(m) = result {
                m.index = index;
                index += 1;
            }
        }
        out
    }

    /// One rule; `None` when its `when` is false (or, collecting, for every AI rule).
    fn run_rule(&self, rule: &CRule, scope: &Scope<'_>, payload: &Value, ai: &mut AiMode<'_>) -> Option<RuleResult> {
        if let Some(when) = &rule.when {
            match scope.eval_bool(when) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(RuleResult::failed(rule, "when", Some(when.source()), e)),
            }
        }
        let message = |data: Value, ai: Option<AiProvenance>| Message {
            index: 0,
            r#type: rule.emit_type.clone(),
            data,
            rule_id: Some(rule.id.clone()),
            deterministic: ai.is_none(),
            ai,
        };
        match &rule.body {
            CRuleBody::Cel(CEmit::Payload) => Some(RuleResult::Message(message(payload.clone(), None))),
            CRuleBody::Cel(CEmit::Expr(e)) => Some(match scope.eval_json(e) {
                Ok(data @ Value::Object(_)) => RuleResult::Message(message(data, None)),
                Ok(other) => RuleResult::failed(
                    rule,
                    "emit.data",
                    Some(e.source()),
                    format!("emit.data must evaluate to a map, got {}", json_kind(&other)),
                ),
                Err(err) => RuleResult::failed(rule, "emit.data", Some(e.source()), err),
            }),
            CRuleBody::Cel(CEmit::Fields(fields)) => {
                let mut data = serde_json::Map::new();
                for (k, e) in fields {
                    match scope.eval_json(e) {
                        Ok(v) => {
                            data.insert(k.clone(), v);
                        }
                        Err(err) => {
                            return Some(RuleResult::failed(rule, format!("emit.data.{k}"), Some(e.source()), err));
                        }
                    }
                }
                Some(RuleResult::Message(message(Value::Object(data), None)))
            }
            CRuleBody::Ai { model, prompt, inputs } => {
                let mut evaluated = BTreeMap::new();
                for (k, e) in inputs {
                    match scope.eval_json(e) {
                        Ok(v) => {
                            evaluated.insert(k.clone(), v);
                        }
                        Err(err) => {
                            return Some(RuleResult::failed(rule, format!("inputs.{k}"), Some(e.source()), err));
                        }
                    }
                }
                let prompt = render_prompt(prompt, &evaluated);
                let inputs = Value::Object(evaluated.into_iter().collect());
                let input_hash = match ai_input_hash(model, &prompt, &inputs) {
                    Ok(h) => h,
                    Err(e) => return Some(RuleResult::failed(rule, "inputs", None, e.to_string())),
                };
                match ai {
                    AiMode::Collect(requests) => {
                        requests.push(AiRequest {
                            rule_id: rule.id.clone(),
                            model: model.clone(),
                            prompt,
                            inputs,
                            input_hash,
                        });
                        None
                    }
                    AiMode::Outputs(outputs) => {
                        let Some(output) = outputs.get(&input_hash) else {
                            return Some(RuleResult::failed(
                                rule,
                                "ai.output",
                                None,
                                format!("no model output was provided for input hash {input_hash} (model {model:?})"),
                            ));
                        };
                        let output = match canonical_any(output) {
                            Ok(v) => v,
                            Err(e) => {
                                return Some(RuleResult::failed(rule, "ai.output", None, e.to_string()));
                            }
                        };
                        let provenance = AiProvenance { model: model.clone(), prompt, inputs, input_hash };
                        Some(RuleResult::Message(message(output, Some(provenance))))
                    }
                }
            }
        }
    }

    /// The model calls an event needs: one per AI rule for this event type whose `when`
    /// holds and whose inputs evaluate, in rule order. The service resolves each (cache, or
    /// provider) and passes the outputs to [`Machine::process_event`] by input hash.
    pub fn ai_requests(&self, state: &ExecState, event: &Event) -> Result<Vec<AiRequest>, EngineError> {
        let mut requests = Vec::new();
        let Some(rules) = self.rules_by_on.get(&event.r#type) else {
            return Ok(requests);
        };
        if !rules.iter().any(|&r| matches!(self.rules[r].body, CRuleBody::Ai { .. })) {
            return Ok(requests);
        }
        let (_, balances) = load_state(self, state)?;
        let (payload, _) = event.canonical_payload()?;
        let event_record = event.cel_record(&payload);
        let scope = scope_for(&state.vars, &state.state, Some(&event_record), None, &balances);
        for &r in rules {
            let rule = &self.rules[r];
            if matches!(rule.body, CRuleBody::Ai { .. }) {
                self.run_rule(rule, &scope, &payload, &mut AiMode::Collect(&mut requests));
            }
        }
        Ok(requests)
    }

    /// Runs one rule against an event and variables (for `POST /v1/rules/:id/test`). `state`
    /// is bound to the initial state id and `balances` to `{}`. An event of another type
    /// gives no message; a failing rule is an [`EngineError::RuleFailed`]. AI rules need
    /// their output: see [`Machine::test_rule_with_ai`].
    pub fn test_rule(
        &self,
        rule_id: &str,
        event: &Event,
        vars: &BTreeMap<String, Value>,
    ) -> Result<Vec<Message>, EngineError> {
        self.test_rule_with_ai(rule_id, event, vars, &AiOutputs::new())
    }

    /// [`Machine::test_rule`] with model outputs for AI rules.
    pub fn test_rule_with_ai(
        &self,
        rule_id: &str,
        event: &Event,
        vars: &BTreeMap<String, Value>,
        ai: &AiOutputs,
    ) -> Result<Vec<Message>, EngineError> {
        let rule = self
            .rule_index
            .get(rule_id)
            .map(|&i| &self.rules[i])
            .ok_or_else(|| EngineError::UnknownRule(rule_id.to_owned()))?;
        let (payload, _) = event.canonical_payload()?;
        if rule.on != event.r#type {
            return Ok(Vec::new());
        }
        let event_record = event.cel_record(&payload);
        let no_balances = Balances::new();
        let scope = scope_for(vars, self.initial_state_id(), Some(&event_record), None, &no_balances);
        match self.run_rule(rule, &scope, &payload, &mut AiMode::Outputs(ai)) {
            None => Ok(Vec::new()),
            Some(RuleResult::Message(m)) => Ok(vec![m]),
            Some(RuleResult::Failed { rule_id, stage, expression, error }) => Err(EngineError::RuleFailed {
                rule_id,
                stage,
                error: match expression {
                    Some(e) => format!("{error} (expression: {e})"),
                    None => error,
                },
            }),
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Fills `{{name}}` placeholders: strings as they are, other values as JSON.
pub(crate) fn render_prompt(prompt: &str, inputs: &BTreeMap<String, Value>) -> String {
    let mut out = String::with_capacity(prompt.len());
    let mut rest = prompt;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push_str(&rest[..start]);
        match inputs.get(after[..end].trim()) {
            Some(Value::String(s)) => out.push_str(s),
            Some(v) => out.push_str(&v.to_string()),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// BLAKE3 (hex) of the canonical JSON of `{model, prompt, inputs}`.
pub fn ai_input_hash(model: &str, prompt: &str, inputs: &Value) -> Result<String, EngineError> {
    let body = Body::from_value(&json!({"model": model, "prompt": prompt, "inputs": inputs}))?;
    Ok(blake3::hash(body.as_str().as_bytes()).to_hex().to_string())
}

/// Any JSON value in canonical form (numbers as JCS writes them), refusing unsafe integers.
fn canonical_any(v: &Value) -> Result<Value, EngineError> {
    let wrapped = Body::from_value(&json!({ "v": v }))?.to_value()?;
    Ok(wrapped.get("v").cloned().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_rendered() {
        let inputs: BTreeMap<String, Value> =
            [("text".to_owned(), json!("hello")), ("n".to_owned(), json!({"b": 1, "a": [2]}))].into();
        assert_eq!(render_prompt("Classify: {{text}}", &inputs), "Classify: hello");
        assert_eq!(render_prompt("{{ n }}!", &inputs), r#"{"a":[2],"b":1}!"#);
        assert_eq!(render_prompt("{{missing}} {{text", &inputs), "{{missing}} {{text");
    }

    #[test]
    fn input_hash_is_canonical() {
        let a = ai_input_hash("m", "p", &json!({"x": 1, "y": [1.0, "s"]})).unwrap();
        let b = ai_input_hash("m", "p", &serde_json::from_str(r#"{ "y": [1, "s"], "x": 1.0 }"#).unwrap()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, ai_input_hash("m2", "p", &json!({"x": 1, "y": [1, "s"]})).unwrap());
        assert_eq!(a.len(), 64);
    }
}
