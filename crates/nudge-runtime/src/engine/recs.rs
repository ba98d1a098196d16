//! Recommendations as the VM asks for them: a [`Host`] that is a customer's
//! [`Ctx`] plus the catalogue, which also notes what it served for the trace.

use std::borrow::Cow;

use chrono_tz::Tz;
use nudge_bytecode::{Bundle, Record, Value};
use nudge_vm::{Host, Suggestion};

use super::customer::{Ctx, Customer};
use crate::catalogue::{Ask, CatalogueFile, Learned, Pick, product_ids};
use crate::record::What;

/// A customer's [`Ctx`] that can also answer `recommend`.
pub(super) struct RecCtx<'a, 'c> {
    /// The customer's own view.
    pub ctx: Ctx<'c>,
    /// The bundle the code runs from (its schemas read the events).
    pub bundle: &'a Bundle,
    /// What the events taught.
    pub learned: &'a Learned,
    /// The catalogue file and the project's fallback list.
    pub file: &'a CatalogueFile,
    /// The event the customer is looking at (the trigger), whose products
    /// are left out; read only when code asks for products.
    pub trigger: Option<Value>,
    /// What each `recommend` call served, in order.
    pub served: Vec<Vec<Pick>>,
    /// What the arms of splits that optimise have done, where code may
    /// run a split.
    pub splits: Option<&'a super::SplitCounts>,
}

impl<'a, 'c> RecCtx<'a, 'c> {
    /// A view of `ctx` that recommends from `learned` and `file`, the
    /// products of `trigger` excluded.
    pub fn new(
        ctx: Ctx<'c>,
        bundle: &'a Bundle,
        learned: &'a Learned,
        file: &'a CatalogueFile,
        trigger: Option<&Value>,
    ) -> Self {
        RecCtx {
            ctx,
            bundle,
            learned,
            file,
            trigger: trigger.cloned(),
            served: Vec::new(),
            splits: None,
        }
    }

    /// The trace records of what was served, for flow `flow`.
    pub fn records(&mut self, flow: &str) -> Vec<What> {
        std::mem::take(&mut self.served)
            .into_iter()
            .map(|picks| served(flow, &picks))
            .collect()
    }
}

/// The trace record of one `recommend` call.
pub(super) fn served(flow: &str, picks: &[Pick]) -> What {
    What::Recommended {
        flow: flow.to_string(),
        products: picks.iter().map(|p| p.product.id.clone()).collect(),
        sources: picks.iter().map(|p| p.source.name().to_string()).collect(),
    }
}

/// The products a customer ordered, oldest first, from their kept
/// `Order Completed` events (a bundle that calls `recommend` keeps them all).
pub(super) fn bought(bundle: &Bundle, customer: &Customer) -> Vec<String> {
    let orders: Vec<u32> = bundle
        .schemas
        .iter()
        .enumerate()
        .filter(|(_, s)| s.wire.as_deref() == Some("Order Completed"))
        .map(|(i, _)| i as u32)
        .collect();
    let mut out: Vec<String> = Vec::new();
    for e in &customer.events {
        if orders.contains(&e.schema) {
            for id in product_ids(bundle, &e.value) {
                if let Some(at) = out.iter().position(|b| *b == id) {
                    out.remove(at);
                }
                out.push(id);
            }
        }
    }
    out
}

/// Whether flow `flow`'s code, or that of a message it sends, calls
/// `recommend` or `recommend_excluding`.
pub(super) fn recommends(flow: &nudge_bytecode::Flow, bundle: &Bundle) -> bool {
    use nudge_bytecode::Instr;
    let called: Vec<u16> = bundle
        .builtins
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.as_str(), "recommend" | "recommend_excluding"))
        .filter_map(|(i, _)| u16::try_from(i).ok())
        .collect();
    if called.is_empty() {
        return false;
    }
    let calls = |unit: &nudge_bytecode::Unit| {
        unit.blocks
            .iter()
            .flat_map(|b| &b.code)
            .any(|i| matches!(i, Instr::Call { builtin, .. } if called.contains(builtin)))
    };
    if calls(&flow.unit) {
        return true;
    }
    flow.unit
        .blocks
        .iter()
        .flat_map(|b| &b.code)
        .any(|i| match i {
            Instr::Send { message, .. } => bundle
                .messages
                .get(*message as usize)
                .is_some_and(|m| calls(&m.unit)),
            _ => false,
        })
}

/// When customer `customer` ordered product `id`, in milliseconds, oldest
/// first, from their kept `Order Completed` events.
pub(super) fn orders_of(bundle: &Bundle, customer: &Customer, id: &str) -> Vec<i64> {
    let orders: Vec<u32> = bundle
        .schemas
        .iter()
        .enumerate()
        .filter(|(_, s)| s.wire.as_deref() == Some("Order Completed"))
        .map(|(i, _)| i as u32)
        .collect();
    customer
        .events
        .iter()
        .filter(|e| {
            orders.contains(&e.schema) && product_ids(bundle, &e.value).iter().any(|p| p == id)
        })
        .map(|e| e.at)
        .collect()
}

/// For each product of order `event` at `at`, how long since customer
/// `customer` last ordered it before (their orders so far, as kept).
pub(super) fn reorder_gaps(
    bundle: &Bundle,
    customer: &Customer,
    event: &Value,
    at: i64,
) -> Vec<(String, i64)> {
    let is_order = match event {
        Value::Record(r) => bundle
            .schemas
            .get(r.schema as usize)
            .is_some_and(|s| s.wire.as_deref() == Some("Order Completed")),
        _ => false,
    };
    if !is_order {
        return Vec::new();
    }
    product_ids(bundle, event)
        .into_iter()
        .filter_map(|id| {
            let before = orders_of(bundle, customer, &id)
                .into_iter()
                .filter(|t| *t < at)
                .max()?;
            Some((id, at - before))
        })
        .collect()
}

/// Answers a `recommend` call.
pub(super) fn ask(
    bundle: &Bundle,
    learned: &Learned,
    file: &CatalogueFile,
    customer: &Customer,
    looking_at: Vec<String>,
    n: usize,
    exclude: Vec<String>,
) -> Vec<Pick> {
    let ask = Ask {
        n,
        looking_at,
        bought: bought(bundle, customer),
        exclude,
    };
    learned.recommend(file, &ask)
}

/// A pick as the VM's `Product` record is made from it.
fn suggestion(p: &Pick) -> Suggestion {
    let p = &p.product;
    Suggestion {
        product_id: p.id.clone(),
        name: p.name.clone(),
        category: p.category.clone(),
        price: p.price,
        url: p.url.clone(),
        image_url: p.image_url.clone(),
    }
}

impl Host for RecCtx<'_, '_> {
    fn profile(&self) -> Cow<'_, Record> {
        self.ctx.profile()
    }

    fn profile_field(&self, field: u16) -> Option<Value> {
        self.ctx.profile_field(field)
    }

    fn set_profile(&mut self, field: u16, value: Value) {
        self.ctx.set_profile(field, value)
    }

    fn now(&self) -> i64 {
        self.ctx.now()
    }

    fn timezone(&self) -> Tz {
        self.ctx.timezone()
    }

    fn for_each_event(&self, schema: u32, since: i64, f: &mut dyn FnMut(&Value) -> bool) {
        self.ctx.for_each_event(schema, since, f)
    }

    fn customer_key(&self) -> &str {
        self.ctx.customer_key()
    }

    fn next_order_at(&mut self, product_id: &str) -> Option<i64> {
        let times = orders_of(self.bundle, self.ctx.customer, product_id);
        let at = self.learned.next_order(self.file, product_id, &times)?;
        // The language's instants are whole seconds: round up, never early.
        Some(at.div_euclid(1000) + i64::from(at.rem_euclid(1000) != 0))
    }

    fn split_counts(
        &self,
        flow: &str,
        split: u16,
        arms: &[nudge_bytecode::SplitArm],
    ) -> Vec<nudge_vm::bandit::Arm> {
        match self.splits {
            Some(s) => s.of(flow, split, arms.iter().map(|a| a.name.as_str())),
            None => vec![nudge_vm::bandit::Arm::default(); arms.len()],
        }
    }

    fn recommend(&mut self, n: usize, exclude: &[String]) -> Vec<Suggestion> {
        let picks = ask(
            self.bundle,
            self.learned,
            self.file,
            self.ctx.customer,
            self.trigger
                .as_ref()
                .map(|t| product_ids(self.bundle, t))
                .unwrap_or_default(),
            n,
            exclude.to_vec(),
        );
        let out = picks.iter().map(suggestion).collect();
        self.served.push(picks);
        out
    }
}
