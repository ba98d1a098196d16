//! The contents of a bundle: everything the runtime needs to run a project.

use rust_decimal::Decimal;

use crate::instr::Instr;
use crate::retention::Retention;
use crate::value::{Type, Value};

/// A compiled project.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bundle {
    /// Source file paths; [`Pos::file`] indexes this list.
    pub files: Vec<String>,
    /// Builtin function names; `Call*` instructions index this list.
    pub builtins: Vec<String>,
    /// Record schemas: events, declared records, the profile, shared-field records.
    pub schemas: Vec<Schema>,
    /// String enum types.
    pub enums: Vec<EnumSchema>,
    /// Index of the profile's schema in `schemas`.
    pub profile: u32,
    /// Top-level `let`s, sorted by name.
    pub lets: Vec<Global>,
    /// Segments, sorted by name.
    pub segments: Vec<Global>,
    /// Messages, sorted by name.
    pub messages: Vec<Message>,
    /// Flows, sorted by name.
    pub flows: Vec<Flow>,
    /// The project's global rules.
    pub policy: Policy,
    /// What of each customer's history the rules read back, and for how
    /// long: the runtime keeps no more (see [`Retention`]).
    pub retention: Retention,
    /// For segments that `trigger entering` flows name and that read the
    /// clock: when their membership can next change, sorted by segment.
    pub change_points: Vec<ChangePoints>,
}

/// Where a record schema comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaKind {
    /// A track event (`event x "X" { }` or the stdlib's).
    Event,
    /// A declared record type (`type X { }`).
    Record,
    /// The profile: standard and custom traits.
    Profile,
    /// The fields several events share (the binding of `wait for a or b`).
    Shared,
}

/// A record schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    /// The flow-level name (`checkout_started`, `Product`, `profile`).
    pub name: String,
    /// Where it comes from.
    pub kind: SchemaKind,
    /// The wire name of an event (`Checkout Started`).
    pub wire: Option<String>,
    /// The fields; record values store their fields in this order.
    pub fields: Vec<FieldSchema>,
}

/// One field of a schema.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSchema {
    /// The field name (the property or trait name on the wire).
    pub name: String,
    /// Its type; optional fields may be missing.
    pub ty: Type,
    /// The value used when the data lacks the field.
    pub default: Option<Value>,
}

impl FieldSchema {
    /// Whether data without this field is bad input (not optional, no default).
    pub fn required(&self) -> bool {
        !self.ty.is_optional() && self.default.is_none()
    }
}

/// A string enum type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumSchema {
    /// The type's name.
    pub name: String,
    /// The allowed strings.
    pub values: Vec<String>,
}

/// A top-level `let` or segment: a named value computed by block 0 of its unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    /// Its name.
    pub name: String,
    /// Its type (`bool` for segments).
    pub ty: Type,
    /// Its code; block 0 returns the value.
    pub unit: Unit,
}

/// When a segment's membership can change with time alone: each expression
/// block of `unit` computes an instant (a `time`) at which it may. A block
/// that fails or gives none names no instant (a trait not set). A runtime
/// looks at the segment again at the earliest of them still to come.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangePoints {
    /// The segment, by index.
    pub segment: u32,
    /// The code; every block is an expression.
    pub unit: Unit,
}

/// Code with its constants: the blocks of one flow, message, let or segment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Unit {
    /// The constant pool that `Const` indexes.
    pub consts: Vec<Value>,
    /// The code blocks; `CallLambda` and the flow tables index this list.
    pub blocks: Vec<Block>,
    /// Local slots a frame of this unit needs (persistent locals, parameters and lambda parameters).
    pub slots: u16,
}

/// What a block is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// A flow's steps, or an `on exit` block: ends with `End`, may suspend.
    Steps,
    /// An expression (predicate, let, segment, content, default): ends with `Return`.
    Expr,
    /// A lambda passed to a builtin: its parameters are stored in `params` first.
    Lambda,
}

/// A straight run of instructions with its source positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// What the block is for.
    pub kind: BlockKind,
    /// The local slots a lambda's arguments go into, in parameter order.
    pub params: Vec<u16>,
    /// The instructions.
    pub code: Vec<Instr>,
    /// The source position of each instruction (same length as `code`).
    pub pos: Vec<Pos>,
}

/// Where an instruction comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// Index in [`Bundle::files`].
    pub file: u32,
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
    /// Byte offset where the construct starts.
    pub start: u32,
    /// Byte offset where it ends.
    pub end: u32,
}

/// A delivery channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Channel {
    /// Email.
    Email,
    /// Text message.
    Sms,
    /// Mobile push.
    Push,
    /// An HTTP call.
    Webhook,
    /// An ad audience.
    Audience,
}

impl Channel {
    /// Every channel, in tag order.
    pub const ALL: [Channel; 5] = [
        Channel::Email,
        Channel::Sms,
        Channel::Push,
        Channel::Webhook,
        Channel::Audience,
    ];

    /// The channel's name in source.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
            Channel::Webhook => "webhook",
            Channel::Audience => "audience",
        }
    }

    /// The channel with this source name.
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Whether a message is marketing or transactional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Subject to consent, caps and quiet hours.
    Marketing,
    /// Skips marketing caps and quiet hours (never consent to the channel).
    Transactional,
}

/// A message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Its name.
    pub name: String,
    /// Its channel.
    pub channel: Channel,
    /// Marketing or transactional.
    pub purpose: Purpose,
    /// Parameters, in order; local slot `i` holds parameter `i`.
    pub params: Vec<Param>,
    /// Content fields in source order.
    pub content: Vec<Content>,
    /// The code of defaults and content fields.
    pub unit: Unit,
}

/// A message parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// Its name (also its name in templates).
    pub name: String,
    /// Its type.
    pub ty: Type,
    /// The block computing its value when a send leaves it out.
    pub default: Option<u32>,
}

/// One content field of a message (`subject`, `body`, `text`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    /// The key.
    pub key: String,
    /// How the text is made.
    pub value: ContentValue,
}

/// How a content field's text is made.
#[derive(Clone, Debug, PartialEq)]
pub enum ContentValue {
    /// A block of the message's unit returning a string.
    Code(u32),
    /// A Jinja template rendered with the parameters, `profile` and the lets it names.
    Template(Template),
}

/// A template file embedded in the bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    /// The path as written, relative to the `.flow` file.
    pub path: String,
    /// The template's text.
    pub source: String,
    /// Top-level lets the template names: `(name, index in Bundle::lets)`.
    pub lets: Vec<(String, u32)>,
}

/// A flow: its header rules, its code and its tables.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// Its name.
    pub name: String,
    /// The version hash: 16 hex digits (see `docs/bytecode.md`).
    pub version: String,
    /// What starts an instance.
    pub trigger: Trigger,
    /// The re-entry rule.
    pub entry: Entry,
    /// `exit on` rules.
    pub exit_on: Vec<EventRule>,
    /// Standing `exit if` predicates (blocks), checked at every `Step`.
    pub exit_if: Vec<u32>,
    /// `suppress if` predicates (blocks), checked at every send.
    pub suppress: Vec<u32>,
    /// The flow's quiet hours.
    pub quiet: Vec<QuietHours>,
    /// The flow's caps.
    pub caps: Vec<Cap>,
    /// The conversion goal.
    pub goal: Option<Goal>,
    /// The holdout share, in percent.
    pub holdout: Option<Decimal>,
    /// Which flow sends first when caps allow only some (higher wins).
    pub priority: i64,
    /// The block run however the instance ends.
    pub on_exit: Option<u32>,
    /// Local slots kept while an instance sleeps: slots `0..locals`.
    pub locals: u16,
    /// The name of each persistent local, slot by slot (`locals` entries),
    /// so a deploy can carry a sleeping instance's values to a new version.
    pub local_names: Vec<LocalName>,
    /// `WaitFor` operands.
    pub waits: Vec<WaitFor>,
    /// `Split` operands.
    pub splits: Vec<Split>,
    /// Every step, in source order; `Step(n)` marks the start of step `n`.
    pub steps: Vec<StepInfo>,
    /// The code; block 0 is the flow's steps.
    pub unit: Unit,
}

/// A persistent local of a flow: what deploys map old slots to new ones by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalName {
    /// The name bound by `let` or `let x = wait for`.
    pub name: String,
    /// The step that declares it: before this step runs the slot is unset.
    pub step: u16,
}

/// An event with an optional predicate.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRule {
    /// The event's schema.
    pub event: u32,
    /// The predicate block (`LoadEvent` is the candidate event).
    pub predicate: Option<u32>,
}

/// What starts a flow instance.
#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// A track event, with an optional predicate.
    Event(EventRule),
    /// A schedule.
    Schedule {
        /// How often.
        cadence: Cadence,
        /// The time of day, in minutes since midnight.
        at: u16,
        /// Whether `at` is in each recipient's zone (else the policy's).
        local: bool,
        /// Only customers in this segment.
        segment: Option<u32>,
    },
    /// A profile date plus an offset; re-armed when the field changes.
    DateProperty {
        /// Seconds after the date; negative before it.
        offset: i64,
        /// The profile field (a `time` or a `date`).
        field: u16,
        /// On each anniversary of the date (29 February: the 28th in other years).
        yearly: bool,
        /// The time of day in the recipient's zone, in minutes since midnight;
        /// none keeps the time of the date plus the offset (midnight for a `date`).
        at: Option<u16>,
        /// How long past its time, in seconds, a date learned late still
        /// fires at once; none: it is skipped (and recorded).
        grace: Option<i64>,
    },
    /// A profile change makes the segment true.
    Entering {
        /// The segment.
        segment: u32,
    },
}

/// How often a scheduled trigger fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// Every day.
    Day,
    /// Every week on this day, 0 = Monday … 6 = Sunday.
    Weekday(u8),
    /// Every month on this day (1–28).
    Month(u8),
    /// One time, on this date (days since 1970-01-01): a campaign.
    Once(i32),
}

/// The re-entry rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// No clause: one live instance per customer.
    Single,
    /// `entry once`: one instance per customer, ever.
    Once,
    /// `entry once per D`: one entry per window of this many seconds.
    OncePer(i64),
    /// `entry always`: every trigger starts an instance.
    Always,
}

/// A quiet-hours window in the recipient's local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// The channel, or every channel.
    pub channel: Option<Channel>,
    /// Start, in minutes since midnight.
    pub from: u16,
    /// End, in minutes since midnight (may be before `from`: crosses midnight).
    pub to: u16,
}

/// What a cap counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapScope {
    /// Sends on one channel.
    Channel(Channel),
    /// Marketing sends on all channels.
    Marketing,
}

/// What happens to a send beyond a cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapAction {
    /// Drop it.
    Skip,
    /// Hold it until the cap allows it.
    Defer,
}

/// A frequency cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// What it counts.
    pub scope: CapScope,
    /// How many sends.
    pub count: u32,
    /// The rolling window, in seconds.
    pub per: i64,
    /// Beyond the cap.
    pub then: CapAction,
}

/// A conversion goal.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    /// The conversion event.
    pub rule: EventRule,
    /// The attribution window, in seconds.
    pub within: i64,
}

/// The operand of a `WaitFor`.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitFor {
    /// The awaited events.
    pub events: Vec<WaitEvent>,
    /// The schema of the matched value (an event's, or the shared fields').
    pub schema: u32,
    /// The predicate block, run with the matched value as `LoadEvent`.
    pub predicate: Option<u32>,
    /// The timeout, in seconds.
    pub within: i64,
    /// The local slot receiving the value, or none on timeout.
    pub bind: Option<u16>,
}

/// One event a `WaitFor` accepts.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitEvent {
    /// The event's schema.
    pub event: u32,
    /// For several events: which of this event's fields make the shared record, in order.
    pub project: Option<Vec<u16>>,
}

/// The operand of a `Split`.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The arms, in source order.
    pub arms: Vec<SplitArm>,
    /// For a split that optimises the flow's goal (`split optimise`), each
    /// arm's floor: the share of traffic, in percent, every arm keeps. A
    /// plain split (`None`) chooses by its arms' percentages.
    pub optimise: Option<Decimal>,
}

/// One arm of a split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitArm {
    /// Its share, in percent.
    pub percent: Decimal,
    /// The variant name, as reported.
    pub name: String,
    /// Where its steps start, in the same block.
    pub target: u32,
}

/// One step of a flow, for labels, reports and deploys.
#[derive(Clone, Debug, PartialEq)]
pub struct StepInfo {
    /// The label, when written (`reminder: send ...`).
    pub label: Option<String>,
    /// What the step is (`wait`, `send cart_reminder`, `if`, ...).
    pub what: String,
    /// The block holding it.
    pub block: u32,
    /// The index of its `Step` instruction.
    pub pc: u32,
}

/// The project's global rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// The zone for profiles without one.
    pub timezone: Option<String>,
    /// Quiet hours across all flows.
    pub quiet: Vec<QuietHours>,
    /// Caps across all flows.
    pub caps: Vec<Cap>,
    /// Suppression list files, as paths joined to the declaring file's directory.
    pub suppress_lists: Vec<String>,
    /// The store's currency, an ISO 4217 code (`EUR`): how amounts are
    /// written in messages. None writes them with `$` and two digits.
    pub currency: Option<String>,
}

impl Bundle {
    /// The flow with this name.
    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }
}
