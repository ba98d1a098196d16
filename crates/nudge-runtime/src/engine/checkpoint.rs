//! The engine's whole state as bytes, and back: what a store keeps so that a
//! restart loads state instead of replaying every call ever applied.
//!
//! A checkpoint holds every release's bundle (in its wire encoding, since a
//! deploy that evolves the schema runs older releases on rebased code that
//! exists nowhere else) and every table the engine changes as it runs.
//! Caches (the VMs' computed lets and templates) and what follows from the
//! newest bundle (wire names, standard traits, the policy's zone) are
//! rebuilt. The encoding is postcard: compact and fast, with the layout set
//! by the field order below, so [`FORMAT`] must change with any change of
//! a stored type.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use nudge_bytecode::Bundle;
use serde::{Deserialize, Serialize};

use super::customer::{Customer, Traits};
use super::instance::Slots;
use super::{AddressSend, Bundles, Machine, evolve, rel};
use crate::dedupe::Dedupe;
use crate::identity::Identities;
use crate::record::{Outcome, SendReason};
use crate::stats::{FEEDBACK_KINDS, Stats};
use crate::timers::Timers;

/// The version of the state's layout as rows (see [`super::rows`]): what a
/// store writes now, and what [`Machine::checkpoint`] writes. Version 6
/// added what the arms of splits that optimise have done (the head's
/// counts, the arms each goal watch took); version 7 keeps the keys of the
/// sends made with each live instance instead of one set of every send
/// ever made; version 8 ends each customer's row with the generation of the
/// tables it is laid out by, and keeps in the head how older generations
/// move onto the newest (see [`super::tables`]).
pub const FORMAT: u32 = 8;

/// The layout of rows written by the release before: still read; its
/// customers' rows are of the first generation of tables.
pub const ROWS_FORMAT_7: u32 = 7;

/// The layout of rows written two releases before: still read, its set
/// of every send made handed to the live instances that made them.
pub const ROWS_FORMAT_6: u32 = 6;

/// The layout of rows written three releases before: still read, also with
/// no counts for splits that optimise (none could be written then).
pub const ROWS_FORMAT_5: u32 = 5;

/// The version of the whole-state layout below, which a store of an
/// earlier release holds: still read, so that such a store (even one whose
/// calls were compacted away) goes on from it and is written as rows.
pub const BLOB_FORMAT: u32 = 4;

/// Whether a store's checkpoint of layout `format` can be read.
pub fn readable(format: u32) -> bool {
    in_rows(format) || format == BLOB_FORMAT
}

/// Whether the customer rows of a store's checkpoint of layout `format`
/// read as rows of this layout: such a store can leave its customers to
/// be read when first needed, and keeps them as they are (layout 7
/// changed only the instances' rows and the head; layout 8 reads a row
/// without a generation as one of the first).
pub fn customers_as_current(format: u32) -> bool {
    format == FORMAT || format == ROWS_FORMAT_7 || format == ROWS_FORMAT_6
}

/// Whether a store's checkpoint of layout `format` is kept as rows (else
/// it is the whole state in one value).
pub fn in_rows(format: u32) -> bool {
    format == FORMAT
        || format == ROWS_FORMAT_7
        || format == ROWS_FORMAT_6
        || format == ROWS_FORMAT_5
}

/// Which layout is being read or written, for the parts of the state that
/// later layouts added: postcard's layout is the field order alone, so such
/// a part reads as empty from an older layout (and is left out when one is
/// written, which only tests do, to make the rows an older release wrote).
pub(crate) mod layout {
    use std::cell::Cell;

    use serde::{Deserialize, Deserializer};

    thread_local! {
        static LAYOUT: Cell<u32> = const { Cell::new(super::FORMAT) };
    }

    /// While this lives, what is decoded (or encoded) on this thread is
    /// read (or written) as one layout version.
    pub(crate) struct Layout(u32);

    /// Reads (and writes) as layout `format` until the guard is dropped.
    pub(crate) fn at(format: u32) -> Layout {
        Layout(LAYOUT.with(|r| r.replace(format)))
    }

    impl Drop for Layout {
        fn drop(&mut self) {
            LAYOUT.with(|r| r.set(self.0));
        }
    }

    /// A part added in layout `V`: read from layout `V` on, else empty.
    pub(crate) fn since<'de, const V: u32, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
        d: D,
    ) -> Result<T, D::Error> {
        if LAYOUT.with(Cell::get) >= V {
            T::deserialize(d)
        } else {
            Ok(T::default())
        }
    }

    /// Whether a part added in layout `V` is left out: when writing an
    /// earlier layout.
    pub(crate) fn before<const V: u32, T>(_: &T) -> bool {
        LAYOUT.with(Cell::get) < V
    }

    /// A part layout `V` removed: read before layout `V`, else empty.
    pub(crate) fn until<'de, const V: u32, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
        d: D,
    ) -> Result<T, D::Error> {
        if LAYOUT.with(Cell::get) < V {
            T::deserialize(d)
        } else {
            Ok(T::default())
        }
    }

    /// Whether a part layout `V` removed is left out: when writing layout
    /// `V` or later.
    pub(crate) fn gone<const V: u32, T>(_: &T) -> bool {
        LAYOUT.with(Cell::get) >= V
    }
}

/// Why a checkpoint could not be taken or read back.
#[derive(Debug)]
pub enum CheckpointError {
    /// It was written by another version of the engine's layout.
    Format {
        /// The version found.
        found: u32,
    },
    /// The bytes are not a checkpoint, or are damaged.
    Decode(String),
    /// A release's bundle in it cannot be read.
    Bundle(String),
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Format { found } => write!(
                f,
                "the checkpoint has layout version {found}, this engine reads {BLOB_FORMAT} to {FORMAT}"
            ),
            CheckpointError::Decode(e) => write!(f, "the checkpoint cannot be read: {e}"),
            CheckpointError::Bundle(e) => {
                write!(f, "a release in the checkpoint cannot be read: {e}")
            }
        }
    }
}

impl std::error::Error for CheckpointError {}

impl State {
    /// The clock the state was taken at.
    pub(super) fn now(&self) -> i64 {
        self.now
    }
}

/// Everything the engine changes as it runs. Serialized from the engine's
/// own tables (moved out and back, never copied), in this field order.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct State {
    format: u32,
    pub(super) releases: Vec<Vec<u8>>,
    flow_names: Vec<Arc<str>>,
    message_names: Vec<Arc<str>>,
    goal_events: HashSet<u32>,
    now: i64,
    pub(super) identities: Identities,
    pub(super) dedupe: Dedupe,
    pub(super) customers: super::table::Customers,
    pub(super) instances: Slots,
    free: Vec<u32>,
    pub(super) timers: Timers,
    remembered: crate::fast::Set<u32>,
    seq: u64,
    generations: u32,
    /// Fingerprints of every send made, as layouts before 7 kept them: read
    /// only to hand each live instance its own (see [`Machine::install`]).
    #[serde(
        deserialize_with = "layout::until::<7, _, _>",
        skip_serializing_if = "layout::gone::<7, _>"
    )]
    pub(super) sent_keys: crate::fast::Set<u128>,
    dirty: Vec<u32>,
    undeliverable: HashSet<String>,
    stopped_phones: HashSet<String>,
    address_sends: HashMap<String, Vec<AddressSend>>,
    address_pushes: u32,
    cap_window: i64,
    forever: HashSet<u32>,
    horizon: i64,
    applies_since_horizon: u32,
    /// The counters, as JSON (their serde shape leaves zeros out).
    stats: String,
    /// `FlowStats::by_code` per flow, whose keys are static codes.
    by_code: Vec<(String, String, String, u64)>,
    /// `Stats::feedback`, whose kinds are static names.
    feedback: Vec<(String, String, u64)>,
    /// What the arms of splits that optimise have done (layout 6 on).
    #[serde(
        deserialize_with = "layout::since::<6, _, _>",
        skip_serializing_if = "layout::before::<6, _>"
    )]
    splits: super::SplitCounts,
    /// How customers' rows of older tables move onto the newest (layout 8 on).
    #[serde(
        deserialize_with = "layout::since::<8, _, _>",
        skip_serializing_if = "layout::before::<8, _>"
    )]
    pub(super) tables: super::tables::Tables,
}

impl<'b> Machine<'b> {
    /// The engine's state as bytes, to be given to [`Machine::restore`] by a
    /// later process. Takes `&mut self` because the tables are moved out to
    /// be written and put back, not copied.
    pub fn checkpoint(&mut self) -> Result<Vec<u8>, CheckpointError> {
        // A whole state has no place for a deploy's arming in parts.
        self.arm_next(usize::MAX)?;
        self.page_in_all()?;
        let mut state = self.small_state(FORMAT, true)?;
        self.swap_tables(&mut state);
        let bytes = postcard::to_allocvec(&state);
        // Put the tables back before anything can fail.
        self.swap_tables(&mut state);
        let mut bytes = bytes.map_err(|e| CheckpointError::Decode(e.to_string()))?;
        // What the events taught of the products follows the state, as in
        // the rows' head: a checkpoint without it reads as nothing learned.
        bytes.extend(
            postcard::to_allocvec(&self.learned)
                .map_err(|e| CheckpointError::Decode(e.to_string()))?,
        );
        Ok(bytes)
    }

    /// The state's values and counters, without its tables.
    /// The releases' bundles are encoded only `with_releases`.
    pub(super) fn small_state(
        &self,
        format: u32,
        with_releases: bool,
    ) -> Result<State, CheckpointError> {
        Ok(State {
            format,
            releases: if with_releases {
                self.encoded_releases()
            } else {
                Vec::new()
            },
            flow_names: self.flow_names.clone(),
            message_names: self.message_names.clone(),
            now: self.now,
            seq: self.seq,
            generations: self.generations,
            address_pushes: self.address_pushes,
            cap_window: self.cap_window,
            horizon: self.horizon,
            applies_since_horizon: self.applies_since_horizon,
            stats: serde_json::to_string(&self.stats)
                .map_err(|e| CheckpointError::Decode(e.to_string()))?,
            by_code: self
                .stats
                .flows
                .iter()
                .flat_map(|(flow, s)| {
                    s.by_code
                        .iter()
                        .map(|(&(o, c), &n)| (flow.clone(), o.to_string(), c.to_string(), n))
                })
                .collect(),
            feedback: self
                .stats
                .feedback
                .iter()
                .map(|((kind, flow), &n)| (kind.to_string(), flow.clone(), n))
                .collect(),
            ..State::default()
        })
    }

    /// Replaces this engine's state with a checkpoint's. Its releases' bundles
    /// are `current` when they encode the same, else decoded into `arena`.
    /// The sink and the settings stay this engine's. On error the engine
    /// is unchanged.
    pub fn restore(
        &mut self,
        bytes: &[u8],
        current: &'b Bundle,
        arena: &'b Bundles,
    ) -> Result<(), CheckpointError> {
        let format: u32 = postcard::take_from_bytes(bytes)
            .map(|(f, _)| f)
            .map_err(|e| CheckpointError::Decode(e.to_string()))?;
        if format != BLOB_FORMAT && format != FORMAT {
            return Err(CheckpointError::Format { found: format });
        }
        let _layout = layout::at(format);
        let (state, rest): (State, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| CheckpointError::Decode(e.to_string()))?;
        let learned = if rest.is_empty() {
            Default::default()
        } else {
            postcard::from_bytes(rest)
                .map_err(|e| CheckpointError::Decode(format!("the products learned: {e}")))?
        };
        self.install(state, current, arena)?;
        self.learned = learned;
        self.arming = None;
        Ok(())
    }

    /// Every release's bundle, in its wire encoding, oldest first.
    pub(super) fn encoded_releases(&self) -> Vec<Vec<u8>> {
        self.releases.iter().map(|r| r.bundle.encode()).collect()
    }

    /// Replaces this engine's state with `state`; on error the engine is
    /// unchanged.
    pub(super) fn install(
        &mut self,
        mut state: State,
        current: &'b Bundle,
        arena: &'b Bundles,
    ) -> Result<(), CheckpointError> {
        let mut stats: Stats = serde_json::from_str(&state.stats)
            .map_err(|e| CheckpointError::Decode(format!("counters: {e}")))?;
        for (flow, outcome, code, n) in std::mem::take(&mut state.by_code) {
            let outcome = Outcome::ALL
                .iter()
                .map(|o| o.name())
                .find(|o| *o == outcome)
                .ok_or_else(|| CheckpointError::Decode(format!("unknown outcome {outcome:?}")))?;
            let code = match code.as_str() {
                "" => "",
                c => SendReason::ALL
                    .iter()
                    .map(|r| r.code())
                    .find(|r| *r == c)
                    .ok_or_else(|| CheckpointError::Decode(format!("unknown reason {c:?}")))?,
            };
            stats.flow_mut(&flow).by_code.insert((outcome, code), n);
        }
        for (kind, flow, n) in std::mem::take(&mut state.feedback) {
            let kind = FEEDBACK_KINDS
                .iter()
                .find(|k| **k == kind)
                .ok_or_else(|| CheckpointError::Decode(format!("unknown feedback {kind:?}")))?;
            stats.feedback.insert((kind, flow), n);
        }
        let current_bytes = current.encode();
        let mut bundles: Vec<&'b Bundle> = Vec::with_capacity(state.releases.len());
        for bytes in &state.releases {
            if *bytes == current_bytes {
                bundles.push(current);
            } else {
                let b =
                    Bundle::decode(bytes).map_err(|e| CheckpointError::Bundle(e.to_string()))?;
                bundles.push(arena.alloc(b));
            }
        }
        let Some(&newest) = bundles.last() else {
            return Err(CheckpointError::Decode("it holds no release".into()));
        };
        check(&state, &bundles).map_err(CheckpointError::Decode)?;

        // Nothing can fail from here on.
        self.flow_names = std::mem::take(&mut state.flow_names);
        self.flow_keys = index(&self.flow_names);
        self.message_names = std::mem::take(&mut state.message_names);
        self.message_keys = index(&self.message_names);
        self.releases.clear();
        for bundle in bundles {
            let release = self.release_of(bundle);
            self.releases.push(release);
        }
        if let Some((_, older)) = self.releases.split_last_mut() {
            for r in older {
                // Only the newest release starts instances.
                r.triggered_by.clear();
            }
        }
        self.newest_changed();
        self.by_wire = evolve::by_wire(newest);
        self.traits = Traits::of(newest);
        self.now = state.now;
        self.seq = state.seq;
        self.generations = state.generations;
        self.address_pushes = state.address_pushes;
        self.cap_window = state.cap_window;
        self.horizon = state.horizon;
        // Worked out again at the next look, by the restored releases.
        self.keep_from.clear();
        self.applies_since_horizon = state.applies_since_horizon;
        self.stats = stats;
        let legacy_sent = std::mem::take(&mut state.sent_keys);
        self.swap_tables(&mut state);
        self.hand_sent_keys_to_instances(&legacy_sent);
        // With a store to read them back from, timers a take stored can be
        // let go from here on (a restore of rows may have left some there).
        if self.pager.is_some() && !self.timers.leaves_in_store() {
            self.timers.leave_in_store(i64::MAX, 0, 0);
        }
        debug_assert!(rel(&self.releases, self.current()).bundle.flows.len() == newest.flows.len());
        Ok(())
    }

    /// Gives each live instance the keys of the sends it made, out of the
    /// set of every send made that layouts before 7 kept. A key names its
    /// instance's flow, version, customer, number and step, so each
    /// instance's are found by making the key of each of its flow's steps,
    /// which names the id its customer was shown by: its origin, else the
    /// customer's display id, which the identity graph gives for a
    /// customer left in the store (a record's key is always that id).
    fn hand_sent_keys_to_instances(&mut self, sent: &crate::fast::Set<u128>) {
        if sent.is_empty() {
            return;
        }
        for id in 0..self.instances.len() as u32 {
            let Some(inst) = self.instances.get(id) else {
                continue;
            };
            let c = inst.customer;
            let who = match (inst.origin(), self.customers.peek(c)) {
                (Some(origin), _) => origin.to_string(),
                (None, Some(cust)) => cust.key.to_string(),
                (None, None) => self.display_id(c),
            };
            let Some(inst) = self.instances.get(id) else {
                continue;
            };
            let flow = self.flow_of(inst.release, inst.flow);
            let made: Vec<u128> = (0..flow.steps.len())
                .map(|step| {
                    crate::dedupe::fingerprint(&super::send_key(
                        &flow.name,
                        &flow.version,
                        &who,
                        inst.number,
                        step as u16,
                    ))
                })
                .filter(|fp| sent.contains(fp))
                .collect();
            if made.is_empty() {
                continue;
            }
            if let Some(inst) = self.instances.get_mut(id) {
                for fp in made {
                    inst.note_sent(fp);
                }
            }
        }
    }

    /// Swaps the engine's tables with the state's.
    fn swap_tables(&mut self, state: &mut State) {
        use std::mem::swap;
        swap(&mut self.identities, &mut state.identities);
        swap(&mut self.dedupe, &mut state.dedupe);
        // The setting in force now, not the one the state was saved under.
        self.dedupe
            .set_window(crate::millis::ms(self.config.dedupe_window));
        swap(&mut self.customers, &mut state.customers);
        swap(&mut self.instances, &mut state.instances);
        swap(&mut self.timers, &mut state.timers);
        self.swap_small(state);
    }

    /// Swaps the engine's small tables with the state's: the ones a store
    /// keeps in one value rather than as rows.
    pub(super) fn swap_small(&mut self, state: &mut State) {
        use std::mem::swap;
        swap(&mut self.goal_events, &mut state.goal_events);
        swap(&mut self.free, &mut state.free);
        swap(&mut self.remembered, &mut state.remembered);
        swap(&mut self.dirty, &mut state.dirty);
        swap(&mut self.undeliverable, &mut state.undeliverable);
        swap(&mut self.stopped_phones, &mut state.stopped_phones);
        swap(&mut self.address_sends, &mut state.address_sends);
        swap(&mut self.forever, &mut state.forever);
        swap(&mut self.splits, &mut state.splits);
        swap(&mut self.tables, &mut state.tables);
    }
}

/// Checks that a customer's record fits the newest release's tables: the
/// engine reads its profile and events by their numbers there.
pub(super) fn check_customer(cust: &Customer, newest: &Bundle) -> Result<(), String> {
    let profile = newest
        .schemas
        .get(newest.profile as usize)
        .map_or(0, |s| s.fields.len());
    if cust.profile.len() != profile {
        return Err(format!(
            "its profile has {} fields, the bundle's {profile}",
            cust.profile.len()
        ));
    }
    if let Some(e) = cust
        .events
        .iter()
        .find(|e| newest.schemas.get(e.schema as usize).is_none())
    {
        return Err(format!(
            "it has an event of schema {}, and the bundle has {}",
            e.schema,
            newest.schemas.len()
        ));
    }
    Ok(())
}

/// Checks that a decoded state holds together with its releases, as the
/// engine's own bookkeeping keeps it: the engine reads its tables by the
/// numbers it holds (releases, flows, slots, schemas, profile fields), so a
/// damaged or foreign checkpoint is refused here rather than failing later.
fn check(state: &State, bundles: &[&Bundle]) -> Result<(), String> {
    let Some(newest) = bundles.last() else {
        return Err("it holds no release".into());
    };
    let flow_in = |r: u32, f: u32| -> Result<(), String> {
        let Some(bundle) = bundles.get(r as usize) else {
            return Err(format!("release {r}, and it holds {}", bundles.len()));
        };
        if bundle.flows.get(f as usize).is_none() {
            return Err(format!(
                "flow {f} of release {r}, which has {}",
                bundle.flows.len()
            ));
        }
        Ok(())
    };
    state.instances.check()?;
    for (id, inst) in (0u32..).zip(state.instances.iter()) {
        let Some(inst) = inst else { continue };
        flow_in(inst.release, inst.flow)
            .map_err(|e| format!("the instance in slot {id} names {e}"))?;
        if !state.customers.contains_key(&inst.customer) {
            return Err(format!(
                "the instance in slot {id} belongs to customer {}, who is not in it",
                inst.customer
            ));
        }
    }
    if let Some(id) = state.free.iter().find(|&&id| !state.instances.is_free(id)) {
        return Err(format!("slot {id} is listed free, and is not a free slot"));
    }
    for (c, cust) in state.customers.iter() {
        check_customer(cust, newest).map_err(|e| format!("customer {c}: {e}"))?;
        if let Some(id) = cust
            .instances
            .iter()
            .find(|&id| state.instances.get(id).is_none())
        {
            return Err(format!(
                "customer {c} has the instance in slot {id}, which holds none"
            ));
        }
        for g in &cust.rare().goals {
            flow_in(g.release, g.flow).map_err(|e| format!("a goal of customer {c} names {e}"))?;
        }
    }
    state.identities.check()
}

/// Each name's position.
fn index(names: &[Arc<str>]) -> HashMap<Arc<str>, u32> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as u32))
        .collect()
}

/// Channel names kept as `&'static str` (an SMS STOP's opt-out), stored as
/// text and read back as the channel's own name.
pub(crate) mod channel_names {
    use std::collections::BTreeSet;

    use nudge_bytecode::Channel;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the names.
    pub fn serialize<S: Serializer>(set: &BTreeSet<&'static str>, s: S) -> Result<S::Ok, S::Error> {
        set.serialize(s)
    }

    /// Reads the names back; an unknown one is an error.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeSet<&'static str>, D::Error> {
        let names: Vec<String> = Vec::deserialize(d)?;
        names
            .iter()
            .map(|n| {
                Channel::ALL
                    .iter()
                    .map(|c| c.name())
                    .find(|c| c == n)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown channel {n:?}")))
            })
            .collect()
    }
}

/// A time zone, stored by its IANA name.
pub(crate) mod zone {
    use std::str::FromStr;

    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the zone's name.
    pub fn serialize<S: Serializer>(zone: &Option<Tz>, s: S) -> Result<S::Ok, S::Error> {
        match zone {
            Some(z) => s.serialize_some(z.name()),
            None => s.serialize_none(),
        }
    }

    /// Reads a zone back by name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tz>, D::Error> {
        let name: Option<String> = Option::deserialize(d)?;
        name.map(|n| {
            Tz::from_str(&n).map_err(|_| serde::de::Error::custom(format!("unknown zone {n:?}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fixtures::{RowsPager, apply, rows_of_layout, sent_keys, sent_then_waiting};
    use crate::engine::rows::MemoryRows;
    use crate::engine::{Config, Engine, Instance, MemorySink, Seen, SplitCounts};
    use crate::millis::ms;

    /// The cart example's events applied until an instance waits, then
    /// the checkpoint's state changed by `damage` and restored into a fresh
    /// engine: the error it gives.
    fn restore_damaged(damage: impl FnOnce(&mut State)) -> CheckpointError {
        let bundle = nudge_test_support::example_bundle("cart_recovery");
        let events = nudge_test_support::example_events("cart_recovery");
        let arena = Bundles::new();
        let new = || Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        let mut engine = new();
        for line in events.lines() {
            let _ = crate::ingest::apply_line(&mut engine, line);
            if engine.instances().next().is_some() {
                break;
            }
        }
        let bytes = engine.checkpoint().unwrap();
        let mut state: State = postcard::from_bytes(&bytes).unwrap();
        assert!(state.instances.iter().flatten().next().is_some());
        new().restore(&bytes, &bundle, &arena).unwrap();
        damage(&mut state);
        let damaged = postcard::to_allocvec(&state).unwrap();
        let mut other = new();
        let err = other.restore(&damaged, &bundle, &arena).unwrap_err();
        assert_eq!(other.stats(), new().stats(), "nothing changed");
        err
    }

    /// A change to a checkpoint's state.
    type Damage = Box<dyn FnOnce(&mut State)>;

    fn first_live(state: &mut State) -> &mut Instance {
        state.instances.iter_mut().flatten().next().unwrap()
    }

    fn a_customer(state: &mut State) -> &mut super::super::customer::Customer {
        state
            .customers
            .iter_unmarked_mut()
            .map(|(_, c)| c)
            .find(|c| c.instances.iter().next().is_some())
            .unwrap()
    }

    #[test]
    fn a_checkpoint_whose_numbers_lead_nowhere_is_refused() {
        let cases: Vec<(&str, Damage)> = vec![
            ("names release 9", Box::new(|s| first_live(s).release = 9)),
            (
                "names flow 999 of release 0",
                Box::new(|s| first_live(s).flow = 999),
            ),
            (
                "belongs to customer 4294967295",
                Box::new(|s| first_live(s).customer = u32::MAX),
            ),
            (
                "slot 100000 is listed free",
                Box::new(|s| s.free.push(100_000)),
            ),
            (
                "profile has",
                Box::new(|s| {
                    a_customer(s).profile.drop_last_field();
                }),
            ),
            (
                "has the instance in slot 70000",
                Box::new(|s| a_customer(s).instances.push(70_000)),
            ),
            (
                "has an event of schema 9999",
                Box::new(|s| {
                    a_customer(s).events.push(Seen {
                        at: 0,
                        seq: 0,
                        schema: 9999,
                        value: nudge_bytecode::Value::None,
                    })
                }),
            ),
        ];
        for (expected, damage) in cases {
            let err = restore_damaged(damage).to_string();
            assert!(err.contains(expected), "{expected:?} in {err}");
            assert!(err.starts_with("the checkpoint cannot be read"), "{err}");
        }
    }

    /// A flow whose split optimises, and calls that take both arms and
    /// reach the goal on one.
    fn optimising() -> (Bundle, Vec<String>) {
        let bundle = nudge_test_support::build(&[(
            "t.flow",
            "message m() {\n  channel email\n  subject \"s\"\n  body \"b\"\n}\n\
             flow f {\n  trigger checkout_started\n  entry always\n  goal order_completed within 1d\n\
             split optimise {\n    a {\n      wait 1h\n      send m()\n    }\n    b {\n      wait 1h\n      send m()\n    }\n  }\n}\n",
        )]);
        let mut lines = Vec::new();
        for i in 0..8 {
            lines.push(format!(
                r#"{{"type":"track","event":"Checkout Started","userId":"u{i}","timestamp":"2026-01-05T10:0{i}:00Z","properties":{{"value":5}}}}"#
            ));
        }
        lines.push(
            r#"{"type":"track","event":"Order Completed","userId":"u0","timestamp":"2026-01-05T10:30:00Z","properties":{"order_id":"o1"}}"#
                .to_string(),
        );
        (bundle, lines)
    }

    /// The outcomes of the sends in `sink`'s records, in order.
    fn send_outcomes(sink: &MemorySink) -> Vec<Outcome> {
        sink.records
            .iter()
            .filter_map(|r| match &r.what {
                crate::record::What::Send { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_live_instance_keeps_the_keys_of_its_sends_and_refuses_to_send_one_again() {
        let (bundle, lines) = sent_then_waiting();
        let arena = Bundles::new();
        let new = || Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        let mut engine = new();
        apply(&mut engine, &lines);
        assert_eq!(engine.sink().outbox.len(), 1);
        let key = crate::dedupe::fingerprint(&engine.sink().outbox[0].idempotency_key);
        assert_eq!(sent_keys(&engine), [vec![key]]);

        // Written as rows and read back, the instance keeps its key.
        let mut rows = MemoryRows::default();
        rows.apply(engine.take_changes().unwrap());
        let mut restored = new();
        restored.restore_rows(rows.rows(), &bundle, &arena).unwrap();
        assert_eq!(sent_keys(&restored), [vec![key]]);

        // The send after the wait, had it been made already (a deploy can
        // carry an instance back before a step it ran), is refused.
        let step = engine.flow_of(0, 0).steps.len() as u16 - 1;
        let (id, who) = engine
            .instances
            .iter()
            .flatten()
            .next()
            .map(|i| (i.customer, i.number))
            .unwrap();
        let flow = engine.flow_of(0, 0);
        let second = crate::dedupe::fingerprint(&super::super::send_key(
            &flow.name,
            &flow.version,
            "u0",
            who,
            step,
        ));
        let slot = (0..engine.instances.len() as u32)
            .find(|&s| engine.instances.get(s).is_some_and(|i| i.customer == id))
            .unwrap();
        engine.instances.get_mut(slot).unwrap().note_sent(second);
        engine.advance_through(ms(2 * 86_400) + engine.now);
        restored.advance_through(ms(2 * 86_400) + restored.now);
        assert_eq!(
            send_outcomes(engine.sink()),
            [Outcome::Sent, Outcome::Duplicate]
        );
        assert_eq!(engine.sink().outbox.len(), 1);
        assert_eq!(
            send_outcomes(restored.sink()),
            [Outcome::Sent],
            "the restored engine starts from an empty sink"
        );
        assert_eq!(restored.sink().outbox.len(), 1);
        // Ended, the instance took its keys with it.
        assert!(sent_keys(&engine).is_empty() && sent_keys(&restored).is_empty());
    }

    #[test]
    fn rows_of_layout_6_hand_their_set_of_sends_to_the_instances_that_made_them() {
        let (bundle, lines) = sent_then_waiting();
        let arena = Bundles::new();
        let new = || Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        let mut engine = new();
        apply(&mut engine, &lines);
        let key = crate::dedupe::fingerprint(&engine.sink().outbox[0].idempotency_key);
        // Rows as the release before wrote them: no keys in the instances'
        // rows, one set of every send made beside them (here with the key
        // of a send of an instance long ended).
        let old = rows_of_layout(&mut engine, ROWS_FORMAT_6);
        let ended = crate::dedupe::fingerprint("f/0123/u9/1/send@0");
        engine.advance_through(ms(2 * 86_400) + engine.now);
        assert_eq!(engine.sink().outbox.len(), 2);

        // Read whole, and read with the customers left in the store.
        for lazy in [false, true] {
            let store = std::sync::Arc::new(std::sync::Mutex::new(old.clone()));
            let mut legacy = if lazy {
                old.rows_without_customers()
            } else {
                old.rows()
            };
            legacy.sent_keys = vec![ended, key];
            let mut restored = new();
            if lazy {
                restored.set_pager(Box::new(RowsPager(store.clone())));
            }
            restored.restore_rows(legacy, &bundle, &arena).unwrap();
            assert_eq!(sent_keys(&restored), [vec![key]], "lazy: {lazy}");
            // The next take writes the instances and the head in this
            // layout and empties the old set; customers stay as they are.
            let changes = restored.take_changes().unwrap();
            assert!(!changes.full && changes.forget_sent_keys);
            assert_eq!(changes.format, FORMAT);
            assert_eq!(changes.instances.len(), 1);
            assert!(changes.customers.is_empty());
            store.lock().unwrap().apply(changes);
            assert!(!restored.take_changes().unwrap().forget_sent_keys);
            let mut again = new();
            again
                .restore_rows(store.lock().unwrap().rows(), &bundle, &arena)
                .unwrap();
            assert_eq!(sent_keys(&again), [vec![key]]);
            // Both go on as the engine that never stopped.
            for e in [&mut restored, &mut again] {
                e.advance_through(ms(2 * 86_400) + e.now);
                assert_eq!(e.sink().outbox, engine.sink().outbox[1..]);
            }
        }
    }

    #[test]
    fn rows_and_checkpoints_of_earlier_layouts_read_with_no_split_counts() {
        let (bundle, lines) = optimising();
        let arena = Bundles::new();
        let new = || Engine::new(&bundle, MemorySink::default(), Config::default(), i64::MIN);
        let mut engine = new();
        for line in &lines {
            crate::ingest::apply_line(&mut engine, line).unwrap();
        }
        let counts = engine.split_counts().clone();
        assert_eq!(
            counts.all().iter().map(|c| c.entries).sum::<u64>(),
            8,
            "{counts:?}"
        );
        assert_eq!(counts.all().iter().map(|c| c.conversions).sum::<u64>(), 1);
        let watched = |e: &Engine<'_, MemorySink>| -> Vec<Vec<(u16, u16)>> {
            e.customers
                .values()
                .flat_map(|c| c.rare().goals.iter().map(|g| g.arms.clone()))
                .collect()
        };
        assert!(watched(&engine).iter().all(|a| a.len() == 1));

        // Rows as the release before wrote them: layout 5 has neither the
        // head's counts nor the goal watches' arms.
        let mut current = MemoryRows::default();
        current.apply(engine.take_changes().unwrap());
        let old = {
            let _layout = layout::at(ROWS_FORMAT_5);
            engine.retake_all();
            let mut changes = engine.take_changes().unwrap();
            assert_eq!(changes.head[0], FORMAT as u8);
            changes.head[0] = ROWS_FORMAT_5 as u8;
            let mut rows = MemoryRows::default();
            rows.apply(changes);
            rows
        };
        assert_ne!(old.rows().head.len(), current.rows().head.len());
        let mut restored = new();
        restored
            .restore_rows(current.rows(), &bundle, &arena)
            .unwrap();
        assert_eq!(restored.split_counts(), &counts);
        let mut legacy = new();
        legacy.restore_rows(old.rows(), &bundle, &arena).unwrap();
        assert_eq!(legacy.split_counts(), &SplitCounts::default());
        assert!(watched(&legacy).iter().all(Vec::is_empty));
        assert_eq!(watched(&legacy).len(), watched(&engine).len());

        // A whole state as earlier releases wrote it (layout 4).
        let blob = {
            let _layout = layout::at(BLOB_FORMAT);
            let mut bytes = engine.checkpoint().unwrap();
            assert_eq!(bytes[0], FORMAT as u8);
            bytes[0] = BLOB_FORMAT as u8;
            bytes
        };
        let mut legacy = new();
        legacy.restore(&blob, &bundle, &arena).unwrap();
        assert_eq!(legacy.split_counts(), &SplitCounts::default());
        assert!(watched(&legacy).iter().all(Vec::is_empty));
        let mut whole = new();
        whole
            .restore(&engine.checkpoint().unwrap(), &bundle, &arena)
            .unwrap();
        assert_eq!(whole.split_counts(), &counts);
        // The releases' rows of layouts 5 and 6 are rows; anything else is refused.
        assert!(in_rows(ROWS_FORMAT_5) && in_rows(ROWS_FORMAT_6) && in_rows(FORMAT));
        assert!(!in_rows(BLOB_FORMAT));
        assert!(readable(BLOB_FORMAT) && !readable(FORMAT + 1));
    }
}
