//! The values the runtime computes with, and the types that describe them.

use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A runtime value. Every expression of a checked program evaluates to one.
///
/// Strings, lists and records are reference-counted so that copying a value
/// (onto the stack, into a local, into a message argument) never copies its
/// contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// `none`: an optional value that is missing.
    None,
    /// `true` or `false`.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// An exact decimal number.
    Decimal(Decimal),
    /// An exact amount of money.
    Money(Decimal),
    /// A percentage as written: `12.5` for `12.5%`.
    Percent(Decimal),
    /// Text; enum values are strings too.
    Str(Arc<str>),
    /// A length of time in seconds.
    Duration(i64),
    /// An instant, in seconds since the Unix epoch (UTC).
    Time(i64),
    /// A calendar date, in days since 1970-01-01.
    Date(i32),
    /// A time of day, in minutes since midnight.
    TimeOfDay(u16),
    /// An IANA time zone name.
    Timezone(Arc<str>),
    /// A list.
    List(Arc<[Value]>),
    /// A record: an event, a declared record type or the profile.
    Record(Arc<Record>),
}

/// The fields of a record value, in the order of its schema's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Index of the record's schema in [`crate::Bundle::schemas`].
    pub schema: u32,
    /// One value per schema field.
    pub fields: Vec<Value>,
}

impl Value {
    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }

    /// Whether the value is `none`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// The value as text, the way a string interpolation shows it
    /// (`"{x}"`): strings as they are, money with a `$` and two decimals,
    /// durations in the language's units, instants in RFC 3339 UTC, none as
    /// the empty string, list items separated by `, `.
    pub fn to_text(&self) -> String {
        self.to_text_in(None)
    }

    /// The value as text, as [`Value::to_text`], with money written in a
    /// currency given by its ISO 4217 code (see [`format_money_in`]).
    pub fn to_text_in(&self, currency: Option<&str>) -> String {
        match self {
            Value::None => String::new(),
            Value::Str(s) | Value::Timezone(s) => s.to_string(),
            Value::Money(m) => format_money_in(*m, currency),
            Value::List(items) => items
                .iter()
                .map(|v| v.to_text_in(currency))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        }
    }
}

/// Money as shoppers read it in a currency given by its ISO 4217 code:
/// `€12.50`, `¥1250` (no digit grouping), `-£3.00`, and for a code
/// without a sign of its own the code first, `CHF 12.50`. Rounded half away
/// from zero to the currency's minor units, exactly (never through a float).
/// With no currency, as [`format_money`].
pub fn format_money_in(m: Decimal, currency: Option<&str>) -> String {
    let Some(code) = currency else {
        return format_money(m);
    };
    let known = nudge_stdlib::format::currency(code);
    let digits = known.map_or(2, |c| c.digits);
    let r = m.round_dp_with_strategy(digits, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let sign = if r.is_sign_negative() && !r.is_zero() {
        "-"
    } else {
        ""
    };
    let mut abs = r.abs();
    abs.rescale(digits);
    match known.and_then(|c| c.symbol) {
        Some(symbol) => format!("{sign}{symbol}{abs}"),
        None => format!("{sign}{code} {abs}"),
    }
}

/// Money as shoppers read it: `$12.50`, `-$3.00`.
pub fn format_money(m: Decimal) -> String {
    let r = m.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let sign = if r.is_sign_negative() && !r.is_zero() {
        "-"
    } else {
        ""
    };
    let mut abs = r.abs();
    abs.rescale(2);
    format!("{sign}${abs}")
}

/// A duration in the language's notation: `1d 2h`, `0s`; negative ones with a `-`.
pub fn format_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let sign = if secs < 0 { "-" } else { "" };
    let mut rest = secs.unsigned_abs();
    let mut parts = Vec::new();
    for (unit, len) in [("d", 86_400u64), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= len {
            parts.push(format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    format!("{sign}{}", parts.join(" "))
}

/// A duration given in milliseconds, in the language's notation with a
/// trailing `ms` part when it has one: `1d 2h`, `3s 250ms`, `0s`.
pub fn format_duration_ms(ms: i64) -> String {
    let whole = format_duration(ms / 1000);
    match ms % 1000 {
        0 => whole,
        frac if ms.unsigned_abs() < 1000 => format!(
            "{}{}ms",
            if frac < 0 { "-" } else { "" },
            frac.unsigned_abs()
        ),
        frac => format!("{whole} {}ms", frac.unsigned_abs()),
    }
}

/// The civil date of a day number (days since 1970-01-01), proleptic Gregorian.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm: exact for the whole i64 day range we accept.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An instant as RFC 3339 in UTC: `2026-12-18T17:00:00Z`.
pub fn format_instant(unix: i64) -> String {
    let mut out = String::with_capacity(24);
    write_instant(&mut out, unix, None);
    out
}

/// Writes `unix` (seconds) as RFC 3339 in UTC, with `.fff` milliseconds
/// when given. Every trace and outbox line holds instants, so the common
/// years (0 to 9999) are written digit by digit rather than through
/// `format!`; others keep `format!`'s sign and width.
fn write_instant(out: &mut String, unix: i64, millis: Option<u32>) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let two = |out: &mut String, n: i64| {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    };
    if (0..=9999).contains(&y) {
        two(out, y / 100);
        two(out, y % 100);
    } else {
        out.push_str(&format!("{y:04}"));
    }
    out.push('-');
    two(out, i64::from(m));
    out.push('-');
    two(out, i64::from(d));
    out.push('T');
    two(out, secs / 3600);
    out.push(':');
    two(out, secs / 60 % 60);
    out.push(':');
    two(out, secs % 60);
    if let Some(ms) = millis {
        let ms = i64::from(ms);
        out.push('.');
        out.push(char::from(b'0' + (ms / 100 % 10) as u8));
        two(out, ms % 100);
    }
    out.push('Z');
}

/// An instant given in milliseconds as RFC 3339 in UTC, with the fraction
/// only when it is not zero (`2026-12-18T17:00:00Z`, `2026-12-18T17:00:00.250Z`),
/// so whole-second instants read as they always have.
pub fn format_instant_ms(ms: i64) -> String {
    let mut out = String::with_capacity(28);
    let frac = ms.rem_euclid(1000) as u32;
    write_instant(&mut out, ms.div_euclid(1000), (frac != 0).then_some(frac));
    out
}

impl fmt::Display for Value {
    /// The value as a literal of the flow language (`$12.50`, `"text"`, `7d`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("none"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Money(m) if m.is_sign_negative() => write!(f, "-${}", m.abs()),
            Value::Money(m) => write!(f, "${m}"),
            Value::Percent(p) => write!(f, "{p}%"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Duration(s) => f.write_str(&format_duration(*s)),
            Value::Time(t) => f.write_str(&format_instant(*t)),
            Value::Date(d) => {
                let (y, m, d) = civil_from_days(i64::from(*d));
                write!(f, "{y:04}-{m:02}-{d:02}")
            }
            Value::TimeOfDay(m) => write!(f, "{:02}:{:02}", m / 60, m % 60),
            Value::Timezone(z) => write!(f, "timezone {z:?}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Record(r) => {
                write!(f, "record#{} {{", r.schema)?;
                for (i, v) in r.fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// The type of a schema field, a parameter or a top-level value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Type {
    /// `bool`
    Bool,
    /// `int`
    Int,
    /// `decimal`
    Decimal,
    /// `money`
    Money,
    /// `percent`
    Percent,
    /// `string`
    String,
    /// `duration`
    Duration,
    /// `time`
    Time,
    /// `date`
    Date,
    /// `time_of_day`
    TimeOfDay,
    /// `timezone`
    Timezone,
    /// `list<T>`
    List(Box<Type>),
    /// A record, by index in [`crate::Bundle::schemas`].
    Record(u32),
    /// A string enum, by index in [`crate::Bundle::enums`].
    Enum(u32),
    /// `T?`
    Optional(Box<Type>),
}

impl Type {
    /// Whether the type is `T?`.
    pub fn is_optional(&self) -> bool {
        matches!(self, Type::Optional(_))
    }
}

#[cfg(test)]
mod tests {

    /// The instants as `format!` wrote them before they were written digit
    /// by digit: the reference the fast path must match.
    fn instant_by_format(ms: i64) -> String {
        let unix = ms.div_euclid(1000);
        let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let whole = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        match ms.rem_euclid(1000) {
            0 => whole,
            frac => format!("{}.{frac:03}Z", &whole[..whole.len() - 1]),
        }
    }

    proptest::proptest! {
        #[test]
        fn instants_are_written_as_format_wrote_them(
            ms in proptest::strategy::Strategy::prop_map(proptest::prelude::any::<i64>(), |v| v / 200_000),
            near in -5_000_000_000_000i64..300_000_000_000_000,
        ) {
            for t in [ms, near, near - near.rem_euclid(1000)] {
                proptest::prop_assert_eq!(format_instant_ms(t), instant_by_format(t));
                proptest::prop_assert_eq!(format_instant(t / 1000), instant_by_format(t / 1000 * 1000));
            }
        }
    }

    #[test]
    fn instants_of_odd_years_keep_their_sign_and_width() {
        for t in [
            0,
            -1,
            253_402_300_800_000,
            -62_135_596_800_001,
            -62_167_219_200_000,
            1_000,
        ] {
            assert_eq!(format_instant_ms(t), instant_by_format(t), "{t}");
        }
    }
    use super::*;

    #[test]
    fn instants_show_milliseconds_only_when_they_have_some() {
        assert_eq!(format_instant_ms(1_767_607_200_000), "2026-01-05T10:00:00Z");
        assert_eq!(
            format_instant_ms(1_767_607_200_007),
            "2026-01-05T10:00:00.007Z"
        );
        assert_eq!(format_instant_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn durations_show_milliseconds_only_when_they_have_some() {
        assert_eq!(format_duration_ms(90_000), "1m 30s");
        assert_eq!(format_duration_ms(3_250), "3s 250ms");
        assert_eq!(format_duration_ms(18), "18ms");
        assert_eq!(format_duration_ms(-18), "-18ms");
        assert_eq!(format_duration_ms(0), "0s");
    }
}
