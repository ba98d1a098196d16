//! Live deploys: switching the engine to a new bundle while instances are in flight.
//!
//! A deploy adds a *release*. Everything new starts on the newest release;
//! each instance keeps running the code of the release it is on. An instance
//! of a flow whose version changed moves to the new version only where that
//! is unambiguous: parked in a labelled wait that the new version also has,
//! with every local the new code needs available by name. See
//! `docs/runtime.md`, "Deploying new versions".
//!
//! A deploy is a pure function of the engine's state and the bundle (it
//! walks instances in slot order and customers in id order), so replaying
//! the same calls and deploys rebuilds the same state.

use std::fmt;

use nudge_bytecode::{Bundle, Flow, Instr, Rebased, Trigger, Value};
use nudge_vm::{Frame, Vm};
use serde::{Deserialize, Serialize};

use super::checkpoint::CheckpointError;
use super::evolve::{Bundles, same_tables};
use super::instance::{Instance, TriggerUse, Waiting};
use super::{Machine, rel, rel_mut};

/// Why a bundle cannot be deployed. When the new bundle is refused the
/// engine is left exactly as it was; when the store fails it, it is not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum DeployError {
    /// The new bundle changes the schemas in a way stored values or the
    /// instances in flight cannot follow (a field changing type, a
    /// required field added to stored records, something removed that
    /// instances staying on their version still read).
    Incompatible {
        /// Each problem, in words, with what to do about it.
        problems: Vec<String>,
    },
    /// A customer or timer the engine let go could not be read back from
    /// the store (a deploy that changes every customer reads each back in
    /// turn). The deploy may be half done: the engine holds the fault
    /// (`Engine::page_fault`), and a host stops before it commits anything.
    Unreadable(String),
}

impl fmt::Display for DeployError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeployError::Incompatible { problems } => {
                f.write_str(
                    "the new bundle changes the schemas in a way the stored state cannot follow",
                )?;
                for p in problems {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
            DeployError::Unreadable(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for DeployError {}

/// Triggers a release adds or changes, by flow number, to arm for each
/// customer already known.
struct Arming {
    /// Schedules new or moved.
    schedules: Vec<u32>,
    /// Profile-date triggers new or changed.
    dates: Vec<u32>,
    /// `entering` flows new or on another segment, with the segment.
    entering: Vec<(u32, u32)>,
    /// `entering` flows whose segment's definition changed when it can
    /// next change with time.
    rearm: Vec<u32>,
}

/// A deploy's new triggers still to arm: release `release` added them
/// against `prev`, and customers from number `next` on are not armed yet.
/// Kept with the head, so that a restart between parts goes on where the
/// last committed part ended (see [`Machine::arm_part`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PendingArming {
    prev: u32,
    release: u32,
    next: u32,
}

impl Arming {
    /// Whether there is nothing to arm.
    fn is_empty(&self) -> bool {
        self.schedules.is_empty()
            && self.dates.is_empty()
            && self.entering.is_empty()
            && self.rearm.is_empty()
    }
}

/// What a deploy did, for people ([`fmt::Display`]) and tools (JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Deployed {
    /// The number of the new release (0 is the bundle the engine was made with).
    pub release: u32,
    /// Every flow of the release replaced, and every other flow version
    /// with instances in flight: what became of its instances.
    pub flows: Vec<FlowReport>,
    /// Flows the replaced release did not have.
    pub added: Vec<AddedFlow>,
    /// How the schemas changed; stored values were moved onto the new ones.
    #[serde(skip_serializing_if = "SchemaChanges::is_empty")]
    pub schemas: SchemaChanges,
}

/// What a deploy changed in the schemas of events, records and the profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchemaChanges {
    /// Events, records and enums added (`event `order_refunded``).
    pub added: Vec<String>,
    /// Those removed; stored values of them were dropped.
    pub removed: Vec<String>,
    /// Fields added (`profile.birthday`); stored records got their default, or `none`.
    pub fields_added: Vec<String>,
    /// Fields removed; their stored values were dropped.
    pub fields_removed: Vec<String>,
    /// Enum values added.
    pub values_added: Vec<String>,
    /// Conversion goals being watched whose rule read something removed, ended.
    pub goals_ended: u64,
}

impl SchemaChanges {
    /// Whether the schemas did not change.
    pub fn is_empty(&self) -> bool {
        *self == SchemaChanges::default()
    }

    fn from_diff(d: &nudge_bytecode::SchemaDiff) -> SchemaChanges {
        SchemaChanges {
            added: d.added.clone(),
            removed: d.removed.clone(),
            fields_added: d.fields_added.clone(),
            fields_removed: d.fields_removed.clone(),
            values_added: d.values_added.clone(),
            goals_ended: 0,
        }
    }
}

/// One flow version's instances at a deploy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowReport {
    /// The flow's name.
    pub flow: String,
    /// The version the instances were on.
    pub from: String,
    /// The new release's version of the flow; `None` when it was removed.
    pub to: Option<String>,
    /// Where the instances were parked, in step order.
    pub steps: Vec<StepReport>,
}

/// The instances parked at one step, and their fate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// The step's label, or `step N (what)` when it has none.
    pub step: String,
    /// The step's number in the version the instances were on.
    pub index: u16,
    /// How many instances.
    pub instances: u64,
    /// What became of them.
    pub fate: Fate,
}

/// What a deploy did with an in-flight instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fate {
    /// The flow's version did not change: the instance runs the same code on its release.
    Unchanged,
    /// Moved to the new version, to resume after this step's wait.
    Carried {
        /// The label of the step in the new version.
        to_step: String,
    },
    /// Left to finish on its own release.
    Stays {
        /// Why it could not be carried.
        reason: String,
    },
}

/// A flow the new release adds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddedFlow {
    /// Its name.
    pub flow: String,
    /// Its version.
    pub version: String,
}

impl fmt::Display for Deployed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "release {}", self.release)?;
        for fl in &self.flows {
            match &fl.to {
                Some(to) if *to == fl.from => writeln!(f, "{} {} unchanged", fl.flow, fl.from)?,
                Some(to) => writeln!(f, "{} {} -> {to}", fl.flow, fl.from)?,
                None => writeln!(f, "{} {} removed", fl.flow, fl.from)?,
            }
            for s in &fl.steps {
                let n = s.instances;
                let plural = if n == 1 { "instance" } else { "instances" };
                write!(f, "  {}: {n} {plural} ", s.step)?;
                match &s.fate {
                    Fate::Unchanged => writeln!(f, "unchanged")?,
                    Fate::Carried { to_step } => writeln!(f, "carried to {to_step}")?,
                    Fate::Stays { reason } => {
                        let verb = if n == 1 { "stays" } else { "stay" };
                        writeln!(f, "{verb}: {reason}")?
                    }
                }
            }
        }
        for a in &self.added {
            writeln!(f, "added {} {}", a.flow, a.version)?;
        }
        let c = &self.schemas;
        for (what, names) in [
            ("schema added", &c.added),
            ("schema removed (stored values dropped)", &c.removed),
            ("field added", &c.fields_added),
            ("field removed (stored values dropped)", &c.fields_removed),
            ("enum value added", &c.values_added),
        ] {
            for n in names {
                writeln!(f, "{what}: {n}")?;
            }
        }
        if c.goals_ended > 0 {
            writeln!(
                f,
                "{} conversion goal{} being watched ended: {} rule reads something removed",
                c.goals_ended,
                if c.goals_ended == 1 { "" } else { "s" },
                if c.goals_ended == 1 { "its" } else { "their" },
            )?;
        }
        Ok(())
    }
}

/// How a carried instance continues in the new version.
struct Carry {
    flow: u32,
    step: u16,
    pc: u32,
    /// For a `wait for`: the new version's wait operand.
    wait: Option<u16>,
    locals: Vec<Value>,
}

/// What a parked instance's wait instruction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Park {
    Sleep,
    WaitFor(u16),
}

impl Park {
    fn what(self) -> &'static str {
        match self {
            Park::Sleep => "sleeps",
            Park::WaitFor(_) => "waits for an event",
        }
    }
}

impl<'b> Machine<'b> {
    /// Switches to `bundle` for everything new; in-flight instances stay on
    /// their own release unless carried over by step label.
    ///
    /// The new bundle may add events, properties, traits, records, enum
    /// values, messages and flows: stored values move onto its schemas by
    /// name (a new field starts at its default, or `none`), and releases
    /// still running are renumbered for them (rebased bundles are kept in
    /// `arena`). A change stored values cannot follow, or the removal of
    /// something an instance staying on its version still reads, is refused
    /// with [`DeployError::Incompatible`] and nothing changes.
    /// New instances, triggers and the policy then come from `bundle`;
    /// entry rules, instance numbers, caps and counters continue by flow
    /// name. An instance of a changed flow moves to the new version when it
    /// sleeps or waits at a labelled step of the main steps that the new
    /// version also has, with the same kind of wait, and every local the new
    /// code needs before that step has a same-named value; it keeps its
    /// number, trigger, start, holdout and wake time or deadline. Every other
    /// instance finishes on its release. The report says what happened to
    /// each, step by step.
    pub fn deploy(
        &mut self,
        bundle: &'b Bundle,
        arena: &'b Bundles,
    ) -> Result<Deployed, DeployError> {
        self.new_input();
        let unreadable =
            |e: super::checkpoint::CheckpointError| DeployError::Unreadable(e.to_string());
        // Timers left in the store stay there: a deploy sets new ones and
        // changes none (an instance carried over keeps its generation, so
        // the timer already set still wakes it).
        self.no_fault().map_err(unreadable)?;
        let prev = self.current();
        let mut schemas = SchemaChanges::default();
        let mut migration = None;
        if !same_tables(self.bundle_of(prev), bundle) {
            let carried = |rb: &Rebased, from: &Flow, inst: &Instance| -> bool {
                let Some((nf, to)) = (0..).zip(&bundle.flows).find(|(_, f)| f.name == from.name)
                else {
                    return false;
                };
                if to.version == from.version {
                    return false;
                }
                let uses = (
                    &TriggerUse::of(from, &rb.bundle),
                    &TriggerUse::of(to, bundle),
                );
                plan(bundle, from, (nf, to), inst, uses).is_ok()
            };
            let ev = self.plan_evolution(bundle, &carried)?;
            schemas = SchemaChanges::from_diff(ev.diff());
            migration = Some(super::evolve::apply(self, ev, bundle, arena));
        }
        let old = self.bundle_of(prev);
        let r = self.add_release(bundle);
        // Only the newest release starts instances.
        rel_mut(&mut self.releases, prev).triggered_by.clear();

        let mut report = Deployed {
            release: r,
            ..Deployed::default()
        };
        for flow in &old.flows {
            report.flows.push(FlowReport {
                flow: flow.name.clone(),
                from: flow.version.clone(),
                to: bundle.flow(&flow.name).map(|n| n.version.clone()),
                steps: Vec::new(),
            });
        }
        for flow in &bundle.flows {
            if old.flow(&flow.name).is_none() {
                report.added.push(AddedFlow {
                    flow: flow.name.clone(),
                    version: flow.version.clone(),
                });
            }
        }

        for id in 0..self.instances.len() as u32 {
            let Some(inst) = self.instances.get(id) else {
                continue;
            };
            let ir = inst.release;
            let from = self.flow_of(ir, inst.flow);
            let key = self.key_of(ir, inst.flow);
            // The newest release is `bundle`: its flow numbers are `bundle`'s.
            let target = self
                .newest
                .get(key as usize)
                .copied()
                .flatten()
                .map(|nf| (nf, self.flow_of(r, nf)));
            let (fate, carry) = match target {
                None => (
                    Fate::Stays {
                        reason: "flow removed".into(),
                    },
                    None,
                ),
                Some((_, to)) if to.version == from.version => (Fate::Unchanged, None),
                Some((nf, to)) => {
                    let uses = (
                        &rel(&self.releases, ir).flow(inst.flow).trigger_use,
                        &rel(&self.releases, r).flow(nf).trigger_use,
                    );
                    match plan(bundle, from, (nf, to), inst, uses) {
                        Ok(c) => (
                            Fate::Carried {
                                to_step: step_name(to, c.step),
                            },
                            Some(c),
                        ),
                        Err(reason) => (Fate::Stays { reason }, None),
                    }
                }
            };
            note(
                &mut report.flows,
                from,
                target.map(|(_, to)| to),
                inst.step,
                fate,
            );
            if let Some(c) = carry {
                let version = rel(&self.releases, r).flow(c.flow).version.clone();
                let Some(inst) = self.instances.get_mut(id) else {
                    continue;
                };
                inst.release = r;
                inst.flow = c.flow;
                inst.version = version;
                inst.step = c.step;
                inst.resume(Frame {
                    block: 0,
                    pc: c.pc,
                    locals: c.locals,
                });
                if let Some(n) = c.wait {
                    inst.set_event_wait(n);
                }
                // The generation is kept, so the timer already set (the wake
                // time or the deadline, both unchanged) still wakes it.
            }
        }
        for f in &mut report.flows {
            f.steps.sort_by_key(|s| s.index);
        }
        // Flows with several versions in flight list the replaced release's first.
        report.flows.sort_by(|a, b| a.flow.cmp(&b.flow));

        // Customers last. Those in memory move onto the new tables now;
        // stored ones stay as they are and move when next read (see
        // `super::tables`), so a schema change reads none of them.
        if let Some(migration) = migration {
            let numbers: Vec<u32> = self.customers.keys().collect();
            for c in numbers {
                schemas.goals_ended += migration.customer(super::known_mut(&mut self.customers, c));
            }
            self.tables.push(migration);
        }
        // New triggers reach every customer. With a budget and a store the
        // host arms them in parts, taking a checkpoint after each, so that
        // the customers read back are let go as it goes; any other input
        // first arms the rest (see `Machine::arm_part`).
        if !self.new_triggers(prev, r).is_empty() {
            self.arming = Some(PendingArming {
                prev,
                release: r,
                next: 0,
            });
            // Without a budget and a store, at once; with them, none yet
            // (only numbers that are no customer's are passed over, so a
            // deploy onto no customer leaves nothing to arm).
            let at_once = self.config.customers_in_memory.is_none() || self.pager.is_none();
            self.arm_next(if at_once { usize::MAX } else { 0 })
                .map_err(unreadable)?;
        }
        report.schemas = schemas;
        self.drop_idle_caches();
        Ok(report)
    }

    /// Whether a deploy's new triggers are still to be armed for some
    /// customers: the host commits a checkpoint, then calls
    /// [`Machine::arm_part`] until this is false.
    pub fn arming(&self) -> bool {
        self.arming.is_some()
    }

    /// Arms a deploy's new triggers for the next `most` customers (in
    /// number order), reading stored ones back. The host takes and
    /// commits a checkpoint after each part, which lets the customers read
    /// back go: a deploy that arms a schedule for a million stored
    /// customers then holds a part's worth at a time, not all of them as
    /// rows until one checkpoint. Arming in parts decides what arming at
    /// once decides: no call or tick comes between parts (an input first
    /// arms the rest). An error is a customer that could not be read back;
    /// the engine holds the fault, as for a call.
    pub fn arm_part(&mut self, most: usize) -> Result<(), CheckpointError> {
        self.arm_next(most.max(1))
    }

    /// Arms a pending deploy's triggers for at most `most` more customers.
    /// Customers are armed in increasing number, in parts or at once:
    /// timers set in the same order get the same tie-breaks. Under a
    /// budget, a stored customer read back is frozen again once armed
    /// while records are over it (a take writes its row).
    pub(super) fn arm_next(&mut self, most: usize) -> Result<(), CheckpointError> {
        let Some(mut p) = self.arming.take() else {
            return Ok(());
        };
        let arming = self.new_triggers(p.prev, p.release);
        let end = self.customers.number_end();
        let budget = self.config.customers_in_memory;
        let mut armed = 0usize;
        while p.next < end && armed < most {
            let c = p.next;
            if self.customers.contains_key(&c) {
                let was_stored = self.customers.is_stored(c);
                if !self.page_in(c) {
                    self.arming = Some(p);
                    return self.no_fault();
                }
                self.arm_customer(c, p.release, &arming);
                armed += 1;
                if was_stored
                    && budget.is_some_and(|b| self.customers.in_memory() > b)
                    && !self.dirty.contains(&c)
                {
                    self.freeze_one(c);
                }
            }
            p.next += 1;
        }
        // Numbers that are no customer's (identities merged into another)
        // are passed over now, so that a part is never left with none.
        while p.next < end && !self.customers.contains_key(&p.next) {
            p.next += 1;
        }
        if p.next < end {
            self.arming = Some(p);
        }
        self.no_fault()
    }

    /// The triggers release `r` adds or changes against `prev`, to arm for
    /// every customer already known ([`Machine::arm_customer`]).
    fn new_triggers(&self, prev: u32, r: u32) -> Arming {
        let old = self.bundle_of(prev);
        let new = self.bundle_of(r);
        // Schedules read in the policy's zone move with it.
        let zone_moved = old.policy.timezone != new.policy.timezone;
        let (mut schedules, mut dates, mut entering) = (Vec::new(), Vec::new(), Vec::new());
        // `entering` flows on a segment whose definition changed: when it
        // can next change with time may have moved.
        let mut rearm = Vec::new();
        for (f, flow) in new.flows.iter().enumerate() {
            let f = f as u32;
            let before = old.flow(&flow.name).map(|o| &o.trigger);
            match &flow.trigger {
                Trigger::Schedule {
                    cadence, at, local, ..
                } => {
                    let same = matches!(before, Some(Trigger::Schedule { cadence: c, at: a, local: l, .. })
                        if c == cadence && a == at && l == local)
                        && (*local || !zone_moved);
                    if !same {
                        schedules.push(f);
                    }
                }
                Trigger::DateProperty { .. } => {
                    if before != Some(&flow.trigger) {
                        dates.push(f);
                    }
                }
                Trigger::Entering { segment } => {
                    let name = new.segments.get(*segment as usize).map(|s| &s.name);
                    let same = matches!(before, Some(Trigger::Entering { segment: s })
                        if old.segments.get(*s as usize).map(|o| &o.name) == name);
                    if !same {
                        entering.push((f, *segment));
                    } else if changes_moved(old, new, name, *segment) {
                        rearm.push(f);
                    }
                }
                Trigger::Event(_) => {}
            }
        }
        Arming {
            schedules,
            dates,
            entering,
            rearm,
        }
    }

    /// Arms `arming`'s triggers of release `r` for customer `c`, in memory:
    /// new schedules and profile dates get their timers, and new
    /// `entering` flows learn whether it is already inside, so that only
    /// customers entering from now on start an instance. Customers are
    /// armed in increasing number: timers set in the same order get the
    /// same tie-breaks.
    fn arm_customer(&mut self, c: u32, r: u32, arming: &Arming) {
        if !arming.schedules.is_empty() {
            let zone = self.zone(c, None);
            super::known_mut(&mut self.customers, c)
                .rare_mut()
                .schedule_zone = Some(zone);
        }
        for &f in &arming.schedules {
            self.arm_schedule(c, f);
        }
        for &f in &arming.dates {
            self.arm_date(c, f, true);
        }
        for &(f, segment) in &arming.entering {
            let inside = self.in_segment(c, segment);
            let key = self.key_of(r, f);
            super::known_mut(&mut self.customers, c)
                .flow(key)
                .in_segment = inside;
            self.arm_segment(c, f, true);
        }
        for &f in &arming.rearm {
            self.arm_segment(c, f, true);
        }
    }

    /// Releases no instance and no goal uses any more never run code again:
    /// drop what their VMs have cached (computed lets, compiled templates).
    fn drop_idle_caches(&mut self) {
        let mut used = vec![false; self.releases.len()];
        if let Some(last) = used.last_mut() {
            *last = true;
        }
        let releases = self.instances.iter().flatten().map(|i| i.release);
        let watched = self.customers.values().flat_map(|c| c.rare().goals.iter());
        for r in releases.chain(watched.map(|g| g.release)) {
            if let Some(u) = used.get_mut(r as usize) {
                *u = true;
            }
        }
        for (release, used) in self.releases.iter_mut().zip(used) {
            if !used {
                release.vm = Vm::new(release.bundle);
            }
        }
    }
}

/// Counts an instance at `step` of `from` in the report.
fn note(flows: &mut Vec<FlowReport>, from: &Flow, to: Option<&Flow>, step: u16, fate: Fate) {
    let count = |steps: &mut Vec<StepReport>| match steps
        .iter_mut()
        .find(|s| s.index == step && s.fate == fate)
    {
        Some(s) => s.instances += 1,
        None => steps.push(StepReport {
            step: step_name(from, step),
            index: step,
            instances: 1,
            fate: fate.clone(),
        }),
    };
    match flows
        .iter_mut()
        .find(|f| f.flow == from.name && f.from == from.version)
    {
        Some(report) => count(&mut report.steps),
        None => {
            let mut steps = Vec::new();
            count(&mut steps);
            flows.push(FlowReport {
                flow: from.name.clone(),
                from: from.version.clone(),
                to: to.map(|t| t.version.clone()),
                steps,
            });
        }
    }
}

/// A step as reports name it: its label, or `step N (what)`.
pub(super) fn step_name(flow: &Flow, step: u16) -> String {
    match flow.steps.get(usize::from(step)) {
        Some(s) => match &s.label {
            Some(l) => l.clone(),
            None => format!("step {step} ({})", s.what),
        },
        None => format!("step {step}"),
    }
}

/// A step as reasons name it: its label in backquotes, or `step N (what)`.
fn step_quoted(flow: &Flow, step: u16) -> String {
    match flow
        .steps
        .get(usize::from(step))
        .and_then(|s| s.label.as_ref())
    {
        Some(l) => format!("`{l}`"),
        None => step_name(flow, step),
    }
}

/// The first waiting instruction of step `step` of block 0 (before the next
/// step starts), with its index.
fn first_wait(flow: &Flow, step: usize) -> Option<(u32, Park)> {
    let info = flow.steps.get(step)?;
    if info.block != 0 {
        return None;
    }
    let code = &flow.unit.blocks.first()?.code;
    let start = info.pc as usize + 1;
    for (pc, instr) in code.iter().enumerate().skip(start) {
        match instr {
            Instr::Step(_) | Instr::End => return None,
            Instr::Wait(_) | Instr::WaitUntil => return Some((pc as u32, Park::Sleep)),
            Instr::WaitFor(n) => return Some((pc as u32, Park::WaitFor(*n))),
            _ => {}
        }
    }
    None
}

/// How instance `inst` of `from` continues as flow `nf` of `new` (`to`), or why it cannot.
fn plan(
    new: &Bundle,
    from: &Flow,
    (nf, to): (u32, &Flow),
    inst: &Instance,
    (old_use, new_use): (&TriggerUse, &TriggerUse),
) -> Result<Carry, String> {
    let here = step_quoted(from, inst.step);
    if inst.exiting().is_some() {
        return Err("it is running its `on exit` block".into());
    }
    let parked = match inst.state() {
        Waiting::Sleep { .. } => Park::Sleep,
        Waiting::Event { wait, .. } => Park::WaitFor(wait),
        Waiting::Send { .. } => return Err(format!("it waits to retry a deferred send at {here}")),
        Waiting::Running => return Err("it is running".into()),
    };
    let Some(info) = from.steps.get(usize::from(inst.step)) else {
        return Err(format!("its step {} is not in its flow", inst.step));
    };
    let Some(label) = &info.label else {
        return Err(format!("{here} has no label"));
    };
    match first_wait(from, usize::from(inst.step)) {
        Some((pc, kind)) if inst.block() == 0 && inst.pc() == pc + 1 && kind == parked => {}
        _ => return Err(format!("it is not parked at {here}'s wait")),
    }
    let Some(step) = to
        .steps
        .iter()
        .position(|s| s.block == 0 && s.label.as_ref() == Some(label))
    else {
        return Err(format!("the new version has no step `{label}`"));
    };
    let Some((pc, kind)) = first_wait(to, step) else {
        return Err(format!("the new version's `{label}` does not wait"));
    };
    let same_kind = matches!(
        (kind, parked),
        (Park::Sleep, Park::Sleep) | (Park::WaitFor(_), Park::WaitFor(_))
    );
    if !same_kind {
        return Err(format!(
            "the new version's `{label}` {}, this one {}",
            kind.what(),
            parked.what()
        ));
    }
    let step = u16::try_from(step).map_err(|_| "too many steps".to_string())?;
    trigger_fits(new, from, to, old_use, new_use)?;
    let mut locals = Vec::with_capacity(to.local_names.len());
    for l in &to.local_names {
        // Declared at or after the step: unset there in a fresh run too.
        if l.step >= step {
            locals.push(Value::None);
            continue;
        }
        // Only a local the old version had bound before its own labelled step has a value.
        let mut same = from
            .local_names
            .iter()
            .enumerate()
            .filter(|(_, o)| o.name == l.name && o.step < inst.step);
        match (same.next(), same.next()) {
            (Some((slot, _)), None) => {
                locals.push(inst.locals().get(slot).cloned().unwrap_or(Value::None))
            }
            (None, _) => {
                return Err(format!(
                    "the new version needs `{}` bound before `{label}`",
                    l.name
                ));
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "the old version has several locals named `{}`",
                    l.name
                ));
            }
        }
    }
    Ok(Carry {
        flow: nf,
        step,
        pc: pc + 1,
        wait: match kind {
            Park::WaitFor(n) => Some(n),
            Park::Sleep => None,
        },
        locals,
    })
}

/// Whether the new version's code finds in the instance's trigger what it
/// reads there: instances keep only the trigger fields their version reads.
fn trigger_fits(
    new: &Bundle,
    from: &Flow,
    to: &Flow,
    old_use: &TriggerUse,
    new_use: &TriggerUse,
) -> Result<(), String> {
    if *new_use == TriggerUse::Nothing {
        return Ok(());
    }
    let (Trigger::Event(a), Trigger::Event(b)) = (&from.trigger, &to.trigger) else {
        // No trigger event was kept, and none is needed unless the new
        // version is started by an event.
        return match to.trigger {
            Trigger::Event(_) => {
                Err("the new version reads a trigger event this instance does not have".into())
            }
            _ => Ok(()),
        };
    };
    if a.event != b.event {
        return Err("the new version is triggered by another event, and reads it".into());
    }
    let kept = |i: usize| match old_use {
        TriggerUse::Whole => true,
        TriggerUse::Fields(k) => k.get(i).copied().unwrap_or(false),
        TriggerUse::Nothing => false,
    };
    // `Some(Some(i))`: field `i` is missing; `Some(None)`: the whole record.
    let missing = match new_use {
        TriggerUse::Nothing => None,
        TriggerUse::Whole => (*old_use != TriggerUse::Whole).then_some(None),
        TriggerUse::Fields(needed) => needed
            .iter()
            .enumerate()
            .position(|(i, &need)| need && !kept(i))
            .map(Some),
    };
    match missing {
        None => Ok(()),
        Some(i) => {
            let field = i
                .and_then(|i| new.schemas.get(b.event as usize)?.fields.get(i))
                .map_or_else(
                    || "the whole trigger event".to_string(),
                    |f| format!("`trigger.{}`", f.name),
                );
            Err(format!(
                "the new version reads {field}, which this instance did not keep"
            ))
        }
    }
}

/// Whether segment `segment` of release `new` (named `name`) can change
/// with time alone, in `old` or `new`, and is defined otherwise (itself or
/// what its change points read).
fn changes_moved(old: &Bundle, new: &Bundle, name: Option<&String>, segment: u32) -> bool {
    fn points(b: &Bundle, s: u32) -> Option<&nudge_bytecode::Unit> {
        let i = b
            .change_points
            .binary_search_by_key(&s, |c| c.segment)
            .ok()?;
        b.change_points.get(i).map(|c| &c.unit)
    }
    // Windows whose exits are followed: changed, every timer may be wrong.
    if nudge_bytecode::constant_windows(old) != nudge_bytecode::constant_windows(new) {
        return true;
    }
    let before = old
        .segments
        .iter()
        .position(|s| Some(&s.name) == name)
        .map(|s| s as u32);
    let Some(before) = before else {
        return points(new, segment).is_some();
    };
    let (was, is) = (points(old, before), points(new, segment));
    (was.is_some() || is.is_some())
        && (was != is
            || old.segments.get(before as usize).map(|s| &s.unit)
                != new.segments.get(segment as usize).map(|s| &s.unit))
}
