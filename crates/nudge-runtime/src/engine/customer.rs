//! What the engine knows of one customer: profile, event history, live
//! instances, sends and memberships; and how two customers become one.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use chrono_tz::Tz;
use nudge_bytecode::{Bundle, Channel, Record, Type, Value};

pub use super::profile::Profile;
use nudge_vm::Host;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thin_vec::ThinVec;

use super::Tables;

/// One event in a customer's history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Seen {
    /// When it happened, in milliseconds since the epoch.
    pub at: i64,
    /// Its arrival number, unique across the run.
    pub seq: u64,
    /// Its schema.
    pub schema: u32,
    /// Its properties.
    pub value: Value,
}

/// A message that went out, for frequency caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// When, in milliseconds since the epoch.
    pub at: i64,
    /// On which channel.
    pub channel: Channel,
    /// Whether it was marketing (only marketing sends count toward caps).
    pub marketing: bool,
    /// Which flow sent it, by flow key (the engine's number for the flow's
    /// name, the same in every release), so flow caps count across deploys.
    pub flow: u32,
    /// Which message it was, by message key (conversions are credited to the last one).
    pub message: u32,
}

/// Per customer and flow: what entry rules and triggers need to remember.
/// Kept by flow key, so it follows the flow's name across deploys.
///
/// Every customer who enters a flow has one, so it is packed into 40 bytes:
/// the two optional instants share one byte of flags instead of a tag each.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FlowMemory {
    /// The flow key.
    pub key: u32,
    /// Instances started so far (the next instance's number is this plus one).
    pub entries: u32,
    /// Live instances.
    pub live: u32,
    /// For date and schedule triggers: bumped to cancel the armed timer.
    pub generation: u32,
    /// For `trigger entering`: whether the customer was in the segment.
    pub in_segment: bool,
    /// Which of `last_entry` and `armed` are set.
    set: u8,
    /// See [`FlowMemory::last_entry`].
    last_entry: i64,
    /// See [`FlowMemory::armed`].
    armed: i64,
}

/// `FlowMemory::set`: `last_entry` holds a value.
const LAST_ENTRY: u8 = 1;
/// `FlowMemory::set`: `armed` holds a value.
const ARMED: u8 = 2;

impl FlowMemory {
    /// When the latest instance started, in milliseconds since the epoch.
    pub fn last_entry(&self) -> Option<i64> {
        (self.set & LAST_ENTRY != 0).then_some(self.last_entry)
    }

    /// Sets when the latest instance started.
    pub fn set_last_entry(&mut self, at: Option<i64>) {
        self.last_entry = at.unwrap_or(0);
        self.set = (self.set & !LAST_ENTRY) | if at.is_some() { LAST_ENTRY } else { 0 };
    }

    /// For date triggers: the field value the timer was armed for.
    pub fn armed(&self) -> Option<i64> {
        (self.set & ARMED != 0).then_some(self.armed)
    }

    /// Sets the field value the date trigger's timer was armed for.
    pub fn set_armed(&mut self, at: Option<i64>) {
        self.armed = at.unwrap_or(0);
        self.set = (self.set & !ARMED) | if at.is_some() { ARMED } else { 0 };
    }
}

/// A customer's live instance slots, oldest first: the first inline (most
/// customers have at most one at a time, and it then costs no allocation),
/// the rest out of line. 16 bytes, where a vector takes 24 and a heap block.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceIds {
    /// The first slot, or [`InstanceIds::NONE`].
    first: u32,
    /// The others, when there are any. Boxed so that the common case
    /// costs 8 bytes here rather than an empty vector's 24.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<u32>>>,
}

impl Default for InstanceIds {
    fn default() -> Self {
        InstanceIds {
            first: Self::NONE,
            rest: None,
        }
    }
}

impl InstanceIds {
    /// No slot: slots are numbered from 0 and never reach it.
    const NONE: u32 = u32::MAX;

    /// Whether there is no live instance.
    pub fn is_empty(&self) -> bool {
        self.first == Self::NONE
    }

    /// Adds a slot at the end.
    pub fn push(&mut self, id: u32) {
        if self.first == Self::NONE {
            self.first = id;
        } else {
            self.rest.get_or_insert_default().push(id);
        }
    }

    /// Removes a slot, keeping the others in order.
    pub fn remove(&mut self, id: u32) {
        if let Some(rest) = &mut self.rest {
            rest.retain(|&x| x != id);
            if self.first == id && !rest.is_empty() {
                self.first = rest.remove(0);
            } else if self.first == id {
                self.first = Self::NONE;
            }
            if rest.is_empty() {
                self.rest = None;
            }
        } else if self.first == id {
            self.first = Self::NONE;
        }
    }

    /// The slots, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (self.first != Self::NONE)
            .then_some(self.first)
            .into_iter()
            .chain(self.rest.iter().flat_map(|r| r.iter().copied()))
    }
}

/// A goal waiting to be reached.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GoalWatch {
    /// The release the instance started on: its goal rule is the one watched.
    pub release: u32,
    /// The flow's index in that release.
    pub flow: u32,
    /// The instance's number.
    pub instance: u32,
    /// When it started, in milliseconds; the goal's window counts from here.
    pub entered: i64,
    /// The trigger event, for goal predicates that correlate with it.
    pub trigger: Value,
    /// Whether the instance was held out.
    pub holdout: bool,
    /// The arms it took of splits that optimise, as (split, arm) numbers
    /// of its release's flow: reaching the goal counts for each.
    #[serde(
        deserialize_with = "super::checkpoint::layout::since::<6, _, _>",
        skip_serializing_if = "super::checkpoint::layout::before::<6, _>"
    )]
    pub arms: Vec<(u16, u16)>,
}

/// Everything known about one customer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Customer {
    /// The display id (a user id when known). Boxed: 16 bytes, where a
    /// string's spare capacity would take 24.
    pub key: Box<str>,
    /// Standard and custom traits, one value per profile field.
    pub profile: Profile,
    /// Events, oldest first. Thin: empty for most customers most of the time.
    pub events: ThinVec<Seen>,
    /// Live instance slots.
    pub instances: InstanceIds,
    /// Per flow memory (by flow key), for the flows the customer has met. A
    /// short list, not a map: most customers meet one or two flows, and a
    /// map's table would cost more than everything else the customer holds;
    /// a boxed slice, as it grows only once per flow the customer meets.
    pub flows: Box<[FlowMemory]>,
    /// Sends, oldest first. Thin, as the history.
    pub sends: ThinVec<Sent>,
    /// What many customers never have, out of line: see [`Customer::rare`].
    rare: Option<Box<Rare>>,
}

/// What a customer holds that many never have: kept apart so that those
/// who have none of it pay 8 bytes for all of it, not a hundred.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Rare {
    /// Audiences the customer is in.
    pub audiences: BTreeSet<Arc<str>>,
    /// Goals not yet reached or expired.
    pub goals: Vec<GoalWatch>,
    /// Addresses that bounced hard: no message goes to them.
    pub bounced: BTreeSet<String>,
    /// Channels with a hard opt-out (an SMS STOP): not even transactional messages go.
    #[serde(with = "crate::engine::checkpoint::channel_names")]
    pub opted_out: BTreeSet<&'static str>,
    /// The zone schedules were armed in; a new zone re-arms them.
    #[serde(with = "crate::engine::checkpoint::zone")]
    pub schedule_zone: Option<Tz>,
}

/// What a customer without any of [`Rare`] reads.
static NOTHING_RARE: Rare = Rare {
    audiences: BTreeSet::new(),
    goals: Vec::new(),
    bounced: BTreeSet::new(),
    opted_out: BTreeSet::new(),
    schedule_zone: None,
};

impl Customer {
    /// A new customer with the profile's defaults.
    pub fn new(bundle: &Bundle, key: String) -> Customer {
        Customer::with_profile(key, Customer::fresh_profile(bundle))
    }

    /// The profile a new customer of `bundle` starts with: every field at
    /// its default.
    pub fn fresh_profile(bundle: &Bundle) -> Profile {
        let fields = bundle
            .profile_schema()
            .fields
            .iter()
            .map(|f| f.default.clone().unwrap_or(Value::None));
        Profile::new(bundle.profile, fields)
    }

    /// A new customer known as `key` with `profile` (a copy of
    /// [`Customer::fresh_profile`], which the engine builds once a release).
    pub fn with_profile(key: String, profile: Profile) -> Customer {
        Customer {
            key: key.into_boxed_str(),
            profile,
            events: ThinVec::new(),
            instances: InstanceIds::default(),
            flows: Box::default(),
            sends: ThinVec::new(),
            rare: None,
        }
    }

    /// Audiences, goals, bounces, opt-outs and the schedules' zone.
    pub fn rare(&self) -> &Rare {
        self.rare.as_deref().unwrap_or(&NOTHING_RARE)
    }

    /// [`Customer::rare`], to change (to add to: it is made if need be).
    pub fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_default()
    }

    /// [`Customer::rare`], to change what is there (nothing is made).
    pub fn rare_if(&mut self) -> Option<&mut Rare> {
        self.rare.as_deref_mut()
    }

    /// The memory for one flow, by flow key.
    // `i` is a position in `flows`, found or pushed just before it is read
    // (returning the found one from `get_mut` is refused by the borrow checker).
    #[allow(clippy::indexing_slicing)]
    pub fn flow(&mut self, flow: u32) -> &mut FlowMemory {
        let i = match self.flows.iter().position(|m| m.key == flow) {
            Some(i) => i,
            None => {
                let mut flows = std::mem::take(&mut self.flows).into_vec();
                // Exactly one more, so that boxing it moves nothing.
                flows.reserve_exact(1);
                flows.push(FlowMemory {
                    key: flow,
                    ..FlowMemory::default()
                });
                self.flows = flows.into_boxed_slice();
                self.flows.len() - 1
            }
        };
        &mut self.flows[i]
    }

    /// The events that happened at or after `at`, oldest first.
    pub fn events_since(&self, at: i64) -> &[Seen] {
        let start = self.events.partition_point(|e| e.at < at);
        self.events.get(start..).unwrap_or_default()
    }

    /// Folds `other` (a customer found to be the same person) into this one.
    pub fn absorb(&mut self, other: Customer, traits: &Traits) {
        // Both profiles are laid out by the same schema.
        for n in 0..self.profile.len().min(other.profile.len()) {
            let (Some(mine), Some(theirs)) = (self.profile.get(n), other.profile.get(n)) else {
                continue;
            };
            let i = u16::try_from(n).ok();
            let merged = if i == traits.orders_count {
                add_int(&mine, &theirs)
            } else if i == traits.total_spent {
                add_money(&mine, &theirs)
            } else if i == traits.first_order_at || i == traits.created_at {
                pick_time(&mine, &theirs, i64::min)
            } else if i == traits.last_order_at || i == traits.last_seen_at {
                pick_time(&mine, &theirs, i64::max)
            } else if mine.is_none() {
                theirs
            } else {
                continue;
            };
            self.profile.set(n, merged);
        }
        self.events.extend(other.events);
        self.events.sort_by_key(|e| (e.at, e.seq));
        for id in other.instances.iter() {
            self.instances.push(id);
        }
        for m in other.flows {
            let mine = self.flow(m.key);
            // Summed, so numbers given after the merge exceed every number
            // either side ever gave: instance identities stay unique.
            mine.entries = mine.entries.saturating_add(m.entries);
            mine.set_last_entry(mine.last_entry().max(m.last_entry()));
            mine.live += m.live;
            mine.in_segment |= m.in_segment;
            mine.generation = mine.generation.max(m.generation) + 1;
        }
        self.sends.extend(other.sends);
        self.sends.sort_by_key(|s| s.at);
        if let Some(other) = other.rare {
            let mine = self.rare_mut();
            mine.audiences.extend(other.audiences);
            mine.goals.extend(other.goals);
            mine.bounced.extend(other.bounced);
            mine.opted_out.extend(other.opted_out);
        }
    }
}

fn add_int(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Value::Int(x.saturating_add(*y)),
        (Value::None, v) | (v, _) => v.clone(),
    }
}

fn add_money(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Money(x), Value::Money(y)) => Value::Money(x.checked_add(*y).unwrap_or(*x)),
        (Value::None, v) | (v, _) => v.clone(),
    }
}

fn pick_time(a: &Value, b: &Value, pick: fn(i64, i64) -> i64) -> Value {
    match (a, b) {
        (Value::Time(x), Value::Time(y)) => Value::Time(pick(*x, *y)),
        (Value::None, v) | (v, _) => v.clone(),
    }
}

/// What an inbound SMS asks for, by the carriers' standard keywords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmsKeyword {
    /// Stop all messages on the channel, transactional included.
    OptOut,
    /// Lift an earlier opt-out and consent again.
    OptIn,
}

/// The industry opt-out words (CTIA and carrier guidance).
const SMS_OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];

/// The industry opt-in words.
const SMS_OPT_IN: &[&str] = &["START", "UNSTOP", "YES"];

/// The keyword an inbound SMS is, if any. Carriers match the whole message
/// as one word, ignoring case, surrounding blanks and trailing punctuation
/// (`Stop.`, `stop!`), so a sentence that merely contains "stop" is not one.
pub fn sms_keyword(text: &str) -> Option<SmsKeyword> {
    let word = text
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_punctuation())
        .to_ascii_uppercase();
    if SMS_OPT_OUT.contains(&word.as_str()) {
        Some(SmsKeyword::OptOut)
    } else if SMS_OPT_IN.contains(&word.as_str()) {
        Some(SmsKeyword::OptIn)
    } else {
        None
    }
}

/// The zones a recipient's quiet hours are read in, without allocating on
/// the send path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuietZones {
    /// One zone: the profile's or the policy's.
    One(Tz),
    /// Every zone a phone number may be in.
    Many(&'static [Tz]),
}

impl QuietZones {
    /// The zones, most likely first.
    pub fn as_slice(&self) -> &[Tz] {
        match self {
            QuietZones::One(tz) => std::slice::from_ref(tz),
            QuietZones::Many(zones) => zones,
        }
    }
}

/// Where the standard traits sit in the profile record, found once per bundle.
#[derive(Clone, Debug, Default)]
pub struct Traits {
    /// `email`
    pub email: Option<u16>,
    /// `phone`
    pub phone: Option<u16>,
    /// `timezone`
    pub timezone: Option<u16>,
    /// `device_token`
    pub device_token: Option<u16>,
    /// `consent`
    pub consent: Option<u16>,
    /// The `Consent` record's schema.
    pub consent_schema: Option<u32>,
    /// `orders_count`
    pub orders_count: Option<u16>,
    /// `total_spent`
    pub total_spent: Option<u16>,
    /// `first_order_at`
    pub first_order_at: Option<u16>,
    /// `last_order_at`
    pub last_order_at: Option<u16>,
    /// `last_seen_at`
    pub last_seen_at: Option<u16>,
    /// `created_at`
    pub created_at: Option<u16>,
    /// `subscribed`
    pub subscribed: Option<u16>,
}

impl Traits {
    /// Finds the standard traits in a bundle's profile.
    pub fn of(bundle: &Bundle) -> Traits {
        let schema = bundle.profile_schema();
        let find = |name: &str| {
            schema
                .fields
                .iter()
                .position(|f| f.name == name)
                .map(|i| i as u16)
        };
        let consent = find("consent");
        let consent_schema = consent.and_then(|i| match &schema.fields.get(usize::from(i))?.ty {
            Type::Optional(t) => match **t {
                Type::Record(s) => Some(s),
                _ => None,
            },
            Type::Record(s) => Some(*s),
            _ => None,
        });
        Traits {
            email: find("email"),
            phone: find("phone"),
            timezone: find("timezone"),
            device_token: find("device_token"),
            consent,
            consent_schema,
            orders_count: find("orders_count"),
            total_spent: find("total_spent"),
            first_order_at: find("first_order_at"),
            last_order_at: find("last_order_at"),
            last_seen_at: find("last_seen_at"),
            created_at: find("created_at"),
            subscribed: find("subscribed"),
        }
    }

    /// A profile field's value.
    pub fn get(&self, profile: &Profile, field: Option<u16>) -> Option<Value> {
        field.and_then(|f| profile.get(usize::from(f)))
    }

    /// A string trait, when set and not empty.
    pub fn text<'a>(&self, profile: &'a Profile, field: Option<u16>) -> Option<&'a str> {
        profile
            .text(usize::from(field?))
            .filter(|s| !s.trim().is_empty())
    }

    /// The customer's consent for marketing on a channel: `Some(true)` granted,
    /// `Some(false)` refused, `None` never said.
    pub fn consent(&self, bundle: &Bundle, profile: &Profile, channel: Channel) -> Option<bool> {
        let c = profile.record(usize::from(self.consent?))?;
        let schema = bundle.schemas.get(c.schema as usize)?;
        let i = schema
            .fields
            .iter()
            .position(|f| f.name == channel.name())?;
        match c.fields.get(i)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether a `consent` value (whole or partial, as an identify sends it)
    /// grants `channel` explicitly.
    pub fn grants(&self, bundle: &Bundle, consent: &Value, channel: &str) -> bool {
        let Value::Record(c) = consent else {
            return false;
        };
        let Some(schema) = bundle.schemas.get(c.schema as usize) else {
            return false;
        };
        schema
            .fields
            .iter()
            .position(|f| f.name == channel)
            .and_then(|i| c.fields.get(i))
            == Some(&Value::Bool(true))
    }

    /// Sets marketing consent for a channel (from Subscribed, Unsubscribed, spam reports).
    pub fn set_consent(&self, bundle: &Bundle, profile: &mut Profile, channel: &str, on: bool) {
        let (Some(field), Some(schema_ix)) = (self.consent, self.consent_schema) else {
            return;
        };
        let schema = bundle.schema(schema_ix);
        let Some(i) = schema.fields.iter().position(|f| f.name == channel) else {
            return;
        };
        let mut record = match self.get(profile, self.consent) {
            Some(Value::Record(r)) => (*r).clone(),
            _ => Record {
                schema: schema_ix,
                fields: vec![Value::None; schema.fields.len()],
            },
        };
        if let Some(v) = record.fields.get_mut(i) {
            *v = Value::Bool(on);
        }
        let any = record.fields.contains(&Value::Bool(true));
        self.set(profile, Some(field), Value::Record(Arc::new(record)));
        self.set(profile, self.subscribed, Value::Bool(any));
    }

    /// Sets a profile field, when the profile has it.
    pub fn set(&self, profile: &mut Profile, field: Option<u16>, value: Value) {
        if let Some(f) = field {
            profile.set(usize::from(f), value);
        }
    }

    /// The recipient's zone: the profile's, else (for SMS) the phone's
    /// country's, else the policy's.
    pub fn zone(&self, profile: &Profile, channel: Option<Channel>, policy: Tz) -> Tz {
        if let Some(tz) = self
            .text(profile, self.timezone)
            .and_then(|z| Tz::from_str(z).ok())
        {
            return tz;
        }
        if channel == Some(Channel::Sms)
            && let Some(tz) = self
                .text(profile, self.phone)
                .and_then(crate::zone::zone_of_phone)
        {
            return tz;
        }
        policy
    }

    /// The zones quiet hours are read in: the profile's zone, else (for SMS)
    /// every zone the phone number may be in, else the policy's.
    pub fn quiet_zones(&self, profile: &Profile, channel: Channel, policy: Tz) -> QuietZones {
        if let Some(tz) = self
            .text(profile, self.timezone)
            .and_then(|z| Tz::from_str(z).ok())
        {
            return QuietZones::One(tz);
        }
        if channel == Channel::Sms
            && let Some(phone) = self.text(profile, self.phone)
        {
            let zones = crate::zone::zones_of_phone(phone);
            if !zones.is_empty() {
                return QuietZones::Many(zones);
            }
        }
        QuietZones::One(policy)
    }

    /// Adds to an int trait.
    pub fn bump(&self, profile: &mut Profile, field: Option<u16>, by: i64) {
        if let Some(v) = self.get(profile, field) {
            let v = add_int(&v, &Value::Int(by));
            self.set(profile, field, v);
        }
    }

    /// Adds to a money trait.
    pub fn add(&self, profile: &mut Profile, field: Option<u16>, by: Decimal) {
        if let Some(v) = self.get(profile, field) {
            let v = add_money(&v, &Value::Money(by));
            self.set(profile, field, v);
        }
    }

    /// Sets a time trait to `at` (milliseconds; the trait keeps the whole
    /// second, as every time value of the language), or only fills it when
    /// `only_if_unset`. Returns whether the trait changed.
    pub fn stamp(
        &self,
        profile: &mut Profile,
        field: Option<u16>,
        at: i64,
        only_if_unset: bool,
    ) -> bool {
        field.is_some_and(|f| profile.stamp(usize::from(f), at.div_euclid(1000), only_if_unset))
    }
}

/// The VM's view of one customer at one moment.
pub struct Ctx<'a> {
    /// The customer.
    pub customer: &'a mut Customer,
    /// The clock, in milliseconds since the epoch.
    pub now: i64,
    /// The recipient's zone.
    pub tz: Tz,
    /// Profile fields code wrote, in order (segments and date triggers need a
    /// look, and the trace records each write).
    pub writes: Vec<(u16, Value)>,
}

impl Host for Ctx<'_> {
    fn profile(&self) -> std::borrow::Cow<'_, Record> {
        std::borrow::Cow::Owned(self.customer.profile.to_record())
    }

    fn profile_field(&self, field: u16) -> Option<Value> {
        self.customer.profile.get(usize::from(field))
    }

    fn set_profile(&mut self, field: u16, value: Value) {
        if self.customer.profile.set(usize::from(field), value.clone()) {
            self.writes.push((field, value));
        }
    }

    fn now(&self) -> i64 {
        self.now.div_euclid(1000)
    }

    fn timezone(&self) -> Tz {
        self.tz
    }

    fn for_each_event(&self, schema: u32, since: i64, f: &mut dyn FnMut(&Value) -> bool) {
        for e in self.customer.events_since(since) {
            if e.schema == schema && !f(&e.value) {
                break;
            }
        }
    }

    fn customer_key(&self) -> &str {
        &self.customer.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_keep_their_order_as_they_come_and_go() {
        let mut ids = InstanceIds::default();
        let all = |ids: &InstanceIds| ids.iter().collect::<Vec<_>>();
        ids.push(4);
        assert!(ids.rest.is_none(), "one slot is kept inline");
        for id in [7, 1, 9] {
            ids.push(id);
        }
        ids.remove(7);
        assert_eq!(all(&ids), [4, 1, 9]);
        ids.remove(4);
        assert_eq!(all(&ids), [1, 9]);
        ids.remove(9);
        assert_eq!(all(&ids), [1]);
        assert!(ids.rest.is_none(), "an emptied vector is freed");
        ids.remove(3);
        ids.remove(1);
        assert_eq!(all(&ids), [] as [u32; 0]);
    }

    #[test]
    fn flow_memory_keeps_its_optional_instants_apart() {
        let mut m = FlowMemory::default();
        assert_eq!((m.last_entry(), m.armed()), (None, None));
        m.set_armed(Some(-5));
        m.set_last_entry(Some(0));
        assert_eq!((m.last_entry(), m.armed()), (Some(0), Some(-5)));
        m.set_armed(None);
        assert_eq!((m.last_entry(), m.armed()), (Some(0), None));
        assert_eq!(std::mem::size_of::<FlowMemory>(), 40);
    }

    #[test]
    fn a_customer_record_takes_96_bytes() {
        // Every customer has one: 96 is an allocator size class, and the
        // next field would move it to the next (112).
        assert_eq!(std::mem::size_of::<Customer>(), 96);
    }
}
