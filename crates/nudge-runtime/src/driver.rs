//! Drives the engine's state machine for a host.
//!
//! The [`Machine`] does no IO: each call or clock tick leaves its effects
//! as data ([`Effect`]). An [`Engine`] pairs a machine with a host's
//! [`Sink`] and hands every effect to it as soon as the input that made it
//! is applied, so the sink sees sends, records and audience changes in the
//! order they happened. A send the sink cannot hand over is taken back
//! from the machine ([`Machine::delivery_failed`]) and its record says so.

use std::ops::{Deref, DerefMut};

use nudge_bytecode::{Bundle, Channel};
use nudge_channels::Outgoing;

use crate::engine::{Applied, Bundles, ClockStep, Config, DeployError, Deployed, Effect, Machine};
use crate::ingest::{Notes, TypedCall};
use crate::record::{Membership, Outcome, Record, SendReason, What};
#[cfg(feature = "oracle")]
use crate::segment::Call;
use crate::segment::Rejection;

/// Timers a whole clock step fires between two hand-overs of its effects:
/// enough that handing over costs nothing, few enough that the sends and
/// records held meanwhile stay small.
const HAND_OVER_TIMERS: usize = 4096;

/// One step of a replay: a line applied, or the clock moved after the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The line with this number (from 1) of the input.
    Line(u64),
    /// `--until`: timers due up to the given instant fire.
    Until,
    /// `--drain`: timers fire until only schedules remain.
    Drain,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Line(n) => write!(f, "line {n}"),
            Step::Until => f.write_str("the clock step of --until"),
            Step::Drain => f.write_str("the clock step of --drain"),
        }
    }
}

/// Where a host puts the engine's effects.
pub trait Sink {
    /// Hands over a message that passed the send pipeline; `Err` is why it
    /// could not be.
    fn deliver(&mut self, channel: Channel, message: &Outgoing) -> Result<(), String>;
    /// Notes something that happened to a customer.
    fn record(&mut self, record: Record);
    /// Notes an audience membership change.
    fn membership(&mut self, change: Membership);
    /// A replay is about to take `step`: what a sink counts per step (a
    /// send circuit breaker) starts again.
    fn step(&mut self, _step: Step) {}
}

/// A sink that keeps everything in memory, for tests and `nudge test`.
#[derive(Clone, Debug, Default)]
pub struct MemorySink {
    /// Delivered messages, in order.
    pub outbox: Vec<Outgoing>,
    /// Records, in order.
    pub records: Vec<Record>,
    /// Membership changes, in order.
    pub memberships: Vec<Membership>,
}

impl Sink for MemorySink {
    fn deliver(&mut self, _: Channel, message: &Outgoing) -> Result<(), String> {
        self.outbox.push(message.clone());
        Ok(())
    }

    fn record(&mut self, record: Record) {
        self.records.push(record);
    }

    fn membership(&mut self, change: Membership) {
        self.memberships.push(change);
    }
}

/// A [`Machine`] whose effects go to a [`Sink`]. Reads and inputs that
/// make no effects reach the machine through `Deref`; the inputs that do
/// are wrapped here so that their effects are handed over at once.
pub struct Engine<'b, S: Sink> {
    machine: Machine<'b>,
    sink: S,
    /// The effects being handed over; kept to reuse its allocation.
    buffer: Vec<Effect>,
    /// Sends of the step being handed over that the sink refused, with why.
    refused: Vec<(String, String)>,
}

impl<'b, S: Sink> Engine<'b, S> {
    /// An engine for a bundle, with the clock at `start` (milliseconds since
    /// the epoch, as every instant the engine keeps).
    pub fn new(bundle: &'b Bundle, sink: S, config: Config, start: i64) -> Self {
        Engine {
            machine: Machine::new(bundle, config, start),
            sink,
            buffer: Vec::new(),
            refused: Vec::new(),
        }
    }

    /// The sink, to read what was produced.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, for a host to flush what it buffers.
    pub fn sink_mut(&mut self) -> &mut S {
        self.hand_over();
        &mut self.sink
    }

    /// Gives back the sink.
    pub fn into_sink(mut self) -> S {
        self.hand_over();
        self.sink
    }

    #[cfg(feature = "oracle")]
    /// Applies one call (see `Machine::apply`) and hands over its effects.
    pub fn apply(&mut self, call: &Call) -> Result<Applied, Rejection> {
        let applied = self.machine.apply(call);
        self.hand_over();
        applied
    }

    /// Applies a decoded call (see [`Machine::apply_typed`]) and hands over its effects.
    pub fn apply_typed(&mut self, call: TypedCall<'_>) -> Result<Applied, Rejection> {
        let applied = self.machine.apply_typed(call);
        self.hand_over();
        applied
    }

    /// Applies a decoded call with its notes (see [`Machine::apply_noted`])
    /// and hands over its effects.
    pub fn apply_noted(
        &mut self,
        call: TypedCall<'_>,
        notes: Notes<'_>,
    ) -> Result<Applied, Rejection> {
        let applied = self.machine.apply_noted(call, notes);
        self.hand_over();
        applied
    }

    /// Fires timers due before `t` (see [`Machine::advance_before`]) and
    /// hands over their effects.
    pub fn advance_before(&mut self, t: i64) {
        self.machine.advance_before(t);
        self.hand_over();
    }

    /// Fires timers due at or before `t` (see [`Machine::advance_through`]),
    /// handing over their effects as it goes.
    pub fn advance_through(&mut self, t: i64) {
        self.whole(ClockStep::Until(t));
    }

    /// Fires timers until only schedules remain (see [`Machine::drain`]),
    /// handing over their effects as it goes.
    pub fn drain(&mut self) {
        self.whole(ClockStep::Drain);
    }

    /// Takes the next part of a clock step (see [`Machine::advance_part`])
    /// and hands over its effects.
    pub fn advance_part(&mut self, step: ClockStep, max: usize) -> Option<i64> {
        let stopped = self.machine.advance_part(step, max);
        self.hand_over();
        stopped
    }

    /// Replays a part of a clock step (see [`Machine::replay_part`]) and
    /// hands over its effects.
    pub fn replay_part(&mut self, step: ClockStep, through: i64) {
        self.machine.replay_part(step, through);
        self.hand_over();
    }

    /// Takes a whole clock step in parts, handing over each part's effects:
    /// a step that fires every customer's timer holds one part's sends and
    /// records, not the step's.
    fn whole(&mut self, step: ClockStep) {
        while self.advance_part(step, HAND_OVER_TIMERS).is_some() {}
    }

    /// Takes in a customer handed over by another engine (see
    /// [`Machine::take_in`]) and hands over the effects of joining it.
    pub fn take_in(
        &mut self,
        bytes: &[u8],
        arena: &'b Bundles,
    ) -> Result<(), crate::engine::checkpoint::CheckpointError> {
        let taken = self.machine.take_in(bytes, arena);
        self.hand_over();
        taken
    }

    /// Deploys a new release (see [`Machine::deploy`]) and hands over its effects.
    pub fn deploy(
        &mut self,
        bundle: &'b Bundle,
        arena: &'b Bundles,
    ) -> Result<Deployed, DeployError> {
        let deployed = self.machine.deploy(bundle, arena);
        self.hand_over();
        deployed
    }

    /// Gives every effect made so far to the sink, in order. A refused send
    /// is taken back from the machine and its `sent` record, which follows
    /// it, is written as failed with the sink's reason.
    fn hand_over(&mut self) {
        self.machine.swap_effects(&mut self.buffer);
        if self.buffer.is_empty() {
            return;
        }
        for effect in self.buffer.drain(..) {
            match effect {
                Effect::Send { channel, message } => {
                    if let Err(reason) = self.sink.deliver(channel, &message)
                        && self.machine.delivery_failed(&message.idempotency_key)
                    {
                        self.refused.push((message.idempotency_key, reason));
                    }
                }
                Effect::Record(mut record) => {
                    if !self.refused.is_empty() {
                        fail_refused(&mut record, &mut self.refused);
                    }
                    self.sink.record(record);
                }
                Effect::Membership(change) => self.sink.membership(change),
            }
        }
        self.refused.clear();
    }
}

/// Writes `record`, the `sent` record of a send the sink refused, as failed.
fn fail_refused(record: &mut Record, refused: &mut Vec<(String, String)>) {
    let What::Send {
        key,
        outcome,
        reason,
        code,
        ..
    } = &mut record.what
    else {
        return;
    };
    if *outcome != Outcome::Sent {
        return;
    }
    if let Some(i) = refused.iter().position(|(k, _)| k == key) {
        let (_, why) = refused.swap_remove(i);
        *outcome = Outcome::Failed;
        *reason = Some(why);
        *code = Some(SendReason::DeliveryFailed);
    }
}

impl<'b, S: Sink> Deref for Engine<'b, S> {
    type Target = Machine<'b>;

    fn deref(&self) -> &Machine<'b> {
        &self.machine
    }
}

impl<S: Sink> DerefMut for Engine<'_, S> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.machine
    }
}
