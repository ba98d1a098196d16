//! What of a customer's history the rules of a bundle can read back, and for
//! how long: the compiler derives it when lowering and records it in the
//! bundle, so the runtime keeps exactly that and no more.
//!
//! Events are read back by three kinds of rule:
//! - a flow's instances, from their start for as long as they live: `exit on`,
//!   `wait for`, and the history builtins (`any_event` and friends) in the
//!   flow's code or in the messages it sends;
//! - a flow's goal, from the instance's start until its window closes (the
//!   watch outlives the instance): the goal event and the history builtins of
//!   the goal's condition;
//! - segments and top-level `let`s: over the whole history, or, when every
//!   one of their reads of a kind is a windowed builtin
//!   (`count_events_within` and friends) whose window is a constant (a
//!   duration literal or a `let` that is one), over the longest such window
//!   before now.
//!
//! Sends are read back by caps (over their windows), and by instances and
//! goals of their own flow (which the runtime keeps while those live).

use crate::bundle::{Bundle, SchemaKind, Unit};
use crate::instr::Instr;
use crate::value::Value;

/// What of the history a bundle's rules read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Who reads the events of each schema, one entry per
    /// [`Bundle::schemas`] entry, in the same order (empty for schemas that
    /// are not events).
    pub events: Vec<Readers>,
    /// How far back the longest cap counts sends, in seconds (0 without caps).
    pub sends: i64,
}

/// The rules that read back the stored events of one schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readers {
    /// A segment or a top-level `let` reads them other than through a
    /// constant window: the whole history.
    pub forever: bool,
    /// Flows (indexes in [`Bundle::flows`]) whose instances read them from
    /// the instance's start while it lives, ascending.
    pub instances: Vec<u32>,
    /// Flows whose goal reads them from the instance's start until the
    /// goal's window closes, ascending.
    pub goals: Vec<u32>,
    /// The longest constant window, in seconds, over which a segment or a
    /// top-level `let` reads them (`count_events_within(kind, 30d, ...)`):
    /// the events of that long before now; 0 when none does. A window is
    /// recorded as at least one second, since a zero one still reads the
    /// current second.
    pub within: i64,
}

impl Readers {
    /// Whether any rule reads these events back (otherwise they need not be stored).
    pub fn read(&self) -> bool {
        self.forever || self.within > 0 || !self.instances.is_empty() || !self.goals.is_empty()
    }
}

impl Retention {
    /// Works out who reads what in `bundle` (its own [`Bundle::retention`]
    /// is ignored). Flows, segments and lets are read from their code, so
    /// the answer is exact for any bundle, whoever wrote it.
    pub fn derive(bundle: &Bundle) -> Retention {
        let mut events = vec![Readers::default(); bundle.schemas.len()];
        let mut mark = |schema: u32, f: &mut dyn FnMut(&mut Readers)| {
            let is_event = bundle
                .schemas
                .get(schema as usize)
                .is_some_and(|s| s.kind == SchemaKind::Event);
            if is_event && let Some(r) = events.get_mut(schema as usize) {
                f(r);
            }
        };
        let whole = bundle
            .lets
            .iter()
            .chain(bundle.segments.iter())
            .map(|g| &g.unit);
        for unit in whole {
            for (s, window) in whole_reads(bundle, unit) {
                match window {
                    Some(w) => mark(s, &mut |r| r.within = r.within.max(w.max(1))),
                    None => mark(s, &mut |r| r.forever = true),
                }
            }
        }
        for (i, flow) in bundle.flows.iter().enumerate() {
            let i = i as u32;
            let mut read: Vec<u32> = flow.exit_on.iter().map(|r| r.event).collect();
            read.extend(
                flow.waits
                    .iter()
                    .flat_map(|w| w.events.iter().map(|e| e.event)),
            );
            let mut sent = Vec::new();
            for b in 0..flow.unit.blocks.len() as u32 {
                read.extend(history_reads(&flow.unit, b, false));
                for instr in &flow.unit.blocks[b as usize].code {
                    if let Instr::Send { message, .. } = instr {
                        sent.push(*message);
                    }
                }
            }
            sent.sort_unstable();
            sent.dedup();
            for m in sent {
                if let Some(msg) = bundle.messages.get(m as usize) {
                    for b in 0..msg.unit.blocks.len() as u32 {
                        read.extend(history_reads(&msg.unit, b, false));
                    }
                }
            }
            for s in read {
                mark(s, &mut |r| push_once(&mut r.instances, i));
            }
            if let Some(goal) = &flow.goal {
                let mut read = vec![goal.rule.event];
                if let Some(p) = goal.rule.predicate {
                    read.extend(history_reads(&flow.unit, p, true));
                }
                for s in read {
                    mark(s, &mut |r| push_once(&mut r.goals, i));
                }
            }
        }
        // `recommend` never suggests what the customer bought, and
        // `next_order_at` reads their reorder gaps: both read their whole
        // order history.
        if bundle.calls_recommendations()
            && let Some(orders) = bundle
                .schemas
                .iter()
                .position(|s| s.wire.as_deref() == Some("Order Completed"))
        {
            mark(orders as u32, &mut |r| r.forever = true);
        }
        let sends = bundle
            .policy
            .caps
            .iter()
            .chain(bundle.flows.iter().flat_map(|f| f.caps.iter()))
            .map(|c| c.per)
            .max()
            .unwrap_or(0);
        Retention { events, sends }
    }

    /// The readers of `schema`'s events (none when out of range).
    pub fn of(&self, schema: u32) -> Option<&Readers> {
        self.events.get(schema as usize)
    }

    /// Event schemas that some rule reads back.
    pub fn read(&self) -> impl Iterator<Item = u32> + '_ {
        self.events
            .iter()
            .enumerate()
            .filter(|(_, r)| r.read())
            .map(|(s, _)| s as u32)
    }

    /// Event schemas read by segments or `let`s within a constant window,
    /// with the longest window in seconds (those also read for ever included).
    pub fn windows(&self) -> impl Iterator<Item = (u32, i64)> + '_ {
        self.events
            .iter()
            .enumerate()
            .filter(|(_, r)| r.within > 0)
            .map(|(s, r)| (s as u32, r.within))
    }

    /// Event schemas read over the whole history.
    pub fn forever(&self) -> impl Iterator<Item = u32> + '_ {
        self.events
            .iter()
            .enumerate()
            .filter(|(_, r)| r.forever)
            .map(|(s, _)| s as u32)
    }
}

impl Bundle {
    /// Whether any code of the bundle calls `recommend`,
    /// `recommend_excluding` or `next_order_at`: what the engine learns of
    /// products and orders is read then only.
    pub fn calls_recommendations(&self) -> bool {
        recommends(self)
    }
}

fn recommends(bundle: &Bundle) -> bool {
    let called: Vec<u16> = bundle
        .builtins
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            matches!(
                n.as_str(),
                "recommend" | "recommend_excluding" | "next_order_at"
            )
        })
        .filter_map(|(i, _)| u16::try_from(i).ok())
        .collect();
    if called.is_empty() {
        return false;
    }
    let units = bundle
        .lets
        .iter()
        .chain(bundle.segments.iter())
        .map(|g| &g.unit)
        .chain(bundle.flows.iter().map(|f| &f.unit))
        .chain(bundle.messages.iter().map(|m| &m.unit));
    for unit in units {
        for block in &unit.blocks {
            for instr in &block.code {
                if let Instr::Call { builtin, .. } = instr
                    && called.contains(builtin)
                {
                    return true;
                }
            }
        }
    }
    false
}

/// Adds `x` to an ascending list unless it holds it already (flows are
/// visited in order, so it is only ever compared with the last).
fn push_once(list: &mut Vec<u32>, x: u32) {
    if list.last() != Some(&x) {
        list.push(x);
    }
}

/// The event schemas that block `block` of `unit` reads with the history
/// builtins; with `follow`, also those of the lambdas it passes on (a
/// condition's own blocks, as opposed to every block of the unit).
fn history_reads(unit: &Unit, block: u32, follow: bool) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![block];
    let mut seen = vec![false; unit.blocks.len()];
    while let Some(b) = todo.pop() {
        let Some(done) = seen.get_mut(b as usize) else {
            continue;
        };
        if std::mem::replace(done, true) {
            continue;
        }
        for instr in &unit.blocks[b as usize].code {
            match instr {
                Instr::CallEvent { event, block, .. } => {
                    out.push(*event);
                    if follow && let Some(l) = block {
                        todo.push(*l);
                    }
                }
                Instr::CallLambda { block, .. } if follow => todo.push(*block),
                _ => {}
            }
        }
    }
    out
}

/// Every (event schema, window in seconds) that a segment or a top-level
/// `let` of `bundle` reads within a constant window, each pair once, in
/// order: a membership over such reads can change with time alone only
/// as one of those events leaves its window, which is when a runtime
/// looks at a `trigger entering` segment again.
pub fn constant_windows(bundle: &Bundle) -> Vec<(u32, i64)> {
    let mut out: Vec<(u32, i64)> = bundle
        .lets
        .iter()
        .map(|l| &l.unit)
        .chain(bundle.segments.iter().map(|g| &g.unit))
        .flat_map(|unit| whole_reads(bundle, unit))
        .filter_map(|(s, w)| Some((s, w?.max(1))))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The event schemas that the code of a segment or `let` reads with the
/// history builtins, each with its window in seconds when the read is a
/// windowed builtin whose window is a constant (`None`: the whole history).
fn whole_reads(bundle: &Bundle, unit: &Unit) -> Vec<(u32, Option<i64>)> {
    let mut out = Vec::new();
    for block in &unit.blocks {
        for (pc, instr) in block.code.iter().enumerate() {
            let Instr::CallEvent { builtin, event, .. } = instr else {
                continue;
            };
            let windowed = bundle
                .builtins
                .get(usize::from(*builtin))
                .and_then(|n| nudge_stdlib::Builtin::from_name(n))
                .is_some_and(|b| b.windowed());
            let window = if windowed {
                constant_window(bundle, unit, &block.code, pc)
            } else {
                None
            };
            out.push((*event, window));
        }
    }
    out
}

/// The window a windowed builtin at `pc` of `code` is called with, when
/// the code cannot give it anything but one constant duration: the
/// instruction just before pushes it (a constant, or a `let` that is one)
/// and no jump lands on the call, so no other path pushes another.
fn constant_window(bundle: &Bundle, unit: &Unit, code: &[Instr], pc: usize) -> Option<i64> {
    let landed_on = code.iter().any(|i| match i {
        Instr::Jump(t) | Instr::JumpIfFalse(t) | Instr::JumpIfTrue(t) | Instr::JumpIfNotNone(t) => {
            *t as usize == pc
        }
        // Flow tables jump too; no segment or `let` holds one.
        Instr::Split(_) | Instr::WaitFor(_) => true,
        _ => false,
    });
    if landed_on {
        return None;
    }
    match code.get(pc.checked_sub(1)?)? {
        Instr::Const(c) => match unit.consts.get(*c as usize)? {
            Value::Duration(d) => Some(*d),
            _ => None,
        },
        Instr::LoadLet(n) => constant_let(bundle, *n, 0),
        _ => None,
    }
}

/// The duration `let` `n` is, when its code is that constant alone (or
/// another such `let`); `depth` stops a cycle, which the checker refuses.
fn constant_let(bundle: &Bundle, n: u32, depth: u32) -> Option<i64> {
    if depth > 16 {
        return None;
    }
    let unit = &bundle.lets.get(n as usize)?.unit;
    match unit.blocks.first()?.code.as_slice() {
        [Instr::Const(c), Instr::Return] => match unit.consts.get(*c as usize)? {
            Value::Duration(d) => Some(*d),
            _ => None,
        },
        [Instr::LoadLet(m), Instr::Return] => constant_let(bundle, *m, depth + 1),
        _ => None,
    }
}
