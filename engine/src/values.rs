//! Typed values: variable coercion and token amounts.

use cel::Value as CelValue;
use pled_core::MAX_SAFE_INTEGER;
use serde_json::{Number, Value};

use crate::expr::{show, type_name};
use crate::template::VarType;

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "double",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// An integral double within ±(2^53-1), as an integer.
fn integral(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER as f64).then_some(f as i64)
}

/// Checks (and normalises) a value for a variable of type `t`. `null` fits every type;
/// `int`/`uint` accept integral doubles (`5.0` becomes `5`); `double` stores every number as
/// a double, so CEL sees a `double` whatever JSON spelling it came from.
pub(crate) fn coerce(t: VarType, v: &Value) -> Result<Value, String> {
    let mismatch = || format!("expected {}, got {} {}", t.as_str(), json_type(v), short(v));
    match (t, v) {
        (_, Value::Null) | (VarType::Any, _) => Ok(v.clone()),
        (VarType::Int, Value::Number(n)) => {
            let i = n.as_i64().or_else(|| n.as_f64().and_then(integral)).ok_or_else(mismatch)?;
            if i.unsigned_abs() > MAX_SAFE_INTEGER {
                return Err(format!("{i} is outside ±(2^53-1)"));
            }
            Ok(Value::from(i))
        }
        (VarType::Uint, Value::Number(n)) => {
            let u = n
                .as_u64()
                .or_else(|| n.as_f64().and_then(integral).and_then(|i| u64::try_from(i).ok()))
                .ok_or_else(mismatch)?;
            if u > MAX_SAFE_INTEGER {
                return Err(format!("{u} is above 2^53-1"));
            }
            Ok(Value::from(u))
        }
        (VarType::Double, Value::Number(n)) => {
            n.as_f64().and_then(Number::from_f64).map(Value::Number).ok_or_else(mismatch)
        }
        (VarType::Bool, Value::Bool(_))
        | (VarType::String, Value::String(_))
        | (VarType::List, Value::Array(_))
        | (VarType::Map, Value::Object(_)) => Ok(v.clone()),
        _ => Err(mismatch()),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 { s.chars().take(60).collect::<String>() + "…" } else { s }
}

/// A token amount from a CEL value: a non-negative integer, an integral double, or a
/// decimal string (`0`, or digits without a leading zero) up to 2^128-1.
pub(crate) fn amount(v: &CelValue) -> Result<u128, String> {
    match v {
        CelValue::Int(i) => u128::try_from(*i).map_err(|_| format!("amount must not be negative, got {i}")),
        CelValue::UInt(u) => Ok(u128::from(*u)),
        CelValue::Float(f) => match integral(*f) {
            Some(i) if i >= 0 => Ok(i as u128),
            _ => Err(format!("amount must be a non-negative integer, got double {f}")),
        },
        CelValue::String(s) => parse_decimal(s),
        other => Err(format!(
            "amount must be a non-negative integer or a decimal string, got {} {}",
            type_name(other),
            show(other)
        )),
    }
}

/// Parses a canonical decimal `u128` (`0`, or digits without a leading zero).
pub(crate) fn parse_decimal(s: &str) -> Result<u128, String> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return Err(format!("amount {s:?} is not a decimal string (digits only, no sign, no leading zeros)"));
    }
    s.parse::<u128>().map_err(|_| format!("amount {s} is above 2^128-1"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn coercion_by_type() {
        assert_eq!(coerce(VarType::Int, &json!(5)).unwrap(), json!(5));
        assert_eq!(coerce(VarType::Int, &json!(5.0)).unwrap(), json!(5));
        assert_eq!(coerce(VarType::Int, &json!(-5)).unwrap(), json!(-5));
        assert!(coerce(VarType::Int, &json!(5.5)).is_err());
        assert!(coerce(VarType::Int, &json!("5")).unwrap_err().contains("expected int, got string"));
        assert!(coerce(VarType::Uint, &json!(-1)).is_err());
        assert_eq!(coerce(VarType::Uint, &json!(3)).unwrap(), json!(3));
        assert!(coerce(VarType::Double, &json!(2)).unwrap().as_f64().is_some());
        assert!(coerce(VarType::Double, &json!(2)).unwrap().is_f64());
        assert!(coerce(VarType::Bool, &json!(1)).is_err());
        assert_eq!(coerce(VarType::String, &json!("x")).unwrap(), json!("x"));
        assert!(coerce(VarType::List, &json!({})).is_err());
        assert!(coerce(VarType::Map, &json!({})).is_ok());
        for t in [VarType::Int, VarType::Bool, VarType::Map, VarType::Any] {
            assert_eq!(coerce(t, &Value::Null).unwrap(), Value::Null);
        }
        assert_eq!(coerce(VarType::Any, &json!([1, "a"])).unwrap(), json!([1, "a"]));
    }

    #[test]
    fn amounts() {
        assert_eq!(amount(&CelValue::Int(5)).unwrap(), 5);
        assert!(amount(&CelValue::Int(-5)).unwrap_err().contains("negative"));
        assert_eq!(amount(&CelValue::UInt(7)).unwrap(), 7);
        assert_eq!(amount(&CelValue::Float(3.0)).unwrap(), 3);
        assert!(amount(&CelValue::Float(3.5)).is_err());
        let big = "340282366920938463463374607431768211455";
        assert_eq!(amount(&CelValue::String(Arc::new(big.into()))).unwrap(), u128::MAX);
        assert!(amount(&CelValue::String(Arc::new("340282366920938463463374607431768211456".into()))).is_err());
        for bad in ["", "-1", "01", "1.0", " 1", "1e3", "+1"] {
            assert!(parse_decimal(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_decimal("0").unwrap(), 0);
        assert!(amount(&CelValue::Bool(true)).unwrap_err().contains("got bool"));
    }
}
