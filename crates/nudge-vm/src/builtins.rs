//! The stdlib builtins (`docs/stdlib.md`, section Builtins).

use chrono::TimeZone;
use nudge_bytecode::{Escape, Instr, Type, Value, format_money_in};
use nudge_stdlib::Builtin;
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

    /// What entry `builtin` of the bundle's builtin list is bound to.
    pub(crate) fn callee(&self, builtin: u16) -> Result<Callee, VmError> {
        match self.callees.get(usize::from(builtin)) {
            Some(Ok(c)) => Ok(*c),
            Some(Err(name)) => Err(bad(format!("unknown builtin `{name}`"))),
            None => Err(bad(format!("no builtin {builtin}"))),
        }
    }

    /// Calls entry `builtin` of the bundle's builtin list with its value
    /// arguments and, for list builtins, a lambda block.
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
        match self.callee(builtin)? {
            Callee::Std(b) => {
                let call = Call {
                    unit,
                    args,
                    lambda,
                    events: false,
                };
                self.call_std(b, call, locals, scope, host)
            }
            // Escaping of values landing in message content, chosen by the compiler.
            Callee::Escape(escape) => match args.as_slice() {
                [v] => Ok(Value::str(&escape.apply(&self.text(v)))),
                _ => Err(bad(format!(
                    "`{}` takes 1 arguments, given {}",
                    escape.builtin(),
                    args.len()
                ))),
            },
        }
    }

    /// Calls an event builtin over this customer's events of `event` since
    /// the instance started and, for a windowed one, within `window`
    /// seconds before now.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call_event(
        &self,
        unit: UnitRef,
        builtin: u16,
        event: u32,
        block: Option<u32>,
        window: Option<i64>,
        locals: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Value, VmError> {
        let Callee::Std(b) = self.callee(builtin)? else {
            return Err(bad(format!("builtin {builtin} is not an event builtin")));
        };
        let since = match window {
            Some(w) if w < 0 => return Err(bad(format!("`{b}` over a negative window"))),
            Some(w) => host
                .now()
                .checked_sub(w)
                .and_then(|s| s.checked_mul(1000))
                .map_or(scope.since, |from| from.max(scope.since)),
            None => scope.since,
        };
        // The host is borrowed while it lists events, and the test lambda needs
        // it mutably, so collect first (records are shared, so this is cheap).
        let mut events = Vec::new();
        host.for_each_event(event, since, &mut |e| {
            events.push(e.clone());
            true
        });
        grow(locals, usize::from(self.unit(unit)?.slots));
        let call = Call {
            unit,
            args: vec![Value::List(events.into())],
            lambda: block,
            events: true,
        };
        self.call_std(b, call, locals, scope, host)
    }

    /// Runs a stdlib builtin: the one place each [`Builtin`] is implemented.
    fn call_std(
        &self,
        b: Builtin,
        call: Call,
        locals: &mut Vec<Value>,
        scope: &Scope,
        host: &mut dyn Host,
    ) -> Result<Value, VmError> {
        let name = b.name();
        let Call {
            unit,
            args,
            lambda,
            events,
        } = call;
        // Event builtins receive this customer's events as their one list
        // argument; they are only reached through `call_event`, and list
        // builtins never through it.
        let is_event = matches!(
            b,
            Builtin::AnyEvent | Builtin::CountEvents | Builtin::LastEvent
        ) || b.windowed();
        if is_event != events {
            return Err(bad(format!(
                "`{name}` called {} `call_event`",
                if events { "through" } else { "without" }
            )));
        }
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
        // A test lambda; the event builtins may go without one, and then every event passes.
        let mut test = |item: &Value, locals: &mut Vec<Value>| -> Result<bool, VmError> {
            match lambda {
                Some(block) => want_bool(self.call_lambda(
                    unit,
                    block,
                    std::slice::from_ref(item),
                    locals,
                    scope,
                    host,
                )?),
                None if events => Ok(true),
                None => Err(bad(format!("`{name}` without its function"))),
            }
        };
        match b {
            Builtin::Any | Builtin::AnyEvent | Builtin::AnyEventWithin => {
                arity(1)?;
                for it in want_list(&args[0])? {
                    if test(it, locals)? {
                        return Ok(Value::Bool(true));
                    }
                }
                Ok(Value::Bool(false))
            }
            Builtin::All => {
                arity(1)?;
                for it in want_list(&args[0])? {
                    if !test(it, locals)? {
                        return Ok(Value::Bool(false));
                    }
                }
                Ok(Value::Bool(true))
            }
            Builtin::Count | Builtin::CountEvents | Builtin::CountEventsWithin => {
                arity(1)?;
                let mut n: i64 = 0;
                for it in want_list(&args[0])? {
                    if test(it, locals)? {
                        n += 1;
                    }
                }
                Ok(Value::Int(n))
            }
            Builtin::First => {
                arity(1)?;
                for it in want_list(&args[0])? {
                    if test(it, locals)? {
                        return Ok(it.clone());
                    }
                }
                Ok(Value::None)
            }
            Builtin::LastEvent | Builtin::LastEventWithin => {
                arity(1)?;
                let mut last = Value::None;
                for it in want_list(&args[0])? {
                    if test(it, locals)? {
                        last = it.clone();
                    }
                }
                Ok(last)
            }
            Builtin::Filter => {
                arity(1)?;
                let mut out = Vec::new();
                for it in want_list(&args[0])? {
                    if test(it, locals)? {
                        out.push(it.clone());
                    }
                }
                Ok(Value::List(out.into()))
            }
            Builtin::Map | Builtin::Sum | Builtin::SumEventsWithin => {
                arity(1)?;
                let block = lambda.ok_or_else(|| bad(format!("`{name}` without its function")))?;
                let items = want_list(&args[0])?;
                let mut apply = |item: &Value, locals: &mut Vec<Value>| {
                    self.call_lambda(unit, block, std::slice::from_ref(item), locals, scope, host)
                };
                if b == Builtin::Map {
                    let mut out = Vec::with_capacity(items.len());
                    for it in items {
                        out.push(apply(it, locals)?);
                    }
                    return Ok(Value::List(out.into()));
                }
                let mut total: Option<Value> = None;
                for it in items {
                    let v = apply(it, locals)?;
                    total = Some(match total {
                        None => v,
                        Some(t) => ops::add(t, v)?,
                    });
                }
                Ok(match total {
                    Some(t) => t,
                    None => self.sum_zero(unit, block),
                })
            }
            Builtin::Len => {
                arity(1)?;
                let n = want_list(&args[0])?.len();
                Ok(Value::Int(
                    i64::try_from(n).map_err(|_| bad("list too long"))?,
                ))
            }
            Builtin::Min | Builtin::Max => {
                arity(2)?;
                let o = ops::compare(&args[0], &args[1])?;
                let [x, y] = <[Value; 2]>::try_from(args).map_err(|_| bad("arity"))?;
                let take_x = if b == Builtin::Min {
                    o.is_le()
                } else {
                    o.is_ge()
                };
                Ok(if take_x { x } else { y })
            }
            Builtin::Round => {
                arity(2)?;
                let [v, p] = <[Value; 2]>::try_from(args).map_err(|_| bad("arity"))?;
                let Value::Int(places) = p else {
                    return Err(bad(format!("`round` to {p} places")));
                };
                ops::round(v, places)
            }
            Builtin::Contains | Builtin::StartsWith | Builtin::EndsWith => {
                arity(2)?;
                let (t, part) = (want_str(&args[0])?, want_str(&args[1])?);
                Ok(Value::Bool(match b {
                    Builtin::Contains => t.contains(part),
                    Builtin::StartsWith => t.starts_with(part),
                    _ => t.ends_with(part),
                }))
            }
            Builtin::Lower | Builtin::Upper | Builtin::Trim => {
                arity(1)?;
                let t = want_str(&args[0])?;
                Ok(Value::str(&match b {
                    Builtin::Lower => t.to_lowercase(),
                    Builtin::Upper => t.to_uppercase(),
                    _ => t.trim().to_string(),
                }))
            }
            Builtin::FormatMoney => {
                arity(1)?;
                match &args[0] {
                    Value::Money(m) => Ok(Value::str(&format_money_in(*m, self.currency()))),
                    other => Err(bad(format!("`format_money` of {other}"))),
                }
            }
            Builtin::UrlEncode => {
                arity(1)?;
                Ok(Value::str(&url_encode(want_str(&args[0])?)))
            }
            Builtin::Now => {
                arity(0)?;
                Ok(Value::Time(host.now()))
            }
            Builtin::DateOf => {
                arity(1)?;
                let t = want_time(&args[0])?;
                Ok(Value::Date(date_of(t, host.timezone())?))
            }
            Builtin::FormatMoneyIn => {
                arity(2)?;
                let Value::Money(m) = &args[0] else {
                    return Err(bad(format!("`format_money_in` of {}", args[0])));
                };
                let code = want_str(&args[1])?.trim().to_ascii_uppercase();
                if !nudge_stdlib::format::is_currency_code(&code) {
                    return Err(VmError::new(crate::VmErrorKind::Format(format!(
                        "{:?} is not an ISO 4217 currency code",
                        want_str(&args[1])?
                    ))));
                }
                Ok(Value::str(&format_money_in(*m, Some(&code))))
            }
            Builtin::FormatDate => {
                arity(2)?;
                let spec = want_str(&args[1])?;
                let format = nudge_stdlib::format::parse_date_format(spec)
                    .map_err(|e| VmError::new(crate::VmErrorKind::Format(e.to_string())))?;
                let fields = date_fields(&args[0], host.timezone())?;
                let locale = self.profile_text(host, "locale");
                Ok(Value::str(&nudge_stdlib::format::format_date(
                    &format,
                    &fields,
                    locale.as_deref().unwrap_or(""),
                )))
            }
            Builtin::Recommend | Builtin::RecommendExcluding => {
                let mut exclude = Vec::new();
                if b == Builtin::RecommendExcluding {
                    arity(2)?;
                    for p in want_list(&args[1])? {
                        exclude.push(self.product_id(p)?);
                    }
                } else {
                    arity(1)?;
                }
                let Value::Int(n) = args[0] else {
                    return Err(bad(format!("`{name}` of {} products", args[0])));
                };
                // A negative count asks for nothing; a huge one is capped by the catalogue.
                let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
                let picks = host.recommend(n, &exclude);
                let items = picks
                    .into_iter()
                    .map(|s| self.product_record(s))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Value::List(items.into()))
            }
            Builtin::NextOrderAt => {
                arity(1)?;
                let id = want_str(&args[0])?;
                Ok(host.next_order_at(id).map_or(Value::None, Value::Time))
            }
            Builtin::DaysBetween => {
                arity(2)?;
                let (a, b) = (want_time(&args[0])?, want_time(&args[1])?);
                let secs = b
                    .checked_sub(a)
                    .ok_or_else(|| VmError::new(crate::VmErrorKind::Overflow))?;
                // Integer division truncates toward zero: whole 24-hour periods.
                Ok(Value::Int(secs / DAY))
            }
        }
    }
}

/// The calendar fields of an instant in `tz`, or of a date (read as its
/// midnight in `tz`).
fn date_fields(v: &Value, tz: chrono_tz::Tz) -> Result<nudge_stdlib::format::DateFields, VmError> {
    use chrono::{Datelike, Timelike};
    let local = match v {
        Value::Time(t) => chrono::DateTime::from_timestamp(*t, 0)
            .ok_or_else(|| VmError::new(crate::VmErrorKind::Overflow))?
            .with_timezone(&tz),
        Value::Date(d) => {
            let day = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|e| e.checked_add_signed(chrono::Duration::days(i64::from(*d))))
                .ok_or_else(|| VmError::new(crate::VmErrorKind::Overflow))?;
            let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
            // A midnight skipped by a clock change reads as the first moment after it.
            tz.from_local_datetime(&midnight)
                .earliest()
                .or_else(|| {
                    tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                        .earliest()
                })
                .ok_or_else(|| VmError::new(crate::VmErrorKind::Overflow))?
        }
        other => return Err(bad(format!("`format_date` of {other}"))),
    };
    Ok(nudge_stdlib::format::DateFields {
        year: local.year(),
        month: local.month(),
        day: local.day(),
        weekday: local.weekday().num_days_from_monday(),
        hour: local.hour(),
        minute: local.minute(),
        zone: local.format("%Z").to_string(),
    })
}

impl Vm<'_> {
    /// The stdlib `Product` record's schema in this bundle.
    fn product_schema(&self) -> Result<(u32, &nudge_bytecode::Schema), VmError> {
        self.bundle
            .schemas
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == "Product" && s.kind == nudge_bytecode::SchemaKind::Record)
            .map(|(i, s)| (i as u32, s))
            .ok_or_else(|| bad("the bundle has no `Product` record"))
    }

    /// The `product_id` of a `Product` record.
    fn product_id(&self, v: &Value) -> Result<String, VmError> {
        let Value::Record(r) = v else {
            return Err(bad(format!("expected a product, found {v}")));
        };
        let schema = self
            .bundle
            .schemas
            .get(r.schema as usize)
            .ok_or_else(|| bad("a record of no schema"))?;
        let id = schema
            .fields
            .iter()
            .position(|f| f.name == "product_id")
            .and_then(|i| r.fields.get(i));
        match id {
            Some(Value::Str(s)) => Ok(s.to_string()),
            _ => Err(bad(format!("expected a product, found {v}"))),
        }
    }

    /// A `Product` record for a suggestion; fields it does not know take
    /// their defaults.
    fn product_record(&self, s: crate::Suggestion) -> Result<Value, VmError> {
        let (schema, def) = self.product_schema()?;
        let text = |t: Option<String>| t.map_or(Value::None, |t| Value::str(&t));
        let fields = def
            .fields
            .iter()
            .map(|f| match f.name.as_str() {
                "product_id" => Value::str(&s.product_id),
                "name" => text(s.name.clone()),
                "category" => text(s.category.clone()),
                "url" => text(s.url.clone()),
                "image_url" => text(s.image_url.clone()),
                "price" if s.price.is_some() => Value::Money(s.price.unwrap_or_default()),
                _ => f.default.clone().unwrap_or(Value::None),
            })
            .collect();
        Ok(Value::Record(std::sync::Arc::new(nudge_bytecode::Record {
            schema,
            fields,
        })))
    }

    /// A text field of the customer's profile, by name (`locale`), when set.
    fn profile_text(&self, host: &dyn Host, name: &str) -> Option<String> {
        let schema = self.bundle.schemas.get(self.bundle.profile as usize)?;
        let i = schema.fields.iter().position(|f| f.name == name)?;
        match host.profile_field(u16::try_from(i).ok()?)? {
            Value::Str(s) => Some(s.to_string()),
            _ => None,
        }
    }
}

/// What a name in the bundle's builtin list is bound to when the VM is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Callee {
    /// A stdlib builtin.
    Std(Builtin),
    /// An internal builtin escaping values for message content.
    Escape(Escape),
}

impl Callee {
    /// Binds a builtin name; the name itself when it is unknown.
    pub(crate) fn bind(name: &str) -> Result<Callee, String> {
        Builtin::from_name(name)
            .map(Callee::Std)
            .or_else(|| Escape::of_builtin(name).map(Callee::Escape))
            .ok_or_else(|| name.to_string())
    }
}

/// The arguments of one builtin call.
struct Call {
    unit: UnitRef,
    /// The value arguments; for an event builtin, the list of events.
    args: Vec<Value>,
    /// The lambda block, for builtins that take a function.
    lambda: Option<u32>,
    /// Whether the call came through `call_event`.
    events: bool,
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
