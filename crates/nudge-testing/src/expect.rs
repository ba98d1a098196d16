//! Checking a test's expectations against what the engine produced.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nudge_bytecode::{Bundle, Record as Profile, format_instant};
use nudge_runtime::engine::{Engine, MemorySink};
use nudge_runtime::record::{Outcome, What};
use nudge_syntax::ast::{ExpectKind, TestTime};

use crate::Failure;
use crate::eval::to_json;
use crate::scenario::{Scenario, instant};
use crate::timeline::{self, Names};

/// The final profiles of the customers `expect profile` names.
pub(crate) fn profiles(
    sc: &Scenario<'_>,
    engine: &mut Engine<'_, MemorySink>,
) -> HashMap<String, Option<Profile>> {
    let mut out = HashMap::new();
    for x in &sc.expects {
        if let ExpectKind::Profile { customer, .. } = x.kind {
            let p = engine.profile_of(&customer.value).cloned();
            out.insert(customer.value.clone(), p);
        }
    }
    out
}

/// What a test run produced, ready to be compared with expectations.
pub(crate) struct World<'s> {
    sc: &'s Scenario<'s>,
    sink: &'s MemorySink,
    names: Names,
    profiles: HashMap<String, Option<Profile>>,
}

/// The outcome words a `decision` expectation may use.
fn outcome(word: &str) -> Option<Outcome> {
    Some(match word {
        "skipped" => Outcome::Capped,
        "held_out" => Outcome::HeldOut,
        w => *Outcome::ALL.iter().find(|o| o.name() == w)?,
    })
}

impl<'s> World<'s> {
    /// Reads the sink of a finished run.
    pub(crate) fn new(
        sc: &'s Scenario<'s>,
        sink: &'s MemorySink,
        profiles: HashMap<String, Option<Profile>>,
    ) -> World<'s> {
        World {
            sc,
            sink,
            names: Names::new(&sc.aliases, &sink.records),
            profiles,
        }
    }

    /// `None` when the expectation holds, else what went wrong.
    pub(crate) fn check(
        &self,
        x: &crate::scenario::Expect<'_>,
        bundle: &Bundle,
    ) -> Option<Failure> {
        let (ok, actual, customers) = match x.kind {
            ExpectKind::Send {
                message,
                to,
                predicate,
                at,
                window,
            } => self.send(
                &message.name,
                to.as_ref().map(|t| t.value.as_str()),
                predicate.as_ref(),
                at.as_ref(),
                window.as_ref(),
                x.negated,
            ),
            ExpectKind::Exit { flow, reason } => {
                self.exit(&flow.name, reason.as_ref().map(|r| r.value.as_str()))
            }
            ExpectKind::Audience { name, customer } => {
                self.audience(&name.value, &customer.value, x.negated)
            }
            ExpectKind::Profile {
                customer,
                field,
                value,
            } => self.profile(bundle, &customer.value, &field.name, value),
            ExpectKind::Conversion { flow } => self.conversion(&flow.name, x.negated),
            ExpectKind::Decision {
                message,
                outcome,
                reason,
            } => self.decision(
                &message.name,
                &outcome.name,
                reason.as_ref().map(|r| r.value.as_str()),
            ),
        };
        if ok {
            return None;
        }
        let customers = if customers.is_empty() {
            self.all_customers()
        } else {
            customers
        };
        Some(Failure {
            expected: x.text.clone(),
            line: x.line,
            actual,
            timelines: customers
                .into_iter()
                .map(|c| {
                    let t = timeline::of(&c, &self.names, &self.sc.calls, &self.sink.records);
                    (c, t)
                })
                .collect(),
        })
    }

    fn all_customers(&self) -> Vec<String> {
        let mut set = BTreeSet::new();
        for s in &self.sc.calls {
            for c in &s.customers {
                set.insert(self.names.of(c));
            }
        }
        set.into_iter().collect()
    }

    fn send(
        &self,
        message: &str,
        to: Option<&str>,
        predicate: Option<&nudge_syntax::ast::Expr>,
        at: Option<&TestTime>,
        window: Option<&(TestTime, TestTime)>,
        negated: bool,
    ) -> (bool, Vec<String>, Vec<String>) {
        let to = to.map(|t| self.names.of(t));
        let at = at.map(|t| format_instant(instant(t, self.sc.start)));
        // RFC 3339 UTC strings of one shape compare like the instants they name.
        let window = window.map(|(a, b)| {
            (
                format_instant(instant(a, self.sc.start)),
                format_instant(instant(b, self.sc.start)),
            )
        });
        let sent: Vec<_> = self
            .sink
            .outbox
            .iter()
            .filter(|o| o.message == message)
            .filter(|o| to.as_ref().is_none_or(|t| self.names.of(&o.customer) == *t))
            .collect();
        let mut facts = Vec::new();
        let mut hits = Vec::new();
        let mut matching = 0;
        for o in &sent {
            let mut misses = Vec::new();
            if let Some(a) = &at
                && o.at != *a
            {
                misses.push(format!("not at {a}"));
            }
            if let Some((from, to)) = &window
                && (o.at < *from || o.at > *to)
            {
                misses.push(format!("not between {from} and {to}"));
            }
            if let Some(p) = predicate {
                match self.sc.conditions.holds(p, &o.content, self.sc.end) {
                    Ok(true) => {}
                    Ok(false) => misses.push(format!("its content does not match: {}", content(o))),
                    Err(e) => misses.push(format!("the condition cannot be checked: {e}")),
                }
            }
            let who = self.names.of(&o.customer);
            if misses.is_empty() {
                matching += 1;
                hits.push(format!("{message} was sent to {who} at {}", o.at));
                facts.push(format!("{message} was sent to {who} at {}", o.at));
            } else {
                facts.push(format!(
                    "{message} was sent to {who} at {}, {}",
                    o.at,
                    misses.join("; ")
                ));
            }
        }
        let mut customers: Vec<String> = sent.iter().map(|o| self.names.of(&o.customer)).collect();
        if let Some(t) = &to {
            customers.push(t.clone());
        }
        customers.sort();
        customers.dedup();
        if negated {
            return (matching == 0, hits, customers);
        }
        if sent.is_empty() {
            // Say why nothing went out: the decisions that held it back.
            for r in &self.sink.records {
                if let What::Send {
                    message: m,
                    outcome,
                    reason,
                    ..
                } = &r.what
                    && m == message
                    && to.as_ref().is_none_or(|t| self.names.of(&r.customer) == *t)
                {
                    let why = reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    facts.push(format!(
                        "{message} to {} was {}{why} at {}",
                        self.names.of(&r.customer),
                        outcome.name(),
                        r.at
                    ));
                }
            }
            if facts.is_empty() {
                facts.push(match &to {
                    Some(t) => format!("{message} was never sent to {t}"),
                    None => format!("{message} was never sent"),
                });
            }
        }
        (matching > 0, facts, customers)
    }

    fn exit(&self, flow: &str, reason: Option<&str>) -> (bool, Vec<String>, Vec<String>) {
        let mut ok = false;
        let mut facts = Vec::new();
        let mut customers = Vec::new();
        for r in &self.sink.records {
            let who = self.names.of(&r.customer);
            match &r.what {
                What::Exited {
                    flow: f,
                    reason: why,
                    ..
                } if f == flow => {
                    ok |= reason.is_none_or(|x| x == why);
                    facts.push(format!("{who} exited {flow} at {} ({why})", r.at));
                    customers.push(who);
                }
                What::Completed { flow: f, .. } if f == flow => {
                    facts.push(format!("{who} completed {flow} at {}", r.at));
                    customers.push(who);
                }
                What::Error {
                    flow: f, message, ..
                } if f == flow => {
                    facts.push(format!("{flow} failed for {who} at {}: {message}", r.at));
                    customers.push(who);
                }
                _ => {}
            }
        }
        if facts.is_empty() {
            let entered = self
                .sink
                .records
                .iter()
                .any(|r| matches!(&r.what, What::Entered { flow: f, .. } if f == flow));
            facts.push(if entered {
                format!("{flow} did not end")
            } else {
                format!("no one entered {flow}")
            });
        }
        customers.sort();
        customers.dedup();
        (ok, facts, customers)
    }

    fn audience(
        &self,
        name: &str,
        customer: &str,
        negated: bool,
    ) -> (bool, Vec<String>, Vec<String>) {
        let who = self.names.of(customer);
        let mut member = false;
        let mut facts = Vec::new();
        for m in &self.sink.memberships {
            if m.audience == name && self.names.of(&m.customer) == who {
                member = m.action == "add";
                let verb = if member { "added to" } else { "removed from" };
                facts.push(format!("{who} was {verb} {name:?} at {}", m.at));
            }
        }
        if facts.is_empty() {
            facts.push(format!("{who} was never added to {name:?}"));
        }
        facts.push(if member {
            format!("{who} is in {name:?} at the end")
        } else {
            format!("{who} is not in {name:?} at the end")
        });
        (member != negated, facts, vec![who])
    }

    fn profile(
        &self,
        bundle: &Bundle,
        customer: &str,
        field: &str,
        value: &nudge_syntax::ast::Expr,
    ) -> (bool, Vec<String>, Vec<String>) {
        let who = self.names.of(customer);
        let fail = |fact: String| (false, vec![fact], vec![who.clone()]);
        let Some(Some(profile)) = self.profiles.get(customer) else {
            return fail(format!("there is no customer {customer}"));
        };
        let schema = &bundle.schemas[bundle.profile as usize];
        let Some(i) = schema.fields.iter().position(|f| f.name == field) else {
            return fail(format!("the profile has no field `{field}`"));
        };
        let expected = to_json(value).and_then(|j| {
            nudge_runtime::decode::value(bundle, &schema.fields[i].ty, &j, field)
                .map_err(|e| e.to_string())
        });
        let actual = profile
            .fields
            .get(i)
            .cloned()
            .unwrap_or(nudge_bytecode::Value::None);
        match expected {
            Ok(e) if e == actual => (true, Vec::new(), Vec::new()),
            Ok(_) => fail(format!("{customer}.{field} is {actual}")),
            Err(e) => fail(format!("the expected value cannot be read: {e}")),
        }
    }

    fn conversion(&self, flow: &str, negated: bool) -> (bool, Vec<String>, Vec<String>) {
        let mut facts = Vec::new();
        let mut customers = Vec::new();
        for r in &self.sink.records {
            if let What::Converted { flow: f, event, .. } = &r.what
                && f == flow
            {
                let who = self.names.of(&r.customer);
                facts.push(format!("{who} converted in {flow} at {} ({event})", r.at));
                customers.push(who);
            }
        }
        let ok = facts.is_empty() == negated;
        if facts.is_empty() {
            facts.push(format!("no one converted in {flow}"));
        }
        customers.sort();
        customers.dedup();
        (ok, facts, customers)
    }

    fn decision(
        &self,
        message: &str,
        word: &str,
        reason: Option<&str>,
    ) -> (bool, Vec<String>, Vec<String>) {
        let Some(want) = outcome(word) else {
            return (
                false,
                vec![format!("`{word}` is not an outcome")],
                Vec::new(),
            );
        };
        let mut ok = false;
        let mut facts = Vec::new();
        let mut customers: BTreeMap<String, ()> = BTreeMap::new();
        for r in &self.sink.records {
            if let What::Send {
                message: m,
                outcome,
                reason: why,
                ..
            } = &r.what
                && m == message
            {
                ok |= *outcome == want && reason.is_none_or(|x| why.as_deref() == Some(x));
                let who = self.names.of(&r.customer);
                let why = why
                    .as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                facts.push(format!(
                    "{message} to {who} was {}{why} at {}",
                    outcome.name(),
                    r.at
                ));
                customers.insert(who, ());
            }
        }
        if facts.is_empty() {
            facts.push(format!("{message} was never decided: no flow reached it"));
        }
        (ok, facts, customers.into_keys().collect())
    }
}

/// A sent message's content on one line.
fn content(o: &nudge_channels::Outgoing) -> String {
    o.content
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k} = {s:?}"),
            other => format!("{k} = {other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
