//! Typed values from JSON: event properties and profile traits checked
//! against the bundle's schemas.
//!
//! The checker has promised each flow that `event.total` is money and
//! `event.order_id` a string; this is where the runtime keeps that promise.
//! A property that does not fit its type is dropped, never the call: it is
//! read as if it were absent (its default, else `none` when optional, else
//! the empty value of its type: see [`empty`]), and a [`Dropped`] says what
//! was dropped and why, so the engine can record it. A flow never sees a
//! value its types do not allow. Properties the schema does not name are
//! ignored.
//!
//! What stores send is read the way Segment's own pipeline reads it: a
//! `string` property (an `order_id`, a `product_id`) takes a JSON number as
//! its text, and amounts, decimals and percents take numeric strings
//! (`"150.00"`).

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

/// A property or trait left out of a call that was applied all the same.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropped {
    /// Where in the call: `properties.products[0].price`, `traits.firstName`.
    pub path: String,
    /// What was wrong there.
    pub reason: String,
    /// What the flow sees instead; `None` when nothing took its place (a
    /// trait left as it was, a list item left out).
    pub used: Option<Value>,
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

#[cfg(feature = "oracle")]
/// Decodes a JSON object as a record of `schema`: every field with its
/// type, else as [`absent`] says; what had to be dropped is added to
/// `dropped`, in path order.
pub fn record(
    bundle: &Bundle,
    schema: u32,
    obj: &Map<String, Json>,
    path: &str,
    dropped: &mut Vec<Dropped>,
) -> Value {
    let start = dropped.len();
    let v = record_at(bundle, schema, obj, &Path::Root(path), 0, dropped);
    sort_dropped(dropped.get_mut(start..).unwrap_or_default());
    v
}

/// Both decoders give what they dropped in this order, so they agree
/// whatever order the sender wrote the keys in.
pub(crate) fn sort_dropped(dropped: &mut [Dropped]) {
    dropped.sort_by(|a, b| a.path.cmp(&b.path));
}

fn record_at(
    bundle: &Bundle,
    schema: u32,
    obj: &Map<String, Json>,
    path: &Path,
    depth: usize,
    dropped: &mut Vec<Dropped>,
) -> Value {
    let Some(s) = bundle.schemas.get(schema as usize) else {
        dropped.push(Dropped {
            path: path.render(),
            reason: format!("unknown schema #{schema}"),
            used: Some(Value::None),
        });
        return Value::None;
    };
    let mut fields = Vec::with_capacity(s.fields.len());
    for f in &s.fields {
        let here = Path::Field(path, &f.name);
        let given = obj.get(&f.name).filter(|j| !j.is_null());
        let fault = match given.map(|j| value_at(bundle, &f.ty, j, &here, depth + 1, dropped)) {
            Some(Ok(v)) => {
                fields.push(v);
                continue;
            }
            Some(Err(reason)) => reason,
            None => match missing(f) {
                Ok(v) => {
                    fields.push(v);
                    continue;
                }
                Err(reason) => reason,
            },
        };
        let used = absent(bundle, f);
        dropped.push(Dropped {
            path: here.render(),
            reason: fault,
            used: Some(used.clone()),
        });
        fields.push(used);
    }
    Value::Record(Arc::new(Record { schema, fields }))
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

/// What a field that is missing or dropped holds: its default, else `none`
/// when optional, else the empty value of its type.
pub fn absent(bundle: &Bundle, f: &FieldSchema) -> Value {
    missing(f).unwrap_or_else(|_| empty(bundle, &f.ty))
}

/// The empty value of a type, for a required field the data does not give
/// (or gives wrongly): `""`, `0`, `$0`, `0%`, `false`, `0s`, `[]`, a record
/// of its fields' own [`absent`] values. Types without an empty value (an
/// instant, a date, a time of day, a zone, an enum) are `none`: a flow
/// that uses such a field stops there with a run-time error, recorded
/// against the instance, rather than act on an invented value.
pub fn empty(bundle: &Bundle, ty: &Type) -> Value {
    empty_at(bundle, ty, 0)
}

fn empty_at(bundle: &Bundle, ty: &Type, depth: usize) -> Value {
    match ty {
        Type::String => Value::str(""),
        Type::Int => Value::Int(0),
        Type::Decimal => Value::Decimal(Decimal::ZERO),
        Type::Money => Value::Money(Decimal::ZERO),
        Type::Percent => Value::Percent(Decimal::ZERO),
        Type::Bool => Value::Bool(false),
        Type::Duration => Value::Duration(0),
        Type::List(_) => Value::List(Vec::new().into()),
        Type::Record(schema) if depth < MAX_DEPTH => match bundle.schemas.get(*schema as usize) {
            Some(s) => Value::Record(Arc::new(Record {
                schema: *schema,
                fields: s
                    .fields
                    .iter()
                    .map(|f| missing(f).unwrap_or_else(|_| empty_at(bundle, &f.ty, depth + 1)))
                    .collect(),
            })),
            None => Value::None,
        },
        _ => Value::None,
    }
}

/// Decodes one JSON value as `ty`, strictly: anything that would be
/// dropped is an error (for expectations written in tests, which must say
/// exactly what they mean).
pub fn value(bundle: &Bundle, ty: &Type, json: &Json, path: &str) -> Result<Value, DecodeError> {
    let mut dropped = Vec::new();
    let v = value_at(bundle, ty, json, &Path::Root(path), 0, &mut dropped).map_err(|reason| {
        DecodeError {
            path: path.to_string(),
            reason,
        }
    })?;
    match dropped.into_iter().next() {
        Some(d) => Err(DecodeError {
            path: d.path,
            reason: d.reason,
        }),
        None => Ok(v),
    }
}

#[cfg(feature = "oracle")]
/// The profile fields an identify call's traits give, in schema order,
/// read as Segment's reserved traits are: a field's own name first, else
/// the camelCase form Segment's spec uses (`firstName` for `first_name`,
/// `createdAt` for `created_at`), else inside `address` (`address.country`
/// for `country`, `address.postalCode` for `postal_code`). A trait that
/// does not fit its type is dropped (the profile keeps what it had).
pub fn traits(
    bundle: &Bundle,
    given: &Map<String, Json>,
    dropped: &mut Vec<Dropped>,
) -> Vec<(u16, Value)> {
    let fields = bundle
        .schemas
        .get(bundle.profile as usize)
        .map(|s| s.fields.as_slice())
        .unwrap_or_default();
    // Per field: the value chosen, where it came from, and whether by its own name.
    let mut chosen: Vec<Option<(&Json, String, bool)>> = vec![None; fields.len()];
    let find = |name: &str| fields.iter().position(|f| f.name == name);
    // `find` gives positions in `fields`, and `chosen` has one slot each.
    for (key, json) in given {
        if let Some(slot) = find(key).and_then(|i| chosen.get_mut(i)) {
            *slot = Some((json, format!("traits.{key}"), true));
            continue;
        }
        let mut alias = |i: usize, path: String, json| {
            if let Some(slot) = chosen.get_mut(i)
                && !slot.as_ref().is_some_and(|c| c.2)
            {
                *slot = Some((json, path, false));
            }
        };
        if key == "address"
            && let Json::Object(address) = json
        {
            for (part, json) in address {
                if let Some(i) = snake_case(part)
                    .and_then(|n| find(&n))
                    .or_else(|| find(part))
                {
                    alias(i, format!("traits.address.{part}"), json);
                }
            }
        } else if let Some(i) = snake_case(key).and_then(|n| find(&n)) {
            alias(i, format!("traits.{key}"), json);
        }
    }
    let start = dropped.len();
    let mut out = Vec::new();
    for (i, (c, field)) in chosen.into_iter().zip(fields).enumerate() {
        let Some((json, path, _)) = c else { continue };
        let here = Path::Root(&path);
        match value_at(bundle, &field.ty, json, &here, 0, dropped) {
            Ok(v) => out.push((i as u16, v)),
            Err(reason) => dropped.push(Dropped {
                path,
                reason,
                used: None,
            }),
        }
    }
    sort_dropped(dropped.get_mut(start..).unwrap_or_default());
    out
}

/// The snake_case of a camelCase key (`firstName` is `first_name`); `None`
/// when the key has no capital to split at.
pub(crate) fn snake_case(key: &str) -> Option<String> {
    if !key.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Decodes `json` as `ty`; `Err` is why the value itself does not fit (the
/// caller drops it). What is dropped inside it (a field of a record, an
/// item of a list) goes to `dropped`.
fn value_at(
    bundle: &Bundle,
    ty: &Type,
    json: &Json,
    path: &Path,
    depth: usize,
    dropped: &mut Vec<Dropped>,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    match (ty, json) {
        (Type::Optional(_), Json::Null) => Ok(Value::None),
        (Type::Optional(inner), _) => value_at(bundle, inner, json, path, depth, dropped),
        (Type::List(item), Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, j) in items.iter().enumerate() {
                let here = Path::Index(path, i);
                match value_at(bundle, item, j, &here, depth + 1, dropped) {
                    Ok(v) => out.push(v),
                    Err(reason) => dropped.push(Dropped {
                        path: here.render(),
                        reason,
                        used: None,
                    }),
                }
            }
            Ok(Value::List(out.into()))
        }
        (Type::Record(schema), Json::Object(obj)) => {
            Ok(record_at(bundle, *schema, obj, path, depth, dropped))
        }
        _ => scalar(bundle, ty, Shape::of(json)),
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
        && !matches!(
            ty,
            Type::Decimal | Type::Money | Type::Percent | Type::String
        )
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
        // Tag managers send amounts as text: read as the number written.
        Shape::Str(s) => numeric(s).ok_or_else(|| wrong(want)),
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
            // Tag managers send counts as text too (`"quantity": "2"`).
            Shape::Str(t) => match numeric(t) {
                Some(d) if d.fract().is_zero() => {
                    Value::Int(i64::try_from(d).map_err(|_| wrong("an integer in range"))?)
                }
                _ => return Err(wrong("an integer")),
            },
            _ => return Err(wrong("an integer")),
        },
        Type::Decimal => Value::Decimal(num("a number")?),
        Type::Money => Value::Money(num("an amount (a number)")?),
        Type::Percent => Value::Percent(num("a percentage")?),
        Type::String => match json {
            // An id sent as a number keeps its text: as written when the
            // one-pass decoder has it, else the number's shortest form.
            Shape::Digits(t) => Value::Str(Arc::from(t)),
            Shape::Number(n) => Value::Str(Arc::from(n.to_string())),
            _ => Value::Str(Arc::from(text("a string")?)),
        },
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
            // Segment's libraries send a birthday as a whole timestamp
            // (`1990-05-16T00:00:00.000Z`): its date is the one written.
            let day = match s.split_once('T') {
                Some((day, _)) if parse_time(s).is_some() => day,
                _ => s,
            };
            let d = NaiveDate::parse_from_str(day, "%Y-%m-%d")
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

/// A numeric string (`"150.00"`, `" -3.5 "`) as the decimal the same
/// number written as JSON would be; `None` unless the trimmed text is a
/// JSON number a decimal holds.
fn numeric(s: &str) -> Option<Decimal> {
    let t = s.trim();
    if !t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    serde_json::from_str::<serde_json::Number>(t).ok()?;
    digits(t)
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
        let written = self.bytes.get(..self.len).unwrap_or_default();
        std::str::from_utf8(written).unwrap_or_default()
    }
}

impl std::fmt::Write for NumberText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let Some(free) = self.bytes.get_mut(self.len..end) else {
            return Err(std::fmt::Error);
        };
        free.copy_from_slice(s.as_bytes());
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

    fn decode(j: Json) -> (Value, Vec<Dropped>) {
        let mut dropped = Vec::new();
        let v = record(
            &bundle(),
            1,
            j.as_object().unwrap(),
            "properties",
            &mut dropped,
        );
        (v, dropped)
    }

    fn fields(v: &Value) -> &[Value] {
        let Value::Record(r) = v else {
            panic!("not a record: {v:?}")
        };
        &r.fields
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
        let (v, dropped) =
            decode(json!({"order_id": "o1", "products": [{"product_id": "p1", "price": 12.5}]}));
        assert!(dropped.is_empty(), "{dropped:?}");
        let r = fields(&v);
        assert_eq!(r[0], Value::str("o1"));
        assert_eq!(r[1], Value::None);
        let Value::List(items) = &r[2] else { panic!() };
        let p = fields(&items[0]);
        assert_eq!(p[1], Value::Money(Decimal::new(125, 1)));
        assert_eq!(p[2], Value::Int(1));
    }

    #[test]
    fn numeric_ids_keep_their_text() {
        let (v, dropped) = decode(json!({"order_id": 4500123, "products": [{"product_id": 77}]}));
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!(fields(&v)[0], Value::str("4500123"));
        let Value::List(items) = &fields(&v)[2] else {
            panic!()
        };
        assert_eq!(fields(&items[0])[0], Value::str("77"));
        // The one-pass decoder hands over the digits as written.
        let b = bundle();
        assert_eq!(
            scalar(&b, &Type::String, Shape::Digits("4.50")),
            Ok(Value::str("4.50"))
        );
    }

    #[test]
    fn amounts_take_numeric_strings() {
        let b = bundle();
        for (text, want) in [("150.00", "150.0"), (" 12.5 ", "12.5"), ("-3", "-3")] {
            let got = scalar(&b, &Type::Money, Shape::Str(text)).unwrap();
            assert_eq!(
                got,
                Value::Money(Decimal::from_str(want).unwrap()),
                "{text}"
            );
        }
        // The same value as the number written as JSON.
        assert_eq!(
            scalar(&b, &Type::Money, Shape::Str("150.00")),
            scalar(&b, &Type::Money, Shape::Digits("150.00"))
        );
        assert_eq!(
            scalar(&b, &Type::Percent, Shape::Str("7.5")),
            Ok(Value::Percent(Decimal::new(75, 1)))
        );
        for text in ["ten", "", "1e400", "0x10", "$5", "1,5", "NaN"] {
            let e = scalar(&b, &Type::Money, Shape::Str(text)).unwrap_err();
            assert!(e.starts_with("expected an amount"), "{text}: {e}");
        }
    }

    #[test]
    fn wrong_types_are_dropped_with_their_path() {
        let (v, dropped) = decode(json!({"order_id": true}));
        assert_eq!(fields(&v)[0], Value::str(""), "required: the empty string");
        assert_eq!(
            dropped,
            [Dropped {
                path: "properties.order_id".into(),
                reason: "expected a string, found the boolean true".into(),
                used: Some(Value::str("")),
            }]
        );
        let (v, dropped) = decode(json!({"order_id": "o", "products": [
            {"product_id": "p", "price": "x"}, 5, {"product_id": "q"}
        ]}));
        let Value::List(items) = &fields(&v)[2] else {
            panic!()
        };
        assert_eq!(items.len(), 2, "the item that is not a product is left out");
        assert_eq!(
            fields(&items[0])[1],
            Value::Money(Decimal::ZERO),
            "price: its default"
        );
        let paths: Vec<_> = dropped
            .iter()
            .map(|d| (d.path.as_str(), d.used.clone()))
            .collect();
        assert_eq!(
            paths,
            [
                (
                    "properties.products[0].price",
                    Some(Value::Money(Decimal::ZERO))
                ),
                ("properties.products[1]", None),
            ]
        );
        let (v, dropped) = decode(json!({"order_id": "o", "at": "yesterday"}));
        assert_eq!(fields(&v)[1], Value::None, "optional: none");
        assert!(dropped[0].reason.contains("RFC 3339"), "{dropped:?}");
    }

    #[test]
    fn required_fields_missing_are_empty() {
        let (v, dropped) = decode(json!({}));
        assert_eq!(fields(&v)[0], Value::str(""));
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].path, "properties.order_id");
        assert_eq!(dropped[0].reason, "required but missing");
        let b = bundle();
        assert_eq!(empty(&b, &Type::Money), Value::Money(Decimal::ZERO));
        assert_eq!(scalar(&b, &Type::Int, Shape::Str(" 2 ")), Ok(Value::Int(2)));
        assert_eq!(scalar(&b, &Type::Int, Shape::Str("2.0")), Ok(Value::Int(2)));
        assert!(scalar(&b, &Type::Int, Shape::Str("2.5")).is_err());
        assert!(scalar(&b, &Type::Int, Shape::Str("two")).is_err());
        assert_eq!(empty(&b, &Type::Time), Value::None);
        assert_eq!(
            empty(&b, &Type::Record(0)),
            Value::Record(Arc::new(Record {
                schema: 0,
                fields: vec![Value::str(""), Value::Money(Decimal::ZERO), Value::Int(1)],
            }))
        );
    }

    #[test]
    fn strict_values_refuse_what_would_be_dropped() {
        let given = json!({"product_id": "p", "price": "x"});
        let e = value(&bundle(), &Type::Record(0), &given, "p").unwrap_err();
        assert_eq!(e.path, "p.price");
    }

    #[test]
    fn reserved_traits_map_onto_profile_fields() {
        let mut b = bundle();
        b.schemas.push(Schema {
            name: "profile".into(),
            kind: SchemaKind::Profile,
            wire: None,
            fields: ["first_name", "country", "postal_code", "created_at"]
                .iter()
                .map(|n| FieldSchema {
                    name: n.to_string(),
                    ty: Type::Optional(Box::new(Type::String)),
                    default: None,
                })
                .collect(),
        });
        b.profile = 2;
        let given = json!({
            "firstName": "Ana", "first_name": "Anna", "createdAt": 5,
            "address": {"country": "DE", "postalCode": 10115}, "lastName": "ignored"
        });
        let mut dropped = Vec::new();
        let got = traits(&b, given.as_object().unwrap(), &mut dropped);
        assert_eq!(
            got,
            [
                (0, Value::str("Anna")),
                (1, Value::str("DE")),
                (2, Value::str("10115")),
                (3, Value::str("5")),
            ],
            "the field's own name wins over the camelCase one"
        );
        assert!(dropped.is_empty());
        assert_eq!(snake_case("postalCode").as_deref(), Some("postal_code"));
        assert_eq!(snake_case("email"), None);
    }

    #[test]
    fn loose_integers_are_accepted_but_fractions_are_not() {
        let b = bundle();
        let mut dropped = Vec::new();
        let ok = record(
            &b,
            0,
            json!({"product_id": "p", "quantity": 2.0})
                .as_object()
                .unwrap(),
            "p",
            &mut dropped,
        );
        assert_eq!(fields(&ok)[2], Value::Int(2));
        assert!(dropped.is_empty());
        let half = record(
            &b,
            0,
            json!({"product_id": "p", "quantity": 2.5})
                .as_object()
                .unwrap(),
            "p",
            &mut dropped,
        );
        assert_eq!(fields(&half)[2], Value::Int(1), "dropped to its default");
        assert_eq!(dropped[0].path, "p.quantity");
    }

    #[test]
    fn a_date_is_read_from_a_date_or_from_a_whole_timestamp() {
        let b = bundle();
        let day = |s| scalar(&b, &Type::Date, Shape::Str(s));
        // 1990-05-16 is day 7440 after 1970-01-01.
        assert_eq!(day("1990-05-16"), Ok(Value::Date(7440)));
        assert_eq!(day("1990-05-16T00:00:00.000Z"), Ok(Value::Date(7440)));
        assert_eq!(day("1990-05-16T23:30:00-07:00"), Ok(Value::Date(7440)));
        assert!(day("1990-05-16T99:00").is_err());
        assert!(day("16/05/1990").is_err());
    }
}
