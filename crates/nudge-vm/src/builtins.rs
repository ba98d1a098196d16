//! The stdlib builtins (`docs/stdlib.md`, section Builtins).

use chrono::TimeZone;
use nudge_bytecode::{Instr, Type, Value, format_money};
use rust_decimal::Decimal;

use crate::exec::grow;
use crate::ops;
use crate::{Host, Scope, UnitRef, Vm, VmError, bad};

const DAY: i64 = 86_400;

fn want_str(v: &Value) -> Result<&str, VmError> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(bad(format!("expected a string, found {other}"))),
    }
}

fn want_list(v: &Value) -> Result<&[Value], VmError> {
    match v {
        Value::List(items) => Ok(items),
        other => Err(bad(format!("expected a list, found {other}"))),
    }
}

fn want_time(v: &Value) -> Result<i64, VmError> {
    match v {
        Value::Time(t) => Ok(*t),
        other => Err(bad(format!("expected an instant, found {other}"))),
    }
}

fn want_bool(v: Value) -> Result<bool, VmError> {
    match v {
        Value::Bool(b) => Ok(b),
        other => Err(bad(format!("a test gave {other}, not a bool"))),
    }
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The calendar date of an instant in a zone, as days since 1970-01-01.
pub(crate) fn date_of(t: i64, tz: chrono_tz::Tz) -> Result<i32, VmError> {
    let dt = tz
        .timestamp_opt(t, 0)
        .single()
        .ok_or_else(|| VmError::new(crate::VmErrorKind::Overflow))?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).ok_or_else(|| bad("no epoch"))?;
    let days = dt.date_naive().signed_duration_since(epoch).num_days();
    i32::try_from(days).map_err(|_| VmError::new(crate::VmErrorKind::Overflow))
}

/// The zero of a type, for `sum` over an empty list.
fn zero_of(t: &Type) -> Value {
    match t {
        Type::Optional(inner) => zero_of(inner),
        Type::Decimal => Value::Decimal(Decimal::ZERO),
        Type::Money => Value::Money(Decimal::ZERO),
        Type::Percent => Value::Percent(Decimal::ZERO),
        Type::Duration => Value::Duration(0),
        _ => Value::Int(0),
    }
}

impl Vm<'_> {
    /// The zero `sum` gives for an empty list.
    ///
    /// The lowering emits `call_lambda sum` with nothing saying the result type,
    /// and an empty list has no item to learn it from. So we read it off the
    /// lambda: the instruction before its final `return` produces the result,
    /// and for typed instructions (`add_money`), constants, field loads and lets
    /// its type is known. When it is not (a local, a builtin call), we fall back
    /// to the int 0, which is right for the most common case, counting.
    fn sum_zero(&self, unit: UnitRef, block: u32) -> Value {
        let Ok(u) = self.unit(unit) else {
            return Value::Int(0);
        };
        let Some(code) = u.blocks.get(block as usize).map(|b| &b.code) else {
            return Value::Int(0);
        };
        let Some(last) = code.len().checked_sub(2).and_then(|i| code.get(i)) else {
            return Value::Int(0);
        };
        let b = self.bundle;
        let field_ty = |schema: u32, field: u16| {
            b.schemas
                .get(schema as usize)
                .and_then(|s| s.fields.get(usize::from(field)))
                .map(|f| zero_of(&f.ty))
        };
        let zero = match last {
            Instr::Const(n) => u.consts.get(*n as usize).map(|v| match v {
                Value::Decimal(_) => Value::Decimal(Decimal::ZERO),
                Value::Money(_) => Value::Money(Decimal::ZERO),
                Value::Percent(_) => Value::Percent(Decimal::ZERO),
                Value::Duration(_) => Value::Duration(0),
                _ => Value::Int(0),
            }),
            Instr::LoadField { schema, field } | Instr::LoadFieldOpt { schema, field } => {
                field_ty(*schema, *field)
            }
            Instr::LoadProfileField(f) => field_ty(b.profile, *f),
            Instr::LoadLet(n) => b.lets.get(*n as usize).map(|g| zero_of(&g.ty)),
            Instr::IntToDec
            | Instr::DivInt
            | Instr::AddDec
            | Instr::SubDec
            | Instr::MulDec
            | Instr::DivDec
            | Instr::DivMoneyMoney => Some(Value::Decimal(Decimal::ZERO)),
            Instr::AddMoney
            | Instr::SubMoney
            | Instr::MulMoney
            | Instr::MulMoneyPct
            | Instr::DivMoney => Some(Value::Money(Decimal::ZERO)),
            Instr::AddPct | Instr::SubPct => Some(Value::Percent(Decimal::ZERO)),
            Instr::AddDur
            | Instr::SubDur
            | Instr::MulDur
            | Instr::DivDur
            | Instr::SubTime
            | Instr::SubDate => Some(Value::Duration(0)),
            _ => None,
        };
        zero.unwrap_or(Value::Int(0))
    }

    fn builtin_name(&self, builtin: u16) -> Result<&str, VmError> {
        self.bundle
            .builtins
            .get(usize::from(builtin))
            .map(String::as_str)
            .ok_or_else(|| bad(format!("no builtin {builtin}")))
    }

    /// Calls builtin `builtin` with its value arguments and, for list builtins, a lambda block.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call_builtin(
        &self,
        unit: UnitRef,
        builtin: u16,
        args: Vec<Value>,
        lambda: Option<u32>,
        locals: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Value, VmError> {
        let name = self.builtin_name(builtin)?;
        let arity = |n: usize| -> Result<(), VmError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(bad(format!(
                    "`{name}` takes {n} arguments, given {}",
                    args.len()
                )))
            }
        };
        let need_lambda = || lambda.ok_or_else(|| bad(format!("`{name}` without its function")));
        match name {
            "any" | "all" | "count" | "first" | "filter" | "map" | "sum" => {
                arity(1)?;
                let block = need_lambda()?;
                let items = want_list(&args[0])?;
                let mut call = |item: &Value, locals: &mut Vec<Value>| {
                    self.call_lambda(unit, block, std::slice::from_ref(item), locals, scope, host)
                };
                Ok(match name {
                    "any" => {
                        for it in items {
                            if want_bool(call(it, locals)?)? {
                                return Ok(Value::Bool(true));
                            }
                        }
                        Value::Bool(false)
                    }
                    "all" => {
                        for it in items {
                            if !want_bool(call(it, locals)?)? {
                                return Ok(Value::Bool(false));
                            }
                        }
                        Value::Bool(true)
                    }
                    "count" => {
                        let mut n: i64 = 0;
                        for it in items {
                            if want_bool(call(it, locals)?)? {
                                n += 1;
                            }
                        }
                        Value::Int(n)
                    }
                    "first" => {
                        for it in items {
                            if want_bool(call(it, locals)?)? {
                                return Ok(it.clone());
                            }
                        }
                        Value::None
                    }
                    "filter" => {
                        let mut out = Vec::new();
                        for it in items {
                            if want_bool(call(it, locals)?)? {
                                out.push(it.clone());
                            }
                        }
                        Value::List(out.into())
                    }
                    "map" => {
                        let mut out = Vec::with_capacity(items.len());
                        for it in items {
                            out.push(call(it, locals)?);
                        }
                        Value::List(out.into())
                    }
                    _ => {
                        let mut total: Option<Value> = None;
                        for it in items {
                            let v = call(it, locals)?;
                            total = Some(match total {
                                None => v,
                                Some(t) => ops::add(t, v)?,
                            });
                        }
                        match total {
                            Some(t) => t,
                            None => self.sum_zero(unit, block),
                        }
                    }
                })
            }
            "len" => {
                arity(1)?;
                let n = want_list(&args[0])?.len();
                Ok(Value::Int(
                    i64::try_from(n).map_err(|_| bad("list too long"))?,
                ))
            }
            "min" | "max" => {
                arity(2)?;
                let o = ops::compare(&args[0], &args[1])?;
                let [a, b] = <[Value; 2]>::try_from(args).map_err(|_| bad("arity"))?;
                let take_a = if name == "min" { o.is_le() } else { o.is_ge() };
                Ok(if take_a { a } else { b })
            }
            "round" => {
                arity(2)?;
                let [v, p] = <[Value; 2]>::try_from(args).map_err(|_| bad("arity"))?;
                let Value::Int(places) = p else {
                    return Err(bad(format!("`round` to {p} places")));
                };
                ops::round(v, places)
            }
            "contains" | "starts_with" | "ends_with" => {
                arity(2)?;
                let (t, part) = (want_str(&args[0])?, want_str(&args[1])?);
                Ok(Value::Bool(match name {
                    "contains" => t.contains(part),
                    "starts_with" => t.starts_with(part),
                    _ => t.ends_with(part),
                }))
            }
            "lower" | "upper" | "trim" => {
                arity(1)?;
                let t = want_str(&args[0])?;
                Ok(Value::str(&match name {
                    "lower" => t.to_lowercase(),
                    "upper" => t.to_uppercase(),
                    _ => t.trim().to_string(),
                }))
            }
            "format_money" => {
                arity(1)?;
                match &args[0] {
                    Value::Money(m) => Ok(Value::str(&format_money(*m))),
                    other => Err(bad(format!("`format_money` of {other}"))),
                }
            }
            "url_encode" => {
                arity(1)?;
                Ok(Value::str(&url_encode(want_str(&args[0])?)))
            }
            "now" => {
                arity(0)?;
                Ok(Value::Time(host.now()))
            }
            "date_of" => {
                arity(1)?;
                let t = want_time(&args[0])?;
                Ok(Value::Date(date_of(t, host.timezone())?))
            }
            "days_between" => {
                arity(2)?;
                let (a, b) = (want_time(&args[0])?, want_time(&args[1])?);
                let secs = b
                    .checked_sub(a)
                    .ok_or_else(|| VmError::new(crate::VmErrorKind::Overflow))?;
                // Integer division truncates toward zero: whole 24-hour periods.
                Ok(Value::Int(secs / DAY))
            }
            // Escaping of values landing in message content, chosen by the compiler.
            other => match nudge_bytecode::Escape::of_builtin(other) {
                Some(escape) => {
                    arity(1)?;
                    Ok(Value::str(&escape.apply(&args[0].to_text())))
                }
                None => Err(bad(format!("unknown builtin `{other}`"))),
            },
        }
    }

    /// Calls an event builtin over this customer's events of `event` since the instance started.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call_event(
        &self,
        unit: UnitRef,
        builtin: u16,
        event: u32,
        block: Option<u32>,
        locals: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Value, VmError> {
        let name = self.builtin_name(builtin)?;
        // The host is borrowed while it lists events, and the test lambda needs
        // it mutably, so collect first (records are shared, so this is cheap).
        let mut events = Vec::new();
        host.for_each_event(event, scope.since, &mut |e| {
            events.push(e.clone());
            true
        });
        grow(locals, usize::from(self.unit(unit)?.slots));
        let mut test = |e: &Value, locals: &mut Vec<Value>| -> Result<bool, VmError> {
            match block {
                None => Ok(true),
                Some(b) => want_bool(self.call_lambda(
                    unit,
                    b,
                    std::slice::from_ref(e),
                    locals,
                    scope,
                    host,
                )?),
            }
        };
        match name {
            "any_event" => {
                for e in &events {
                    if test(e, locals)? {
                        return Ok(Value::Bool(true));
                    }
                }
                Ok(Value::Bool(false))
            }
            "count_events" => {
                let mut n: i64 = 0;
                for e in &events {
                    if test(e, locals)? {
                        n += 1;
                    }
                }
                Ok(Value::Int(n))
            }
            "last_event" => {
                let mut last = Value::None;
                for e in &events {
                    if test(e, locals)? {
                        last = e.clone();
                    }
                }
                Ok(last)
            }
            other => Err(bad(format!("`{other}` is not an event builtin"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encode_keeps_only_unreserved() {
        assert_eq!(url_encode("a b&c=d/é~-._"), "a%20b%26c%3Dd%2F%C3%A9~-._");
    }

    #[test]
    fn date_of_uses_the_zone() {
        // 2026-01-01T03:00:00Z is still Dec 31 in New York.
        let t = 1_767_236_400;
        let utc = date_of(t, chrono_tz::UTC).unwrap();
        let ny = date_of(t, chrono_tz::America::New_York).unwrap();
        assert_eq!(utc - ny, 1);
        assert_eq!(Value::Date(utc).to_text(), "2026-01-01");
    }
}
