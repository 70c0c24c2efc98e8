//! The state-machine step: start, process an event, fire a timer.
//!
//! For each message, in order: the candidate transitions are those leaving the current
//! state on the message type, in template order; the first whose guard holds is chosen (a
//! guard error stops the search). Everything the transition does is computed first
//! (assignments against the pre-transition values, token operations on a copy of the
//! balances, action inputs against the post-transition values); if any of it fails, nothing
//! applies and the message is recorded as unmatched with the reason. Otherwise the entries
//! are drafted in this order: `transition.fired`, token entries, `timer.cancelled` (timers
//! of the left state), `action.scheduled` (onExit of the left state, the transition's
//! actions, onEnter of the entered state), `timer.armed` (timers of the entered state),
//! `execution.completed` (if the entered state is final). A transition always leaves and
//! re-enters its states, self-loops included.

use std::collections::BTreeMap;

use cel::common::types::CelString;
use cel::common::value::Val;
use pled_core::{Body, Kind, Member, RecordedAt};
use serde_json::{Value, json};

use crate::EngineError;
use crate::expr::{Json, Record, Scope, map_val};
use crate::kinds;
use crate::machine::{CTokenOp, InputTree, Machine, Trigger};
use crate::model::{ActionJob, AiOutputs, ArmedTimer, Draft, Event, ExecState, Message, Outcome, TransitionRecord};
use crate::rules::{AiMode, RuleResult};
use crate::values::{amount, coerce, parse_decimal};

/// Token balances while a step runs: token -> account -> amount.
pub(crate) type Balances = BTreeMap<String, BTreeMap<String, u128>>;

/// Checks that a state belongs to this machine; returns its state index and balances.
pub(crate) fn load_state(m: &Machine, state: &ExecState) -> Result<(usize, Balances), EngineError> {
    let index = *m
        .state_index
        .get(&state.state)
        .ok_or_else(|| EngineError::CorruptState(format!("unknown state {:?}", state.state)))?;
    let mut balances = Balances::new();
    for (token, accounts) in &state.balances {
        let entry = balances.entry(token.clone()).or_default();
        for (account, text) in accounts {
            let n = parse_decimal(text)
                .map_err(|e| EngineError::CorruptState(format!("balance of {token}/{account}: {e}")))?;
            entry.insert(account.clone(), n);
        }
    }
    Ok((index, balances))
}

/// Balances as CEL: token -> account -> amount as decimal text (amounts exceed `int`).
fn balances_val(b: &Balances) -> Box<dyn Val + '_> {
    map_val(b.iter().map(|(token, accounts)| {
        let amounts =
            accounts.iter().map(|(a, n)| (a.as_str(), Box::new(CelString::from(n.to_string())) as Box<dyn Val>));
        (token.as_str(), map_val(amounts))
    }))
}

fn balances_text(b: &Balances) -> BTreeMap<String, BTreeMap<String, String>> {
    b.iter()
        .map(|(token, accounts)| (token.clone(), accounts.iter().map(|(a, n)| (a.clone(), n.to_string())).collect()))
        .collect()
}

/// The CEL scope: `vars`, `state`, `event` and `msg` (null when absent), `balances`, each
/// converted only if an expression reads it.
pub(crate) fn scope_for<'a>(
    vars: &'a BTreeMap<String, Value>,
    state: &'a str,
    event: Option<Record<'a>>,
    msg: Option<Record<'a>>,
    balances: &'a Balances,
) -> Scope<'a> {
    Scope::new(Json { vars, state, event, msg }, move || balances_val(balances))
}

/// The `msg` variable of CEL expressions, as a record borrowing the message.
pub(crate) fn msg_record<'a>(msg_type: &'a str, data: &'a Value) -> [(&'a str, Member<'a>); 2] {
    [("data", Member::Json(data)), ("type", Member::Str(msg_type))]
}

/// What triggered a step, for bodies, job keys and due times.
pub(crate) struct StepCtx<'e> {
    /// The `event` CEL variable (null for timers, start and operator controls).
    pub(crate) event: Option<Record<'e>>,
    /// The event's seq (`None` for timers and start).
    pub(crate) event_seq: Option<u64>,
    /// The job key prefix.
    pub(crate) job_prefix: String,
    /// Due times of armed timers count from here.
    pub(crate) base_micros: i64,
    /// `armedAtEvent` of timers armed in this step.
    pub(crate) armed_at_event: u64,
}

/// An action whose input is evaluated, not yet drafted.
pub(crate) struct ReadyAction {
    pub(crate) id: String,
    pub(crate) action_type: String,
    pub(crate) input: Value,
}

/// A transition computed in full, not yet applied.
pub(crate) struct Prepared {
    pub(crate) assigned: BTreeMap<String, Value>,
    pub(crate) balances: Balances,
    pub(crate) token_bodies: Vec<(&'static str, Value)>,
    pub(crate) actions: Vec<ReadyAction>,
}

/// Why a chosen transition cannot apply: (code, reason).
pub(crate) type Refusal = (&'static str, String);

/// A step in progress.
pub(crate) struct Run<'m> {
    pub(crate) m: &'m Machine,
    pub(crate) current: usize,
    pub(crate) state: ExecState,
    pub(crate) balances: Balances,
    pub(crate) drafts: Vec<Draft>,
    messages: Vec<Message>,
    actions: Vec<ActionJob>,
    timers_armed: Vec<ArmedTimer>,
    timers_cancelled: Vec<String>,
    pub(crate) transitions: Vec<TransitionRecord>,
}

impl<'m> Run<'m> {
    pub(crate) fn new(m: &'m Machine, state: &ExecState) -> Result<Self, EngineError> {
        let (current, balances) = load_state(m, state)?;
        Ok(Run {
            m,
            current,
            state: state.clone(),
            balances,
            drafts: Vec::new(),
            messages: Vec::new(),
            actions: Vec::new(),
            timers_armed: Vec::new(),
            timers_cancelled: Vec::new(),
            transitions: Vec::new(),
        })
    }

    pub(crate) fn draft(&mut self, kind: &str, body: Value) -> Result<(), EngineError> {
        self.drafts.push(Draft::new(kind, &body)?);
        Ok(())
    }

    /// Drafts an entry whose body is written straight from its members (the entries every
    /// event writes; the bytes are those of [`Run::draft`] on the same object). Callers list
    /// the members in byte order of their names, which spares most of the sort.
    pub(crate) fn draft_members(&mut self, kind: Kind, members: &mut [(&str, Member<'_>)]) -> Result<(), EngineError> {
        self.drafts.push(Draft { kind, body: Body::from_members(members)? });
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Outcome {
        self.state.balances = balances_text(&self.balances);
        Outcome {
            state: self.state,
            drafts: self.drafts,
            messages: self.messages,
            actions: self.actions,
            timers_armed: self.timers_armed,
            timers_cancelled: self.timers_cancelled,
            transitions: self.transitions,
        }
    }

    pub(crate) fn scope<'a>(&'a self, ctx: &StepCtx<'a>, msg: Option<Record<'a>>) -> Scope<'a> {
        scope_for(&self.state.vars, &self.state.state, ctx.event, msg, &self.balances)
    }

    fn unmatched(
        &mut self,
        ctx: &StepCtx<'_>,
        msg_index: Option<usize>,
        msg_type: &str,
        (code, reason): Refusal,
    ) -> Result<(), EngineError> {
        let body = json!({
            "eventSeq": ctx.event_seq,
            "messageIndex": msg_index,
            "type": msg_type,
            "state": self.state.state,
            "code": code,
            "reason": reason,
        });
        self.draft(kinds::MESSAGE_UNMATCHED, body)
    }

    /// Steps one message (or timer) through the candidate transitions.
    fn step(
        &mut self,
        ctx: &StepCtx<'_>,
        msg_index: Option<usize>,
        (msg_type, data): (&str, &Value),
        candidates: &[usize],
    ) -> Result<(), EngineError> {
        if self.state.completed {
            let reason = format!("execution already completed (final state {:?})", self.state.state);
            return self.unmatched(ctx, msg_index, msg_type, ("completed", reason));
        }
        if candidates.is_empty() {
            let reason = format!("no transition on {msg_type:?} from state {:?}", self.state.state);
            return self.unmatched(ctx, msg_index, msg_type, ("no_transition", reason));
        }
        // Decide with the scope (which borrows the state), then act on the decision.
        let decision = self.choose(ctx, &msg_record(msg_type, data), candidates);
        match decision {
            Ok((t, p)) => self.apply(t, p, ctx, msg_index),
            Err(refusal) => self.unmatched(ctx, msg_index, msg_type, refusal),
        }
    }

    /// Picks the first candidate whose guard holds and prepares it.
    fn choose(&self, ctx: &StepCtx<'_>, msg: Record<'_>, candidates: &[usize]) -> Result<(usize, Prepared), Refusal> {
        let scope = self.scope(ctx, Some(msg));
        let mut false_guards = Vec::new();
        for &t in candidates {
            let tr = &self.m.transitions[t];
            let holds = match &tr.guard {
                None => true,
                Some(g) => scope.eval_bool(g).map_err(|e| {
                    let reason = format!("guard of transition {:?} failed: {e} (guard: {})", tr.id, g.source());
                    ("guard_error", reason)
                })?,
            };
            if holds {
                return Ok((t, self.prepare(t, &scope, ctx, msg)?));
            }
            false_guards.push(tr.id.as_str());
        }
        Err(("guards_false", format!("every guard was false: {}", false_guards.join(", "))))
    }

    /// Computes everything transition `t` does, or why it cannot.
    pub(crate) fn prepare(
        &self,
        t: usize,
        scope: &Scope<'_>,
        ctx: &StepCtx<'_>,
        msg: Record<'_>,
    ) -> Result<Prepared, Refusal> {
        let tr = &self.m.transitions[t];
        let mut assigned = BTreeMap::new();
        for (var, e) in &tr.assign {
            let v = scope.eval_json(e).map_err(|err| {
                ("assign_error", format!("assignment to {var:?} failed: {err} (expression: {})", e.source()))
            })?;
            let var_type = self.m.var_types.get(var).copied().unwrap_or(crate::VarType::Any);
            let v = coerce(var_type, &v).map_err(|err| ("assign_error", format!("assignment to {var:?}: {err}")))?;
            assigned.insert(var.clone(), v);
        }

        let mut balances = self.balances.clone();
        let mut token_bodies = Vec::new();
        for op in &tr.tokens {
            let (expr, what) = match op {
                CTokenOp::Mint { amount, .. } => (amount, "mint"),
                CTokenOp::Transfer { amount, .. } => (amount, "transfer"),
                CTokenOp::Consume { amount, .. } => (amount, "consume"),
            };
            let n = scope.eval(expr).and_then(|v| amount(&v)).map_err(|err| {
                ("token_error", format!("{what} amount failed: {err} (expression: {})", expr.source()))
            })?;
            token_bodies.push(apply_token_op(&mut balances, op, n)?);
        }

        let from = &self.m.states[tr.from];
        let to = &self.m.states[tr.to];
        let ids = from.on_exit.iter().chain(&tr.actions).chain(&to.on_enter);
        // Action inputs see the variables after the assignments, merged only when
        // `ready_actions` asks for the scope (an input reads it).
        let vars = std::cell::OnceCell::new();
        let actions = ready_actions(self.m, ids, || {
            let vars = vars.get_or_init(|| {
                let mut vars = self.state.vars.clone();
                vars.extend(assigned.iter().map(|(k, v)| (k.clone(), v.clone())));
                vars
            });
            scope_for(vars, &to.id, ctx.event, Some(msg), &balances)
        })
        .map_err(|reason| ("action_input_error", reason))?;
        Ok(Prepared { assigned, balances, token_bodies, actions })
    }

    /// Applies a prepared transition and drafts its entries.
    fn apply(&mut self, t: usize, p: Prepared, ctx: &StepCtx<'_>, msg_index: Option<usize>) -> Result<(), EngineError> {
        let m = self.m;
        let tr = &m.transitions[t];
        let (from, to) = (&m.states[tr.from], &m.states[tr.to]);
        let body = Body::from_members(&mut [
            ("assigned", Member::Object(&p.assigned)),
            ("eventSeq", Member::opt_uint(ctx.event_seq)),
            ("from", Member::Str(&from.id)),
            ("messageIndex", Member::opt_uint(msg_index.map(|i| i as u64))),
            ("to", Member::Str(&to.id)),
            ("transitionId", Member::Str(&tr.id)),
        ])?;
        self.transitions.push(TransitionRecord {
            message_index: msg_index,
            transition_id: tr.id.clone(),
            from: from.id.clone(),
            to: to.id.clone(),
        });
        self.move_to(tr.to, Draft { kind: const { Kind::known(kinds::TRANSITION_FIRED) }, body }, p, ctx)
    }

    /// Leaves the current state for state `to`: drafts `first` (the transition's own entry),
    /// the token entries, `timer.cancelled` for the left state's timers and the scheduled
    /// actions, applies the assignments and balances, then enters `to`.
    pub(crate) fn move_to(
        &mut self,
        to: usize,
        first: Draft,
        p: Prepared,
        ctx: &StepCtx<'_>,
    ) -> Result<(), EngineError> {
        self.drafts.push(first);
        for (kind, body) in p.token_bodies {
            self.draft(kind, body)?;
        }
        for timer in std::mem::take(&mut self.state.timers) {
            self.draft_members(
                const { Kind::known(kinds::TIMER_CANCELLED) },
                &mut [("transitionId", Member::Str(&timer.transition_id))],
            )?;
            self.timers_cancelled.push(timer.transition_id);
        }
        self.schedule(p.actions, ctx)?;
        self.state.state = self.m.states[to].id.clone();
        self.current = to;
        self.state.vars.extend(p.assigned);
        self.balances = p.balances;
        self.enter(ctx)
    }

    pub(crate) fn schedule(&mut self, actions: Vec<ReadyAction>, ctx: &StepCtx<'_>) -> Result<(), EngineError> {
        for a in actions {
            let draft_index = self.drafts.len();
            let job_key = format!("{}:{draft_index}:{}", ctx.job_prefix, a.id);
            self.draft_members(
                const { Kind::known(kinds::ACTION_SCHEDULED) },
                &mut [
                    ("actionId", Member::Str(&a.id)),
                    ("input", Member::Json(&a.input)),
                    ("jobKey", Member::Str(&job_key)),
                    ("type", Member::Str(&a.action_type)),
                ],
            )?;
            self.actions.push(ActionJob {
                action_id: a.id,
                action_type: a.action_type,
                input: a.input,
                draft_index,
                job_key,
            });
        }
        Ok(())
    }

    /// Arms the timers of the (just entered) current state and completes a final state.
    pub(crate) fn enter(&mut self, ctx: &StepCtx<'_>) -> Result<(), EngineError> {
        let m = self.m;
        for &t in &m.timers[self.current] {
            let tr = &m.transitions[t];
            let Trigger::After(d) = &tr.trigger else {
                continue;
            };
            let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            let due = RecordedAt::from_unix_micros(ctx.base_micros.saturating_add(micros))?;
            self.draft_members(
                const { Kind::known(kinds::TIMER_ARMED) },
                &mut [
                    ("after", Member::Str(&d.to_string())),
                    ("dueAt", Member::Str(due.as_str())),
                    ("transitionId", Member::Str(&tr.id)),
                ],
            )?;
            let timer = ArmedTimer {
                transition_id: tr.id.clone(),
                due_at: due.as_str().to_owned(),
                armed_at_event: ctx.armed_at_event,
            };
            self.timers_armed.push(timer.clone());
            self.state.timers.push(timer);
        }
        if m.states[self.current].is_final {
            self.state.completed = true;
            self.draft(kinds::EXECUTION_COMPLETED, json!({"state": self.state.state}))?;
        }
        Ok(())
    }
}

/// The payload as the `event.received` draft holds it: its JSON read back from the canonical
/// text. Only numbers that are not integers can read back differently (`1.0` becomes `1`), so
/// a payload without them is already in that form and is not parsed again.
fn canonical_payload<'p>(payload: &'p Value, received: &Draft) -> Result<std::borrow::Cow<'p, Value>, EngineError> {
    fn has_fraction(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.is_f64(),
            Value::Array(items) => items.iter().any(has_fraction),
            Value::Object(map) => map.values().any(has_fraction),
            Value::Null | Value::Bool(_) | Value::String(_) => false,
        }
    }
    if !has_fraction(payload) {
        return Ok(std::borrow::Cow::Borrowed(payload));
    }
    Ok(std::borrow::Cow::Owned(match received.body.to_value()? {
        Value::Object(mut body) => body.remove("payload").unwrap_or_default(),
        _ => Value::Null,
    }))
}

/// Applies one token operation to `balances`; returns its entry kind and body.
fn apply_token_op(balances: &mut Balances, op: &CTokenOp, n: u128) -> Result<(&'static str, Value), Refusal> {
    fn debit(balances: &mut Balances, token: &str, account: &str, n: u128, what: &str) -> Result<u128, Refusal> {
        let held = balances.get(token).and_then(|a| a.get(account)).copied().unwrap_or(0);
        let left = held.checked_sub(n).ok_or_else(|| {
            (
                "insufficient_balance",
                format!("insufficient balance: account {account} holds {held} {token}, {what} needs {n}"),
            )
        })?;
        balances.entry(token.to_owned()).or_default().insert(account.to_owned(), left);
        Ok(left)
    }
    fn credit(balances: &mut Balances, token: &str, account: &str, n: u128) -> Result<u128, Refusal> {
        let held = balances.get(token).and_then(|a| a.get(account)).copied().unwrap_or(0);
        let total = held.checked_add(n).ok_or_else(|| {
            ("token_overflow", format!("account {account} holds {held} {token}: adding {n} exceeds 2^128-1"))
        })?;
        balances.entry(token.to_owned()).or_default().insert(account.to_owned(), total);
        Ok(total)
    }
    Ok(match op {
        CTokenOp::Mint { node, token, account, .. } => {
            let balance = credit(balances, token, account, n)?;
            (
                kinds::TOKEN_MINTED,
                json!({"node": node, "token": token, "account": account, "amount": n.to_string(), "balance": balance.to_string()}),
            )
        }
        CTokenOp::Consume { node, token, account, .. } => {
            let balance = debit(balances, token, account, n, "consume")?;
            (
                kinds::TOKEN_CONSUMED,
                json!({"node": node, "token": token, "account": account, "amount": n.to_string(), "balance": balance.to_string()}),
            )
        }
        CTokenOp::Transfer { token, from, to, .. } => {
            let from_balance = debit(balances, token, from, n, "transfer")?;
            let to_balance = credit(balances, token, to, n)?;
            // A transfer to the same account leaves it as it was.
            let from_balance = if from == to { to_balance } else { from_balance };
            (
                kinds::TOKEN_TRANSFERRED,
                json!({
                    "token": token, "from": from, "to": to, "amount": n.to_string(),
                    "fromBalance": from_balance.to_string(), "toBalance": to_balance.to_string(),
                }),
            )
        }
    })
}

/// Evaluates the inputs of the listed actions; the scope is built only if an input needs it.
pub(crate) fn ready_actions<'a, 's>(
    m: &Machine,
    ids: impl Iterator<Item = &'a String>,
    scope: impl FnOnce() -> Scope<'s>,
) -> Result<Vec<ReadyAction>, String> {
    // INVARIANT: compile checked every action id, so none is skipped here.
    let actions: Vec<_> = ids.filter_map(|id| m.actions.get(id)).collect();
    let scope = actions.iter().any(|a| a.input.needs_scope()).then(scope);
    let mut out = Vec::with_capacity(actions.len());
    for action in actions {
        let input = eval_input(&action.input, scope.as_ref())
            .map_err(|(path, err)| format!("input of action {:?} at {path} failed: {err}", action.id))?;
        out.push(ReadyAction { id: action.id.clone(), action_type: action.action_type.clone(), input });
    }
    Ok(out)
}

pub(crate) fn eval_input(tree: &InputTree, scope: Option<&Scope<'_>>) -> Result<Value, (String, String)> {
    Ok(match tree {
        InputTree::Literal(v) => v.clone(),
        InputTree::Expr { path, expr } => {
            let Some(s) = scope else {
                return Err((path.clone(), "no scope".into()));
            };
            s.eval_json(expr).map_err(|e| (path.clone(), format!("{e} (expression: {})", expr.source())))?
        }
        InputTree::Array(items) => Value::Array(items.iter().map(|i| eval_input(i, scope)).collect::<Result<_, _>>()?),
        InputTree::Object(fields) => Value::Object(
            fields.iter().map(|(k, i)| eval_input(i, scope).map(|v| (k.clone(), v))).collect::<Result<_, _>>()?,
        ),
    })
}

impl Machine {
    /// Starts an execution: the initial state with the variables' defaults, overridden by
    /// `inputs` (a JSON object of variable -> value, each checked against its type). The
    /// outcome drafts the initial state's onEnter actions (`action.scheduled`), its timers
    /// (`timer.armed`, due times counted from `started_at`) and, if the initial state is
    /// final, `execution.completed`.
    pub fn initial_state(&self, inputs: Option<&Value>, started_at: &str) -> Result<Outcome, EngineError> {
        let started_at = RecordedAt::parse(started_at)?;
        let mut vars: BTreeMap<String, Value> =
            self.variables.iter().map(|v| (v.name.clone(), v.default.clone())).collect();
        if let Some(inputs) = inputs {
            if !inputs.is_object() {
                return Err(EngineError::InvalidInputs("inputs must be a JSON object".into()));
            }
            let inputs = pled_core::Body::from_value(inputs)?.to_value()?;
            for (name, value) in inputs.as_object().into_iter().flatten() {
                let t = self
                    .var_types
                    .get(name)
                    .ok_or_else(|| EngineError::InvalidInputs(format!("unknown variable {name:?}")))?;
                let v = coerce(*t, value).map_err(|e| EngineError::InvalidInputs(format!("variable {name:?}: {e}")))?;
                vars.insert(name.clone(), v);
            }
        }
        let state = ExecState {
            state: self.initial_state_id().to_owned(),
            vars,
            balances: BTreeMap::new(),
            completed: false,
            event_count: 0,
            timers: Vec::new(),
        };
        let mut run = Run::new(self, &state)?;
        let ctx = StepCtx {
            event: None,
            event_seq: None,
            job_prefix: "start".to_owned(),
            base_micros: started_at.unix_micros(),
            armed_at_event: 0,
        };
        let initial = &self.states[self.initial];
        let actions = ready_actions(self, initial.on_enter.iter(), || {
            scope_for(&run.state.vars, &initial.id, None, None, &run.balances)
        })
        .map_err(EngineError::InvalidInputs)?;
        run.schedule(actions, &ctx)?;
        run.enter(&ctx)?;
        Ok(run.finish())
    }

    /// Processes one event: drafts `event.received`, runs the rules (`message.derived` /
    /// `rule.failed`), then steps every message in order. `ai` holds the outputs for the
    /// event's [`Machine::ai_requests`]; a missing one is recorded as a `rule.failed`.
    pub fn process_event(&self, state: &ExecState, event: &Event, ai: &AiOutputs) -> Result<Outcome, EngineError> {
        let received_at = event.validate()?;
        let mut run = Run::new(self, state)?;
        let mut received = vec![
            ("eventSeq", Member::UInt(event.event_seq)),
            ("payload", Member::Json(&event.payload)),
            ("receivedAt", Member::Str(&event.received_at)),
            ("source", Member::Str(&event.source)),
            ("type", Member::Str(&event.r#type)),
        ];
        if let Some(at) = &event.occurred_at {
            received.insert(1, ("occurredAt", Member::Str(at)));
        }
        run.draft_members(const { Kind::known(kinds::EVENT_RECEIVED) }, &mut received)?;
        // Rules see the payload as the ledger holds it (canonical numbers), so that replaying
        // from the stored `event.received` body evaluates exactly like the live event.
        let payload = canonical_payload(&event.payload, &run.drafts[0])?;
        let event_record = event.cel_record(&payload);
        let ctx = StepCtx {
            event: Some(&event_record),
            event_seq: Some(event.event_seq),
            job_prefix: event.event_seq.to_string(),
            base_micros: received_at.unix_micros(),
            armed_at_event: event.event_seq,
        };
        let results = self.derive(&run.scope(&ctx, None), event, &payload, AiMode::Outputs(ai));
        for result in results {
            match result {
                RuleResult::Message(m) => {
                    let ai = m.ai.as_ref().map(|ai| {
                        json!({"model": ai.model, "prompt": ai.prompt, "inputs": ai.inputs, "inputHash": ai.input_hash})
                    });
                    let mut body = vec![
                        ("data", Member::Json(&m.data)),
                        ("deterministic", Member::Bool(m.deterministic)),
                        ("eventSeq", Member::UInt(event.event_seq)),
                        ("index", Member::UInt(m.index as u64)),
                        ("ruleId", Member::opt_str(m.rule_id.as_deref())),
                        ("type", Member::Str(&m.r#type)),
                    ];
                    if let Some(ai) = &ai {
                        body.insert(0, ("ai", Member::Json(ai)));
                    }
                    run.draft_members(const { Kind::known(kinds::MESSAGE_DERIVED) }, &mut body)?;
                    run.messages.push(m);
                }
                RuleResult::Failed { rule_id, stage, expression, error } => run.draft(
                    kinds::RULE_FAILED,
                    json!({
                        "eventSeq": event.event_seq, "ruleId": rule_id, "stage": stage,
                        "expression": expression, "error": error,
                    }),
                )?,
            }
        }
        // Stepping does not touch the messages: they are lent out while it runs.
        let messages = std::mem::take(&mut run.messages);
        for m in &messages {
            let candidates = self.candidates[run.current].get(m.r#type.as_str()).map_or(&[][..], Vec::as_slice);
            run.step(&ctx, Some(m.index), (&m.r#type, &m.data), candidates)?;
        }
        run.messages = messages;
        run.state.event_count += 1;
        Ok(run.finish())
    }

    /// Fires the timer of `after` transition `transition_id` at `now` (RFC 3339 UTC with
    /// microseconds, not before its due time). Drafts `timer.fired`, then steps the
    /// transition like a message `{type: "timer.fired", data: {transitionId, dueAt}}` (its
    /// guard may refuse it; the timer is spent either way). A timer that is not armed, or
    /// whose state was left, or an execution already completed, gives a `timer.ignored`
    /// draft and an unchanged state.
    pub fn fire_timer(&self, state: &ExecState, transition_id: &str, now: &str) -> Result<Outcome, EngineError> {
        let t = self
            .transition_index
            .get(transition_id)
            .copied()
            .filter(|&t| matches!(self.transitions[t].trigger, Trigger::After(_)))
            .ok_or_else(|| EngineError::UnknownTransition(transition_id.to_owned()))?;
        let now_at = RecordedAt::parse(now)?;
        let mut run = Run::new(self, state)?;
        let armed = run.state.timers.iter().position(|timer| timer.transition_id == transition_id);
        let from = &self.states[self.transitions[t].from].id;
        let ignored = if run.state.completed {
            Some("execution already completed".to_owned())
        } else if armed.is_none() {
            Some("timer is not armed".to_owned())
        } else if *from != run.state.state {
            Some(format!("state {from:?} was left (now in {:?})", run.state.state))
        } else {
            None
        };
        let (Some(armed), None) = (armed, &ignored) else {
            let reason = ignored.unwrap_or_default();
            run.draft(kinds::TIMER_IGNORED, json!({"transitionId": transition_id, "firedAt": now, "reason": reason}))?;
            return Ok(run.finish());
        };
        let timer = run.state.timers.remove(armed);
        let due = RecordedAt::parse(&timer.due_at)?;
        if now_at < due {
            return Err(EngineError::TimerNotDue {
                transition_id: transition_id.to_owned(),
                due_at: timer.due_at,
                now: now.to_owned(),
            });
        }
        run.draft(kinds::TIMER_FIRED, json!({"transitionId": transition_id, "dueAt": timer.due_at, "firedAt": now}))?;
        let ctx = StepCtx {
            event: None,
            event_seq: None,
            job_prefix: format!("timer.{}.{}.{}", timer.armed_at_event, due.unix_micros(), transition_id),
            base_micros: now_at.unix_micros(),
            armed_at_event: timer.armed_at_event,
        };
        let data = json!({"transitionId": transition_id, "dueAt": timer.due_at});
        run.step(&ctx, None, ("timer.fired", &data), &[t])?;
        Ok(run.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload read back from the `event.received` body, always parsed again.
    fn reparsed(payload: &Value) -> Value {
        let draft = Draft::new(kinds::EVENT_RECEIVED, &json!({ "payload": payload })).unwrap();
        draft.body.to_value().unwrap()["payload"].clone()
    }

    #[test]
    fn a_payload_is_taken_as_it_reads_back_from_the_ledger() {
        for payload in [
            json!({}),
            json!({ "qty": 3, "neg": -7, "big": 9_007_199_254_740_991_u64, "s": "a\"b\u{1F600}\n", "z": null }),
            json!({ "nested": { "b": [1, { "c": true }], "a": "x" }, "list": [[], {}] }),
            json!({ "f": 1.0, "g": 2.5, "h": 1e3, "i": -0.0, "j": 1e21, "k": [0.1, 3] }),
            json!([1, 2.0]),
        ] {
            let draft = Draft::new(kinds::EVENT_RECEIVED, &json!({ "payload": payload })).unwrap();
            assert_eq!(*canonical_payload(&payload, &draft).unwrap(), reparsed(&payload), "{payload}");
        }
        assert_eq!(reparsed(&json!({ "f": 1.0 })), json!({ "f": 1 }), "the slow path changes what it must");
    }
}
