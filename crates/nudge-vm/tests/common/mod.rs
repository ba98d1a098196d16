//! Shared test helpers: a test host and values of a bundle's types.
#![allow(dead_code)]

use std::sync::Arc;

use chrono_tz::Tz;
use nudge_compiler::bytecode::{Bundle, Record, Type, Value};
use nudge_vm::Host;
use rust_decimal::Decimal;

/// A host with a settable profile, clock, zone and event history.
pub struct TestHost {
    pub profile: Record,
    pub now: i64,
    pub tz: Tz,
    /// `(schema, time, event)`.
    pub events: Vec<(u32, i64, Value)>,
    pub key: String,
    pub writes: Vec<(u16, Value)>,
    /// What `recommend` answers (the first `n`).
    pub suggestions: Vec<nudge_vm::Suggestion>,
    /// What `recommend` was asked: `n` and the excluded ids.
    pub asked: Vec<(usize, Vec<String>)>,
    /// What `next_order_at` answers, by product id.
    pub next_orders: Vec<(String, i64)>,
}

impl TestHost {
    /// A profile of the bundle's schema with every field unset.
    pub fn new(bundle: &Bundle) -> TestHost {
        let n = bundle.schemas[bundle.profile as usize].fields.len();
        TestHost {
            profile: Record {
                schema: bundle.profile,
                fields: vec![Value::None; n],
            },
            now: 1_767_225_600, // 2026-01-01T00:00:00Z
            tz: chrono_tz::UTC,
            events: Vec::new(),
            key: "customer-1".into(),
            writes: Vec::new(),
            suggestions: Vec::new(),
            asked: Vec::new(),
            next_orders: Vec::new(),
        }
    }

    /// Sets a profile field by name.
    pub fn set(&mut self, bundle: &Bundle, name: &str, v: Value) {
        let i = field_index(bundle, bundle.profile, name);
        self.profile.fields[i] = v;
    }
}

impl Host for TestHost {
    fn profile(&self) -> std::borrow::Cow<'_, Record> {
        std::borrow::Cow::Borrowed(&self.profile)
    }
    fn set_profile(&mut self, field: u16, value: Value) {
        self.profile.fields[usize::from(field)] = value.clone();
        self.writes.push((field, value));
    }
    fn now(&self) -> i64 {
        self.now
    }
    fn timezone(&self) -> Tz {
        self.tz
    }
    fn for_each_event(&self, schema: u32, since: i64, f: &mut dyn FnMut(&Value) -> bool) {
        for (s, t, e) in &self.events {
            if *s == schema && *t >= since && !f(e) {
                return;
            }
        }
    }
    fn customer_key(&self) -> &str {
        &self.key
    }
    fn next_order_at(&mut self, product_id: &str) -> Option<i64> {
        self.next_orders
            .iter()
            .find(|(p, _)| p == product_id)
            .map(|(_, t)| *t)
    }
    fn recommend(&mut self, n: usize, exclude: &[String]) -> Vec<nudge_vm::Suggestion> {
        self.asked.push((n, exclude.to_vec()));
        self.suggestions.iter().take(n).cloned().collect()
    }
}

pub fn schema_index(bundle: &Bundle, name: &str) -> u32 {
    bundle
        .schemas
        .iter()
        .position(|s| s.name == name)
        .unwrap_or_else(|| panic!("no schema {name}")) as u32
}

pub fn field_index(bundle: &Bundle, schema: u32, name: &str) -> usize {
    bundle.schemas[schema as usize]
        .fields
        .iter()
        .position(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

/// A record of schema `name`: the given fields, defaults for the others, else none.
pub fn record(bundle: &Bundle, name: &str, fields: &[(&str, Value)]) -> Value {
    let schema = schema_index(bundle, name);
    let mut values: Vec<Value> = bundle.schemas[schema as usize]
        .fields
        .iter()
        .map(|f| f.default.clone().unwrap_or(Value::None))
        .collect();
    for (n, v) in fields {
        values[field_index(bundle, schema, n)] = v.clone();
    }
    Value::Record(Arc::new(Record {
        schema,
        fields: values,
    }))
}

pub fn money(s: &str) -> Value {
    Value::Money(s.parse::<Decimal>().unwrap())
}

pub fn dec(s: &str) -> Value {
    Value::Decimal(s.parse::<Decimal>().unwrap())
}

/// A plausible value of a type, named after the parameter or field it fills.
pub fn sample(bundle: &Bundle, ty: &Type, name: &str) -> Value {
    match ty {
        Type::Optional(t) => sample(bundle, t, name),
        Type::Bool => Value::Bool(true),
        Type::Int => Value::Int(2),
        Type::Decimal => dec("1.5"),
        Type::Money => money("12.5"),
        Type::Percent => Value::Percent(Decimal::from(15)),
        Type::String => Value::str(&format!("{name}-x")),
        Type::Duration => Value::Duration(3600),
        Type::Time => Value::Time(1_767_225_600),
        Type::Date => Value::Date(20_454),
        Type::TimeOfDay => Value::TimeOfDay(540),
        Type::Timezone => Value::Timezone("Europe/Berlin".into()),
        Type::List(t) => Value::List(vec![sample(bundle, t, name), sample(bundle, t, name)].into()),
        Type::Enum(e) => Value::str(&bundle.enums[*e as usize].values[0]),
        Type::Record(s) => {
            let schema = &bundle.schemas[*s as usize];
            Value::Record(Arc::new(Record {
                schema: *s,
                fields: schema
                    .fields
                    .iter()
                    .map(|f| sample(bundle, &f.ty, &f.name))
                    .collect(),
            }))
        }
    }
}
