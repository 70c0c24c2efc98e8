//! `compile`: validate a template and build its [`Machine`].
//!
//! Validation never stops at the first problem: it reports every problem it can find, each
//! with a JSON pointer into the template, a stable snake_case code and a message. A machine
//! is built only when there is no error (warnings are allowed).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use pled_core::{Body, BodyError};
use serde::Serialize;
use serde_json::Value;

use crate::duration::TimerDuration;
use crate::expr::Expr;
use crate::machine::{
    CAction, CEmit, CNode, CRule, CRuleBody, CState, CTokenOp, CTransition, CVariable, InputTree, Machine, Trigger,
};
use crate::template::{EmitData, NodeKind, RuleKind, Template, TokenOp, VarType};
use crate::template_hash;
use crate::values::coerce;

/// The result of [`compile`]: the machine (when there is no error) and every problem found.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// `Some` if and only if `report.is_ok()`.
    pub machine: Option<Machine>,
    /// Errors and warnings, in template order.
    pub report: ValidationReport,
}

/// The problems found in a template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ValidationReport {
    /// Every problem, in the order the template was checked.
    pub problems: Vec<Problem>,
}

impl ValidationReport {
    /// No errors (warnings allowed).
    pub fn is_ok(&self) -> bool {
        !self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == Severity::Warning)
    }
}

/// One problem in a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A JSON pointer into the template (`/transitions/2/to`).
    pub path: String,
    /// A stable snake_case code (`unknown_state`).
    pub code: &'static str,
    /// What is wrong, for people.
    pub message: String,
    /// Whether it prevents compilation.
    pub severity: Severity,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The template cannot be compiled.
    Error,
    /// The template compiles, but probably not as meant.
    Warning,
}

/// Escapes one JSON-pointer segment.
fn seg(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// An id: 1–64 characters of `A-Z a-z 0-9 _ . -`, starting with a letter or digit.
fn is_valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A variable name: a CEL identifier, so that `vars.<name>` reads it.
fn is_identifier(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    (1..=64).contains(&s.len())
        && (s.as_bytes()[0].is_ascii_alphabetic() || s.as_bytes()[0] == b'_')
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !RESERVED.contains(&s)
}

/// The `{{name}}` placeholders of a prompt.
pub(crate) fn placeholders(prompt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim().to_owned());
        rest = &after[end + 2..];
    }
    out
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn error(&mut self, path: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), code, message: message.into(), severity: Severity::Error });
    }

    fn warning(&mut self, path: impl Into<String>, code: &'static str, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), code, message: message.into(), severity: Severity::Warning });
    }

    fn expr(&mut self, path: String, source: &str) -> Option<Expr> {
        match Expr::parse(source) {
            Ok(e) => Some(e),
            Err(err) => {
                self.error(path, "cel_parse_error", format!("CEL expression {source:?} does not parse: {err}"));
                None
            }
        }
    }

    fn id(&mut self, path: String, what: &str, id: &str) {
        if !is_valid_id(id) {
            self.error(
                path,
                "invalid_id",
                format!(
                    "{what} id {id:?} must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit"
                ),
            );
        }
    }

    fn account(&mut self, path: String, account: &str) {
        if !is_valid_id(account) {
            self.error(
                path,
                "invalid_account",
                format!(
                    "account {account:?} must be 1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit"
                ),
            );
        }
    }

    fn message_type(&mut self, path: String, t: &str) {
        if t.trim().is_empty() {
            self.error(path, "empty_message_type", "a message or event type must not be empty");
        }
    }
}

/// Validates a template and, when it has no errors, builds its machine.
pub fn compile(t: &Template) -> Compiled {
    let mut c = Checker::default();

    // Numbers a ledger body cannot hold exactly.
    match t.to_value().map(|v| Body::from_value(&v)) {
        Ok(Err(BodyError::UnsafeInteger { path })) => c.error(
            path,
            "unsafe_integer",
            "integer outside ±(2^53-1): it cannot be hashed exactly; write it as a string",
        ),
        Ok(_) => {}
        Err(e) => c.error("", "unserialisable", e.to_string()),
    }

    // Variables.
    let mut variables = Vec::new();
    let mut var_types: BTreeMap<String, VarType> = BTreeMap::new();
    for (i, v) in t.variables.iter().enumerate() {
        let path = format!("/variables/{i}");
        if !is_identifier(&v.name) {
            c.error(
                format!("{path}/name"),
                "invalid_variable_name",
                format!(
                    "variable name {:?} must be a CEL identifier ([A-Za-z_][A-Za-z0-9_]*, not a reserved word)",
                    v.name
                ),
            );
        }
        if var_types.contains_key(&v.name) {
            c.error(format!("{path}/name"), "duplicate_variable", format!("variable {:?} is declared twice", v.name));
            continue;
        }
        let default = match &v.default {
            None => Value::Null,
            Some(d) => coerce(v.var_type, d).unwrap_or_else(|e| {
                c.error(format!("{path}/default"), "default_type_mismatch", format!("default of {:?}: {e}", v.name));
                Value::Null
            }),
        };
        var_types.insert(v.name.clone(), v.var_type);
        variables.push(CVariable { name: v.name.clone(), var_type: v.var_type, default });
    }

    // Actions (checked before anything refers to them).
    let mut actions: BTreeMap<String, CAction> = BTreeMap::new();
    for (i, a) in t.actions.iter().enumerate() {
        let path = format!("/actions/{i}");
        c.id(format!("{path}/id"), "action", &a.id);
        if a.action_type.trim().is_empty() {
            c.error(format!("{path}/type"), "empty_action_type", "an action needs a type (e.g. webhook)");
        }
        let input = input_tree(&mut c, format!("{path}/input"), &a.input);
        if actions.contains_key(&a.id) {
            c.error(format!("{path}/id"), "duplicate_action_id", format!("action id {:?} is used twice", a.id));
            continue;
        }
        actions.insert(a.id.clone(), CAction { id: a.id.clone(), action_type: a.action_type.clone(), input });
    }
    let check_action = |c: &mut Checker, path: String, id: &str| {
        if !actions.contains_key(id) {
            c.error(path, "unknown_action", format!("no action has id {id:?}"));
        }
    };

    // States.
    let mut states = Vec::new();
    let mut state_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut initials = Vec::new();
    for (i, s) in t.states.iter().enumerate() {
        let path = format!("/states/{i}");
        c.id(format!("{path}/id"), "state", &s.id);
        if state_index.contains_key(&s.id) {
            c.error(format!("{path}/id"), "duplicate_state_id", format!("state id {:?} is used twice", s.id));
        } else {
            state_index.insert(s.id.clone(), i);
        }
        if s.initial {
            initials.push(i);
            if initials.len() > 1 {
                c.error(
                    format!("{path}/initial"),
                    "multiple_initial_states",
                    format!(
                        "state {:?} is initial, but so is {:?}: exactly one state must be",
                        s.id, t.states[initials[0]].id
                    ),
                );
            }
        }
        for (j, a) in s.on_enter.iter().enumerate() {
            check_action(&mut c, format!("{path}/onEnter/{j}"), a);
        }
        for (j, a) in s.on_exit.iter().enumerate() {
            check_action(&mut c, format!("{path}/onExit/{j}"), a);
        }
        states.push(CState {
            id: s.id.clone(),
            initial: s.initial,
            is_final: s.r#final,
            on_enter: s.on_enter.clone(),
            on_exit: s.on_exit.clone(),
        });
    }
    if initials.is_empty() {
        c.error("/states", "no_initial_state", "no state is marked initial: exactly one state must be");
    }

    // Token types and nodes.
    let mut token_types = BTreeSet::new();
    for (i, tt) in t.tokens.types.iter().enumerate() {
        c.id(format!("/tokens/types/{i}/id"), "token type", &tt.id);
        if !token_types.insert(tt.id.clone()) {
            c.error(
                format!("/tokens/types/{i}/id"),
                "duplicate_token_type",
                format!("token type {:?} is declared twice", tt.id),
            );
        }
    }
    let mut nodes: BTreeMap<String, CNode> = BTreeMap::new();
    for (i, n) in t.tokens.nodes.iter().enumerate() {
        let path = format!("/tokens/nodes/{i}");
        c.id(format!("{path}/id"), "token node", &n.id);
        if !token_types.contains(&n.token) {
            c.error(format!("{path}/token"), "unknown_token_type", format!("no token type has id {:?}", n.token));
        }
        if nodes.contains_key(&n.id) {
            c.error(format!("{path}/id"), "duplicate_token_node", format!("token node {:?} is declared twice", n.id));
            continue;
        }
        nodes.insert(n.id.clone(), CNode { kind: n.kind, token: n.token.clone() });
    }

    // Transitions.
    let mut transitions = Vec::new();
    let mut transition_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen_on: BTreeMap<(String, String, String), String> = BTreeMap::new();
    let mut seen_after: BTreeMap<(String, TimerDuration), String> = BTreeMap::new();
    for (i, tr) in t.transitions.iter().enumerate() {
        let path = format!("/transitions/{i}");
        c.id(format!("{path}/id"), "transition", &tr.id);
        if transition_index.contains_key(&tr.id) {
            c.error(
                format!("{path}/id"),
                "duplicate_transition_id",
                format!("transition id {:?} is used twice", tr.id),
            );
        } else {
            transition_index.insert(tr.id.clone(), i);
        }
        let from = state_index.get(&tr.from).copied();
        let to = state_index.get(&tr.to).copied();
        if from.is_none() {
            c.error(format!("{path}/from"), "unknown_state", format!("no state has id {:?}", tr.from));
        }
        if to.is_none() {
            c.error(format!("{path}/to"), "unknown_state", format!("no state has id {:?}", tr.to));
        }
        if let Some(f) = from
            && states[f].is_final
        {
            c.error(
                format!("{path}/from"),
                "transition_from_final",
                format!("state {:?} is final: a final state has no outgoing transitions", tr.from),
            );
        }
        let trigger = match (&tr.on, &tr.after) {
            (Some(_), Some(_)) => {
                c.error(
                    path.clone(),
                    "conflicting_triggers",
                    "a transition has exactly one trigger: `on` or `after`, not both",
                );
                None
            }
            (None, None) => {
                c.error(
                    path.clone(),
                    "missing_trigger",
                    "a transition needs a trigger: `on` (a message type) or `after` (a duration)",
                );
                None
            }
            (Some(on), None) => {
                c.message_type(format!("{path}/on"), on);
                Some(Trigger::On(on.clone()))
            }
            (None, Some(after)) => match TimerDuration::parse(after) {
                Ok(d) => Some(Trigger::After(d)),
                Err(e) => {
                    c.error(format!("{path}/after"), "bad_duration", e.to_string());
                    None
                }
            },
        };
        let guard = tr.guard.as_ref().and_then(|g| {
            let e = c.expr(format!("{path}/guard"), g)?;
            if let Some(kind) = e.literal_kind().filter(|k| *k != "bool") {
                c.error(
                    format!("{path}/guard"),
                    "guard_not_bool",
                    format!("guard {g:?} is a literal {kind}: a guard must be a bool expression"),
                );
            } else if e.is_literal_false() {
                c.warning(
                    format!("{path}/guard"),
                    "guard_always_false",
                    "guard is the literal false: this transition never fires",
                );
            }
            Some(e)
        });
        // Duplicates: same source and trigger, and (for messages) the same guard text.
        if let (Some(_), Some(trigger)) = (from, &trigger) {
            let earlier = match trigger {
                Trigger::On(on) => {
                    let key = (tr.from.clone(), on.clone(), tr.guard.as_deref().unwrap_or("").trim().to_owned());
                    seen_on.get(&key).cloned().or_else(|| {
                        seen_on.insert(key, tr.id.clone());
                        None
                    })
                }
                Trigger::After(d) => {
                    let key = (tr.from.clone(), *d);
                    seen_after.get(&key).cloned().or_else(|| {
                        seen_after.insert(key, tr.id.clone());
                        None
                    })
                }
            };
            if let Some(earlier) = earlier {
                c.error(
                    path.clone(),
                    "duplicate_transition",
                    format!(
                        "transition {:?} has the same source, trigger and guard as {earlier:?}: it could never fire",
                        tr.id
                    ),
                );
            }
        }
        let mut assign = Vec::new();
        for (var, src) in &tr.assign {
            let p = format!("{path}/assign/{}", seg(var));
            if !var_types.contains_key(var) {
                c.error(p.clone(), "unknown_variable", format!("variable {var:?} is not declared"));
            }
            if let Some(e) = c.expr(p, src) {
                assign.push((var.clone(), e));
            }
        }
        for (j, a) in tr.actions.iter().enumerate() {
            check_action(&mut c, format!("{path}/actions/{j}"), a);
        }
        let mut tokens = Vec::new();
        for (j, op) in tr.tokens.iter().enumerate() {
            let p = format!("{path}/tokens/{j}");
            if let Some(op) = token_op(&mut c, &p, op, &nodes, &token_types) {
                tokens.push(op);
            }
        }
        if let (Some(from), Some(to), Some(trigger)) = (from, to, trigger) {
            transitions.push(CTransition {
                id: tr.id.clone(),
                from,
                to,
                trigger,
                guard,
                assign,
                actions: tr.actions.clone(),
                tokens,
            });
        }
    }

    // Rules.
    let mut rules = Vec::new();
    let mut rule_index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in t.rules.iter().enumerate() {
        let path = format!("/rules/{i}");
        c.id(format!("{path}/id"), "rule", &r.id);
        if rule_index.contains_key(&r.id) {
            c.error(format!("{path}/id"), "duplicate_rule_id", format!("rule id {:?} is used twice", r.id));
        } else {
            rule_index.insert(r.id.clone(), rules.len());
        }
        c.message_type(format!("{path}/on"), &r.on);
        c.message_type(format!("{path}/emit/type"), &r.emit.message_type);
        let when = r.when.as_ref().and_then(|w| c.expr(format!("{path}/when"), w));
        let body = match r.kind {
            RuleKind::Cel => {
                for (field, present) in
                    [("model", r.model.is_some()), ("prompt", r.prompt.is_some()), ("inputs", !r.inputs.is_empty())]
                {
                    if present {
                        c.error(
                            format!("{path}/{field}"),
                            "ai_field_on_cel_rule",
                            format!("`{field}` only applies to rules of kind \"ai\""),
                        );
                    }
                }
                let emit = match &r.emit.data {
                    None => Some(CEmit::Payload),
                    Some(EmitData::Expr(src)) => c.expr(format!("{path}/emit/data"), src).map(CEmit::Expr),
                    Some(EmitData::Fields(fields)) => {
                        let mut out = Vec::new();
                        for (k, src) in fields {
                            if let Some(e) = c.expr(format!("{path}/emit/data/{}", seg(k)), src) {
                                out.push((k.clone(), e));
                            }
                        }
                        Some(CEmit::Fields(out))
                    }
                };
                emit.map(CRuleBody::Cel)
            }
            RuleKind::Ai => {
                let model = r.model.clone().unwrap_or_default();
                if model.trim().is_empty() {
                    c.error(format!("{path}/model"), "ai_rule_missing_model", "an AI rule needs a model");
                }
                let prompt = r.prompt.clone().unwrap_or_default();
                if prompt.trim().is_empty() {
                    c.error(format!("{path}/prompt"), "ai_rule_missing_prompt", "an AI rule needs a prompt");
                }
                for name in placeholders(&prompt) {
                    if !r.inputs.contains_key(&name) {
                        c.error(
                            format!("{path}/prompt"),
                            "unknown_prompt_input",
                            format!("the prompt uses {{{{{name}}}}} but the rule has no input {name:?}"),
                        );
                    }
                }
                if r.emit.data.is_some() {
                    c.error(
                        format!("{path}/emit/data"),
                        "ai_rule_emit_data",
                        "an AI rule's message data is the model output: `emit.data` is not allowed",
                    );
                }
                let mut inputs = Vec::new();
                for (k, src) in &r.inputs {
                    if let Some(e) = c.expr(format!("{path}/inputs/{}", seg(k)), src) {
                        inputs.push((k.clone(), e));
                    }
                }
                Some(CRuleBody::Ai { model, prompt, inputs })
            }
        };
        if let Some(body) = body {
            rules.push(CRule {
                id: r.id.clone(),
                on: r.on.clone(),
                when,
                emit_type: r.emit.message_type.clone(),
                body,
            });
        }
    }

    // Reachability and completion (warnings).
    if let Some(&initial) = initials.first() {
        let mut reached = vec![false; states.len()];
        let mut queue = VecDeque::from([initial]);
        reached[initial] = true;
        while let Some(s) = queue.pop_front() {
            for tr in transitions.iter().filter(|tr| tr.from == s) {
                if !reached[tr.to] {
                    reached[tr.to] = true;
                    queue.push_back(tr.to);
                }
            }
        }
        for (i, s) in states.iter().enumerate() {
            if !reached[i] && state_index.get(&s.id) == Some(&i) {
                c.warning(
                    format!("/states/{i}"),
                    "unreachable_state",
                    format!("state {:?} cannot be reached from the initial state {:?}", s.id, states[initial].id),
                );
            }
        }
    }
    if !states.is_empty() && !states.iter().any(|s| s.is_final) {
        c.warning("/states", "no_final_state", "no state is final: executions never complete");
    }

    let mut report = ValidationReport { problems: c.problems };
    let machine = match (report.is_ok(), initials.first()) {
        (true, Some(&initial)) => match template_hash(t) {
            Ok(hash) => Some(build(
                t,
                hash,
                variables,
                var_types,
                states,
                state_index,
                initial,
                transitions,
                transition_index,
                rules,
                rule_index,
                actions,
            )),
            Err(e) => {
                report.problems.push(Problem {
                    path: String::new(),
                    code: "unserialisable",
                    message: e.to_string(),
                    severity: Severity::Error,
                });
                None
            }
        },
        _ => None,
    };
    Compiled { machine, report }
}

fn token_op(
    c: &mut Checker,
    path: &str,
    op: &TokenOp,
    nodes: &BTreeMap<String, CNode>,
    token_types: &BTreeSet<String>,
) -> Option<CTokenOp> {
    match op {
        TokenOp::Mint(m) | TokenOp::Consume(m) => {
            let (name, wanted) = match op {
                TokenOp::Mint(_) => ("mint", NodeKind::Source),
                _ => ("consume", NodeKind::Sink),
            };
            let p = format!("{path}/{name}");
            let node = nodes.get(&m.node);
            match node {
                None => {
                    c.error(format!("{p}/node"), "unknown_token_node", format!("no token node has id {:?}", m.node))
                }
                Some(n) if n.kind != wanted => c.error(
                    format!("{p}/node"),
                    if wanted == NodeKind::Source { "mint_at_sink" } else { "consume_at_source" },
                    format!("node {:?} is a {}: {name} needs a {}", m.node, n.kind.as_str(), wanted.as_str()),
                ),
                Some(_) => {}
            }
            let account = m.account.clone().unwrap_or_else(|| "main".to_owned());
            c.account(format!("{p}/account"), &account);
            let amount = c.expr(format!("{p}/amount"), &m.amount)?;
            let node_info = node?;
            let (node, token) = (m.node.clone(), node_info.token.clone());
            Some(if wanted == NodeKind::Source {
                CTokenOp::Mint { node, token, account, amount }
            } else {
                CTokenOp::Consume { node, token, account, amount }
            })
        }
        TokenOp::Transfer(tr) => {
            let p = format!("{path}/transfer");
            if !token_types.contains(&tr.token) {
                c.error(format!("{p}/token"), "unknown_token_type", format!("no token type has id {:?}", tr.token));
            }
            c.account(format!("{p}/from"), &tr.from);
            c.account(format!("{p}/to"), &tr.to);
            let amount = c.expr(format!("{p}/amount"), &tr.amount)?;
            Some(CTokenOp::Transfer { token: tr.token.clone(), from: tr.from.clone(), to: tr.to.clone(), amount })
        }
    }
}

/// Compiles an action input: strings starting with `=` are CEL expressions, `==` escapes a
/// literal leading `=`, everything else is literal JSON.
fn input_tree(c: &mut Checker, path: String, v: &Value) -> InputTree {
    match v {
        Value::String(s) if s.starts_with("==") => InputTree::Literal(Value::String(s[1..].to_owned())),
        Value::String(s) if s.starts_with('=') => match c.expr(path.clone(), &s[1..]) {
            Some(expr) => InputTree::Expr { path, expr },
            None => InputTree::Literal(Value::Null),
        },
        Value::Array(items) => InputTree::Array(
            items.iter().enumerate().map(|(i, item)| input_tree(c, format!("{path}/{i}"), item)).collect(),
        ),
        Value::Object(map) => InputTree::Object(
            map.iter().map(|(k, item)| (k.clone(), input_tree(c, format!("{path}/{}", seg(k)), item))).collect(),
        ),
        other => InputTree::Literal(other.clone()),
    }
}

#[allow(clippy::too_many_arguments)] // one call site: the tables compile just built
fn build(
    t: &Template,
    hash: String,
    variables: Vec<CVariable>,
    var_types: BTreeMap<String, VarType>,
    states: Vec<CState>,
    state_index: BTreeMap<String, usize>,
    initial: usize,
    transitions: Vec<CTransition>,
    transition_index: BTreeMap<String, usize>,
    rules: Vec<CRule>,
    rule_index: BTreeMap<String, usize>,
    actions: BTreeMap<String, CAction>,
) -> Machine {
    let mut candidates: Vec<BTreeMap<String, Vec<usize>>> = vec![BTreeMap::new(); states.len()];
    let mut timers = vec![Vec::new(); states.len()];
    for (i, tr) in transitions.iter().enumerate() {
        match &tr.trigger {
            Trigger::On(on) => candidates[tr.from].entry(on.clone()).or_default().push(i),
            Trigger::After(_) => timers[tr.from].push(i),
        }
    }
    let mut rules_by_on: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        rules_by_on.entry(r.on.clone()).or_default().push(i);
    }
    Machine {
        template: t.clone(),
        hash,
        variables,
        var_types,
        states,
        state_index,
        initial,
        transitions,
        transition_index,
        candidates,
        timers,
        rules,
        rule_index,
        rules_by_on,
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_identifiers() {
        assert!(is_valid_id("review"));
        assert!(is_valid_id("submit-rule.v2_x"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("-x"));
        assert!(!is_valid_id("a:b"));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(is_identifier("amount"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("my-var"));
        assert!(!is_identifier("in"));
    }

    #[test]
    fn placeholders_are_found() {
        assert_eq!(placeholders("Classify: {{text}} / {{ lang }} {{x"), vec!["text", "lang"]);
        assert!(placeholders("no placeholders").is_empty());
    }

    #[test]
    fn machine_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Machine>();
    }
}
