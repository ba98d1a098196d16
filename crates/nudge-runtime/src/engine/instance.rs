//! Flow instances: their stored state and how they run, wait and end.

use std::sync::Arc;

use nudge_bytecode::{Record, Trigger, Value};
use nudge_vm::{Frame, Scope, UnitRef, Yield, bucket};
use serde::{Deserialize, Serialize};

use super::customer::{Ctx, GoalWatch, Seen};
use super::{End, Machine, Tables};
use crate::millis::ms;
use crate::record::{EntryReason, ExitReason, What};
use crate::timers::Wake;

/// One customer's journey through one flow: plain data, so it can be stored
/// and resumed by another process running the same flow version.
///
/// A million of these may sleep at once, so the record is packed into 96
/// bytes: the wait is kept as a kind, an operand and an instant, the locals
/// in an exactly sized slice, and what few instances need (a deferred
/// send's arguments, the exit reason, a block other than the steps) in a
/// side box. Stored, it has the plain shape ([`Waiting`] and a [`Frame`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "Stored", from = "Stored")]
pub struct Instance {
    /// The release whose bundle runs it: 0 is the bundle the engine was made
    /// with, then one per deploy (see [`Machine::deploy`]).
    pub release: u32,
    /// The flow's index in its release's bundle.
    pub flow: u32,
    /// The flow's version hash (shared with every instance of that version,
    /// so it costs one pointer per instance): the version it started on, or
    /// the one a deploy carried it to.
    pub version: Version,
    /// The customer (the identity graph's root).
    pub customer: u32,
    /// This customer's instance number in this flow, from 1.
    pub number: u32,
    /// When it started.
    pub started: i64,
    /// The event that started it when a record (every event is); `none`
    /// for schedule, date and segment triggers. See [`Instance::trigger`].
    trigger: Option<Arc<Record>>,
    /// The trigger event's arrival number, so it never counts as its own exit.
    pub trigger_seq: u64,
    /// The next instruction to run in [`Instance::block`].
    pc: u32,
    /// The local slots that survive a sleep, without the spare capacity a
    /// growing vector keeps.
    locals: Box<[Value]>,
    /// The step it is on (idempotency keys name it).
    pub step: u16,
    /// What it waits for; with `operand` and `due`, a [`Waiting`] unpacked.
    wait: Kind,
    /// The awaited `wait for`'s index, or the deferred message.
    operand: u32,
    /// When the sleep ends, the `wait for` gives up or the send is retried.
    due: i64,
    /// Bumped at each state change, so stale timers are ignored.
    pub generation: u32,
    /// Held out: the instance runs but nothing is sent.
    pub holdout: bool,
    /// What few instances need; `None` when all of it is unset.
    extra: Option<Box<Extra>>,
}

/// The kind of [`Waiting`], stored in a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Running,
    Sleep,
    Event,
    Send,
}

/// The rarely set part of an instance, out of line.
#[derive(Clone, Debug, Default, PartialEq)]
struct Extra {
    /// The block being run when not the steps (the `on exit` block).
    block: u32,
    /// Set while the `on exit` block runs: how the instance is ending.
    exiting: Option<End>,
    /// A deferred send's arguments.
    args: Vec<Value>,
    /// A trigger that is neither `none` nor a record.
    trigger: Option<Value>,
    /// The customer's display id when the instance started, kept once a
    /// merge gave the customer another: idempotency keys name it, so they
    /// never change and never collide with the merged identity's.
    origin: Option<Arc<str>>,
    /// Fingerprints of the idempotency keys of the sends it made. A key
    /// names the instance (flow, customer, number), so no other instance
    /// can make it, and it is forgotten with the instance.
    sent: Vec<u128>,
}

/// A flow version's hash, shared by every instance on that version: a thin
/// pointer, which halves what the shared string costs each instance.
#[derive(Clone, PartialEq, Eq)]
pub struct Version(Arc<String>);

impl std::ops::Deref for Version {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl From<&str> for Version {
    fn from(s: &str) -> Version {
        Version(Arc::new(s.to_string()))
    }
}

/// How an instance is stored: the plain shape, field for field what
/// [`Instance`] held before it was packed, so stored instances read back.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default)]
    release: u32,
    flow: u32,
    version: String,
    customer: u32,
    number: u32,
    started: i64,
    trigger: Value,
    trigger_seq: u64,
    frame: Frame,
    step: u16,
    state: Waiting,
    generation: u32,
    holdout: bool,
    exiting: Option<End>,
    #[serde(default)]
    origin: Option<String>,
    /// Layout 7 on: before it, one set held every send's key.
    #[serde(
        deserialize_with = "super::checkpoint::layout::since::<7, _, _>",
        skip_serializing_if = "super::checkpoint::layout::before::<7, _>"
    )]
    sent: Vec<u128>,
}

impl From<Instance> for Stored {
    fn from(i: Instance) -> Stored {
        Stored {
            release: i.release,
            flow: i.flow,
            version: i.version.to_string(),
            customer: i.customer,
            number: i.number,
            started: i.started,
            trigger: i.trigger(),
            trigger_seq: i.trigger_seq,
            frame: i.frame(),
            step: i.step,
            state: i.state(),
            generation: i.generation,
            holdout: i.holdout,
            exiting: i.exiting().cloned(),
            origin: i.origin().map(str::to_string),
            sent: i.extra.map(|e| e.sent).unwrap_or_default(),
        }
    }
}

impl From<Stored> for Instance {
    fn from(s: Stored) -> Instance {
        let mut i = Instance::new(
            s.release,
            s.flow,
            Version(Arc::new(s.version)),
            s.customer,
            s.number,
            s.started,
            s.trigger,
            s.trigger_seq,
            s.generation,
            s.holdout,
        );
        i.resume(s.frame);
        i.step = s.step;
        i.set_state(s.state);
        if let Some(reason) = s.exiting {
            i.extra_mut().exiting = Some(reason);
        }
        if let Some(origin) = s.origin {
            i.extra_mut().origin = Some(origin.into());
        }
        if !s.sent.is_empty() {
            i.extra_mut().sent = s.sent;
        }
        i
    }
}

impl Instance {
    /// Moves every value the instance holds (trigger, locals, a deferred
    /// send's arguments) onto new schemas, for a deploy that changed them.
    pub(super) fn migrate_values(&mut self, f: &dyn Fn(&Value) -> Value) {
        if let Some(t) = &self.trigger {
            self.trigger = match f(&Value::Record(t.clone())) {
                Value::Record(r) => Some(r),
                _ => None,
            };
        }
        for v in self.locals.iter_mut() {
            *v = f(v);
        }
        if let Some(extra) = &mut self.extra {
            for v in &mut extra.args {
                *v = f(v);
            }
            if let Some(t) = &mut extra.trigger {
                *t = f(t);
            }
        }
    }

    /// A new instance at the start of its flow's steps, running.
    #[allow(clippy::too_many_arguments)]
    fn new(
        release: u32,
        flow: u32,
        version: Version,
        customer: u32,
        number: u32,
        started: i64,
        trigger: Value,
        trigger_seq: u64,
        generation: u32,
        holdout: bool,
    ) -> Instance {
        let mut i = Instance {
            release,
            flow,
            version,
            customer,
            number,
            started,
            trigger: None,
            trigger_seq,
            pc: 0,
            locals: Box::default(),
            step: 0,
            wait: Kind::Running,
            operand: 0,
            due: 0,
            generation,
            holdout,
            extra: None,
        };
        match trigger {
            Value::None => {}
            Value::Record(r) => i.trigger = Some(r),
            other => i.extra_mut().trigger = Some(other),
        }
        i
    }

    /// The event that started it (`none` for schedule, date and segment triggers).
    pub fn trigger(&self) -> Value {
        match (&self.trigger, &self.extra) {
            (Some(r), _) => Value::Record(r.clone()),
            (None, Some(e)) => e.trigger.clone().unwrap_or(Value::None),
            (None, None) => Value::None,
        }
    }

    /// What it waits for.
    pub fn state(&self) -> Waiting {
        match self.wait {
            Kind::Running => Waiting::Running,
            Kind::Sleep => Waiting::Sleep { until: self.due },
            Kind::Event => Waiting::Event {
                wait: self.operand as u16,
                deadline: self.due,
            },
            Kind::Send => Waiting::Send {
                message: self.operand,
                args: self
                    .extra
                    .as_ref()
                    .map(|e| e.args.clone())
                    .unwrap_or_default(),
                until: self.due,
            },
        }
    }

    /// Where it is in its release's code.
    pub fn frame(&self) -> Frame {
        Frame {
            block: self.block(),
            pc: self.pc,
            locals: self.locals.to_vec(),
        }
    }

    /// Set while the `on exit` block runs: the reason it is ending (empty
    /// when it completed).
    pub(crate) fn exiting(&self) -> Option<&End> {
        self.extra.as_ref()?.exiting.as_ref()
    }

    /// The block being run: 0 for the steps, else the `on exit` block.
    pub(super) fn block(&self) -> u32 {
        self.extra.as_ref().map_or(0, |e| e.block)
    }

    /// The next instruction to run.
    pub(super) fn pc(&self) -> u32 {
        self.pc
    }

    /// The local slots that survive a sleep.
    pub(super) fn locals(&self) -> &[Value] {
        &self.locals
    }

    /// The `wait for` it is parked in, if any.
    pub(super) fn event_wait(&self) -> Option<u16> {
        (self.wait == Kind::Event).then_some(self.operand as u16)
    }

    /// Points a parked `wait for` at another wait (a deploy renumbered it).
    pub(super) fn set_event_wait(&mut self, wait: u16) {
        if self.wait == Kind::Event {
            self.operand = u32::from(wait);
        }
    }

    /// Parks it (or marks it running).
    pub(super) fn set_state(&mut self, state: Waiting) {
        let args = match state {
            Waiting::Running => {
                (self.wait, self.operand, self.due) = (Kind::Running, 0, 0);
                Vec::new()
            }
            Waiting::Sleep { until } => {
                (self.wait, self.operand, self.due) = (Kind::Sleep, 0, until);
                Vec::new()
            }
            Waiting::Event { wait, deadline } => {
                (self.wait, self.operand, self.due) = (Kind::Event, u32::from(wait), deadline);
                Vec::new()
            }
            Waiting::Send {
                message,
                args,
                until,
            } => {
                (self.wait, self.operand, self.due) = (Kind::Send, message, until);
                args
            }
        };
        if !args.is_empty() {
            self.extra_mut().args = args;
        } else if let Some(e) = &mut self.extra {
            e.args = Vec::new();
            self.tidy();
        }
    }

    /// What it waited for, leaving it running.
    pub(super) fn take_state(&mut self) -> Waiting {
        let args = match &mut self.extra {
            Some(e) if self.wait == Kind::Send => std::mem::take(&mut e.args),
            _ => Vec::new(),
        };
        let state = match self.wait {
            Kind::Send => Waiting::Send {
                message: self.operand,
                args,
                until: self.due,
            },
            _ => self.state(),
        };
        self.set_state(Waiting::Running);
        state
    }

    /// Moves its frame out for the VM to run; [`Instance::resume`] puts it back.
    pub(super) fn take_frame(&mut self) -> Frame {
        Frame {
            block: self.block(),
            pc: self.pc,
            locals: std::mem::take(&mut self.locals).into_vec(),
        }
    }

    /// Sets where it resumes; the locals are stored without spare capacity.
    pub(super) fn resume(&mut self, frame: Frame) {
        self.pc = frame.pc;
        self.locals = frame.locals.into_boxed_slice();
        if frame.block != self.block() {
            self.extra_mut().block = frame.block;
            self.tidy();
        }
    }

    /// Stores `value` in local slot `slot`, growing the locals to reach it.
    pub(super) fn set_local(&mut self, slot: usize, value: Value) {
        if self.locals.len() <= slot {
            let mut locals = std::mem::take(&mut self.locals).into_vec();
            locals.resize(slot + 1, Value::None);
            self.locals = locals.into_boxed_slice();
        }
        if let Some(local) = self.locals.get_mut(slot) {
            *local = value;
        }
    }

    /// Marks it ending for `reason`.
    pub(super) fn set_exiting(&mut self, end: End) {
        self.extra_mut().exiting = Some(end);
    }

    /// The display id its idempotency keys name, when a merge changed the
    /// customer's (else the customer's own).
    pub fn origin(&self) -> Option<&str> {
        self.extra.as_ref()?.origin.as_deref()
    }

    /// Keeps `key` as the id its idempotency keys name, unless one is kept already.
    pub(super) fn pin_origin(&mut self, key: &str) {
        let extra = self.extra_mut();
        if extra.origin.is_none() {
            extra.origin = Some(key.into());
        }
    }

    /// Whether it made a send whose idempotency key has fingerprint `fp`.
    pub(super) fn has_sent(&self, fp: u128) -> bool {
        self.extra.as_ref().is_some_and(|e| e.sent.contains(&fp))
    }

    /// The fingerprints of the keys of the sends it made.
    #[cfg(test)]
    pub(super) fn sent(&self) -> &[u128] {
        self.extra.as_ref().map_or(&[], |e| &e.sent)
    }

    /// Notes a send made with the idempotency key of fingerprint `fp`.
    pub(super) fn note_sent(&mut self, fp: u128) {
        self.extra_mut().sent.push(fp);
    }

    /// Forgets the send of fingerprint `fp` (the host could not hand it
    /// over); returns whether it was one of this instance's.
    pub(super) fn unnote_sent(&mut self, fp: u128) -> bool {
        let Some(extra) = &mut self.extra else {
            return false;
        };
        let Some(i) = extra.sent.iter().rposition(|&k| k == fp) else {
            return false;
        };
        extra.sent.remove(i);
        self.tidy();
        true
    }

    /// The side box, made when first needed.
    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Frees the side box when nothing in it is set, so that equal
    /// instances compare equal whatever they went through.
    fn tidy(&mut self) {
        if self.extra.as_deref() == Some(&Extra::default()) {
            self.extra = None;
        }
    }
}

/// What a parked instance is waiting for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Waiting {
    /// Nothing: it is running.
    Running,
    /// The clock (`wait`, `wait until`).
    Sleep {
        /// When it wakes.
        until: i64,
    },
    /// An event (`wait for`), or the timeout.
    Event {
        /// Index in the flow's `waits`.
        wait: u16,
        /// When it gives up and binds `none`.
        deadline: i64,
    },
    /// A deferred send, tried again at `until`.
    Send {
        /// The message.
        message: u32,
        /// Its arguments.
        args: Vec<Value>,
        /// When it is tried again.
        until: i64,
    },
}

/// Instance slots in fixed-size pages. The table grows a page at a time, so
/// it never holds more than one page of unused slots, where a growing
/// vector keeps up to as many spare slots as used ones (and copies them all
/// to grow).
#[derive(Default, Serialize, Deserialize)]
pub(super) struct Slots {
    pages: Vec<Box<[Option<Instance>]>>,
    len: usize,
    /// Slots changed since the store last took them.
    #[serde(skip)]
    marks: super::marks::Marks,
}

/// Slots per page: 24 KiB pages, small enough that a few instances do not
/// pay for many empty slots.
const PAGE: usize = 256;

impl Slots {
    /// How many slots there are (live or free).
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds a slot holding `inst`; returns its number.
    pub(super) fn push(&mut self, inst: Instance) -> u32 {
        if self.len == self.pages.len() * PAGE {
            self.pages.push((0..PAGE).map(|_| None).collect());
        }
        let id = self.len as u32;
        self.len += 1;
        self.put(id, inst);
        id
    }

    /// Checks that a stored table holds together: full pages, and no more
    /// slots than they hold.
    pub(super) fn check(&self) -> Result<(), String> {
        if let Some((i, page)) = self.pages.iter().enumerate().find(|(_, p)| p.len() != PAGE) {
            return Err(format!(
                "page {i} of the instance slots has {} slots, not {PAGE}",
                page.len()
            ));
        }
        if self.len > self.pages.len() * PAGE {
            return Err(format!(
                "{} instance slots in {} pages of {PAGE}",
                self.len,
                self.pages.len()
            ));
        }
        Ok(())
    }

    /// Slot `id`, if the table has it.
    fn slot(&self, id: u32) -> Option<&Option<Instance>> {
        let id = id as usize;
        if id >= self.len {
            return None;
        }
        self.pages.get(id / PAGE)?.get(id % PAGE)
    }

    /// Slot `id`, to change, if the table has it.
    fn slot_mut(&mut self, id: u32) -> Option<&mut Option<Instance>> {
        let id = id as usize;
        if id >= self.len {
            return None;
        }
        self.pages.get_mut(id / PAGE)?.get_mut(id % PAGE)
    }

    /// The live instance in slot `id`: none for a free slot, or for a
    /// number the table does not have (a timer's for an instance long gone
    /// reads as one that ended).
    pub(super) fn get(&self, id: u32) -> Option<&Instance> {
        self.slot(id)?.as_ref()
    }

    /// [`Slots::get`], to change.
    pub(super) fn get_mut(&mut self, id: u32) -> Option<&mut Instance> {
        self.marks.mark(id);
        self.slot_mut(id)?.as_mut()
    }

    /// Takes the live instance out of slot `id`, leaving the slot free.
    pub(super) fn take(&mut self, id: u32) -> Option<Instance> {
        self.marks.mark(id);
        self.slot_mut(id)?.take()
    }

    /// Whether slot `id` is one of the table's and free.
    pub(super) fn is_free(&self, id: u32) -> bool {
        matches!(self.slot(id), Some(None))
    }

    /// Puts `inst` in slot `id`, which must be one of the table's: the slot
    /// just added by [`Slots::push`], or one that [`Slots::take`] emptied
    /// (the engine's free list holds those; a restored checkpoint's is
    /// checked).
    #[allow(clippy::indexing_slicing)]
    pub(super) fn put(&mut self, id: u32, inst: Instance) {
        self.marks.mark(id);
        let id = id as usize;
        debug_assert!(id < self.len, "slot {id} of {}", self.len);
        self.pages[id / PAGE][id % PAGE] = Some(inst);
    }

    /// Marks every live slot changed (their rows are written again).
    pub(super) fn mark_live(&mut self) {
        for id in 0..self.len as u32 {
            if matches!(self.slot(id), Some(Some(_))) {
                self.marks.mark(id);
            }
        }
    }

    /// Every slot, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Option<Instance>> {
        self.pages.iter().flat_map(|p| p.iter()).take(self.len)
    }

    /// Every slot, in order, to change (for tests that damage a state:
    /// the engine changes slots one at a time, so that each is marked).
    #[cfg(test)]
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Option<Instance>> {
        self.marks.mark_all();
        self.pages
            .iter_mut()
            .flat_map(|p| p.iter_mut())
            .take(self.len)
    }
}

impl Slots {
    /// A table of `len` slots holding `live` (slot, instance) pairs, the
    /// others free; a slot beyond `len` or named twice is an error.
    pub(super) fn from_rows(len: u32, live: Vec<(u32, Instance)>) -> Result<Slots, String> {
        let mut slots = Slots::default();
        let pages = (len as usize).div_ceil(PAGE);
        slots.pages = (0..pages)
            .map(|_| (0..PAGE).map(|_| None).collect())
            .collect();
        slots.len = len as usize;
        for (id, inst) in live {
            match slots.slot_mut(id) {
                Some(s @ None) => *s = Some(inst),
                Some(Some(_)) => return Err(format!("instance slot {id} is stored twice")),
                None => return Err(format!("instance slot {id} of a table of {len}")),
            }
        }
        Ok(slots)
    }

    /// Starts following which slots change (all or none counted as changed).
    pub(super) fn start_marks(&mut self, all: bool) {
        self.marks.start(all);
    }

    /// The slots changed since the last take.
    pub(super) fn take_marks(&mut self) -> super::marks::Taken {
        self.marks.take()
    }
}

/// How much of its trigger event a flow's code reads.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum TriggerUse {
    /// Never `trigger` at all.
    Nothing,
    /// Only these fields (by index in the trigger's schema).
    Fields(Vec<bool>),
    /// The whole record (passed on, compared, or read in a way not followed).
    Whole,
}

impl TriggerUse {
    /// Reads a flow's code: every `load_trigger` followed by a field load
    /// marks that field; any other use needs the whole record.
    pub(super) fn of(flow: &nudge_bytecode::Flow, bundle: &nudge_bytecode::Bundle) -> TriggerUse {
        let width = match &flow.trigger {
            Trigger::Event(rule) => bundle
                .schemas
                .get(rule.event as usize)
                .map_or(0, |s| s.fields.len()),
            _ => 0,
        };
        let mut used = vec![false; width];
        let mut any = false;
        for block in &flow.unit.blocks {
            for (i, instr) in block.code.iter().enumerate() {
                if *instr != nudge_bytecode::Instr::LoadTrigger {
                    continue;
                }
                any = true;
                let slot = match block.code.get(i + 1) {
                    Some(
                        nudge_bytecode::Instr::LoadField { field, .. }
                        | nudge_bytecode::Instr::LoadFieldOpt { field, .. },
                    ) => used.get_mut(usize::from(*field)),
                    _ => None,
                };
                match slot {
                    Some(u) => *u = true,
                    None => return TriggerUse::Whole,
                }
            }
        }
        // `recommend` leaves out the trigger's products, in the flow's
        // code and in the messages it sends.
        if super::recs::recommends(flow, bundle)
            && let Trigger::Event(rule) = &flow.trigger
            && let Some(schema) = bundle.schemas.get(rule.event as usize)
        {
            for (f, u) in schema.fields.iter().zip(used.iter_mut()) {
                if f.name == "product_id" || f.name == "products" {
                    *u = true;
                    any = true;
                }
            }
        }
        if any {
            TriggerUse::Fields(used)
        } else {
            TriggerUse::Nothing
        }
    }
}

/// Whether an instance should go on running after a wake-up.
pub(super) enum Next {
    Run,
    Park,
}

impl<'b> Machine<'b> {
    /// Starts an instance of the newest release's flow `f` for customer `c`
    /// if the entry rule allows.
    pub(super) fn try_enter(
        &mut self,
        c: u32,
        f: u32,
        trigger: Value,
        trigger_seq: u64,
        why: String,
        start: i64,
    ) {
        let r = self.current();
        let flow = self.flow_of(r, f);
        // Event time: an instance lives on its trigger's clock, so a trigger
        // that arrives late still counts its waits and its exits from when
        // it happened, not from when it was heard of.
        let now = start;
        // Entry rules count by flow key: instances of every release of the flow.
        let key = self.key_of(r, f);
        let mem = super::known_mut(&mut self.customers, c).flow(key);
        let refused = match flow.entry {
            nudge_bytecode::Entry::Always => None,
            nudge_bytecode::Entry::Single => (mem.live > 0).then_some(EntryReason::AlreadyActive),
            nudge_bytecode::Entry::Once => (mem.entries > 0).then_some(EntryReason::EnteredBefore),
            nudge_bytecode::Entry::OncePer(d) => {
                if mem.live > 0 {
                    Some(EntryReason::AlreadyActive)
                } else if mem
                    .last_entry()
                    .is_some_and(|t| now < t.saturating_add(ms(d)))
                {
                    Some(EntryReason::EnteredWithinWindow)
                } else {
                    None
                }
            }
        };
        // Keep only what the flow's code reads of its trigger: a sleeping
        // instance should not carry a whole product list it never looks at.
        let trigger = match &super::rel(&self.releases, r).flow(f).trigger_use {
            TriggerUse::Nothing => Value::None,
            TriggerUse::Fields(used) => match trigger {
                Value::Record(r) => Value::Record(std::sync::Arc::new(nudge_bytecode::Record {
                    schema: r.schema,
                    fields: r
                        .fields
                        .iter()
                        .zip(used)
                        .map(|(v, &keep)| if keep { v.clone() } else { Value::None })
                        .collect(),
                })),
                other => other,
            },
            TriggerUse::Whole => trigger,
        };
        if let Some(reason) = refused {
            self.stats.flow_mut(&flow.name).not_entered += 1;
            self.record(
                c,
                What::NotEntered {
                    flow: flow.name.clone(),
                    reason,
                    late_by: None,
                    due: None,
                },
            );
            return;
        }
        mem.entries += 1;
        mem.live += 1;
        mem.set_last_entry(Some(now));
        let number = mem.entries;
        let cust = super::known(&self.customers, c);
        let holdout = flow.holdout.is_some_and(|p| {
            let share = (p * rust_decimal::Decimal::from(100)).trunc();
            let share: u32 = share.try_into().unwrap_or(0);
            bucket(&cust.key, &format!("{}/holdout", flow.name)) < share
        });
        if flow.goal.is_some() {
            super::known_mut(&mut self.customers, c)
                .rare_mut()
                .goals
                .push(GoalWatch {
                    release: r,
                    flow: f,
                    instance: number,
                    entered: now,
                    trigger: trigger.clone(),
                    holdout,
                    arms: Vec::new(),
                });
        }
        let inst = Instance::new(
            r,
            f,
            super::rel(&self.releases, r).flow(f).version.clone(),
            c,
            number,
            now,
            trigger,
            trigger_seq,
            self.next_generation(),
            holdout,
        );
        let stats = self.stats.flow_mut(&flow.name);
        stats.entered += 1;
        if holdout {
            stats.held_out += 1;
        }
        self.record(
            c,
            What::Entered {
                flow: flow.name.clone(),
                version: flow.version.clone(),
                instance: number,
                trigger: why,
                holdout,
            },
        );
        let id = self.alloc(inst);
        super::known_mut(&mut self.customers, c).instances.push(id);
        if start < self.now {
            // Events stamped since the late trigger may already be here (a
            // purchase that overtook its checkout): they end it at once.
            self.recheck_history(id);
            if self.instances.get(id).is_none() {
                return;
            }
        }
        self.run(id, start);
    }

    /// A timer for instance `id`, due at `due`, went off.
    pub(super) fn wake(&mut self, id: u32, generation: u32, due: i64) {
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        if inst.generation != generation {
            return;
        }
        self.generations += 1;
        inst.generation = self.generations;
        match inst.take_state() {
            Waiting::Running | Waiting::Sleep { .. } => self.run(id, due),
            Waiting::Event { wait, .. } => {
                self.bind_wait(id, wait, Value::None);
                self.run(id, due);
            }
            Waiting::Send { message, args, .. } => {
                if let Next::Run = self.send(id, message, args) {
                    self.run(id, due);
                }
            }
        }
    }

    fn bind_wait(&mut self, id: u32, wait: u16, value: Value) {
        let Some(inst) = self.instances.get(id) else {
            return;
        };
        let flow = self.flow_of(inst.release, inst.flow);
        if let Some(slot) = flow.waits.get(wait as usize).and_then(|w| w.bind)
            && let Some(inst) = self.instances.get_mut(id)
        {
            inst.set_local(slot as usize, value);
        }
    }

    /// Whether `seen` satisfies the `wait for` instance `id` is parked in; if
    /// so, binds it and runs the instance on.
    pub(super) fn try_wait_match(&mut self, id: u32, seen: &Seen) -> bool {
        let Some(inst) = self.instances.get(id) else {
            return false;
        };
        let Some(wait) = inst.event_wait() else {
            return false;
        };
        if seen.at < inst.started || seen.seq == inst.trigger_seq {
            return false;
        }
        match self.wait_accepts(id, wait, seen) {
            Ok(Some(value)) => {
                self.generations += 1;
                if let Some(inst) = self.instances.get_mut(id) {
                    inst.generation = self.generations;
                    inst.set_state(Waiting::Running);
                }
                self.bind_wait(id, wait, value);
                self.run(id, seen.at);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.end(id, End::Error(e.to_string()));
                true
            }
        }
    }

    /// The value a `wait for` binds for this event, if the event qualifies.
    fn wait_accepts(
        &mut self,
        id: u32,
        wait: u16,
        seen: &Seen,
    ) -> Result<Option<Value>, nudge_vm::VmError> {
        let Some(inst) = self.instances.get(id) else {
            return Ok(None);
        };
        let r = inst.release;
        let flow = self.flow_of(r, inst.flow);
        let Some(w) = flow.waits.get(wait as usize) else {
            return Ok(None);
        };
        let Some(we) = w.events.iter().find(|e| e.event == seen.schema) else {
            return Ok(None);
        };
        let value = match (&we.project, &seen.value) {
            (Some(fields), Value::Record(r)) => {
                Value::Record(std::sync::Arc::new(nudge_bytecode::Record {
                    schema: w.schema,
                    fields: fields
                        .iter()
                        .map(|&i| r.fields.get(i as usize).cloned().unwrap_or(Value::None))
                        .collect(),
                }))
            }
            _ => seen.value.clone(),
        };
        let Some(p) = w.predicate else {
            return Ok(Some(value));
        };
        let (f, c, trigger, since) = (inst.flow, inst.customer, inst.trigger(), inst.started);
        let mut locals = inst.locals().to_vec();
        let ok = self.predicate(
            c,
            r,
            UnitRef::Flow(f),
            p,
            Some(&trigger),
            Some(&value),
            since,
            &mut locals,
        )?;
        Ok(ok.then_some(value))
    }

    /// Runs instance `id` until it parks or ends. `clock` is the instance's
    /// own time: when what it resumes for happened (its trigger, the end of
    /// its wait, the awaited event). It equals the engine's clock unless
    /// that happened before it arrived; waits count from it, so they end at
    /// the same instant however late their start was heard of.
    pub(super) fn run(&mut self, id: u32, clock: i64) {
        let clock = clock.min(self.now);
        loop {
            let Some(mut inst) = self.instances.take(id) else {
                return;
            };
            let c = inst.customer;
            let tz = self.zone(c, None);
            let cust = super::known_mut(&mut self.customers, c);
            let ctx = Ctx {
                customer: cust,
                now: clock,
                tz,
                writes: Vec::new(),
            };
            let trigger = inst.trigger();
            let scope = Scope {
                trigger: Some(&trigger),
                event: None,
                since: inst.started,
            };
            let r = inst.release;
            let mut frame = inst.take_frame();
            let release = super::rel(&self.releases, r);
            let mut host = super::recs::RecCtx::new(
                ctx,
                release.bundle,
                &self.learned,
                &self.config.catalogue,
                Some(&trigger),
            );
            host.splits = Some(&self.splits);
            let result = release
                .vm
                .run_steps(inst.flow, &mut frame, &scope, &mut host);
            let in_steps = frame.block == 0;
            inst.resume(frame);
            let writes = std::mem::take(&mut host.ctx.writes);
            let served = std::mem::take(&mut host.served);
            let (f, number) = (inst.flow, inst.number);
            let bundle = self.bundle_of(r);
            let flow = self.flow_of(r, f);
            for picks in served {
                self.record(c, super::recs::served(&flow.name, &picks));
            }
            if !writes.is_empty() {
                self.dirty.push(c);
                let schema = bundle.profile_schema();
                for (field, value) in writes {
                    let name = schema
                        .fields
                        .get(field as usize)
                        .map_or_else(|| format!("#{field}"), |f| f.name.clone());
                    self.record(
                        c,
                        What::Profile {
                            flow: flow.name.clone(),
                            field: name,
                            value: value.to_string(),
                        },
                    );
                }
            }
            // Back in the slot `take` emptied above.
            self.instances.put(id, inst);
            let y = match result {
                Ok(y) => y,
                Err(e) => return self.end(id, End::Error(e.to_string())),
            };
            match y {
                Yield::Step(n) => {
                    if let Some(inst) = self.instances.get_mut(id) {
                        inst.step = n;
                    }
                    if in_steps && self.standing_exit(id) {
                        return;
                    }
                }
                Yield::Sleep(_) | Yield::SleepFor(_) => {
                    // `wait 30s` counts from the instance's own clock, to the
                    // millisecond; `wait until` names a whole second.
                    let until = match y {
                        Yield::SleepFor(d) => clock.saturating_add(ms(d)),
                        Yield::Sleep(t) => ms(t),
                        _ => unreachable!("matched above"),
                    };
                    // A wait whose end has passed by the engine's clock
                    // still parks: it fires at the next advance, after the
                    // calls that arrived with its late start (one of them
                    // may be the purchase that ends it).
                    if until > clock {
                        self.park(id, Waiting::Sleep { until }, until);
                        return;
                    }
                }
                Yield::WaitFor(w) => {
                    if !self.lookback(id, w) {
                        let within = flow.waits.get(w as usize).map_or(0, |w| w.within);
                        let deadline = clock.saturating_add(ms(within));
                        self.park(id, Waiting::Event { wait: w, deadline }, deadline);
                        return;
                    }
                }
                Yield::Send { message, args } => {
                    if let Next::Park = self.send(id, message, args) {
                        return;
                    }
                }
                Yield::Audience { name, add } => self.membership(c, &flow.name, &name, add),
                Yield::Split { split, arm } => {
                    let chosen = flow.splits.get(split as usize);
                    let variant = chosen
                        .and_then(|s| s.arms.get(arm as usize))
                        .map(|a| a.name.clone())
                        .unwrap_or_default();
                    self.stats
                        .flow_mut(&flow.name)
                        .variants
                        .entry(variant.clone())
                        .and_modify(|n| *n += 1)
                        .or_insert(1);
                    let floor = chosen.and_then(|s| s.optimise);
                    if floor.is_some() {
                        self.took_arm(c, r, f, number, split, arm, &flow.name, &variant);
                    }
                    self.record(
                        c,
                        What::Variant {
                            flow: flow.name.clone(),
                            instance: number,
                            variant,
                            floor: floor.map(|p| format!("{}%", p.normalize())),
                        },
                    );
                }
                Yield::Exit => {
                    if in_steps {
                        return self.end(id, End::exited(ExitReason::Exit));
                    }
                    return self.finish(id);
                }
                Yield::End => {
                    if in_steps {
                        return self.end(id, End::Completed);
                    }
                    return self.finish(id);
                }
            }
        }
    }

    pub(super) fn park(&mut self, id: u32, state: Waiting, due: i64) {
        let generation = self.next_generation();
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        inst.set_state(state);
        inst.generation = generation;
        let (r, f) = (inst.release, inst.flow);
        let priority = self.flow_of(r, f).priority;
        self.timers
            .set(due, priority, Wake::Instance { id, generation });
    }

    /// Checks the flow's standing `exit if` rules; ends the instance when one holds.
    fn standing_exit(&mut self, id: u32) -> bool {
        let Some(inst) = self.instances.get(id) else {
            return false;
        };
        let (r, f, c) = (inst.release, inst.flow, inst.customer);
        let (trigger, since) = (inst.trigger(), inst.started);
        let mut locals = inst.locals().to_vec();
        for &p in &self.flow_of(r, f).exit_if {
            match self.predicate(
                c,
                r,
                UnitRef::Flow(f),
                p,
                Some(&trigger),
                None,
                since,
                &mut locals,
            ) {
                Ok(true) => {
                    self.end(id, End::exited(ExitReason::ExitIf));
                    return true;
                }
                Ok(false) => {}
                Err(e) => {
                    self.end(id, End::Error(e.to_string()));
                    return true;
                }
            }
        }
        false
    }

    /// A `wait for` also matches a qualifying event seen since the instance
    /// started, so an event landing just before the wait is not missed.
    fn lookback(&mut self, id: u32, wait: u16) -> bool {
        let Some(inst) = self.instances.get(id) else {
            return false;
        };
        let (c, started, trigger_seq) = (inst.customer, inst.started, inst.trigger_seq);
        let Some(w) = self
            .flow_of(inst.release, inst.flow)
            .waits
            .get(wait as usize)
        else {
            return false;
        };
        let candidates: Vec<Seen> = super::known(&self.customers, c)
            .events_since(started)
            .iter()
            .filter(|e| e.seq != trigger_seq && w.events.iter().any(|x| x.event == e.schema))
            .cloned()
            .collect();
        for e in candidates {
            match self.wait_accepts(id, wait, &e) {
                Ok(Some(v)) => {
                    self.bind_wait(id, wait, v);
                    return true;
                }
                Ok(None) => {}
                Err(err) => {
                    // Leave the error to surface when the instance runs on:
                    // binding nothing is the safe reading of a failed predicate.
                    let _ = err;
                }
            }
        }
        false
    }

    /// Ends instance `id`: runs its `on exit` block (if any) first.
    pub(super) fn end(&mut self, id: u32, end: End) {
        let Some(inst) = self.instances.get(id) else {
            return;
        };
        let on_exit = self.flow_of(inst.release, inst.flow).on_exit;
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        if inst.exiting().is_some() {
            return;
        }
        self.generations += 1;
        inst.generation = self.generations;
        inst.set_state(Waiting::Running);
        match (on_exit, &end) {
            // A failing instance does not run more of its code.
            (Some(block), End::Completed | End::Exited(..)) => {
                inst.set_exiting(end);
                let mut frame = inst.take_frame();
                (frame.block, frame.pc) = (block, 0);
                inst.resume(frame);
                self.run(id, self.now);
            }
            // Ends at once: the reason goes straight to `finish`, not
            // through the instance's side box (one allocation less per exit).
            _ => self.finish_for(id, Some(end)),
        }
    }

    /// Removes a finished instance and records how it ended.
    fn finish(&mut self, id: u32) {
        self.finish_for(id, None);
    }

    /// Removes a finished instance and records how it ended: as `end` says,
    /// else as its `on exit` block runs for (none: it completed).
    fn finish_for(&mut self, id: u32, end: Option<End>) {
        let Some(inst) = self.instances.take(id) else {
            return;
        };
        self.free.push(id);
        let flow = self.flow_of(inst.release, inst.flow);
        let key = self.key_of(inst.release, inst.flow);
        let c = inst.customer;
        if let Some(cust) = self.customers.get_mut(&c) {
            cust.instances.remove(id);
            let mem = cust.flow(key);
            mem.live = mem.live.saturating_sub(1);
        }
        let stats = self.stats.flow_mut(&flow.name);
        let end = end
            .or_else(|| inst.extra.and_then(|e| e.exiting))
            .unwrap_or(End::Completed);
        let what = match end {
            End::Completed => {
                stats.completed += 1;
                What::Completed {
                    flow: flow.name.clone(),
                    instance: inst.number,
                }
            }
            End::Error(message) => {
                stats.errors += 1;
                What::Error {
                    flow: flow.name.clone(),
                    instance: inst.number,
                    message,
                }
            }
            End::Exited(code, reason) => {
                *stats.exited.entry(reason.clone()).or_insert(0) += 1;
                *stats.exits.entry(code).or_insert(0) += 1;
                What::Exited {
                    flow: flow.name.clone(),
                    instance: inst.number,
                    reason,
                    code: Some(code),
                }
            }
        };
        self.record(c, what);
    }

    /// Instance `number` of flow `f` of release `r` (customer `c`) took arm
    /// `arm` of split `split`, one that optimises: the arm counts one more
    /// entry, and the instance's goal watch notes the arm so that reaching
    /// the goal counts for it. A held-out instance sends nothing, so what
    /// it does says nothing of the arm: it counts for neither.
    #[allow(clippy::too_many_arguments)]
    fn took_arm(
        &mut self,
        c: u32,
        r: u32,
        f: u32,
        number: u32,
        split: u16,
        arm: u16,
        flow: &str,
        variant: &str,
    ) {
        let cust = super::known_mut(&mut self.customers, c);
        let Some(rare) = cust.rare_if() else { return };
        let Some(w) = rare
            .goals
            .iter_mut()
            .find(|w| w.release == r && w.flow == f && w.instance == number)
        else {
            return;
        };
        if w.holdout {
            return;
        }
        w.arms.push((split, arm));
        self.splits.entered(flow, split, variant);
    }

    /// Credits goals this event reaches.
    pub(super) fn check_goals(&mut self, c: u32, seen: &Seen) {
        if !self.goal_events.contains(&seen.schema) {
            return;
        }
        let now = self.now;
        let watches = super::known_mut(&mut self.customers, c)
            .rare_if()
            .map(|r| std::mem::take(&mut r.goals))
            .unwrap_or_default();
        let mut keep = Vec::with_capacity(watches.len());
        for w in watches {
            // The goal as the instance's own release states it.
            let bundle = self.bundle_of(w.release);
            let flow = self.flow_of(w.release, w.flow);
            let Some(goal) = &flow.goal else {
                continue;
            };
            if now > w.entered.saturating_add(ms(goal.within)) {
                continue; // expired
            }
            if goal.rule.event != seen.schema || seen.at < w.entered {
                keep.push(w);
                continue;
            }
            let hit = match goal.rule.predicate {
                None => true,
                Some(p) => self
                    .predicate(
                        c,
                        w.release,
                        UnitRef::Flow(w.flow),
                        p,
                        Some(&w.trigger),
                        Some(&seen.value),
                        w.entered,
                        &mut Vec::new(),
                    )
                    .unwrap_or(false),
            };
            if !hit {
                keep.push(w);
                continue;
            }
            let revenue = revenue_of(bundle, seen);
            let currency = text_of(bundle, seen, "currency");
            let key = self.key_of(w.release, w.flow);
            let last = super::known(&self.customers, c)
                .sends
                .iter()
                .rev()
                .find(|s| s.flow == key && s.at >= w.entered && s.at <= seen.at)
                .and_then(|s| self.message_names.get(s.message as usize))
                .map(|m| m.to_string());
            for &(split, arm) in &w.arms {
                if let Some(a) = flow
                    .splits
                    .get(usize::from(split))
                    .and_then(|s| s.arms.get(usize::from(arm)))
                {
                    self.splits.converted(&flow.name, split, &a.name);
                }
            }
            let stats = self.stats.flow_mut(&flow.name);
            if w.holdout {
                stats.holdout_conversions += 1;
            } else {
                stats.conversions += 1;
                if let Some(r) = revenue {
                    stats.revenue += r;
                    let code = currency.as_deref().unwrap_or_default().to_ascii_uppercase();
                    let by = stats.revenue_by_currency.entry(code).or_default();
                    *by = by.checked_add(r).unwrap_or(*by);
                }
                if let Some(m) = &last {
                    *stats.attributed.entry(m.clone()).or_insert(0) += 1;
                }
            }
            self.record(
                c,
                What::Converted {
                    flow: flow.name.clone(),
                    instance: w.instance,
                    event: bundle.schema(seen.schema).name.clone(),
                    revenue: revenue.map(nudge_bytecode::format_money),
                    holdout: w.holdout,
                    message: last,
                    order_id: text_of(bundle, seen, "order_id"),
                    currency,
                },
            );
        }
        let cust = super::known_mut(&mut self.customers, c);
        if let Some(rare) = cust.rare_if() {
            keep.extend(std::mem::take(&mut rare.goals));
            rare.goals = keep;
        } else if !keep.is_empty() {
            cust.rare_mut().goals = keep;
        }
    }

    /// The trigger of the newest release's flow `f`.
    pub(super) fn trigger_of(&self, f: u32) -> &'b Trigger {
        &self.flow_of(self.current(), f).trigger
    }
}

/// A text property of an event, when it has a non-empty one.
fn text_of(bundle: &nudge_bytecode::Bundle, seen: &Seen, name: &str) -> Option<String> {
    let Value::Record(r) = &seen.value else {
        return None;
    };
    let i = bundle
        .schema(seen.schema)
        .fields
        .iter()
        .position(|f| f.name == name)?;
    match r.fields.get(i)? {
        Value::Str(s) if !s.is_empty() => Some(s.to_string()),
        _ => None,
    }
}

/// The money a conversion brings: the event's `revenue`, else its `total`.
fn revenue_of(bundle: &nudge_bytecode::Bundle, seen: &Seen) -> Option<rust_decimal::Decimal> {
    let Value::Record(r) = &seen.value else {
        return None;
    };
    let schema = bundle.schema(seen.schema);
    let get = |name: &str| {
        let i = schema.fields.iter().position(|f| f.name == name)?;
        match r.fields.get(i)? {
            Value::Money(m) if !m.is_zero() => Some(*m),
            _ => None,
        }
    };
    get("revenue").or_else(|| get("total"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> Instance {
        let mut i = Instance::new(1, 2, "abc".into(), 3, 4, 100, Value::None, 7, 9, false);
        i.set_state(Waiting::Sleep { until: 500 });
        i
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_sleeping_instance_takes_96_bytes() {
        assert_eq!(std::mem::size_of::<Option<Instance>>(), 96);
    }

    #[test]
    fn the_rare_parts_round_trip_through_the_plain_shape() {
        let mut i = sleeper();
        i.resume(Frame {
            block: 3,
            pc: 8,
            locals: vec![Value::Int(1), Value::None],
        });
        i.set_state(Waiting::Send {
            message: 5,
            args: vec![Value::Int(2)],
            until: 600,
        });
        i.set_exiting(End::exited(ExitReason::ExitIf));
        i.note_sent(11);
        i.note_sent(12);
        assert!(i.unnote_sent(11) && !i.unnote_sent(11));
        assert!(i.has_sent(12) && !i.has_sent(11));
        let mut odd = Instance::new(0, 0, "v".into(), 0, 1, 0, Value::Int(42), 0, 0, true);
        odd.set_state(Waiting::Event {
            wait: 2,
            deadline: 700,
        });
        for inst in [i, odd, sleeper()] {
            let json = serde_json::to_value(&inst).unwrap();
            for key in ["frame", "state", "trigger", "exiting", "version", "sent"] {
                assert!(json.get(key).is_some(), "{key} in {json}");
            }
            let back: Instance = serde_json::from_value(json).unwrap();
            assert_eq!(back, inst);
            assert_eq!(back.sent(), inst.sent());
        }
    }

    #[test]
    fn an_instance_whose_last_send_is_taken_back_keeps_nothing_out_of_line() {
        let mut i = sleeper();
        i.note_sent(3);
        assert!(i.extra.is_some());
        assert!(i.unnote_sent(3));
        assert!(i.extra.is_none());
        assert!(!sleeper().unnote_sent(3));
    }

    #[test]
    fn taking_a_deferred_send_leaves_nothing_out_of_line() {
        let mut i = sleeper();
        i.set_state(Waiting::Send {
            message: 5,
            args: vec![Value::Int(2)],
            until: 600,
        });
        assert!(i.extra.is_some());
        let args = match i.take_state() {
            Waiting::Send { args, .. } => args,
            other => panic!("{other:?}"),
        };
        assert_eq!(args, vec![Value::Int(2)]);
        assert_eq!(i.state(), Waiting::Running);
        assert!(i.extra.is_none());
        i.set_state(Waiting::Sleep { until: 500 });
        assert_eq!(i, sleeper());
    }
}
