//! The engine: applies customer calls and timers to flow instances.
//!
//! The engine owns the clock, the identity graph, every customer and every
//! instance. It runs flow code through the VM, never source. Time moves only
//! when the caller says so ([`Machine::advance_before`], [`Machine::advance_through`],
//! [`Machine::drain`]), which is what makes the same engine serve replays on a
//! virtual clock and tests alike.
//!
//! Work per event is bounded by the customer's own instances: exit rules,
//! waits and goals are looked up through the customer, never by scanning
//! all instances.
//!
//! The engine runs one or more *releases* of the project: the bundle it was
//! made with, then one per [`Machine::deploy`]. Everything new starts on the
//! newest; an instance runs to its end on the release it started on unless a
//! deploy carries it over (see the `deploy` module).

pub mod checkpoint;
mod customer;
mod deploy;
mod evolve;
#[cfg(test)]
mod fixtures;
mod handoff;
mod input;
mod instance;
pub(crate) mod marks;
mod paging;
mod pipeline;
mod profile;
mod recs;
pub mod rows;
mod splits;
mod table;
mod tables;
mod triggers;
mod view;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono_tz::Tz;
use nudge_bytecode::{Bundle, Channel, Flow, Schema, Value, format_instant_ms};
use nudge_channels::Outgoing;
use nudge_vm::{Scope, UnitRef, Vm};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[cfg(feature = "oracle")]
use crate::decode;
use crate::dedupe::Dedupe;
#[cfg(feature = "oracle")]
use crate::identity::Names;
use crate::identity::{CustomerId, Identities};
use crate::ingest::{Decoder, TypedCall};
use crate::record::{ExitReason, Membership, Outcome, Record, What};
use crate::segment::Rejection;
#[cfg(feature = "oracle")]
use crate::segment::{Call, CallKind};
use crate::stats::Stats;
use crate::timers::{Timers, Wake};

pub use customer::{Customer, Seen, Traits};
pub use deploy::{AddedFlow, DeployError, Deployed, Fate, FlowReport, SchemaChanges, StepReport};
pub use evolve::Bundles;
pub use handoff::HANDOFF_FORMAT;
pub use instance::{Instance, Version, Waiting};
pub use paging::{Pager, Paging};
pub use splits::{ArmCounts, SplitCounts};
pub use view::{ProfileView, json_of};

pub use crate::driver::{Engine, MemorySink, Sink, Step};

/// What the engine produced, as data: the host delivers, writes and
/// publishes it. Effects come out in the order they happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// A message that passed the send pipeline, to be delivered. The engine
    /// already counts it as sent (for caps, idempotency and the counters);
    /// a host that cannot hand it over says so with
    /// [`Machine::delivery_failed`] before its next input.
    Send {
        /// The channel it goes out on.
        channel: Channel,
        /// The rendered message with its idempotency key.
        message: Outgoing,
    },
    /// Something that happened to a customer, for the trace.
    Record(Record),
    /// An audience membership change, for the audience feeds.
    Membership(Membership),
}

/// A send of the current step, kept until the next input so that a host's
/// failure to deliver it can be taken back exactly.
#[derive(Clone, Debug)]
struct Unsettled {
    key: String,
    /// The instance that made it (its slot).
    instance: u32,
    customer: u32,
    release: u32,
    flow: u32,
    sent: customer::Sent,
    /// The lower-cased address its marketing send was logged under.
    address: Option<String>,
}

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Sends held by quiet hours are released spread over this many seconds
    /// after the window ends, not in one burst.
    pub release_spread: i64,
    /// Emails (lower-cased), phone numbers and customer ids never to message.
    pub suppression: std::collections::HashSet<String>,
    /// A trigger that arrives more than this many seconds after it happened
    /// starts no instance (it still updates the profile and the history).
    pub max_lateness: i64,
    /// Whether a recurring schedule fires for every occurrence the clock
    /// passes (a replay: the virtual clock's time went by), or only for the
    /// latest of those one advance passes (a live clock that jumped, after
    /// downtime: one newsletter, not a storm of them).
    pub catch_up_schedules: bool,
    /// How many calls go by between two looks at what the engine may
    /// forget (events and sends no rule can read any more); 0 keeps
    /// everything. Each look walks every live instance and customer.
    pub forget_every: u32,
    /// How long a call's `messageId` is remembered to drop a repeat of it,
    /// in seconds of the clock (at least this, at most about twice); 0
    /// remembers every id for ever.
    pub dedupe_window: i64,
    /// The catalogue file's products and the project's fallback list, for
    /// `recommend` (empty without `[catalogue]` in `nudge.toml`).
    pub catalogue: Arc<crate::catalogue::CatalogueFile>,
    /// With no store behind the engine, the most customers held as records
    /// between calls; the others are held frozen, as the bytes of their
    /// row, and decoded when needed (see [`Machine::freeze`]). `None` holds
    /// every customer as a record. A store's budget works through
    /// [`Machine::let_go`] instead.
    pub customers_in_memory: Option<usize>,
}

/// The default lateness bound: a day covers a phone that was offline
/// overnight, and a reminder for a cart older than that would be noise.
pub const DEFAULT_MAX_LATENESS: i64 = 24 * 3600;

/// Calls between two looks at what may be forgotten: often enough that
/// histories stay short, rarely enough that the walk costs little per call.
pub const DEFAULT_FORGET_EVERY: u32 = 65_536;

/// How long message ids are remembered by default: a week covers a
/// sender's retries and exports that overlap by days, and bounds the
/// memory to two weeks of traffic.
pub const DEFAULT_DEDUPE_WINDOW: i64 = 7 * 24 * 3600;

impl Default for Config {
    fn default() -> Self {
        Config {
            release_spread: 15 * 60,
            suppression: Default::default(),
            max_lateness: DEFAULT_MAX_LATENESS,
            catch_up_schedules: true,
            forget_every: DEFAULT_FORGET_EVERY,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            catalogue: Arc::default(),
            customers_in_memory: None,
        }
    }
}

/// What became of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// It was applied.
    Applied,
    /// Its `messageId` was seen before; nothing changed.
    Duplicate,
}

/// One bundle the engine runs, with what it needs to run it. Indexes here
/// are the bundle's own: flow and message numbers differ between releases.
struct Release<'b> {
    bundle: &'b Bundle,
    vm: Vm<'b>,
    /// What running each of the bundle's flows needs, in the bundle's order.
    flows: Vec<FlowRun<'b>>,
    /// Each message's key in `Engine::message_names`.
    message_keys: Vec<u32>,
    /// Flows started by each event schema, highest priority first.
    triggered_by: HashMap<u32, Vec<u32>>,
    /// Whether its code asks for recommendations (`recommend`, `next_order_at`).
    recommends: bool,
    /// The (event schema, window in seconds) its segments and `let`s read
    /// within constant windows: a `trigger entering` segment is looked at
    /// again as a customer's event leaves one.
    windows: Vec<(u32, i64)>,
    /// A new customer's profile, copied for each one rather than built
    /// from the schema's defaults every time.
    fresh_profile: customer::Profile,
}

impl<'b> Release<'b> {
    /// Flow `f` of this release.
    ///
    /// A flow number is only ever kept together with the release it belongs
    /// to (instances, goal watches and sends of the current step hold both;
    /// the newest release's numbers come from its own table or from
    /// `Machine::newest`), rebasing a release keeps its flows, and a
    /// restored checkpoint is checked for it (`checkpoint::check`), so the
    /// number is always within this table.
    #[allow(clippy::indexing_slicing)]
    fn flow(&self, f: u32) -> &FlowRun<'b> {
        &self.flows[f as usize]
    }
}

/// One flow of a release, with what the engine works out for it once.
struct FlowRun<'b> {
    /// The flow as the bundle has it.
    def: &'b Flow,
    /// Its key in `Engine::flow_names`.
    key: u32,
    /// Its version hash, shared by its instances.
    version: instance::Version,
    /// What its code reads of its trigger event.
    trigger_use: instance::TriggerUse,
    /// What its instances and goal watches read back (the bundle's
    /// retention, by flow).
    reads: FlowReads,
}

/// The event schemas one flow reads back from a customer's history.
#[derive(Clone, Debug, Default)]
struct FlowReads {
    /// From an instance's start while it lives.
    instances: Vec<u32>,
    /// From an instance's start until its goal's window closes.
    goals: Vec<u32>,
}

/// What running each flow of `bundle` needs, given each flow's key in order.
fn flow_runs<'b>(bundle: &'b Bundle, keys: impl IntoIterator<Item = u32>) -> Vec<FlowRun<'b>> {
    bundle
        .flows
        .iter()
        .zip(keys)
        .zip(flow_reads(bundle))
        .map(|((def, key), reads)| FlowRun {
            def,
            key,
            version: def.version.as_str().into(),
            trigger_use: instance::TriggerUse::of(def, bundle),
            reads,
        })
        .collect()
}

/// Each flow's reads, from the bundle's retention (indexed by schema) turned around.
fn flow_reads(bundle: &Bundle) -> Vec<FlowReads> {
    let mut out = vec![FlowReads::default(); bundle.flows.len()];
    for (s, readers) in bundle.retention.events.iter().enumerate() {
        for &f in &readers.instances {
            if let Some(r) = out.get_mut(f as usize) {
                r.instances.push(s as u32);
            }
        }
        for &f in &readers.goals {
            if let Some(r) = out.get_mut(f as usize) {
                r.goals.push(s as u32);
            }
        }
    }
    out
}

/// The release `r`.
///
/// Releases are never removed, every release number the engine keeps was
/// handed out by `Machine::add_release`, and a restored checkpoint is
/// checked for it (`checkpoint::check`), so the number is always within
/// the table.
#[allow(clippy::indexing_slicing)]
fn rel<'a, 'b>(releases: &'a [Release<'b>], r: u32) -> &'a Release<'b> {
    &releases[r as usize]
}

/// [`rel`], to change.
#[allow(clippy::indexing_slicing)] // as `rel`: release numbers are always within the table
fn rel_mut<'a, 'b>(releases: &'a mut [Release<'b>], r: u32) -> &'a mut Release<'b> {
    &mut releases[r as usize]
}

/// The tables of a bundle the engine runs, read by numbers its validation checked.
pub(crate) trait Tables {
    /// Schema `s`.
    fn schema(&self, s: u32) -> &Schema;
    /// The profile's schema.
    fn profile_schema(&self) -> &Schema;
}

impl Tables for Bundle {
    /// Every schema number the engine reads is one of the bundle's: the
    /// profile, and the event of every rule, wait and record type, are
    /// checked by `Bundle::validate` (decoding runs it; a lowered bundle is
    /// made so); an event's schema is the decoder's, from the newest
    /// release's tables, which every release still running shares
    /// (`evolve`) and which `Machine::apply_typed` checks a call against;
    /// stored events are renumbered by a deploy and checked on restore.
    #[allow(clippy::indexing_slicing)]
    fn schema(&self, s: u32) -> &Schema {
        &self.schemas[s as usize]
    }

    fn profile_schema(&self) -> &Schema {
        self.schema(self.profile)
    }
}

/// The idempotency key of the send at `step` of instance `number` of a
/// flow version, for the customer shown as `who` when it started.
fn send_key(flow: &str, version: &str, who: &str, number: u32, step: u16) -> String {
    // Written piece by piece: `format!` took a tenth of a send's instructions.
    let mut digits = itoa::Buffer::new();
    let number = digits.format(number);
    let mut key = String::with_capacity(flow.len() + version.len() + who.len() + number.len() + 14);
    for part in [flow, "/", version, "/", who, "/", number, "/send@"] {
        key.push_str(part);
    }
    key.push_str(digits.format(step));
    key
}

/// The customer `c`, whom the engine's own bookkeeping knows to exist.
///
/// Every customer number the engine acts on is in the table: a call's
/// customer is added (`Machine::ensure_customer`) before anything reads it,
/// a merge moves the absorbed customer's instances to the one kept, timers
/// for customers look them up without this, and a restored checkpoint is
/// checked for every live instance's customer (`checkpoint::check`).
#[allow(clippy::expect_used)]
fn known(customers: &table::Customers, c: u32) -> &Customer {
    customers.get(&c).expect("the customer exists")
}

/// [`known`], to change.
#[allow(clippy::expect_used)] // as `known`: the engine acts only on customers it holds
fn known_mut(customers: &mut table::Customers, c: u32) -> &mut Customer {
    customers.get_mut(&c).expect("the customer exists")
}

/// The engine's state machine: calls and clock ticks in, [`Effect`]s out;
/// see the module documentation.
pub struct Machine<'b> {
    /// Oldest first; the last is the newest, on which everything new starts.
    releases: Vec<Release<'b>>,
    /// Flow names by key. Per-customer and per-flow state is kept by key, so
    /// that it follows a flow by name across deploys that renumber flows.
    flow_names: Vec<Arc<str>>,
    flow_keys: HashMap<Arc<str>, u32>,
    /// For each flow key, the flow's index in the newest release, if it has one.
    newest: Vec<Option<u32>>,
    /// Message names by key (sends remember a message by key, for attribution).
    message_names: Vec<Arc<str>>,
    message_keys: HashMap<Arc<str>, u32>,
    /// Event schemas some release's flows have as their goal.
    goal_events: HashSet<u32>,
    /// What the calls and ticks since the host last took them produced.
    effects: Vec<Effect>,
    /// Sends of the current step, until the next input: a host that could not
    /// deliver one says so with [`Machine::delivery_failed`] before then.
    unsettled: Vec<Unsettled>,
    /// Where [`Machine::delivery_failed`] starts looking in `unsettled`.
    unsettled_from: usize,
    config: Config,
    now: i64,
    /// `now` as records write it, with the instant it was written for: a
    /// send writes it four times (entered, sent, completed, the outbox).
    now_text: Option<(i64, String)>,
    identities: Identities,
    dedupe: Dedupe,
    customers: table::Customers,
    instances: instance::Slots,
    free: Vec<u32>,
    timers: Timers,
    traits: Traits,
    policy_tz: Tz,
    by_wire: HashMap<String, u32>,
    /// Event schemas some rule of any release reads back (the bundles'
    /// retention): only these are stored in histories at all.
    remembered: crate::fast::Set<u32>,
    seq: u64,
    /// Instance generations are unique across slots, so a timer set for an
    /// instance that ended can never wake the instance that reuses its slot.
    generations: u32,
    /// Customers whose profile changed since segments and date triggers were last looked at.
    dirty: Vec<u32>,
    /// Addresses (lower-cased) that bounced hard, whoever they belong to:
    /// two customers who share an address share its bounce.
    undeliverable: HashSet<String>,
    /// Phone numbers that texted an opt-out word, whoever they belong to.
    stopped_phones: HashSet<String>,
    /// Recent marketing sends by address (lower-cased), whoever they went
    /// to: caps count the sends of every customer who shares the address.
    /// Kept only for as long as the longest cap can look back.
    address_sends: HashMap<String, Vec<AddressSend>>,
    /// Address sends logged since the log was last swept of stale addresses.
    address_pushes: u32,
    /// How far back the caps of any release look, in milliseconds.
    cap_window: i64,
    /// Event schemas a segment or a `let` of some release reads: those read
    /// the whole history, so their events are never forgotten.
    forever: HashSet<u32>,
    /// Sends before this instant can no longer be read by any live
    /// instance or goal, nor by one a late trigger may start (see
    /// [`Machine::forget`]); `i64::MIN` until first worked out.
    horizon: i64,
    /// Calls applied since the horizons were last worked out.
    applies_since_horizon: u32,
    /// Per event schema, the instant before which no rule can read its
    /// events any more (see [`Machine::forget`]); empty until first worked
    /// out, and after the schemas may have changed.
    keep_from: Vec<i64>,
    /// The earliest of `keep_from`'s bounds other than "for ever": a
    /// history whose first event is not before it has nothing to drop.
    keep_floor: i64,
    /// Events taken out of histories and not dropped yet (see
    /// [`Machine::take_let_go`]).
    let_go: Vec<Seen>,
    /// Calls since a host last asked for `let_go`.
    unasked: u32,
    stats: Stats,
    /// The profile [`Machine::profile_of`] last showed, made from the
    /// customer's sparse one.
    shown: Option<nudge_bytecode::Record>,
    /// Consent records recently given, shared by every customer who gives
    /// an equal one (see [`share`]).
    consents: Vec<Arc<nudge_bytecode::Record>>,
    /// Whether a store follows the changes (see [`Machine::take_changes`]).
    following: bool,
    /// The next take tells the store to empty the set of sends made that
    /// layouts before 7 kept (see [`rows::Changes::forget_sent_keys`]).
    forget_sent_keys: bool,
    /// Whether the releases changed since the store last took them.
    releases_changed: bool,
    /// What the events taught of the products, for `recommend`.
    learned: crate::catalogue::Learned,
    /// A deploy's new triggers still to arm for some customers.
    arming: Option<deploy::PendingArming>,
    /// What the arms of splits that optimise have done.
    splits: SplitCounts,
    /// Where customers let go are read back from; `None` keeps every
    /// customer in memory.
    pager: Option<Box<dyn Pager>>,
    /// Why a customer could not be read back (see [`Machine::page_fault`]).
    page_fault: Option<String>,
    /// Where [`Machine::freeze`] encodes a customer before copying out
    /// exactly its bytes: one buffer, not one grown from empty each time.
    freeze_buffer: Vec<u8>,
    /// Counts of customers read back and let go.
    paging: Paging,
    /// How stored rows of older tables move onto the newest.
    tables: tables::Tables,
}

/// How many distinct consent records [`share`] keeps to share.
const SHARED_CONSENTS: usize = 16;

/// `value`, or an equal record of `cache` in its place: a consent is a
/// record of a few flags, the same for most customers, and each customer
/// holding a copy of its own costs about 130 bytes.
fn share(cache: &mut Vec<Arc<nudge_bytecode::Record>>, value: Value) -> Value {
    let Value::Record(r) = value else {
        return value;
    };
    for same in cache.iter() {
        if **same == *r {
            return Value::Record(same.clone());
        }
    }
    if cache.len() < SHARED_CONSENTS {
        cache.push(r.clone());
    }
    Value::Record(r)
}

/// A marketing send to an address, for the caps of others who share it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct AddressSend {
    /// Who it went to.
    customer: u32,
    /// The send.
    sent: customer::Sent,
}

impl AddressSend {
    /// Whether it was sent after `from`.
    fn at_after(&self, from: i64) -> bool {
        self.sent.at > from
    }
}

/// How an instance ended; kept on the instance while its `on exit` block runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum End {
    /// It ran its last step.
    Completed,
    /// It ended early, for this reason; the text is the record's `reason`
    /// (the event's name for an `exit on`, else the code).
    Exited(ExitReason, String),
    /// Its code failed, with this message.
    Error(String),
}

impl End {
    /// An early end whose record's reason is the code itself.
    fn exited(code: ExitReason) -> End {
        End::Exited(code, code.code().to_string())
    }
}

impl<'b> Machine<'b> {
    /// An engine for a bundle, with the clock at `start` (milliseconds since
    /// the epoch, as every instant the engine keeps).
    pub fn new(bundle: &'b Bundle, config: Config, start: i64) -> Self {
        let dedupe_window = crate::millis::ms(config.dedupe_window);
        let by_wire = evolve::by_wire(bundle);
        let mut engine = Machine {
            releases: Vec::new(),
            flow_names: Vec::new(),
            flow_keys: HashMap::new(),
            newest: Vec::new(),
            message_names: Vec::new(),
            message_keys: HashMap::new(),
            goal_events: HashSet::new(),
            effects: Vec::new(),
            unsettled: Vec::new(),
            unsettled_from: 0,
            config,
            now: start,
            now_text: None,
            identities: Identities::new(),
            dedupe: Dedupe::new(dedupe_window),
            customers: table::Customers::default(),
            instances: instance::Slots::default(),
            free: Vec::new(),
            timers: Timers::new(),
            traits: Traits::of(bundle),
            policy_tz: Tz::UTC,
            by_wire,
            remembered: Default::default(),
            seq: 0,
            generations: 0,
            dirty: Vec::new(),
            undeliverable: HashSet::new(),
            stopped_phones: HashSet::new(),
            address_sends: HashMap::new(),
            address_pushes: 0,
            cap_window: 0,
            forever: HashSet::new(),
            horizon: i64::MIN,
            applies_since_horizon: 0,
            keep_from: Vec::new(),
            keep_floor: i64::MIN,
            let_go: Vec::new(),
            unasked: 0,
            stats: Stats::new(bundle),
            shown: None,
            consents: Vec::new(),
            following: false,
            forget_sent_keys: false,
            releases_changed: false,
            learned: Default::default(),
            arming: None,
            splits: SplitCounts::default(),
            pager: None,
            page_fault: None,
            freeze_buffer: Vec::new(),
            paging: Paging::default(),
            tables: tables::Tables::default(),
        };
        engine.add_release(bundle);
        engine
    }

    /// Makes `bundle` the newest release and returns its number.
    fn add_release(&mut self, bundle: &'b Bundle) -> u32 {
        self.note_reads(bundle);
        let release = self.release_of(bundle);
        for flow in &bundle.flows {
            // New flows show in the counters from the start, at zero.
            self.stats.flow_mut(&flow.name);
        }
        self.releases.push(release);
        self.releases_changed = true;
        self.newest_changed();
        (self.releases.len() - 1) as u32
    }

    /// Adds what `bundle`'s rules read back to what the engine keeps: the
    /// union over releases, as older ones keep running their instances.
    fn note_reads(&mut self, bundle: &Bundle) {
        for flow in &bundle.flows {
            if let Some(g) = &flow.goal {
                self.goal_events.insert(g.rule.event);
            }
        }
        // Until the next look, nothing is forgotten by the new numbering.
        self.keep_from.clear();
        self.remembered.extend(bundle.retention.read());
        self.forever.extend(bundle.retention.forever());
        self.cap_window = self
            .cap_window
            .max(crate::millis::ms(bundle.retention.sends));
    }

    /// What running `bundle` needs, with its flows and messages interned.
    fn release_of(&mut self, bundle: &'b Bundle) -> Release<'b> {
        let mut triggered_by: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut order: Vec<(u32, &Flow)> = (0..).zip(&bundle.flows).collect();
        // Higher priority first, so a cap that allows one send gives it to the
        // flow that matters most; ties go by name, which keeps runs reproducible.
        order.sort_by_key(|&(_, flow)| std::cmp::Reverse(flow.priority));
        for (f, flow) in order {
            if let nudge_bytecode::Trigger::Event(rule) = &flow.trigger {
                triggered_by.entry(rule.event).or_default().push(f);
            }
        }
        let keys: Vec<u32> = bundle
            .flows
            .iter()
            .map(|f| intern(&mut self.flow_names, &mut self.flow_keys, &f.name))
            .collect();
        let message_keys = bundle
            .messages
            .iter()
            .map(|m| intern(&mut self.message_names, &mut self.message_keys, &m.name))
            .collect();
        Release {
            bundle,
            vm: Vm::new(bundle),
            flows: flow_runs(bundle, keys),
            message_keys,
            triggered_by,
            recommends: bundle.calls_recommendations(),
            windows: nudge_bytecode::constant_windows(bundle),
            fresh_profile: Customer::fresh_profile(bundle),
        }
    }

    /// Works out what follows from which release is the newest: its
    /// policy's zone and each flow key's place in it.
    fn newest_changed(&mut self) {
        let newest = rel(&self.releases, self.current());
        let bundle = newest.bundle;
        self.policy_tz = bundle
            .policy
            .timezone
            .as_deref()
            .and_then(|z| Tz::from_str(z).ok())
            .unwrap_or(Tz::UTC);
        let mut map = vec![None; self.flow_names.len()];
        for (f, run) in (0..).zip(&newest.flows) {
            // Keys are interned into `flow_names` before a release is added.
            if let Some(slot) = map.get_mut(run.key as usize) {
                *slot = Some(f);
            }
        }
        self.newest = map;
    }

    /// The number of the newest release.
    fn current(&self) -> u32 {
        (self.releases.len() - 1) as u32
    }

    /// The newest release's bundle: triggers, the policy and schemas come from it.
    fn bundle(&self) -> &'b Bundle {
        rel(&self.releases, self.current()).bundle
    }

    /// Release `r`'s bundle.
    fn bundle_of(&self, r: u32) -> &'b Bundle {
        rel(&self.releases, r).bundle
    }

    /// Flow `f` of release `r`.
    fn flow_of(&self, r: u32, f: u32) -> &'b Flow {
        rel(&self.releases, r).flow(f).def
    }

    /// The key of flow `f` of release `r`.
    fn key_of(&self, r: u32, f: u32) -> u32 {
        rel(&self.releases, r).flow(f).key
    }

    /// The name of the message with key `key`. Keys are handed out with
    /// their names (`intern`) and restored with them, so every send's is
    /// found; a number is shown should one not be.
    fn message_name(&self, key: u32) -> String {
        self.message_names
            .get(key as usize)
            .map_or_else(|| format!("message #{key}"), |m| m.to_string())
    }

    /// The bundle the engine started with, then one per successful deploy, oldest first.
    pub fn releases(&self) -> impl Iterator<Item = &'b Bundle> + '_ {
        self.releases.iter().map(|r| r.bundle)
    }

    /// How many timers are set and not yet due, stale ones included (a
    /// timer a later change cancelled is dropped when its time comes).
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    /// How many of the pending timers are in memory (the others wait in
    /// the store until they are due soon: see [`Machine::let_timers_go`]).
    pub fn timers_in_memory(&self) -> usize {
        self.timers.in_memory()
    }

    /// Live instances by flow and the step they are on (its label, or
    /// `step N (what)`): where customers wait, for hosts to report.
    pub fn instances_by_step(&self) -> std::collections::BTreeMap<(String, String), u64> {
        let mut out = std::collections::BTreeMap::new();
        for inst in self.instances.iter().flatten() {
            let flow = self.flow_of(inst.release, inst.flow);
            let step = deploy::step_name(flow, inst.step);
            *out.entry((flow.name.clone(), step)).or_insert(0) += 1;
        }
        out
    }

    /// The clock, in milliseconds since the epoch.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// The counters so far; `active` counts are filled in.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.customers = self.customers.len() as u64;
        for inst in self.instances.iter().flatten() {
            s.flow_mut(&self.flow_of(inst.release, inst.flow).name)
                .active += 1;
        }
        s
    }

    /// The counters as they run, without the per-instance counts that
    /// [`Machine::stats`] fills in: cheap enough to read after every batch.
    pub fn counters(&self) -> &Stats {
        &self.stats
    }

    /// A call or tick begins: sends of the step before it are settled.
    fn new_input(&mut self) {
        // Nothing is decided between a deploy's parts. A customer that
        // cannot be read back is held as the engine's fault, which the host
        // checks after the input as after any other read.
        if self.arming.is_some() {
            let _ = self.arm_next(usize::MAX);
        }
        if !self.unsettled.is_empty() {
            self.unsettled.clear();
        }
        self.unsettled_from = 0;
        self.keep_to_budget();
    }

    /// Takes what the calls and ticks so far produced, oldest first.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Swaps the effects made so far with `buffer` (which should be empty):
    /// [`Machine::take_effects`] for a host that reuses one allocation.
    pub fn swap_effects(&mut self, buffer: &mut Vec<Effect>) {
        std::mem::swap(&mut self.effects, buffer);
    }

    /// The host could not hand over the send with this idempotency key, one
    /// of the current step's [`Effect::Send`]s: the send is taken back (it no
    /// longer counts for caps or idempotency) and counted as failed; the
    /// host writes its `sent` record as failed, with the reason. Returns
    /// false for a key that is not a send of the current step.
    pub fn delivery_failed(&mut self, key: &str) -> bool {
        // Hosts hand sends over in order: look from the last one taken back,
        // so a step whose every send fails costs linear time, not quadratic.
        let n = self.unsettled.len();
        let from = self.unsettled_from.min(n);
        let (before, after) = self.unsettled.split_at_mut(from);
        let Some((i, found)) = (from..)
            .zip(after.iter_mut())
            .chain((0..).zip(before.iter_mut()))
            .find(|(_, u)| !u.key.is_empty() && u.key == key)
        else {
            return false;
        };
        self.unsettled_from = i + 1;
        let u = found.clone();
        // Emptied, not removed: positions stay valid for the search above.
        found.key.clear();
        // The instance may have ended in the same step (its keys went with
        // it), and its slot been given to another: only the key's owner
        // holds its fingerprint.
        let fp = crate::dedupe::fingerprint(&u.key);
        if self
            .instances
            .get(u.instance)
            .is_some_and(|i| i.has_sent(fp))
            && let Some(inst) = self.instances.get_mut(u.instance)
        {
            inst.unnote_sent(fp);
        }
        self.page_in(u.customer);
        if let Some(cust) = self.customers.get_mut(&u.customer)
            && let Some(j) = cust.sends.iter().rposition(|s| *s == u.sent)
        {
            cust.sends.remove(j);
        }
        if let Some(address) = &u.address
            && let Some(log) = self.address_sends.get_mut(address)
            && let Some(j) = log
                .iter()
                .rposition(|a| a.customer == u.customer && a.sent == u.sent)
        {
            log.remove(j);
        }
        self.uncount(u.release, u.flow, Outcome::Sent, None, None);
        let name = &self.flow_of(u.release, u.flow).name;
        crate::stats::take_one(&mut self.stats.flow_mut(name).sends, u.sent.channel.name());
        self.count(
            u.release,
            u.flow,
            Outcome::Failed,
            Some("delivery"),
            Some(crate::record::SendReason::DeliveryFailed),
        );
        true
    }

    /// Whether products and orders are learned from events: when the newest
    /// release's code asks for recommendations or `nudge.toml` names a
    /// catalogue (whose file or fallback the profile API serves). Otherwise
    /// the work and the state would serve nothing.
    fn learns(&self) -> bool {
        rel(&self.releases, self.current()).recommends
            || !self.config.catalogue.products.is_empty()
            || !self.config.catalogue.fallback.is_empty()
    }

    /// Replaces the catalogue file's products and the fallback list (a
    /// reload): what the events taught stays.
    pub fn set_catalogue(&mut self, catalogue: Arc<crate::catalogue::CatalogueFile>) {
        self.config.catalogue = catalogue;
    }

    /// The catalogue file's products and the fallback list in use.
    pub fn catalogue(&self) -> &Arc<crate::catalogue::CatalogueFile> {
        &self.config.catalogue
    }

    /// What the events taught of the products so far.
    pub fn learned(&self) -> &crate::catalogue::Learned {
        &self.learned
    }

    /// What the arms of splits that optimise have done so far.
    pub fn split_counts(&self) -> &SplitCounts {
        &self.splits
    }

    /// The current profile of the customer known by this user id (or, failing
    /// that, anonymous id), following joins made by aliases.
    pub fn profile_of(&mut self, customer_id: &str) -> Option<&nudge_bytecode::Record> {
        let c = self.customer_by_id(customer_id)?;
        let profile = self.customers.get(&c)?.profile.to_record();
        Some(self.shown.insert(profile))
    }

    /// The number of the customer known by this user id (or, failing that,
    /// anonymous id), if it has a record.
    fn customer_by_id(&mut self, customer_id: &str) -> Option<u32> {
        let c = self
            .customer_known_as(&crate::identity::Identity::User(customer_id.to_string()))
            .or_else(|| {
                self.customer_known_as(&crate::identity::Identity::Anonymous(
                    customer_id.to_string(),
                ))
            })?;
        (self.customers.contains_key(&c.0) && self.page_in(c.0)).then_some(c.0)
    }

    /// How a call names the customer whose display id (the `customer` of a
    /// send) is `display`: `("userId", id)` or `("anonymousId", id)`; `None`
    /// for an id the engine does not know. Feedback from providers becomes
    /// calls for the customer a send went to, and a display id may be an
    /// anonymous id (or an email) rather than a user id.
    pub fn caller_of(&mut self, display: &str) -> Option<(&'static str, String)> {
        use crate::identity::Identity;
        if self
            .customer_known_as(&Identity::User(display.into()))
            .is_some()
        {
            return Some(("userId", display.to_string()));
        }
        // An anonymous id still reaches its customer after a later join.
        if self
            .customer_known_as(&Identity::Anonymous(display.into()))
            .is_some()
        {
            return Some(("anonymousId", display.to_string()));
        }
        // Rare: a customer known only by an email; any id of theirs will do.
        let customer = self.customer_known_as(&Identity::email(display))?;
        self.identities_of(customer)
            .into_iter()
            .find_map(|i| match i {
                Identity::User(u) => Some(("userId", u)),
                Identity::Anonymous(a) => Some(("anonymousId", a)),
                Identity::Email(_) => None,
            })
    }

    /// The marketing consent of the customer known by this user (or
    /// anonymous) id on email, SMS and push, as the preference page shows
    /// it: `None` where the customer never said, and for an unknown id.
    pub fn consents_of(&mut self, customer_id: &str) -> Option<[Option<bool>; 3]> {
        let bundle = self.bundle();
        let c = self.customer_by_id(customer_id)?;
        let profile = &self.customers.get(&c)?.profile;
        let t = &self.traits;
        Some([Channel::Email, Channel::Sms, Channel::Push].map(|ch| t.consent(bundle, profile, ch)))
    }

    /// One profile field, by name, of the customer known by this user (or
    /// anonymous) id: `None` for an unknown id or a field the project's
    /// profile does not declare.
    pub fn profile_field(&mut self, customer_id: &str, name: &str) -> Option<Value> {
        let schema = self.bundle().profile_schema();
        let i = schema.fields.iter().position(|f| f.name == name)?;
        let c = self.customer_by_id(customer_id)?;
        self.customers.get(&c)?.profile.get(i)
    }

    /// Live instances, for inspection and storage.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().flatten()
    }

    /// Notes a line that could not be used, so the counters include it.
    pub fn count_dead_letter(&mut self) {
        self.stats.dead_letters += 1;
    }

    /// Fires every timer due strictly before `t`, then sets the clock to `t`:
    /// an event at `t` is applied before timers due at `t`. A `t` at or
    /// before the clock (a late call) fires nothing, so the late calls that
    /// arrive together are all applied before any timer their late start
    /// left overdue: one of them may be the purchase that ends it.
    pub fn advance_before(&mut self, t: i64) {
        self.new_input();
        if t <= self.now {
            return;
        }
        self.fire(t - 1, t - 1, usize::MAX);
        self.now = self.now.max(t);
    }

    /// Fires every timer due at or before `t`, then sets the clock to `t`.
    pub fn advance_through(&mut self, t: i64) {
        self.advance_part(ClockStep::Until(t), usize::MAX);
    }

    /// Fires timers until only recurring schedules remain.
    pub fn drain(&mut self) {
        self.advance_part(ClockStep::Drain, usize::MAX);
    }

    /// Takes the next part of `step`: fires its timers in due order until
    /// `max` have fired, then every other timer due by the instant of the
    /// last, so that the part ends on an instant and can be replayed by
    /// [`Machine::replay_part`]. Returns that instant when timers of the
    /// step are left (call it again for the next part), `None` once the
    /// step is done. Taking a step in parts decides as taking it whole: a
    /// schedule still skips to its latest occurrence due by the step's end.
    /// A host commits each part, so that a step that fires every customer's
    /// timer holds one part's effects and customers, not the step's.
    pub fn advance_part(&mut self, step: ClockStep, max: usize) -> Option<i64> {
        self.new_input();
        let max = max.max(1);
        match step {
            ClockStep::Until(t) => {
                let stopped = self.fire(t, t, max).stopped;
                if stopped.is_none() {
                    self.now = self.now.max(t);
                }
                stopped
            }
            ClockStep::Drain => {
                // One-shot timers may wait in the store, however far ahead.
                if !self.all_timers() {
                    return None;
                }
                let mut fired = 0;
                let mut last = None;
                while self.timers.has_one_shot() {
                    let Some(due) = self.timers.next_due() else {
                        break;
                    };
                    if fired >= max {
                        return last;
                    }
                    fired += self.fire(due, due, usize::MAX).count;
                    last = Some(due);
                }
                None
            }
        }
    }

    /// Replays a part of `step` that [`Machine::advance_part`] took and
    /// that ended at `through`: fires the same timers, deciding the same.
    pub fn replay_part(&mut self, step: ClockStep, through: i64) {
        self.new_input();
        match step {
            ClockStep::Until(t) => {
                self.fire(through, t, usize::MAX);
                self.now = self.now.max(through);
            }
            ClockStep::Drain => {
                if !self.all_timers() {
                    return;
                }
                while self.timers.has_one_shot() {
                    match self.timers.next_due() {
                        Some(due) if due <= through => self.fire(due, due, usize::MAX),
                        _ => break,
                    };
                }
            }
        }
    }

    /// The customer a timer wakes (none for an instance that has ended).
    fn woken(&self, wake: Wake) -> Option<u32> {
        match wake {
            Wake::Instance { id, .. } => self.instances.get(id).map(|i| i.customer),
            Wake::DateTrigger { customer, .. }
            | Wake::Schedule { customer, .. }
            | Wake::Segment { customer, .. } => Some(customer),
        }
    }

    /// Fires timers due at or before `through` in due order, until `max`
    /// have fired and then those due by the instant of the last; a
    /// schedule skips occurrences when a later one is due by `limit` (the
    /// step's end).
    fn fire(&mut self, through: i64, limit: i64, max: usize) -> Fired {
        let mut fired = Fired {
            count: 0,
            stopped: None,
        };
        if !self.timers_through(through) {
            // The host stops on the fault.
            return fired;
        }
        let mut stop = through;
        while let Some(timer) = self.timers.pop_until(stop) {
            self.now = self.now.max(timer.due);
            fired.count += 1;
            if fired.count == max {
                stop = timer.due;
            }
            let customer = self.woken(timer.wake);
            if let Some(c) = customer
                && !self.page_in(c)
            {
                // The host stops on the fault; nothing is decided for a
                // customer whose state could not be read.
                continue;
            }
            match timer.wake {
                Wake::Instance { id, generation } => self.wake(id, generation, timer.due),
                Wake::DateTrigger {
                    customer,
                    flow,
                    generation,
                } => self.fire_date(customer, flow, generation),
                Wake::Schedule {
                    customer,
                    flow,
                    generation,
                } => self.fire_schedule(customer, flow, generation, limit),
                Wake::Segment {
                    customer,
                    flow,
                    generation,
                } => self.fire_segment(customer, flow, generation),
            }
            self.settle();
            if let Some(c) = customer {
                self.keep_fired_to_budget(c);
            }
        }
        if stop < through && self.timers.next_due().is_some_and(|due| due <= through) {
            fired.stopped = Some(stop);
        }
        fired
    }

    #[cfg(feature = "oracle")]
    /// Applies one call at the current clock (see [`Machine::advance_before`]).
    /// Properties or traits that do not fit the schemas are dropped and
    /// recorded (see [`Machine::apply_noted`]); the call is applied.
    pub fn apply(&mut self, call: &Call) -> Result<Applied, Rejection> {
        let at = call.timestamp.timestamp_millis();
        self.now = self.now.max(at);
        let mut dropped = Vec::new();
        let (event, kind) = self.decode_event(call, &mut dropped);
        let traits = self.decode_traits(call, &mut dropped);
        decode::sort_dropped(&mut dropped);
        self.apply_noted(
            TypedCall {
                at,
                names: Names::of(call),
                message_id: call.message_id.as_deref().map(crate::dedupe::fingerprint),
                event,
                traits,
            },
            crate::ingest::Notes {
                event: call.event_name(),
                dropped,
                kind,
                timezone: call.context.timezone.as_deref(),
                locale: call.context.locale.as_deref(),
                device_token: call.context.device_token.as_deref(),
            },
        )
    }

    /// A decoder that reads call lines straight into typed calls for
    /// [`Machine::apply_typed`], against the newest release's schemas.
    pub fn decoder(&self) -> Decoder<'_> {
        Decoder::new(self.bundle(), &self.by_wire)
    }

    /// The newest release's schemas apart from the engine, for decoding on
    /// another thread while the engine applies (see [`crate::ingest::Schemas`]).
    pub fn schemas(&self) -> crate::ingest::Schemas<'b> {
        crate::ingest::Schemas::new(self.bundle(), self.by_wire.clone())
    }

    /// Applies a call already decoded against the schemas (see
    /// [`Machine::decoder`]); otherwise the same as [`Machine::apply_noted`] with no notes.
    /// A call whose event schema or profile fields the newest release does
    /// not have (one decoded against other schemas, or made by hand) is
    /// refused, and nothing changes.
    pub fn apply_typed(&mut self, call: TypedCall<'_>) -> Result<Applied, Rejection> {
        self.fits_schemas(&call)?;
        let TypedCall {
            at,
            names,
            message_id,
            event,
            traits,
        } = call;
        self.new_input();
        self.now = self.now.max(at);
        if let Some(id) = message_id
            && !self.dedupe.first_seen(id, self.now)
        {
            self.stats.duplicates += 1;
            return Ok(Applied::Duplicate);
        }
        self.stats.events += 1;
        if !self.names_in(&names) {
            return Err(Rejection {
                reason: "the call's identities could not be read back from the store".into(),
            });
        }
        let Some(observed) = self.identities.observe_names(&names) else {
            return Err(Rejection {
                reason: "the call names no customer".into(),
            });
        };
        let c = observed.customer.0;
        if !self.ensure_customer(c) {
            return Err(Rejection {
                reason: "the customer's state could not be read back from the store".into(),
            });
        }
        let joined = !observed.merges.is_empty();
        for (kept, absorbed) in observed.merges {
            self.merge(kept, absorbed);
        }
        if joined {
            // The display id may have changed (a user id joined an anonymous visitor).
            let key = self.display_id(c);
            known_mut(&mut self.customers, c).key = key.into();
        }
        self.update_profile(c, at, &event, &traits);
        if let Some((schema, value)) = event {
            self.seq += 1;
            let seen = Seen {
                at,
                seq: self.seq,
                schema,
                value,
            };
            if self.remembered.contains(&schema) {
                let cust = known_mut(&mut self.customers, c);
                let pos = cust
                    .events
                    .partition_point(|e| (e.at, e.seq) <= (at, seen.seq));
                if cust.events.is_empty() {
                    // Most histories hold one event at a time (it is let go
                    // of before the customer's next): room for four, the
                    // default, would be kept for ever.
                    cust.events.reserve_exact(1);
                }
                cust.events.insert(pos, seen.clone());
            }
            self.on_event(c, &seen);
        }
        self.settle();
        self.forget(c);
        Ok(Applied::Applied)
    }

    /// Refuses a call that names an event schema or a profile field the
    /// newest release does not have: the engine reads its tables by them.
    fn fits_schemas(&self, call: &TypedCall<'_>) -> Result<(), Rejection> {
        let bundle = self.bundle();
        if let Some((schema, _)) = &call.event
            && bundle.schemas.get(*schema as usize).is_none()
        {
            return Err(Rejection {
                reason: format!(
                    "the call's event has schema #{schema}, and the bundle has {} schemas: it was decoded against other schemas",
                    bundle.schemas.len()
                ),
            });
        }
        let fields = bundle.profile_schema().fields.len();
        if let Some((field, _)) = call.traits.iter().find(|(f, _)| usize::from(*f) >= fields) {
            return Err(Rejection {
                reason: format!(
                    "the call sets profile field #{field}, and the profile has {fields} fields: it was decoded against other schemas"
                ),
            });
        }
        Ok(())
    }

    /// Drops the events and sends of customer `c` that no rule can read
    /// any more, each event kind by its own readers as the bundles declare
    /// them (see [`nudge_bytecode::Retention`]): a live instance reads the
    /// kinds of its flow from its start, a goal watch those of its goal
    /// from its start until the window closes, and a trigger up to the
    /// lateness bound late may start an instance that reads from then;
    /// segments and `let`s read their kinds for ever, or, when they read a
    /// kind only within constant windows, back to the longest window before
    /// the clock (of the newest release and of those still running
    /// instances or goals); kinds nobody reads are never stored. A merge
    /// shows an instance the other identity's history too, so an event is
    /// kept while a live reader of its kind anywhere started before it.
    /// Sends are kept for the caps' windows and while any live instance or
    /// goal may read them.
    ///
    /// The horizons are worked out every `forget_every` calls, when every
    /// customer is swept; in between each call's customer is trimmed by
    /// them. A cached horizon stays a safe bound: instances and goals that
    /// start after it was taken start within the lateness bound of a later
    /// clock.
    fn forget(&mut self, c: u32) {
        let every = self.config.forget_every;
        if every == 0 {
            return;
        }
        self.applies_since_horizon += 1;
        let sweep = self.applies_since_horizon >= every;
        if sweep {
            self.applies_since_horizon = 0;
            self.horizon = self.work_out_horizons();
        }
        if self.horizon == i64::MIN || self.keep_from.is_empty() {
            return;
        }
        let keep = Keep {
            events_from: &self.keep_from,
            floor: self.keep_floor,
            sends_from: self.horizon.min(self.now.saturating_sub(self.cap_window)),
        };
        if sweep {
            // Customers not seen again would keep what they hold for ever:
            // events, sends, and goals whose window has passed (those are
            // otherwise dropped only at the customer's next goal event).
            let (now, releases) = (self.now, &self.releases);
            let expired = |g: &customer::GoalWatch| goal_expired(releases, now, g);
            let mut changed = Vec::new();
            for (c, cust) in self.customers.iter_unmarked_mut() {
                let mut dropped = keep.apply(cust, &mut self.let_go);
                if let Some(rare) = cust.rare_if()
                    && rare.goals.iter().any(&expired)
                {
                    rare.goals.retain(|g| !expired(g));
                    dropped = true;
                }
                if dropped {
                    changed.push(c);
                }
            }
            for c in changed {
                self.customers.mark(c);
            }
        } else if let Some(cust) = self.customers.get_mut(&c) {
            keep.apply(cust, &mut self.let_go);
        }
        if self.unasked >= LET_GO_CALLS {
            self.let_go.clear();
        } else {
            self.unasked += 1;
        }
    }

    /// The history the engine let go of since it was last asked (events no
    /// rule reads any more). Dropping an event stored long ago costs a
    /// cache miss or more per value it holds, so a host with a thread to
    /// spare drops it there (a replay drops it on its reading thread, where
    /// the values were decoded, after each batch of calls). An engine not
    /// asked within [`LET_GO_CALLS`] calls drops it itself, as it goes.
    pub fn take_let_go(&mut self) -> LetGo {
        self.unasked = 0;
        LetGo(std::mem::take(&mut self.let_go))
    }

    /// Takes back the room of a [`LetGo`] its host has emptied, for what
    /// is let go of next. A sweep lets go of tens of thousands of events
    /// at once; a list grown afresh for each one is made of pages the
    /// kernel must clear first.
    pub fn reuse_let_go(&mut self, room: LetGo) {
        let room = room.0;
        if room.is_empty()
            && self.let_go.is_empty()
            && room.capacity() > self.let_go.capacity()
            && room.capacity() <= LET_GO_ROOM
        {
            self.let_go = room;
        }
    }

    /// Works out, per event schema, the earliest instant a rule may still
    /// read back to (into `keep_from`), and returns the earliest any live
    /// instance or goal, or one a late trigger starts, may read sends from.
    fn work_out_horizons(&mut self) -> i64 {
        let late = self
            .now
            .saturating_sub(crate::millis::ms(self.config.max_lateness));
        let mut from = std::mem::take(&mut self.keep_from);
        from.clear();
        from.resize(self.bundle().schemas.len(), late);
        for &s in &self.forever {
            if let Some(f) = from.get_mut(s as usize) {
                *f = i64::MIN;
            }
        }
        let mut sends = late;
        // Releases whose code can still run: the newest, and those of live
        // instances and goals (rebased at every deploy, so numbered as now).
        let mut in_use = vec![false; self.releases.len()];
        if let Some(newest) = in_use.get_mut(self.current() as usize) {
            *newest = true;
        }
        let mut used = |r: u32| {
            if let Some(u) = in_use.get_mut(r as usize) {
                *u = true;
            }
        };
        let mut reads_since = |kinds: &[u32], at: i64| {
            for &s in kinds {
                if let Some(f) = from.get_mut(s as usize) {
                    *f = (*f).min(at);
                }
            }
            sends = sends.min(at);
        };
        for inst in self.instances.iter().flatten() {
            let reads = &rel(&self.releases, inst.release).flow(inst.flow).reads;
            reads_since(&reads.instances, inst.started);
            reads_since(&reads.goals, inst.started);
            used(inst.release);
        }
        for cust in self.customers.values() {
            for g in &cust.rare().goals {
                if goal_expired(&self.releases, self.now, g) {
                    continue;
                }
                let reads = &rel(&self.releases, g.release).flow(g.flow).reads;
                reads_since(&reads.goals, g.entered);
                used(g.release);
            }
        }
        // Segments and lets read their windowed kinds back from the window
        // before the clock (in whole seconds, as the VM counts it). The
        // clock only moves on, so the bound stays safe until the next look.
        let secs = self.now.div_euclid(1000);
        let running = self.releases.iter().zip(&in_use).filter(|(_, u)| **u);
        for (release, _) in running {
            for (s, window) in release.bundle.retention.windows() {
                if let Some(f) = from.get_mut(s as usize) {
                    *f = (*f).min(secs.saturating_sub(window).saturating_mul(1000));
                }
            }
        }
        self.keep_floor = from
            .iter()
            .copied()
            .filter(|&f| f != i64::MIN)
            .min()
            .unwrap_or(i64::MIN);
        self.keep_from = from;
        sends
    }

    /// How much history the engine holds: customers, their stored events
    /// and their stored sends.
    pub fn history_held(&self) -> Held {
        let mut held = Held {
            customers: self.customers.len() as u64,
            ..Held::default()
        };
        for cust in self.customers.values() {
            held.events += cust.events.len() as u64;
            held.sends += cust.sends.len() as u64;
        }
        held
    }

    /// Makes sure customer `c` is in memory: read back from the store, or
    /// made new. False when it is stored and cannot be read back (see
    /// [`Machine::page_fault`]).
    fn ensure_customer(&mut self, c: u32) -> bool {
        if self.customers.is_stored(c) {
            return self.page_in(c);
        }
        if !self.customers.contains_key(&c) {
            let key = self.display_id(c);
            let profile = rel(&self.releases, self.current()).fresh_profile.clone();
            self.customers
                .insert(c, Customer::with_profile(key, profile));
            self.arm_schedules(c);
        }
        true
    }

    #[cfg(feature = "oracle")]
    /// The event a call amounts to, typed, and how it is counted; an
    /// undeclared event is none.
    fn decode_event(
        &self,
        call: &Call,
        dropped: &mut Vec<decode::Dropped>,
    ) -> (Option<(u32, Value)>, crate::ingest::Note) {
        use crate::ingest::Note;
        let (props, named) = match &call.kind {
            CallKind::Track { properties, .. } => (properties, None),
            CallKind::Page { name, properties } | CallKind::Screen { name, properties } => {
                (properties, name.as_deref().map(|n| ("name", n)))
            }
            CallKind::Group { group_id, traits } => {
                (traits, group_id.as_deref().map(|g| ("group_id", g)))
            }
            _ => return (None, Note::Plain),
        };
        let note = match call.kind {
            CallKind::Group { .. } => Note::Group,
            _ => Note::Plain,
        };
        let wire = call.event_name().unwrap_or_default();
        let Some(&schema) = self.by_wire.get(wire) else {
            let note = if note == Note::Group {
                note
            } else {
                Note::Undeclared
            };
            return (None, note);
        };
        // A page's or screen's name (a group's id) fills the property of
        // that name when the properties leave it out.
        let props = match named {
            Some((key, text)) if !props.contains_key(key) => {
                let mut props = props.clone();
                props.insert(key.into(), serde_json::Value::String(text.into()));
                std::borrow::Cow::Owned(props)
            }
            _ => std::borrow::Cow::Borrowed(props),
        };
        let value = decode::record(self.bundle(), schema, &props, "properties", dropped);
        (Some((schema, value)), note)
    }

    #[cfg(feature = "oracle")]
    fn decode_traits(&self, call: &Call, dropped: &mut Vec<decode::Dropped>) -> Vec<(u16, Value)> {
        let CallKind::Identify { traits } = &call.kind else {
            return Vec::new();
        };
        decode::traits(self.bundle(), traits, dropped)
    }

    /// Standard traits follow the events; identify traits are written as given
    /// (a partial `consent` object changes only the channels it names).
    fn update_profile(
        &mut self,
        c: u32,
        at: i64,
        event: &Option<(u32, Value)>,
        traits: &[(u16, Value)],
    ) {
        let bundle = self.bundle();
        if let Some((_, value)) = event
            && self.learns()
        {
            self.learned.learn(bundle, value);
            // The order is not in the customer's history yet: what is
            // there came before it.
            let gaps = recs::reorder_gaps(bundle, known(&self.customers, c), value, at);
            if !gaps.is_empty() {
                self.learned.learn_gaps(&gaps);
            }
        }
        let t = &self.traits;
        let cust = known_mut(&mut self.customers, c);
        // Tracked as we go rather than by comparing copies of the profile:
        // this runs for every call.
        let mut changed = false;
        let mut feedback_record = None;
        // Feedback to count: its kind and the flow the event names.
        let mut feedback_count: Option<(&'static str, String)> = None;
        // State tied to an address, applied to every customer who has it
        // once the customer's own borrow ends: a bounced address, and a
        // phone's SMS opt-out (`true`) or opt-in (`false`).
        let mut bounced_address = None;
        let mut phone_stop: Option<(String, bool)> = None;
        let phone_of =
            |profile: &customer::Profile| t.text(profile, t.phone).map(|p| p.trim().to_string());
        for (field, value) in traits {
            // Most identify calls repeat what the profile holds: a text is
            // compared where it is kept, without copying it out.
            if let Value::Str(s) = value
                && cust.profile.holds_text(usize::from(*field), s)
            {
                continue;
            }
            // `apply_typed` refused a call with a field the profile lacks.
            let Some(slot) = cust.profile.get(usize::from(*field)) else {
                continue;
            };
            let merged = match (&slot, value) {
                (Value::Record(old), Value::Record(new)) if Some(*field) == t.consent => {
                    let mut r = (**old).clone();
                    for (mine, v) in r.fields.iter_mut().zip(&new.fields) {
                        if !v.is_none() {
                            *mine = v.clone();
                        }
                    }
                    Value::Record(std::sync::Arc::new(r))
                }
                _ => value.clone(),
            };
            if slot != merged {
                changed = true;
                let merged = if Some(*field) == t.consent {
                    share(&mut self.consents, merged)
                } else {
                    merged
                };
                cust.profile.set(usize::from(*field), merged);
            }
            if Some(*field) == t.consent {
                // An identify granting a channel (`consent.sms: true`) is an
                // explicit re-consent: it lifts a hard opt-out on that channel.
                if let Some(rare) = cust.rare_if() {
                    rare.opted_out.retain(|ch| !t.grants(bundle, value, ch));
                }
                if t.grants(bundle, value, "sms")
                    && let Some(p) = phone_of(&cust.profile)
                {
                    phone_stop = Some((p, false));
                }
                // `subscribed` follows consent, whichever way it was set.
                let any = [Channel::Email, Channel::Sms, Channel::Push]
                    .iter()
                    .any(|ch| t.consent(bundle, &cust.profile, *ch) == Some(true));
                t.set(&mut cust.profile, t.subscribed, Value::Bool(any));
            }
        }
        for (field, only_if_unset) in [(t.last_seen_at, false), (t.created_at, true)] {
            changed |= t.stamp(&mut cust.profile, field, at, only_if_unset);
        }
        if let Some((schema, Value::Record(r))) = event {
            let s = bundle.schema(*schema);
            let field = |name: &str| {
                s.fields
                    .iter()
                    .position(|f| f.name == name)
                    .and_then(|i| r.fields.get(i))
            };
            let money = |name: &str| match field(name) {
                Some(Value::Money(m)) => *m,
                _ => Decimal::ZERO,
            };
            let text = |name: &str| match field(name) {
                Some(Value::Str(s)) => s.to_string(),
                _ => String::new(),
            };
            if let Some(w @ ("Message Clicked" | "Message Bounced" | "Marked As Spam")) =
                s.wire.as_deref()
            {
                let feedback = match w {
                    "Message Clicked" => "clicked",
                    "Message Bounced" => "bounced",
                    _ => "spam",
                };
                let opt = |name: &str| Some(text(name)).filter(|s| !s.is_empty());
                feedback_record = Some(What::Feedback {
                    feedback: feedback.into(),
                    channel: text("channel"),
                    message: opt("message"),
                    flow: opt("flow"),
                });
            }
            let kind = match s.wire.as_deref() {
                Some("Message Bounced") => Some("bounce"),
                Some("Marked As Spam") => Some("spam"),
                Some("Unsubscribed") => Some("unsubscribe"),
                Some("Message Clicked") => Some("click"),
                Some("SMS Received")
                    if customer::sms_keyword(&text("text"))
                        == Some(customer::SmsKeyword::OptOut) =>
                {
                    Some("stop")
                }
                _ => None,
            };
            feedback_count = kind.map(|k| (k, text("flow")));
            // Every event below writes a trait (bounces only when hard, STOP
            // only for the opt-out words; counting those as changes is harmless).
            changed |= matches!(
                s.wire.as_deref(),
                Some(
                    "Order Completed"
                        | "Order Refunded"
                        | "Subscribed"
                        | "Unsubscribed"
                        | "Marked As Spam"
                        | "SMS Received"
                )
            );
            match s.wire.as_deref() {
                Some("Order Completed") => {
                    t.bump(&mut cust.profile, t.orders_count, 1);
                    t.add(&mut cust.profile, t.total_spent, money("total"));
                    t.stamp(&mut cust.profile, t.first_order_at, at, true);
                    t.stamp(&mut cust.profile, t.last_order_at, at, false);
                }
                Some("Order Refunded") => {
                    t.add(&mut cust.profile, t.total_spent, -money("total"));
                    let order_id = text("order_id");
                    if !order_id.is_empty() {
                        feedback_record = Some(What::Refunded {
                            order_id,
                            amount: nudge_bytecode::format_money(money("total")),
                            currency: Some(text("currency")).filter(|c| !c.is_empty()),
                        });
                    }
                }
                Some("Subscribed") => {
                    let channel = text("channel");
                    t.set_consent(bundle, &mut cust.profile, &channel, true);
                    // An explicit re-consent lifts an earlier hard opt-out.
                    if let Some(rare) = cust.rare_if() {
                        rare.opted_out.remove(channel.as_str());
                    }
                    if channel == "sms"
                        && let Some(p) = phone_of(&cust.profile)
                    {
                        phone_stop = Some((p, false));
                    }
                }
                Some("Unsubscribed") => {
                    t.set_consent(bundle, &mut cust.profile, &text("channel"), false)
                }
                Some("Marked As Spam") => t.set_consent(bundle, &mut cust.profile, "email", false),
                Some("Message Bounced") => {
                    let hard = !matches!(field("kind"), Some(Value::Str(k)) if &**k == "soft");
                    let addr = match text("channel").as_str() {
                        "sms" => t.text(&cust.profile, t.phone).map(str::to_string),
                        _ => t
                            .text(&cust.profile, t.email)
                            .map(|e| e.trim().to_lowercase()),
                    };
                    if hard && let Some(a) = addr {
                        cust.rare_mut().bounced.insert(a.clone());
                        bounced_address = Some(a);
                    }
                }
                Some("SMS Received") => match customer::sms_keyword(&text("text")) {
                    Some(customer::SmsKeyword::OptOut) => {
                        t.set_consent(bundle, &mut cust.profile, "sms", false);
                        cust.rare_mut().opted_out.insert("sms");
                        phone_stop = phone_of(&cust.profile).map(|p| (p, true));
                    }
                    Some(customer::SmsKeyword::OptIn) => {
                        t.set_consent(bundle, &mut cust.profile, "sms", true);
                        if let Some(rare) = cust.rare_if() {
                            rare.opted_out.remove("sms");
                        }
                        phone_stop = phone_of(&cust.profile).map(|p| (p, false));
                    }
                    None => {}
                },
                _ => {}
            }
        }
        if let Some(a) = bounced_address {
            self.undeliverable.insert(a);
        }
        if let Some((kind, flow)) = feedback_count {
            self.stats.count_feedback(kind, flow);
        }
        match phone_stop {
            Some((p, true)) => {
                self.stopped_phones.insert(p);
            }
            Some((p, false)) => {
                self.stopped_phones.remove(&p);
            }
            None => {}
        }
        if changed {
            self.dirty.push(c);
        }
        if let Some(what) = feedback_record {
            self.record(c, what);
        }
    }

    fn merge(&mut self, kept: CustomerId, absorbed: CustomerId) {
        if !self.page_in(absorbed.0) {
            return;
        }
        let Some(other) = self.customers.remove(&absorbed.0) else {
            return;
        };
        self.merge_customer(kept, other, true);
    }

    /// Folds `other` (taken out of the table, its instances still naming
    /// it) into customer `kept`, and re-checks what the join can change.
    /// `announce` records the join; parts of one customer that two engines
    /// held apart (see `handoff`) come together without a record, as one
    /// engine never had them apart.
    fn merge_customer(&mut self, kept: CustomerId, other: Customer, announce: bool) {
        if !self.ensure_customer(kept.0) {
            return;
        }
        let absorbed_key = other.key.to_string();
        let key = self.display_id(kept.0);
        // Idempotency keys name the customer: an instance whose customer is
        // now shown by another id keeps the one it started with.
        let kept_key = known(&self.customers, kept.0).key.to_string();
        for (ids, was) in [
            (&other.instances, &absorbed_key),
            (&known(&self.customers, kept.0).instances, &kept_key),
        ] {
            for id in ids.iter() {
                if let Some(inst) = self.instances.get_mut(id) {
                    inst.customer = kept.0;
                    if *was != key {
                        inst.pin_origin(was);
                    }
                }
            }
        }
        // Flows both sides remember: joining their memories cancels both
        // sides' trigger timers (the generation moves on), so they are set again.
        let both: Vec<u32> = {
            let mine = &known(&self.customers, kept.0).flows;
            other
                .flows
                .iter()
                .map(|m| m.key)
                .filter(|k| mine.iter().any(|m| m.key == *k))
                .collect()
        };
        let cust = known_mut(&mut self.customers, kept.0);
        cust.absorb(other, &self.traits);
        cust.key = key.as_str().into();
        self.rearm_joined(kept.0, &both);
        if announce {
            let at = self.now_text();
            self.effects.push(Effect::Record(Record {
                at,
                customer: key,
                what: What::Joined {
                    identities: vec![absorbed_key],
                },
            }));
        }
        self.dirty.push(kept.0);
        self.end_merged_duplicates(kept.0);
        self.arm_schedules(kept.0);
        // A join can reveal that an exit event or an awaited event already
        // happened under the other identity: look through the joined history.
        let ids = known(&self.customers, kept.0).instances.clone();
        for id in ids.iter() {
            self.recheck_history(id);
        }
        // Likewise a goal may have been reached under the other identity.
        let cust = known(&self.customers, kept.0);
        if let Some(first) = cust.rare().goals.iter().map(|g| g.entered).min() {
            let events: Vec<Seen> = cust
                .events_since(first)
                .iter()
                .filter(|e| self.goal_events.contains(&e.schema))
                .cloned()
                .collect();
            for e in &events {
                self.check_goals(kept.0, e);
            }
        }
    }

    /// After a merge, one person may have more live instances of a flow
    /// than its entry rule allows (a cart started on a laptop and another on
    /// a phone): the earliest goes on, the later end as `merged`.
    fn end_merged_duplicates(&mut self, c: u32) {
        let mut live: Vec<(u32, i64, u32, u32)> = known(&self.customers, c)
            .instances
            .iter()
            .filter_map(|id| {
                let inst = self.instances.get(id)?;
                if inst.exiting().is_some() {
                    return None;
                }
                let flow = self.flow_of(inst.release, inst.flow);
                let single = !matches!(flow.entry, nudge_bytecode::Entry::Always);
                single.then(|| {
                    let key = self.key_of(inst.release, inst.flow);
                    (key, inst.started, inst.number, id)
                })
            })
            .collect();
        live.sort_unstable();
        let later: Vec<u32> = live
            .iter()
            .zip(live.iter().skip(1))
            .filter(|(a, b)| a.0 == b.0)
            .map(|(_, b)| b.3)
            .collect();
        for id in later {
            self.end(id, End::exited(ExitReason::Merged));
        }
    }

    /// Checks instance `id`'s exit rules (and the `wait for` it is parked
    /// in) against the events already seen since it started: events of an
    /// identity joined later, or a stop that overtook a late trigger.
    pub(super) fn recheck_history(&mut self, id: u32) {
        let Some(inst) = self.instances.get(id) else {
            return;
        };
        if inst.exiting().is_some() {
            return;
        }
        let started = inst.started;
        let trigger_seq = inst.trigger_seq;
        let events: Vec<Seen> = known(&self.customers, inst.customer)
            .events_since(started)
            .iter()
            .filter(|e| e.seq != trigger_seq)
            .cloned()
            .collect();
        for e in &events {
            if self.instances.get(id).is_none() {
                return;
            }
            self.check_exit(id, e);
        }
        if let Some(inst) = self.instances.get(id)
            && inst.event_wait().is_some()
        {
            for e in &events {
                if self.try_wait_match(id, e) {
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, c: u32, seen: &Seen) {
        // Exit rules first: an event that ends an instance must not also feed its wait.
        let ids = known(&self.customers, c).instances.clone();
        for id in ids.iter() {
            self.check_exit(id, seen);
        }
        let ids = known(&self.customers, c).instances.clone();
        for id in ids.iter() {
            self.try_wait_match(id, seen);
        }
        self.check_goals(c, seen);
        // New instances start on the newest release.
        let r = self.current();
        let bundle = self.bundle();
        let flows = rel(&self.releases, r)
            .triggered_by
            .get(&seen.schema)
            .cloned()
            .unwrap_or_default();
        for f in flows {
            let flow = self.flow_of(r, f);
            let nudge_bytecode::Trigger::Event(rule) = &flow.trigger else {
                continue;
            };
            if let Some(p) = rule.predicate {
                match self.predicate(
                    c,
                    r,
                    UnitRef::Flow(f),
                    p,
                    Some(&seen.value),
                    Some(&seen.value),
                    self.now,
                    &mut Vec::new(),
                ) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        self.record(
                            c,
                            What::Error {
                                flow: flow.name.clone(),
                                instance: 0,
                                message: format!("trigger condition: {e}"),
                            },
                        );
                        continue;
                    }
                }
            }
            let wire = bundle.schema(seen.schema).wire.clone().unwrap_or_default();
            let late = self.now.saturating_sub(seen.at);
            if late > self.config.max_lateness.saturating_mul(1000) {
                // Too old to act on: it still counts in the profile and
                // the history, but a reminder for it would come far too late.
                self.stats.flow_mut(&flow.name).not_entered += 1;
                self.record(
                    c,
                    What::NotEntered {
                        flow: flow.name.clone(),
                        reason: crate::record::EntryReason::Late,
                        late_by: Some(nudge_bytecode::format_duration_ms(late)),
                        due: None,
                    },
                );
                continue;
            }
            self.try_enter(c, f, seen.value.clone(), seen.seq, wire, seen.at);
        }
    }

    /// Runs a predicate block of release `r` for customer `c`.
    #[allow(clippy::too_many_arguments)]
    fn predicate(
        &mut self,
        c: u32,
        r: u32,
        unit: UnitRef,
        block: u32,
        trigger: Option<&Value>,
        event: Option<&Value>,
        since: i64,
        locals: &mut Vec<Value>,
    ) -> Result<bool, nudge_vm::VmError> {
        let tz = self.zone(c, None);
        let cust = known_mut(&mut self.customers, c);
        let ctx = customer::Ctx {
            customer: cust,
            now: self.now,
            tz,
            writes: Vec::new(),
        };
        let release = rel(&self.releases, r);
        let mut host = recs::RecCtx::new(
            ctx,
            release.bundle,
            &self.learned,
            &self.config.catalogue,
            trigger,
        );
        let scope = Scope {
            trigger,
            event,
            since,
        };
        let v = release.vm.eval(unit, block, locals, &scope, &mut host);
        let served = std::mem::take(&mut host.served);
        if let UnitRef::Flow(f) = unit {
            let flow = self.flow_of(r, f);
            for picks in served {
                self.record(c, recs::served(&flow.name, &picks));
            }
        }
        Ok(v? == Value::Bool(true))
    }

    fn zone(&self, c: u32, channel: Option<Channel>) -> Tz {
        match self.customers.get(&c) {
            Some(cust) => self.traits.zone(&cust.profile, channel, self.policy_tz),
            None => self.policy_tz,
        }
    }

    fn check_exit(&mut self, id: u32, seen: &Seen) {
        let Some(inst) = self.instances.get(id) else {
            return;
        };
        if inst.exiting().is_some() || seen.seq == inst.trigger_seq || seen.at < inst.started {
            return;
        }
        let (r, f, c, trigger) = (inst.release, inst.flow, inst.customer, inst.trigger());
        let bundle = self.bundle_of(r);
        let flow = self.flow_of(r, f);
        for rule in &flow.exit_on {
            if rule.event != seen.schema {
                continue;
            }
            let hit = match rule.predicate {
                None => Ok(true),
                Some(p) => self.predicate(
                    c,
                    r,
                    UnitRef::Flow(f),
                    p,
                    Some(&trigger),
                    Some(&seen.value),
                    self.now,
                    &mut Vec::new(),
                ),
            };
            match hit {
                Ok(true) => {
                    let reason = bundle.schema(seen.schema).name.clone();
                    if seen.at < self.now {
                        self.note_late_exit(id, seen, &reason);
                    }
                    self.end(id, End::Exited(ExitReason::ExitOn, reason));
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    self.end(id, End::Error(e.to_string()));
                    return;
                }
            }
        }
    }

    /// Records the sends instance `id` made after `seen` happened and before
    /// it arrived: they cannot be taken back, but a marketer tuning waits
    /// needs to see them.
    fn note_late_exit(&mut self, id: u32, seen: &Seen, event: &str) {
        let Some(inst) = self.instances.get(id) else {
            return;
        };
        let (r, f, c, number, started) = (
            inst.release,
            inst.flow,
            inst.customer,
            inst.number,
            inst.started,
        );
        let key = self.key_of(r, f);
        let since = seen.at.max(started);
        let messages: Vec<String> = known(&self.customers, c)
            .sends
            .iter()
            .filter(|s| s.flow == key && s.at >= since)
            .map(|s| self.message_name(s.message))
            .collect();
        if messages.is_empty() {
            return;
        }
        let flow = self.flow_of(r, f).name.clone();
        self.stats.flow_mut(&flow).sent_before_stop += messages.len() as u64;
        let late_by = nudge_bytecode::format_duration_ms(self.now - seen.at);
        self.record(
            c,
            What::ExitedLate {
                flow,
                instance: number,
                event: event.to_string(),
                happened: format_instant_ms(seen.at),
                late_by,
                messages,
            },
        );
    }

    /// The clock as records and sends write it, formatted once per instant.
    fn now_text(&mut self) -> String {
        match &self.now_text {
            Some((at, text)) if *at == self.now => text.clone(),
            _ => {
                let text = format_instant_ms(self.now);
                self.now_text = Some((self.now, text.clone()));
                text
            }
        }
    }

    fn record(&mut self, c: u32, what: What) {
        let customer = self
            .customers
            .get(&c)
            .map(|x| x.key.to_string())
            .unwrap_or_default();
        let at = self.now_text();
        self.effects
            .push(Effect::Record(Record { at, customer, what }));
    }

    fn settle(&mut self) {
        while let Some(c) = self.dirty.pop() {
            if self.customers.contains_key(&c) {
                self.profile_changed(c);
            }
        }
    }

    fn next_generation(&mut self) -> u32 {
        self.generations = self.generations.wrapping_add(1);
        self.generations
    }

    fn alloc(&mut self, inst: Instance) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.instances.put(id, inst);
                id
            }
            None => self.instances.push(inst),
        }
    }

    fn membership(&mut self, c: u32, flow: &str, name: &str, add: bool) {
        let cust = known_mut(&mut self.customers, c);
        let changed = if add {
            cust.rare_mut().audiences.insert(name.into())
        } else {
            cust.rare_if().is_some_and(|r| r.audiences.remove(name))
        };
        if !changed {
            return;
        }
        let action = if add { "add" } else { "remove" }.to_string();
        let customer = cust.key.to_string();
        // Ad platforms match people by these, as the profile holds them now.
        let t = &self.traits;
        let email = t.text(&cust.profile, t.email).map(str::to_string);
        let phone = t.text(&cust.profile, t.phone).map(str::to_string);
        let at = self.now_text();
        self.effects.push(Effect::Membership(Membership {
            at,
            audience: name.to_string(),
            customer,
            action: action.clone(),
            email,
            phone,
        }));
        self.record(
            c,
            What::Audience {
                flow: flow.to_string(),
                audience: name.to_string(),
                action,
            },
        );
    }

    fn count(
        &mut self,
        r: u32,
        flow: u32,
        outcome: Outcome,
        reason: Option<&str>,
        code: Option<crate::record::SendReason>,
    ) {
        let name = &self.flow_of(r, flow).name;
        let stats = self.stats.flow_mut(name);
        stats.decide(outcome, reason);
        let key = (outcome.name(), code.map_or("", |c| c.code()));
        *stats.by_code.entry(key).or_insert(0) += 1;
    }

    /// Takes back one [`Machine::count`] (a send a host could not hand over).
    fn uncount(
        &mut self,
        r: u32,
        flow: u32,
        outcome: Outcome,
        reason: Option<&str>,
        code: Option<crate::record::SendReason>,
    ) {
        let name = &self.flow_of(r, flow).name;
        let stats = self.stats.flow_mut(name);
        stats.undecide(outcome, reason);
        let key = (outcome.name(), code.map_or("", |c| c.code()));
        crate::stats::take_one(&mut stats.by_code, &key);
    }
}

/// Whether a goal watch's window has passed at `now`: it can no longer be reached.
fn goal_expired(releases: &[Release<'_>], now: i64, g: &customer::GoalWatch) -> bool {
    rel(releases, g.release)
        .flow(g.flow)
        .def
        .goal
        .as_ref()
        .is_none_or(|goal| now > g.entered.saturating_add(crate::millis::ms(goal.within)))
}

/// A step of the clock a host takes after its input (`--until`,
/// `--drain`, a tick of `nudge serve`), whole or in parts (see
/// [`Machine::advance_part`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockStep {
    /// Fire every timer due at or before this instant (milliseconds since
    /// the epoch), then set the clock to it.
    Until(i64),
    /// Fire timers until only recurring schedules remain.
    Drain,
}

/// What one [`Machine::fire`] did.
struct Fired {
    /// Timers fired.
    count: usize,
    /// The instant it stopped at with timers still due (see
    /// [`Machine::advance_part`]).
    stopped: Option<i64>,
}

/// How much history an engine holds (see [`Machine::history_held`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Customers known.
    pub customers: u64,
    /// Events stored in their histories.
    pub events: u64,
    /// Sends stored.
    pub sends: u64,
}

/// The horizons [`Machine::forget`] trims a customer's history to.
struct Keep<'a> {
    /// Per event schema, the earliest event any rule may still read.
    events_from: &'a [i64],
    /// The earliest of those bounds but "for ever" (`i64::MIN`).
    floor: i64,
    /// The earliest send any rule may still read.
    sends_from: i64,
}

/// How many calls an engine holds what it let go of for a host that
/// asked for it before; past them it drops it itself (see
/// [`Machine::take_let_go`]).
pub const LET_GO_CALLS: u32 = 4096;

/// Events an engine let go of, to be dropped where it costs the engine
/// nothing (see [`Machine::take_let_go`]).
#[derive(Default)]
pub struct LetGo(Vec<Seen>);

impl LetGo {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// How many events it has room for without growing.
    pub fn room(&self) -> usize {
        self.0.capacity()
    }

    /// Drops the events it holds and keeps their room, to be handed back
    /// to the engine ([`Machine::reuse_let_go`]).
    pub fn empty(&mut self) {
        self.0.clear();
    }
}

/// The most events whose room an engine keeps between sweeps (see
/// [`Machine::reuse_let_go`]): about 12 MB.
const LET_GO_ROOM: usize = 1 << 18;

impl Keep<'_> {
    /// Takes what no rule can read any more out of `cust`'s history (its
    /// events into `gone`); says whether anything went.
    fn apply(&self, cust: &mut Customer, gone: &mut Vec<Seen>) -> bool {
        let mut dropped = false;
        // An event of a schema beyond the table (none should be) is kept.
        let readable = |e: &Seen| {
            e.at >= self
                .events_from
                .get(e.schema as usize)
                .copied()
                .unwrap_or(i64::MIN)
        };
        // Histories are in time order: one whose first event is not before
        // every kind's bound holds nothing to drop, and this runs for every
        // call, so it is settled without reading the whole history.
        let may_drop = cust.events.first().is_some_and(|e| e.at < self.floor);
        if may_drop && !cust.events.iter().all(readable) {
            gone.extend(cust.events.extract_if(.., |e| !readable(e)));
            if cust.events.is_empty() {
                // An emptied history's room would be held until the
                // customer's next event, months away for most.
                cust.events = thin_vec::ThinVec::new();
            }
            dropped = true;
        }
        if cust.sends.first().is_some_and(|s| s.at < self.sends_from) {
            cust.sends.retain(|s| s.at >= self.sends_from);
            if cust.sends.is_empty() {
                cust.sends = thin_vec::ThinVec::new();
            }
            dropped = true;
        }
        dropped
    }
}

/// The key of `name` in a table of names, added when new.
fn intern(names: &mut Vec<Arc<str>>, keys: &mut HashMap<Arc<str>, u32>, name: &str) -> u32 {
    if let Some(&k) = keys.get(name) {
        return k;
    }
    let k = names.len() as u32;
    let name: Arc<str> = name.into();
    names.push(name.clone());
    keys.insert(name, k);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Names;

    fn call(event: Option<(u32, Value)>, traits: Vec<(u16, Value)>) -> TypedCall<'static> {
        TypedCall {
            at: 1_000,
            names: Names {
                user_id: Some("ann"),
                ..Names::default()
            },
            message_id: None,
            event,
            traits,
        }
    }

    #[test]
    fn a_send_key_names_flow_version_customer_instance_and_step() {
        assert_eq!(
            send_key("win_back", "aa1ef77ab390bf64", "c-641", 1, 0),
            "win_back/aa1ef77ab390bf64/c-641/1/send@0"
        );
        assert_eq!(
            send_key("f", "v", "ann@x.example", u32::MAX, u16::MAX),
            "f/v/ann@x.example/4294967295/send@65535"
        );
    }

    #[test]
    fn a_call_typed_against_other_schemas_is_refused_and_changes_nothing() {
        let bundle = nudge_test_support::example_bundle("cart_recovery");
        let mut engine = Machine::new(&bundle, Config::default(), 0);
        let schemas = bundle.schemas.len() as u32;
        let record = Value::Record(Arc::new(nudge_bytecode::Record {
            schema: schemas + 3,
            fields: Vec::new(),
        }));
        let err = engine
            .apply_typed(call(Some((schemas + 3, record)), Vec::new()))
            .unwrap_err();
        assert!(
            err.reason.contains(&format!("schema #{}", schemas + 3)),
            "{}",
            err.reason
        );
        let fields = bundle.profile_schema().fields.len() as u16;
        let err = engine
            .apply_typed(call(None, vec![(fields, Value::Int(1))]))
            .unwrap_err();
        assert!(
            err.reason.contains(&format!("profile field #{fields}")),
            "{}",
            err.reason
        );
        assert_eq!(engine.history_held().customers, 0);
        assert_eq!(engine.counters().events, 0);
        assert_eq!(engine.now(), 0, "the clock did not move");
        // The same customer with fields the profile has is applied.
        let email = bundle
            .profile_schema()
            .fields
            .iter()
            .position(|f| f.name == "email")
            .unwrap() as u16;
        let ok = call(None, vec![(email, Value::Str("ann@example.com".into()))]);
        assert_eq!(engine.apply_typed(ok).unwrap(), Applied::Applied);
        assert_eq!(engine.history_held().customers, 1);
    }

    #[test]
    fn equal_consents_share_one_record_and_the_cache_stays_bounded() {
        let consent = |email: bool| {
            Value::Record(Arc::new(nudge_bytecode::Record {
                schema: 7,
                fields: vec![Value::Bool(email), Value::None],
            }))
        };
        let mut cache = Vec::new();
        let (Value::Record(a), Value::Record(b)) = (
            share(&mut cache, consent(true)),
            share(&mut cache, consent(true)),
        ) else {
            panic!("records stay records");
        };
        assert!(Arc::ptr_eq(&a, &b), "the second is the first one's record");
        let Value::Record(c) = share(&mut cache, consent(false)) else {
            panic!("records stay records");
        };
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.fields[0], Value::Bool(false));
        assert_eq!(share(&mut cache, Value::Int(3)), Value::Int(3));
        for i in 0..100 {
            share(
                &mut cache,
                Value::Record(Arc::new(nudge_bytecode::Record {
                    schema: i,
                    fields: Vec::new(),
                })),
            );
        }
        assert_eq!(cache.len(), SHARED_CONSENTS);
    }
}
