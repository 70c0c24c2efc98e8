//! The template model: exactly the JSON body of `POST /v1/templates`.
//!
//! Field names are camelCase; unknown fields are refused everywhere, and every nested
//! struct must be a JSON object ([`pled_core::de`]). Serialisation leaves
//! out fields that hold their default (`false`, empty lists and maps, absent options), so
//! that a template written with and without explicit defaults has one normal form and one
//! [`template_hash`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::EngineError;

/// A process template: variables, a finite-state machine, rules, actions and token nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    /// Human name (the service takes 1-200 characters, not all white space).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200, pattern = r"\S"))]
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Declared variables, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "pled_core::de::objects")]
    pub variables: Vec<Variable>,
    /// States, in order (the order is used for ties and in `describe`).
    #[serde(deserialize_with = "pled_core::de::objects")]
    pub states: Vec<State>,
    /// Transitions, in order: the first matching transition wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "pled_core::de::objects")]
    pub transitions: Vec<Transition>,
    /// Rules (event -> messages), in order: messages are derived in rule order.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "pled_core::de::objects")]
    pub rules: Vec<Rule>,
    /// Actions that states and transitions schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "pled_core::de::objects")]
    pub actions: Vec<Action>,
    /// Token types and source/sink nodes.
    #[serde(default, skip_serializing_if = "Tokens::is_empty", deserialize_with = "pled_core::de::object")]
    pub tokens: Tokens,
}

/// A declared variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Variable {
    /// Its name: a CEL identifier (`[A-Za-z_][A-Za-z0-9_]*`), read as `vars.<name>`.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub var_type: VarType,
    /// Its initial value (`null` when absent); must match the type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

/// The type of a variable. `null` is a valid value of every type (an unset variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    /// A signed integer within ±(2^53-1).
    Int,
    /// A non-negative integer up to 2^53-1.
    Uint,
    /// A number.
    Double,
    /// `true` or `false`.
    Bool,
    /// A string.
    String,
    /// A JSON array.
    List,
    /// A JSON object.
    Map,
    /// Any JSON value.
    Any,
}

impl VarType {
    /// The name used in templates and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::Int => "int",
            VarType::Uint => "uint",
            VarType::Double => "double",
            VarType::Bool => "bool",
            VarType::String => "string",
            VarType::List => "list",
            VarType::Map => "map",
            VarType::Any => "any",
        }
    }
}

/// A state of the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct State {
    /// Its id.
    pub id: String,
    /// The one state an execution starts in.
    #[serde(default, skip_serializing_if = "is_false")]
    pub initial: bool,
    /// Entering it completes the execution; it may have no outgoing transitions.
    #[serde(default, rename = "final", skip_serializing_if = "is_false")]
    pub r#final: bool,
    /// Action ids scheduled when the state is entered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_enter: Vec<String>,
    /// Action ids scheduled when the state is left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_exit: Vec<String>,
}

/// A transition: exactly one of `on` (a message type) or `after` (a timer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Transition {
    /// Its id.
    pub id: String,
    /// The source state.
    pub from: String,
    /// The target state.
    pub to: String,
    /// The message type that triggers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// The delay after entering `from` that triggers it (`30s`, `15m`, `48h`, `2d`, `1h30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// A CEL expression that must be `true` for the transition to fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<String>,
    /// Variable -> CEL expression, all evaluated against the pre-transition values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub assign: BTreeMap<String, String>,
    /// Action ids scheduled when the transition fires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// Token operations applied, in order, when the transition fires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenOp>,
}

/// A token operation of a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum TokenOp {
    /// Create tokens at a source node.
    #[serde(deserialize_with = "pled_core::de::object")]
    Mint(NodeOp),
    /// Move tokens between two accounts.
    #[serde(deserialize_with = "pled_core::de::object")]
    Transfer(TransferOp),
    /// Destroy tokens at a sink node.
    #[serde(deserialize_with = "pled_core::de::object")]
    Consume(NodeOp),
}

/// A mint (at a source) or a consume (at a sink).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeOp {
    /// The token node.
    pub node: String,
    /// A CEL expression: a non-negative integer or a decimal string (up to 2^128-1).
    pub amount: String,
    /// The account (literal); `main` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// A transfer between two accounts of one token type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferOp {
    /// The token type.
    pub token: String,
    /// The debited account (literal).
    pub from: String,
    /// The credited account (literal).
    pub to: String,
    /// A CEL expression: a non-negative integer or a decimal string.
    pub amount: String,
}

/// A rule: turns an event into zero or one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Its id.
    pub id: String,
    /// The event type it handles.
    pub on: String,
    /// `cel` (default) or `ai`.
    #[serde(default, skip_serializing_if = "RuleKind::is_cel")]
    pub kind: RuleKind,
    /// A CEL condition; `true` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// The message it emits.
    #[serde(deserialize_with = "pled_core::de::object")]
    pub emit: Emit,
    /// AI rules: the model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// AI rules: the prompt; `{{name}}` is replaced by the input `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// AI rules: input name -> CEL expression.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, String>,
}

/// How a rule derives its message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// Deterministic: CEL expressions over the event and the variables.
    #[default]
    Cel,
    /// The message data is a model's output, resolved (and cached) by the service.
    Ai,
}

impl RuleKind {
    fn is_cel(&self) -> bool {
        *self == RuleKind::Cel
    }

    /// The name used in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Cel => "cel",
            RuleKind::Ai => "ai",
        }
    }
}

/// The message a rule emits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Emit {
    /// The message type.
    #[serde(rename = "type")]
    pub message_type: String,
    /// The data; the event payload when absent (CEL rules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<EmitData>,
}

/// The data of an emitted message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum EmitData {
    /// Field -> CEL expression.
    Fields(BTreeMap<String, String>),
    /// One CEL expression that evaluates to a map.
    Expr(String),
}

/// An action: something the service runs outside the engine (a webhook, an event to emit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    /// Its id.
    pub id: String,
    /// Its type, interpreted by the service's action registry (`webhook`, `emit_event`, …).
    #[serde(rename = "type")]
    pub action_type: String,
    /// Its input: literal JSON, except strings starting with `=`, which are CEL expressions
    /// evaluated when the action is scheduled (`==` escapes a literal leading `=`).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
}

/// Token types and nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tokens {
    /// Token types.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "pled_core::de::objects")]
    pub types: Vec<TokenType>,
    /// Source and sink nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "pled_core::de::objects")]
    pub nodes: Vec<TokenNode>,
}

impl Tokens {
    fn is_empty(&self) -> bool {
        self.types.is_empty() && self.nodes.is_empty()
    }
}

/// A token type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenType {
    /// Its id.
    pub id: String,
}

/// A token node: where tokens of one type enter (source) or leave (sink) the execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenNode {
    /// Its id.
    pub id: String,
    /// `source` or `sink`.
    pub kind: NodeKind,
    /// The token type it handles.
    pub token: String,
}

/// Whether a node creates or destroys tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Tokens are minted here.
    Source,
    /// Tokens are consumed here.
    Sink,
}

impl NodeKind {
    /// The name used in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Source => "source",
            NodeKind::Sink => "sink",
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Template {
    /// Parses a template from JSON text. Errors name the line and column; numbers that a
    /// ledger body could not hold exactly (integers beyond ±(2^53-1)) are refused with their
    /// JSON path.
    pub fn from_json(text: &str) -> Result<Template, EngineError> {
        let value: Value = serde_json::from_str(text).map_err(|e| EngineError::TemplateJson(e.to_string()))?;
        Self::from_value(value)
    }

    /// Builds a template from a JSON value (see [`Template::from_json`]).
    pub fn from_value(value: Value) -> Result<Template, EngineError> {
        if value.is_object() {
            // Reuse the ledger's own check so a template can always be recorded as a body.
            pled_core::Body::from_value(&value)?;
        }
        serde_json::from_value(value).map_err(|e| EngineError::TemplateJson(e.to_string()))
    }

    /// The template in its normal JSON form (defaults left out).
    pub fn to_value(&self) -> Result<Value, EngineError> {
        serde_json::to_value(self).map_err(|e| EngineError::Json(e.to_string()))
    }
}

/// The template's content hash: BLAKE3 (hex) of the RFC 8785 canonical JSON of its normal
/// form. Two templates that differ only in key order, whitespace or spelled-out defaults have
/// the same hash.
///
/// Fails only for a template built in code that holds an integer beyond ±(2^53-1)
/// ([`Template::from_json`] refuses those).
pub fn template_hash(template: &Template) -> Result<String, EngineError> {
    let body = pled_core::Body::from_value(&template.to_value()?)?;
    Ok(blake3::hash(body.as_str().as_bytes()).to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"name":"t","states":[{"id":"a","initial":true}]}"#;

    #[test]
    fn minimal_template_parses_and_defaults_are_left_out() {
        let t = Template::from_json(MINIMAL).unwrap();
        assert_eq!(t.states.len(), 1);
        assert_eq!(t.to_value().unwrap(), serde_json::from_str::<Value>(MINIMAL).unwrap());
    }

    #[test]
    fn hash_ignores_spelled_out_defaults_and_key_order() {
        let a = Template::from_json(MINIMAL).unwrap();
        let b = Template::from_json(
            r#"{"states":[{"final":false,"id":"a","initial":true,"onEnter":[]}],"name":"t","rules":[],"tokens":{}}"#,
        )
        .unwrap();
        assert_eq!(template_hash(&a).unwrap(), template_hash(&b).unwrap());
        assert_eq!(template_hash(&a).unwrap().len(), 64);
        let mut c = a.clone();
        c.name = "u".into();
        assert_ne!(template_hash(&a).unwrap(), template_hash(&c).unwrap());
    }

    #[test]
    fn unknown_fields_are_refused_with_a_position() {
        let err = Template::from_json(r#"{"name":"t","states":[{"id":"a","intial":true}]}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `intial`"), "{err}");
        let err = Template::from_json("{\"name\":\"t\",\n\"states\": 3}").unwrap_err().to_string();
        assert!(err.contains("invalid type"), "{err}");
        let err = Template::from_json("{\"name\":\"t\",\n\"states\": [}").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn unsafe_integers_are_refused_with_their_path() {
        let err = Template::from_json(
            r#"{"name":"t","states":[{"id":"a","initial":true}],"variables":[{"name":"x","type":"int","default":9007199254740992}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/variables/0/default"), "{err}");
    }

    #[test]
    fn token_ops_and_emit_data_forms_parse() {
        let t: Transition = serde_json::from_str(
            r#"{"id":"t","from":"a","to":"b","on":"x","tokens":[
                {"mint":{"node":"n","amount":"1"}},
                {"transfer":{"token":"c","from":"main","to":"b","amount":"2"}},
                {"consume":{"node":"s","amount":"3","account":"b"}}]}"#,
        )
        .unwrap();
        assert!(matches!(&t.tokens[0], TokenOp::Mint(op) if op.account.is_none()));
        assert!(matches!(&t.tokens[1], TokenOp::Transfer(op) if op.to == "b"));
        assert!(matches!(&t.tokens[2], TokenOp::Consume(op) if op.account.as_deref() == Some("b")));
        let e: Emit = serde_json::from_str(r#"{"type":"m","data":{"a":"1"}}"#).unwrap();
        assert!(matches!(e.data, Some(EmitData::Fields(_))));
        let e: Emit = serde_json::from_str(r#"{"type":"m","data":"event.payload"}"#).unwrap();
        assert!(matches!(e.data, Some(EmitData::Expr(_))));
        assert!(serde_json::from_str::<TokenOp>(r#"{"burn":{"node":"n","amount":"1"}}"#).is_err());
    }
}
