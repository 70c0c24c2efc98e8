//! The common core of CEL, compiled to a small tree that is evaluated straight over the JSON
//! context, without building interpreter values.
//!
//! Most template expressions read a few fields and do a little arithmetic:
//! `msg.data.amount > 0`, `vars.total + msg.data.amount`, `event.payload.qty * 3`. For those,
//! cel-rust's tree walk converts every context variable it touches into its own values and
//! resolves every name through its environment, which costs more than the work itself.
//!
//! **cel-rust stays the reference.** This form only ever answers with a value when it is
//! certain cel-rust gives the same one; everywhere else it declines (`None`), and the
//! expression is evaluated by cel-rust. It declines:
//!
//! - at compile time, for anything outside the core: function and method calls (but
//!   `string()`), macros,
//!   `balances`, bytes, names other than the context variables, map literals with repeated
//!   or non-string keys;
//! - at run time, wherever CEL would raise an error (a missing key, overflow, division by
//!   zero, an operand of the wrong type) and wherever its rules for mixed types apply
//!   (`1 == 1.0`, `1 < 2u`, `NaN`): cel-rust produces the value or the error text.
//!
//! What it answers: literals; `vars`, `state`, `event`, `msg` and fields, `has()` and
//! indexes of them; `+ - * / %` on two ints or two uints (checked), `+ - * /` on two
//! doubles, `+` on two strings; unary `-` and `!`; `== != < <= > >=` on two values of the
//! same scalar type; `&&`, `||` and `?:` with bool operands; `in` on a list (elements of the
//! needle's type) or a map (a string key); `string()` of an int, uint, bool or string; list
//! and map literals. A property test
//! (`tests::agrees_with_cel`) checks every answer against cel-rust.

use std::borrow::Cow;
use std::collections::BTreeMap;

use cel::common::ast::{EntryExpr, Expr as Node, IdedExpr, LiteralValue, operators};
use serde_json::{Map, Number, Value};

use pled_core::{MAX_SAFE_INTEGER, Member};

/// A JSON object held as its members, borrowed: `event` and `msg` are made per step from
/// the event and the message, without copying the payload or the data. Names are distinct.
pub(crate) type Record<'a> = &'a [(&'a str, Member<'a>)];

/// The JSON context an expression reads (`balances` is not here: expressions that read it
/// are not compiled).
#[derive(Clone, Copy)]
pub(crate) struct Json<'a> {
    /// `vars`.
    pub(crate) vars: &'a BTreeMap<String, Value>,
    /// `state`.
    pub(crate) state: &'a str,
    /// `event` (`null` when absent: timers, start, operator controls).
    pub(crate) event: Option<Record<'a>>,
    /// `msg` (`null` when absent).
    pub(crate) msg: Option<Record<'a>>,
}

#[derive(Debug, Clone, Copy)]
enum Root {
    Vars,
    State,
    Event,
    Msg,
}

#[derive(Debug, Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub(crate) struct Code(Op);

#[derive(Debug, Clone)]
enum Op {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(String),
    Root(Root),
    /// Fields of a root (`msg.data.amount`), outermost last.
    Path(Root, Box<[String]>),
    Field(Box<Op>, String),
    Has(Box<Op>, String),
    Index(Box<Op>, Box<Op>),
    Not(Box<Op>),
    Neg(Box<Op>),
    /// `string(x)`.
    String(Box<Op>),
    Arith(Arith, Box<Op>, Box<Op>),
    Cmp(Cmp, Box<Op>, Box<Op>),
    And(Box<Op>, Box<Op>),
    Or(Box<Op>, Box<Op>),
    Cond(Box<Op>, Box<Op>, Box<Op>),
    In(Box<Op>, Box<Op>),
    List(Vec<Op>),
    Map(Vec<(String, Op)>),
}

/// Compiles a parsed expression; `None` when it uses anything outside the core.
pub(crate) fn compile(e: &IdedExpr) -> Option<Code> {
    op(e).map(Code)
}

fn op(e: &IdedExpr) -> Option<Op> {
    let b = |e: &IdedExpr| op(e).map(Box::new);
    Some(match &e.expr {
        Node::Literal(l) => match l {
            LiteralValue::Null => Op::Null,
            LiteralValue::Boolean(v) => Op::Bool(*v.inner()),
            LiteralValue::Int(v) => Op::Int(*v.inner()),
            LiteralValue::UInt(v) => Op::UInt(*v.inner()),
            LiteralValue::Double(v) => Op::Double(*v.inner()),
            LiteralValue::String(v) => Op::Str(v.inner().to_owned()),
            LiteralValue::Bytes(_) => return None,
        },
        Node::Ident(name) => Op::Root(match name.as_str() {
            "vars" => Root::Vars,
            "state" => Root::State,
            "event" => Root::Event,
            "msg" => Root::Msg,
            _ => return None,
        }),
        Node::Select(s) if s.test => Op::Has(b(&s.operand)?, s.field.clone()),
        Node::Select(s) => match op(&s.operand)? {
            Op::Root(root) => Op::Path(root, Box::new([s.field.clone()])),
            Op::Path(root, fields) => Op::Path(root, fields.iter().cloned().chain([s.field.clone()]).collect()),
            operand => Op::Field(Box::new(operand), s.field.clone()),
        },
        Node::List(l) if l.optional_indices.is_empty() => Op::List(l.elements.iter().map(op).collect::<Option<_>>()?),
        Node::Map(m) => {
            let mut entries: Vec<(String, Op)> = Vec::with_capacity(m.entries.len());
            for entry in &m.entries {
                let EntryExpr::MapEntry(entry) = &entry.expr else { return None };
                let Node::Literal(LiteralValue::String(key)) = &entry.key.expr else { return None };
                if entry.optional || entries.iter().any(|(k, _)| k == key.inner()) {
                    return None;
                }
                entries.push((key.inner().to_owned(), op(&entry.value)?));
            }
            Op::Map(entries)
        }
        Node::Call(call) if call.target.is_none() => {
            let a = &call.args;
            match (call.func_name.as_str(), a.len()) {
                (operators::LOGICAL_NOT, 1) => Op::Not(b(&a[0])?),
                (operators::NEGATE, 1) => Op::Neg(b(&a[0])?),
                (operators::CONDITIONAL, 3) => Op::Cond(b(&a[0])?, b(&a[1])?, b(&a[2])?),
                ("string", 1) => Op::String(b(&a[0])?),
                (name, 2) => {
                    let (l, r) = (b(&a[0])?, b(&a[1])?);
                    match name {
                        operators::LOGICAL_AND => Op::And(l, r),
                        operators::LOGICAL_OR => Op::Or(l, r),
                        operators::INDEX => Op::Index(l, r),
                        operators::IN => Op::In(l, r),
                        operators::ADD => Op::Arith(Arith::Add, l, r),
                        operators::SUBSTRACT => Op::Arith(Arith::Sub, l, r),
                        operators::MULTIPLY => Op::Arith(Arith::Mul, l, r),
                        operators::DIVIDE => Op::Arith(Arith::Div, l, r),
                        operators::MODULO => Op::Arith(Arith::Rem, l, r),
                        operators::EQUALS => Op::Cmp(Cmp::Eq, l, r),
                        operators::NOT_EQUALS => Op::Cmp(Cmp::Ne, l, r),
                        operators::LESS => Op::Cmp(Cmp::Lt, l, r),
                        operators::LESS_EQUALS => Op::Cmp(Cmp::Le, l, r),
                        operators::GREATER => Op::Cmp(Cmp::Gt, l, r),
                        operators::GREATER_EQUALS => Op::Cmp(Cmp::Ge, l, r),
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// A value during evaluation. Containers borrow the context where they can.
#[derive(Debug, Clone)]
enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Cow<'a, str>),
    /// A JSON object or array of the context.
    Json(&'a Value),
    /// `vars`, or an object member of a record.
    Object(&'a BTreeMap<String, Value>),
    /// `event` or `msg`.
    Record(Record<'a>),
    List(Vec<V<'a>>),
    Map(Vec<(&'a str, V<'a>)>),
}

/// A JSON value as CEL sees it (the same mapping as `json_val`).
fn of_json(v: &Value) -> V<'_> {
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => V::Int(i),
            (None, Some(u)) => V::UInt(u),
            (None, None) => V::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => V::Str(Cow::Borrowed(s)),
        Value::Array(_) | Value::Object(_) => V::Json(v),
    }
}

/// A record's member as CEL sees it: as the same member of a JSON object would be.
fn of_member<'a>(m: &Member<'a>) -> V<'a> {
    match *m {
        Member::Json(v) => of_json(v),
        Member::Str(s) => V::Str(Cow::Borrowed(s)),
        Member::UInt(n) => i64::try_from(n).map_or(V::UInt(n), V::Int),
        Member::Bool(b) => V::Bool(b),
        Member::Null => V::Null,
        Member::Object(m) => V::Object(m),
    }
}

/// Evaluates `code` to JSON; `None` where cel-rust must decide (see the module docs).
pub(crate) fn eval_json(code: &Code, ctx: &Json<'_>) -> Option<Value> {
    to_json(&eval(&code.0, ctx)?)
}

/// Evaluates `code` to a bool; `None` where cel-rust must decide, or for another type.
pub(crate) fn eval_bool(code: &Code, ctx: &Json<'_>) -> Option<bool> {
    as_bool(eval(&code.0, ctx)?)
}

fn as_bool(v: V<'_>) -> Option<bool> {
    match v {
        V::Bool(b) => Some(b),
        _ => None,
    }
}

fn eval<'a>(code: &'a Op, ctx: &Json<'a>) -> Option<V<'a>> {
    Some(match code {
        Op::Null => V::Null,
        Op::Bool(b) => V::Bool(*b),
        Op::Int(i) => V::Int(*i),
        Op::UInt(u) => V::UInt(*u),
        Op::Double(d) => V::Double(*d),
        Op::Str(s) => V::Str(Cow::Borrowed(s)),
        Op::Root(Root::Vars) => V::Object(ctx.vars),
        Op::Root(Root::State) => V::Str(Cow::Borrowed(ctx.state)),
        Op::Root(Root::Event) => ctx.event.map_or(V::Null, V::Record),
        Op::Root(Root::Msg) => ctx.msg.map_or(V::Null, V::Record),
        Op::Path(root, fields) => path(*root, fields, ctx)?,
        Op::Field(operand, field) => lookup(eval(operand, ctx)?, field)?,
        Op::Has(operand, field) => V::Bool(match eval(operand, ctx)? {
            V::Json(Value::Object(m)) => m.contains_key(field),
            V::Object(m) => m.contains_key(field),
            V::Record(r) => r.iter().any(|(k, _)| k == field),
            V::Map(entries) => entries.iter().any(|(k, _)| k == field),
            _ => return None,
        }),
        Op::Index(base, index) => match (eval(base, ctx)?, eval(index, ctx)?) {
            (V::Json(Value::Array(items)), V::Int(i)) => of_json(items.get(usize::try_from(i).ok()?)?),
            (V::List(mut items), V::Int(i)) => {
                let i = usize::try_from(i).ok().filter(|i| *i < items.len())?;
                items.swap_remove(i)
            }
            (map, V::Str(key)) => lookup(map, &key)?,
            _ => return None,
        },
        Op::Not(operand) => match eval(operand, ctx)? {
            V::Bool(b) => V::Bool(!b),
            _ => return None,
        },
        Op::Neg(operand) => match eval(operand, ctx)? {
            V::Int(i) => V::Int(i.checked_neg()?),
            V::Double(d) => V::Double(-d),
            _ => return None,
        },
        // cel-rust writes these with Rust's `Display`; doubles and the rest are left to it.
        Op::String(operand) => V::Str(match eval(operand, ctx)? {
            V::Int(i) => Cow::Owned(i.to_string()),
            V::UInt(u) => Cow::Owned(u.to_string()),
            V::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            V::Str(s) => s,
            _ => return None,
        }),
        Op::Arith(op, l, r) => arith(*op, eval(l, ctx)?, eval(r, ctx)?)?,
        Op::Cmp(op, l, r) => {
            let (l, r) = (eval(l, ctx)?, eval(r, ctx)?);
            V::Bool(match op {
                Cmp::Eq => equal(&l, &r)?,
                Cmp::Ne => !equal(&l, &r)?,
                Cmp::Lt => compare(&l, &r)?.is_lt(),
                Cmp::Le => compare(&l, &r)?.is_le(),
                Cmp::Gt => compare(&l, &r)?.is_gt(),
                Cmp::Ge => compare(&l, &r)?.is_ge(),
            })
        }
        // CEL's `&&` and `||` are commutative over errors; with a bool on the left they
        // are the usual short circuit, and anything else is left to cel-rust.
        Op::And(l, r) => match eval(l, ctx)? {
            V::Bool(false) => V::Bool(false),
            V::Bool(true) => V::Bool(as_bool(eval(r, ctx)?)?),
            _ => return None,
        },
        Op::Or(l, r) => match eval(l, ctx)? {
            V::Bool(true) => V::Bool(true),
            V::Bool(false) => V::Bool(as_bool(eval(r, ctx)?)?),
            _ => return None,
        },
        Op::Cond(c, yes, no) => match eval(c, ctx)? {
            V::Bool(true) => eval(yes, ctx)?,
            V::Bool(false) => eval(no, ctx)?,
            _ => return None,
        },
        Op::In(needle, haystack) => {
            let needle = eval(needle, ctx)?;
            V::Bool(match eval(haystack, ctx)? {
                V::Json(Value::Array(items)) => contains(&needle, items.iter().map(of_json))?,
                V::List(items) => contains(&needle, items.into_iter())?,
                V::Json(Value::Object(m)) => m.contains_key(as_key(&needle)?),
                V::Object(m) => m.contains_key(as_key(&needle)?),
                V::Record(r) => {
                    let key = as_key(&needle)?;
                    r.iter().any(|(k, _)| *k == key)
                }
                V::Map(entries) => {
                    let key = as_key(&needle)?;
                    entries.iter().any(|(k, _)| *k == key)
                }
                _ => return None,
            })
        }
        Op::List(items) => V::List(items.iter().map(|i| eval(i, ctx)).collect::<Option<_>>()?),
        Op::Map(entries) => {
            V::Map(entries.iter().map(|(k, v)| Some((k.as_str(), eval(v, ctx)?))).collect::<Option<_>>()?)
        }
    })
}

/// `m.field` / `m[key]` on a map; a missing key is CEL's error, so `None`.
fn lookup<'a>(map: V<'a>, key: &str) -> Option<V<'a>> {
    match map {
        V::Json(Value::Object(m)) => m.get(key).map(of_json),
        V::Object(m) => m.get(key).map(of_json),
        V::Record(r) => r.iter().find(|(k, _)| *k == key).map(|(_, m)| of_member(m)),
        V::Map(entries) => entries.into_iter().find(|(k, _)| *k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// The value at `fields` of a root: the same as looking the fields up one
/// after another, but walked over references, building one value at the end (each value
/// returned through `eval` or `lookup` goes through memory, and reading it back at once
/// stalls on the stores that wrote it).
fn path<'a>(root: Root, fields: &'a [String], ctx: &Json<'a>) -> Option<V<'a>> {
    /// Where the walk is: an object or array of the context, `vars` or an object member, or a
    /// record.
    enum At<'a> {
        Json(&'a Value),
        Object(&'a BTreeMap<String, Value>),
        Record(Record<'a>),
    }
    let (last, walk) = fields.split_last()?;
    let mut at = match root {
        Root::Vars => At::Object(ctx.vars),
        // A missing record is `null`, which has no fields.
        Root::Event => At::Record(ctx.event?),
        Root::Msg => At::Record(ctx.msg?),
        // A string has no fields.
        Root::State => return None,
    };
    for f in walk {
        at = match at {
            At::Json(Value::Object(m)) => At::Json(m.get(f)?),
            At::Object(m) => At::Json(m.get(f)?),
            At::Record(r) => match r.iter().find(|(k, _)| k == f)?.1 {
                Member::Json(v) => At::Json(v),
                Member::Object(m) => At::Object(m),
                _ => return None,
            },
            At::Json(_) => return None,
        };
    }
    match at {
        At::Json(Value::Object(m)) => m.get(last).map(of_json),
        At::Object(m) => m.get(last).map(of_json),
        At::Record(r) => r.iter().find(|(k, _)| k == last).map(|(_, m)| of_member(m)),
        At::Json(_) => None,
    }
}

fn as_key<'v>(v: &'v V<'_>) -> Option<&'v str> {
    match v {
        V::Str(s) => Some(s),
        _ => None,
    }
}

/// `needle in list`, when every element compared has the needle's type.
fn contains<'a>(needle: &V<'_>, mut items: impl Iterator<Item = V<'a>>) -> Option<bool> {
    items.try_fold(false, |found, item| Some(found || equal(needle, &item)?))
}

/// Whether two scalars of the same type (or two nulls) are equal; `None` where `compare` is.
fn equal(l: &V<'_>, r: &V<'_>) -> Option<bool> {
    match (l, r) {
        (V::Null, V::Null) => Some(true),
        _ => Some(compare(l, r)?.is_eq()),
    }
}

/// Orders two scalars of the same type; `None` for mixed types, null, containers and NaN.
fn compare(l: &V<'_>, r: &V<'_>) -> Option<std::cmp::Ordering> {
    match (l, r) {
        (V::Bool(a), V::Bool(b)) => Some(a.cmp(b)),
        (V::Int(a), V::Int(b)) => Some(a.cmp(b)),
        (V::UInt(a), V::UInt(b)) => Some(a.cmp(b)),
        (V::Double(a), V::Double(b)) => a.partial_cmp(b),
        (V::Str(a), V::Str(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn arith<'a>(op: Arith, l: V<'a>, r: V<'a>) -> Option<V<'a>> {
    Some(match (l, r) {
        (V::Int(a), V::Int(b)) => V::Int(match op {
            Arith::Add => a.checked_add(b)?,
            Arith::Sub => a.checked_sub(b)?,
            Arith::Mul => a.checked_mul(b)?,
            Arith::Div => a.checked_div(b)?,
            Arith::Rem => a.checked_rem(b)?,
        }),
        (V::UInt(a), V::UInt(b)) => V::UInt(match op {
            Arith::Add => a.checked_add(b)?,
            Arith::Sub => a.checked_sub(b)?,
            Arith::Mul => a.checked_mul(b)?,
            Arith::Div => a.checked_div(b)?,
            Arith::Rem => a.checked_rem(b)?,
        }),
        (V::Double(a), V::Double(b)) => V::Double(match op {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
            Arith::Rem => return None,
        }),
        (V::Str(a), V::Str(b)) if matches!(op, Arith::Add) => V::Str(Cow::Owned(a.into_owned() + &b)),
        _ => return None,
    })
}

/// The JSON of a value, by the rules of `expr::to_json` (integers within ±(2^53-1), finite
/// doubles, object keys in order); `None` where those rules raise an error.
fn to_json(v: &V<'_>) -> Option<Value> {
    Some(match v {
        V::Null => Value::Null,
        V::Bool(b) => Value::Bool(*b),
        V::Int(i) => (i.unsigned_abs() <= MAX_SAFE_INTEGER).then(|| Value::from(*i))?,
        V::UInt(u) => (*u <= MAX_SAFE_INTEGER).then(|| Value::from(*u))?,
        V::Double(d) => Value::Number(Number::from_f64(*d)?),
        V::Str(s) => Value::String(s.as_ref().to_owned()),
        V::Json(Value::Array(items)) => {
            Value::Array(items.iter().map(|i| to_json(&of_json(i))).collect::<Option<_>>()?)
        }
        V::Json(Value::Object(m)) => object(m.iter().map(|(k, v)| (k.as_str(), to_json(&of_json(v)))))?,
        V::Json(other) => to_json(&of_json(other))?,
        V::Object(m) => object(m.iter().map(|(k, v)| (k.as_str(), to_json(&of_json(v)))))?,
        V::Record(r) => object(r.iter().map(|(k, m)| (*k, to_json(&of_member(m)))))?,
        V::List(items) => Value::Array(items.iter().map(to_json).collect::<Option<_>>()?),
        V::Map(entries) => object(entries.iter().map(|(k, v)| (*k, to_json(v))))?,
    })
}

fn object<'k>(entries: impl Iterator<Item = (&'k str, Option<Value>)>) -> Option<Value> {
    let mut sorted = BTreeMap::new();
    for (k, v) in entries {
        sorted.insert(k, v?);
    }
    Some(Value::Object(sorted.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::{Expr, Scope, map_val, to_json as cel_json};
    use super::*;

    /// Variables, the event's payload and the message's data (no message: `msg` is null).
    #[derive(Debug)]
    struct Ctx {
        vars: BTreeMap<String, Value>,
        payload: Value,
        data: Option<Value>,
    }

    impl Ctx {
        /// Calls `f` with the context, `event` and `msg` as records the way a step makes them.
        fn with<R>(&self, f: impl FnOnce(Json<'_>) -> R) -> R {
            let event = [
                ("eventSeq", Member::UInt(42)),
                ("occurredAt", Member::Null),
                ("payload", Member::Json(&self.payload)),
                ("source", Member::Str("src")),
                ("type", Member::Str("line.added")),
            ];
            let msg = self.data.as_ref().map(|d| [("data", Member::Json(d)), ("type", Member::Str("line"))]);
            f(Json { vars: &self.vars, state: "open", event: Some(&event), msg: msg.as_ref().map(|m| &m[..]) })
        }
    }

    fn sample() -> Ctx {
        let vars = json!({"i": 7, "j": -3, "d": 2.5, "s": "ab", "b": true, "n": null, "u": 18446744073709551615u64,
                          "l": [1, 2, 3], "m": {"k": 1, "s": "x"}, "big": 9007199254740993i64});
        Ctx {
            vars: serde_json::from_value(vars).unwrap(),
            payload: json!({"qty": 3, "price": 4}),
            data: Some(json!({"n": 200, "amount": 12})),
        }
    }

    /// What the compiled form answers, or `None` when it leaves the expression to cel-rust.
    fn compiled(src: &str, ctx: &Ctx) -> Option<Value> {
        let e = Expr::parse(src).unwrap();
        ctx.with(|json| eval_json(e.compiled.as_ref()?, &json))
    }

    /// What cel-rust answers.
    fn cel(src: &str, ctx: &Ctx) -> Result<Value, String> {
        let e = Expr::parse(src)?;
        ctx.with(|json| cel_json(&Scope::new(json, || map_val(std::iter::empty())).eval(&e)?))
    }

    #[test]
    fn answers_the_common_core() {
        let ctx = sample();
        for (src, want) in [
            ("msg.data.amount > 0", json!(true)),
            ("msg.data.n % 100 == 0", json!(true)),
            ("vars.i + msg.data.amount", json!(19)),
            ("event.payload.qty * event.payload.price", json!(12)),
            ("vars.d * 2.0", json!(5.0)),
            ("vars.s + '!'", json!("ab!")),
            ("state == 'open' && !vars.b", json!(false)),
            ("vars.j < 0 ? -vars.j : vars.j", json!(3)),
            ("has(vars.m.k) && !has(vars.m.z)", json!(true)),
            ("vars.l[1] in [2, 4]", json!(true)),
            ("'k' in vars.m", json!(true)),
            ("{'b': vars.l, 'a': [vars.m.s, null]}", json!({"a": ["x", null], "b": [1, 2, 3]})),
            ("vars.m", json!({"k": 1, "s": "x"})),
            ("msg", json!({"type": "line", "data": {"n": 200, "amount": 12}})),
            (
                "event",
                json!({"eventSeq": 42, "occurredAt": null, "payload": {"qty": 3, "price": 4}, "source": "src",
                       "type": "line.added"}),
            ),
            ("event.eventSeq + 1 == 43 && has(event.source) && !has(event.x)", json!(true)),
            ("'payload' in event && event['type'] == 'line.added'", json!(true)),
            (
                "'n=' + string(msg.data.n) + string(vars.b) + string(vars.s) + string(vars.u)",
                json!("n=200trueab18446744073709551615"),
            ),
        ] {
            assert_eq!(compiled(src, &ctx), Some(want.clone()), "{src}");
            assert_eq!(cel(src, &ctx), Ok(want), "{src}");
        }
    }

    #[test]
    fn leaves_errors_and_mixed_types_to_cel() {
        let ctx = sample();
        for src in [
            "vars.missing",                 // no such key
            "vars.i / 0",                   // division by zero
            "9223372036854775807 + vars.i", // overflow
            "vars.i == 7.0",                // mixed numeric types
            "vars.i < vars.u",              // int against uint
            "vars.big",                     // beyond ±(2^53-1) in JSON
            "vars.u",                       // the same, as uint
            "vars.l[3]",                    // out of bounds
            "vars.s && true",               // not a bool
            "vars.i in [1, 'x', 7]",        // heterogeneous list before the match
            "0.0 / 0.0 == 0.0 / 0.0",       // NaN
            "size(vars.l)",                 // a function
            "string(vars.d)",               // a double, written by cel-rust's rules
            "vars.l.map(x, x)",             // a macro
            "balances",                     // not compiled
        ] {
            assert_eq!(compiled(src, &ctx), None, "{src}");
        }
        assert!(cel("vars.missing", &ctx).is_err());
        assert_eq!(cel("vars.i == 7.0", &ctx), Ok(json!(true)));
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..=5).prop_map(Value::from),
            prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(9_007_199_254_740_991), Just(-9_007_199_254_740_992)]
                .prop_map(Value::from),
            Just(Value::from(u64::MAX)),
            prop_oneof![Just(0.0), Just(-0.0), Just(1.5), Just(-2.25), Just(1e300)].prop_map(Value::from),
            prop_oneof![Just(""), Just("a"), Just("b"), Just("é"), Just("k")].prop_map(Value::from),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(prop_oneof![Just("k"), Just("s"), Just("x")], inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        })
    }

    fn context() -> impl Strategy<Value = Ctx> {
        let names = ["a", "b", "c", "l", "m"];
        (prop::collection::vec(json_value(), 5), json_value(), prop::option::of(json_value())).prop_map(
            move |(values, payload, data)| Ctx {
                vars: names.iter().map(|n| (*n).to_owned()).zip(values).collect(),
                payload,
                data,
            },
        )
    }

    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            prop_oneof![Just("0"), Just("1"), Just("-2"), Just("3"), Just("9223372036854775807")],
            prop_oneof![Just("0u"), Just("2u"), Just("18446744073709551615u")],
            prop_oneof![Just("0.0"), Just("1.5"), Just("-0.5"), Just("1e308")],
            prop_oneof![Just("''"), Just("'a'"), Just("'k'"), Just("'é'")],
            prop_oneof![Just("true"), Just("false"), Just("null")],
            prop_oneof![Just("vars.a"), Just("vars.b"), Just("vars.c"), Just("vars.l"), Just("vars.m"), Just("vars.z")],
            prop_oneof![Just("vars"), Just("state"), Just("event.payload"), Just("msg"), Just("msg.data")],
            prop_oneof![Just("event"), Just("event.eventSeq"), Just("event.occurredAt"), Just("event.type")],
            prop_oneof![Just("'type' in msg"), Just("has(event.source)"), Just("msg['type']"), Just("event.k")],
            prop_oneof![Just("vars.m.k"), Just("event.payload.k"), Just("msg.data.x"), Just("vars.l[0]")],
            prop_oneof![Just("has(vars.m.k)"), Just("has(event.payload.s)"), Just("has(msg.data.k)")],
        ]
        .prop_map(str::to_owned)
    }

    fn expression() -> impl Strategy<Value = String> {
        const BINARY: [&str; 14] = ["+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "in"];
        leaf().prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                (prop::sample::select(&BINARY[..]), inner.clone(), inner.clone())
                    .prop_map(|(op, l, r)| format!("({l} {op} {r})")),
                inner.clone().prop_map(|e| format!("-({e})")),
                inner.clone().prop_map(|e| format!("!({e})")),
                inner.clone().prop_map(|e| format!("string({e})")),
                (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, a, b)| format!("({c} ? {a} : {b})")),
                prop::collection::vec(inner.clone(), 0..3).prop_map(|items| format!("[{}]", items.join(", "))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{{'k': {a}, 's': {b}}}")),
                (inner.clone(), inner.clone()).prop_map(|(a, i)| format!("({a})[{i}]")),
                inner.prop_map(|e| format!("({e}).k")),
            ]
        })
    }

    /// Mostly well-typed expressions over int variables (random ones mostly fail to type).
    fn typed_expression() -> impl Strategy<Value = String> {
        const INT_OPS: [&str; 5] = ["+", "-", "*", "/", "%"];
        const CMP_OPS: [&str; 6] = ["==", "!=", "<", "<=", ">", ">="];
        let int = prop_oneof![
            prop_oneof![Just("vars.a"), Just("vars.b"), Just("event.payload.k"), Just("msg.data.k")],
            prop_oneof![Just("0"), Just("1"), Just("-7"), Just("100"), Just("4611686018427387904")],
        ]
        .prop_map(str::to_owned)
        .prop_recursive(3, 16, 2, move |inner| {
            prop_oneof![
                (prop::sample::select(&INT_OPS[..]), inner.clone(), inner.clone())
                    .prop_map(|(op, l, r)| format!("({l} {op} {r})")),
                inner.clone().prop_map(|e| format!("-{e}")),
            ]
        });
        (int.clone(), prop::sample::select(&CMP_OPS[..]), int.clone(), int.clone(), any::<u8>()).prop_map(
            |(l, op, r, other, shape)| match shape % 5 {
                0 => format!("{l} {op} {r}"),
                1 => format!("({l} {op} {r}) ? {other} : {l}"),
                2 => format!("{l} {op} {r} && {other} > 0 || {r} in [{l}, 3]"),
                3 => format!("{{'x': {l}, 'y': [{r}, {other}]}}"),
                _ => format!("'x=' + string({l}) + string({l} {op} {r})"),
            },
        )
    }

    fn int_context() -> impl Strategy<Value = Ctx> {
        let int = || prop_oneof![-1000i64..1000, Just(i64::MAX), Just(0)];
        (int(), int(), int(), int()).prop_map(|(a, b, k, m)| Ctx {
            vars: [("a".to_owned(), json!(a)), ("b".to_owned(), json!(b))].into_iter().collect(),
            payload: json!({"k": k}),
            data: Some(json!({"k": m})),
        })
    }

    fn check(src: &str, ctx: &Ctx) -> Result<(), TestCaseError> {
        let e = Expr::parse(src).unwrap();
        let Some(code) = e.compiled.as_ref() else { return Ok(()) };
        ctx.with(|json| {
            let scope = Scope::new(json, || map_val(std::iter::empty()));
            if let Some(v) = eval_json(code, &json) {
                let by_cel = scope.eval(&e).and_then(|v| cel_json(&v));
                prop_assert_eq!(by_cel, Ok(v), "{}", src);
            }
            if let Some(b) = eval_bool(code, &json) {
                let by_cel = scope.eval(&e).map(|v| matches!(v, cel::Value::Bool(x) if x == b));
                prop_assert_eq!(by_cel, Ok(true), "{}", src);
            }
            Ok(())
        })
    }

    /// A path walked over references answers exactly as looking its fields up one by one
    /// does: the same value where that finds one, nothing where it does not.
    #[test]
    fn paths_answer_as_lookups_do() {
        let ctx = Ctx {
            payload: json!({"k": 3, "o": {"p": {"q": "deep"}}, "a": [1], "s": "x"}),
            data: Some(json!({"amount": 12, "n": null})),
            ..sample()
        };
        let chains = [
            "vars.i",
            "vars.m.k",
            "vars.m.s",
            "vars.m.z",
            "vars.l.k",
            "vars.i.k",
            "vars.zz.k",
            "event.payload.k",
            "event.payload.o.p.q",
            "event.payload.o.p",
            "event.payload.a.k",
            "event.payload.s.k",
            "event.type",
            "event.type.k",
            "event.eventSeq",
            "event.occurredAt",
            "event.nope",
            "msg.data.amount",
            "msg.data.n",
            "msg.data.n.k",
            "msg.type",
            "({'k': 1}).k",
            "state.k",
        ];
        // The fields looked up one by one, as `eval` did before paths.
        fn one_by_one<'a>(code: &'a Op, ctx: &Json<'a>) -> Option<V<'a>> {
            match code {
                Op::Path(root, fields) => {
                    let start = match root {
                        Root::Vars => V::Object(ctx.vars),
                        Root::State => V::Str(Cow::Borrowed(ctx.state)),
                        Root::Event => ctx.event.map_or(V::Null, V::Record),
                        Root::Msg => ctx.msg.map_or(V::Null, V::Record),
                    };
                    fields.iter().try_fold(start, |v, f| lookup(v, f))
                }
                Op::Field(operand, field) => lookup(one_by_one(operand, ctx)?, field),
                _ => eval(code, ctx),
            }
        }
        ctx.with(|json| {
            for src in chains {
                let e = Expr::parse(src).unwrap();
                let Some(Code(code)) = e.compiled.as_ref() else { panic!("{src} is not compiled") };
                assert_eq!(format!("{:?}", eval(code, &json)), format!("{:?}", one_by_one(code, &json)), "{src}");
            }
        });
        let deep = Ctx { payload: json!({"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": 1}}}}}}}}}), ..sample() };
        deep.with(|json| {
            let e = Expr::parse("event.payload.a.a.a.a.a.a.a.a.a").unwrap();
            assert_eq!(e.compiled.as_ref().and_then(|c| eval_json(c, &json)), Some(json!(1)));
        });
        // Without a message, `msg` is null: no fields.
        Ctx { data: None, ..sample() }.with(|json| {
            let e = Expr::parse("msg.data.amount").unwrap();
            assert_eq!(e.compiled.as_ref().and_then(|c| eval_json(c, &json)), None);
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whenever the compiled form answers, cel-rust gives the same answer, as JSON and
        /// as a bool.
        #[test]
        fn agrees_with_cel(src in expression(), ctx in context()) {
            check(&src, &ctx)?;
        }

        /// The same, for well-typed int arithmetic and comparisons.
        #[test]
        fn agrees_with_cel_on_int_arithmetic(src in typed_expression(), ctx in int_context()) {
            check(&src, &ctx)?;
        }
    }
}
