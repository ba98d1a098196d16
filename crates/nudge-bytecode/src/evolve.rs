//! Schema evolution: how the values and code of one bundle move onto the
//! schemas of a newer one.
//!
//! A live store holds records laid out by a bundle's schemas: profiles,
//! event histories, the locals of sleeping instances. When a deploy adds an
//! event, a property, a trait or a record type, the schemas are renumbered
//! and fields move. A [`Layout`] says, by name, where every schema, field
//! and enum of the old bundle sits in the new one; [`Layout::value`] moves a
//! stored value, and [`Bundle::rebase`] moves an older release's code, so
//! that every release still running reads the same tables as the newest.
//!
//! Only changes that keep every stored value meaningful are allowed
//! ([`Conflict`] names the others): a field keeps its type, a field added to
//! stored records is optional or has a default, an enum keeps its values.
//! What was removed is dropped from stored values; code that still reads it
//! is reported by [`Bundle::rebase`], so the caller can refuse the deploy
//! when such code still has instances to run.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bundle::*;
use crate::instr::Instr;
use crate::value::{Record, Type, Value};

/// A schema or enum index that has no place in the new bundle; code that
/// holds it must never run (see [`Rebased`]).
pub const GONE: u32 = u32::MAX;
/// A field index that has no place in the new schema.
pub const GONE_FIELD: u16 = u16::MAX;

/// A change between two bundles' schemas that stored values cannot follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// A schema keeps its name but changes what it is (an event became a record).
    KindChanged {
        /// The schema's name.
        schema: String,
    },
    /// A field keeps its name but changes its type.
    TypeChanged {
        /// The schema's name (`profile` for traits).
        schema: String,
        /// The field.
        field: String,
        /// Its old type, as the language writes it.
        from: String,
        /// Its new type.
        to: String,
    },
    /// A field that stored records lack is added without a default and is not optional.
    RequiredAdded {
        /// The schema's name.
        schema: String,
        /// The field.
        field: String,
    },
    /// An enum loses a value that stored records may hold.
    EnumValueRemoved {
        /// The enum's name.
        name: String,
        /// The value.
        value: String,
    },
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conflict::KindChanged { schema } => {
                write!(f, "`{schema}` changes from one kind of schema to another")
            }
            Conflict::TypeChanged {
                schema,
                field,
                from,
                to,
            } => write!(
                f,
                "`{schema}.{field}` changes type from `{from}` to `{to}`; stored values are `{from}` (add a field with a new name instead)"
            ),
            Conflict::RequiredAdded { schema, field } => write!(
                f,
                "`{schema}.{field}` is added as required, but stored `{schema}` values have none; make it optional (`{field}: T?`) or give it a default"
            ),
            Conflict::EnumValueRemoved { name, value } => write!(
                f,
                "enum `{name}` loses `{value}`, which stored values may hold"
            ),
        }
    }
}

/// What a deploy adds to and removes from the schemas, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDiff {
    /// Schemas and enums only the new bundle has (`event order_refunded`, `record Item`, `enum Tier`).
    pub added: Vec<String>,
    /// Schemas and enums only the old bundle has; their stored values are dropped.
    pub removed: Vec<String>,
    /// Fields added to kept schemas (`profile.birthday`, `order_completed.coupon`).
    pub fields_added: Vec<String>,
    /// Fields removed from kept schemas; their stored values are dropped.
    pub fields_removed: Vec<String>,
    /// Enum values added (`Tier.platinum`).
    pub values_added: Vec<String>,
}

impl SchemaDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.fields_added.is_empty()
            && self.fields_removed.is_empty()
            && self.values_added.is_empty()
    }
}

/// Where the old bundle's schemas, fields and enums are in the new one.
/// Serializable, so that a store can keep it for values it moves later.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Layout {
    /// Old schema index to new.
    schemas: Vec<Option<u32>>,
    /// Per old schema, old field index to new.
    fields: Vec<Vec<Option<u16>>>,
    /// Per new schema, the old field each new field takes its value from.
    sources: Vec<Vec<Option<u16>>>,
    /// Per new schema, the old schema it continues.
    from: Vec<Option<u32>>,
    /// Old enum index to new.
    enums: Vec<Option<u32>>,
    /// Per new schema, what a field with no old value starts as.
    defaults: Vec<Vec<Value>>,
    /// Old profile schema index.
    old_profile: u32,
    /// What changed, for reports.
    diff: SchemaDiff,
}

/// A schema as reports name it: `event checkout_started`, `record Item`, `profile`.
fn schema_title(s: &Schema) -> String {
    match s.kind {
        SchemaKind::Event => format!("event `{}`", s.name),
        SchemaKind::Record => format!("record `{}`", s.name),
        SchemaKind::Profile => "the profile".into(),
        SchemaKind::Shared => format!("shared fields `{}`", s.name),
    }
}

/// A type as the language writes it, naming records and enums, so that
/// renumbered tables do not count as a change of type.
pub fn type_text(b: &Bundle, t: &Type) -> String {
    match t {
        Type::List(t) => format!("list<{}>", type_text(b, t)),
        Type::Optional(t) => format!("{}?", type_text(b, t)),
        Type::Record(i) => b
            .schemas
            .get(*i as usize)
            .map_or_else(|| format!("record #{i}"), |s| s.name.clone()),
        Type::Enum(i) => b
            .enums
            .get(*i as usize)
            .map_or_else(|| format!("enum #{i}"), |e| e.name.clone()),
        other => format!("{other:?}").to_lowercase(),
    }
}

impl Layout {
    /// Matches `old`'s tables to `new`'s by name; every change that stored
    /// values cannot follow is returned instead, in declaration order.
    pub fn between(old: &Bundle, new: &Bundle) -> Result<Layout, Vec<Conflict>> {
        let mut conflicts = Vec::new();
        let mut diff = SchemaDiff::default();
        let by_name: HashMap<(&str, bool), u32> = new
            .schemas
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.name.as_str(), s.kind == SchemaKind::Profile), i as u32))
            .collect();
        let mut schemas = Vec::with_capacity(old.schemas.len());
        let mut fields = Vec::with_capacity(old.schemas.len());
        let mut sources: Vec<Vec<Option<u16>>> = new
            .schemas
            .iter()
            .map(|s| vec![None; s.fields.len()])
            .collect();
        let mut from = vec![None; new.schemas.len()];
        for (oi, os) in old.schemas.iter().enumerate() {
            let found = by_name
                .get(&(os.name.as_str(), os.kind == SchemaKind::Profile))
                .copied();
            let Some(ni) = found else {
                schemas.push(None);
                fields.push(vec![None; os.fields.len()]);
                if os.kind != SchemaKind::Shared {
                    diff.removed.push(schema_title(os));
                }
                continue;
            };
            let ns = &new.schemas[ni as usize];
            if ns.kind != os.kind {
                conflicts.push(Conflict::KindChanged {
                    schema: os.name.clone(),
                });
            }
            schemas.push(Some(ni));
            from[ni as usize] = Some(oi as u32);
            let mut map = Vec::with_capacity(os.fields.len());
            for of in &os.fields {
                let nf = ns.fields.iter().position(|f| f.name == of.name);
                match nf {
                    Some(j) => {
                        let (a, b) = (type_text(old, &of.ty), type_text(new, &ns.fields[j].ty));
                        if a != b {
                            conflicts.push(Conflict::TypeChanged {
                                schema: os.name.clone(),
                                field: of.name.clone(),
                                from: a,
                                to: b,
                            });
                        }
                        sources[ni as usize][j] = Some(map.len() as u16);
                        map.push(Some(j as u16));
                    }
                    None => {
                        map.push(None);
                        if os.kind != SchemaKind::Shared {
                            diff.fields_removed.push(format!("{}.{}", os.name, of.name));
                        }
                    }
                }
            }
            fields.push(map);
            for (j, nf) in ns.fields.iter().enumerate() {
                if sources[ni as usize][j].is_some() {
                    continue;
                }
                if ns.kind != SchemaKind::Shared {
                    diff.fields_added.push(format!("{}.{}", ns.name, nf.name));
                }
                if nf.required() {
                    conflicts.push(Conflict::RequiredAdded {
                        schema: ns.name.clone(),
                        field: nf.name.clone(),
                    });
                }
            }
        }
        for (ni, ns) in new.schemas.iter().enumerate() {
            if from[ni].is_none() && ns.kind != SchemaKind::Shared {
                diff.added.push(schema_title(ns));
            }
        }
        let mut enums = Vec::with_capacity(old.enums.len());
        for oe in &old.enums {
            let Some(ni) = new.enums.iter().position(|e| e.name == oe.name) else {
                enums.push(None);
                diff.removed.push(format!("enum `{}`", oe.name));
                continue;
            };
            let ne = &new.enums[ni];
            for v in &oe.values {
                if !ne.values.contains(v) {
                    conflicts.push(Conflict::EnumValueRemoved {
                        name: oe.name.clone(),
                        value: v.clone(),
                    });
                }
            }
            for v in &ne.values {
                if !oe.values.contains(v) {
                    diff.values_added.push(format!("{}.{}", ne.name, v));
                }
            }
            enums.push(Some(ni as u32));
        }
        for ne in &new.enums {
            if !old.enums.iter().any(|e| e.name == ne.name) {
                diff.added.push(format!("enum `{}`", ne.name));
            }
        }
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
        let defaults = new
            .schemas
            .iter()
            .map(|s| {
                s.fields
                    .iter()
                    .map(|f| f.default.clone().unwrap_or(Value::None))
                    .collect()
            })
            .collect();
        Ok(Layout {
            schemas,
            fields,
            sources,
            from,
            enums,
            defaults,
            old_profile: old.profile,
            diff,
        })
    }

    /// What changed, by name.
    pub fn diff(&self) -> &SchemaDiff {
        &self.diff
    }

    /// The new index of old schema `s`, if it was kept.
    pub fn schema(&self, s: u32) -> Option<u32> {
        self.schemas.get(s as usize).copied().flatten()
    }

    /// The new index of field `f` of old schema `s`, if both were kept.
    pub fn field(&self, s: u32, f: u16) -> Option<u16> {
        self.fields.get(s as usize)?.get(usize::from(f)).copied()?
    }

    /// The new index of old enum `e`, if it was kept.
    pub fn enum_(&self, e: u32) -> Option<u32> {
        self.enums.get(e as usize).copied().flatten()
    }

    /// A stored value moved onto the new schemas: fields found by name,
    /// fields the old schema lacked at their default (or `none`), removed
    /// fields dropped. A record of a removed schema becomes `none`.
    pub fn value(&self, v: &Value) -> Value {
        match v {
            Value::Record(r) => match self.record(r) {
                Some(r) => Value::Record(Arc::new(r)),
                None => Value::None,
            },
            Value::List(items) => Value::List(items.iter().map(|x| self.value(x)).collect()),
            other => other.clone(),
        }
    }

    /// A stored record moved onto the new schemas; `None` when its schema was removed.
    pub fn record(&self, r: &Record) -> Option<Record> {
        let ns = self.schema(r.schema)?;
        let sources = &self.sources[ns as usize];
        let defaults = &self.defaults[ns as usize];
        // A record of another schema than the one the new schema continues
        // cannot happen; its fields are then taken as missing.
        let same = self.from[ns as usize] == Some(r.schema);
        let fields = sources
            .iter()
            .zip(defaults)
            .map(|(src, default)| match src {
                Some(i) if same => r
                    .fields
                    .get(usize::from(*i))
                    .map_or(Value::None, |v| self.value(v)),
                _ => default.clone(),
            })
            .collect();
        Some(Record { schema: ns, fields })
    }

    fn schema_ref(&self, s: &mut u32, old: &Bundle, missing: &mut Vec<String>) {
        match self.schema(*s) {
            Some(n) => *s = n,
            None => {
                if let Some(os) = old.schemas.get(*s as usize) {
                    push_once(missing, schema_title(os));
                }
                *s = GONE;
            }
        }
    }

    fn field_ref(&self, s: u32, f: &mut u16, old: &Bundle, missing: &mut Vec<String>) {
        match self.field(s, *f) {
            Some(n) => *f = n,
            None => {
                if let Some(os) = old.schemas.get(s as usize) {
                    let name = os
                        .fields
                        .get(usize::from(*f))
                        .map_or("?", |x| x.name.as_str());
                    push_once(missing, format!("`{}.{name}`", os.name));
                }
                *f = GONE_FIELD;
            }
        }
    }

    fn ty(&self, t: &mut Type, old: &Bundle, missing: &mut Vec<String>) {
        match t {
            Type::List(t) | Type::Optional(t) => self.ty(t, old, missing),
            Type::Record(i) => self.schema_ref(i, old, missing),
            Type::Enum(i) => match self.enum_(*i) {
                Some(n) => *i = n,
                None => {
                    if let Some(e) = old.enums.get(*i as usize) {
                        push_once(missing, format!("enum `{}`", e.name));
                    }
                    *i = GONE;
                }
            },
            _ => {}
        }
    }
}

/// A let's or segment's references; its type's count as its first block's.
fn global_refs(
    g: &mut Global,
    unit_refs: &dyn Fn(&mut Unit) -> UnitRefs,
    layout: &Layout,
    old: &Bundle,
) -> UnitRefs {
    let mut r = unit_refs(&mut g.unit);
    let mut m = Vec::new();
    layout.ty(&mut g.ty, old, &mut m);
    match r.missing.first_mut() {
        Some(first) => first.extend(m),
        None => {
            r.missing.push(m);
            r.reach.push(Vec::new());
        }
    }
    r
}

fn push_once(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// An older release's code moved onto a newer bundle's tables.
#[derive(Clone, Debug)]
pub struct Rebased {
    /// The old bundle with the new schemas, enums and profile, every index
    /// into them renumbered. Flow versions are kept: the code means what it did.
    pub bundle: Bundle,
    /// Per flow, what it (with the messages, lets and segments it reaches)
    /// reads that the new tables no longer have. A flow with something here
    /// must not run on the rebased bundle.
    pub flows: Vec<Vec<String>>,
    /// Per flow, the same for its goal alone (the rule and its predicate).
    pub goals: Vec<Vec<String>>,
}

/// What one unit's blocks reach, and what each block reads that is gone.
struct UnitRefs {
    /// Per block: lets, segments and messages used.
    reach: Vec<Vec<Reach>>,
    /// Per block: names of what is gone.
    missing: Vec<Vec<String>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    Let(u32),
    Segment(u32),
    Message(u32),
}

impl Bundle {
    /// This bundle's code renumbered for `new`'s tables (see [`Layout`]).
    /// References to what `new` dropped become [`GONE`] or [`GONE_FIELD`],
    /// and are named in [`Rebased::flows`] for the flows that reach them.
    pub fn rebase(&self, new: &Bundle, layout: &Layout) -> Rebased {
        let mut b = self.clone();
        b.schemas = new.schemas.clone();
        b.enums = new.enums.clone();
        b.profile = new.profile;
        // The readers of each kept schema move to its new number.
        b.retention.events = vec![Default::default(); new.schemas.len()];
        for (s, readers) in self.retention.events.iter().enumerate() {
            if let Some(to) = layout.schema(s as u32)
                && let Some(slot) = b.retention.events.get_mut(to as usize)
            {
                *slot = readers.clone();
            }
        }
        let old = self;
        let unit_refs = |u: &mut Unit| -> UnitRefs {
            let mut reach = Vec::with_capacity(u.blocks.len());
            let mut missing = Vec::with_capacity(u.blocks.len());
            for block in &mut u.blocks {
                let (mut r, mut m) = (Vec::new(), Vec::new());
                for i in &mut block.code {
                    match i {
                        Instr::LoadField { schema, field }
                        | Instr::LoadFieldOpt { schema, field } => {
                            layout.field_ref(*schema, field, old, &mut m);
                            layout.schema_ref(schema, old, &mut m);
                        }
                        Instr::LoadProfileField(n) | Instr::SetProfile(n) => {
                            layout.field_ref(layout.old_profile, n, old, &mut m);
                        }
                        Instr::CallEvent { event, .. } => layout.schema_ref(event, old, &mut m),
                        Instr::LoadLet(n) => r.push(Reach::Let(*n)),
                        Instr::EvalSegment(n) => r.push(Reach::Segment(*n)),
                        Instr::Send { message, .. } => r.push(Reach::Message(*message)),
                        _ => {}
                    }
                }
                reach.push(r);
                missing.push(m);
            }
            for c in &mut u.consts {
                *c = layout.value(c);
            }
            UnitRefs { reach, missing }
        };
        let lets: Vec<UnitRefs> = b
            .lets
            .iter_mut()
            .map(|g| global_refs(g, &unit_refs, layout, old))
            .collect();
        let segments: Vec<UnitRefs> = b
            .segments
            .iter_mut()
            .map(|g| global_refs(g, &unit_refs, layout, old))
            .collect();
        let messages: Vec<UnitRefs> = b
            .messages
            .iter_mut()
            .map(|msg| {
                let mut r = unit_refs(&mut msg.unit);
                let mut m = Vec::new();
                for p in &mut msg.params {
                    layout.ty(&mut p.ty, old, &mut m);
                }
                let mut extra = Vec::new();
                for c in &msg.content {
                    if let ContentValue::Template(t) = &c.value {
                        extra.extend(t.lets.iter().map(|(_, l)| Reach::Let(*l)));
                    }
                }
                match (r.missing.first_mut(), r.reach.first_mut()) {
                    (Some(first), Some(reach)) => {
                        first.extend(m);
                        reach.extend(extra);
                    }
                    _ => {
                        r.missing.push(m);
                        r.reach.push(extra);
                    }
                }
                r
            })
            .collect();
        // Everything a set of starting blocks reaches, lets, segments and
        // messages included, and what of it is gone.
        let closure = |start: Vec<Reach>, mut missing: Vec<String>| -> Vec<String> {
            let mut seen: Vec<Reach> = Vec::new();
            let mut work = start;
            while let Some(x) = work.pop() {
                if seen.contains(&x) {
                    continue;
                }
                seen.push(x);
                let refs = match x {
                    Reach::Let(i) => lets.get(i as usize),
                    Reach::Segment(i) => segments.get(i as usize),
                    Reach::Message(i) => messages.get(i as usize),
                };
                if let Some(refs) = refs {
                    for (r, m) in refs.reach.iter().zip(&refs.missing) {
                        work.extend(r.iter().copied());
                        for name in m {
                            push_once(&mut missing, name.clone());
                        }
                    }
                }
            }
            missing
        };
        let mut flows = Vec::with_capacity(b.flows.len());
        let mut goals = Vec::with_capacity(b.flows.len());
        for fl in &mut b.flows {
            let refs = unit_refs(&mut fl.unit);
            let mut head = Vec::new();
            let mut start = Vec::new();
            match &mut fl.trigger {
                Trigger::Event(r) => layout.schema_ref(&mut r.event, old, &mut head),
                Trigger::Schedule { segment, .. } => {
                    start.extend(segment.map(Reach::Segment));
                }
                Trigger::DateProperty { field, .. } => {
                    layout.field_ref(layout.old_profile, field, old, &mut head)
                }
                Trigger::Entering { segment } => start.push(Reach::Segment(*segment)),
            }
            for r in &mut fl.exit_on {
                layout.schema_ref(&mut r.event, old, &mut head);
            }
            let mut goal_head = Vec::new();
            if let Some(g) = &mut fl.goal {
                layout.schema_ref(&mut g.rule.event, old, &mut goal_head);
            }
            for w in &mut fl.waits {
                for e in &mut w.events {
                    let from = e.event;
                    if let Some(p) = &mut e.project {
                        for f in p.iter_mut() {
                            layout.field_ref(from, f, old, &mut head);
                        }
                    }
                    layout.schema_ref(&mut e.event, old, &mut head);
                }
                layout.schema_ref(&mut w.schema, old, &mut head);
            }
            let mut all = head;
            for m in goal_head.iter() {
                push_once(&mut all, m.clone());
            }
            for (r, m) in refs.reach.iter().zip(&refs.missing) {
                start.extend(r.iter().copied());
                for name in m {
                    push_once(&mut all, name.clone());
                }
            }
            flows.push(closure(start, all));
            let goal = match fl.goal.as_ref().and_then(|g| g.rule.predicate) {
                Some(p) => {
                    let p = p as usize;
                    let start = refs.reach.get(p).cloned().unwrap_or_default();
                    let mut m = goal_head;
                    for name in refs.missing.get(p).into_iter().flatten() {
                        push_once(&mut m, name.clone());
                    }
                    closure(start, m)
                }
                None => goal_head,
            };
            goals.push(goal);
        }
        Rebased {
            bundle: b,
            flows,
            goals,
        }
    }
}
