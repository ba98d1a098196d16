//! Operators: arithmetic, comparisons and conversions on values.
//!
//! Every function here is total: a value of the wrong shape gives
//! `BadCode`, never a panic, since the bundle may not come from the checker.

use std::cmp::Ordering;

use nudge_bytecode::{Instr, Value};
use rust_decimal::Decimal;

use crate::{VmError, VmErrorKind, bad};

const DAY: i64 = 86_400;

fn overflow() -> VmError {
    VmError::new(VmErrorKind::Overflow)
}

fn div_zero() -> VmError {
    VmError::new(VmErrorKind::DivisionByZero)
}

fn shapes(op: &str, a: &Value, b: &Value) -> VmError {
    bad(format!("`{op}` on {a} and {b}"))
}

fn dec_div(a: Decimal, b: Decimal) -> Result<Decimal, VmError> {
    if b.is_zero() {
        return Err(div_zero());
    }
    a.checked_div(b).ok_or_else(overflow)
}

/// `amount × p / 100`, exactly.
fn pct_of(m: Decimal, p: Decimal) -> Result<Decimal, VmError> {
    m.checked_mul(p)
        .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
        .ok_or_else(overflow)
}

/// Whole days of a duration, toward zero, as a date offset.
fn whole_days(secs: i64) -> Result<i32, VmError> {
    i32::try_from(secs / DAY).map_err(|_| overflow())
}

/// Applies a two-operand arithmetic instruction.
pub(crate) fn binary(instr: &Instr, a: Value, b: Value) -> Result<Value, VmError> {
    use Value as V;
    let op = instr.mnemonic();
    let ov = |x: Option<i64>| x.ok_or_else(overflow);
    let ovd = |x: Option<Decimal>| x.ok_or_else(overflow);
    Ok(match (instr, &a, &b) {
        (Instr::AddInt, V::Int(x), V::Int(y)) => V::Int(ov(x.checked_add(*y))?),
        (Instr::SubInt, V::Int(x), V::Int(y)) => V::Int(ov(x.checked_sub(*y))?),
        (Instr::MulInt, V::Int(x), V::Int(y)) => V::Int(ov(x.checked_mul(*y))?),
        (Instr::RemInt, V::Int(x), V::Int(y)) => {
            if *y == 0 {
                return Err(div_zero());
            }
            V::Int(ov(x.checked_rem(*y))?)
        }
        (Instr::DivInt, V::Int(x), V::Int(y)) => {
            V::Decimal(dec_div(Decimal::from(*x), Decimal::from(*y))?)
        }
        (Instr::AddDec, V::Decimal(x), V::Decimal(y)) => V::Decimal(ovd(x.checked_add(*y))?),
        (Instr::SubDec, V::Decimal(x), V::Decimal(y)) => V::Decimal(ovd(x.checked_sub(*y))?),
        (Instr::MulDec, V::Decimal(x), V::Decimal(y)) => V::Decimal(ovd(x.checked_mul(*y))?),
        (Instr::DivDec, V::Decimal(x), V::Decimal(y)) => V::Decimal(dec_div(*x, *y)?),
        (Instr::AddMoney, V::Money(x), V::Money(y)) => V::Money(ovd(x.checked_add(*y))?),
        (Instr::SubMoney, V::Money(x), V::Money(y)) => V::Money(ovd(x.checked_sub(*y))?),
        (Instr::MulMoney, V::Money(m), V::Decimal(d))
        | (Instr::MulMoney, V::Decimal(d), V::Money(m)) => V::Money(ovd(m.checked_mul(*d))?),
        (Instr::MulMoneyPct, V::Money(m), V::Percent(p))
        | (Instr::MulMoneyPct, V::Percent(p), V::Money(m)) => V::Money(pct_of(*m, *p)?),
        (Instr::DivMoney, V::Money(m), V::Decimal(d)) => V::Money(dec_div(*m, *d)?),
        (Instr::DivMoneyMoney, V::Money(x), V::Money(y)) => V::Decimal(dec_div(*x, *y)?),
        (Instr::AddPct, V::Percent(x), V::Percent(y)) => V::Percent(ovd(x.checked_add(*y))?),
        (Instr::SubPct, V::Percent(x), V::Percent(y)) => V::Percent(ovd(x.checked_sub(*y))?),
        (Instr::AddDur, V::Duration(x), V::Duration(y)) => V::Duration(ov(x.checked_add(*y))?),
        (Instr::SubDur, V::Duration(x), V::Duration(y)) => V::Duration(ov(x.checked_sub(*y))?),
        (Instr::MulDur, V::Duration(d), V::Int(n)) | (Instr::MulDur, V::Int(n), V::Duration(d)) => {
            V::Duration(ov(d.checked_mul(*n))?)
        }
        (Instr::DivDur, V::Duration(d), V::Int(n)) => {
            if *n == 0 {
                return Err(div_zero());
            }
            // Rust's integer division truncates toward zero, as the language says.
            V::Duration(ov(d.checked_div(*n))?)
        }
        (Instr::AddTimeDur, V::Time(t), V::Duration(d))
        | (Instr::AddTimeDur, V::Duration(d), V::Time(t)) => V::Time(ov(t.checked_add(*d))?),
        (Instr::SubTimeDur, V::Time(t), V::Duration(d)) => V::Time(ov(t.checked_sub(*d))?),
        (Instr::SubTime, V::Time(x), V::Time(y)) => V::Duration(ov(x.checked_sub(*y))?),
        (Instr::AddDateDur, V::Date(d), V::Duration(s)) => {
            V::Date(d.checked_add(whole_days(*s)?).ok_or_else(overflow)?)
        }
        (Instr::SubDateDur, V::Date(d), V::Duration(s)) => {
            V::Date(d.checked_sub(whole_days(*s)?).ok_or_else(overflow)?)
        }
        (Instr::SubDate, V::Date(x), V::Date(y)) => {
            V::Duration(ov((i64::from(*x) - i64::from(*y)).checked_mul(DAY))?)
        }
        _ => return Err(shapes(op, &a, &b)),
    })
}

/// Arithmetic negation, keeping the type.
pub(crate) fn neg(v: Value) -> Result<Value, VmError> {
    Ok(match v {
        Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(overflow)?),
        Value::Decimal(d) => Value::Decimal(-d),
        Value::Money(d) => Value::Money(-d),
        Value::Percent(d) => Value::Percent(-d),
        Value::Duration(s) => Value::Duration(s.checked_neg().ok_or_else(overflow)?),
        other => return Err(bad(format!("`neg` on {other}"))),
    })
}

/// The order of two values of the same ordered type.
pub(crate) fn compare(a: &Value, b: &Value) -> Result<Ordering, VmError> {
    use Value as V;
    Ok(match (a, b) {
        (V::Int(x), V::Int(y)) | (V::Duration(x), V::Duration(y)) | (V::Time(x), V::Time(y)) => {
            x.cmp(y)
        }
        (V::Decimal(x), V::Decimal(y))
        | (V::Money(x), V::Money(y))
        | (V::Percent(x), V::Percent(y)) => x.cmp(y),
        // Ints meet decimals only when the lowering missed an `int_to_dec`; compare by value anyway.
        (V::Int(x), V::Decimal(y)) => Decimal::from(*x).cmp(y),
        (V::Decimal(x), V::Int(y)) => x.cmp(&Decimal::from(*y)),
        (V::Date(x), V::Date(y)) => x.cmp(y),
        (V::TimeOfDay(x), V::TimeOfDay(y)) => x.cmp(y),
        (V::Str(x), V::Str(y)) => x.cmp(y),
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        _ => return Err(bad(format!("cannot order {a} and {b}"))),
    })
}

/// Structural equality; `Decimal`'s own equality already compares by value (1.0 == 1.00).
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    a == b
}

/// `int_to_dec`: ints become decimals, also inside lists.
pub(crate) fn int_to_dec(v: Value) -> Value {
    match v {
        Value::Int(i) => Value::Decimal(Decimal::from(i)),
        Value::List(items)
            if items
                .iter()
                .any(|x| matches!(x, Value::Int(_) | Value::List(_))) =>
        {
            Value::List(items.iter().cloned().map(int_to_dec).collect())
        }
        other => other,
    }
}

/// The sum of two numbers of the same type (for the `sum` builtin).
pub(crate) fn add(a: Value, b: Value) -> Result<Value, VmError> {
    use Value as V;
    let instr = match (&a, &b) {
        (V::Int(_), V::Int(_)) => Instr::AddInt,
        (V::Decimal(_), V::Decimal(_)) => Instr::AddDec,
        (V::Int(_), V::Decimal(_)) | (V::Decimal(_), V::Int(_)) => {
            return binary(&Instr::AddDec, int_to_dec(a), int_to_dec(b));
        }
        (V::Money(_), V::Money(_)) => Instr::AddMoney,
        (V::Percent(_), V::Percent(_)) => Instr::AddPct,
        (V::Duration(_), V::Duration(_)) => Instr::AddDur,
        _ => return Err(shapes("sum", &a, &b)),
    };
    binary(&instr, a, b)
}

/// Rounds to `places` decimal places, halves away from zero; negative places round to tens, hundreds, ...
pub(crate) fn round(v: Value, places: i64) -> Result<Value, VmError> {
    Ok(match v {
        Value::Int(i) if places >= 0 => Value::Int(i),
        Value::Int(i) => Value::Int(round_int(i, places.unsigned_abs())?),
        Value::Decimal(d) => Value::Decimal(round_dec(d, places)?),
        Value::Money(d) => Value::Money(round_dec(d, places)?),
        Value::Percent(d) => Value::Percent(round_dec(d, places)?),
        other => return Err(bad(format!("`round` of {other}"))),
    })
}

fn round_int(i: i64, k: u64) -> Result<i64, VmError> {
    // Beyond 10^38 every i64 rounds to zero; i128 holds 10^38.
    if k > 38 {
        return Ok(0);
    }
    let p = 10i128.pow(k as u32);
    let x = i128::from(i);
    let (q, r) = (x / p, x % p);
    let q = if r.abs() * 2 >= p { q + x.signum() } else { q };
    i64::try_from(q * p).map_err(|_| overflow())
}

fn round_dec(d: Decimal, places: i64) -> Result<Decimal, VmError> {
    use rust_decimal::RoundingStrategy::MidpointAwayFromZero as Away;
    if places >= 0 {
        let dp = u32::try_from(places.min(28)).unwrap_or(28);
        return Ok(d.round_dp_with_strategy(dp, Away));
    }
    let k = places.unsigned_abs();
    // A decimal is below 8 × 10^28, so rounding to 10^29 or more gives zero.
    if k > 28 {
        return Ok(Decimal::ZERO);
    }
    let p = Decimal::from_i128_with_scale(10i128.pow(k as u32), 0);
    let q = (d / p).round_dp_with_strategy(0, Away);
    q.checked_mul(p).ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn rounding_goes_half_away_from_zero() {
        assert_eq!(
            round(Value::Decimal(dec("2.345")), 2).unwrap(),
            Value::Decimal(dec("2.35"))
        );
        assert_eq!(
            round(Value::Decimal(dec("-2.345")), 2).unwrap(),
            Value::Decimal(dec("-2.35"))
        );
        assert_eq!(round(Value::Int(15), -1).unwrap(), Value::Int(20));
        assert_eq!(round(Value::Int(-15), -1).unwrap(), Value::Int(-20));
        assert_eq!(round(Value::Int(14), -1).unwrap(), Value::Int(10));
        assert_eq!(round(Value::Int(7), 3).unwrap(), Value::Int(7));
        assert_eq!(
            round(Value::Int(i64::MAX), -19).unwrap_err().kind,
            VmErrorKind::Overflow
        );
        assert_eq!(
            round(Value::Decimal(dec("1250")), -2).unwrap(),
            Value::Decimal(dec("1300"))
        );
    }

    #[test]
    fn wrong_shapes_are_bad_code_not_panics() {
        let e = binary(&Instr::AddInt, Value::Int(1), Value::str("x")).unwrap_err();
        assert!(matches!(e.kind, VmErrorKind::BadCode(_)));
        assert!(matches!(
            neg(Value::str("x")).unwrap_err().kind,
            VmErrorKind::BadCode(_)
        ));
        assert!(compare(&Value::Int(1), &Value::None).is_err());
    }

    #[test]
    fn date_arithmetic_uses_whole_days_toward_zero() {
        let d = binary(
            &Instr::AddDateDur,
            Value::Date(10),
            Value::Duration(-86_399),
        )
        .unwrap();
        assert_eq!(d, Value::Date(10));
        let d = binary(
            &Instr::SubDateDur,
            Value::Date(10),
            Value::Duration(2 * DAY + 5),
        )
        .unwrap();
        assert_eq!(d, Value::Date(8));
        let d = binary(&Instr::SubDate, Value::Date(10), Value::Date(7)).unwrap();
        assert_eq!(d, Value::Duration(3 * DAY));
        let d = binary(&Instr::DivDur, Value::Duration(-7), Value::Int(2)).unwrap();
        assert_eq!(d, Value::Duration(-3));
    }

    #[test]
    fn int_to_dec_reaches_into_lists() {
        let l = Value::List(vec![Value::Int(1), Value::None].into());
        assert_eq!(
            int_to_dec(l),
            Value::List(vec![Value::Decimal(Decimal::ONE), Value::None].into())
        );
        assert_eq!(int_to_dec(Value::str("a")), Value::str("a"));
    }
}
