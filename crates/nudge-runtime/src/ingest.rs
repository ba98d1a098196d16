//! The one decoder of Segment call lines: what every host (replay, serve,
//! the test runner) turns a line into before the engine sees it.
//!
//! A serde [`DeserializeSeed`] driven by the bundle's schemas reads the
//! line once and builds the typed record directly: properties the schema
//! does not name are skipped without being built, strings are borrowed from
//! the line, and no map is ever made. The envelope goes through
//! `segment::Envelope::check` and scalars through `decode::scalar`; the
//! whole line is read before anything is judged, so broken JSON anywhere
//! wins over everything else; what was dropped is listed in path order
//! whatever the order of the keys; an envelope key given twice refuses the
//! call, a property given twice counts with its last value. Only the
//! envelope refuses a call: a property that does not fit is dropped and
//! reported (see [`crate::decode`]). Lines whose properties or traits come
//! before the call's `type` or `event` are read a second time, knowing both.
//!
//! With the `oracle` feature the crate also has a second, independent
//! reader, `segment::parse_line`, which builds a `serde_json::Value` tree
//! that `Engine::apply` then decodes. The tests hold this decoder to it:
//! the same calls, the same records, the same reasons, but for numbers kept
//! as text (ids), which here keep their digits as written where the tree
//! has only the parsed number, and numbers past 15 significant digits,
//! which the tree reads through a float.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use nudge_bytecode::{Bundle, FieldSchema, Record, Type, Value};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::decode::{self, Dropped, MAX_DEPTH, Shape};
use crate::dedupe::fingerprint;
use crate::engine::{Applied, Engine, Sink};
use crate::identity::Names;
use crate::segment::{
    self, Checked, ContextText, Envelope, Field, GROUP_EVENT, Kind, PAGE_EVENT, Rejection,
    SCREEN_EVENT,
};

/// A call decoded against the schemas, ready for [`Engine::apply_typed`].
#[derive(Clone, Debug, PartialEq)]
pub struct TypedCall<'a> {
    /// When the call happened, in milliseconds since the epoch.
    pub at: i64,
    /// The identifiers it carries.
    pub names: Names<'a>,
    /// The fingerprint of the sender's unique id for the call
    /// ([`crate::dedupe::fingerprint`]), used to drop repeats. A replay
    /// works it out on its decoding thread, beside the engine's.
    pub message_id: Option<u128>,
    /// For track and page calls, the event's schema and its record.
    pub event: Option<(u32, Value)>,
    /// For identify calls, the profile fields given, in schema order.
    pub traits: Vec<(u16, Value)>,
}

/// Decodes call lines against one release's schemas; see the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct Decoder<'e> {
    bundle: &'e Bundle,
    by_wire: &'e HashMap<String, u32>,
}

/// What the engine notes about a call besides applying it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Notes<'a> {
    /// The wire name of the event the call amounts to, when it has one.
    pub event: Option<&'a str>,
    /// What was dropped from the call's properties or traits, in path order.
    pub dropped: Vec<Dropped>,
    /// What kind of call it was, for the counters.
    pub kind: Note,
    /// `context.timezone`: fills the profile's `timezone` when it has none.
    pub timezone: Option<&'a str>,
    /// `context.locale`: fills the profile's `locale` when it has none.
    pub locale: Option<&'a str>,
    /// `context.device.token`: the profile's `device_token`, replacing an
    /// older one (a device's token changes when the app is reinstalled).
    pub device_token: Option<&'a str>,
}

/// Calls counted apart from the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Note {
    /// Anything else.
    #[default]
    Plain,
    /// A track of an event the project does not declare: accepted, counted,
    /// and otherwise only a sign of life from the customer.
    Undeclared,
    /// A `group` call.
    Group,
}

/// What became of one line.
// Made once per line and consumed at once: boxing the call would cost an
// allocation per line and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A call to apply.
    Call(Parts<'a>),
    /// Not a usable call (a dead letter): broken JSON, or an envelope
    /// without a type, a customer or a time.
    Bad(Rejection),
}

/// A decoded call, owning what [`TypedCall`] borrows.
#[derive(Debug)]
pub struct Parts<'a> {
    checked: Checked<'a>,
    email: Option<Cow<'a, str>>,
    event: Option<(u32, Value)>,
    traits: Vec<(u16, Value)>,
    dropped: Vec<Dropped>,
    note: Note,
    /// The fingerprint of the call's message id, worked out where it was
    /// decoded.
    message_id: Option<u128>,
    /// The call's time in milliseconds, worked out there too.
    at: i64,
}

impl<'a> Parts<'a> {
    /// The call's time, in milliseconds since the epoch.
    pub fn at(&self) -> i64 {
        self.at
    }

    /// What was dropped from the call, in path order.
    pub fn dropped(&self) -> &[Dropped] {
        &self.dropped
    }

    /// The sender's unique id for the call, as given.
    pub fn message_id(&self) -> Option<&str> {
        self.checked.message_id.as_deref()
    }

    /// The identities the call names.
    pub fn names(&self) -> Names<'_> {
        names_of(&self.checked, &self.email)
    }

    /// The call in the form the engine applies, with what the engine notes about it.
    pub fn split(&mut self) -> (TypedCall<'_>, Notes<'_>) {
        let notes = Notes {
            event: match &self.checked.kind {
                Kind::Track { event } => Some(&**event),
                Kind::Page { .. } => Some(PAGE_EVENT),
                Kind::Screen { .. } => Some(SCREEN_EVENT),
                Kind::Group { .. } => Some(GROUP_EVENT),
                _ => None,
            },
            dropped: std::mem::take(&mut self.dropped),
            kind: self.note,
            timezone: self.checked.context.timezone.as_deref(),
            locale: self.checked.context.locale.as_deref(),
            device_token: self.checked.context.device_token.as_deref(),
        };
        let c = &self.checked;
        let call = TypedCall {
            at: self.at,
            names: names_of(c, &self.email),
            message_id: self.message_id,
            event: self.event.take(),
            traits: std::mem::take(&mut self.traits),
        };
        (call, notes)
    }

    /// The call in the form the engine applies.
    pub fn typed(&mut self) -> TypedCall<'_> {
        let c = &self.checked;
        TypedCall {
            at: self.at,
            names: names_of(c, &self.email),
            message_id: self.message_id,
            event: self.event.take(),
            traits: std::mem::take(&mut self.traits),
        }
    }
}

/// The identities a checked call names, with the e-mail address its traits give.
fn names_of<'s>(c: &'s Checked<'_>, email: &'s Option<Cow<'_, str>>) -> Names<'s> {
    Names {
        user_id: c.user_id.as_deref(),
        anonymous_id: c.anonymous_id.as_deref(),
        previous_id: match &c.kind {
            Kind::Alias { previous_id } => Some(&**previous_id),
            _ => None,
        },
        email: email.as_deref(),
    }
}

/// Applies one line (without its line break) to the engine, moving the
/// clock to the call's time first; `Err` is the reason it was refused.
pub fn apply_line<S: Sink>(engine: &mut Engine<'_, S>, text: &str) -> Result<(), String> {
    let mut decoded = engine.decoder().decode(text);
    apply_decoded(engine, &mut decoded)
}

/// [`apply_line`] for a line decoded already (by [`Schemas::decoder`], on
/// another thread): what was decoded is taken out of `decoded`.
pub fn apply_decoded<S: Sink>(
    engine: &mut Engine<'_, S>,
    decoded: &mut Decoded<'_>,
) -> Result<(), String> {
    match decoded {
        Decoded::Call(parts) => {
            engine.advance_before(parts.at());
            let (call, notes) = parts.split();
            engine
                .apply_noted(call, notes)
                .map(drop)
                .map_err(|r| r.reason)
        }
        Decoded::Bad(r) => Err(std::mem::take(&mut r.reason)),
    }
}

/// Applies one line at the engine's clock as it stands, for hosts whose
/// calls reach the engine after their own time (a test's late arrival).
pub fn apply_line_now<S: Sink>(
    engine: &mut Engine<'_, S>,
    text: &str,
) -> Result<Applied, Rejection> {
    match engine.decoder().decode(text) {
        Decoded::Call(mut parts) => {
            let (call, notes) = parts.split();
            engine.apply_noted(call, notes)
        }
        Decoded::Bad(r) => Err(r),
    }
}

/// Checks a line as the decoder reads it before any schema matters: JSON,
/// an object, each envelope key once, and an envelope that names a type, a
/// customer and a time. What a single-call endpoint refuses at once.
pub fn check_line(line: &str) -> Result<(), Rejection> {
    static NONE: std::sync::LazyLock<(Bundle, HashMap<String, u32>)> =
        std::sync::LazyLock::new(Default::default);
    let (bundle, by_wire) = &*NONE;
    Decoder::new(bundle, by_wire).envelope(line).map(drop)
}

/// One release's schemas held apart from the engine, for a decoder that
/// runs while the engine is borrowed to apply: a replay decodes the next
/// lines on another thread (no release is deployed during a replay).
#[derive(Clone, Debug)]
pub struct Schemas<'e> {
    bundle: &'e Bundle,
    by_wire: HashMap<String, u32>,
}

impl<'e> Schemas<'e> {
    /// The schemas of `bundle`, with event schemas found by wire name in `by_wire`.
    pub fn new(bundle: &'e Bundle, by_wire: HashMap<String, u32>) -> Self {
        Schemas { bundle, by_wire }
    }

    /// A decoder against these schemas.
    pub fn decoder(&self) -> Decoder<'_> {
        Decoder::new(self.bundle, &self.by_wire)
    }
}

impl<'e> Decoder<'e> {
    /// A decoder for `bundle`'s schemas, with event schemas found by wire name in `by_wire`.
    pub fn new(bundle: &'e Bundle, by_wire: &'e HashMap<String, u32>) -> Self {
        Decoder { bundle, by_wire }
    }

    /// Decodes one line (without its line break).
    pub fn decode<'a>(&self, line: &'a str) -> Decoded<'a> {
        let (checked, body) = match self.envelope(line) {
            Ok(read) => read,
            Err(r) => return Decoded::Bad(r),
        };
        let Lowered {
            event,
            traits,
            email,
            mut dropped,
            note,
        } = self.finish(&checked, body);
        decode::sort_dropped(&mut dropped);
        let message_id = checked.message_id.as_deref().map(fingerprint);
        let at = checked.timestamp.timestamp_millis();
        Decoded::Call(Parts {
            checked,
            email,
            event,
            traits,
            dropped,
            note,
            message_id,
            at,
        })
    }

    /// Reads `line` and checks its envelope. Properties or traits that came
    /// before the `type` or `event` saying how to read them are read again
    /// in a second pass that knows both.
    fn envelope<'a>(&self, line: &'a str) -> Result<(Checked<'a>, Body<'a>), Rejection> {
        let first = self.top(line, None);
        let top = match first {
            Ok(Top::Fallback(known)) => self.top(line, Some(known)),
            other => other,
        };
        let body = match top {
            Ok(Top::Object(body)) => body,
            // A second pass knows the call's type and event and reads
            // every body by them (without a type, for its shape only), so
            // it does not come back here; refused rather than trusted.
            Ok(Top::Fallback(_)) => {
                return Err(Rejection::new(
                    "the call's `type` and `event` could not be read before its body",
                ));
            }
            Ok(Top::Repeated(key)) => return Err(segment::repeated(key)),
            Ok(Top::NotObject(kind)) => return Err(segment::not_an_object(kind)),
            Err(e) => return Err(malformed(line, &e)),
        };
        let checked = body.envelope.check()?;
        Ok((checked, body))
    }

    /// One pass over `line`; `known` is what an earlier pass found of the
    /// call's `type` and `event`.
    fn top<'a>(&self, line: &'a str, known: Option<Known<'a>>) -> serde_json::Result<Top<'a>> {
        let mut de = serde_json::Deserializer::from_str(line);
        let top = de.deserialize_any(TopVisitor { dec: *self, known })?;
        de.end()?;
        Ok(top)
    }

    /// The typed event or traits of a call whose envelope passed, with
    /// what did not fit its schema dropped.
    fn finish<'a>(&self, checked: &Checked<'a>, body: Body<'a>) -> Lowered<'a> {
        let (wire, named) = match &checked.kind {
            Kind::Track { event } => (&**event, None),
            Kind::Page { name } => (PAGE_EVENT, name.as_deref().map(|n| ("name", n))),
            Kind::Screen { name } => (SCREEN_EVENT, name.as_deref().map(|n| ("name", n))),
            Kind::Group { group_id } => (GROUP_EVENT, group_id.as_deref().map(|g| ("group_id", g))),
            Kind::Identify => {
                return match body.content {
                    Content::Traits {
                        fields,
                        email,
                        aliases,
                    } => {
                        let (traits, dropped) = self.traits(fields, aliases);
                        Lowered {
                            traits,
                            email,
                            dropped,
                            ..Lowered::default()
                        }
                    }
                    // No traits given (or null): nothing to set.
                    _ => Lowered::default(),
                };
            }
            Kind::Alias { .. } => return Lowered::default(),
        };
        let group = matches!(checked.kind, Kind::Group { .. });
        let Some(&schema) = self.by_wire.get(wire) else {
            return Lowered {
                note: if group { Note::Group } else { Note::Undeclared },
                ..Lowered::default()
            };
        };
        let mut given = match body.content {
            Content::Record { fields } => fields,
            // No properties (or null): every field from its default.
            _ => Fields::new(self.fields(schema).map_or(0, <[_]>::len)),
        };
        // A page's or screen's `name` (a group's `groupId`) fills the
        // property of that name when the properties do not have it (not
        // even as null).
        if let Some((key, text)) = named
            && let Some(fields) = self.fields(schema)
            && let Some((i, field)) = fields.iter().enumerate().find(|(_, f)| f.name == key)
            && !given.has(i)
        {
            let typed = decode::scalar(self.bundle, &field.ty, Shape::Str(text));
            given.set(i, Typed::of(typed));
        }
        let typed = self.record(schema, given);
        Lowered {
            event: typed.value.ok().map(|v| (schema, v)),
            dropped: render(typed.inner, "properties"),
            note: if group { Note::Group } else { Note::Plain },
            ..Lowered::default()
        }
    }

    fn fields(&self, schema: u32) -> Option<&'e [FieldSchema]> {
        self.bundle
            .schemas
            .get(schema as usize)
            .map(|s| s.fields.as_slice())
    }

    /// Builds a record from the fields given: a value that does not fit,
    /// or a required field not given, is dropped (see [`decode::absent`]).
    fn record(&self, schema: u32, given: Fields) -> Typed {
        let Some(fields) = self.fields(schema) else {
            return Typed::of(Err(format!("unknown schema #{schema}")));
        };
        let Fields {
            mut values,
            given,
            bad,
            inner,
        } = given;
        // Every field number below is one of `fields`': `Fields` has a
        // slot per field of the schema, and only those are set.
        let mut dropped = Vec::new();
        let at = |field: &FieldSchema| Step::Field(field.name.clone());
        for (i, nested) in inner {
            if let Some(field) = fields.get(i) {
                dropped.extend(nested.into_iter().map(|m| m.at(at(field))));
            }
        }
        let mut drop = |field: &FieldSchema, reason: String, value: &mut Value| {
            let used = decode::absent(self.bundle, field);
            *value = used.clone();
            dropped.push(Mismatch::new(reason).used(Some(used)).at(at(field)));
        };
        for (i, reason) in bad {
            if let (Some(field), Some(value)) = (fields.get(i), values.get_mut(i)) {
                drop(field, reason, value);
            }
        }
        for i in given.missing(fields.len()) {
            let (Some(field), Some(value)) = (fields.get(i), values.get_mut(i)) else {
                continue;
            };
            match decode::missing(field) {
                Ok(v) => *value = v,
                Err(reason) => drop(field, reason, value),
            }
        }
        Typed {
            value: Ok(Value::Record(Arc::new(Record {
                schema,
                fields: values,
            }))),
            inner: dropped,
        }
    }

    /// The profile fields an identify call gives, in schema order, and
    /// what was dropped; a trait that does not fit is left unchanged.
    fn traits(
        &self,
        given: Fields,
        aliases: Vec<(usize, String)>,
    ) -> (Vec<(u16, Value)>, Vec<Dropped>) {
        let fields = self.profile_fields();
        // Where each trait came from: the key as sent.
        let key = |i: usize| match aliases.iter().rev().find(|(j, _)| *j == i) {
            Some((_, k)) => k.clone(),
            None => fields
                .get(i)
                .map_or_else(|| format!("#{i}"), |f| f.name.clone()),
        };
        let mut dropped = Vec::new();
        for (i, nested) in given.inner {
            dropped.extend(nested.into_iter().map(|m| m.at(Step::Field(key(i)))));
        }
        for (i, reason) in &given.bad {
            dropped.push(Mismatch::new(reason.clone()).at(Step::Field(key(*i))));
        }
        let traits = given
            .values
            .into_iter()
            .enumerate()
            .filter(|(i, _)| given.given.has(*i) && !given.bad.iter().any(|(j, _)| j == i))
            .map(|(i, v)| (i as u16, v))
            .collect();
        (traits, render(dropped, "traits"))
    }

    fn profile_fields(&self) -> &'e [FieldSchema] {
        self.fields(self.bundle.profile).unwrap_or_default()
    }

    /// The record schema for a track or page call's properties, when the
    /// envelope read so far says which; `None` to skip them.
    fn properties_plan(&self, env: &Envelope<'_>) -> Plan {
        match &env.call_type {
            Field::Str(t) if t == "track" => match &env.event {
                Field::Str(e) => match self.by_wire.get(&**e) {
                    Some(&s) => Plan::Record(s),
                    // Refused as unknown later; only the shape matters.
                    None => Plan::Skip,
                },
                Field::Absent => Plan::Fallback,
                // A bad `event` is refused anyway.
                _ => Plan::Skip,
            },
            Field::Str(t) if t == "page" || t == "screen" => {
                let wire = if t == "page" {
                    PAGE_EVENT
                } else {
                    SCREEN_EVENT
                };
                match self.by_wire.get(wire) {
                    Some(&s) => Plan::Record(s),
                    None => Plan::Skip,
                }
            }
            // Other calls do not read properties at all.
            Field::Str(_) => Plan::Skip,
            Field::Absent => Plan::Fallback,
            // A bad `type` is refused anyway.
            _ => Plan::Skip,
        }
    }

    fn traits_plan(&self, env: &Envelope<'_>) -> Plan {
        match &env.call_type {
            Field::Str(t) if t == "identify" => Plan::Traits,
            // A group's traits are the properties of "Group", when declared.
            Field::Str(t) if t == "group" => match self.by_wire.get(GROUP_EVENT) {
                Some(&s) => Plan::Record(s),
                None => Plan::Skip,
            },
            Field::Absent => Plan::Fallback,
            _ => Plan::Skip,
        }
    }
}

/// How to read a call's properties or traits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// As a record of this schema.
    Record(u32),
    /// As the profile's fields.
    Traits,
    /// For their shape only.
    Skip,
    /// Not yet known: read the line again once `type` and `event` are.
    Fallback,
}

/// What the top-level object held.
// Made once per line and consumed at once: boxing the large variant would
// cost an allocation per line and save nothing.
#[allow(clippy::large_enum_variant)]
enum Top<'a> {
    Object(Body<'a>),
    NotObject(&'static str),
    /// Properties or traits came before the keys that say how to read them.
    Fallback(Known<'a>),
    /// An envelope key given twice: the first such key.
    Repeated(&'static str),
}

/// Why `line` is not JSON, in the words (and at the column) the tree parser
/// uses. Decimals are read as their text, and scanning a number stops at
/// other faults than parsing it does, so the line is parsed again to say
/// why; broken lines are rare.
fn malformed(line: &str, e: &serde_json::Error) -> Rejection {
    match serde_json::from_str::<serde_json::Value>(line) {
        Err(tree) => segment::malformed(&tree),
        Ok(_) => segment::malformed(e),
    }
}

/// The call's `type` and `event`, as a first pass over the line found them.
struct Known<'a> {
    call_type: Field<'a>,
    event: Field<'a>,
}

struct Body<'a> {
    envelope: Envelope<'a>,
    content: Content<'a>,
}

/// The decoded properties or traits.
enum Content<'a> {
    None,
    Record {
        fields: Fields,
    },
    Traits {
        fields: Fields,
        email: Option<Cow<'a, str>>,
        /// Fields given under another key (`firstName`, `address.country`),
        /// with that key; the last for a field counts.
        aliases: Vec<(usize, String)>,
    },
}

/// What a call whose envelope passed carries.
#[derive(Default)]
struct Lowered<'a> {
    event: Option<(u32, Value)>,
    traits: Vec<(u16, Value)>,
    email: Option<Cow<'a, str>>,
    dropped: Vec<Dropped>,
    note: Note,
}

/// What was dropped, with paths from `root`.
fn render(dropped: Vec<Mismatch>, root: &str) -> Vec<Dropped> {
    dropped.into_iter().map(|m| m.render(root)).collect()
}

/// A value decoded as its type (or why the value itself does not fit),
/// with what was dropped inside it (fields of a record, items of a list).
#[derive(Debug)]
struct Typed {
    value: Result<Value, String>,
    inner: Vec<Mismatch>,
}

impl Typed {
    fn of(value: Result<Value, String>) -> Typed {
        Typed {
            value,
            inner: Vec::new(),
        }
    }
}

/// The fields of a record (or the traits) read so far, one place per
/// schema field. A field given twice counts with its last value, fault or not.
#[derive(Debug)]
struct Fields {
    /// The values given that fit; `none` elsewhere until the record is built.
    values: Vec<Value>,
    /// Which fields the data gave, fitting or not.
    given: Bits,
    /// Fields whose value does not fit, by index, with the reason; almost always empty.
    bad: Vec<(usize, String)>,
    /// What was dropped inside fields that fit, by index; almost always empty.
    inner: Vec<(usize, Vec<Mismatch>)>,
}

impl Fields {
    fn new(n: usize) -> Fields {
        Fields {
            values: vec![Value::None; n],
            given: Bits::default(),
            bad: Vec::new(),
            inner: Vec::new(),
        }
    }

    fn set(&mut self, i: usize, typed: Typed) {
        if self.given.has(i) {
            // Given before: the last value counts.
            self.bad.retain(|(j, _)| *j != i);
            self.inner.retain(|(j, _)| *j != i);
        }
        self.given.insert(i);
        if !typed.inner.is_empty() {
            self.inner.push((i, typed.inner));
        }
        // `i` is a field of the schema the slots were made for.
        let Some(value) = self.values.get_mut(i) else {
            return;
        };
        match typed.value {
            Ok(v) => *value = v,
            Err(reason) => {
                *value = Value::None;
                self.bad.push((i, reason));
            }
        }
    }

    /// Whether the data gave field `i`, fitting or not.
    fn has(&self, i: usize) -> bool {
        self.given.has(i)
    }
}

/// A set of field numbers; without allocating up to 64 fields.
#[derive(Debug, Default)]
struct Bits {
    low: u64,
    high: Vec<u64>,
}

impl Bits {
    fn has(&self, i: usize) -> bool {
        match i.checked_sub(64) {
            None => self.low & (1 << i) != 0,
            Some(j) => self
                .high
                .get(j / 64)
                .is_some_and(|w| w & (1 << (j % 64)) != 0),
        }
    }

    fn insert(&mut self, i: usize) {
        match i.checked_sub(64) {
            None => self.low |= 1 << i,
            Some(j) => {
                if self.high.len() <= j / 64 {
                    self.high.resize(j / 64 + 1, 0);
                }
                if let Some(word) = self.high.get_mut(j / 64) {
                    *word |= 1 << (j % 64);
                }
            }
        }
    }

    /// The numbers below `n` not in the set, in order.
    fn missing(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
        // Word by word, so a record with every field given costs one test.
        (0..n.div_ceil(64)).flat_map(move |w| {
            let word = if w == 0 {
                self.low
            } else {
                self.high.get(w - 1).copied().unwrap_or(0)
            };
            let mut gaps = !word;
            std::iter::from_fn(move || {
                let bit = gaps.trailing_zeros() as usize;
                let i = w * 64 + bit;
                if bit == 64 || i >= n {
                    return None;
                }
                gaps &= gaps - 1;
                Some(i)
            })
        })
    }
}

/// A value dropped for not fitting its type, with where it sits, innermost
/// step first, and what took its place; its path is made text only once
/// the call is read.
#[derive(Debug)]
struct Mismatch {
    reason: String,
    steps: Vec<Step>,
    used: Option<Value>,
}

#[derive(Debug)]
enum Step {
    Field(String),
    Index(usize),
}

impl Mismatch {
    fn new(reason: String) -> Mismatch {
        Mismatch {
            reason,
            steps: Vec::new(),
            used: None,
        }
    }

    /// The same, with what took the value's place.
    fn used(mut self, used: Option<Value>) -> Self {
        self.used = used;
        self
    }

    /// The same fault seen one step further out.
    fn at(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// What was dropped, with its path from `root`, as the tree decoder gives it.
    fn render(self, root: &str) -> Dropped {
        let mut path = root.to_string();
        for step in self.steps.iter().rev() {
            match step {
                Step::Field(f) => {
                    path.push('.');
                    path.push_str(f);
                }
                Step::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        Dropped {
            path,
            reason: self.reason,
            used: self.used,
        }
    }
}

/// Reads a map key without copying it when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        // As serde_json's own `Value` reads keys, so errors are the same.
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

/// Reads a value and keeps nothing. It goes through `deserialize_any`,
/// like serde_json's `Value`, not `deserialize_ignored_any`: that one
/// checks less (numbers out of range, nesting depth) and would let through
/// lines the tree path refuses as malformed.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// The top-level value of a line.
struct TopVisitor<'e, 'de> {
    dec: Decoder<'e>,
    /// Set on a second pass: the `type` and `event` the first one found.
    known: Option<Known<'de>>,
}

impl<'de> Visitor<'de> for TopVisitor<'_, 'de> {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Segment call")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::NotObject("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Top<'de>, E> {
        Ok(Top::NotObject("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Top<'de>, E> {
        Ok(Top::NotObject("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Top<'de>, E> {
        Ok(Top::NotObject("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Top<'de>, E> {
        Ok(Top::NotObject("a string"))
    }

    fn visit_unit<E>(self) -> Result<Top<'de>, E> {
        Ok(Top::NotObject("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top<'de>, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Top::NotObject("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let dec = self.dec;
        let mut env = Envelope::default();
        // A second pass reads the body as the call's final `type` and
        // `event` say (the same keys read again below agree with them).
        let second = self.known.is_some();
        if let Some(known) = self.known {
            env.call_type = known.call_type;
            env.event = known.event;
        }
        let mut content = Content::None;
        // Whether properties or traits were read (or skipped): a later
        // `type` or `event` could change how they should have been read.
        let mut seen_body = false;
        let mut fallback = false;
        // The envelope keys read so far, and the first one given twice: the
        // call is refused, but only once the whole line is known to be JSON.
        let (mut seen, mut repeated) = (0u32, None);
        while let Some(key) = map.next_key_seed(Key)? {
            let bit = segment::envelope_bit(&key);
            if seen & bit != 0 && repeated.is_none() {
                repeated = Some(segment::envelope_key(bit));
            }
            seen |= bit;
            if fallback || repeated.is_some() {
                // Only what a second pass needs.
                match &*key {
                    "type" => env.call_type = map.next_value_seed(FieldSeed)?,
                    "event" => env.event = map.next_value_seed(FieldSeed)?,
                    _ => map.next_value_seed(Skip)?,
                }
                continue;
            }
            let slot = match &*key {
                // Known already: the last of each, as a map keeps.
                "type" | "event" if second => {
                    map.next_value_seed(Skip)?;
                    continue;
                }
                "type" | "event" if seen_body => {
                    fallback = true;
                    if &*key == "type" {
                        env.call_type = map.next_value_seed(FieldSeed)?;
                    } else {
                        env.event = map.next_value_seed(FieldSeed)?;
                    }
                    continue;
                }
                "type" => &mut env.call_type,
                "event" => &mut env.event,
                "userId" | "anonymousId" | "previousId" | "groupId" => {
                    let id = map.next_value_seed(IdSeed)?;
                    match &*key {
                        "userId" => env.user_id = id,
                        "anonymousId" => env.anonymous_id = id,
                        "previousId" => env.previous_id = id,
                        _ => env.group_id = id,
                    }
                    continue;
                }
                "context" => {
                    env.context = map.next_value_seed(ContextSeed)?;
                    continue;
                }
                "messageId" => &mut env.message_id,
                "timestamp" => &mut env.timestamp,
                "originalTimestamp" => &mut env.original_timestamp,
                "sentAt" => &mut env.sent_at,
                "receivedAt" => &mut env.received_at,
                "name" => &mut env.name,
                "properties" | "traits" => {
                    let plan = if &*key == "properties" {
                        dec.properties_plan(&env)
                    } else {
                        dec.traits_plan(&env)
                    };
                    // A second pass knows all it will: a body it still
                    // cannot plan has no usable `type` or `event`, and the
                    // envelope refuses the call, so only its shape matters.
                    let plan = if second && plan == Plan::Fallback {
                        Plan::Skip
                    } else {
                        plan
                    };
                    if plan == Plan::Fallback {
                        fallback = true;
                        map.next_value_seed(Skip)?;
                        continue;
                    }
                    seen_body = true;
                    let (shape, got) = map.next_value_seed(BodySeed { dec, plan })?;
                    if plan != Plan::Skip {
                        // Given twice, the last one counts, as in a map.
                        content = got;
                    }
                    if &*key == "properties" {
                        env.properties = shape;
                    } else {
                        env.traits = shape;
                    }
                    continue;
                }
                _ => {
                    map.next_value_seed(Skip)?;
                    continue;
                }
            };
            *slot = map.next_value_seed(FieldSeed)?;
        }
        Ok(if let Some(key) = repeated {
            Top::Repeated(key)
        } else if fallback {
            Top::Fallback(Known {
                call_type: env.call_type,
                event: env.event,
            })
        } else {
            Top::Object(Body {
                envelope: env,
                content,
            })
        })
    }
}

/// An envelope field, as [`Field`].
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Other("a boolean"))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // serde_json's `Value` turns a number it cannot hold into null.
        Ok(serde_json::Number::from_f64(v).map_or(Field::Null, Field::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(s.to_string())))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(Field::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_map(map)?;
        Ok(Field::Object)
    }
}

/// An id (`userId`, `anonymousId`, `previousId`, `groupId`): a number
/// keeps its digits as written, as Segment keeps them.
struct IdSeed;

impl<'de> DeserializeSeed<'de> for IdSeed {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let text = <&'de RawValue>::deserialize(d)?.get();
        if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            if text.parse::<f64>().is_ok_and(f64::is_infinite) {
                // Malformed to the tree parser too.
                return Err(serde::de::Error::custom("number out of range"));
            }
            return Ok(Field::Digits(Cow::Borrowed(text)));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        FieldSeed
            .deserialize(&mut de)
            .map_err(serde::de::Error::custom)
    }
}

/// A call's `context`: only `timezone` and `locale`, when they are
/// strings; anything else in it, or a `context` that is not an object, is
/// read only to find broken JSON.
struct ContextSeed;

impl<'de> DeserializeSeed<'de> for ContextSeed {
    type Value = ContextText<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContextSeed {
    type Value = ContextText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ContextText::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ContextText::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ContextText::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ContextText::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ContextText::default())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(ContextText::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(ContextText::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = ContextText::default();
        while let Some(key) = map.next_key_seed(Key)? {
            let slot = match &*key {
                "timezone" => &mut out.timezone,
                "locale" => &mut out.locale,
                "device" => {
                    out.device_token = map.next_value_seed(DeviceSeed)?;
                    continue;
                }
                _ => {
                    map.next_value_seed(Skip)?;
                    continue;
                }
            };
            *slot = match map.next_value_seed(FieldSeed)? {
                Field::Str(s) if !s.trim().is_empty() => Some(s),
                _ => None,
            };
        }
        Ok(out)
    }
}

/// A call's `context.device`: only its `token`, when it is a string.
struct DeviceSeed;

impl<'de> DeserializeSeed<'de> for DeviceSeed {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DeviceSeed {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut token = None;
        while let Some(key) = map.next_key_seed(Key)? {
            if &*key != "token" {
                map.next_value_seed(Skip)?;
                continue;
            }
            token = match map.next_value_seed(FieldSeed)? {
                Field::Str(s) if !s.trim().is_empty() => Some(s),
                _ => None,
            };
        }
        Ok(token)
    }
}

/// A call's properties or traits: their shape for the envelope checks, and
/// their typed content when they are an object to read.
struct BodySeed<'e> {
    dec: Decoder<'e>,
    plan: Plan,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = (Field<'de>, Content<'de>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = (Field<'de>, Content<'de>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok((Field::Other("a boolean"), Content::None))
    }

    // Only the kind matters here: these are refused as not an object.
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok((Field::Other("a number"), Content::None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok((Field::Other("a number"), Content::None))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // serde_json's `Value` turns a number it cannot hold into null.
        let shape = if v.is_finite() {
            Field::Other("a number")
        } else {
            Field::Null
        };
        Ok((shape, Content::None))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok((Field::Other("a string"), Content::None))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((Field::Null, Content::None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok((Field::Other("an array"), Content::None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let content = match self.plan {
            Plan::Record(schema) => Content::Record {
                fields: read_fields(self.dec, schema, 0, &mut map)?,
            },
            Plan::Traits => {
                let mut traits = Traits::new(self.dec);
                traits.read(&mut map, false)?;
                Content::Traits {
                    fields: traits.given,
                    email: traits.email,
                    aliases: traits.aliases,
                }
            }
            Plan::Skip | Plan::Fallback => {
                SkipVisitor.visit_map(map)?;
                Content::None
            }
        };
        Ok((Field::Object, content))
    }
}

/// Reads an object's entries into one slot per field of `schema`, the
/// record being at `depth` (its fields one deeper); keys the schema does
/// not name are skipped. With no such schema the entries are skipped and
/// the record is refused when built.
fn read_fields<'de, A: MapAccess<'de>>(
    dec: Decoder<'_>,
    schema: u32,
    depth: usize,
    map: &mut A,
) -> Result<Fields, A::Error> {
    let fields = dec.fields(schema).unwrap_or_default();
    let mut given = Fields::new(fields.len());
    let mut cursor = 0;
    while let Some(key) = map.next_key_seed(Key)? {
        match find_field(fields, &key, &mut cursor) {
            Some((i, field)) => {
                let typed = map.next_value_seed(ValueSeed {
                    dec,
                    ty: &field.ty,
                    depth: depth + 1,
                    null_is: Some(field),
                })?;
                given.set(i, typed);
            }
            None => map.next_value_seed(Skip)?,
        }
    }
    Ok(given)
}

/// The field named `key`. Senders mostly write fields in the schema's
/// order, so the search starts after the field found last (`cursor`) and
/// usually ends at its first comparison.
fn find_field<'f>(
    fields: &'f [FieldSchema],
    key: &str,
    cursor: &mut usize,
) -> Option<(usize, &'f FieldSchema)> {
    let start = (*cursor).min(fields.len());
    let (before, after) = fields.split_at(start);
    let found = (start..)
        .zip(after)
        .chain((0..).zip(before))
        .find(|(_, f)| f.name == key)?;
    *cursor = found.0 + 1;
    Some(found)
}

/// An identify call's traits, read into one slot per profile field under
/// the field's own name, else Segment's camelCase name for it
/// (`firstName`), else inside `address`; a field's own name wins whatever
/// the order. The `email` trait is kept as given when it is a string (the
/// identity graph joins by it whether or not the profile declares it).
struct Traits<'e, 'de> {
    dec: Decoder<'e>,
    fields: &'e [FieldSchema],
    given: Fields,
    /// Fields given under their own name.
    exact: Bits,
    aliases: Vec<(usize, String)>,
    email: Option<Cow<'de, str>>,
}

impl<'e, 'de> Traits<'e, 'de> {
    fn new(dec: Decoder<'e>) -> Self {
        let fields = dec.profile_fields();
        Traits {
            dec,
            fields,
            given: Fields::new(fields.len()),
            exact: Bits::default(),
            aliases: Vec::new(),
            email: None,
        }
    }

    /// Reads the entries of the traits object, or of its `address` when `address`.
    fn read<A: MapAccess<'de>>(&mut self, map: &mut A, address: bool) -> Result<(), A::Error> {
        let mut cursor = 0;
        while let Some(key) = map.next_key_seed(Key)? {
            let own = if address {
                None
            } else {
                find_field(self.fields, &key, &mut cursor)
            };
            if !address && key == "email" {
                let seed = own.map(|(_, field)| self.seed(field));
                let (typed, text) = map.next_value_seed(Capture(seed))?;
                self.email = text;
                if let (Some((i, _)), Some(typed)) = (own, typed) {
                    self.exact.insert(i);
                    self.given.set(i, typed);
                }
                continue;
            }
            if let Some((i, field)) = own {
                self.exact.insert(i);
                let typed = map.next_value_seed(self.seed(field))?;
                self.given.set(i, typed);
                continue;
            }
            if !address && key == "address" {
                map.next_value_seed(AddressSeed(self))?;
                continue;
            }
            let name = decode::snake_case(&key);
            let fields = (0..).zip(self.fields);
            let alias = match (&name, address) {
                (Some(n), _) => fields.clone().find(|(_, f)| &f.name == n),
                (None, true) => fields.clone().find(|(_, f)| f.name == *key),
                (None, false) => None,
            };
            match alias {
                Some((i, field)) if !self.exact.has(i) => {
                    let typed = map.next_value_seed(self.seed(field))?;
                    self.given.set(i, typed);
                    let path = if address {
                        format!("address.{key}")
                    } else {
                        key.into_owned()
                    };
                    self.aliases.push((i, path));
                }
                _ => map.next_value_seed(Skip)?,
            }
        }
        Ok(())
    }

    fn seed(&self, field: &'e FieldSchema) -> ValueSeed<'e, 'e> {
        ValueSeed {
            dec: self.dec,
            ty: &field.ty,
            depth: 0,
            null_is: None,
        }
    }
}

/// The `address` trait: its parts fill profile fields of their names
/// (`country`, `postal_code`); anything but an object is skipped.
struct AddressSeed<'t, 'e, 'de>(&'t mut Traits<'e, 'de>);

impl<'de> DeserializeSeed<'de> for AddressSeed<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AddressSeed<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        SkipVisitor.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.read(&mut map, true)
    }
}

/// Reads a value as a schema type.
#[derive(Clone, Copy)]
struct ValueSeed<'e, 't> {
    dec: Decoder<'e>,
    ty: &'t Type,
    depth: usize,
    /// For a record's field, the field: there null means "not given", and
    /// the field's default applies (the tree decoder looks at null before
    /// depth, so this does too).
    null_is: Option<&'t FieldSchema>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Typed;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Typed, D::Error> {
        if matches!(self.inner(), Type::String) {
            // The value's text, so that an id sent as a number keeps its
            // digits as written.
            let text = <&'de RawValue>::deserialize(d)?.get();
            return match text.as_bytes().first() {
                Some(b'"') if !text.contains('\\') => {
                    Ok(self.scalar(Shape::Str(&text[1..text.len() - 1])))
                }
                Some(b'"') => match serde_json::from_str::<Cow<'_, str>>(text) {
                    Ok(s) => Ok(self.scalar(Shape::Str(&s))),
                    // A lone surrogate: the tree parser refuses the line.
                    Err(e) => Err(serde::de::Error::custom(e)),
                },
                Some(b'-' | b'0'..=b'9') if text.parse::<f64>().is_ok_and(f64::is_infinite) => {
                    Err(serde::de::Error::custom("number out of range"))
                }
                _ => Ok(self.raw(text)),
            };
        }
        if matches!(self.inner(), Type::Decimal | Type::Money | Type::Percent) {
            // The value's text, so that a number is read from its own
            // digits rather than from the nearest binary float.
            let text = <&'de RawValue>::deserialize(d)?.get();
            if text.parse::<f64>().is_ok_and(f64::is_infinite) {
                // Refused as a malformed line, as parsing it as a tree
                // would; `Decoder::decode` words the reason the same way.
                return Err(serde::de::Error::custom("number out of range"));
            }
            return Ok(self.raw(text));
        }
        d.deserialize_any(self)
    }
}

impl ValueSeed<'_, '_> {
    /// Reads a value of a decimal type from its JSON text.
    fn raw(&self, text: &str) -> Typed {
        match text.as_bytes().first() {
            Some(b'-' | b'0'..=b'9') => self.scalar(Shape::Digits(text)),
            Some(b'"') => match serde_json::from_str::<Cow<'_, str>>(text) {
                Ok(s) => self.scalar(Shape::Str(&s)),
                Err(e) => Typed::of(Err(e.to_string())),
            },
            Some(b't') => self.scalar(Shape::Bool(true)),
            Some(b'f') => self.scalar(Shape::Bool(false)),
            Some(b'[') => self.scalar(Shape::List),
            Some(b'{') => self.scalar(Shape::Object),
            _ => self.null(),
        }
    }

    fn too_deep(&self) -> bool {
        self.depth > MAX_DEPTH
    }

    fn scalar(&self, json: Shape<'_>) -> Typed {
        if self.too_deep() {
            return Typed::of(Err(decode::too_deep()));
        }
        Typed::of(decode::scalar(self.dec.bundle, self.ty, json))
    }

    fn number(&self, n: Option<serde_json::Number>) -> Typed {
        match n {
            Some(n) => self.scalar(Shape::Number(&n)),
            // serde_json's `Value` turns a number it cannot hold into null.
            None => self.null(),
        }
    }

    fn null(&self) -> Typed {
        match self.null_is {
            Some(field) => Typed::of(decode::missing(field)),
            None => self.scalar(Shape::Null),
        }
    }

    /// The type under any `?`: lists and records are read through them.
    fn inner(&self) -> &Type {
        let mut ty = self.ty;
        while let Type::Optional(inner) = ty {
            ty = inner;
        }
        ty
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Typed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Typed, E> {
        Ok(self.scalar(Shape::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Typed, E> {
        Ok(self.number(Some(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Typed, E> {
        Ok(self.number(Some(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Typed, E> {
        Ok(self.number(serde_json::Number::from_f64(v)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Typed, E> {
        Ok(self.scalar(Shape::Str(s)))
    }

    fn visit_unit<E>(self) -> Result<Typed, E> {
        Ok(self.null())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Typed, A::Error> {
        let (Type::List(item), false) = (self.inner(), self.too_deep()) else {
            SkipVisitor.visit_seq(seq)?;
            return Ok(self.scalar(Shape::List));
        };
        let seed = ValueSeed {
            dec: self.dec,
            ty: item,
            depth: self.depth + 1,
            null_is: None,
        };
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        let mut dropped = Vec::new();
        let mut k = 0;
        while let Some(typed) = seq.next_element_seed(seed)? {
            dropped.extend(typed.inner.into_iter().map(|m| m.at(Step::Index(k))));
            match typed.value {
                Ok(v) => out.push(v),
                // An item that does not fit is left out of the list.
                Err(reason) => dropped.push(Mismatch::new(reason).at(Step::Index(k))),
            }
            k += 1;
        }
        Ok(Typed {
            value: Ok(Value::List(out.into())),
            inner: dropped,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Typed, A::Error> {
        let (&Type::Record(schema), false) = (self.inner(), self.too_deep()) else {
            SkipVisitor.visit_map(map)?;
            return Ok(self.scalar(Shape::Object));
        };
        let given = read_fields(self.dec, schema, self.depth, &mut map)?;
        Ok(self.dec.record(schema, given))
    }
}

/// Reads a value as a trait (or skips it when the profile has no such
/// field) and keeps its text when it is a string.
struct Capture<'e, 't>(Option<ValueSeed<'e, 't>>);

impl<'de> DeserializeSeed<'de> for Capture<'_, '_> {
    type Value = (Option<Typed>, Option<Cow<'de, str>>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Capture<'_, '_> {
    type Value = (Option<Typed>, Option<Cow<'de, str>>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok((self.0.map(|s| s.scalar(Shape::Bool(v))), None))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok((self.0.map(|s| s.number(Some(v.into()))), None))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok((self.0.map(|s| s.number(Some(v.into()))), None))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        let n = serde_json::Number::from_f64(v);
        Ok((self.0.map(|s| s.number(n)), None))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        let typed = self.0.map(|s| s.scalar(Shape::Str(v)));
        Ok((typed, Some(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        let typed = self.0.map(|s| s.scalar(Shape::Str(v)));
        Ok((typed, Some(Cow::Owned(v.to_string()))))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((self.0.map(|s| s.null()), None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        match self.0 {
            Some(s) => Ok((Some(s.visit_seq(seq)?), None)),
            None => SkipVisitor.visit_seq(seq).map(|()| (None, None)),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        match self.0 {
            Some(s) => Ok((Some(s.visit_map(map)?), None)),
            None => SkipVisitor.visit_map(map).map(|()| (None, None)),
        }
    }
}
