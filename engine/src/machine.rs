//! The compiled machine: a validated template with its expressions parsed and its lookup
//! tables built. Built only by [`crate::compile`]; immutable and shareable (`Send + Sync`).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};

use crate::duration::TimerDuration;
use crate::expr::Expr;
use crate::template::{NodeKind, Template, VarType};

/// A compiled template, ready to run executions.
///
/// INVARIANT: every index and id in it refers to something that exists (checked by
/// `compile`); exactly one state is initial; final states have no outgoing transitions.
#[derive(Clone)]
pub struct Machine {
    pub(crate) template: Template,
    pub(crate) hash: String,
    pub(crate) variables: Vec<CVariable>,
    pub(crate) var_types: BTreeMap<String, VarType>,
    pub(crate) states: Vec<CState>,
    pub(crate) state_index: BTreeMap<String, usize>,
    pub(crate) initial: usize,
    pub(crate) transitions: Vec<CTransition>,
    pub(crate) transition_index: BTreeMap<String, usize>,
    /// state -> message type -> transitions, in template order.
    pub(crate) candidates: Vec<BTreeMap<String, Vec<usize>>>,
    /// state -> its `after` transitions, in template order.
    pub(crate) timers: Vec<Vec<usize>>,
    pub(crate) rules: Vec<CRule>,
    pub(crate) rule_index: BTreeMap<String, usize>,
    /// event type -> rules, in template order.
    pub(crate) rules_by_on: BTreeMap<String, Vec<usize>>,
    pub(crate) actions: BTreeMap<String, CAction>,
}

impl fmt::Debug for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("name", &self.template.name)
            .field("hash", &self.hash)
            .field("states", &self.states.len())
            .field("transitions", &self.transitions.len())
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CVariable {
    pub(crate) name: String,
    pub(crate) var_type: VarType,
    pub(crate) default: Value,
}

#[derive(Debug, Clone)]
pub(crate) struct CState {
    pub(crate) id: String,
    pub(crate) initial: bool,
    pub(crate) is_final: bool,
    pub(crate) on_enter: Vec<String>,
    pub(crate) on_exit: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Trigger {
    On(String),
    After(TimerDuration),
}

#[derive(Debug, Clone)]
pub(crate) struct CTransition {
    pub(crate) id: String,
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) trigger: Trigger,
    pub(crate) guard: Option<Expr>,
    pub(crate) assign: Vec<(String, Expr)>,
    pub(crate) actions: Vec<String>,
    pub(crate) tokens: Vec<CTokenOp>,
}

#[derive(Debug, Clone)]
pub(crate) enum CTokenOp {
    Mint { node: String, token: String, account: String, amount: Expr },
    Transfer { token: String, from: String, to: String, amount: Expr },
    Consume { node: String, token: String, account: String, amount: Expr },
}

#[derive(Debug, Clone)]
pub(crate) struct CRule {
    pub(crate) id: String,
    pub(crate) on: String,
    pub(crate) when: Option<Expr>,
    pub(crate) emit_type: String,
    pub(crate) body: CRuleBody,
}

#[derive(Debug, Clone)]
pub(crate) enum CRuleBody {
    Cel(CEmit),
    Ai { model: String, prompt: String, inputs: Vec<(String, Expr)> },
}

#[derive(Debug, Clone)]
pub(crate) enum CEmit {
    Payload,
    Fields(Vec<(String, Expr)>),
    Expr(Expr),
}

#[derive(Debug, Clone)]
pub(crate) struct CAction {
    pub(crate) id: String,
    pub(crate) action_type: String,
    pub(crate) input: InputTree,
}

/// An action input: literal JSON with `=` expressions at some leaves.
#[derive(Debug, Clone)]
pub(crate) enum InputTree {
    Literal(Value),
    Expr { path: String, expr: Expr },
    Array(Vec<InputTree>),
    Object(Vec<(String, InputTree)>),
}

impl InputTree {
    /// Whether any leaf is an expression.
    pub(crate) fn needs_scope(&self) -> bool {
        match self {
            InputTree::Literal(_) => false,
            InputTree::Expr { .. } => true,
            InputTree::Array(items) => items.iter().any(InputTree::needs_scope),
            InputTree::Object(fields) => fields.iter().any(|(_, t)| t.needs_scope()),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CNode {
    pub(crate) kind: NodeKind,
    pub(crate) token: String,
}

impl Machine {
    /// The template it was compiled from.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The template's hash ([`crate::template_hash`]).
    pub fn template_hash(&self) -> &str {
        &self.hash
    }

    /// The initial state id.
    pub fn initial_state_id(&self) -> &str {
        &self.states[self.initial].id
    }

    /// The state ids, in template order.
    pub fn state_ids(&self) -> impl Iterator<Item = &str> {
        self.states.iter().map(|s| s.id.as_str())
    }

    /// Whether the machine has a state `id`.
    pub fn has_state(&self, id: &str) -> bool {
        self.state_index.contains_key(id)
    }

    /// The canonical description of the compiled machine (for
    /// `GET /v1/templates/:id/compile`): states with their flags and timers, the transition
    /// table, timers, rules (with the pass-through rule spelled out), actions, token nodes
    /// and the variables with their effective defaults. Deterministic: template order
    /// everywhere, objects with sorted keys.
    pub fn describe(&self) -> Value {
        let state_id = |i: usize| self.states[i].id.clone();
        let states: Vec<Value> = self
            .states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "id": s.id,
                    "initial": s.initial,
                    "final": s.is_final,
                    "onEnter": s.on_enter,
                    "onExit": s.on_exit,
                    "timers": self.timers[i].iter().map(|&t| self.transitions[t].id.clone()).collect::<Vec<_>>(),
                    "transitions": self.transitions.iter().filter(|t| t.from == i).map(|t| t.id.clone()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let transitions: Vec<Value> = self
            .transitions
            .iter()
            .map(|t| {
                let trigger = match &t.trigger {
                    Trigger::On(on) => json!({"on": on}),
                    Trigger::After(d) => json!({"after": d.to_string(), "afterMicros": d.as_micros()}),
                };
                json!({
                    "id": t.id,
                    "from": state_id(t.from),
                    "to": state_id(t.to),
                    "trigger": trigger,
                    "guard": t.guard.as_ref().map(|g| g.source()),
                    "assign": t.assign.iter().map(|(k, e)| (k.clone(), Value::from(e.source()))).collect::<serde_json::Map<_, _>>(),
                    "actions": t.actions,
                    "tokens": t.tokens.iter().map(describe_token_op).collect::<Vec<_>>(),
                })
            })
            .collect();
        let timers: Vec<Value> = self
            .transitions
            .iter()
            .filter_map(|t| match &t.trigger {
                Trigger::After(d) => Some(json!({
                    "transitionId": t.id,
                    "state": state_id(t.from),
                    "after": d.to_string(),
                    "afterMicros": d.as_micros(),
                })),
                Trigger::On(_) => None,
            })
            .collect();
        let rules: Vec<Value> = self.rules.iter().map(describe_rule).collect();
        let actions: Vec<Value> = self
            .template
            .actions
            .iter()
            .map(|a| json!({"id": a.id, "type": a.action_type, "input": a.input}))
            .collect();
        let nodes: Vec<Value> = self
            .template
            .tokens
            .nodes
            .iter()
            .map(|n| json!({"id": n.id, "kind": n.kind.as_str(), "token": n.token}))
            .collect();
        let variables: Vec<Value> = self
            .variables
            .iter()
            .map(|v| json!({"name": v.name, "type": v.var_type.as_str(), "default": v.default}))
            .collect();
        let consumed: Vec<&str> = self.rules_by_on.keys().map(String::as_str).collect();
        json!({
            "name": self.template.name,
            "templateHash": self.hash,
            "initial": self.initial_state_id(),
            "final": self.states.iter().filter(|s| s.is_final).map(|s| s.id.clone()).collect::<Vec<_>>(),
            "variables": variables,
            "states": states,
            "transitions": transitions,
            "timers": timers,
            "rules": rules,
            "passThrough": {
                "description": "an event whose type no rule handles becomes one message {type: event.type, data: event.payload}",
                "handledEventTypes": consumed,
            },
            "actions": actions,
            "tokens": {
                "types": self.template.tokens.types.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
                "nodes": nodes,
            },
        })
    }
}

fn describe_token_op(op: &CTokenOp) -> Value {
    match op {
        CTokenOp::Mint { node, token, account, amount } => json!({
            "mint": {"node": node, "token": token, "account": account, "amount": amount.source()}
        }),
        CTokenOp::Transfer { token, from, to, amount } => json!({
            "transfer": {"token": token, "from": from, "to": to, "amount": amount.source()}
        }),
        CTokenOp::Consume { node, token, account, amount } => json!({
            "consume": {"node": node, "token": token, "account": account, "amount": amount.source()}
        }),
    }
}

fn describe_rule(r: &CRule) -> Value {
    let mut out = json!({
        "id": r.id,
        "on": r.on,
        "when": r.when.as_ref().map(|w| w.source()),
        "emit": r.emit_type,
    });
    match &r.body {
        CRuleBody::Cel(emit) => {
            out["kind"] = json!("cel");
            out["deterministic"] = json!(true);
            out["data"] = match emit {
                CEmit::Payload => json!("event.payload"),
                CEmit::Expr(e) => json!(e.source()),
                CEmit::Fields(fields) => {
                    Value::Object(fields.iter().map(|(k, e)| (k.clone(), Value::from(e.source()))).collect())
                }
            };
        }
        CRuleBody::Ai { model, prompt, inputs } => {
            out["kind"] = json!("ai");
            out["deterministic"] = json!(false);
            out["model"] = json!(model);
            out["prompt"] = json!(prompt);
            out["inputs"] = Value::Object(inputs.iter().map(|(k, e)| (k.clone(), Value::from(e.source()))).collect());
        }
    }
    out
}
