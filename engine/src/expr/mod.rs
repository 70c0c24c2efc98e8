//! CEL expressions: parsing, evaluation, and the conversions between JSON and CEL values.
//!
//! The interpreter is `cel` (cel-rust). Three things are added on top of it so that an
//! expression's result depends on its inputs only (replay must reproduce every byte):
//!
//! - **Map iteration order.** cel-rust keeps maps in a `HashMap` with a random seed per
//!   map, so `m.map(k, k)` or `m.filter(k, …)` over a map would list keys in a different
//!   order in every process. After parsing, every comprehension's range `r` is rewritten to
//!   `@pled_iter(r)`, a function that turns a map into the sorted list of its keys (and
//!   passes anything else through unchanged); iterating that list is exactly iterating the
//!   map, in a fixed order.
//! - **Error text.** Some interpreter errors print the values involved with `Debug`, which
//!   for a map is in hash order. Errors are rendered here, with maps in key order.
//! - **Panics.** An interpreter panic is caught and becomes an evaluation error, so a
//!   pathological expression can fail a rule but never take the processing lane down.
//!
//! The environment is the CEL standard library plus the `strings`, `math` and `encoders`
//! extensions. The `lists` extension is left out: `lists.range(n)` allocates `n` elements,
//! so one expression could exhaust the service's memory.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr as Node, IdedExpr};
use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt};
use cel::common::value::Val;
use cel::objects::Key;
use cel::{Context, Env, ExecutionError, Value as CelValue};
use serde_json::{Number, Value};

use pled_core::{MAX_SAFE_INTEGER, Member};

pub(crate) use compiled::{Json, Record};

mod compiled;

/// The function comprehension ranges are wrapped in. `@` cannot be written in CEL source,
/// so no template can call or shadow it.
const ITER_FN: &str = "@pled_iter";

/// The longest value rendering inside an error message.
const MAX_SHOWN: usize = 120;

/// The context variables, each with the bit that marks an expression reading it.
const CONTEXT: [(&str, u8); 5] =
    [("vars", 1), ("state", 1 << 1), ("event", 1 << 2), ("msg", 1 << 3), ("balances", 1 << 4)];

fn context_bit(name: &str) -> u8 {
    CONTEXT.iter().find(|(n, _)| *n == name).map_or(0, |(_, bit)| *bit)
}

/// The shared CEL environment.
pub(crate) fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // These cannot fail on a fresh standard environment (they declare disjoint names);
        // `tests::extensions_are_available` checks that they are there.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::math);
        let _ = env.add_extension(cel::extensions::encoders);
        Arc::new(env)
    })
    .clone()
}

/// A parsed CEL expression and its source text.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    source: String,
    ast: IdedExpr,
    /// The context variables it reads (bits of `CONTEXT`), so that a scope converts only
    /// those.
    needs: u8,
    /// The compiled form, when the expression lies within its core.
    compiled: Option<compiled::Code>,
}

impl Expr {
    /// Parses `source`; the error is the parser's message (with line and column).
    pub(crate) fn parse(source: &str) -> Result<Expr, String> {
        let program = env().compile(source).map_err(|e| e.to_string())?;
        let mut ast = program.expression().clone();
        rewrite_ranges(&mut ast);
        let mut needs = 0;
        idents(&ast, &mut |name| needs |= context_bit(name));
        let compiled = compiled::compile(&ast);
        Ok(Expr { source: source.to_owned(), ast, needs, compiled })
    }

    /// The source text.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The literal value of the whole expression, if it is a single literal.
    pub(crate) fn literal_kind(&self) -> Option<&'static str> {
        use cel::common::ast::LiteralValue as L;
        match &self.ast.expr {
            Node::Literal(l) => Some(match l {
                L::Boolean(_) => "bool",
                L::Bytes(_) => "bytes",
                L::Double(_) => "double",
                L::Int(_) => "int",
                L::Null => "null",
                L::String(_) => "string",
                L::UInt(_) => "uint",
            }),
            _ => None,
        }
    }

    /// Whether the expression is the literal `false`.
    pub(crate) fn is_literal_false(&self) -> bool {
        matches!(&self.ast.expr, Node::Literal(cel::common::ast::LiteralValue::Boolean(b)) if !*b.inner())
    }
}

/// Calls `f` with every identifier of an expression.
fn idents(e: &IdedExpr, f: &mut dyn FnMut(&str)) {
    match &e.expr {
        Node::Ident(name) => f(name),
        Node::Call(call) => {
            if let Some(target) = &call.target {
                idents(target, f);
            }
            call.args.iter().for_each(|a| idents(a, f));
        }
        Node::Comprehension(c) => {
            for part in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                idents(part, f);
            }
        }
        Node::List(list) => list.elements.iter().for_each(|item| idents(item, f)),
        Node::Map(map) => map.entries.iter().for_each(|entry| entry_idents(&entry.expr, f)),
        Node::Struct(st) => st.entries.iter().for_each(|entry| entry_idents(&entry.expr, f)),
        Node::Select(select) => idents(&select.operand, f),
        Node::Literal(_) | Node::Unspecified => {}
    }
}

fn entry_idents(entry: &EntryExpr, f: &mut dyn FnMut(&str)) {
    match entry {
        EntryExpr::StructField(field) => idents(&field.value, f),
        EntryExpr::MapEntry(entry) => {
            idents(&entry.key, f);
            idents(&entry.value, f);
        }
    }
}

/// Wraps every comprehension range in `@pled_iter(…)` (see the module docs).
fn rewrite_ranges(e: &mut IdedExpr) {
    match &mut e.expr {
        Node::Call(call) => {
            if let Some(target) = call.target.as_mut() {
                rewrite_ranges(target);
            }
            call.args.iter_mut().for_each(rewrite_ranges);
        }
        Node::Comprehension(c) => {
            rewrite_ranges(&mut c.iter_range);
            rewrite_ranges(&mut c.accu_init);
            rewrite_ranges(&mut c.loop_cond);
            rewrite_ranges(&mut c.loop_step);
            rewrite_ranges(&mut c.result);
            // Two-variable comprehensions (index/key and value) need the map itself; the
            // standard macros never produce them.
            if c.iter_var2.is_none() {
                let range = std::mem::take(&mut c.iter_range);
                c.iter_range = IdedExpr {
                    id: range.id,
                    expr: Node::Call(cel::common::ast::CallExpr {
                        func_name: ITER_FN.to_owned(),
                        target: None,
                        args: vec![range],
                    }),
                };
            }
        }
        Node::List(list) => list.elements.iter_mut().for_each(rewrite_ranges),
        Node::Map(map) => map.entries.iter_mut().for_each(|entry| rewrite_entry(&mut entry.expr)),
        Node::Struct(s) => s.entries.iter_mut().for_each(|entry| rewrite_entry(&mut entry.expr)),
        Node::Select(select) => rewrite_ranges(&mut select.operand),
        Node::Ident(_) | Node::Literal(_) | Node::Unspecified => {}
    }
}

fn rewrite_entry(entry: &mut EntryExpr) {
    match entry {
        EntryExpr::StructField(field) => rewrite_ranges(&mut field.value),
        EntryExpr::MapEntry(entry) => {
            rewrite_ranges(&mut entry.key);
            rewrite_ranges(&mut entry.value);
        }
    }
}

/// `@pled_iter`: a map becomes the sorted list of its keys; anything else is unchanged.
fn sorted_range(range: CelValue) -> CelValue {
    match range {
        CelValue::Map(map) => {
            let mut keys: Vec<Key> = map.map.keys().cloned().collect();
            keys.sort();
            CelValue::List(Arc::new(keys.into_iter().map(key_value).collect()))
        }
        other => other,
    }
}

fn key_value(key: Key) -> CelValue {
    match key {
        Key::Int(i) => CelValue::Int(i),
        Key::Uint(u) => CelValue::UInt(u),
        Key::Bool(b) => CelValue::Bool(b),
        Key::String(s) => CelValue::String(s),
    }
}

/// A value to bind on first use.
type Lazy<'a> = Box<dyn Fn() -> Box<dyn Val + 'a> + 'a>;

/// The variables an expression is evaluated against: the JSON context (which the compiled
/// form reads in place) and `balances`.
///
/// cel-rust's context is made only when an expression needs cel-rust, and each context
/// variable is converted to CEL values the first time such an expression reads it:
/// converting a large payload or variable set is the expensive part of evaluating a small
/// expression.
pub(crate) struct Scope<'a> {
    json: Json<'a>,
    balances: Lazy<'a>,
    cel: RefCell<Option<Context<'a, 'a>>>,
    bound: Cell<u8>,
}

impl<'a> Scope<'a> {
    /// A scope over `json`, with `balances` made when a cel-rust evaluation first reads it.
    pub(crate) fn new(json: Json<'a>, balances: impl Fn() -> Box<dyn Val + 'a> + 'a) -> Scope<'a> {
        Scope { json, balances: Box::new(balances), cel: RefCell::new(None), bound: Cell::new(0) }
    }

    /// Evaluates an expression with cel-rust (to a CEL value).
    pub(crate) fn eval(&self, e: &Expr) -> Result<CelValue, String> {
        let mut slot = self.cel.borrow_mut();
        let ctx = slot.get_or_insert_with(|| {
            let mut ctx = Context::with_env(env());
            // Cannot fail: the name is not declared in the environment (`@` is not CEL syntax).
            let _ = ctx.add_function(ITER_FN, sorted_range);
            ctx
        });
        let missing = e.needs & !self.bound.get();
        if missing != 0 {
            let Json { vars, state, event, msg } = self.json;
            for (name, bit) in CONTEXT {
                if missing & bit == 0 {
                    continue;
                }
                let value = match name {
                    "vars" => object_val(vars.iter()),
                    "state" => str_val(state),
                    "event" => event.map_or_else(|| Box::new(CelNull) as Box<dyn Val>, record_val),
                    "msg" => msg.map_or_else(|| Box::new(CelNull) as Box<dyn Val>, record_val),
                    _ => (self.balances)(),
                };
                ctx.add_variable_as_val(name, value);
            }
            self.bound.set(self.bound.get() | missing);
        }
        let ctx = &*ctx;
        match catch_unwind(AssertUnwindSafe(|| CelValue::resolve(&e.ast, ctx))) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(err)) => Err(render_error(&err)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(format!("the CEL interpreter failed on this expression: {what}"))
            }
        }
    }

    /// Evaluates an expression to JSON (see [`to_json`]): by its compiled form when that
    /// answers, else by cel-rust.
    pub(crate) fn eval_json(&self, e: &Expr) -> Result<Value, String> {
        if let Some(v) = e.compiled.as_ref().and_then(|c| compiled::eval_json(c, &self.json)) {
            return Ok(v);
        }
        to_json(&self.eval(e)?)
    }

    /// Evaluates an expression that must yield a bool (compiled form first, as
    /// [`Scope::eval_json`]).
    pub(crate) fn eval_bool(&self, e: &Expr) -> Result<bool, String> {
        if let Some(b) = e.compiled.as_ref().and_then(|c| compiled::eval_bool(c, &self.json)) {
            return Ok(b);
        }
        match self.eval(e)? {
            CelValue::Bool(b) => Ok(b),
            other => Err(format!("expected a bool, got {} {}", type_name(&other), show(&other))),
        }
    }
}

/// JSON -> CEL, as the interpreter's own values, borrowing the JSON's strings: integers
/// become `int` (or `uint` above 2^63-1), other numbers `double`, objects maps with string
/// keys. Bound variables are converted once, straight from the JSON.
pub(crate) fn json_val(v: &Value) -> Box<dyn Val + '_> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => Box::new(CelList::from(items.iter().map(json_val).collect::<Vec<_>>())),
        Value::Object(map) => object_val(map.iter()),
    }
}

/// A JSON object's members as a CEL map (from a `serde_json` map or a `BTreeMap`).
fn object_val<'v>(members: impl Iterator<Item = (&'v String, &'v Value)>) -> Box<dyn Val + 'v> {
    map_val(members.map(|(k, v)| (k.as_str(), json_val(v))))
}

/// A record as a CEL map, its members converted as the same members of a JSON object would be.
fn record_val<'a>(r: Record<'a>) -> Box<dyn Val + 'a> {
    map_val(r.iter().map(|(k, m)| {
        let v: Box<dyn Val + 'a> = match *m {
            Member::Json(v) => json_val(v),
            Member::Str(s) => str_val(s),
            Member::UInt(n) => i64::try_from(n)
                .map_or_else(|_| Box::new(CelUInt::from(n)) as Box<dyn Val>, |i| Box::new(CelInt::from(i))),
            Member::Bool(b) => Box::new(CelBool::from(b)),
            Member::Null => Box::new(CelNull),
            Member::Object(map) => object_val(map.iter()),
        };
        (*k, v)
    }))
}

/// A CEL map with the given string keys.
pub(crate) fn map_val<'v>(entries: impl Iterator<Item = (&'v str, Box<dyn Val + 'v>)>) -> Box<dyn Val + 'v> {
    let map: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> =
        entries.map(|(k, v)| (CelMapKey::String(CelString::from(k)), v)).collect();
    Box::new(CelMap::from(map))
}

/// A CEL string.
pub(crate) fn str_val(s: &str) -> Box<dyn Val + '_> {
    Box::new(CelString::from(s))
}

/// CEL -> JSON. Integers must lie within ±(2^53-1) (larger numbers travel as strings:
/// `string(x)`), doubles must be finite, map keys must be strings; bytes become base64,
/// timestamps RFC 3339 UTC text, durations `<seconds>s` text.
pub(crate) fn to_json(v: &CelValue) -> Result<Value, String> {
    Ok(match v {
        CelValue::Null => Value::Null,
        CelValue::Bool(b) => Value::Bool(*b),
        CelValue::Int(i) => {
            if i.unsigned_abs() > MAX_SAFE_INTEGER {
                return Err(unsafe_integer(&i.to_string()));
            }
            Value::from(*i)
        }
        CelValue::UInt(u) => {
            if *u > MAX_SAFE_INTEGER {
                return Err(unsafe_integer(&u.to_string()));
            }
            Value::from(*u)
        }
        CelValue::Float(f) => Value::Number(Number::from_f64(*f).ok_or_else(|| format!("{f} is not a finite number"))?),
        CelValue::String(s) => Value::String(s.as_ref().clone()),
        CelValue::Bytes(b) => Value::String(base64(b)),
        CelValue::List(items) => Value::Array(items.iter().map(to_json).collect::<Result<Vec<_>, _>>()?),
        CelValue::Map(map) => {
            let mut sorted = BTreeMap::new();
            for (k, v) in map.map.iter() {
                let Key::String(k) = k else {
                    return Err(format!(
                        "map key {} is not a string; JSON objects need string keys",
                        show(&key_value(k.clone()))
                    ));
                };
                sorted.insert(k.as_ref().clone(), to_json(v)?);
            }
            Value::Object(sorted.into_iter().collect())
        }
        CelValue::Timestamp(t) => Value::String(t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()),
        CelValue::Duration(d) => Value::String(duration_text(d.num_seconds(), d.subsec_nanos())),
        other => {
            return Err(format!("a {} value cannot be converted to JSON", type_name(other)));
        }
    })
}

fn unsafe_integer(text: &str) -> String {
    format!(
        "integer {text} is outside ±(2^53-1) and cannot be held exactly in a ledger body; \
         return it as a string (string(x))"
    )
}

fn duration_text(secs: i64, nanos: i32) -> String {
    if nanos == 0 {
        return format!("{secs}s");
    }
    let negative = secs < 0 || nanos < 0;
    let frac = format!("{:09}", nanos.unsigned_abs());
    let frac = frac.trim_end_matches('0');
    format!("{}{}.{frac}s", if negative { "-" } else { "" }, secs.unsigned_abs())
}

/// Standard base64 with padding (the protobuf JSON mapping of `bytes`).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The CEL type name of a value.
pub(crate) fn type_name(v: &CelValue) -> String {
    let t = v.type_of().to_string();
    if t == "float" { "double".to_owned() } else { t }
}

/// A short, deterministic rendering of a value for messages (maps in key order).
pub(crate) fn show(v: &CelValue) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    if out.chars().count() > MAX_SHOWN {
        out = out.chars().take(MAX_SHOWN).collect::<String>() + "…";
    }
    out
}

fn write_value(v: &CelValue, out: &mut String) {
    if out.len() > MAX_SHOWN * 4 {
        return;
    }
    match v {
        CelValue::Null => out.push_str("null"),
        CelValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        CelValue::Int(i) => out.push_str(&i.to_string()),
        CelValue::UInt(u) => out.push_str(&format!("{u}u")),
        CelValue::Float(f) => out.push_str(&format!("{f:?}")),
        CelValue::String(s) => out.push_str(&format!("{:?}", s.as_str())),
        CelValue::Bytes(b) => out.push_str(&format!("b{:?}", String::from_utf8_lossy(b))),
        CelValue::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        CelValue::Map(map) => {
            let mut keys: Vec<&Key> = map.map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(&key_value(k.clone()), out);
                out.push_str(": ");
                if let Some(v) = map.map.get(k) {
                    write_value(v, out);
                }
            }
            out.push('}');
        }
        CelValue::Timestamp(_) | CelValue::Duration(_) => match to_json(v) {
            Ok(Value::String(s)) => out.push_str(&s),
            _ => out.push_str(&type_name(v)),
        },
        other => out.push_str(&type_name(other)),
    }
}

/// Renders an interpreter error with any values it carries shown deterministically.
fn render_error(e: &ExecutionError) -> String {
    use ExecutionError as E;
    match e {
        E::UnsupportedTargetType { target } => format!("invalid argument type: {}", show(target)),
        E::NotSupportedAsMethod { method, target } => {
            format!("method {method:?} is not supported on {}", show(target))
        }
        E::UnsupportedKeyType(v) => format!("{} cannot be used as a map key", show(v)),
        E::ValuesNotComparable(a, b) => format!("{} cannot be compared to {}", show(a), show(b)),
        E::UnsupportedBinaryOperator(op, a, b) => {
            format!("operator {op:?} is not supported on {} and {}", show(a), show(b))
        }
        E::UnsupportedIndex(a, b) => format!("{} cannot index {}", show(a), show(b)),
        E::DivisionByZero(v) => format!("division by zero of {}", show(v)),
        E::RemainderByZero(v) => format!("remainder by zero of {}", show(v)),
        E::Overflow(op, a, b) => format!("overflow in {op:?} on {} and {}", show(a), show(b)),
        E::IndexOutOfBounds(v) => format!("index out of bounds: {}", show(v)),
        E::DuplicateKey(v) => format!("repeated map key {}", show(v)),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn eval(src: &str, vars: Value) -> Result<Value, String> {
        let vars: BTreeMap<String, Value> = serde_json::from_value(vars).unwrap();
        let json = Json { vars: &vars, state: "s", event: None, msg: None };
        Scope::new(json, || map_val(std::iter::empty())).eval_json(&Expr::parse(src)?)
    }

    #[test]
    fn evaluates_against_bound_json() {
        assert_eq!(eval("vars.a + 1", json!({"a": 41})).unwrap(), json!(42));
        assert_eq!(eval("vars.s + '!'", json!({"s": "hi"})).unwrap(), json!("hi!"));
        assert_eq!(eval("vars.f * 2.0", json!({"f": 1.25})).unwrap(), json!(2.5));
        assert_eq!(
            eval("{'b': vars.l[1], 'a': [true, null]}", json!({"l": [1, 2]})).unwrap(),
            json!({"a": [true, null], "b": 2})
        );
    }

    #[test]
    fn extensions_are_available() {
        assert_eq!(eval("'TacoCat'.lowerAscii()", json!({})).unwrap(), json!("tacocat"));
        assert_eq!(eval("math.greatest(1, 5, 3)", json!({})).unwrap(), json!(5));
        assert_eq!(eval("base64.encode(b'hi')", json!({})).unwrap(), json!("aGk="));
        assert!(eval("lists.range(3)", json!({})).is_err());
    }

    #[test]
    fn map_iteration_is_in_key_order() {
        let vars = json!({"m": {"d": 4, "b": 2, "a": 1, "c": 3, "e": 5, "f": 6}});
        for _ in 0..20 {
            assert_eq!(eval("vars.m.map(k, k)", vars.clone()).unwrap(), json!(["a", "b", "c", "d", "e", "f"]));
            assert_eq!(eval("vars.m.filter(k, vars.m[k] > 2)", vars.clone()).unwrap(), json!(["c", "d", "e", "f"]));
            assert_eq!(eval("{'z': 1, 'y': 2, 'x': 3}.map(k, k)", json!({})).unwrap(), json!(["x", "y", "z"]));
        }
        assert_eq!(eval("vars.m.all(k, vars.m[k] > 0)", vars.clone()).unwrap(), json!(true));
        assert_eq!(eval("vars.m.exists_one(k, k == 'c')", vars.clone()).unwrap(), json!(true));
        assert_eq!(eval("[3, 1, 2].map(x, x * 2)", json!({})).unwrap(), json!([6, 2, 4]));
        assert_eq!(eval("[[1, 2], [3]].map(l, l.map(x, x + 1))", json!({})).unwrap(), json!([[2, 3], [4]]));
        assert!(eval("5.map(x, x)", json!({})).is_err());
    }

    #[test]
    fn error_text_shows_maps_in_key_order() {
        let vars = json!({"m": {"d": 4, "b": 2, "a": 1, "c": 3}});
        let first = eval("vars.m + vars.m", vars.clone()).unwrap_err();
        for _ in 0..20 {
            assert_eq!(eval("vars.m + vars.m", vars.clone()).unwrap_err(), first);
        }
        assert!(first.contains(r#"{"a": 1, "b": 2, "c": 3, "d": 4}"#), "{first}");
    }

    #[test]
    fn results_that_json_cannot_hold_are_errors() {
        assert!(eval("9007199254740991", json!({})).is_ok());
        assert!(eval("9007199254740992", json!({})).unwrap_err().contains("±(2^53-1)"));
        assert!(eval("-9007199254740992", json!({})).unwrap_err().contains("±(2^53-1)"));
        assert!(eval("18446744073709551615u", json!({})).unwrap_err().contains("string(x)"));
        assert_eq!(eval("string(18446744073709551615u)", json!({})).unwrap(), json!("18446744073709551615"));
        assert!(eval("{1: 'a'}", json!({})).unwrap_err().contains("not a string"));
        assert!(eval("1.0 / 0.0", json!({})).unwrap_err().contains("finite"));
        assert_eq!(eval("b'\\x00\\xff'", json!({})).unwrap(), json!("AP8="));
        assert_eq!(
            eval("timestamp('2026-01-02T03:04:05.5+01:00')", json!({})).unwrap(),
            json!("2026-01-02T02:04:05.500Z")
        );
        assert_eq!(eval("duration('90m')", json!({})).unwrap(), json!("5400s"));
        assert_eq!(eval("duration('1.5s')", json!({})).unwrap(), json!("1.5s"));
    }

    #[test]
    fn parse_errors_name_the_position() {
        let err = Expr::parse("vars.a +").unwrap_err();
        assert!(err.contains("1:"), "{err}");
        assert!(Expr::parse("1 +* 2").is_err());
    }

    #[test]
    fn literal_detection() {
        assert_eq!(Expr::parse("1").unwrap().literal_kind(), Some("int"));
        assert_eq!(Expr::parse("'x'").unwrap().literal_kind(), Some("string"));
        assert_eq!(Expr::parse("true").unwrap().literal_kind(), Some("bool"));
        assert_eq!(Expr::parse("vars.a").unwrap().literal_kind(), None);
        assert!(Expr::parse("false").unwrap().is_literal_false());
    }

    #[test]
    fn base64_matches_known_answers() {
        for (input, expected) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
