//! Typed values from JSON: event properties and profile traits checked
//! against the bundle's schemas.
//!
//! The checker has promised each flow that `event.total` is money and
//! `event.order_id` a string; this is where the runtime keeps that promise.
//! A property of the wrong type, or a required one missing, makes the whole
//! call bad input (a dead letter), so a flow never sees a value its types do
//! not allow. Properties the schema does not name are ignored.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike};
use nudge_bytecode::{Bundle, FieldSchema, Record, Type, Value};
use rust_decimal::Decimal;
use serde_json::{Map, Value as Json};

/// Why a JSON value does not fit its declared type; `path` names the property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Where in the call: `properties.products[0].price`.
    pub path: String,
    /// What is wrong there.
    pub reason: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.path, self.reason)
    }
}

/// Nesting beyond this is refused, so hostile input cannot exhaust the stack.
pub(crate) const MAX_DEPTH: usize = 32;

/// Where a value sits, built up as decoding descends and turned into text
/// only when something is wrong: most calls are fine, and formatting a path
/// for every property would cost more than decoding it.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root(s) => s.to_string(),
            Path::Field(p, f) => format!("{}.{f}", p.render()),
            Path::Index(p, i) => format!("{}[{i}]", p.render()),
        }
    }
}

/// Decodes a JSON object as a record of `schema`: every field present with its
/// type, or its default, or `none` when optional.
pub fn record(
    bundle: &Bundle,
    schema: u32,
    obj: &Map<String, Json>,
    path: &str,
) -> Result<Value, DecodeError> {
    record_at(bundle, schema, obj, &Path::Root(path), 0)
}

fn record_at(
    bundle: &Bundle,
    schema: u32,
    obj: &Map<String, Json>,
    path: &Path,
    depth: usize,
) -> Result<Value, DecodeError> {
    let Some(s) = bundle.schemas.get(schema as usize) else {
        return Err(err(path, format!("unknown schema #{schema}")));
    };
    let mut fields = Vec::with_capacity(s.fields.len());
    for f in &s.fields {
        let here = Path::Field(path, &f.name);
        let v = match obj.get(&f.name) {
            Some(j) if !j.is_null() => value_at(bundle, &f.ty, j, &here, depth + 1)?,
            _ => missing(f).map_err(|reason| err(&here, reason))?,
        };
        fields.push(v);
    }
    Ok(Value::Record(Arc::new(Record { schema, fields })))
}

/// The value of a record field the data leaves out (or sets to null): its
/// default, else `none` when optional; `Err` is the reason when required.
pub(crate) fn missing(f: &FieldSchema) -> Result<Value, String> {
    match (&f.default, f.ty.is_optional()) {
        (Some(d), _) => Ok(d.clone()),
        (None, true) => Ok(Value::None),
        (None, false) => Err("required but missing".into()),
    }
}

/// Decodes one JSON value as `ty`.
pub fn value(bundle: &Bundle, ty: &Type, json: &Json, path: &str) -> Result<Value, DecodeError> {
    value_at(bundle, ty, json, &Path::Root(path), 0)
}

fn value_at(
    bundle: &Bundle,
    ty: &Type,
    json: &Json,
    path: &Path,
    depth: usize,
) -> Result<Value, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(err(path, too_deep()));
    }
    match (ty, json) {
        (Type::Optional(_), Json::Null) => Ok(Value::None),
        (Type::Optional(inner), _) => value_at(bundle, inner, json, path, depth),
        (Type::List(item), Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, j) in items.iter().enumerate() {
                out.push(value_at(bundle, item, j, &Path::Index(path, i), depth + 1)?);
            }
            Ok(Value::List(out.into()))
        }
        (Type::Record(schema), Json::Object(obj)) => record_at(bundle, *schema, obj, path, depth),
        _ => scalar(bundle, ty, Shape::of(json)).map_err(|reason| err(path, reason)),
    }
}

/// The reason given for a value nested beyond [`MAX_DEPTH`].
pub(crate) fn too_deep() -> String {
    format!("nested deeper than {MAX_DEPTH} levels")
}

/// What decoding needs to know of a JSON value: scalars in full, lists and
/// objects only by kind. Both the tree decoder here and the one-pass
/// decoder (`crate::ingest`) check scalars through [`scalar`], so the two
/// cannot drift apart in what they accept or in what they say.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Shape<'a> {
    Null,
    Bool(bool),
    Number(&'a serde_json::Number),
    /// A number as the sender wrote it, for the decimal types: read from
    /// its own digits it is exact, where a `serde_json::Number` has been
    /// through a binary float.
    Digits(&'a str),
    Str(&'a str),
    List,
    Object,
}

impl<'a> Shape<'a> {
    fn of(json: &'a Json) -> Shape<'a> {
        match json {
            Json::Null => Shape::Null,
            Json::Bool(b) => Shape::Bool(*b),
            Json::Number(n) => Shape::Number(n),
            Json::String(s) => Shape::Str(s),
            Json::Array(_) => Shape::List,
            Json::Object(_) => Shape::Object,
        }
    }
}

/// Decodes a value as `ty` where no descent is needed: any value of a
/// scalar type, or a value of the wrong kind for an optional, list or
/// record type. `Err` is the reason, without the path.
pub(crate) fn scalar(bundle: &Bundle, ty: &Type, json: Shape<'_>) -> Result<Value, String> {
    // Through any `?` first: null is `none`, anything else is read as the
    // inner type (a loop rather than a call: most properties are optional).
    let mut ty = ty;
    while let Type::Optional(inner) = ty {
        if let Shape::Null = json {
            return Ok(Value::None);
        }
        ty = inner;
    }
    if let Shape::Digits(text) = json
        && !matches!(ty, Type::Decimal | Type::Money | Type::Percent)
    {
        // Other types read the number's value, as the tree decoder does.
        return match serde_json::from_str::<serde_json::Number>(text) {
            Ok(n) => scalar(bundle, ty, Shape::Number(&n)),
            Err(_) => Err(format!("the number {text} is out of range")),
        };
    }
    let wrong = |want: &str| format!("expected {want}, found {}", describe(json));
    let text = |want: &str| match json {
        Shape::Str(s) => Ok(s),
        _ => Err(wrong(want)),
    };
    let num = |want: &str| match json {
        Shape::Number(n) => number(n).ok_or_else(|| wrong(want)),
        Shape::Digits(text) => digits(text).ok_or_else(|| wrong(want)),
        _ => Err(wrong(want)),
    };
    Ok(match ty {
        // Unwrapped above; kept correct all the same.
        Type::Optional(inner) => scalar(bundle, inner, json)?,
        Type::Bool => match json {
            Shape::Bool(b) => Value::Bool(b),
            _ => return Err(wrong("a boolean")),
        },
        Type::Int => match json {
            Shape::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => {
                    // 2.0 is an integer written loosely; 2.5 is not.
                    let d = number(n).ok_or_else(|| wrong("an integer"))?;
                    if d.fract().is_zero() {
                        Value::Int(i64::try_from(d).map_err(|_| wrong("an integer in range"))?)
                    } else {
                        return Err(wrong("an integer"));
                    }
                }
            },
            _ => return Err(wrong("an integer")),
        },
        Type::Decimal => Value::Decimal(num("a number")?),
        Type::Money => Value::Money(num("an amount (a number)")?),
        Type::Percent => Value::Percent(num("a percentage")?),
        Type::String => Value::Str(Arc::from(text("a string")?)),
        Type::Enum(e) => {
            let s = text("a string")?;
            let allowed = bundle
                .enums
                .get(*e as usize)
                .map(|e| e.values.as_slice())
                .unwrap_or_default();
            if !allowed.iter().any(|a| a == s) {
                return Err(format!("{s:?} is not one of {}", quoted_list(allowed)));
            }
            Value::str(s)
        }
        Type::Duration => match json {
            Shape::Number(n) => match n.as_i64() {
                Some(s) => Value::Duration(s),
                None => return Err(wrong("a duration in whole seconds")),
            },
            _ => return Err(wrong("a duration in whole seconds")),
        },
        Type::Time => {
            let s = text("an RFC 3339 time string")?;
            Value::Time(
                parse_time(s)
                    .ok_or_else(|| format!("{s:?} is not an RFC 3339 time with a zone"))?,
            )
        }
        Type::Date => {
            let s = text("a date string")?;
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| format!("{s:?} is not a date like 2026-12-24"))?;
            let days = d
                .signed_duration_since(NaiveDate::default())
                .num_days()
                .try_into()
                .map_err(|_| format!("{s:?} is out of range"))?;
            Value::Date(days)
        }
        Type::TimeOfDay => {
            let s = text("a time of day string")?;
            let t = NaiveTime::parse_from_str(s, "%H:%M")
                .map_err(|_| format!("{s:?} is not a time of day like 09:30"))?;
            Value::TimeOfDay((t.hour() * 60 + t.minute()) as u16)
        }
        Type::Timezone => {
            let s = text("a time zone name")?;
            if chrono_tz::Tz::from_str(s).is_err() {
                return Err(format!("{s:?} is not an IANA time zone"));
            }
            Value::Timezone(Arc::from(s))
        }
        Type::List(_) => return Err(wrong("a list")),
        Type::Record(_) => return Err(wrong("an object")),
    })
}

/// An RFC 3339 instant in whole seconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

/// A JSON number as an exact decimal, read from the number's text (the
/// shortest text that reads back as the same number) so that `12.5` stays
/// exactly 12.5.
fn number(n: &serde_json::Number) -> Option<Decimal> {
    // Formatted on the stack: this runs for every amount of every event.
    let mut buf = NumberText::default();
    std::fmt::Write::write_fmt(&mut buf, format_args!("{n}")).ok()?;
    let text = buf.as_str();
    Decimal::from_str(text)
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
}

/// A JSON number's text as an exact decimal (rounded only past the 28
/// digits a decimal holds); `None` when it is out of a decimal's range.
fn digits(text: &str) -> Option<Decimal> {
    if let Some(d) = plain(text) {
        return Some(d);
    }
    let exact = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()?
    } else {
        Decimal::from_str(text).ok()?
    };
    // Where a binary float holds the number exactly, read it as [`number`]
    // does, scale included (`12.50` is 12.5, `-0.0` keeps its sign): the
    // scale shows in outputs, and both decoders must agree.
    let float = serde_json::from_str::<serde_json::Number>(text)
        .ok()
        .and_then(|n| number(&n));
    Some(float.filter(|f| *f == exact).unwrap_or(exact))
}

/// The common case (every price) without a float: a number written
/// without an exponent, with at most 15 digits after any leading zeros and
/// at most 22 after the point. serde_json reads such a number into the
/// nearest float (an integer below 2^53 over an exact power of ten), whose
/// shortest text has the same digits, so this is what [`number`] makes of
/// it: an integer as written; a fraction without its trailing zeros but
/// with one decimal place kept, as a float prints (`32.00` is 32.0).
fn plain(text: &str) -> Option<Decimal> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    if !unsigned.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let Some((whole, fraction)) = unsigned.split_once('.') else {
        // Up to 18 digits fit an `i64`, which the tree decoder keeps as is
        // (but `-0` is a float to it).
        let negative_zero = text.starts_with('-') && unsigned.bytes().all(|b| b == b'0');
        return (unsigned.len() <= 18 && !negative_zero)
            .then(|| Decimal::from_str(text).ok())
            .flatten();
    };
    let digits = whole.len() + fraction.len();
    let leading = whole
        .bytes()
        .chain(fraction.bytes())
        .take_while(|&b| b == b'0')
        .count();
    if digits == leading || digits - leading > 15 || fraction.len() > 22 {
        return None;
    }
    let mut d = Decimal::from_str(text).ok()?.normalize();
    if d.scale() == 0 {
        d.rescale(1);
    }
    Some(d)
}

/// A fixed buffer for a number's text; serde_json writes at most 24 bytes
/// for a float and 20 for an integer.
struct NumberText {
    bytes: [u8; 40],
    len: usize,
}

impl Default for NumberText {
    fn default() -> Self {
        NumberText {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl NumberText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for NumberText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn describe(json: Shape<'_>) -> String {
    match json {
        Shape::Null => "null".into(),
        Shape::Bool(b) => format!("the boolean {b}"),
        Shape::Number(n) => format!("the number {n}"),
        // In the tree decoder's words where a float holds it.
        Shape::Digits(text) => match serde_json::from_str::<serde_json::Number>(text) {
            Ok(n) => format!("the number {n}"),
            Err(_) => format!("the number {text}"),
        },
        Shape::Str(s) if s.chars().count() > 40 => "a string".into(),
        Shape::Str(s) => format!("the string {s:?}"),
        Shape::List => "a list".into(),
        Shape::Object => "an object".into(),
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn err(path: &Path, reason: String) -> DecodeError {
    DecodeError {
        path: path.render(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_bytecode::{Schema, SchemaKind};
    use serde_json::json;

    fn bundle() -> Bundle {
        let product = Schema {
            name: "Product".into(),
            kind: SchemaKind::Record,
            wire: None,
            fields: vec![
                FieldSchema {
                    name: "product_id".into(),
                    ty: Type::String,
                    default: None,
                },
                FieldSchema {
                    name: "price".into(),
                    ty: Type::Money,
                    default: Some(Value::Money(Decimal::ZERO)),
                },
                FieldSchema {
                    name: "quantity".into(),
                    ty: Type::Int,
                    default: Some(Value::Int(1)),
                },
            ],
        };
        let order = Schema {
            name: "order_completed".into(),
            kind: SchemaKind::Event,
            wire: Some("Order Completed".into()),
            fields: vec![
                FieldSchema {
                    name: "order_id".into(),
                    ty: Type::String,
                    default: None,
                },
                FieldSchema {
                    name: "at".into(),
                    ty: Type::Optional(Box::new(Type::Time)),
                    default: None,
                },
                FieldSchema {
                    name: "products".into(),
                    ty: Type::List(Box::new(Type::Record(0))),
                    default: Some(Value::List(Vec::new().into())),
                },
            ],
        };
        Bundle {
            schemas: vec![product, order],
            ..Bundle::default()
        }
    }

    fn decode(j: Json) -> Result<Value, DecodeError> {
        record(&bundle(), 1, j.as_object().unwrap(), "properties")
    }

    #[test]
    fn plain_prices_skip_the_float() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        for (text, want) in [
            ("12.50", "12.5"),
            ("32.00", "32.0"),
            ("-0.5", "-0.5"),
            ("0.000001", "0.000001"),
            ("123456789012345", "123456789012345"),
            ("123456789012345678", "123456789012345678"),
            ("12345678901234.5", "12345678901234.5"),
        ] {
            let got = plain(text).unwrap_or_else(|| panic!("{text} is plain"));
            assert_eq!((got, got.scale()), (d(want), d(want).scale()), "{text}");
            assert_eq!(digits(text), Some(got), "{text}");
        }
        for text in [
            "1e2",
            "-0",
            "0.0",
            "1234567890123456.7",
            "0.0000000000000000000000012",
            "1234567890123456789",
        ] {
            assert_eq!(plain(text), None, "{text}");
        }
        // Past what a float holds: every digit.
        assert_eq!(digits("1234567890123456.7"), Some(d("1234567890123456.7")));
    }

    #[test]
    fn money_is_exact_and_defaults_fill_gaps() {
        let v =
            decode(json!({"order_id": "o1", "products": [{"product_id": "p1", "price": 12.5}]}))
                .unwrap();
        let Value::Record(r) = v else { panic!() };
        assert_eq!(r.fields[0], Value::str("o1"));
        assert_eq!(r.fields[1], Value::None);
        let Value::List(items) = &r.fields[2] else {
            panic!()
        };
        let Value::Record(p) = &items[0] else {
            panic!()
        };
        assert_eq!(p.fields[1], Value::Money(Decimal::new(125, 1)));
        assert_eq!(p.fields[2], Value::Int(1));
    }

    #[test]
    fn wrong_types_name_the_property() {
        let e = decode(json!({"order_id": 7})).unwrap_err();
        assert_eq!(e.path, "properties.order_id");
        assert_eq!(e.reason, "expected a string, found the number 7");
        let e = decode(json!({"order_id": "o", "products": [{"product_id": "p", "price": "x"}]}))
            .unwrap_err();
        assert_eq!(e.path, "properties.products[0].price");
        let e = decode(json!({"order_id": "o", "at": "yesterday"})).unwrap_err();
        assert!(e.reason.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn required_fields_must_be_present() {
        let e = decode(json!({})).unwrap_err();
        assert_eq!(e.to_string(), "`properties.order_id`: required but missing");
    }

    #[test]
    fn loose_integers_are_accepted_but_fractions_are_not() {
        let ok = record(
            &bundle(),
            0,
            json!({"product_id": "p", "quantity": 2.0})
                .as_object()
                .unwrap(),
            "p",
        )
        .unwrap();
        let Value::Record(r) = ok else { panic!() };
        assert_eq!(r.fields[2], Value::Int(2));
        assert!(
            record(
                &bundle(),
                0,
                json!({"product_id": "p", "quantity": 2.5})
                    .as_object()
                    .unwrap(),
                "p"
            )
            .is_err()
        );
    }
}
